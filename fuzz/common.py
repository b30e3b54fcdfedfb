"""What the fuzzers share: building the C programs, running km (in the sandbox when
namespaces work here), and deciding whether a run found a km bug.

A run is a failure when km's output holds a Python traceback or an "internal error"
line, when it hangs (the timeout), or when km ended by a signal although km did not say
the payload was killed by it (km runs with ``-V=exit``, which logs how the payload ended,
so a km that crashes by itself is told apart from a payload that died). Each problem has
a *signature*, the message with its numbers blanked, so that a thousand runs hitting one
bug count as one bug.
"""

from __future__ import annotations

import hashlib
import os
import re
import shlex
import shutil
import signal
import subprocess
import tempfile
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
FUZZ_DIR = REPO / "fuzz"
CACHE = REPO / ".cache" / "fuzz"
BIN_CACHE = CACHE / "bin"
FAILURES = CACHE / "failures"
SCRATCH = CACHE / "tmp"

#: Signals a program can die of by its own doing (faults, abort, a broken pipe, limits).
PLAUSIBLE_SIGNALS = {
    signal.SIGSEGV, signal.SIGBUS, signal.SIGILL, signal.SIGFPE, signal.SIGTRAP,
    signal.SIGSYS, signal.SIGPIPE, signal.SIGXFSZ, signal.SIGXCPU, signal.SIGABRT,
}

#: km's -V trace lines: "km:   0.123456 exit: exit status 0".
TRACE_LINE = re.compile(rb"^km: +\d+\.\d+ \w+: ")
KILLED_TRACE = re.compile(rb"^km: +\d+\.\d+ exit: killed by signal (\d+)", re.M)
INTERNAL_ERROR = re.compile(rb"^.*internal error.*$", re.M)
TRACEBACK_START = b"Traceback (most recent call last):"


def km_command() -> list[str]:
    """km as the tests run it: $KM split on whitespace, else the venv's km."""
    override = os.environ.get("KM", "").split()
    return override or [str(REPO / ".venv" / "bin" / "km")]


# --------------------------------------------------------------------------------------
# Building


_build_lock = threading.Lock()


def build(source: Path, compiler: str, flags: tuple[str, ...], name: str) -> Path:
    """Compile one C file, cached under .cache/fuzz/bin by a hash of source and flags."""
    command = [compiler, *flags, "-o", "OUT", str(source)]
    digest = hashlib.sha256(source.read_bytes() + repr(command).encode()).hexdigest()[:16]
    output = BIN_CACHE / f"{name}.{digest}"
    with _build_lock:
        if output.exists():
            return output
        if shutil.which(compiler) is None:
            raise RuntimeError(f"{compiler} is not installed: cannot build {source.name}")
        BIN_CACHE.mkdir(parents=True, exist_ok=True)
        partial = output.with_name(f".{output.name}.{os.getpid()}.tmp")
        command[command.index("OUT")] = str(partial)
        done = subprocess.run(command, capture_output=True, text=True)
        if done.returncode != 0:
            partial.unlink(missing_ok=True)
            raise RuntimeError(f"building {source.name} failed:\n$ {shlex.join(command)}\n"
                               f"{done.stdout}{done.stderr}")
        os.replace(partial, output)
        for stale in BIN_CACHE.glob(f"{name}.*"):
            if stale != output and not stale.name.startswith("."):
                stale.unlink(missing_ok=True)
        return output


def sandbox_binary() -> Path:
    return build(FUZZ_DIR / "sandbox.c", "gcc", ("-static", "-O2", "-Wall"), "sandbox")


_sandbox_ok: bool | None = None


def sandbox_available() -> bool:
    """Can we make namespaces here (root, or a kernel that lets us)? Asked once."""
    global _sandbox_ok
    if _sandbox_ok is None:
        try:
            done = subprocess.run([str(sandbox_binary()), "--check"], capture_output=True,
                                  timeout=30)
            _sandbox_ok = done.returncode == 0
        except (OSError, RuntimeError, subprocess.TimeoutExpired):
            _sandbox_ok = False
    return _sandbox_ok


# --------------------------------------------------------------------------------------
# Running


@dataclass
class Run:
    argv: list[str]
    status: int  # exit status, or 128 + N when signal N ended the process
    signaled: bool
    output: bytes  # stdout and stderr, interleaved as written
    timed_out: bool
    duration: float

    @property
    def signal(self) -> int:
        return self.status - 128 if self.signaled else 0

    def describe(self) -> str:
        if self.timed_out:
            how = f"timed out after {self.duration:.1f}s"
        elif self.signaled:
            how = f"killed by {_signal_name(self.signal)}"
        else:
            how = f"exit {self.status}"
        return f"{how} ({self.duration:.2f}s)"


def _signal_name(number: int) -> str:
    try:
        return signal.Signals(number).name
    except ValueError:
        return f"signal {number}"


def _no_core_dumps() -> None:
    import resource
    resource.setrlimit(resource.RLIMIT_CORE, (0, 0))


def run(argv: list[str], timeout: float, cwd: str | os.PathLike | None = None,
        env: dict[str, str] | None = None) -> Run:
    """Run argv in a session of its own, output to one file (so that the payload's lines
    and km's messages keep their order); on timeout the whole session is killed."""
    env = env if env is not None else {"PATH": "/usr/local/bin:/usr/bin:/bin",
                                       "HOME": "/root", "LC_ALL": "C", "TZ": "UTC"}
    with tempfile.TemporaryFile() as out:
        start = time.monotonic()
        proc = subprocess.Popen(argv, cwd=cwd, env=env, stdin=subprocess.DEVNULL, stdout=out,
                                stderr=subprocess.STDOUT, start_new_session=True,
                                preexec_fn=_no_core_dumps)
        timed_out = False
        try:
            proc.wait(timeout)
        except subprocess.TimeoutExpired:
            timed_out = True
            try:
                os.killpg(proc.pid, signal.SIGKILL)
            except ProcessLookupError:
                pass
            proc.wait()
        duration = time.monotonic() - start
        out.seek(0)
        output = out.read()
    rc = proc.returncode
    return Run(argv, 128 - rc if rc < 0 else rc, rc < 0, output, timed_out, duration)


def in_sandbox(root: Path, copies: list[tuple[Path, str]], argv: list[str]) -> list[str]:
    """argv run inside the sandbox (fresh namespaces, a tmpfs on root holding copies), or
    argv itself when namespaces are not available here."""
    if not sandbox_available():
        return argv
    command = [str(sandbox_binary())]
    for source, dest in copies:
        command += ["-c", f"{source}:{dest}"]
    return [*command, str(root), "--", *argv]


def prepare_root(root: Path, copies: list[tuple[Path, str]]) -> None:
    """Without the sandbox, the copies go into the (host) directory itself."""
    if sandbox_available():
        root.mkdir(parents=True, exist_ok=True)
        return
    for source, dest in copies:
        target = root / dest
        target.parent.mkdir(parents=True, exist_ok=True)
        shutil.copy2(source, target)


def scratch_dir(prefix: str) -> Path:
    """A throwaway directory (the sandbox's mount point, or the root itself)."""
    SCRATCH.mkdir(parents=True, exist_ok=True)
    return Path(tempfile.mkdtemp(prefix=prefix, dir=SCRATCH))


def remove_dir(path: Path) -> None:
    shutil.rmtree(path, ignore_errors=True)


# --------------------------------------------------------------------------------------
# Judging


def normalize(text: str) -> str:
    """A message with its numbers blanked: the same bug reads the same in every run."""
    text = re.sub(r"0x[0-9a-fA-F]+", "0x_", text)
    text = re.sub(r"\d+", "N", text)
    return text.strip()


@dataclass
class Problem:
    signature: str  # what identifies the bug
    detail: str  # what was seen (the traceback, the line)


def tracebacks(output: bytes) -> list[Problem]:
    """Every Python traceback in the output, keyed by its last line (the exception)."""
    problems = []
    lines = output.decode(errors="replace").splitlines()
    for i, line in enumerate(lines):
        if TRACEBACK_START.decode() not in line:
            continue
        block = [line]
        for follow in lines[i + 1:i + 80]:
            block.append(follow)
            if follow and not follow.startswith((" ", "\t", "Traceback")):
                break
        problems.append(Problem(f"traceback: {normalize(block[-1])}", "\n".join(block)))
    return problems


def internal_errors(output: bytes) -> list[Problem]:
    problems = []
    for match in INTERNAL_ERROR.finditer(output):
        line = match.group().decode(errors="replace")
        problems.append(Problem(normalize(line[line.index("internal error"):]), line))
    return problems


def km_problems(result: Run, what: str) -> list[Problem]:
    """The km failures in one run: tracebacks, internal errors, a hang, and a death by
    signal that km did not report as the payload's."""
    problems = tracebacks(result.output) + internal_errors(result.output)
    if result.timed_out:
        problems.append(Problem(f"hang: {what}", f"no exit after {result.duration:.1f}s"))
    elif result.status > 128:
        number = result.status - 128
        killed = {int(n) for n in KILLED_TRACE.findall(result.output)}
        exited = re.search(rb"^km: +\d+\.\d+ exit: exit status %d$" % result.status,
                           result.output, re.M)
        if number not in killed and not (exited and not result.signaled):
            problems.append(Problem(
                f"km died of {_signal_name(number)} by itself (not the payload)",
                f"status {result.status}, and no 'exit: killed by signal {number}' trace"))
    return problems


def km_error_lines(output: bytes) -> list[str]:
    """km's own messages ("km: ..."), not its -V trace lines."""
    return [line.decode(errors="replace") for line in output.splitlines()
            if line.startswith(b"km: ") and not TRACE_LINE.match(line)]


@dataclass
class Failure:
    fuzzer: str  # "syscall", "elf", "cli"
    signature: str
    detail: str
    reproducer: str  # how to see it again (a command line, a call)
    artifacts: list[str] = field(default_factory=list)
    rank: int = 0  # how good the reproducer is: 0 is best (one call, one file)

    def report(self) -> str:
        text = [f"[{self.fuzzer}] {self.signature}", f"  reproduce: {self.reproducer}"]
        text += [f"  kept: {path}" for path in self.artifacts]
        detail = self.detail.strip().splitlines()
        if detail:
            text.append("  seen:")
            text += [f"    {line}" for line in detail[-25:]]
        return "\n".join(text)


def save_failure(name: str, content: bytes, note: str) -> Path:
    """Keep a reproducer file (a mutant, an output) under .cache/fuzz/failures."""
    FAILURES.mkdir(parents=True, exist_ok=True)
    path = FAILURES / name
    path.write_bytes(content)
    path.with_name(path.name + ".txt").write_text(note + "\n")
    return path


def dedupe(failures: list[Failure]) -> list[Failure]:
    """One failure per (fuzzer, signature): the one with the best reproducer."""
    seen: dict[tuple[str, str], Failure] = {}
    for failure in failures:
        key = (failure.fuzzer, failure.signature)
        if key not in seen or failure.rank < seen[key].rank:
            seen[key] = failure
    return list(seen.values())
