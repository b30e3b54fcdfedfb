"""The warm server (km --server SOCKET, KM_SERVER=SOCKET km ...): a payload run through it
behaves as under a cold km and natively (status, output, what it inherits), signals reach
it, a dead client leaves no monitor, a dead server leaves km cold, and a client's
credentials are the payload's.

Every wait is on an event: a line the payload or the server prints, a pidfd, a process's
exit. Whether a run was warm is told by the payload's parent: the server, not the test.
"""

from __future__ import annotations

import fcntl
import os
import pty
import select
import shutil
import signal
import subprocess
import sys
import tempfile
import termios
from pathlib import Path

import pytest
from conftest import BASE_ENV, REPO, Flavour, child_setup, compare_runs, run

NOBODY = 65534


class Server:
    def __init__(self, km: list[str], directory: Path) -> None:
        self.socket = directory / "km.sock"
        self.proc = subprocess.Popen([*km, "--server", str(self.socket)], env=BASE_ENV,
                                     stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL,
                                     stderr=subprocess.PIPE, preexec_fn=child_setup)
        line = self.proc.stderr.readline()  # said once it listens
        assert b"warm server on" in line, line

    @property
    def env(self) -> dict[str, str]:
        return dict(BASE_ENV, KM_SERVER=str(self.socket))

    def stop(self, signo: int = signal.SIGTERM) -> None:
        if self.proc.poll() is None:
            self.proc.send_signal(signo)
        self.proc.wait(timeout=60)
        self.proc.stderr.close()


@pytest.fixture(scope="module")
def directory():
    """A directory anyone may enter (the test as nobody needs the socket and payload:
    pytest's own temporary directories are the test user's alone)."""
    path = Path(tempfile.mkdtemp(prefix="km-warm-"))
    path.chmod(0o755)
    yield path
    shutil.rmtree(path, ignore_errors=True)


@pytest.fixture(scope="module")
def server(km, directory):
    srv = Server(km, directory)
    yield srv
    srv.stop()


@pytest.fixture(scope="module")
def probe(payloads, directory) -> str:
    built = payloads.build("warm_probe", "musl")
    copy = directory / "warm_probe"
    shutil.copy(built, copy)
    copy.chmod(0o755)
    return str(copy)


def warm(km: list[str], server: Server, argv: list, **kwargs):
    return run([*km, *argv], env=server.env, **kwargs)


def test_runs_warm(km, server, probe, tmp_path):
    """The payload's parent is the server: it ran in a monitor the server forked."""
    result = warm(km, server, [probe, "parent"], cwd=tmp_path)
    assert result.returncode == 0, result.err
    assert result.out == f"{server.proc.pid}\n"


@pytest.mark.parametrize("args", [
    ["exit", "0"], ["exit", "7"], ["exit", "255"], ["raise", "15"], ["raise", "11"],
    ["raise", "6"], ["info", "a", "b c", ""], ["nonsense"],
], ids=lambda a: "-".join(a) or "empty")
def test_same_as_cold_and_native(km, server, probe, tmp_path, args):
    native = run([probe, *args], cwd=tmp_path)
    cold = run([*km, probe, *args], cwd=tmp_path)
    hot = warm(km, server, [probe, *args], cwd=tmp_path)
    compare_runs(native, hot)
    compare_runs(cold, hot)


def test_exit_from_another_thread(km, server, payloads, tmp_path):
    """A worker's exit(7) while main is blocked in a read: the status is the worker's.
    (The monitor closes the payload's descriptors before it reports: main's read must
    not then end, and exit 0, before the report.)"""
    thr_basic = payloads.build("thr_basic", Flavour("glibc-pthread", "gcc",
                                                    ("-static", "-O2", "-pthread"), pie=False))
    native = run([thr_basic, "exit"], cwd=tmp_path)
    assert native.returncode == 7
    for _ in range(8):
        compare_runs(native, warm(km, server, [thr_basic, "exit"], cwd=tmp_path))


def test_km_errors_same_as_cold(km, server, tmp_path):
    for argv in (["/nonexistent/payload"], ["--mem-size", "1k", "x"], ["--no-such"], []):
        cold = run([*km, *argv], cwd=tmp_path)
        hot = warm(km, server, argv, cwd=tmp_path)
        compare_runs(cold, hot)


def test_stdin_piped(km, server, probe, tmp_path):
    data = b"".join(b"line %d\n" % i for i in range(5000))
    source = tmp_path / "in"
    source.write_bytes(data)
    with open(source, "rb") as stdin:
        result = warm(km, server, [probe, "cat"], cwd=tmp_path, stdin=stdin)
    assert result.returncode == 0 and result.stdout == data


def test_inherited_state(km, server, probe, tmp_path):
    """cwd, umask, environment, descriptors beyond 0-2, ignored signals, blocked mask."""
    cwd = tmp_path / "sub dir"
    cwd.mkdir()
    extra = os.open(os.devnull, os.O_RDONLY)
    assert extra < 64

    def setup() -> None:
        child_setup()
        os.umask(0o027)
        signal.signal(signal.SIGHUP, signal.SIG_IGN)
        signal.pthread_sigmask(signal.SIG_BLOCK, [signal.SIGUSR2])

    def start(argv: list[str], env: dict[str, str]) -> tuple[int, bytes, bytes]:
        proc = subprocess.Popen(argv, cwd=cwd, env=dict(env, WARM_VAR="wärm"),
                                stdin=subprocess.DEVNULL, stdout=subprocess.PIPE,
                                stderr=subprocess.PIPE, preexec_fn=setup, pass_fds=[extra])
        out, err = proc.communicate(timeout=60)
        return proc.returncode, out, err

    try:
        native = start([probe, "info"], BASE_ENV)
        hot = start([*km, probe, "info"], server.env)
    finally:
        os.close(extra)
    assert native[0] == 0, native
    assert b"umask 027" in native[1] and b"open fds: 0 1 2 %d\n" % extra in native[1], native
    assert b"ignored: 1\n" in native[1] and b"blocked: 12\n" in native[1], native
    assert hot == native


def test_signals_forwarded(km, server, probe, tmp_path):
    proc = subprocess.Popen([*km, probe, "wait"], cwd=tmp_path, env=server.env,
                            stdin=subprocess.DEVNULL, stdout=subprocess.PIPE,
                            preexec_fn=child_setup)
    try:
        assert proc.stdout.readline() == b"ready\n"
        for signo in (signal.SIGHUP, signal.SIGINT, signal.SIGUSR1, signal.SIGWINCH,
                      signal.SIGQUIT, signal.SIGUSR2, signal.SIGTERM):
            proc.send_signal(signo)
            assert proc.stdout.readline() == b"got %d\n" % signo
        assert proc.wait(timeout=60) == 0
    finally:
        proc.kill()
        proc.wait()


def test_forwarded_signal_kills_payload(km, server, probe, tmp_path):
    proc = subprocess.Popen([*km, probe, "hang"], cwd=tmp_path, env=server.env,
                            stdin=subprocess.DEVNULL, stdout=subprocess.PIPE,
                            preexec_fn=child_setup)
    assert proc.stdout.readline().strip().isdigit()
    proc.send_signal(signal.SIGTERM)
    assert proc.wait(timeout=60) == -signal.SIGTERM


def test_stop_and_continue(km, server, probe, tmp_path):
    """^Z's SIGTSTP stops the payload, and its client with it (the shell sees the job
    stop); SIGCONT to the client goes on to the payload."""
    proc = subprocess.Popen([*km, probe, "wait"], cwd=tmp_path, env=server.env,
                            stdin=subprocess.DEVNULL, stdout=subprocess.PIPE,
                            preexec_fn=child_setup)
    try:
        assert proc.stdout.readline() == b"ready\n"
        proc.send_signal(signal.SIGTSTP)
        stopped = os.waitid(os.P_PID, proc.pid, os.WSTOPPED)
        assert stopped.si_code == os.CLD_STOPPED
        proc.send_signal(signal.SIGCONT)
        continued = os.waitid(os.P_PID, proc.pid, os.WCONTINUED)
        assert continued.si_code == os.CLD_CONTINUED
        proc.send_signal(signal.SIGUSR1)
        assert proc.stdout.readline() == b"got %d\n" % signal.SIGUSR1
        proc.send_signal(signal.SIGTERM)
        assert proc.stdout.readline() == b"got %d\n" % signal.SIGTERM
        assert proc.wait(timeout=60) == 0
    finally:
        proc.kill()
        proc.wait()


def test_large_request(km, server, probe, tmp_path):
    """A command line and environment of hundreds of KiB (more than one read)."""
    args = ["x" * 1000 + str(i) for i in range(300)]
    env = dict(BASE_ENV, WARM_VAR="v" * 100_000)  # (at most 128 KiB a string)
    native = run([probe, "info", *args], cwd=tmp_path, env=env)
    hot = run([*km, probe, "info", *args], cwd=tmp_path, env=dict(env, **{
        "KM_SERVER": str(server.socket)}))
    compare_runs(native, hot)
    parent = run([*km, probe, "parent", *args], cwd=tmp_path,
                 env=dict(env, KM_SERVER=str(server.socket)))
    assert parent.out == f"{server.proc.pid}\n"


def _gone(pid: int) -> bool:
    """Whether process pid has ended, waiting for it through a pidfd (an event)."""
    try:
        pidfd = os.pidfd_open(pid)
    except ProcessLookupError:
        return True
    try:
        return bool(select.select([pidfd], [], [], 60)[0])
    finally:
        os.close(pidfd)


def test_client_killed_kills_monitor(km, server, probe, tmp_path):
    proc = subprocess.Popen([*km, probe, "hang"], cwd=tmp_path, env=server.env,
                            stdin=subprocess.DEVNULL, stdout=subprocess.PIPE,
                            preexec_fn=child_setup)
    monitor = int(proc.stdout.readline())  # the payload's pid is its monitor's
    assert monitor != proc.pid
    proc.kill()
    proc.wait()
    assert _gone(monitor), "the monitor outlived its client"


def test_no_server_runs_cold(km, probe, directory, tmp_path):
    """A socket nobody listens on (a server gone, a stale file): km starts cold."""
    for how in (signal.SIGTERM, signal.SIGKILL):
        srv = Server(km, _subdir(directory, how.name))
        srv.stop(how)
        result = run([*km, probe, "parent"], cwd=tmp_path, env=srv.env)
        assert result.returncode == 0, result.err
        assert result.out == f"{os.getpid()}\n"  # km itself was the payload's parent
    result = run([*km, probe, "exit", "5"], cwd=tmp_path,
                 env=dict(BASE_ENV, KM_SERVER=str(directory / "never")))
    assert result.returncode == 5 and result.stderr == b""


def _subdir(directory: Path, name: object) -> Path:
    path = directory / f"gone-{name}"
    path.mkdir(exist_ok=True)
    return path


def test_monitor_outlives_server(km, probe, directory, tmp_path):
    srv = Server(km, _subdir(directory, "outlive"))
    proc = subprocess.Popen([*km, probe, "line"], cwd=tmp_path, env=srv.env,
                            stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                            preexec_fn=child_setup)
    try:
        assert proc.stdout.readline() == b"ready\n"
        srv.stop()
        out, _ = proc.communicate(b"still here\n", timeout=60)
        assert out == b"still here\n" and proc.returncode == 3
    finally:
        proc.kill()
        proc.wait()


def test_concurrent_clients(km, server, probe, tmp_path):
    procs = [subprocess.Popen([*km, probe, "parent" if i % 2 else "exit", str(i)],
                              cwd=tmp_path, env=server.env, stdin=subprocess.DEVNULL,
                              stdout=subprocess.PIPE, preexec_fn=child_setup)
             for i in range(10)]
    for i, proc in enumerate(procs):
        out, _ = proc.communicate(timeout=120)
        if i % 2:
            assert (proc.returncode, out) == (0, f"{server.proc.pid}\n".encode())
        else:
            assert (proc.returncode, out) == (i, b"")


def test_client_credentials(km, server, probe, directory):
    """A client running as nobody gets a payload running as nobody (never the server's
    root), with the server's /dev/kvm lent to it."""
    if os.geteuid() != 0:
        pytest.skip("needs root (a root server, a client made nobody)")
    server.socket.chmod(0o666)  # (the socket's mode says who may use the server)

    def as_nobody() -> None:
        child_setup()
        os.setgroups([])
        os.setgid(NOBODY)
        os.setuid(NOBODY)

    # (The test's interpreter is under /root, which nobody may not enter: the system's.)
    python = shutil.which("python3", path="/usr/bin:/bin") or sys.executable
    code = ("import sys; sys.path.insert(0, sys.argv.pop(1)); "
            "from kontain.cli.km import entry; entry()")
    proc = subprocess.run([python, "-S", "-c", code, str(REPO), *km[1:], probe, "ids"],
                          cwd=directory, env=server.env, stdin=subprocess.DEVNULL,
                          capture_output=True, preexec_fn=as_nobody, timeout=60)
    assert proc.stdout == b"uid %d euid %d gid %d egid %d\n" % ((NOBODY,) * 4), proc.stderr
    assert proc.returncode == 0


def test_other_sandbox_runs_cold(km, server, probe, tmp_path):
    """A client in another namespace than the server's is declined: its km starts cold,
    inside its own sandbox (a warm monitor would have escaped it)."""
    unshare = shutil.which("unshare")
    if unshare is None or os.geteuid() != 0:
        pytest.skip("needs unshare(1) and root")
    proc = subprocess.Popen([unshare, "--net", *km, probe, "parent"], cwd=tmp_path,
                            env=server.env, stdin=subprocess.DEVNULL, stdout=subprocess.PIPE,
                            preexec_fn=child_setup)
    out, _ = proc.communicate(timeout=60)
    assert (proc.returncode, out) == (0, f"{os.getpid()}\n".encode())  # (unshare execs km)
    assert select.select([server.proc.stderr], [], [], 60)[0]
    assert b"runs cold: another net namespace" in server.proc.stderr.readline()


def test_terminal(km, server, probe, tmp_path):
    """In a terminal, the client is the foreground job: Ctrl-C reaches the payload."""
    master, slave = pty.openpty()

    def in_terminal() -> None:
        child_setup()
        os.setsid()
        fcntl.ioctl(slave, termios.TIOCSCTTY, 0)

    proc = subprocess.Popen([*km, probe, "wait"], cwd=tmp_path, env=server.env,
                            stdin=slave, stdout=slave, stderr=slave, preexec_fn=in_terminal)
    os.close(slave)
    reader = os.fdopen(master, "rb", buffering=0)
    try:
        assert _line(reader) == b"ready"
        os.write(master, b"\x03")  # ^C: SIGINT to the terminal's foreground job
        assert _line(reader).endswith(b"got 2")
        proc.send_signal(signal.SIGTERM)
        assert _line(reader) == b"got 15"
        assert proc.wait(timeout=60) == 0
    finally:
        proc.kill()
        proc.wait()
        reader.close()


def _line(reader) -> bytes:
    line = b""
    while not line.endswith(b"\n"):
        chunk = reader.read(1)
        if not chunk:
            break
        line += chunk
    return line.rstrip(b"\r\n")
