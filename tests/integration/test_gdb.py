"""km's gdb stub (km -g, --gdb-listen) against the real gdb in batch mode.

Each test starts km with `-g0` (the stub takes a free port and says which on stderr:
the test reads that line, no fixed sleeps), runs `gdb -batch -ex ...` against it, and
checks what gdb printed and how km ended. Payloads: tests/payloads/gdb_target.c, built
with debug info as static musl, static glibc and dynamic glibc programs.
"""

from __future__ import annotations

import re
import shutil
import signal
import subprocess
import time

import pytest
from conftest import BASE_ENV, Flavour

GDB_FLAVOURS = {
    "musl": Flavour("musl-gdb", "musl-gcc", ("-static", "-g", "-O0"), pie=False),
    "glibc": Flavour("glibc-gdb", "gcc", ("-static", "-g", "-O0", "-pthread"), pie=False),
    "glibc-dynamic": Flavour("glibc-dyn-gdb", "gcc", ("-g", "-O0", "-pthread"), pie=True),
}
TIMEOUT = 90

pytestmark = pytest.mark.skipif(shutil.which("gdb") is None, reason="gdb is not installed")


@pytest.fixture(params=list(GDB_FLAVOURS), ids=list(GDB_FLAVOURS))
def program(request, payloads):
    return payloads.build("gdb_target", GDB_FLAVOURS[request.param])


@pytest.fixture
def glibc_program(payloads):
    return payloads.build("gdb_target", GDB_FLAVOURS["glibc"])


class Km:
    """km running a payload under its gdb stub; address: where gdb connects."""

    def __init__(self, km: list[str], program, args: list[str], option: str = "-g0") -> None:
        self.proc = subprocess.Popen([*km, option, str(program), *args], env=BASE_ENV,
                                     stdin=subprocess.DEVNULL, stdout=subprocess.PIPE,
                                     stderr=subprocess.PIPE)
        line = self.proc.stderr.readline().decode()  # km says where it listens, first
        match = re.search(r"listening on (\S+)", line)
        assert match, f"km did not start its gdb stub: {line!r}"
        self.address = match.group(1)

    def finish(self) -> tuple[int, str, str]:
        out, err = self.proc.communicate(timeout=TIMEOUT)
        return self.proc.returncode, out.decode(), err.decode()

    def kill(self) -> None:
        if self.proc.poll() is None:
            self.proc.kill()
        self.proc.communicate(timeout=TIMEOUT)


def gdb_command(program, address: str, commands: list[str]) -> list[str]:
    args = ["gdb", "-nx", "-batch", "-ex", "set pagination off", "-ex", "set confirm off",
            "-ex", f"target remote {address}"]
    for command in commands:
        args += ["-ex", command]
    return args + [str(program)]


def gdb(program, address: str, commands: list[str]) -> str:
    done = subprocess.run(gdb_command(program, address, commands), capture_output=True,
                          text=True, timeout=TIMEOUT, stdin=subprocess.DEVNULL)
    return done.stdout + done.stderr


def test_break_bt_registers_print_step_next_finish_continue(km, program):
    session = Km(km, program, [])
    out = gdb(program, session.address, [
        "break add", "continue", "bt", "info registers rip", "p counter", "next", "p s",
        "step", "finish", "delete", "continue"])
    status, stdout, stderr = session.finish()
    assert re.search(r"Breakpoint 1, add \(a=0, b=10\) at .*gdb_target.c:\d+", out), out
    assert re.search(r"#0  add \(a=0, b=10\).*\n#1  0x[0-9a-f]+ in main ", out), out
    assert re.search(r"rip +0x[0-9a-f]+ +0x[0-9a-f]+ <add\+\d+>", out), out
    assert "$1 = 0\n" in out, out  # counter before the first add
    assert "$2 = 10\n" in out, out  # s after `next` over its assignment
    assert "Value returned is $3 = 10" in out, out
    assert "exited with code 01" in out, out
    assert status == 1 and stdout == "total 33\n", (status, stdout, stderr)


def test_watch_a_global(km, glibc_program):
    """Write watchpoints without debug registers (PVM has none that work): km single-
    steps the running threads itself and stops the one that changed the bytes."""
    session = Km(km, glibc_program, [])
    out = gdb(glibc_program, session.address, [
        "break add", "continue", "finish", "delete", "watch counter", "continue",
        "continue", "delete", "continue"])
    status, stdout, _ = session.finish()
    assert "atchpoint 2: counter" in out, out
    assert re.search(r"Old value = 10\s+New value = 21", out), out
    assert re.search(r"Old value = 21\s+New value = 33", out), out
    assert "exited with code 01" in out and status == 1, out


def test_eight_threads_info_threads_and_thread_apply_all_bt(km, program):
    session = Km(km, program, ["threads"])
    out = gdb(program, session.address, [
        "break add", "continue", "info threads", "thread apply all bt", "delete",
        "continue"])
    status, stdout, _ = session.finish()
    listed = re.findall(r"^[ *] +\d+ +Thread ", out, re.MULTILINE)  # (Thread PID.TID)
    assert len(listed) == 9, out  # main and 8 workers
    assert len(re.findall(r"^Thread \d+ \(Thread \d+\.\d+\)", out, re.MULTILINE)) == 9, out
    if "musl" not in program.name:  # (musl's static libc has no unwind info to go past
        assert out.count(" in worker (") == 8, out  # its system call wrappers)
    assert re.search(r"#0  add \(a=1, b=2\)", out), out
    assert status == 1 and stdout == "total 33\n", out


def test_ctrl_c_interrupts_the_running_payload_then_kill(km, glibc_program):
    session = Km(km, glibc_program, ["spin"])
    gdb_process = subprocess.Popen(
        gdb_command(glibc_program, session.address,
                    ["continue", "p spins > 0", "bt", "kill"]),
        stdin=subprocess.DEVNULL, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
        text=True)
    try:
        assert session.proc.stdout.readline() == b"spinning\n"  # running: interrupt it
        deadline = time.monotonic() + TIMEOUT
        out = ""
        while gdb_process.poll() is None and time.monotonic() < deadline:
            # (gdb may not have sent `continue` yet: it ignores an early SIGINT, so again)
            gdb_process.send_signal(signal.SIGINT)
            try:
                out = gdb_process.communicate(timeout=1)[0]
            except subprocess.TimeoutExpired:
                continue
    finally:
        if gdb_process.poll() is None:
            gdb_process.kill()
    assert "Program received signal SIGINT" in out, out
    # (where it stopped: in the loop, or still on its way back from the write)
    assert re.search(r"\$1 = [01]\n", out) and " in main (" in out, out
    session.proc.wait(timeout=TIMEOUT)
    assert session.proc.returncode in (-signal.SIGKILL, 128 + signal.SIGKILL), out
    session.kill()


def test_detach_lets_the_payload_finish(km, glibc_program):
    session = Km(km, glibc_program, [])
    out = gdb(glibc_program, session.address, ["break add", "continue", "detach"])
    status, stdout, _ = session.finish()
    assert "Breakpoint 1, add" in out and re.search(r"process \d+\) detached", out), out
    assert status == 1 and stdout == "total 33\n"  # the breakpoint is gone: no SIGTRAP


def test_break_in_a_libc_function_of_a_dynamic_payload(km, payloads):
    program = payloads.build("gdb_target", GDB_FLAVOURS["glibc-dynamic"])
    session = Km(km, program, [])
    out = gdb(program, session.address, [
        "set sysroot /", "break main", "continue", "break printf", "continue", "bt",
        "info sharedlibrary", "delete", "continue"])
    status, stdout, _ = session.finish()
    assert re.search(r"Breakpoint 2, [^\n]*printf", out), out
    assert re.search(r"#1  0x[0-9a-f]+ in main ", out), out
    assert "libc.so.6" in out, out
    assert status == 1 and stdout == "total 33\n", out


@pytest.mark.parametrize("passed", [True, False], ids=["pass", "nopass"])
def test_signals_stop_the_thread_and_gdb_decides(km, glibc_program, passed):
    """A signal is a stop of its thread; gdb's `continue` delivers it (or drops it with
    `handle nopass`); a fatal one ends the process as gdb says."""
    session = Km(km, glibc_program, ["signals"])
    handle = [] if passed else ["handle SIGUSR1 nopass"]
    out = gdb(glibc_program, session.address, [*handle, "continue", "continue", "continue"])
    status, stdout, _ = session.finish()
    assert "Program received signal SIGUSR1" in out, out
    assert "Program received signal SIGSEGV" in out, out
    assert "Program terminated with signal SIGSEGV" in out, out
    assert stdout == ("handler\n" if passed else "") + "after raise\n", stdout
    assert status in (-signal.SIGSEGV, 128 + signal.SIGSEGV), status


def test_stepi_over_a_syscall_stops_right_after_it(km, glibc_program):
    """(TF would trap one instruction late there on PVM: km ends this step with an
    int3 after the syscall instead.)"""
    session = Km(km, glibc_program, ["syscall"])
    out = gdb(glibc_program, session.address, [
        "break at_syscall", "continue", "stepi", "x/i $pc", "stepi", "x/i $pc",
        "continue"])
    status, stdout, _ = session.finish()
    at = int(re.search(r"Breakpoint 1 at (0x[0-9a-f]+)", out).group(1), 16)
    pcs = [int(pc, 16) for pc in re.findall(r"=> (0x[0-9a-f]+) <", out)]
    assert pcs == [at + 2, at + 3], out  # after the 2-byte syscall, then after a nop
    assert status == 0 and stdout == "pid ok\n", out


def test_exec_event_loads_the_new_program(km, glibc_program):
    """execve: gdb hears of it (an exec stop), sets its breakpoints in the new program."""
    session = Km(km, glibc_program, ["exec"])
    out = gdb(glibc_program, session.address, [
        "break add", "continue", "bt 1", "delete", "continue"])
    status, stdout, _ = session.finish()
    assert "is executing new program" in out, out
    assert re.search(r"Breakpoint 1, add \(a=0, b=10\)", out), out
    assert status == 1 and stdout == "total 33\n", out


def test_gdb_listen_attaches_to_a_running_payload(km, glibc_program):
    session = Km(km, glibc_program, ["spin"], option="--gdb-listen=0")
    try:
        assert session.proc.stdout.readline() == b"spinning\n"  # it runs before gdb comes
        out = gdb(glibc_program, session.address, ["p spins > 0", "bt", "detach"])
        assert "$1 = 1" in out and " in main (" in out, out
        assert session.proc.poll() is None, out  # detached: still running
    finally:
        session.kill()


def test_malformed_packets_do_not_hurt_km(km, glibc_program, tmp_path):
    """A hostile client on the stub's socket (here a unix socket): bad checksums,
    garbage, reads and writes of addresses the guest does not map (km's own among
    them), breakpoints there; then it goes away: the payload runs on, undisturbed."""
    import socket
    path = tmp_path / "gdb.sock"
    session = Km(km, glibc_program, [], option=f"-g{path}")
    client = socket.socket(socket.AF_UNIX)
    client.connect(session.address)
    from kontain.monitor.gdbstub import frame
    garbage = [b"$m0,ffffffff#00", b"\x00\xff" * 100, b"$" + b"A" * 70000, b"#zz"]
    packets = [b"m0,ffffffffff", b"mffffff8000000000,100", b"Mffffff8000000000,1:cc",
               b"Xffffff8000000000,1:\xcc", b"Z0,ffffff8000000000,1", b"Z0,0,1",
               b"Gzz", b"P10=zz", b"vCont;s:99999", b"Hg-5", b"qXfer:features:read:a:b",
               b"mffffffffffffffff,10", b"M10,ffffffffffffff:00", b"?", b"g"]
    for item in garbage:
        client.sendall(item)
    for packet in packets:
        client.sendall(frame(packet))
    client.settimeout(TIMEOUT)
    received = b""
    while received.count(b"#") < len(packets):
        chunk = client.recv(65536)
        assert chunk, received
        received += chunk
    assert b"$T05thread:" in received  # `?` still answered
    client.close()  # gone without D: km lets the payload go on
    status, stdout, stderr = session.finish()
    assert status == 1 and stdout == "total 33\n", (status, stdout, stderr)


def test_registers_beyond_the_general_ones(km, glibc_program):
    """fs_base, SSE and (where the CPU has it) AVX state: read, written, read back."""
    session = Km(km, glibc_program, [])
    out = gdb(glibc_program, session.address, [
        "break add", "continue", "p $fs_base != 0", "p $orig_rax",
        "set $xmm1.v4_int32[0] = 5", "p $xmm1.v4_int32[0]", "set $rbx = 0x1234",
        "p/x $rbx", "set $st0 = 2.5", "p $st0", "p $mxcsr",
        "set $ymm1.v8_int32[7] = 9", "p $ymm1.v8_int32[7]", "kill"])
    session.kill()
    assert "$1 = 1\n$2 = -1\n$3 = 5\n$4 = 0x1234\n$5 = 2.5\n" in out, out
    assert "$6 = [ IM DM ZM OM UM PM ]" in out, out
    if "$7 = 9" not in out:  # no AVX on this CPU: gdb has no $ymm1
        assert "$ymm1" in out or "void" in out, out


def test_a_client_gone_mid_run_leaves_the_payload_running(km, glibc_program):
    """gdb killed while the payload runs under a watchpoint (km single-stepping it):
    km takes the steps and breakpoints out, the payload goes on, and the next client
    finds it running where it should be."""
    session = Km(km, glibc_program, ["spin"], option="--gdb-listen=0")
    try:
        assert session.proc.stdout.readline() == b"spinning\n"
        first = subprocess.Popen(
            gdb_command(glibc_program, session.address, ["watch counter", "continue"]),
            stdin=subprocess.DEVNULL, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
            text=True)
        for line in first.stdout:  # (then it sends its `continue`)
            if "atchpoint 1: counter" in line:
                break
        first.kill()
        first.communicate(timeout=TIMEOUT)
        out = gdb(glibc_program, session.address, ["p spins > 0", "bt 1", "detach"])
        assert "$1 = 1" in out and " in main (" in out, out
        assert session.proc.poll() is None, out
    finally:
        session.kill()


def test_shared_libraries_from_the_stubs_svr4_list(km, payloads):
    """gdb takes a dynamic payload's libraries from qXfer:libraries-svr4 (km walks the
    guest's r_debug): libc is listed where the payload's /proc/self/maps has its text,
    and a breakpoint in a libc function still works."""
    program = payloads.build("gdb_target", GDB_FLAVOURS["glibc-dynamic"])
    session = Km(km, program, ["maps"])
    out = gdb(program, session.address, [
        "set sysroot /", "set debug remote 1", "break add", "continue",
        "info sharedlibrary", "set debug remote 0", "delete", "break printf", "continue",
        "bt 2", "delete", "continue"])
    status, stdout, _ = session.finish()
    assert "qXfer:libraries-svr4:read" in out and "<library-list-svr4" in out, out
    row = re.search(r"^(0x[0-9a-f]+)\s+(0x[0-9a-f]+)\s+Yes[^\n]*\s(\S*libc\.so\.6)$", out,
                    re.MULTILINE)
    assert row, out
    start = int(row.group(1), 16)
    text = [line.split()[0].split("-") for line in stdout.splitlines()
            if "libc.so" in line and " r-xp " in line]
    assert any(int(low, 16) <= start < int(high, 16) for low, high in text), (out, stdout)
    assert re.search(r"Breakpoint 2, [^\n]*printf", out), out
    assert re.search(r"#1  0x[0-9a-f]+ in main ", out), out
    assert status == 1 and stdout.endswith("total 33\n"), (status, stdout)


def test_fork_event_detaches_the_child_which_runs_free(km, program):
    """A fork is reported (fork-events, multiprocess ids); gdb's default detaches the
    child: it calls the function with the breakpoint undisturbed and exits 3, while the
    parent stops there afterwards."""
    session = Km(km, program, ["fork"])
    out = gdb(program, session.address, [
        "catch fork", "break add", "continue", "info inferiors", "continue", "bt 1",
        "delete", "continue"])
    status, stdout, stderr = session.finish()
    caught = re.search(r"Catchpoint 1 \(forked process (\d+)\)", out)
    assert caught, out
    assert f"Detaching after fork from child process {caught.group(1)}" in out, out
    assert re.search(r"Breakpoint 2, add \(a=0, b=10\)", out), out
    assert len(re.findall(r"^[* ] +\d+ +process \d+", out, re.MULTILINE)) == 1, out
    assert "exited with code 01" in out, out
    assert status == 1 and stdout == "child add 11\nchild status 3\ntotal 33\n", (
        status, stdout, stderr)
