"""Go programs (static, CGO_ENABLED=0, standard library only) natively and under km.

The Go runtime is a demanding guest: many OS threads (clone), futexes, signals sent to
running threads for preemption (SIGURG via tgkill), sigaltstack on every thread, a
SIGSEGV handler that turns faults into panics by editing the signal context, and lots
of mmap/madvise for the GC. Sources are in tests/go/NAME/ (one main package each);
binaries are cached under .cache/go/ by a hash of the sources and the go version, with
the build cache in .cache/gocache.
"""

from __future__ import annotations

import hashlib
import os
import shutil
import signal
import subprocess
import threading
from pathlib import Path

import pytest
from conftest import REPO

GO_SOURCES = REPO / "tests" / "go"
GO_BINARIES = REPO / ".cache" / "go"
GO_BUILD_CACHE = REPO / ".cache" / "gocache"

_lock = threading.Lock()
_go_version: list[str] = []


def _go() -> str:
    go = shutil.which("go") or next(
        (p for p in ("/usr/lib/go/bin/go", "/usr/local/go/bin/go") if os.path.exists(p)), None)
    if go is None:
        pytest.fail("the go toolchain is not installed (apt-get install golang-go)",
                    pytrace=False)
    return go


def build_go(name: str) -> Path:
    """Build tests/go/NAME into a static executable (cached)."""
    src = GO_SOURCES / name
    go = _go()
    with _lock:
        if not _go_version:
            _go_version.append(subprocess.run([go, "version"], capture_output=True,
                                              text=True, check=True).stdout.strip())
        h = hashlib.sha256(_go_version[0].encode())
        for f in sorted(src.rglob("*")):
            if f.is_file():
                h.update(str(f.relative_to(src)).encode() + b"\0" + f.read_bytes())
        out = GO_BINARIES / f"{name}.{h.hexdigest()[:16]}"
        if out.exists():
            return out
        GO_BINARIES.mkdir(parents=True, exist_ok=True)
        partial = out.with_name(f".{out.name}.{os.getpid()}.tmp")
        env = {
            "PATH": os.environ.get("PATH", "/usr/bin:/bin"),
            "HOME": os.environ.get("HOME", "/root"),
            "GOCACHE": str(GO_BUILD_CACHE),
            "GOPATH": str(REPO / ".cache" / "gopath"),
            "CGO_ENABLED": "0",
            "GOPROXY": "off",
            "GOFLAGS": "",
            "GO111MODULE": "on",
        }
        cmd = [go, "build", "-trimpath", "-o", str(partial), "."]
        done = subprocess.run(cmd, cwd=src, env=env, capture_output=True, text=True)
        if done.returncode != 0:
            partial.unlink(missing_ok=True)
            pytest.fail(f"building Go program {name} failed:\n$ (cd {src} && "
                        f"{' '.join(cmd)})\n{done.stdout}{done.stderr}", pytrace=False)
        os.replace(partial, out)
        for stale in GO_BINARIES.glob(f"{name}.*"):
            if stale != out:
                stale.unlink(missing_ok=True)
        return out


def go_both(run_both, name, *args, timeout=90):
    runs = run_both([build_go(name), *args], timeout=timeout)
    assert not runs.native.timed_out, f"the native run timed out:\n{runs.native.out}"
    return runs


def test_goroutines_channels_waitgroup_preemption(run_both, assert_same):
    runs = go_both(run_both, "goroutines")
    out = runs.native.out
    assert runs.native.returncode == 0, runs.native.err
    assert "fan-out: 2000 results, sum of squares 2668667000\n" in out
    assert "mutex counter: 64000, atomic counter: 128000\n" in out
    assert "preemption: the spinning goroutine was preempted and stopped: true\n" in out
    assert "blocking reads in 32 goroutines: sum 528\n" in out
    assert "goroutines: done\n" in out
    assert_same(runs.native, runs.km)


def test_sleep_timers_tickers(run_both, assert_same):
    runs = go_both(run_both, "timers")
    out = runs.native.out
    assert runs.native.returncode == 0, runs.native.err
    assert "ticker: 10 ticks" in out
    assert "context: context deadline exceeded\n" in out
    assert " no" not in out, out
    assert_same(runs.native, runs.km)


@pytest.mark.slow
def test_gc_under_allocation_pressure(run_both, assert_same):
    runs = go_both(run_both, "gc")
    out = runs.native.out
    assert runs.native.returncode == 0, runs.native.err
    assert "list: 20000 nodes, sum 199990000\n" in out
    assert "GC cycles >= 10: true\n" in out
    assert "total allocated >= 200 MB: true\n" in out
    assert_same(runs.native, runs.km)


def test_os_signal_notify_sigusr1_sigterm(run_both, assert_same):
    runs = go_both(run_both, "signals")
    out = runs.native.out
    assert runs.native.returncode == 0, runs.native.err
    assert "received user defined signal 1\nreceived terminated\n" in out
    assert "received user defined signal 1 sent from another goroutine\n" in out
    assert_same(runs.native, runs.km)


def test_sigterm_without_notify_kills(run_both, assert_same):
    runs = go_both(run_both, "signals", "die")
    assert runs.native.returncode == -signal.SIGTERM
    assert "SIGTERM with no Notify: the process dies\n" in runs.native.out
    assert_same(runs.native, runs.km)


def test_recovered_runtime_panics(run_both, assert_same):
    """recover() from a nil dereference (a SIGSEGV turned into a panic), division by
    zero, index out of range, explicit panic, nil map write."""
    runs = go_both(run_both, "panics", "recover")
    out = runs.native.out
    assert ("nil pointer: recovered runtime error: invalid memory address or nil pointer "
            "dereference\n") in out
    assert "divide by zero: recovered runtime error: integer divide by zero\n" in out
    assert "all recovered\n" in out
    assert_same(runs.native, runs.km)


@pytest.mark.parametrize("mode,lines", [("nilmap", 1), ("nilptr", 2)])
def test_unrecovered_panic_exits_2(run_both, assert_same, mode, lines):
    """An unrecovered panic: exit status 2 and the same first stderr line(s); for a nil
    dereference the second line reports the SIGSEGV's code, address and pc."""
    runs = go_both(run_both, "panics", mode)
    native, km = runs.native, runs.km
    assert native.returncode == 2
    head = native.err.splitlines()[:lines]
    if mode == "nilmap":
        assert head == ["panic: assignment to entry in nil map"]
    else:
        assert head[1].startswith("[signal SIGSEGV: segmentation violation code=0x1 addr=0x0")
    assert_same(native, km, stderr=False)
    assert km.err.splitlines()[:lines] == head, f"km's stderr:\n{km.err}"


def test_host_signals_reach_a_go_program(km):
    """SIGUSR1, SIGINT, SIGHUP and SIGTERM sent to the process from outside arrive on an
    os/signal channel while other goroutines allocate; SIGTERM makes it exit 0."""
    from .test_host_signals import Driven, assert_same_flow

    names = {signal.SIGUSR1: "user defined signal 1", signal.SIGINT: "interrupt",
             signal.SIGHUP: "hangup", signal.SIGTERM: "terminated"}
    exe = str(build_go("waiter"))

    def flow(argv):
        d = Driven(argv)
        try:
            d.expect("ready")
            for signo, name in names.items():
                d.send(signo)
                d.expect(f"got {name}")
            status = d.finish()
            return d.transcript(), status, d.stderr()
        finally:
            d.kill()

    native = flow([exe])
    assert native[:2] == ("ready\n" + "".join(f"got {n}\n" for n in names.values())
                          + "exiting with 0\n", 0), native
    assert_same_flow(native, flow([*km, exe]))
