"""Shared fixtures for km's tests.

The integration tests (tests/integration/) run each payload twice, natively and under km,
and compare what the two runs print and how they end. This file provides:

* ``km_command()`` / the ``km`` fixture: the km command line. ``KM`` in the environment
  (split on whitespace) overrides the default ``<repo>/.venv/bin/km``.
* ``kvm`` (session): fails, with a one-line reason, when /dev/kvm is missing.
* ``payloads`` (session): builds ``tests/payloads/NAME.c`` in one of three *flavours*
  (musl static, glibc static, glibc static-pie), cached under ``<repo>/.cache/payloads``.
  The ``flavour`` fixture parametrizes a test over all three.
* ``run_native`` / ``run_km`` / ``run_both``: run a command with a fixed environment,
  stdin from /dev/null and a timeout, returning a ``Result`` (status, output, peak RSS).
* ``assert_same`` (fixture; the function is ``compare_runs``): compare two results
  (status, stdout, stderr) with a readable diff.
"""

from __future__ import annotations

import difflib
import hashlib
import os
import resource
import shlex
import shutil
import signal
import subprocess
import tempfile
import threading
import time
from dataclasses import dataclass
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parent.parent
PAYLOAD_SOURCES = REPO / "tests" / "payloads"
PAYLOAD_CACHE = REPO / ".cache" / "payloads"

DEFAULT_TIMEOUT = 60.0

# The environment every payload run gets (natively and under km), so that runs are
# reproducible whatever the shell running pytest has exported.
BASE_ENV = {
    "PATH": os.environ.get("PATH", "/usr/local/bin:/usr/bin:/bin"),
    "HOME": "/root",
    "LC_ALL": "C",
    "TZ": "UTC",
}


# --------------------------------------------------------------------------------------
# The km command and /dev/kvm


def km_command() -> list[str]:
    """The command that runs km: $KM split on whitespace, else the venv's km with
    --strict (a km bug in a system call ends the payload rather than returning EIO,
    so no test can pass over one)."""
    override = os.environ.get("KM", "").split()
    return override or [str(REPO / ".venv" / "bin" / "km"), "--strict"]


@pytest.fixture(scope="session")
def kvm() -> None:
    """km needs /dev/kvm: without it every km test would fail obscurely, so say why."""
    if not os.path.exists("/dev/kvm"):
        pytest.fail("/dev/kvm does not exist: km needs KVM (enable virtualization or "
                    "pass /dev/kvm into this container)", pytrace=False)


@pytest.fixture(scope="session")
def km(kvm) -> list[str]:
    """The km command, checked to exist (a wrong $KM fails once, clearly)."""
    command = km_command()
    if shutil.which(command[0]) is None:
        pytest.fail(f"km command {command[0]!r} not found or not executable "
                    f"(set KM, or install km into {REPO / '.venv'})", pytrace=False)
    return command


# --------------------------------------------------------------------------------------
# Payloads


@dataclass(frozen=True)
class Flavour:
    name: str
    compiler: str
    flags: tuple[str, ...]
    pie: bool


FLAVOURS = {
    "musl": Flavour("musl", "musl-gcc", ("-static", "-O2"), pie=False),
    "glibc": Flavour("glibc", "gcc", ("-static", "-O2"), pie=False),
    "glibc-pie": Flavour("glibc-pie", "gcc", ("-static-pie", "-O2", "-fPIE"), pie=True),
}

# Extra link flags for the payloads that need them (keep flavours otherwise identical).
EXTRA_FLAGS: dict[str, tuple[str, ...]] = {}


class PayloadBuilder:
    """Compiles tests/payloads/NAME.c per flavour; the file name carries the build's hash,
    so editing a source (or a header beside it, or the flags) rebuilds it."""

    def __init__(self, source_dir: Path = PAYLOAD_SOURCES, cache: Path = PAYLOAD_CACHE):
        self.source_dir = source_dir
        self.cache = cache
        self._lock = threading.Lock()

    def command(self, name: str, flavour: Flavour, output: Path) -> list[str]:
        source = self.source_dir / f"{name}.c"
        return [flavour.compiler, *flavour.flags, "-Wall", "-Wno-unused-result",
                f"-DPAYLOAD_FLAVOUR=\"{flavour.name}\"", f"-DPAYLOAD_PIE={int(flavour.pie)}",
                "-o", str(output), str(source), *EXTRA_FLAGS.get(name, ())]

    def _hash(self, name: str, flavour: Flavour) -> str:
        h = hashlib.sha256()
        h.update((self.source_dir / f"{name}.c").read_bytes())
        for header in sorted(self.source_dir.glob("*.h")):
            h.update(header.name.encode() + b"\0" + header.read_bytes())
        h.update(repr(self.command(name, flavour, Path("out"))).encode())
        return h.hexdigest()[:16]

    def build(self, name: str, flavour: str | Flavour) -> Path:
        fl = FLAVOURS[flavour] if isinstance(flavour, str) else flavour
        source = self.source_dir / f"{name}.c"
        if not source.exists():
            raise FileNotFoundError(f"no payload source {source}")
        with self._lock:
            digest = self._hash(name, fl)
            output = self.cache / f"{name}.{fl.name}.{digest}"
            if output.exists():
                return output
            if shutil.which(fl.compiler) is None:
                pytest.fail(f"{fl.compiler} is not installed: cannot build the "
                            f"{fl.name} payloads", pytrace=False)
            self.cache.mkdir(parents=True, exist_ok=True)
            partial = output.with_name(f".{output.name}.{os.getpid()}.tmp")
            cmd = self.command(name, fl, partial)
            done = subprocess.run(cmd, capture_output=True, text=True)
            if done.returncode != 0:
                partial.unlink(missing_ok=True)
                pytest.fail(f"building payload {name} ({fl.name}) failed:\n"
                            f"$ {shlex.join(cmd)}\n{done.stdout}{done.stderr}", pytrace=False)
            os.replace(partial, output)  # atomic: parallel sessions never see half a file
            for stale in self.cache.glob(f"{name}.{fl.name}.*"):
                if stale != output:
                    stale.unlink(missing_ok=True)
            return output


@pytest.fixture(scope="session")
def payloads() -> PayloadBuilder:
    return PayloadBuilder()


@pytest.fixture(params=list(FLAVOURS), ids=list(FLAVOURS))
def flavour(request) -> Flavour:
    """Parametrizes a test over the three ways of building a static payload."""
    return FLAVOURS[request.param]


# --------------------------------------------------------------------------------------
# Running payloads


@dataclass
class Result:
    argv: list[str]
    returncode: int  # as subprocess reports it: -N when signal N killed the process
    stdout: bytes
    stderr: bytes
    duration: float
    maxrss_kib: int = 0
    cwd: str | None = None
    timed_out: bool = False

    @property
    def out(self) -> str:
        return self.stdout.decode(errors="replace")

    @property
    def err(self) -> str:
        return self.stderr.decode(errors="replace")

    def describe(self) -> str:
        where = f" (in {self.cwd})" if self.cwd else ""
        if self.returncode >= 0:
            status = f"exit {self.returncode}"
        else:
            try:
                status = f"killed by {signal.Signals(-self.returncode).name}"
            except ValueError:
                status = f"killed by signal {-self.returncode}"
        if self.timed_out:
            status = f"TIMED OUT, {status}"
        return f"$ {shlex.join(self.argv)}{where}\n  -> {status} after {self.duration:.2f}s"


def default_signals() -> None:
    """Every signal at its default action and unblocked (payloads inherit both, under
    km as natively: a pytest run under nohup must not make SIGHUP tests hang)."""
    for signo in range(1, signal.NSIG):
        if signo not in (signal.SIGKILL, signal.SIGSTOP):
            try:
                signal.signal(signo, signal.SIG_DFL)
            except (OSError, ValueError):
                pass  # numbers the C library keeps for itself
    signal.pthread_sigmask(signal.SIG_SETMASK, [])


def child_setup() -> None:
    """A test's child starts clean, whatever pytest was started with: default_signals,
    and no core files from payloads that die of SIGSEGV."""
    default_signals()
    resource.setrlimit(resource.RLIMIT_CORE, (0, 0))


def run(argv: list[str], *, cwd: str | os.PathLike | None = None,
        env: dict[str, str] | None = None, timeout: float = DEFAULT_TIMEOUT,
        stdin=subprocess.DEVNULL) -> Result:
    """Run argv to completion; stdout/stderr go to files (no pipe-size deadlocks) and the
    child is reaped with wait4, which also gives its peak RSS."""
    env = dict(BASE_ENV if env is None else env)
    with tempfile.TemporaryFile() as out, tempfile.TemporaryFile() as err:
        start = time.monotonic()
        proc = subprocess.Popen([str(a) for a in argv], cwd=cwd, env=env, stdin=stdin,
                                stdout=out, stderr=err, preexec_fn=child_setup)
        timed_out = threading.Event()

        def kill() -> None:
            timed_out.set()
            try:
                os.kill(proc.pid, signal.SIGKILL)
            except ProcessLookupError:
                pass

        timer = threading.Timer(timeout, kill)
        timer.start()
        try:
            _, status, usage = os.wait4(proc.pid, 0)
        finally:
            timer.cancel()
        duration = time.monotonic() - start
        proc.returncode = os.waitstatus_to_exitcode(status)  # Popen must not wait again
        out.seek(0)
        err.seek(0)
        return Result([str(a) for a in argv], proc.returncode, out.read(), err.read(),
                      duration, usage.ru_maxrss, str(cwd) if cwd else None,
                      timed_out.is_set())



def wait_until(condition, what: str, timeout: float = 60):
    """Poll condition() until it returns something true (for what offers no event to
    wait on: a daemon's state, /proc); fail the test after timeout seconds."""
    deadline = time.monotonic() + timeout
    while True:
        value = condition()
        if value:
            return value
        if time.monotonic() > deadline:
            pytest.fail(f"still waiting, after {timeout} s, for {what}")
        time.sleep(0.05)

@dataclass
class Both:
    native: Result
    km: Result


@pytest.fixture
def base_env() -> dict[str, str]:
    """The environment run_* give payloads (for tests that start processes themselves)."""
    return dict(BASE_ENV)


@pytest.fixture
def run_native(tmp_path):
    """run_native(argv, cwd=tmp_path, env=BASE_ENV, timeout=60) -> Result"""
    def run_native(argv, **kwargs) -> Result:
        kwargs.setdefault("cwd", tmp_path)
        return run(list(argv), **kwargs)
    return run_native


@pytest.fixture
def run_km(km, tmp_path):
    """run_km(argv, cwd=tmp_path, env=BASE_ENV, timeout=60) -> Result: km argv..."""
    def run_km(argv, **kwargs) -> Result:
        kwargs.setdefault("cwd", tmp_path)
        return run([*km, *argv], **kwargs)
    return run_km


@pytest.fixture
def run_both(km, tmp_path):
    """run_both(argv, cwd=tmp_path, env=BASE_ENV, timeout=60) -> Both(native, km): the
    same argv, environment and working directory, natively then under km."""
    def run_both(argv, **kwargs) -> Both:
        argv = [str(a) for a in argv]
        kwargs.setdefault("cwd", tmp_path)
        return Both(run(argv, **kwargs), run([*km, *argv], **kwargs))
    return run_both


# --------------------------------------------------------------------------------------
# Comparing


def _diff(name: str, native: bytes, under_km: bytes) -> str:
    a = native.decode(errors="backslashreplace").splitlines(keepends=True)
    b = under_km.decode(errors="backslashreplace").splitlines(keepends=True)
    if len(a) + len(b) > 4000:  # binary or huge output: sizes and the first difference
        pairs = zip(native, under_km, strict=False)
        first = next((i for i, (x, y) in enumerate(pairs) if x != y),
                     min(len(native), len(under_km)))
        around = slice(max(0, first - 16), first + 16)
        return (f"{name} differs: native {len(native)} bytes, km {len(under_km)} bytes, "
                f"first difference at byte {first}:\n  native {native[around]!r}\n"
                f"  km     {under_km[around]!r}\n")
    lines = difflib.unified_diff(a, b, f"{name} (native)", f"{name} (km)", n=3)
    return "".join(line if line.endswith("\n") else line + "\n\\ no newline\n"
                   for line in lines)


def compare_runs(native: Result, under_km: Result, *, stdout: bool = True,
                stderr: bool = True, status: bool = True) -> None:
    """km must behave like the native run: same exit status, stdout and (unless told the
    stderr is not deterministic) stderr. Fails with both commands and unified diffs."""
    problems = []
    if status and native.returncode != under_km.returncode:
        problems.append(f"exit status differs: native {native.returncode}, "
                        f"km {under_km.returncode}\n")
    if stdout and native.stdout != under_km.stdout:
        problems.append(_diff("stdout", native.stdout, under_km.stdout))
    if stderr and native.stderr != under_km.stderr:
        problems.append(_diff("stderr", native.stderr, under_km.stderr))
    if under_km.timed_out and not native.timed_out:
        problems.insert(0, "km timed out\n")
    if problems:
        report = [f"km does not match the native run\nnative: {native.describe()}\n"
                  f"km:     {under_km.describe()}\n", *problems]
        if not stderr and under_km.stderr:
            report.append(f"km's stderr:\n{under_km.err[-3000:]}\n")
        raise AssertionError("".join(report))


@pytest.fixture
def assert_same():
    """assert_same(native, km, stdout=True, stderr=True, status=True)"""
    return compare_runs


def pytest_configure(config) -> None:
    config.addinivalue_line("markers", "slow: a test that takes seconds (still run by default)")


def processes_with(marker: str) -> list[int]:
    """Pids of the host processes whose command line holds marker (km shows its
    payload's argv): what a test that kills a payload checks is gone."""
    found = []
    for entry in os.listdir("/proc"):
        if entry.isdigit():
            try:
                with open(f"/proc/{entry}/cmdline", "rb") as f:
                    if marker.encode() in f.read():
                        found.append(int(entry))
            except OSError:
                pass
    return found
