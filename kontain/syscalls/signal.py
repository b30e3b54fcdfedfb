"""Signals: dispositions, masks, the alternate stack, and signals a process sends itself.

Delivery of caught signals to guest handlers (frames, sigreturn) belongs to the signals
issue; until then a signal whose action is a guest handler is refused honestly (ENOSYS)
rather than dropped.
"""

from __future__ import annotations

import errno
import struct

from kontain.monitor.exits import KillProcess
from kontain.monitor.signals import KERNEL_SIGACTION, NSIG, SIG_DFL, SIG_IGN, Disposition
from kontain.syscalls import args

TYPE_CHECKING = False  # no typing import at run time: km start-up is timed
if TYPE_CHECKING:
    from kontain.monitor.vcpu import GuestThread

SIGKILL, SIGSTOP, SIGCONT, SIGCHLD, SIGURG, SIGWINCH = 9, 19, 18, 17, 23, 28
SIG_BLOCK, SIG_UNBLOCK, SIG_SETMASK = 0, 1, 2
_UNBLOCKABLE = (1 << (SIGKILL - 1)) | (1 << (SIGSTOP - 1))
#: Signals whose default action is to do nothing.
DEFAULT_IGNORED = frozenset({SIGCHLD, SIGURG, SIGWINCH, SIGCONT})
_STACK = struct.Struct("<QiiQ")  # stack_t: ss_sp, ss_flags, (pad), ss_size
SS_ONSTACK, SS_DISABLE = 1, 2


def sys_rt_sigaction(t: GuestThread, signo: int, act: int, oldact: int, sigsetsize: int,
                     *_: int) -> int:
    signo = args.s32(signo)
    if sigsetsize != 8 or not 1 <= signo <= NSIG:
        return -errno.EINVAL
    new = KERNEL_SIGACTION.unpack(t.mm.read(act, KERNEL_SIGACTION.size)) if act else None
    if new is not None and signo in (SIGKILL, SIGSTOP):
        return -errno.EINVAL
    current = t.proc.signals.action(signo)
    if oldact:
        t.mm.write(oldact, current.pack())
    if new is not None:
        handler, flags, restorer, mask = new
        t.proc.signals.actions[signo] = Disposition(handler, flags, restorer,
                                                    mask & ~_UNBLOCKABLE)
    return 0


def sys_rt_sigprocmask(t: GuestThread, how: int, set_: int, oldset: int, sigsetsize: int,
                       *_: int) -> int:
    if sigsetsize != 8:
        return -errno.EINVAL
    new = t.mm.read_u64(set_) if set_ else None
    if oldset:
        t.mm.write_u64(oldset, t.signal_mask)
    if new is not None:
        how = args.s32(how)
        if how == SIG_BLOCK:
            t.signal_mask |= new
        elif how == SIG_UNBLOCK:
            t.signal_mask &= ~new
        elif how == SIG_SETMASK:
            t.signal_mask = new
        else:
            return -errno.EINVAL
        t.signal_mask &= ~_UNBLOCKABLE
    return 0


def sys_sigaltstack(t: GuestThread, ss: int, old_ss: int, *_: int) -> int:
    new = _STACK.unpack(t.mm.read(ss, _STACK.size)) if ss else None
    if old_ss:
        sp, flags, size = t.altstack
        t.mm.write(old_ss, _STACK.pack(sp, flags if size else SS_DISABLE, 0, size))
    if new is not None:
        sp, flags, _pad, size = new
        if flags & ~(SS_DISABLE | (1 << 31)):
            return -errno.EINVAL
        if flags & SS_DISABLE:
            t.altstack = (0, SS_DISABLE, 0)
        else:
            if size < 2048:
                return -errno.ENOMEM
            t.altstack = (sp, 0, size)
    return 0


def raise_in_self(t: GuestThread, signo: int) -> int:
    """A signal the process sends to itself, acted on by its disposition."""
    if signo == 0:
        return 0
    if not 1 <= signo <= NSIG:
        return -errno.EINVAL
    action = t.proc.signals.action(signo)
    if signo in (SIGKILL, SIGSTOP) or action.handler == SIG_DFL:
        if signo in DEFAULT_IGNORED:
            return 0
        if signo == SIGSTOP or signo in (20, 21, 22):
            return -errno.ENOSYS  # job control stops come with process groups
        raise KillProcess(signo, "signal sent to itself")
    if action.handler == SIG_IGN:
        return 0
    return -errno.ENOSYS  # a guest handler: delivery is not implemented yet


def sys_kill(t: GuestThread, pid: int, signo: int, *_: int) -> int:
    pid = args.s32(pid)
    if pid in (t.proc.pid, 0, -t.proc.pid):
        return raise_in_self(t, args.s32(signo))
    return -errno.ESRCH if pid > 0 else -errno.ENOSYS


def sys_tkill(t: GuestThread, tid: int, signo: int, *_: int) -> int:
    if args.s32(tid) != t.tid:
        return -errno.ESRCH
    return raise_in_self(t, args.s32(signo))


def sys_tgkill(t: GuestThread, tgid: int, tid: int, signo: int, *_: int) -> int:
    if args.s32(tgid) != t.proc.pid or args.s32(tid) != t.tid:
        return -errno.ESRCH
    return raise_in_self(t, args.s32(signo))


HANDLERS = {
    "rt_sigaction": sys_rt_sigaction, "rt_sigprocmask": sys_rt_sigprocmask,
    "sigaltstack": sys_sigaltstack, "kill": sys_kill, "tkill": sys_tkill,
    "tgkill": sys_tgkill,
}
