"""Snapshots and resume (kontain.monitor.snapshot, kontain.monitor.resume).

A payload asks km for a snapshot through km's hypercall (include/kontain/snapshot.h, or
kontain.guest.snapshot() from Python); `km FILE` resumes it. The resumed instance must
do what the original would have done from that point; gdb reads the snapshot as a core;
what cannot be saved is refused with a message naming it.
"""

from __future__ import annotations

import shutil
import socket
import subprocess
import sys
import textwrap
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest
from conftest import BASE_ENV, REPO, Flavour, run, wait_until

FLAVOURS = {
    "glibc-dynamic": Flavour("snap-glibc-dyn", "gcc",
                             ("-O1", "-g", "-pthread", f"-I{REPO}/include"), pie=True),
    "glibc-static": Flavour("snap-glibc-static", "gcc",
                            ("-static", "-O1", "-g", "-pthread", f"-I{REPO}/include"),
                            pie=False),
    "musl": Flavour("snap-musl", "musl-gcc", ("-static", "-O1", "-g", f"-I{REPO}/include"),
                    pie=False),
}
PYTHON = "/usr/bin/python3"
GDB = shutil.which("gdb")
EXPECTED_THREADS = "sum=20056 pipe=pipe-bytes\n"


@pytest.fixture(params=list(FLAVOURS), ids=list(FLAVOURS))
def threads_program(request, payloads) -> Path:
    if shutil.which(FLAVOURS[request.param].compiler) is None:
        pytest.skip(f"{FLAVOURS[request.param].compiler} is not installed")
    return payloads.build("snap_threads", FLAVOURS[request.param])


def python_env() -> dict[str, str]:
    return dict(BASE_ENV, PYTHONPATH=str(REPO))


@pytest.mark.parametrize("live", [False, True])
def test_threads_blocked_on_a_condvar_and_a_pipe_resume_and_finish(threads_program, km,
                                                                     tmp_path, live):
    snap = tmp_path / "threads.snap"
    original = run([*km, f"--snapshot={snap}", threads_program, "live" if live else "once"],
                   cwd=tmp_path)
    assert original.returncode == 0, original.describe() + original.err
    # Not live: the original ends at the snapshot (status 0, nothing after it).
    assert original.out == ("resumed=0\n" + EXPECTED_THREADS if live else ""), original.out
    assert snap.stat().st_size > 0
    resumed = run([*km, snap], cwd=tmp_path)
    assert resumed.returncode == 0, resumed.describe() + resumed.err
    assert resumed.out == "resumed=1\n" + EXPECTED_THREADS, resumed.out + resumed.err


@pytest.mark.skipif(GDB is None, reason="gdb is not installed")
def test_gdb_reads_a_snapshot_as_a_core(payloads, km, tmp_path):
    program = payloads.build("snap_threads", FLAVOURS["glibc-dynamic"])
    snap = tmp_path / "threads.snap"
    original = run([*km, f"--snapshot={snap}", program], cwd=tmp_path)
    assert original.returncode == 0, original.err
    done = subprocess.run([GDB, "-nx", "-batch", "-iex", "set debuginfod enabled off",
                           "-ex", "info threads", "-ex", "bt", str(program), str(snap)],
                          capture_output=True, text=True, timeout=120)
    text = done.stdout + done.stderr
    threads = [line for line in text.splitlines()
               if line[:1] in ("*", " ") and "Thread 0x" in line and "LWP" in line]
    assert len(threads) == 5, text
    assert "km_snapshot" in text and "main" in text, text
    assert sum("futex" in line or "pthread_cond" in line for line in threads) == 4, text


PY_WARM = textwrap.dedent("""
    import asyncio, decimal, json, sqlite3, sys
    d = {i: i * 3 for i in range(10**6)}
    before = sum(d[i] for i in range(0, 10**6, 999))
    from kontain.guest import snapshot
    resumed = snapshot(path=sys.argv[1])
    after = len(d) + int(decimal.Decimal("2.5") * 4) + len(json.dumps({"a": 1}))
    con = sqlite3.connect(":memory:")
    total = con.execute("select 20 + 22").fetchone()[0]
    print(f"resumed={resumed} before={before} after={after} sql={total}")
""")


def test_python_snapshot_resumes_many_times_in_parallel(km, tmp_path):
    script = tmp_path / "warm.py"
    script.write_text(PY_WARM)
    snap = tmp_path / "python.snap"
    original = run([*km, PYTHON, script, snap], cwd=tmp_path, env=python_env(), timeout=300)
    assert original.returncode == 0, original.describe() + original.err
    assert original.out == "", original.out
    before = sum(i * 3 for i in range(0, 10**6, 999))
    expected = f"resumed=1 before={before} after={10**6 + 10 + 8} sql=42\n"
    with ThreadPoolExecutor(10) as pool:
        results = list(pool.map(lambda _: run([*km, snap], cwd=tmp_path, timeout=300),
                                range(10)))
    for result in results:
        assert result.returncode == 0, result.describe() + result.err
        assert result.out == expected, result.out + result.err


def test_python_live_snapshot_keeps_the_original_running(km, tmp_path):
    script = tmp_path / "live.py"
    script.write_text("import sys\nfrom kontain.guest import snapshot\n"
                      "print('got', snapshot(live=True, path=sys.argv[1]))\n")
    snap = tmp_path / "live.snap"
    original = run([*km, PYTHON, script, snap], cwd=tmp_path, env=python_env())
    assert (original.returncode, original.out) == (0, "got 0\n"), original.err
    resumed = run([*km, snap], cwd=tmp_path)
    assert (resumed.returncode, resumed.out) == (0, "got 1\n"), resumed.err


def test_python_snapshot_outside_km_says_so(tmp_path):
    done = subprocess.run([sys.executable, "-c", "from kontain.guest import snapshot\n"
                           "try:\n    snapshot()\nexcept OSError as e:\n    print(e.errno)"],
                          capture_output=True, text=True, env=python_env(), timeout=60)
    assert done.stdout.strip() == "38", done.stdout + done.stderr  # ENOSYS


REFUSED = {
    "posix-timer": ("import ctypes\nlibc = ctypes.CDLL(None)\ntimer = ctypes.c_void_p()\n"
                    "assert libc.timer_create(1, None, ctypes.byref(timer)) == 0\n",
                    "POSIX timer"),
    "tcp": ("import socket\nserver = socket.create_server(('127.0.0.1', 0))\n"
            "client = socket.create_connection(server.getsockname())\n", "socket"),
    "child": ("import os, time\npid = os.fork()\nif pid == 0:\n    time.sleep(30)\n"
              "    os._exit(0)\n", "child processes"),
}


@pytest.mark.parametrize("case", list(REFUSED))
def test_what_cannot_be_saved_is_refused_by_name(km, tmp_path, case):
    setup, message = REFUSED[case]
    script = tmp_path / "refused.py"
    script.write_text(setup + textwrap.dedent("""
        import errno, os, signal, sys
        from kontain.guest import snapshot
        try:
            snapshot(path=sys.argv[1])
        except OSError as e:
            print("refused", errno.errorcode[e.errno])
        if 'pid' in globals():
            os.kill(pid, signal.SIGKILL)
    """))
    snap = tmp_path / "refused.snap"
    result = run([*km, PYTHON, script, snap], cwd=tmp_path, env=python_env())
    assert result.returncode == 0, result.describe() + result.err
    assert result.out == "refused EBUSY\n", result.out + result.err
    assert "km: snapshot refused: " in result.err and message in result.err, result.err
    assert not snap.exists()


def test_a_changed_program_is_not_resumed(payloads, km, tmp_path):
    program = tmp_path / "prog"
    shutil.copy(payloads.build("snap_threads", FLAVOURS["glibc-dynamic"]), program)
    snap = tmp_path / "threads.snap"
    assert run([*km, f"--snapshot={snap}", program], cwd=tmp_path).returncode == 0
    with open(program, "ab") as f:
        f.write(b"\0")
    resumed = run([*km, snap], cwd=tmp_path)
    assert resumed.returncode == 1, resumed.describe()
    assert "changed since the snapshot" in resumed.err, resumed.err


PY_DESCRIPTORS = textwrap.dedent("""
    import ctypes, os, select, signal, socket, sys
    from kontain.guest import snapshot
    libc = ctypes.CDLL(None, use_errno=True)
    snap, data, unix_path = sys.argv[1:4]
    f = open(data, "rb")
    f.read(5)
    efd = os.eventfd(7, os.EFD_NONBLOCK)
    r, w = os.pipe()
    os.write(w, b"xyz")
    ep = select.epoll()
    ep.register(efd, select.EPOLLIN)
    ep.register(r, select.EPOLLIN)
    srv = socket.create_server(("127.0.0.1", 0))
    port = srv.getsockname()[1]
    usrv = socket.socket(socket.AF_UNIX)
    usrv.bind(unix_path)
    usrv.listen(3)
    tfd = libc.timerfd_create(1, 0)                      # CLOCK_MONOTONIC
    spec = (ctypes.c_int64 * 4)(0, 0, 300, 0)            # 300 s from now, once
    libc.timerfd_settime(tfd, 0, spec, None)
    signal.pthread_sigmask(signal.SIG_BLOCK, [signal.SIGUSR1])
    mask = (ctypes.c_uint64 * 16)(1 << (signal.SIGUSR1 - 1))
    sfd = libc.signalfd(-1, mask, 0)
    pa, pb = socket.socketpair()
    pa.send(b"one ")
    pa.send(b"two")
    pb.send(b"back")
    resumed = snapshot(path=snap)
    events = sorted(fd for fd, _ in ep.poll(0))
    print(resumed, f.read(5), os.eventfd_read(efd), os.read(r, 10), events == sorted([efd, r]))
    c = socket.create_connection(("127.0.0.1", port))
    a, _ = srv.accept()
    c.send(b"hi")
    u = socket.socket(socket.AF_UNIX)
    u.connect(unix_path)
    b, _ = usrv.accept()
    u.send(b"yo")
    left = (ctypes.c_int64 * 4)()
    libc.timerfd_gettime(tfd, left)
    os.kill(os.getpid(), signal.SIGUSR1)
    info = os.read(sfd, 128)
    print(a.recv(2), b.recv(2), 200 < left[2] <= 300, int.from_bytes(info[:4], "little"))
    print(pb.recv(100), pa.recv(100))
""")


def test_descriptors_come_back(km, tmp_path):
    """A file at its offset, an eventfd's count, a pipe's bytes, an epoll's interest
    list, listening TCP and unix sockets (connections to them work), a timerfd's time
    left, a signalfd's mask, a socketpair's unread bytes both ways."""
    script = tmp_path / "fds.py"
    script.write_text(PY_DESCRIPTORS)
    data = tmp_path / "data.txt"
    data.write_text("0123456789abcdef")
    snap = tmp_path / "fds.snap"
    argv = [snap, data, tmp_path / "listen.sock"]
    original = run([*km, PYTHON, script, *argv], cwd=tmp_path, env=python_env())
    assert original.returncode == 0 and original.out == "", original.out + original.err
    resumed = run([*km, snap], cwd=tmp_path)
    assert resumed.returncode == 0, resumed.describe() + resumed.err
    assert resumed.out == ("1 b'56789' 7 b'xyz' True\nb'hi' b'yo' True 10\n"
                           "b'one two' b'back'\n"), \
        resumed.out + resumed.err


def km_cli(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "kontain.cli.km_cli", *args],
                          capture_output=True, text=True, env=python_env(), timeout=120)


def test_km_cli_snapshots_a_running_payload_through_mgtpipe(km, tmp_path):
    script = tmp_path / "loop.py"
    script.write_text("import sys, time\nfor n in range(10**6):\n"
                      "    print('tick', n, flush=True)\n    time.sleep(0.01)\n")
    sock = tmp_path / "km.sock"
    proc = subprocess.Popen([*km, "--mgtpipe", sock, PYTHON, script], cwd=tmp_path,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                            env=dict(BASE_ENV))
    try:
        assert proc.stdout.readline().startswith(b"tick 0"), proc.stderr.read()
        live = km_cli("-s", str(sock), "--live", "--label", "one",
                      "--path", str(tmp_path / "live.snap"))
        assert live.returncode == 0, live.stderr
        assert live.stdout.split()[0] == str(tmp_path / "live.snap")
        proc.stdout.readline()  # (still running)
        last = km_cli("-p", str(proc.pid), "--path", str(tmp_path / "last.snap"))
        assert last.returncode == 0, last.stderr
        assert proc.wait(timeout=60) == 0  # not live: the payload ended there
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    for name in ("live.snap", "last.snap"):
        resumed = subprocess.Popen([*km, tmp_path / name], stdout=subprocess.PIPE,
                                   stderr=subprocess.PIPE, cwd=tmp_path)
        try:
            line = resumed.stdout.readline()
            assert line.startswith(b"tick "), line + resumed.stderr.read()
            assert int(line.split()[1]) > 0
        finally:
            resumed.kill()
            resumed.wait()
    gone = km_cli("-s", str(tmp_path / "nobody.sock"))
    assert gone.returncode == 1 and "km_cli:" in gone.stderr


def test_listen_on_resume_restores_at_the_first_connection(km, tmp_path):
    """km --listen-on-resume SNAPSHOT makes the listening socket and waits; the first
    connection brings the rest back, and the payload's accept takes that connection."""
    script = tmp_path / "server.py"
    script.write_text(textwrap.dedent("""
        import socket, sys
        from kontain.guest import snapshot
        srv = socket.create_server(("127.0.0.1", 0))
        print(srv.getsockname()[1], flush=True)
        warm = sum(range(10**5))
        snapshot(path=sys.argv[1])
        conn, _ = srv.accept()
        conn.sendall(b"warm=%d got=%s" % (warm, conn.recv(5)))
        conn.close()
    """))
    snap = tmp_path / "server.snap"
    original = run([*km, PYTHON, script, snap], cwd=tmp_path, env=python_env())
    assert original.returncode == 0, original.err
    port = int(original.out)
    server = subprocess.Popen([*km, "--listen-on-resume", snap], cwd=tmp_path,
                              stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    try:
        def connect():  # (until km listens: nothing else tells)
            assert server.poll() is None, server.stderr.read()
            try:
                return socket.create_connection(("127.0.0.1", port))
            except ConnectionRefusedError:
                return None
        with wait_until(connect, "km listening on the snapshot's port") as client:
            client.sendall(b"hello")
            answer = b""
            while chunk := client.recv(100):
                answer += chunk
        assert answer == b"warm=%d got=hello" % sum(range(10**5))
        assert server.wait(timeout=60) == 0, server.stderr.read()
    finally:
        if server.poll() is None:
            server.kill()
            server.wait()


def test_a_snapshot_taken_again_over_the_file_a_resume_runs_from(km, tmp_path):
    """The new file replaces the old one (rename): the running instance's pages, still
    the old file's, stay readable (a truncate would make them SIGBUS)."""
    script = tmp_path / "again.py"
    script.write_text(textwrap.dedent("""
        import sys
        from kontain.guest import snapshot
        data = bytearray(b"x" * (32 << 20))
        first = snapshot(live=True, path=sys.argv[1])
        if first:
            second = snapshot(live=True, path=sys.argv[1])
            print(first, second, data.count(b"x") == len(data), flush=True)
    """))
    snap = tmp_path / "again.snap"
    original = run([*km, PYTHON, script, snap], cwd=tmp_path, env=python_env())
    assert (original.returncode, original.out) == (0, ""), original.err
    resumed = run([*km, snap], cwd=tmp_path)
    assert (resumed.returncode, resumed.out) == (0, "1 0 True\n"), resumed.err
    assert sorted(p.name for p in tmp_path.iterdir()) == ["again.py", "again.snap"]


def test_an_alarm_comes_back_with_the_time_it_had_left(km, tmp_path):
    script = tmp_path / "alarm.py"
    script.write_text(textwrap.dedent("""
        import signal, sys
        from kontain.guest import snapshot
        signal.signal(signal.SIGALRM, lambda *a: print("alarm", flush=True))
        signal.setitimer(signal.ITIMER_REAL, 0.3)
        resumed = snapshot(path=sys.argv[1])
        left = signal.getitimer(signal.ITIMER_REAL)[0]
        print(resumed, 0 < left <= 0.3, flush=True)
        signal.pause()
    """))
    snap = tmp_path / "alarm.snap"
    original = run([*km, PYTHON, script, snap], cwd=tmp_path, env=python_env())
    assert (original.returncode, original.out) == (0, ""), original.err
    resumed = run([*km, snap], cwd=tmp_path)
    assert (resumed.returncode, resumed.out) == (0, "1 True\nalarm\n"), resumed.err


def test_bad_hypercall_arguments_fail_cleanly(km, tmp_path):
    script = tmp_path / "bad.py"
    script.write_text(textwrap.dedent("""
        import ctypes, errno
        libc = ctypes.CDLL(None, use_errno=True)
        call = libc.syscall
        call.argtypes = [ctypes.c_long] * 4
        for flags, label, path in ((0, 1, 0), (0, 0, 1), (2, 0, 0), (0, 0, 1 << 47)):
            result = call(0x4B4D0001, flags, label, path)
            print(result, errno.errorcode[ctypes.get_errno()])
    """))
    result = run([*km, PYTHON, script], cwd=tmp_path, env=python_env())
    assert result.returncode == 0, result.err
    assert result.out == "-1 EFAULT\n-1 EFAULT\n-1 EINVAL\n-1 EFAULT\n", result.out
    assert list(tmp_path.iterdir()) == [script]


def test_snapshot_and_resume_under_root(payloads, km, tmp_path):
    """Under --root km's own files are out of reach once its jail is up: --snapshot
    (or a snapshot named as the payload) loads the snapshot code before; without
    either the hypercall says so (EOPNOTSUPP)."""
    root = tmp_path / "root"
    (root / "bin").mkdir(parents=True)
    (root / "out").mkdir()
    shutil.copy(payloads.build("snap_threads", FLAVOURS["glibc-static"]), root / "bin" / "st")
    plain = run([*km, "--root", root, "/bin/st"], cwd=tmp_path)
    assert (plain.returncode, plain.out) == (3, "snapshot failed: -95\n"), plain.err
    assert "start km with --snapshot" in plain.err
    original = run([*km, "--root", root, "--snapshot=/out/s.snap", "/bin/st", "live"],
                   cwd=tmp_path)
    assert original.returncode == 0, original.err
    assert (root / "out" / "s.snap").exists()
    resumed = run([*km, "--root", root, "/out/s.snap"], cwd=tmp_path)
    assert resumed.returncode == 0, resumed.err
    assert resumed.out == "resumed=1\n" + EXPECTED_THREADS, resumed.out + resumed.err


def test_a_resumed_process_forks_and_execs(km, tmp_path):
    script = tmp_path / "fork.py"
    script.write_text(textwrap.dedent("""
        import os, subprocess, sys
        from kontain.guest import snapshot
        x = list(range(100001))
        resumed = snapshot(path=sys.argv[1])
        out = subprocess.run(["/bin/echo", "child", str(len(x))], capture_output=True,
                             text=True).stdout.strip()
        pid = os.fork()
        if pid == 0:
            os._exit(sum(x) % 251)
        print(resumed, out, os.waitpid(pid, 0)[1] >> 8, flush=True)
    """))
    snap = tmp_path / "fork.snap"
    original = run([*km, PYTHON, script, snap], cwd=tmp_path, env=python_env())
    assert (original.returncode, original.out) == (0, ""), original.err
    resumed = run([*km, snap], cwd=tmp_path)
    assert resumed.returncode == 0, resumed.err
    assert resumed.out == f"1 child 100001 {sum(range(100001)) % 251}\n", resumed.out
