"""Signals sent from outside: the test starts the payload (natively, then under km) with
Popen, waits for its "ready" line, sends it signals with os.kill (under km, to the km
process, which must forward them to the guest), waits for the line that shows each was
handled, and compares the whole transcript and the exit status with the native run.

The payload is tests/payloads/sig_host.c; it is given the test's pid, so that its
handlers can check si_pid (the sender) as well.
"""

from __future__ import annotations

import os
import queue
import signal
import subprocess
import threading
import time

import pytest
from conftest import BASE_ENV, FLAVOURS, Flavour, child_setup

THREAD_FLAVOURS = {
    "musl": FLAVOURS["musl"],
    "glibc": Flavour("glibc-pthread", "gcc", ("-static", "-O2", "-pthread"), pie=False),
}

STEP_TIMEOUT = 10.0


@pytest.fixture(params=list(THREAD_FLAVOURS), ids=list(THREAD_FLAVOURS))
def sig_host(request, payloads):
    return payloads.build("sig_host", THREAD_FLAVOURS[request.param])


class Driven:
    """A payload run driven step by step; stdout is read line by line by a thread."""

    def __init__(self, argv: list[str], stdin_pipe: bool = False):
        self.argv = argv
        self.proc = subprocess.Popen(
            argv, stdin=subprocess.PIPE if stdin_pipe else subprocess.DEVNULL,
            stdout=subprocess.PIPE, stderr=subprocess.PIPE, env=dict(BASE_ENV),
            preexec_fn=child_setup)
        self.lines: list[str] = []
        self._queue: queue.Queue[str | None] = queue.Queue()
        self._err: list[bytes] = []
        threading.Thread(target=self._read_out, daemon=True).start()
        threading.Thread(target=self._read_err, daemon=True).start()

    def _read_out(self) -> None:
        for raw in self.proc.stdout:
            self._queue.put(raw.decode(errors="replace"))
        self._queue.put(None)

    def _read_err(self) -> None:
        self._err.append(self.proc.stderr.read())

    def transcript(self) -> str:
        return "".join(self.lines)

    def expect(self, text: str, timeout: float = STEP_TIMEOUT) -> None:
        """Wait for a line containing text (lines before it are kept in the transcript)."""
        deadline = time.monotonic() + timeout
        while True:
            left = deadline - time.monotonic()
            try:
                line = self._queue.get(timeout=max(left, 0.01))
            except queue.Empty:
                line = ""
            if line is None:
                raise AssertionError(f"{self.argv[0]}: ended before printing {text!r}; "
                                     f"output:\n{self.transcript()}{self.stderr()}")
            if line:
                self.lines.append(line)
                if text in line:
                    return
            if time.monotonic() >= deadline:
                self.kill()
                raise AssertionError(f"{' '.join(self.argv)}: no {text!r} within {timeout}s; "
                                     f"output so far:\n{self.transcript()}{self.stderr()}")

    def send(self, signo: int) -> None:
        os.kill(self.proc.pid, signo)

    def state(self) -> str:
        """The process's state letter from /proc (T when stopped)."""
        with open(f"/proc/{self.proc.pid}/stat") as f:
            return f.read().rsplit(")", 1)[1].split()[0]

    def wait_state(self, want: str, timeout: float = STEP_TIMEOUT) -> bool:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.state() == want:
                return True
            time.sleep(0.01)
        return False

    def wait_idle(self, settle: float = 0.05, timeout: float = STEP_TIMEOUT) -> None:
        """Wait until the main thread has been asleep for `settle` seconds: the payload
        is blocked in pause/sigsuspend/read (under km, the guest's main thread runs on
        km's main thread, which then sleeps in the host). A signal sent earlier could be
        handled before the payload reaches its blocking call, and the transcript would
        depend on timing (km takes longer to get there than a native process)."""
        deadline = time.monotonic() + timeout
        since = None
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                return
            if self.state() == "S":
                since = since or time.monotonic()
                if time.monotonic() - since >= settle:
                    return
            else:
                since = None
            time.sleep(0.005)
        raise AssertionError(f"{' '.join(self.argv)}: never blocked ({self.state()}); "
                             f"output:\n{self.transcript()}")

    def finish(self, timeout: float = STEP_TIMEOUT) -> int:
        try:
            self.proc.wait(timeout)
        except subprocess.TimeoutExpired:
            self.kill()
            raise AssertionError(f"{' '.join(self.argv)}: did not end within {timeout}s; "
                                 f"output:\n{self.transcript()}{self.stderr()}") from None
        while (line := self._queue.get(timeout=STEP_TIMEOUT)) is not None:
            self.lines.append(line)
        return self.proc.returncode

    def stderr(self) -> str:
        time.sleep(0.05)
        return self._err[0].decode(errors="replace") if self._err else ""

    def kill(self) -> None:
        if self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait()


def drive(argv, script, stdin_pipe=False):
    """Run script(driven) against a fresh process; return (transcript, returncode)."""
    d = Driven([str(a) for a in argv], stdin_pipe=stdin_pipe)
    try:
        d.expect("ready")
        script(d)
        status = d.finish()
        return d.transcript(), status, d.stderr()
    finally:
        d.kill()


def native_and_km(km, exe, mode, script, stdin_pipe=False):
    argv = [exe, mode, str(os.getpid())]
    native = drive(argv, script, stdin_pipe)
    under_km = drive([*km, *argv], script, stdin_pipe)
    return native, under_km


def assert_same_flow(native, under_km):
    (n_out, n_status, n_err), (k_out, k_status, k_err) = native, under_km
    assert (k_out, k_status) == (n_out, n_status), (
        f"km differs from the native run\n--- native (status {n_status}):\n{n_out}{n_err}"
        f"\n--- km (status {k_status}):\n{k_out}{k_err}")


def signals_then_term(*signos, after=None, idle=True):
    """Send each signal once the payload is blocked, wait for its handler's line (and
    then for the line `after`, if given), and finally send SIGTERM likewise. Waiting
    for both keeps a signal from arriving while the previous handler still runs, where
    it would nest in it (on Linux as under km) and make the transcript depend on timing."""
    def script(d: Driven) -> None:
        for s in (*signos, signal.SIGTERM):
            if idle:
                d.wait_idle()
            d.send(s)
            d.expect(f"got {signal.Signals(s).name}")
            if after and s != signal.SIGTERM:
                d.expect(after)
    return script


@pytest.mark.parametrize("mode,status", [("sigsuspend", 3), ("pause", 4)])
def test_handlers_run_for_host_signals(km, sig_host, mode, status):
    """SIGUSR1 and SIGINT are handled (si_code SI_USER, si_pid the test's), interrupting
    sigsuspend/pause with EINTR; then the SIGTERM handler makes the payload exit with its
    own status."""
    native, under_km = native_and_km(
        km, sig_host, mode, signals_then_term(signal.SIGUSR1, signal.SIGINT,
                                              after=f"{mode} returned -1 EINTR"))
    assert native[1] == status, native
    assert "got SIGUSR1, code SI_USER, sent by the test yes\n" in native[0]
    assert "got SIGTERM, code SI_USER, sent by the test yes\n" in native[0]
    assert_same_flow(native, under_km)


def test_host_signal_interrupts_a_spinning_guest(km, sig_host):
    """The payload spins without system calls: km must kick the running vCPU."""
    def script(d: Driven) -> None:
        d.send(signal.SIGUSR1)
        d.expect("the spinning loop saw 1 signal(s)")
        d.send(signal.SIGINT)
        d.expect("the spinning loop saw 2 signal(s)")
        d.send(signal.SIGTERM)
    native, under_km = native_and_km(km, sig_host, "spin", script)
    assert native[1] == 5
    assert_same_flow(native, under_km)


def test_host_signal_goes_to_the_thread_that_unblocks_it(km, sig_host):
    """Main (in pthread_join) and a spinning thread block everything; a third thread in
    pause() is the only one that can take the process-directed signals."""
    native, under_km = native_and_km(km, sig_host, "threads",
                                     signals_then_term(signal.SIGUSR1, signal.SIGINT,
                                                       idle=False))
    assert native[1] == 6
    assert "worker: handled in this thread yes\n" in native[0]
    assert_same_flow(native, under_km)


def test_host_signal_to_main_blocked_in_pthread_join(km, sig_host):
    """Main waits in pthread_join (a futex wait) and is the only thread that takes the
    signals: each handler runs there and the join goes on, until SIGTERM's handler lets
    the worker end."""
    native, under_km = native_and_km(km, sig_host, "join",
                                     signals_then_term(signal.SIGUSR1, signal.SIGINT))
    assert native[1] == 8
    assert "pthread_join returned 0 after the handlers ran in main yes (USR1 1, INT 1)\n" \
        in native[0]
    assert_same_flow(native, under_km)


@pytest.mark.parametrize("signo", [signal.SIGTERM, signal.SIGINT, signal.SIGUSR1,
                                   signal.SIGHUP], ids=lambda s: signal.Signals(s).name)
@pytest.mark.parametrize("mode", ["default", "default_threads"])
def test_default_action_kills(km, sig_host, mode, signo):
    """No handlers: the signal's default action ends km as it ends the native process
    (Popen returncode -N)."""
    def script(d: Driven) -> None:
        d.wait_idle()
        d.send(signo)
    native, under_km = native_and_km(km, sig_host, mode, script)
    assert native[1] == -signo
    assert_same_flow(native, under_km)


def test_ignored_signals_do_nothing(km, sig_host):
    def script(d: Driven) -> None:
        d.wait_idle()
        d.send(signal.SIGINT)
        d.send(signal.SIGUSR1)
        time.sleep(0.3)
        d.send(signal.SIGTERM)
    native, under_km = native_and_km(km, sig_host, "ignore", script)
    assert native == ("ready\n", -signal.SIGTERM, "")
    assert_same_flow(native, under_km)


def test_host_signal_interrupts_a_blocking_read(km, sig_host):
    """read(0) on an open, empty pipe: EINTR without SA_RESTART; with SA_RESTART the
    handler runs and the read goes on to return the data written afterwards."""
    def script(d: Driven) -> None:
        d.wait_idle()
        d.send(signal.SIGUSR1)
        d.expect("read without SA_RESTART:")
        d.expect("reading again, with SA_RESTART")
        d.wait_idle()
        d.send(signal.SIGUSR1)
        d.expect("got SIGUSR1")
        time.sleep(0.1)
        d.proc.stdin.write(b"hello\n")
        d.proc.stdin.flush()
        d.expect("read with SA_RESTART")
        d.proc.stdin.close()
    native, under_km = native_and_km(km, sig_host, "read", script, stdin_pipe=True)
    assert native[1] == 0
    assert "read without SA_RESTART: -1 EINTR\n" in native[0]
    assert 'read with SA_RESTART: 6 "hello"\n' in native[0]
    assert_same_flow(native, under_km)


def test_sigstop_then_sigcont(km, sig_host):
    """SIGSTOP stops the whole process (state T); SIGCONT resumes it and runs the
    payload's SIGCONT handler."""
    def script(d: Driven) -> None:
        d.wait_idle()
        d.send(signal.SIGSTOP)
        assert d.wait_state("T"), f"{d.argv}: not stopped after SIGSTOP ({d.state()})"
        time.sleep(0.1)
        d.send(signal.SIGCONT)
        d.expect("got SIGCONT")
        d.wait_idle()
        d.send(signal.SIGTERM)
    native, under_km = native_and_km(km, sig_host, "stop", script)
    assert native[1] == 7
    assert_same_flow(native, under_km)
