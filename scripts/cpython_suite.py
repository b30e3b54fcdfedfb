#!/usr/bin/env python3
"""Run CPython's regression suite (Debian's libpython3.11-testsuite) natively and under
km, module by module, and tally the two.

Every test module of the installed suite is run natively first
(``/usr/bin/python3 -m test MODULE``, at most 120 s each); each module that passes
natively is then run under km (``km --strict /usr/bin/python3 -m test MODULE``, at most
10x its native time + 60 s, never more than 900 s) and the two are compared: regrtest's
verdict and the counts of tests run, failed, in error and skipped (from regrtest's
``--junit-xml``). A module is *the same* under km when its verdict and its four counts
are; the report also says when the counts agree but not the tests behind them.

What a module is: the names ``python3 -m test --list-tests`` prints, except that the
packages CPython 3.12's regrtest splits (``SPLIT_PACKAGES``: test_asyncio is the only one
that is a package in 3.11) count as their sub-modules, ``test_asyncio.test_events`` and
so on, each one run and compared on its own.

Each run gets a fresh temporary working directory (also its TMPDIR, so regrtest's own
scratch directory lands in it and goes with it), the environment of tests/conftest.py's
BASE_ENV, stdin from /dev/null, every signal at its default action and unblocked (the
script may itself run under nohup), no core files, and its own process group, killed
with the run (stragglers included).

Results are cached in RUN_DIR/results.json, written after every module, so a rerun with
the same RUN_DIR skips what is done (``--redo`` runs the named modules again); each run's
output is kept in RUN_DIR/logs/MODULE.{native,km}.txt. Usage::

    scripts/cpython_suite.py RUN_DIR                          # native pass, then km pass
    scripts/cpython_suite.py RUN_DIR --phase native --jobs 2  # only the native pass
    scripts/cpython_suite.py RUN_DIR --phase km               # km, for native passers
    scripts/cpython_suite.py RUN_DIR test_os test_asyncio.test_events --redo
    scripts/cpython_suite.py RUN_DIR --modules-file names.txt --report tally.md
    scripts/cpython_suite.py RUN_DIR --phase report --report tally.md

Standard library only; runs under any Python >= 3.9 (the host's or the project's venv).
"""

from __future__ import annotations

import argparse
import concurrent.futures
import json
import os
import re
import resource
import shlex
import signal
import subprocess
import sys
import tempfile
import threading
import time
import xml.etree.ElementTree as ET
from pathlib import Path

PYTHON = "/usr/bin/python3"
TESTDIR = Path("/usr/lib/python3.11/test")
REPO = Path(__file__).resolve().parent.parent
KM = [str(REPO / ".venv" / "bin" / "km"), "--strict"]

# Packages run as their sub-modules, as CPython 3.12's regrtest (SPLITTESTDIRS) does.
SPLIT_PACKAGES = ("test_asyncio",)

#: Test cases left out of a module, natively and under km alike: test_socket's VSOCK
#: cases wait forever in vsock_accept natively on these machines (they are VMs whose
#: host answers no vsock connection).
MODULE_ARGS = {"test_socket": ("--ignore", "*VSOCK*")}

NATIVE_TIMEOUT = 120.0
KM_TIMEOUT_FACTOR = 10.0
KM_TIMEOUT_EXTRA = 60.0
KM_TIMEOUT_MAX = 900.0

# As tests/conftest.py's BASE_ENV: runs do not depend on what the caller exported.
BASE_ENV = {
    "PATH": os.environ.get("PATH", "/usr/local/bin:/usr/bin:/bin"),
    "HOME": "/root",
    "LC_ALL": "C",
    "TZ": "UTC",
}

# A module passes when regrtest says SUCCESS and exits 0; its verdict says how.
VERDICT_LINES = (  # (pattern in regrtest's summary, verdict), first match wins
    (re.compile(r"^\d+ tests? failed:"), "FAILED"),
    (re.compile(r"^\d+ tests? altered the execution environment:"), "ENV CHANGED"),
    (re.compile(r"^\d+ tests? run no tests:"), "NO TESTS"),
    (re.compile(r"^\d+ tests? skipped:"), "SKIPPED"),
    (re.compile(r"^(All )?\d+ tests? OK\."), "OK"),
)
RESULT_LINE = re.compile(r"^Tests result: (.*)$", re.M)
SKIP_LINE = re.compile(r"^(?:\S+ )*?(test_\S+) skipped -- (.*)$", re.M)


# --------------------------------------------------------------------------------------
# Listing the suite


def list_modules() -> list[str]:
    """The suite's modules in regrtest's order, split packages replaced by their parts."""
    with tempfile.TemporaryDirectory(prefix="cpysuite-") as tmp:
        out = subprocess.run([PYTHON, "-m", "test", "--list-tests"], cwd=tmp,
                             env=BASE_ENV | {"TMPDIR": tmp}, stdin=subprocess.DEVNULL,
                             capture_output=True, text=True, check=True).stdout
    modules = []
    for name in out.split():
        if name in SPLIT_PACKAGES and (TESTDIR / name).is_dir():
            parts = sorted(p.stem if p.suffix == ".py" else p.name
                           for p in (TESTDIR / name).iterdir()
                           if p.name.startswith("test_")
                           and (p.suffix == ".py" or (p / "__init__.py").exists()))
            modules += [f"{name}.{part}" for part in parts]
        else:
            modules.append(name)
    return modules


# --------------------------------------------------------------------------------------
# Running one module


def _child_setup() -> None:
    """As tests/conftest.py's child_setup, plus a process group of the run's own."""
    for signo in range(1, signal.NSIG):
        if signo not in (signal.SIGKILL, signal.SIGSTOP):
            try:
                signal.signal(signo, signal.SIG_DFL)
            except (OSError, ValueError):
                pass
    signal.pthread_sigmask(signal.SIG_SETMASK, [])
    resource.setrlimit(resource.RLIMIT_CORE, (0, 0))
    os.setpgid(0, 0)


def _junit(path: Path) -> tuple[dict[str, int], dict[str, str]] | None:
    """Counts (run, failures, errors, skipped) and the outcome of every test that did not
    simply pass, from regrtest's --junit-xml file; None when there is none."""
    try:
        root = ET.parse(path).getroot()
    except (OSError, ET.ParseError):
        return None
    counts = {"run": 0, "failures": 0, "errors": 0, "skipped": 0}
    notpassed = {}
    for case in root.iter("testcase"):
        counts["run"] += 1
        for tag, key in (("failure", "failures"), ("error", "errors"), ("skipped", "skipped")):
            if case.find(tag) is not None:
                counts[key] += 1
                notpassed[case.get("name", "?")] = tag
                break
    return counts, notpassed


def _verdict(output: str, returncode: int, timed_out: bool) -> tuple[str, str | None]:
    """regrtest's verdict on the module and its 'Tests result' line (None if missing)."""
    results = RESULT_LINE.findall(output)
    result = results[-1].strip() if results else None
    if timed_out:
        return "TIMEOUT", result
    if result is None:
        return f"CRASHED ({returncode})", None
    for line in output.splitlines():
        for pattern, verdict in VERDICT_LINES:
            if pattern.match(line.strip()):
                return verdict, result
    return result, result


def run_module(module: str, prefix: list[str], timeout: float, log: Path) -> dict:
    """Run `PREFIX -m test MODULE` once; its combined output goes to LOG."""
    with tempfile.TemporaryDirectory(prefix="cpysuite-") as tmp:
        junit = Path(tmp) / "junit.xml"
        argv = [*prefix, "-m", "test", module, *MODULE_ARGS.get(module, ()),
                "--junit-xml", str(junit)]
        log.parent.mkdir(parents=True, exist_ok=True)
        with open(log, "w+b") as out:
            out.write(f"$ {shlex.join(argv)}\n".encode())
            out.flush()
            start = time.monotonic()
            proc = subprocess.Popen(argv, cwd=tmp, env=BASE_ENV | {"TMPDIR": tmp},
                                    stdin=subprocess.DEVNULL, stdout=out,
                                    stderr=subprocess.STDOUT, preexec_fn=_child_setup)
            timed_out = False
            try:
                returncode = proc.wait(timeout)
            except subprocess.TimeoutExpired:
                timed_out = True
                _killpg(proc.pid)
                returncode = proc.wait()
            duration = time.monotonic() - start
            _killpg(proc.pid)  # whatever the run left behind in its group
            out.write(f"\n[exit {returncode} after {duration:.1f}s"
                      f"{', TIMED OUT' if timed_out else ''}]\n".encode())
            out.seek(0)
            output = out.read().decode(errors="replace")
        parsed = _junit(junit)
    verdict, result = _verdict(output, returncode, timed_out)
    counts, notpassed = parsed if parsed else (None, {})
    skip = SKIP_LINE.search(output)
    return {
        "verdict": verdict,
        "result": result,
        "returncode": returncode,
        "duration": round(duration, 2),
        "timeout": timeout,
        "counts": counts,
        "notpassed": notpassed,
        "skip_reason": skip.group(2).strip() if skip and verdict == "SKIPPED" else None,
        "log": str(log),
    }


def _killpg(pgid: int) -> None:
    try:
        os.killpg(pgid, signal.SIGKILL)
    except (ProcessLookupError, PermissionError):
        pass


def passes(run: dict | None) -> bool:
    return bool(run) and run["returncode"] == 0 and run["result"] == "SUCCESS"


def compare(native: dict, km: dict) -> str:
    """'same' (verdict, counts and the tests behind them), 'same counts' (verdict and
    counts, not the same tests), or 'differs'."""
    if km["verdict"] != native["verdict"] or km["counts"] != native["counts"]:
        return "differs"
    return "same" if km["notpassed"] == native["notpassed"] else "same counts"


def km_timeout(native: dict, ceiling: float) -> float:
    return min(ceiling, KM_TIMEOUT_FACTOR * native["duration"] + KM_TIMEOUT_EXTRA)


# --------------------------------------------------------------------------------------
# The run directory's cache


class Cache:
    """RUN_DIR/results.json: {"modules": {MODULE: {"native": RUN, "km": RUN}}}, rewritten
    (atomically) after every run, so an interrupted pass resumes where it stopped."""

    def __init__(self, run_dir: Path):
        self.path = run_dir / "results.json"
        self.lock = threading.Lock()
        self.data = json.loads(self.path.read_text()) if self.path.exists() else {}
        self.data.setdefault("modules", {})

    def get(self, module: str, side: str) -> dict | None:
        return self.data["modules"].get(module, {}).get(side)

    def put(self, module: str, side: str, run: dict | None) -> None:
        with self.lock:
            entry = self.data["modules"].setdefault(module, {})
            if run is None:
                entry.pop(side, None)
            else:
                entry[side] = run
            partial = self.path.with_suffix(f".{os.getpid()}.tmp")
            partial.write_text(json.dumps(self.data, indent=1, sort_keys=True))
            os.replace(partial, self.path)


# --------------------------------------------------------------------------------------
# The passes


def _describe(run: dict | None) -> str:
    if not run:
        return "-"
    c = run["counts"]
    counts = f" {c['run']}/{c['failures']}/{c['errors']}/{c['skipped']}" if c else ""
    return f"{run['verdict']}{counts} {run['duration']:.1f}s"


def run_pass(side: str, modules: list[str], cache: Cache, run_dir: Path, jobs: int,
             km: list[str], km_ceiling: float, native_timeout: float) -> None:
    """Run SIDE ('native' or 'km') for MODULES not in the cache, JOBS at a time."""
    lock = threading.Lock()
    done = [0]

    def one(module: str) -> None:
        if side == "native":
            prefix, timeout = [PYTHON], native_timeout
        else:
            prefix, timeout = [*km, PYTHON], km_timeout(cache.get(module, "native"), km_ceiling)
        run = run_module(module, prefix, timeout, run_dir / "logs" / f"{module}.{side}.txt")
        cache.put(module, side, run)
        with lock:
            done[0] += 1
            note = ""
            if side == "km":
                note = "  " + compare(cache.get(module, "native"), run)
            print(f"[{done[0]}/{len(modules)}] {side:6} {module:45} {_describe(run)}{note}",
                  flush=True)

    print(f"{side} pass: {len(modules)} modules, {jobs} job(s)", flush=True)
    with concurrent.futures.ThreadPoolExecutor(max_workers=jobs) as pool:
        for future in [pool.submit(one, m) for m in modules]:
            future.result()


# --------------------------------------------------------------------------------------
# The report


def report(modules: list[str], cache: Cache) -> str:
    """A Markdown table, one row per module the cache holds, and a summary paragraph."""
    rows = ["| module | native (run/fail/error/skip) | km (run/fail/error/skip) | same? |",
            "|---|---|---|---|"]
    ran = passing = skipped_whole = on_km = 0
    same, same_counts, differing, native_failing = [], [], [], []
    native_time = km_time = 0.0
    for module in modules:
        native, km = cache.get(module, "native"), cache.get(module, "km")
        if not native:
            continue
        ran += 1
        verdict = "-"
        if passes(native):
            passing += 1
            skipped_whole += native["verdict"] == "SKIPPED"
            if km:
                on_km += 1
                native_time += native["duration"]
                km_time += km["duration"]
                verdict = compare(native, km)
                {"same": same, "same counts": same_counts,
                 "differs": differing}[verdict].append(module)
            else:
                verdict = "not run yet"
        else:
            native_failing.append(module)
            verdict = "(fails natively)"
        rows.append(f"| {module} | {_describe(native)} | {_describe(km)} | {verdict} |")
    summary = (
        f"The suite has {len(modules)} modules (test_asyncio counted as its "
        f"{sum(m.startswith('test_asyncio.') for m in modules)} sub-modules). "
        f"{ran} ran natively; {passing} pass natively within {NATIVE_TIMEOUT:.0f} s "
        f"({skipped_whole} of them skipped whole by regrtest), {len(native_failing)} do "
        f"not (fail, time out or report no tests). Of the {passing} native passers, "
        f"{on_km} ran under km: {len(same) + len(same_counts)} give the same verdict and "
        f"counts ({len(same_counts)} of them with different tests behind the same "
        f"counts{': ' + ', '.join(same_counts) if same_counts else ''}), "
        f"{len(differing)} differ{': ' + ', '.join(differing) if differing else ''}; "
        f"{passing - on_km} are not run under km yet. Those {on_km} modules took "
        f"{native_time / 60:.1f} min natively and {km_time / 60:.1f} min under km."
    )
    return "\n".join([summary, "", *rows, ""])


# --------------------------------------------------------------------------------------


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("run_dir", type=Path, help="results.json and logs/ go here")
    parser.add_argument("modules", nargs="*", help="run only these modules")
    parser.add_argument("--modules-file", type=Path,
                        help="run only the modules named in this file (whitespace-separated, "
                             "# starts a comment)")
    parser.add_argument("--phase", choices=("both", "native", "km", "report"), default="both",
                        help="native pass, km pass (for native passers), both, or only "
                             "the report (default: both)")
    parser.add_argument("-j", "--jobs", type=int, default=1, help="modules run at once")
    parser.add_argument("--redo", action="store_true",
                        help="run the selected modules again even if cached (for the "
                             "phase(s) run; a native redo drops the km result too)")
    parser.add_argument("--report", type=Path, help="write the Markdown tally here")
    parser.add_argument("--km", default=os.environ.get("KM"),
                        help=f"the km command (default $KM or {shlex.join(KM)})")
    parser.add_argument("--native-timeout", type=float, default=NATIVE_TIMEOUT)
    parser.add_argument("--km-timeout-max", type=float, default=KM_TIMEOUT_MAX)
    args = parser.parse_args(argv)

    suite = list_modules()
    selected = list(args.modules)
    if args.modules_file:
        text = re.sub(r"#.*", "", args.modules_file.read_text())
        selected += text.split()
    unknown = [m for m in selected if m not in suite]
    if unknown:
        parser.error(f"not modules of the suite: {' '.join(unknown)}")
    selected = [m for m in suite if m in set(selected)] if selected else suite

    args.run_dir.mkdir(parents=True, exist_ok=True)
    cache = Cache(args.run_dir)
    km = shlex.split(args.km) if args.km else KM

    if args.phase in ("both", "native"):
        todo = [m for m in selected if args.redo or not cache.get(m, "native")]
        if args.redo:
            for m in todo:
                cache.put(m, "km", None)
        run_pass("native", todo, cache, args.run_dir, args.jobs, km,
                 args.km_timeout_max, args.native_timeout)
    if args.phase in ("both", "km"):
        passers = [m for m in selected if passes(cache.get(m, "native"))]
        todo = [m for m in passers if args.redo or not cache.get(m, "km")]
        todo.sort(key=lambda m: cache.get(m, "native")["duration"])  # quick ones first
        run_pass("km", todo, cache, args.run_dir, args.jobs, km,
                 args.km_timeout_max, args.native_timeout)

    text = report(suite, cache)
    if args.report:
        args.report.write_text(text)
    print(text.split("\n", 1)[0])
    return 0


if __name__ == "__main__":
    sys.exit(main())
