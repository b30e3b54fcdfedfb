#!/usr/bin/env python3
"""km benchmarks: cold start, system call round trip, CPU-bound speed.

    .venv/bin/python benchmarks/run.py [--quick] [--km PATH]

Builds benchmarks/minivmm.c (gcc) and benchmarks/payloads/*.c (musl-gcc -static) into
.cache/bench/, measures, prints a table with each ratio against its target, and ends with
a one-line JSON summary. Missing a target is reported (MISSED), never an error: the exit
status is 0 unless something could not be built or run (then 1). See benchmarks/README.md.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import shutil
import statistics
import subprocess
import sys
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
BENCH_DIR = REPO / "benchmarks"
CACHE = REPO / ".cache" / "bench"
PYCACHE = CACHE / "pycache"
DEFAULT_KM = REPO / ".venv" / "bin" / "km"
PAYLOADS = ("hello", "getppid_loop", "cpu_loop")
CPU_CALIBRATION_N = 20_000_000


def bench_environment() -> dict[str, str]:
    """The environment every measured command runs in.

    km is measured as installed, with its modules' bytecode cached: the cache goes to
    PYCACHE (so nothing is written into the source tree), and PYTHONDONTWRITEBYTECODE is
    dropped, which would otherwise make every km start recompile all of kontain.
    """
    env = dict(os.environ)
    env.pop("PYTHONDONTWRITEBYTECODE", None)
    env["PYTHONPYCACHEPREFIX"] = str(PYCACHE)
    return env


ENV = bench_environment()


class BenchError(Exception):
    """A build or a run failed: that benchmark has no figures."""


@dataclass(frozen=True)
class Settings:
    start_runs: int  # cold-start runs per command
    syscall_n: int  # getppid calls per km / minivmm run
    native_syscall_n: int  # getppid calls per native run (native calls are ~1000x cheaper)
    syscall_runs: int  # runs per syscall subject
    cpu_seconds: float  # what native cpu_loop N should take
    cpu_runs: int  # runs per CPU-bound subject


FULL = Settings(start_runs=20, syscall_n=20_000, native_syscall_n=2_000_000, syscall_runs=3,
                cpu_seconds=1.5, cpu_runs=3)
QUICK = Settings(start_runs=3, syscall_n=2_000, native_syscall_n=50_000, syscall_runs=1,
                 cpu_seconds=0.1, cpu_runs=1)


@dataclass(frozen=True)
class Stat:
    """Best and median of a set of samples, in seconds."""

    best: float
    median: float

    @classmethod
    def of(cls, samples: Sequence[float]) -> Stat:
        return cls(min(samples), statistics.median(samples))

    def minus(self, other: Stat, scale: float = 1.0) -> Stat:
        """(self - other) / scale, best with best and median with median."""
        return Stat((self.best - other.best) / scale, (self.median - other.median) / scale)


@dataclass(frozen=True)
class Row:
    key: str  # the subject's name in the JSON summary
    subject: str  # ... and in the table
    stat: Stat
    note: str = ""


@dataclass(frozen=True)
class Ratio:
    name: str
    key: str
    best: float  # the ratio of the best figures: the one judged against the target
    median: float
    target: float
    higher_is_better: bool

    @property
    def met(self) -> bool:
        return self.best >= self.target if self.higher_is_better else self.best <= self.target


@dataclass(frozen=True)
class Section:
    title: str
    key: str  # the section's name in the JSON summary, with its unit
    unit: float  # seconds per JSON unit
    rows: list[Row]
    ratio: Ratio


def runs_note(runs: int) -> str:
    return f"{runs} run" if runs == 1 else f"{runs} runs"


def ratio_of(name: str, key: str, a: Stat, b: Stat, target: float,
             higher_is_better: bool) -> Ratio:
    """a / b, as a ratio to judge against target."""
    return Ratio(name, key, a.best / b.best, a.median / b.median, target, higher_is_better)


# ---- building ----------------------------------------------------------------------------

def compile_c(compiler: str, flags: Sequence[str], source: Path, output: Path) -> None:
    if shutil.which(compiler) is None:
        raise BenchError(f"{compiler} not found (needed for {source.name})")
    command = [compiler, *flags, "-o", str(output), str(source)]
    result = subprocess.run(command, capture_output=True, text=True)
    if result.returncode != 0:
        raise BenchError(f"{' '.join(command)} failed:\n{result.stderr.strip()}")


def build_all() -> dict[str, Path]:
    """Build minivmm and the payloads into CACHE; returns their paths by name."""
    CACHE.mkdir(parents=True, exist_ok=True)
    built = {"minivmm": CACHE / "minivmm"}
    compile_c("gcc", ["-O2", "-Wall"], BENCH_DIR / "minivmm.c", built["minivmm"])
    for name in PAYLOADS:
        built[name] = CACHE / name
        compile_c("musl-gcc", ["-static", "-O2", "-Wall"],
                  BENCH_DIR / "payloads" / f"{name}.c", built[name])
    return built


def km_interpreter(km: Path) -> tuple[str, str]:
    """The interpreter in km's shebang line, and the flags the shebang gives it."""
    try:
        with km.open("rb") as f:
            first = f.readline().decode(errors="replace").strip()
    except OSError as e:
        raise BenchError(f"cannot read {km}: {e.strerror}") from None
    if not first.startswith("#!"):
        raise BenchError(f"{km} has no shebang line")
    interpreter, _, flags = first[2:].strip().partition(" ")
    if os.path.basename(interpreter) == "env":
        name, _, flags = flags.strip().partition(" ")
        found = shutil.which(name)
        if found is None:
            raise BenchError(f"{km}: interpreter {name} not found")
        interpreter = found
    return interpreter, flags.strip()


# ---- running -----------------------------------------------------------------------------

def timed_run(argv: Sequence[str]) -> tuple[float, str]:
    """Run argv to completion; returns (wall seconds, stdout). Fails unless it exits 0."""
    start = time.perf_counter()
    result = subprocess.run(argv, capture_output=True, text=True, env=ENV)
    elapsed = time.perf_counter() - start
    if result.returncode != 0:
        detail = " | ".join(result.stderr.strip().splitlines()[-3:])
        raise BenchError(f"{' '.join(argv)} exited with {result.returncode}"
                         + (f": {detail}" if detail else ""))
    return elapsed, result.stdout


def sample(commands: dict[str, list[str]], runs: int,
           check: Callable[[str, str], None] = lambda name, out: None,
           warmup: bool = True) -> dict[str, Stat]:
    """Wall times of each command over `runs` rounds. The commands alternate within a
    round, so a slow drift in the host's load affects all of them alike. check(name,
    stdout) vets each run's output."""
    if warmup:
        for name, command in commands.items():
            check(name, timed_run(command)[1])
    samples: dict[str, list[float]] = {name: [] for name in commands}
    for _ in range(runs):
        for name, command in commands.items():
            elapsed, out = timed_run(command)
            check(name, out)
            samples[name].append(elapsed)
    return {name: Stat.of(times) for name, times in samples.items()}


# ---- the benchmarks ----------------------------------------------------------------------

def cold_start(km: Path, interpreter: str, hello: Path, settings: Settings) -> Section:
    python = f"{os.path.basename(interpreter)} -S -c pass"
    commands = {
        "km": [str(km), str(hello)],
        "native": [str(hello)],
        "python": [interpreter, "-S", "-c", "pass"],
    }

    def check(name: str, out: str) -> None:
        if name != "python" and out != "hello\n":
            raise BenchError(f"{name} hello printed {out!r}, not 'hello\\n'")

    stats = sample(commands, settings.start_runs, check)
    note = runs_note(settings.start_runs)
    rows = [Row("km", "km hello", stats["km"], note),
            Row("native", "native hello", stats["native"], note),
            Row("python", python, stats["python"], note)]
    ratio = ratio_of(f"km hello / {python}", "start_km_over_python", stats["km"],
                     stats["python"], 1.5, higher_is_better=False)
    return Section("cold start", "cold_start_ms", 1e-3, rows, ratio)


def per_iteration(argv_for: Callable[[int], list[str]], n: int, runs: int) -> Stat:
    """Cost of one loop iteration: (wall(N) - wall(0)) / N."""
    stats = sample({"0": argv_for(0), "n": argv_for(n)}, runs)
    return stats["n"].minus(stats["0"], n)


def minivmm_per_call(minivmm: Path, mode: str, n: int, runs: int) -> Stat:
    """minivmm times its own run loop and prints nanoseconds per iteration."""
    timed_run([str(minivmm), mode, "100"])  # warm-up
    samples = []
    for _ in range(runs):
        out = timed_run([str(minivmm), mode, str(n)])[1]
        try:
            samples.append(float(out) * 1e-9)
        except ValueError:
            raise BenchError(f"minivmm printed {out!r}, not nanoseconds") from None
    return Stat.of(samples)


def syscall_round_trip(km: Path, minivmm: Path, getppid_loop: Path,
                       settings: Settings) -> Section:
    n, native_n, runs = settings.syscall_n, settings.native_syscall_n, settings.syscall_runs
    km_stat = per_iteration(lambda i: [str(km), str(getppid_loop), str(i)], n, runs)
    minivmm_stat = minivmm_per_call(minivmm, "syscall", n, runs)
    exit_stat = minivmm_per_call(minivmm, "out", n, runs)
    native_stat = per_iteration(lambda i: [str(getppid_loop), str(i)], native_n, runs)
    rows = [
        Row("km", "km getppid_loop", km_stat, f"N={n:,}, (t(N) - t(0)) / N, {runs_note(runs)}"),
        Row("minivmm", "minivmm syscall", minivmm_stat, f"N={n:,}, self-timed, {runs_note(runs)}"),
        Row("minivmm_out", "minivmm out", exit_stat,
            f"N={n:,}, self-timed, {runs_note(runs)}; bare exit, reference"),
        Row("native", "native getppid_loop", native_stat,
            f"N={native_n:,}, (t(N) - t(0)) / N, {runs_note(runs)}"),
    ]
    ratio = ratio_of("km / minivmm per syscall", "syscall_km_over_minivmm", km_stat,
                     minivmm_stat, 1.25, higher_is_better=False)
    return Section("syscall round trip", "syscall_us", 1e-6, rows, ratio)


def cpu_iterations(cpu_loop: Path, seconds: float) -> int:
    """N for which native cpu_loop N takes about `seconds` (two significant digits)."""
    elapsed = min(timed_run([str(cpu_loop), str(CPU_CALIBRATION_N)])[0] for _ in range(3))
    n = max(int(CPU_CALIBRATION_N * seconds / elapsed), 1)
    digits = len(str(n)) - 2
    return round(n, -digits) if digits > 0 else n


def cpu_bound(km: Path, cpu_loop: Path, settings: Settings) -> Section:
    n = cpu_iterations(cpu_loop, settings.cpu_seconds)
    commands = {
        "native 0": [str(cpu_loop), "0"],
        "native N": [str(cpu_loop), str(n)],
        "km 0": [str(km), str(cpu_loop), "0"],
        "km N": [str(km), str(cpu_loop), str(n)],
    }
    first_output: dict[str, str] = {}

    def check(name: str, out: str) -> None:
        """km must compute what native computes."""
        expected = first_output.setdefault(name.split()[1], out)
        if out != expected:
            raise BenchError(f"cpu_loop printed {out.strip()!r}, expected {expected.strip()!r}")

    stats = sample(commands, settings.cpu_runs, check, warmup=False)
    km_stat = stats["km N"].minus(stats["km 0"])
    native_stat = stats["native N"].minus(stats["native 0"])
    note = f"N={n:,}, t(N) - t(0), {runs_note(settings.cpu_runs)}"
    rows = [Row("km", "km cpu_loop", km_stat, note),
            Row("native", "native cpu_loop", native_stat, note)]
    # Throughput is N / time, so km's throughput / native's is native's time / km's.
    ratio = ratio_of("km throughput / native", "cpu_km_throughput_over_native",
                     native_stat, km_stat, 0.97, higher_is_better=True)
    return Section("CPU-bound", "cpu_s", 1.0, rows, ratio)


# ---- reporting ---------------------------------------------------------------------------

def format_time(seconds: float) -> str:
    for unit, scale in (("s", 1.0), ("ms", 1e-3), ("us", 1e-6)):
        if abs(seconds) >= scale:
            return f"{seconds / scale:.2f} {unit}"
    return f"{seconds / 1e-9:.1f} ns"


def host_description() -> str:
    model = platform.machine()
    try:
        with open("/proc/cpuinfo") as f:
            model = next((line.split(":", 1)[1].strip() for line in f
                          if line.startswith("model name")), model)
    except OSError:
        pass
    kvm = "PVM" if os.path.isdir("/sys/module/kvm_pvm") else "KVM"
    return f"{model}, {os.cpu_count()} CPUs, {kvm}, Linux {platform.release()}"


def table(sections: list[Section]) -> list[str]:
    lines = [f"{'benchmark':<20}{'subject':<24}{'best':>11}{'median':>11}   note"]
    for section in sections:
        for i, row in enumerate(section.rows):
            title = section.title if i == 0 else ""
            lines.append(f"{title:<20}{row.subject:<24}{format_time(row.stat.best):>11}"
                         f"{format_time(row.stat.median):>11}   {row.note}")
    lines += ["", f"{'ratio':<44}{'best':>8}{'median':>8}{'target':>10}   status"]
    for section in sections:
        r = section.ratio
        target = (">= " if r.higher_is_better else "<= ") + f"{r.target:g}"
        lines.append(f"{r.name:<44}{r.best:>8.3f}{r.median:>8.3f}{target:>10}   "
                     f"{'ok' if r.met else 'MISSED'}")
    return [line.rstrip() for line in lines]


def significant(value: float) -> float:
    return float(f"{value:.4g}")


def summary(sections: list[Section], errors: list[str], quick: bool) -> dict[str, object]:
    """The JSON summary: [best, median] per subject in each section's unit, and ratios."""
    result: dict[str, object] = {"host": host_description(), "quick": quick}
    for section in sections:
        result[section.key] = {row.key: [significant(row.stat.best / section.unit),
                                         significant(row.stat.median / section.unit)]
                               for row in section.rows}
    result["ratios"] = {s.ratio.key: round(s.ratio.best, 3) for s in sections}
    result["targets_met"] = {s.ratio.key: s.ratio.met for s in sections}
    result["errors"] = errors
    return result


# ---- main --------------------------------------------------------------------------------

def parse_args(argv: Sequence[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--quick", action="store_true",
                        help="a fast smoke run: few iterations, rough figures")
    parser.add_argument("--km", type=Path, default=DEFAULT_KM,
                        help=f"the km to measure (default {DEFAULT_KM})")
    return parser.parse_args(argv)


def main(argv: Sequence[str] | None = None) -> int:
    args = parse_args(argv)
    settings = QUICK if args.quick else FULL
    km = args.km.absolute()
    try:
        built = build_all()
        interpreter, flags = km_interpreter(km)
    except BenchError as e:
        print(f"ERROR: {e}", file=sys.stderr)
        return 1
    print(f"km:          {km}\n"
          f"interpreter: {interpreter} (shebang flags: {flags or 'none'})\n"
          f"host:        {host_description()}"
          + ("\n--quick: few iterations, the figures are rough" if args.quick else ""))
    benchmarks: list[tuple[str, Callable[[], Section]]] = [
        ("cold start", lambda: cold_start(km, interpreter, built["hello"], settings)),
        ("syscall round trip",
         lambda: syscall_round_trip(km, built["minivmm"], built["getppid_loop"], settings)),
        ("CPU-bound", lambda: cpu_bound(km, built["cpu_loop"], settings)),
    ]
    sections: list[Section] = []
    errors: list[str] = []
    for title, benchmark in benchmarks:
        try:
            sections.append(benchmark())
        except BenchError as e:
            errors.append(f"{title}: {e}")
    print("", *table(sections), *(f"ERROR: {e}" for e in errors), sep="\n")
    print(json.dumps(summary(sections, errors, args.quick)))
    return 1 if errors else 0


if __name__ == "__main__":
    sys.exit(main())
