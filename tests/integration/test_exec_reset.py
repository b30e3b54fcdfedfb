"""execve inside km reuses the VM, its memslots and its vCPUs (Machine.reset): the new
program must find what a new VM would have given it, and execs without end must not
make km grow. tests/payloads/exec_reset.c, run natively and under km."""

import os
import signal
import subprocess
import threading

import pytest
from conftest import BASE_ENV, child_setup

from .oracle import compare

LIBCS = ["musl", "glibc"]


@pytest.fixture(params=LIBCS)
def exec_reset(payloads, request):
    return payloads.build("exec_reset", request.param)


def test_nothing_of_the_old_program_survives_its_exec(exec_reset, run_both, assert_same):
    """The x87 control and tag words, MXCSR, vector and opmask registers and the GS base
    are back to a new program's; the old program's page and its vDSO address are gone
    (KVM kept no translation of them), and memory mapped anew there reads as zeros."""
    out = compare(run_both([exec_reset, "state"]), assert_same)
    assert "x87 control word: 0x37f, tag word: 0xffff\n" in out
    assert "MXCSR: 0x1f80\n" in out
    assert "the old program's YMM values: gone\n" in out
    assert "GS base: 0\n" in out
    assert "the old program's page: SIGSEGV\n" in out
    assert "the old program's vDSO address: SIGSEGV\n" in out
    assert "a new mapping there reads as zeros: yes\n" in out


def _chain(argv: list[str], count: int, mark: int) -> tuple[str, list[tuple[int, int]]]:
    """Run `exec_reset chain count mark`; when it stops at mark and at 0, take the
    process's resident memory (KiB) and number of open descriptors (km's own, under
    km). Returns its output and those two samples."""
    proc = subprocess.Popen([*argv, "chain", str(count), str(mark)], stdin=subprocess.PIPE,
                            stdout=subprocess.PIPE, env=dict(BASE_ENV),
                            preexec_fn=child_setup)
    timer = threading.Timer(120, lambda: os.kill(proc.pid, signal.SIGKILL))
    timer.start()
    samples, lines = [], []
    try:
        for _ in range(2):
            line = proc.stdout.readline().decode()
            lines.append(line)
            if not line.startswith("at "):
                break
            with open(f"/proc/{proc.pid}/status") as f:
                rss = next(int(row.split()[1]) for row in f if row.startswith("VmRSS:"))
            samples.append((rss, len(os.listdir(f"/proc/{proc.pid}/fd"))))
            proc.stdin.write(b"x")
            proc.stdin.flush()
        lines.append(proc.stdout.read().decode())
    finally:
        proc.stdin.close()
        proc.wait()
        timer.cancel()
    assert proc.returncode == 0, "".join(lines)
    return "".join(lines), samples


def test_200_execs_in_a_row_leave_km_as_it_was(exec_reset, km):
    """After 200 execs km holds the descriptors and (within a little heap noise) the
    memory it held after the first 20: each exec gives back its VM state, guest memory
    and descriptors, or reuses them."""
    expected = "at 180\nat 0\nchain done\n"
    native, _ = _chain([str(exec_reset)], 200, 180)
    assert native == expected
    out, [(rss_before, fds_before), (rss_after, fds_after)] = _chain(
        [*km, str(exec_reset)], 200, 180)
    assert out == expected
    # (one more at most: km's own /proc/self/pagemap, opened at its first 2 MiB page)
    assert fds_before <= fds_after <= fds_before + 1
    assert rss_after - rss_before < 2048, (rss_before, rss_after)


def test_execs_from_a_thread_beside_busy_threads(exec_reset, run_both, assert_same):
    """A thread other than the first execs while the others spin, sleep and block in
    read, twice over: the new program's first thread and the threads it starts get the
    old vCPUs again (the caller's, and the vanished threads')."""
    out = compare(run_both([exec_reset, "threads", "2"]), assert_same)
    assert out == ("generation 2\ngeneration 1\n"
                   "after the execs from threads: 4 threads joined, sum 15005000\n")
