"""System call handlers of the signal family (kontain/syscalls/signal.py) without KVM:
rt_sigaction, rt_sigprocmask, rt_sigpending, rt_sigsuspend and pause (their immediate
returns), rt_sigtimedwait (with nothing to wait for), sigaltstack, kill/tkill/tgkill,
rt_sigqueueinfo/rt_tgsigqueueinfo, alarm/setitimer/getitimer, POSIX timers and signalfd.

Linux is the oracle: each case is also made natively by this process and km must give
the same result, errno and bytes: struct sigaction as the kernel reads it back, siginfo_t
from sigtimedwait, signalfd_siginfo records, stack_t, itimerval. The native side only
touches SIGUSR2 of this thread (blocked while it is pending, so nothing is delivered),
and restores every disposition, mask and alternate stack it changes. Nothing waits:
sigsuspend and pause are called with a signal already deliverable, sigtimedwait with a
zero timeout or a pending signal. Delivery itself needs a running vCPU (test_sigframe,
integration tests).
"""

from __future__ import annotations

import ctypes
import errno
import os
import signal
import struct

import pytest
from harness import Guest, make_process, make_thread
from oracle import (
    BAD,
    HOLE,
    MASK64,
    PAGE,
    RO,
    RW,
    Twin,
    call,
    host,
    hostile_registers_leave_km_untouched,
    native,
)

from kontain.linux.abi import (
    ERESTARTNOHAND,
)
from kontain.syscalls import signal as family

SIGUSR1, SIGUSR2, SIGKILL, SIGSTOP, SIGCONT, SIGRTMIN = 10, 12, 9, 19, 18, 34
SA_SIGINFO, SA_ONSTACK, SA_RESTART, SA_RESTORER = 4, 0x0800_0000, 0x1000_0000, 0x0400_0000
SA_UNSUPPORTED = 0x400
SIG_DFL, SIG_IGN = 0, 1
SIG_BLOCK, SIG_UNBLOCK, SIG_SETMASK = 0, 1, 2
SI_QUEUE, SI_TKILL, SI_USER = -1, -6, 0
SIGACTION = struct.Struct("<QQQQ")      # handler, flags, restorer, mask (the kernel's)
STACK = struct.Struct("<QiiQ")          # ss_sp, ss_flags, ss_size
SS_ONSTACK, SS_DISABLE, SS_AUTODISARM = 1, 2, -(1 << 31)  # ss_flags is an int
ZERO_TIME = struct.pack("<qq", 0, 0)


def bit(signo: int) -> int:
    return 1 << (signo - 1)


@pytest.fixture
def thread():
    return make_thread(make_process())


@pytest.fixture
def guest(thread):
    return Guest(thread)


@pytest.fixture
def twin(thread):
    """The standard layout for pointer checks: RW, RO, then a hole."""
    t = Twin(thread, [RW, RO, HOLE])
    yield t
    t.close()


def pointer_cases(t: Twin, size: int) -> list[tuple[int, int]]:
    """(guest, host) pointers for size bytes: unmapped, straddling into the hole, and
    (for outputs only: these two are readable) read-only and straddling into it."""
    return [(BAD, BAD), (t.guest + 2 * PAGE - size // 2, t.host + 2 * PAGE - size // 2),
            (t.guest + PAGE, t.host + PAGE),
            (t.guest + PAGE - size // 2, t.host + PAGE - size // 2)]


@pytest.fixture
def usr2():
    """This thread's SIGUSR2 disposition and mask are restored after the test, and the
    signal is blocked during it (so that one the oracle raises stays pending)."""
    action = host(32)
    assert native("rt_sigaction", SIGUSR2, 0, action, 8) == 0
    saved = signal.pthread_sigmask(signal.SIG_BLOCK, {signal.SIGUSR2})
    yield
    while signal.SIGUSR2 in signal.sigpending():  # nothing should be left; drain it if so
        signal.sigtimedwait({signal.SIGUSR2}, 0)
    native("rt_sigaction", SIGUSR2, action, 0, 8)
    signal.pthread_sigmask(signal.SIG_SETMASK, saved)


# ---- rt_sigaction --------------------------------------------------------------------------

def test_sigaction_reads_back_what_it_was_given(thread, guest):
    act = SIGACTION.pack(0x40_1000, SA_SIGINFO | SA_RESTORER, 0x40_2000, bit(SIGUSR2))
    old = guest.alloc(32)
    assert call(thread, "rt_sigaction", SIGUSR1, guest.put(act), old, 8) == 0
    assert guest.read(old, 32) == bytes(32)  # SIG_DFL before
    assert call(thread, "rt_sigaction", SIGUSR1, 0, old, 8) == 0
    assert guest.read(old, 32) == act


@pytest.mark.parametrize("flags, mask", [
    (SA_RESTORER | SA_RESTART, bit(SIGKILL) | bit(SIGSTOP) | bit(SIGUSR1)),
    (SA_RESTORER | SA_ONSTACK | SA_SIGINFO, MASK64)])
def test_sigaction_keeps_what_linux_keeps(thread, guest, usr2, flags, mask):
    act = SIGACTION.pack(SIG_DFL, flags, 0x40_2000, mask)
    linux_old = host(32)
    assert native("rt_sigaction", SIGUSR2, host(act), 0, 8) == 0
    assert native("rt_sigaction", SIGUSR2, 0, linux_old, 8) == 0
    km_old = guest.alloc(32)
    assert call(thread, "rt_sigaction", SIGUSR2, guest.put(act), 0, 8) == 0
    assert call(thread, "rt_sigaction", SIGUSR2, 0, km_old, 8) == 0
    assert guest.read(km_old, 32) == ctypes.string_at(linux_old, 32)


def test_sigaction_clears_unknown_flags(thread, guest, usr2):
    act = SIGACTION.pack(SIG_DFL, SA_RESTORER | SA_UNSUPPORTED, 0x40_2000, 0)
    linux_old = host(32)
    native("rt_sigaction", SIGUSR2, host(act), 0, 8)
    native("rt_sigaction", SIGUSR2, 0, linux_old, 8)
    assert SIGACTION.unpack(ctypes.string_at(linux_old, 32))[1] == SA_RESTORER
    km_old = guest.alloc(32)
    call(thread, "rt_sigaction", SIGUSR2, guest.put(act), 0, 8)
    assert call(thread, "rt_sigaction", SIGUSR2, 0, km_old, 8) == 0
    assert guest.read(km_old, 32) == ctypes.string_at(linux_old, 32)


def test_sigaction_errors(thread, guest, twin):
    act = SIGACTION.pack(SIG_IGN, 0, 0, 0)
    for signo, has_act, size in [(0, False, 8), (65, False, 8), (-1 & 0xFFFFFFFF, False, 8),
                                 (SIGUSR1, False, 4), (SIGUSR1, False, 16),
                                 (SIGKILL, True, 8), (SIGSTOP, True, 8), (SIGKILL, False, 8)]:
        km_act, linux_act = (guest.put(act), host(act)) if has_act else (0, 0)
        km_old, linux_old = guest.alloc(32), host(32)
        assert call(thread, "rt_sigaction", signo, km_act, km_old, size) == \
            native("rt_sigaction", signo, linux_act, linux_old, size), (signo, size)
        assert guest.read(km_old, 32) == ctypes.string_at(linux_old, 32)
    for guest_arg, host_arg in pointer_cases(twin, 32)[:2]:
        assert call(thread, "rt_sigaction", SIGUSR1, guest_arg, 0, 8) == \
            native("rt_sigaction", SIGUSR1, host_arg, 0, 8) == -errno.EFAULT
    for guest_arg, host_arg in pointer_cases(twin, 32):
        assert call(thread, "rt_sigaction", SIGUSR1, 0, guest_arg, 8) == \
            native("rt_sigaction", SIGUSR1, 0, host_arg, 8) == -errno.EFAULT


def test_ignoring_a_signal_discards_it_when_pending(thread, guest):
    thread.signal_mask = bit(SIGUSR1)
    assert call(thread, "kill", thread.proc.pid, SIGUSR1) == 0
    assert call(thread, "tkill", thread.tid, SIGUSR1) == 0
    assert thread.proc.signals.shared.bits and thread.pending.bits
    ignore = SIGACTION.pack(SIG_IGN, SA_RESTORER, 0, 0)
    assert call(thread, "rt_sigaction", SIGUSR1, guest.put(ignore), 0, 8) == 0
    assert not thread.proc.signals.shared.bits and not thread.pending.bits


# ---- masks ------------------------------------------------------------------------------

def test_sigprocmask_like_linux(thread, guest, usr2):
    saved = host(8)
    native("rt_sigprocmask", SIG_BLOCK, 0, saved, 8)
    try:
        native("rt_sigprocmask", SIG_SETMASK, host(struct.pack("<Q", 0)), 0, 8)
        thread.signal_mask = 0
        steps = [(SIG_BLOCK, bit(SIGKILL) | bit(SIGSTOP) | bit(SIGUSR2) | bit(SIGRTMIN)),
                 (SIG_UNBLOCK, bit(SIGRTMIN)), (SIG_SETMASK, MASK64),
                 (SIG_UNBLOCK, MASK64 ^ bit(SIGUSR2)), (3, 0), (-1 & 0xFFFFFFFF, 0)]
        for how, mask in steps:
            km_old, linux_old = guest.alloc(8), host(8)
            assert call(thread, "rt_sigprocmask", how, guest.put(struct.pack("<Q", mask)),
                        km_old, 8) == \
                native("rt_sigprocmask", how, host(struct.pack("<Q", mask)), linux_old, 8)
            assert guest.read(km_old, 8) == ctypes.string_at(linux_old, 8)
        km_now, linux_now = guest.alloc(8), host(8)
        assert call(thread, "rt_sigprocmask", 99, 0, km_now, 8) == \
            native("rt_sigprocmask", 99, 0, linux_now, 8) == 0  # no set: how is not looked at
        assert guest.read(km_now, 8) == ctypes.string_at(linux_now, 8)
    finally:
        native("rt_sigprocmask", SIG_SETMASK, saved, 0, 8)


def test_sigprocmask_errors(thread, guest, twin):
    mask = guest.put(bytes(8))
    for size in (4, 16, 0):
        assert call(thread, "rt_sigprocmask", SIG_BLOCK, mask, 0, size) == \
            native("rt_sigprocmask", SIG_BLOCK, host(8), 0, size) == -errno.EINVAL
    for guest_arg, host_arg in pointer_cases(twin, 8)[:2]:
        assert call(thread, "rt_sigprocmask", SIG_BLOCK, guest_arg, 0, 8) == \
            native("rt_sigprocmask", SIG_BLOCK, host_arg, 0, 8) == -errno.EFAULT
    for guest_arg, host_arg in pointer_cases(twin, 8):
        assert call(thread, "rt_sigprocmask", SIG_BLOCK, 0, guest_arg, 8) == \
            native("rt_sigprocmask", SIG_BLOCK, 0, host_arg, 8) == -errno.EFAULT


def test_sigpending_shows_blocked_pending_signals(thread, guest, twin):
    thread.signal_mask = bit(SIGUSR1) | bit(SIGUSR2)
    call(thread, "kill", thread.proc.pid, SIGUSR1)
    call(thread, "tkill", thread.tid, SIGUSR2)
    out = guest.alloc(8)
    assert call(thread, "rt_sigpending", out, 8) == 0
    assert struct.unpack("<Q", guest.read(out, 8))[0] == bit(SIGUSR1) | bit(SIGUSR2)
    assert call(thread, "rt_sigpending", out, 9) == native("rt_sigpending", host(16), 9) \
        == -errno.EINVAL
    assert call(thread, "rt_sigpending", out, 4) == native("rt_sigpending", host(8), 4) == 0
    for guest_arg, host_arg in pointer_cases(twin, 8):
        assert call(thread, "rt_sigpending", guest_arg, 8) == \
            native("rt_sigpending", host_arg, 8) == -errno.EFAULT


# ---- waiting (never for long) ------------------------------------------------------------

def test_sigsuspend_returns_at_once_with_a_signal_deliverable(thread, guest):
    thread.signal_mask = bit(SIGUSR1)
    call(thread, "kill", thread.proc.pid, SIGUSR1)  # pending, blocked
    unblocked = guest.put(struct.pack("<Q", 0))
    assert call(thread, "rt_sigsuspend", unblocked, 8) == -ERESTARTNOHAND
    assert thread.saved_mask == bit(SIGUSR1) and thread.signal_mask == 0
    assert call(thread, "rt_sigsuspend", unblocked, 4) == \
        native("rt_sigsuspend", host(8), 4) == -errno.EINVAL
    assert call(thread, "rt_sigsuspend", BAD, 8) == native("rt_sigsuspend", BAD, 8) \
        == -errno.EFAULT
    assert call(thread, "pause") == -ERESTARTNOHAND


def test_sigtimedwait_takes_what_tgkill_sent_like_linux(thread, guest, usr2):
    wanted = struct.pack("<Q", bit(SIGUSR2))
    assert native("tgkill", os.getpid(), ctypes.CDLL(None).gettid(), SIGUSR2) == 0
    linux_info = host(128)
    assert native("rt_sigtimedwait", host(wanted), linux_info, host(ZERO_TIME), 8) == SIGUSR2
    thread.signal_mask = bit(SIGUSR2)
    assert call(thread, "tgkill", thread.proc.pid, thread.tid, SIGUSR2) == 0
    km_info = guest.alloc(128)
    assert call(thread, "rt_sigtimedwait", guest.put(wanted), km_info, guest.put(ZERO_TIME),
                8) == SIGUSR2
    assert guest.read(km_info, 128) == ctypes.string_at(linux_info, 128)
    # nothing left: EAGAIN at once with a zero timeout
    assert call(thread, "rt_sigtimedwait", guest.put(wanted), km_info, guest.put(ZERO_TIME),
                8) == native("rt_sigtimedwait", host(wanted), linux_info, host(ZERO_TIME), 8) \
        == -errno.EAGAIN


def test_sigtimedwait_errors(thread, guest, usr2):
    wanted = struct.pack("<Q", bit(SIGUSR2))
    for timeout in (struct.pack("<qq", 0, 1_000_000_000), struct.pack("<qq", -1, 0),
                    struct.pack("<qq", 0, -1)):
        assert call(thread, "rt_sigtimedwait", guest.put(wanted), 0, guest.put(timeout), 8) \
            == native("rt_sigtimedwait", host(wanted), 0, host(timeout), 8) == -errno.EINVAL
    assert call(thread, "rt_sigtimedwait", guest.put(wanted), 0, guest.put(ZERO_TIME), 4) \
        == native("rt_sigtimedwait", host(wanted), 0, host(ZERO_TIME), 4) == -errno.EINVAL
    assert call(thread, "rt_sigtimedwait", BAD, 0, guest.put(ZERO_TIME), 8) == \
        native("rt_sigtimedwait", BAD, 0, host(ZERO_TIME), 8) == -errno.EFAULT
    assert call(thread, "rt_sigtimedwait", guest.put(wanted), 0, BAD, 8) == \
        native("rt_sigtimedwait", host(wanted), 0, BAD, 8) == -errno.EFAULT


# ---- the alternate stack ------------------------------------------------------------------

@pytest.fixture
def altstack():
    """This thread's alternate stack (Python's faulthandler may have one), restored."""
    saved = host(24)
    assert native("sigaltstack", 0, saved) == 0
    sp, flags, _pad, size = STACK.unpack(ctypes.string_at(saved, 24))
    yield
    native("sigaltstack", host(STACK.pack(sp, flags & ~SS_ONSTACK, 0, size)), 0)


def test_sigaltstack_like_linux(thread, guest, altstack):
    stack_memory = host(3 * PAGE)
    for sp, flags, size in [(0x7000_0000, 0, 3 * PAGE), (0x7000_0000, SS_DISABLE, 0),
                            (0x7000_0000, 0, 100), (0x7000_0000, 0x10, 3 * PAGE),
                            (0x7000_0000, SS_ONSTACK, 3 * PAGE)]:
        new = STACK.pack(sp, flags, 0, size)
        linux_new = STACK.pack(stack_memory if sp else 0, flags, 0, size)
        km_old, linux_old = guest.alloc(24), host(24)
        assert call(thread, "sigaltstack", guest.put(new), 0) == \
            native("sigaltstack", host(linux_new), 0), (flags, size)
        assert call(thread, "sigaltstack", 0, km_old) == native("sigaltstack", 0, linux_old)
        km_sp, km_flags, _, km_size = STACK.unpack(guest.read(km_old, 24))
        linux_sp, linux_flags, _, linux_size = STACK.unpack(ctypes.string_at(linux_old, 24))
        assert (km_flags, km_size) == (linux_flags, linux_size)
        assert (km_sp == 0) == (linux_sp == 0)


def test_sigaltstack_cannot_change_while_on_it(thread, guest):
    assert call(thread, "sigaltstack", guest.put(STACK.pack(0x7000_0000, 0, 0, 3 * PAGE)),
                0) == 0
    thread.regs.rsp = 0x7000_1000  # running on it (in a handler)
    old = guest.alloc(24)
    assert call(thread, "sigaltstack", 0, old) == 0
    assert STACK.unpack(guest.read(old, 24))[1] == SS_ONSTACK
    assert call(thread, "sigaltstack", guest.put(STACK.pack(0, SS_DISABLE, 0, 0)), 0) \
        == -errno.EPERM
    assert call(thread, "sigaltstack", BAD, 0) == native("sigaltstack", BAD, 0) == -errno.EFAULT
    assert call(thread, "sigaltstack", 0, BAD) == native("sigaltstack", 0, BAD) == -errno.EFAULT


def test_sigaltstack_keeps_ss_autodisarm(thread, guest, altstack):
    stack_memory = host(3 * PAGE)
    new = STACK.pack(stack_memory, SS_AUTODISARM, 0, 3 * PAGE)
    linux_old = host(24)
    assert native("sigaltstack", host(new), 0) == 0
    assert native("sigaltstack", 0, linux_old) == 0
    km_old = guest.alloc(24)
    assert call(thread, "sigaltstack", guest.put(new), 0) == 0
    assert call(thread, "sigaltstack", 0, km_old) == 0
    assert STACK.unpack(guest.read(km_old, 24))[1] == \
        STACK.unpack(ctypes.string_at(linux_old, 24))[1] == SS_AUTODISARM


# ---- sending -------------------------------------------------------------------------------

def test_kill_and_friends_like_linux(thread):
    pid = thread.proc.pid
    for name, args in [("kill", (pid, 0)), ("kill", (pid, 65)), ("kill", (pid, -1 & 0xFFFFFFFF)),
                       ("kill", (0x7FFF_FFF0, 0)), ("kill", (os.getppid(), 0)),
                       ("tgkill", (pid, thread.tid, 0)), ("tgkill", (0, thread.tid, 0)),
                       ("tgkill", (pid, 0, 0)), ("tgkill", (pid, -5 & 0xFFFFFFFF, 0)),
                       ("tgkill", (pid, thread.tid, 65)), ("tkill", (0, 0)),
                       ("tkill", (thread.tid, 0)), ("tgkill", (0x7FFF_FFF0, 0x7FFF_FFF0, 0))]:
        assert call(thread, name, *args) == native(name, *args), (name, args)
    assert not thread.pending.bits and not thread.proc.signals.shared.bits


def test_signals_to_self_are_queued_by_km(thread):
    thread.signal_mask = MASK64
    assert call(thread, "kill", thread.proc.pid, SIGUSR1) == 0
    assert call(thread, "tgkill", thread.proc.pid, thread.tid, SIGUSR2) == 0
    assert thread.proc.signals.shared.bits == bit(SIGUSR1)
    assert thread.pending.bits == bit(SIGUSR2)
    assert call(thread, "tgkill", thread.proc.pid, thread.tid + 100_000, SIGUSR2) == \
        -errno.ESRCH


def _siginfo(signo: int, code: int, value: int) -> bytes:
    return struct.pack("<iii4xiIQ", signo, 0, code, os.getpid(), os.getuid(), value) \
        .ljust(128, b"\0")


def test_sigqueueinfo_to_self_like_linux(thread, guest, usr2):
    info = _siginfo(99, SI_QUEUE, 0x1234_5678)  # si_signo is overwritten by the kernel
    tid = ctypes.CDLL(None).gettid()
    assert native("rt_tgsigqueueinfo", os.getpid(), tid, SIGUSR2, host(info)) == 0
    linux_info = host(128)
    wanted = struct.pack("<Q", bit(SIGUSR2))
    assert native("rt_sigtimedwait", host(wanted), linux_info, host(ZERO_TIME), 8) == SIGUSR2
    thread.signal_mask = bit(SIGUSR2)
    assert call(thread, "rt_tgsigqueueinfo", thread.proc.pid, thread.tid, SIGUSR2,
                guest.put(info)) == 0
    km_info = guest.alloc(128)
    assert call(thread, "rt_sigtimedwait", guest.put(wanted), km_info, guest.put(ZERO_TIME),
                8) == SIGUSR2
    assert guest.read(km_info, 128) == ctypes.string_at(linux_info, 128)


def test_sigqueueinfo_errors(thread, guest):
    pid = thread.proc.pid
    kernel_code = _siginfo(SIGUSR2, SI_USER, 0)
    # to another process, a non-negative si_code (the kernel's own) is refused
    assert call(thread, "rt_sigqueueinfo", os.getppid(), 0, guest.put(kernel_code)) == \
        native("rt_sigqueueinfo", os.getppid(), 0, host(kernel_code)) == -errno.EPERM
    # (signal 0 only, natively: a process-directed signal could reach another thread)
    for name, args in [("rt_sigqueueinfo", (pid, 65)), ("rt_sigqueueinfo", (pid, 0)),
                       ("rt_tgsigqueueinfo", (pid, thread.tid, 65)),
                       ("rt_tgsigqueueinfo", (0, thread.tid, SIGUSR2))]:
        assert call(thread, name, *args, guest.put(kernel_code)) == \
            native(name, *args, host(kernel_code)), (name, args)
    assert call(thread, "rt_sigqueueinfo", pid, SIGUSR2, BAD) == \
        native("rt_sigqueueinfo", pid, SIGUSR2, BAD) == -errno.EFAULT


def test_tgsigqueueinfo_refuses_a_bad_tid(thread, guest):
    info = _siginfo(SIGUSR2, SI_QUEUE, 0)
    assert native("rt_tgsigqueueinfo", os.getpid(), -1 & 0xFFFFFFFF, SIGUSR2, host(info)) \
        == -errno.EINVAL
    assert call(thread, "rt_tgsigqueueinfo", thread.proc.pid, -1 & 0xFFFFFFFF, SIGUSR2,
                guest.put(info)) == -errno.EINVAL


# ---- timers -----------------------------------------------------------------------------

def test_itimers_like_linux(thread, guest, twin):
    assert call(thread, "alarm", 0) == native("alarm", 0)  # no alarm set, none armed
    for which in (1, 2):  # ITIMER_VIRTUAL, ITIMER_PROF: not used by the test runner
        km, linux = guest.alloc(32), host(32)
        assert call(thread, "getitimer", which, km) == native("getitimer", which, linux) == 0
        assert guest.read(km, 32) == ctypes.string_at(linux, 32)
        disarm = bytes(32)
        assert call(thread, "setitimer", which, guest.put(disarm), km) == \
            native("setitimer", which, host(disarm), linux) == 0
        assert guest.read(km, 32) == ctypes.string_at(linux, 32)
    for name, args in [("getitimer", (5, bytes(32))), ("setitimer", (5, bytes(32), 0)),
                       ("setitimer", (1, struct.pack("<qqqq", 0, 0, 0, 1_000_000), 0)),
                       ("getitimer", (1, BAD)), ("setitimer", (1, BAD, 0)),
                       ("setitimer", (1, bytes(32), BAD))]:
        km_args = [guest.put(a) if isinstance(a, bytes) else a for a in args]
        linux_args = [host(a) if isinstance(a, bytes) else a for a in args]
        assert call(thread, name, *km_args) == native(name, *linux_args), (name, args)
    for guest_arg, host_arg in pointer_cases(twin, 32):
        assert call(thread, "getitimer", 1, guest_arg) == native("getitimer", 1, host_arg)


SIGEVENT = struct.Struct("<Qiii")  # sigev_value, signo, notify, (union: tid)
SIGEV_SIGNAL, SIGEV_NONE, SIGEV_THREAD, SIGEV_THREAD_ID = 0, 1, 2, 4


@pytest.fixture
def timers(thread):
    """Host timers km or the oracle create, deleted after the test."""
    made: list[int] = []
    yield made
    for timer in made:
        native("timer_delete", timer)


def _event(signo: int, notify: int, tid: int = 0) -> bytes:
    return SIGEVENT.pack(0x55, signo, notify, tid).ljust(64, b"\0")


@pytest.mark.parametrize("event", [
    _event(0, SIGEV_NONE), _event(SIGUSR2, SIGEV_SIGNAL), _event(0, SIGEV_SIGNAL),
    _event(65, SIGEV_SIGNAL), _event(SIGUSR2, 99), _event(SIGUSR2, SIGEV_THREAD_ID, 0x7FFF_FFF0),
    _event(0, SIGEV_THREAD), _event(SIGUSR2, SIGEV_THREAD_ID | SIGEV_THREAD), "own tid", None])
def test_timer_create_like_linux(thread, guest, timers, event):
    if event == "own tid":
        km_event = _event(SIGUSR2, SIGEV_THREAD_ID, thread.tid)
        linux_event = _event(SIGUSR2, SIGEV_THREAD_ID, ctypes.CDLL(None).gettid())
    else:
        km_event = linux_event = event
    km_id, linux_id = guest.alloc(4), host(4)
    km = call(thread, "timer_create", 1, guest.put(km_event) if km_event else 0, km_id)
    linux = native("timer_create", 1, host(linux_event) if linux_event else 0, linux_id)
    for result, read in ((km, lambda: guest.read(km_id, 4)),
                         (linux, lambda: ctypes.string_at(linux_id, 4))):
        if result == 0:
            timers.append(struct.unpack("<i", read())[0])
    assert km == linux
    if km == 0:
        assert timers[0] in thread.proc.timers


def test_timer_settime_gettime_delete(thread, guest, timers):
    timer_id = guest.alloc(4)
    assert call(thread, "timer_create", 1, guest.put(_event(0, SIGEV_NONE)), timer_id) == 0
    timer = struct.unpack("<i", guest.read(timer_id, 4))[0]
    timers.append(timer)
    spec = struct.pack("<qqqq", 3, 0, 1000, 0)
    old = guest.alloc(32)
    assert call(thread, "timer_settime", timer, 0, guest.put(spec), old) == 0
    assert guest.read(old, 32) == bytes(32)
    now = guest.alloc(32)
    assert call(thread, "timer_gettime", timer, now) == 0
    interval, _, seconds, nanoseconds = struct.unpack("<qqqq", guest.read(now, 32))
    assert interval == 3 and 0 < seconds * 10**9 + nanoseconds <= 1000 * 10**9
    assert call(thread, "timer_getoverrun", timer) == 0
    bad_spec = struct.pack("<qqqq", 0, 0, 0, 1_000_000_000)
    assert call(thread, "timer_settime", timer, 0, guest.put(bad_spec), 0) == -errno.EINVAL
    assert call(thread, "timer_settime", timer, 0, BAD, 0) == -errno.EFAULT
    assert call(thread, "timer_gettime", timer, BAD) == -errno.EFAULT
    assert call(thread, "timer_delete", timer) == 0
    timers.remove(timer)
    assert timer not in thread.proc.timers
    for name, args in [("timer_delete", (timer,)), ("timer_getoverrun", (timer,)),
                       ("timer_gettime", (timer, bytes(32))),
                       ("timer_settime", (timer, 0, bytes(32), 0)),
                       ("timer_delete", (-1 & 0xFFFFFFFF,))]:
        km_args = [guest.put(a) if isinstance(a, bytes) else a for a in args]
        linux_args = [host(a) if isinstance(a, bytes) else a for a in args]
        assert call(thread, name, *km_args) == native(name, *linux_args) == -errno.EINVAL


# ---- signalfd --------------------------------------------------------------------------------

@pytest.fixture
def fds():
    opened: list[int] = []
    yield opened
    for fd in opened:
        try:
            os.close(fd)
        except OSError:
            pass


def test_signalfd_records_like_linux(thread, guest, usr2, fds):
    mask = struct.pack("<Q", bit(SIGUSR2))
    linux_fd = native("signalfd4", -1 & 0xFFFFFFFF, host(mask), 8, os.O_NONBLOCK)
    km_fd = call(thread, "signalfd4", -1 & 0xFFFFFFFF, guest.put(mask), 8, os.O_NONBLOCK)
    fds += [linux_fd, km_fd]
    assert linux_fd >= 0 and km_fd >= 0
    info = _siginfo(SIGUSR2, SI_QUEUE, 0x8000_0001_8000_0001)  # both halves' top bits set
    assert native("rt_tgsigqueueinfo", os.getpid(), ctypes.CDLL(None).gettid(), SIGUSR2,
                  host(info)) == 0
    thread.signal_mask = bit(SIGUSR2)
    assert call(thread, "rt_tgsigqueueinfo", thread.proc.pid, thread.tid, SIGUSR2,
                guest.put(info)) == 0
    km_record, linux_record = guest.alloc(128), host(128)
    assert call(thread, "read", km_fd, km_record, 128) == \
        native("read", linux_fd, linux_record, 128) == 128
    km_bytes, linux_bytes = guest.read(km_record, 128), ctypes.string_at(linux_record, 128)
    # ssi_tid, ssi_band, ssi_overrun, ssi_trapno, ssi_status are zero for a queued signal
    assert km_bytes[:44] == linux_bytes[:44]
    assert km_bytes[48:] == linux_bytes[48:]  # ssi_ptr and the rest


def test_signalfd_ssi_int_is_the_whole_int(thread, guest, fds):
    mask = struct.pack("<Q", bit(SIGUSR2))
    km_fd = call(thread, "signalfd4", -1 & 0xFFFFFFFF, guest.put(mask), 8, os.O_NONBLOCK)
    fds.append(km_fd)
    thread.signal_mask = bit(SIGUSR2)
    info = _siginfo(SIGUSR2, SI_QUEUE, 0x8000_0001)
    assert call(thread, "rt_tgsigqueueinfo", thread.proc.pid, thread.tid, SIGUSR2,
                guest.put(info)) == 0
    record = guest.alloc(128)
    assert call(thread, "read", km_fd, record, 128) == 128
    assert struct.unpack_from("<I", guest.read(record, 128), 44)[0] == 0x8000_0001


def test_signalfd_arguments(thread, guest, fds):
    mask = struct.pack("<Q", bit(SIGUSR2))
    fd = call(thread, "signalfd", -1 & 0xFFFFFFFF, guest.put(mask), 8)
    fds.append(fd)
    assert fd >= 0
    assert call(thread, "signalfd4", fd, guest.put(struct.pack("<Q", bit(SIGUSR1))), 8, 0) == fd
    plain = os.open(os.devnull, os.O_RDONLY)
    fds.append(plain)
    new = -1 & 0xFFFFFFFF
    for fd_arg, size, flags, km_mask, linux_mask in [
            (new, 4, 0, guest.put(mask), host(mask)), (new, 16, 0, guest.put(mask), host(mask)),
            (new, 8, 1, guest.put(mask), host(mask)), (new, 8, 0, BAD, BAD),
            (plain, 8, 0, guest.put(mask), host(mask))]:
        assert call(thread, "signalfd4", fd_arg, km_mask, size, flags) == \
            native("signalfd4", fd_arg, linux_mask, size, flags), (fd_arg, size, flags)
    assert call(thread, "signalfd4", thread.proc.fds.km_base, guest.put(mask), 8, 0) \
        == -errno.EBADF


def test_signalfd_of_a_closed_descriptor_is_ebadf(thread, guest):
    closed = os.dup(0)
    os.close(closed)
    mask = struct.pack("<Q", bit(SIGUSR2))
    assert native("signalfd4", closed, host(mask), 8, 0) == -errno.EBADF
    assert call(thread, "signalfd4", closed, guest.put(mask), 8, 0) == -errno.EBADF


# ---- hostile registers ---------------------------------------------------------------------

#: Handlers never called with arbitrary registers here: they act on this process.
NOT_SWEPT = {
    "alarm": "arms this process's alarm",
    "pause": "waits for a signal",
}


@pytest.mark.parametrize("name", sorted(set(family.HANDLERS) - set(NOT_SWEPT)))
def test_hostile_registers_give_errors_never_crashes(thread, name):
    hostile_registers_leave_km_untouched(thread, name)
