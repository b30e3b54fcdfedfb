"""A km bug in the host-signal forwarder: survived and counted, or with --strict (the test
suite) the end of the process with 134, as a bug in a system call handler."""

from __future__ import annotations

import subprocess
import sys
import textwrap
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]

SCRIPT = textwrap.dedent("""
    import os, signal, sys, threading, types
    from kontain.monitor.hostsignals import HostSignals
    strict = sys.argv[1] == "strict"
    errors = []
    done = threading.Event()
    proc = types.SimpleNamespace(
        options=types.SimpleNamespace(strict=strict),
        fds=types.SimpleNamespace(move_high=lambda fd: fd),
        # (under strict the process must end before main wakes: it never does)
        internal_error=lambda place, e: (errors.append(place), strict or done.set()))
    forwarder = HostSignals(proc)
    def broken():
        raise RuntimeError("a km bug")
    forwarder._read_and_post = broken
    forwarder.start()
    os.kill(os.getpid(), signal.SIGUSR1)  # forwarded: blocked, read by the forwarder
    done.wait(30)
    print(errors, flush=True)
""")


def _run(mode: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-c", SCRIPT, mode], cwd=REPO, capture_output=True,
                          text=True, timeout=60)


def test_a_forwarder_bug_is_survived_and_counted() -> None:
    done = _run("lenient")
    assert done.returncode == 0, done.stderr
    assert done.stdout.startswith("['signal forwarding'")


def test_a_forwarder_bug_ends_the_process_under_strict() -> None:
    done = _run("strict")
    assert done.returncode == 134, (done.returncode, done.stdout, done.stderr)
