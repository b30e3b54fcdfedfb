"""Signals: dispositions, pending queues, and the Linux x86-64 signal frame.

Process-wide state (dispositions, the shared pending queue) lives in SignalState; each
GuestThread has its own mask, private pending queue and alternate stack. Standard
signals (1..31) coalesce while pending; real-time signals (32..64) queue, in order.

The frame a handler runs on is kontain.monitor.sigframe's.
"""

from __future__ import annotations

import _thread
import struct

NSIG = 64
SIG_DFL, SIG_IGN = 0, 1
SIGHUP, SIGINT, SIGQUIT, SIGILL, SIGTRAP, SIGABRT, SIGBUS, SIGFPE = 1, 2, 3, 4, 5, 6, 7, 8
SIGKILL, SIGUSR1, SIGSEGV, SIGUSR2, SIGPIPE, SIGALRM, SIGTERM = 9, 10, 11, 12, 13, 14, 15
SIGCHLD, SIGCONT, SIGSTOP, SIGTSTP, SIGTTIN, SIGTTOU, SIGURG = 17, 18, 19, 20, 21, 22, 23
SIGXCPU, SIGXFSZ, SIGVTALRM, SIGPROF, SIGWINCH, SIGIO, SIGPWR, SIGSYS = (
    24, 25, 26, 27, 28, 29, 30, 31)
SIGRTMIN = 32

SA_NOCLDSTOP, SA_NOCLDWAIT, SA_SIGINFO, SA_RESTORER = 1, 2, 4, 0x04000000
SA_ONSTACK, SA_RESTART, SA_NODEFER, SA_RESETHAND = 0x08000000, 0x10000000, 0x40000000, 0x80000000

SI_USER, SI_KERNEL, SI_QUEUE, SI_TIMER, SI_TKILL = 0, 0x80, -1, -2, -6
SEGV_MAPERR, SEGV_ACCERR = 1, 2
BUS_ADRERR = 2
BUS_ADRALN, ILL_ILLOPN, FPE_INTDIV, FPE_FLTINV, TRAP_BRKPT, TRAP_TRACE = 1, 2, 1, 7, 1, 2

#: Default actions (signal(7)).
DEFAULT_IGNORE = frozenset({SIGCHLD, SIGCONT, SIGURG, SIGWINCH})
DEFAULT_STOP = frozenset({SIGSTOP, SIGTSTP, SIGTTIN, SIGTTOU})
SYNCHRONOUS = frozenset({SIGSEGV, SIGBUS, SIGILL, SIGTRAP, SIGFPE, SIGSYS})
#: Signals whose default action terminates the process with a core dump (kernel/signal.c
#: SIG_KERNEL_COREDUMP_MASK): kontain.monitor.coredump.
DEFAULT_CORE = frozenset({SIGQUIT, SIGILL, SIGTRAP, SIGABRT, SIGBUS, SIGFPE, SIGSEGV,
                          SIGXCPU, SIGXFSZ, SIGSYS})
UNBLOCKABLE = (1 << (SIGKILL - 1)) | (1 << (SIGSTOP - 1))

#: struct kernel_sigaction for x86-64: handler, flags, restorer, mask (8-byte sigset).
KERNEL_SIGACTION = struct.Struct("<QQQQ")
SIGINFO_SIZE = 128


def bit(signo: int) -> int:
    return 1 << (signo - 1)


class Disposition:
    """One signal's action (struct sigaction)."""

    __slots__ = ("handler", "flags", "restorer", "mask")

    def __init__(self, handler: int = SIG_DFL, flags: int = 0, restorer: int = 0,
                 mask: int = 0) -> None:
        self.handler, self.flags, self.restorer, self.mask = handler, flags, restorer, mask

    def pack(self) -> bytes:
        return KERNEL_SIGACTION.pack(self.handler, self.flags, self.restorer, self.mask)


# ---- siginfo_t ------------------------------------------------------------------------------

def siginfo(signo: int, code: int, *, pid: int = 0, uid: int = 0, value: int = 0,
            addr: int | None = None, errno_: int = 0, timer: tuple[int, int] | None = None,
            status: int | None = None) -> bytes:
    """A siginfo_t (x86-64 layout): signo, errno, code, then the union at offset 16."""
    head = struct.pack("<iii4x", signo, errno_, code)
    if addr is not None:
        body = struct.pack("<Q", addr)
    elif timer is not None:
        body = struct.pack("<iiQ", timer[0], timer[1], value)
    elif status is not None:
        body = struct.pack("<iIi", pid, uid, status)
    else:
        body = struct.pack("<iIQ", pid, uid & 0xFFFFFFFF, value)
    return (head + body).ljust(SIGINFO_SIZE, b"\0")


class PendingQueue:
    """Signals pending on a thread or on the whole process."""

    __slots__ = ("bits", "entries")

    def __init__(self) -> None:
        self.bits = 0
        self.entries: list[tuple[int, bytes]] = []

    def add(self, signo: int, info: bytes) -> bool:
        """Queue a signal; a standard signal already pending is not queued twice, and
        a timer's expiries while its signal is pending count as overruns (si_overrun)."""
        if self.bits & bit(signo) and _code(info) == SI_TIMER:
            timer_id, overrun = struct.unpack_from("<ii", info, 16)
            for i, (number, queued) in enumerate(self.entries):
                if number == signo and _code(queued) == SI_TIMER and \
                        struct.unpack_from("<i", queued, 16)[0] == timer_id:
                    merged = bytearray(queued)
                    total = struct.unpack_from("<i", queued, 20)[0] + overrun + 1
                    struct.pack_into("<i", merged, 20, min(total, 0x7FFFFFFF))
                    self.entries[i] = (number, bytes(merged))
                    return False
        if signo < SIGRTMIN and self.bits & bit(signo):
            return False
        self.entries.append((signo, info))
        self.bits |= bit(signo)
        return True

    def take(self, allowed: int) -> tuple[int, bytes] | None:
        """Dequeue the signal Linux would deliver first among `allowed` (a bit mask)."""
        candidates = self.bits & allowed
        if not candidates:
            return None
        synchronous = candidates & sum(bit(s) for s in SYNCHRONOUS)
        pick = synchronous or candidates
        signo = (pick & -pick).bit_length()  # lowest signal number first
        for i, (number, info) in enumerate(self.entries):
            if number == signo:
                del self.entries[i]
                if not any(n == signo for n, _ in self.entries):
                    self.bits &= ~bit(signo)
                return signo, info
        self.bits &= ~bit(signo)  # pragma: no cover - bits and entries agree
        return None

    def discard(self, signo: int) -> None:
        self.entries = [e for e in self.entries if e[0] != signo]
        self.bits &= ~bit(signo)


def _code(info: bytes) -> int:
    return struct.unpack_from("<i", info, 8)[0]


def timer_of(info: bytes) -> tuple[int, int] | None:
    """(timer id, overrun) of a timer's siginfo, else None."""
    if _code(info) != SI_TIMER:
        return None
    timer_id, overrun = struct.unpack_from("<ii", info, 16)
    return timer_id, overrun


class SignalState:
    """The process-wide part of signal state."""

    def __init__(self) -> None:
        self.actions = [Disposition() for _ in range(NSIG + 1)]
        self.shared = PendingQueue()
        self.lock = _thread.RLock()
        #: Timer id -> overrun count of its last delivered signal (timer_getoverrun).
        self.timer_overruns: dict[int, int] = {}

    def action(self, signo: int) -> Disposition:
        return self.actions[signo]

    def ignored(self, signo: int) -> bool:
        """Whether generating signo now would have no effect at all."""
        handler = self.actions[signo].handler
        return handler == SIG_IGN or handler == SIG_DFL and signo in DEFAULT_IGNORE
