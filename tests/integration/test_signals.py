"""Signals inside the payload: handlers and siginfo, masks and pending sets, sigwait and
sigtimedwait, alarm/pause, SA_RESTART vs EINTR, real-time queueing, SA_NODEFER and
SA_RESETHAND, FP/XSAVE state across handlers, interval and POSIX timers
(SIGEV_THREAD_ID), deaths by signal, and CPU exceptions delivered as signals (SIGSEGV with
si_addr/si_code, SIGBUS, SIGFPE, SIGILL, SIGTRAP, stack overflow on sigaltstack).

Each case runs a mode of tests/payloads/sig_basic.c or sig_fault.c natively and under
km: stdout and the exit status (-N when signal N killed the process) must be the same.
Some lines of the native output are checked as well, so that a broken payload cannot
pass by agreeing with itself.
"""

from __future__ import annotations

import os
import signal
import subprocess

import pytest
from conftest import FLAVOURS, Flavour

THREAD_FLAVOURS = {
    "musl": FLAVOURS["musl"],
    "glibc": Flavour("glibc-pthread", "gcc", ("-static", "-O2", "-pthread"), pie=False),
}


@pytest.fixture(params=list(THREAD_FLAVOURS), ids=list(THREAD_FLAVOURS))
def tflavour(request) -> Flavour:
    return THREAD_FLAVOURS[request.param]


def case(mode, status=0, *expect, slow=False):
    marks = [pytest.mark.slow] if slow else []
    return pytest.param(mode, status, expect, id=mode, marks=marks)


SIGNAL_CASES = [
    # SA_SIGINFO handler: si_signo/si_code/si_pid/si_uid for kill, raise, tgkill, sigqueue,
    # rt_(tg)sigqueueinfo; the handler's mask (own signal + sa_mask) and uc_sigmask
    case("info", 0,
         "  handler: SIGUSR1 code=SI_USER pid_is_ours=yes uid_is_ours=yes value=-1\n",
         "  handler: SIGUSR1 code=SI_TKILL pid_is_ours=yes",
         "  handler: SIGUSR1 code=SI_QUEUE pid_is_ours=yes uid_is_ours=yes value=1234\n",
         "own signal blocked in handler: yes, sa_mask signal blocked: yes\n",
         "uc_sigmask (the mask to restore) has SIGUSR2: yes\n"),
    # a process may queue any si_code to itself (EPERM is only for other processes)
    case("queueinfo_self", 0, "rt_sigqueueinfo to itself with SI_KERNEL: 0 \n",
         "rt_sigqueueinfo to itself with SI_TKILL: 0 \n"),
    # blocking, sigpending, standard signals not queueing, SIG_IGN discarding a pending one
    case("mask", 0, "blocked: pending SIGUSR1=yes SIGUSR2=yes SIGTERM=no\n",
         "unblocked SIGUSR1: handled 1 (standard signals do not queue)\n",
         "SIGTERM set to SIG_IGN: pending SIGUSR1=no SIGUSR2=no SIGTERM=no\n"),
    # sigwait, sigwaitinfo, sigtimedwait timing out with EAGAIN, sigsuspend
    case("wait", 0, "sigwait: 0, signal SIGUSR2\n",
         "sigtimedwait(50 ms), nothing pending: -1 EAGAIN, waited >= 50 ms yes, < 2 s yes\n",
         "sigtimedwait interrupted by SIGALRM's handler: -1 EINTR, handled 1, early yes\n",
         "sigsuspend: -1 EINTR, handled 1, SIGUSR1 blocked again yes\n"),
    # alarm(1) + pause
    case("alarm", 0, "pause: -1 EINTR, SIGALRM handled 1, after >= 0.9 s yes, < 3 s yes\n",
         slow=True),
    # a blocking pipe read interrupted by SIGALRM: resumed with SA_RESTART, EINTR without
    case("restart", 0, "SA_RESTART: read on an empty pipe: 1 , got 'x', handler ran 1\n",
         "no SA_RESTART: read on an empty pipe: -1 EINTR, got '-', handler ran 1\n",
         "nanosleep(2 s) with SA_RESTART: -1 EINTR"),
    # real-time signals queued while blocked: all delivered, lowest number first, each
    # signal's values in the order sent (standard ones once)
    case("rt", 0, "handlers masking each other: delivered 9: SIGUSR1=103 SIGUSR2=107 "
         "SIGRTMIN+0=101 SIGRTMIN+0=105 SIGRTMIN+0=109 SIGRTMIN+2=100 SIGRTMIN+2=102 "
         "SIGRTMIN+2=106 SIGRTMIN+5=104\n",
         "sigtimedwait drained RTMIN+3 values: 0 1 4 9 16 25 36 49 64 81 100"),
    # the same with handlers that do not mask each other: Linux stacks one frame per
    # deliverable signal at once, so the highest-numbered handler runs first
    case("rt_nesting", 0, "handlers nesting: delivered 9: SIGRTMIN+5=104 SIGRTMIN+2=100"),
    case("nodefer", 0, "  enter #2 depth 2, own signal blocked no\n",
         "  entered 2, max depth 1\n", "  entered 2, max depth 2\n"),
    # SA_RESETHAND: the handler runs once, then the default action kills (SIGUSR2)
    case("resethand", -signal.SIGUSR2, "after: disposition SIG_DFL yes\n"),
    # ... and only the handler is reset: sigaction reports the flags and mask installed
    case("resethand_flags", 0, "after: SIG_DFL yes, SA_SIGINFO yes, SA_RESETHAND yes, "
         "SA_RESTART yes, mask has SIGINT yes\n"),
    # xmm0-15, x87 control word/stack, MXCSR, ymm upper halves across a handler that
    # trashes them; a long FP/integer loop under a 1 ms itimer gives the same result
    case("fp", 0, "xmm0-15 intact after the handler: yes\n",
         "x87 control word kept: yes, x87 stack kept: yes, MXCSR kept: yes\n",
         "floating-point result equals the undisturbed run's: yes\n"),
    # setitimer ITIMER_REAL every 10 ms, 20 counted; ITIMER_PROF while spinning
    case("itimer", 0, "20 periodic SIGALRMs counted: 20, took >= 190 ms yes, < 5 s yes\n",
         "ITIMER_PROF: 5 SIGPROFs while spinning: yes\n"),
    # ITIMER_VIRTUAL counts user CPU time (the guest's, under km)
    case("itimer_virtual", 0, "ITIMER_VIRTUAL: 5 SIGVTALRMs while spinning: yes\n"),
    # timer_create: SIGEV_SIGNAL (SI_TIMER, sigev_value), periodic, TIMER_ABSTIME,
    # SIGEV_THREAD_ID to a worker and to main
    case("timer", 0, "SIGEV_SIGNAL one-shot: hits 1, code SI_TIMER, value 4321, in main "
         "thread yes\n",
         "SIGEV_THREAD_ID to the worker: hits 1, handled by the worker yes\n",
         "SIGEV_THREAD_ID to main: hits 1, handled by main yes\n"),
    # expirations while the timer's signal is blocked become overruns of one signal
    case("timer_overrun", 0, "on unblock: delivered yes, si_overrun > 3 yes, "
         "timer_getoverrun > 3 yes, equal yes\n"),
    # SIGEV_THREAD: libc's helper thread, driven by an internal real-time signal (32)
    case("timer_thread", 0, "SIGEV_THREAD one-shot: calls 1, value 99, in another thread yes\n",
         "SIGEV_THREAD periodic: at least 5 more calls yes\n"),
    case("term", -signal.SIGTERM, "raise(SIGTERM) with the default action\n"),
    case("abort", -signal.SIGABRT, "abort()\n"),
    case("abort_handled", -signal.SIGABRT, "SIGABRT handler ran"),
    case("kill_thread", -signal.SIGTERM, "a thread sends SIGTERM to the process\n"),
    # signals and threads: pthread_kill to a thread blocked in read (EINTR there), a
    # thread-directed signal pending for its (blocking) target only, mask inheritance, a
    # condvar wait that goes on after a handler, glibc's set*id broadcast to all threads
    case("threads", 0, "reader: read returned -1 EINTR, handler ran in this thread yes\n",
         "blocker: SIGUSR2 pending for this thread yes, handled 0\n",
         "main: SIGUSR2 pending for main no\n",
         "setuid(getuid()) with 4 more threads: 0\n"),
    # a handler may edit uc_sigmask: rt_sigreturn installs the edited mask
    case("ucmask", 0, "after a handler edited uc_sigmask: SIGUSR2 blocked yes, SIGINT "
         "blocked no, SIGUSR1 blocked no\n"),
    # writing to a pipe without readers: SIGPIPE (handled, ignored, blocked, default)
    case("sigpipe", -signal.SIGPIPE, "write to a pipe without readers, handled: -1 EPIPE, "
         "SIGPIPE handled 1\n", "blocked: -1 EPIPE, pending yes\n"),
    # process-directed signals that every thread blocks go to the thread in sigwait
    case("sigwait_thread", 0, "sigwait thread: SIGHUP\nsigwait thread: SIGTERM\n"),
]

FAULT_CASES = [
    # si_addr exact, SEGV_MAPERR (unmapped) vs SEGV_ACCERR (PROT_READ, PROT_NONE, text,
    # .rodata, no-exec), SI_KERNEL for a non-canonical address, recovery by siglongjmp
    case("segv", 0,
         "write to a PROT_READ page: SIGSEGV SEGV_ACCERR, si_addr is the address used yes",
         "read of an unmapped page: SIGSEGV SEGV_MAPERR, si_addr is the address used yes",
         "call into a PROT_READ|PROT_WRITE page: SIGSEGV SEGV_ACCERR, si_addr is the "
         "address used yes",
         "read of a non-canonical address: SIGSEGV SI_KERNEL"),
    # uc_mcontext's trap number and page-fault error code
    case("segv_context", 0, "  trapno 14, error code 0x6\n", "  trapno 14, error code 0x7\n"),
    # SIGFPE FPE_INTDIV (#DE), SIGILL ILL_ILLOPN (ud2, __builtin_trap), SIGTRAP (int3),
    # resumed by editing the saved RIP, or by siglongjmp
    case("traps", 0, "idiv by zero: SIGFPE FPE_INTDIV, si_addr is the idiv yes, RIP was "
         "the idiv yes, trapno 0, resumed after it with 42\n",
         "ud2: SIGILL ILL_ILLOPN, si_addr is the ud2 yes, trapno 6, resumed after it\n",
         "int3: SIGTRAP SI_KERNEL, RIP after the int3 yes, trapno 3\n"),
    # SIGBUS BUS_ADRERR for a file mapping (shared, private) past the end of the file,
    # after the file grew again, after it was truncated under the mapping; the kernel's
    # own access there is EFAULT (km holds such pages out of the page tables).
    case("bus", 0, "write past the end of the file: SIGBUS BUS_ADRERR, si_addr is the "
         "address used yes",
         "read past a truncated end: SIGBUS BUS_ADRERR, si_addr is the address used yes",
         "rt_sigprocmask storing past the end: -1 EFAULT\n",
         "private mapping, read past the end: SIGBUS BUS_ADRERR"),
    # a fault inside the SIGSEGV handler (SIGSEGV blocked there) kills the process
    case("double_fault", -signal.SIGSEGV, "in the SIGSEGV handler (si_addr 24), SIGSEGV "
         "blocked yes; faulting again\n"),
    # infinite recursion caught on an alternate signal stack (main thread and a thread)
    case("altstack", 0, "main: overflow caught: SIGSEGV, handler on the alternate stack "
         "yes, SS_ONSTACK yes, EPERM when changing it yes\n",
         "thread: overflow caught: SIGSEGV, handler on the alternate stack yes"),
    case("overflow_noalt", -signal.SIGSEGV),
    case("die_fpe", -signal.SIGFPE),
    case("die_ill", -signal.SIGILL),
    case("die_trap", -signal.SIGTRAP),
    case("die_segv_ignored", -signal.SIGSEGV),
    case("die_segv_blocked", -signal.SIGSEGV),
    # an unhandled fault in a non-main thread kills the whole process
    case("die_thread", -signal.SIGSEGV, "a thread dereferences a bad pointer\n"),
]


def check(runs, status, expect, assert_same):
    native = runs.native
    assert not native.timed_out, f"the native run timed out:\n{native.out}"
    assert native.returncode == status, f"native: {native.describe()}\n{native.out}"
    for line in expect:
        assert line in native.out, f"native output lacks {line!r}:\n{native.out}"
    assert_same(native, runs.km)


@pytest.mark.parametrize("mode,status,expect", SIGNAL_CASES)
def test_signals(payloads, tflavour, run_both, assert_same, mode, status, expect):
    exe = payloads.build("sig_basic", tflavour)
    check(run_both([exe, mode], timeout=15), status, expect, assert_same)


@pytest.mark.parametrize("mode,status,expect", FAULT_CASES)
def test_faults(payloads, tflavour, run_both, assert_same, mode, status, expect):
    exe = payloads.build("sig_fault", tflavour)
    check(run_both([exe, mode], timeout=15), status, expect, assert_same)


def test_stdout_closed_raises_sigpipe(payloads, tflavour, km, base_env, tmp_path):
    """stdout is a pipe whose reader has gone: the payload's first write kills it with
    SIGPIPE (under km too: km's own write fails with EPIPE, and the guest gets the
    signal)."""
    exe = payloads.build("sig_basic", tflavour)
    codes = []
    for argv in ([exe, "stdout_closed"], [*km, exe, "stdout_closed"]):
        read_end, write_end = os.pipe()
        os.close(read_end)
        try:
            done = subprocess.run([str(a) for a in argv], stdout=write_end,
                                  stderr=subprocess.PIPE, env=base_env, cwd=tmp_path,
                                  timeout=15)
        finally:
            os.close(write_end)
        codes.append((done.returncode, done.stderr.decode(errors="replace")))
    assert codes[0] == (-signal.SIGPIPE, "")
    assert codes[1] == codes[0], f"native {codes[0]}, km {codes[1]}"


def test_handlers_under_syscall_tracing(payloads, run_native, run_km, assert_same):
    """km -V=syscall traces every call, rt_sigreturn included, to stderr: the payload's
    own behaviour (stdout, status) must not change."""
    exe = payloads.build("sig_basic", THREAD_FLAVOURS["musl"])
    native = run_native([exe, "nodefer"], timeout=15)
    traced = run_km(["-V=syscall", exe, "nodefer"], timeout=15)
    assert "  entered 2, max depth 2\n" in native.out
    assert_same(native, traced, stderr=False)
    assert "internal error" not in traced.err, traced.err[-2000:]


def test_faults_static_pie(payloads, run_both, assert_same):
    """si_addr and the saved RIP in a position-independent payload (loaded at a bias)."""
    exe = payloads.build("sig_fault", FLAVOURS["glibc-pie"])
    check(run_both([exe, "traps"], timeout=30), 0,
          ["ud2: SIGILL ILL_ILLOPN, si_addr is the ud2 yes"], assert_same)


TIMING_CASES = [
    case("kill0", 0, "kill0: handled after return: 0 of 500\n"),
    case("killpg", 0, "killpg: handled after return: 0 of 500\n"),
    case("kill-self-thread", 0, "from a thread: handled before return: yes\n"),
    case("tgkill", 0, "tgkill(self): handled before return: yes\n"),
    case("pidfd-self", 0, "pidfd-self: handled after return: 0 of 200\n"),
    case("unblock-pending", 0, "handled before return: yes\n"),
    case("sigpending-timer", 0, "expired timer pending: yes\n"),
    case("timer-disarm", 0, "timer-disarm: 200 rounds survived\n"),
    case("posix-timer-disarm", 0, "posix-timer-disarm: 200 rounds survived\n"),
    case("alarm-disarm", 0, "alarm-disarm: 200 rounds survived\n"),
    *(case(f"{call}-{when}", 0,
           f"{call}-{when}: -1 EINTR, handled 1, SIGALRM blocked after: yes\n")
      for call in ("ppoll", "pselect", "epoll") for when in ("pending", "timer")),
]


@pytest.mark.parametrize("mode,status,expect", TIMING_CASES)
def test_signal_timing(payloads, tflavour, run_both, assert_same, mode, status, expect):
    """A signal the payload makes for itself (kill of its own group, its own thread,
    its timers' expiries) is delivered before the call that made or met it returns:
    a timer disarmed just after it fired still reaches the handler it had then."""
    exe = payloads.build("sig_timing", tflavour)
    check(run_both([exe, mode], timeout=60), status, expect, assert_same)


SIGNALFD_CASES = [
    case("pending", 0, "pending after kill: 1, readable: 1\n", "read 127: -1 EINVAL\n",
         "still pending after refused reads: 1\n", "pending after read: 0, readable: 0\n"),
    case("order", 0, "read 300: 256 bytes\n", "readable at the end: 0\n"),
    case("descriptor", 0, "write: -1 EINVAL\n", "signalfd on a closed descriptor: -1 EBADF\n",
         "original sees USR2: 1\n", "a reused number reads: 3\n"),
    case("blocking", 0, "blocking read: 128, signo 10\n"),
    case("restart", 0, "no SA_RESTART: read -1 EINTR, handler ran: 1\n",
         "SA_RESTART: read 128 , handler ran: 1\n"),
    case("delivered", 0, "handled: 1, readable: 0\n", "ignored and blocked: pending 1\n"),
    case("fork", 0, "child: readable 0, pending USR1 0\n", "parent: readable 1\n"),
    case("epoll", 0, "epoll after: 1, data 7\n", "epoll after the read: 0\n"),
    case("sigwait", 0, "sigwait took 10; readable 1\n", "sigwait took 12; readable 0\n"),
]


@pytest.mark.parametrize("mode,status,expect", SIGNALFD_CASES)
def test_signalfd(payloads, tflavour, run_both, assert_same, mode, status, expect):
    """A signalfd leaves its signals pending until a read takes them, in delivery order;
    readiness (poll, epoll) follows what is pending, also in a forked child."""
    exe = payloads.build("sig_signalfd", tflavour)
    check(run_both([exe, mode], timeout=60), status, expect, assert_same)


def _inheriting(ignored: list[int], blocked: list[int]):
    def prepare() -> None:
        for signo in ignored:
            signal.signal(signo, signal.SIG_IGN)
        signal.pthread_sigmask(signal.SIG_BLOCK, blocked)
    return prepare


def test_ignored_signals_and_mask_are_inherited(km, base_env, tmp_path):
    """Signals ignored and blocked by whoever starts km are the payload's from the start,
    as execve leaves them (nohup, a shell's trap '' SIG); /proc/self/status shows them."""
    script = ("grep -E '^(SigBlk|SigIgn|SigCgt|ShdPnd|SigPnd)' /proc/self/status; "
              "kill -HUP $$; kill -USR2 $$; echo survived")
    outputs = []
    for prefix in ([], km):
        done = subprocess.run([*prefix, "/bin/busybox", "sh", "-c", script],
                              preexec_fn=_inheriting([signal.SIGHUP, signal.SIGINT],
                                                     [signal.SIGUSR2, signal.SIGTERM]),
                              capture_output=True, env=base_env, cwd=tmp_path, timeout=30)
        outputs.append((done.returncode, done.stdout.decode(), done.stderr.decode()))
    assert "SigIgn:\t0000000000000003\n" in outputs[0][1], outputs[0]
    assert outputs[0][1].endswith("survived\n"), outputs[0]
    assert outputs[1] == outputs[0]


def test_shell_trap_ignore_reaches_a_program_under_km(km, base_env, tmp_path):
    """`trap '' USR1` in a shell, then km: the payload starts with USR1 ignored."""
    script = ('trap "" USR1; "$@" /bin/busybox sh -c '
              '"kill -USR1 \\$\\$; grep SigIgn /proc/self/status"')
    outputs = []
    for prefix in ([], km):
        done = subprocess.run(["/bin/busybox", "sh", "-c", script, "sh", *prefix],
                              capture_output=True, env=base_env, cwd=tmp_path, timeout=30)
        outputs.append((done.returncode, done.stdout.decode()))
    status, text = outputs[0]
    assert status == 0 and int(text.removeprefix("SigIgn:"), 16) & 1 << 9, outputs[0]
    assert outputs[1] == outputs[0]
