"""Signals: dispositions, masks, waiting, sending, the alternate stack, sigreturn, and
the timers that raise them (alarm, setitimer, POSIX timers).

Signals between the payload's own threads are queued by km (kontain.monitor.signals);
signals to other processes are sent by the host. Timers are host timers on km itself:
their signals reach km's signalfd and are forwarded (kontain.monitor.hostsignals).

Where Linux delivers a signal "before the call returns" (one the call generated for the
caller's own process, an expiry of its timer that the call meets, one that was pending
when the disposition or mask changes), the handler drains km's signalfd first
(`_host_signals_now`), so the timing is Linux's and not the forwarding thread's.
"""

from __future__ import annotations

import errno
import os
import struct
import time

from kontain.linux import hostcall as host
from kontain.linux.abi import ERESTARTNOHAND, ERESTARTSYS
from kontain.linux.hostcall import SyscallError
from kontain.linux.numbers import NUMBERS as NR
from kontain.monitor import signals as sig
from kontain.monitor.dispatch import CONTEXT_SET
from kontain.monitor.hostsignals import FORWARDED, TIMER_PROXY
from kontain.monitor.signalfd import SIGNALFD_SIGINFO_SIZE, SignalFile, read_records
from kontain.syscalls import args

TYPE_CHECKING = False  # no typing import at run time: km start-up is timed
if TYPE_CHECKING:
    from collections.abc import Callable

    from kontain.monitor.thread import GuestThread

SIG_BLOCK, SIG_UNBLOCK, SIG_SETMASK = 0, 1, 2
_STACK = struct.Struct("<QIiQ")  # stack_t: ss_sp, ss_flags, (pad), ss_size
SS_ONSTACK, SS_DISABLE, SS_AUTODISARM = 1, 2, 1 << 31
MINSIGSTKSZ = 2048
_SIGEVENT = struct.Struct("<Qii")  # sigev_value, sigev_signo, sigev_notify; then the union
SIGEV_SIGNAL, SIGEV_NONE, SIGEV_THREAD, SIGEV_THREAD_ID = 0, 1, 2, 4
ALL_SIGNALS = (1 << sig.NSIG) - 1
#: sa_flags Linux keeps (UAPI_SA_FLAGS): NOCLDSTOP, NOCLDWAIT, SIGINFO, EXPOSE_TAGBITS,
#: RESTORER, ONSTACK, RESTART, NODEFER, RESETHAND.
KNOWN_ACTION_FLAGS = 0x1 | 0x2 | 0x4 | 0x800 | 0x04000000 | 0xF8000000


def _host_signals_now(t: GuestThread) -> None:
    """Post the host signals pending on km before this call goes on (never with the
    signal state's lock held: posting takes it)."""
    t.proc.host_signals.drain()


def _signo(value: int, allow_zero: bool = False) -> int:
    signo = args.s32(value)
    if not (0 if allow_zero else 1) <= signo <= sig.NSIG:
        raise OSError(errno.EINVAL, "signal number")
    return signo


# ---- dispositions and masks --------------------------------------------------------------

def sys_rt_sigaction(t: GuestThread, signo: int, act: int, oldact: int, sigsetsize: int,
                     *_: int) -> int:
    if sigsetsize != 8:
        raise SyscallError(errno.EINVAL)
    signo = _signo(signo)
    new = sig.KERNEL_SIGACTION.unpack(t.mm.read(act, sig.KERNEL_SIGACTION.size)) if act else None
    if new is not None and signo in (sig.SIGKILL, sig.SIGSTOP):
        raise SyscallError(errno.EINVAL)
    if new is not None:
        _host_signals_now(t)
    state = t.proc.signals
    with state.lock:
        current = state.action(signo)
        if oldact:
            t.mm.write(oldact, current.pack())
        if new is not None:
            handler, flags, restorer, mask = new
            flags &= KNOWN_ACTION_FLAGS  # Linux drops the rest: libcs probe with them
            state.actions[signo] = sig.Disposition(handler, flags, restorer,
                                                   mask & ~sig.UNBLOCKABLE)
            if state.ignored(signo):  # setting SIG_IGN discards what is pending
                state.shared.discard(signo)
                for thread in t.proc.group.all():
                    thread.pending.discard(signo)
                t.proc.signalfds.refresh()
            t.proc.host_signals.disposition_changed(signo)
    return 0


def sys_rt_sigprocmask(t: GuestThread, how: int, set_: int, oldset: int, sigsetsize: int,
                       *_: int) -> int:
    if sigsetsize != 8:
        raise SyscallError(errno.EINVAL)
    new = t.mm.read_u64(set_) if set_ else None
    how = args.s32(how)
    if new is not None and how not in (SIG_BLOCK, SIG_UNBLOCK, SIG_SETMASK):
        raise SyscallError(errno.EINVAL)
    if oldset:
        t.mm.write_u64(oldset, t.signal_mask)
    if new is not None:
        old = t.signal_mask  # (only this thread changes its mask)
        if how == SIG_BLOCK:
            mask = old | new
        elif how == SIG_UNBLOCK:
            mask = old & ~new
        else:
            mask = new
        mask &= ~sig.UNBLOCKABLE & ALL_SIGNALS
        if old & ~mask:
            # Signals it unblocks that the host holds for km count now. (One that
            # only blocks more need not look: a host signal not yet posted is still
            # on its way, and may as well come after the call.)
            _host_signals_now(t)
        with t.proc.signals.lock:
            t.signal_mask = mask
    return 0


def sys_rt_sigpending(t: GuestThread, set_: int, sigsetsize: int, *_: int) -> int:
    if sigsetsize > 8:
        raise SyscallError(errno.EINVAL)
    _host_signals_now(t)
    pending = (t.pending.bits | t.proc.signals.shared.bits) & t.signal_mask
    t.mm.write(set_, pending.to_bytes(8, "little")[:sigsetsize])
    return 0


def _deliverable(t: GuestThread) -> int:
    return (t.pending.bits | t.proc.signals.shared.bits) & ~t.signal_mask


def sys_rt_sigsuspend(t: GuestThread, mask: int, sigsetsize: int, *_: int) -> int:
    if sigsetsize != 8:
        raise SyscallError(errno.EINVAL)
    new = t.mm.read_u64(mask)
    _host_signals_now(t)
    with t.proc.signals.lock:
        if t.saved_mask is None:
            t.saved_mask = t.signal_mask
        t.signal_mask = new & ~sig.UNBLOCKABLE & ALL_SIGNALS
    while not _deliverable(t):
        t.proc.group.wait(t, None)
    raise SyscallError(ERESTARTNOHAND)


def sys_pause(t: GuestThread, *_: int) -> int:
    while not _deliverable(t):
        t.proc.group.wait(t, None)
    raise SyscallError(ERESTARTNOHAND)


def sys_rt_sigtimedwait(t: GuestThread, set_: int, info: int, timeout: int, sigsetsize: int,
                        *_: int) -> int:
    if sigsetsize != 8:
        raise SyscallError(errno.EINVAL)
    wanted = t.mm.read_u64(set_) & ~sig.UNBLOCKABLE
    deadline = None
    if timeout:
        seconds, nanoseconds = struct.unpack("<qq", t.mm.read(timeout, 16))
        if seconds < 0 or not 0 <= nanoseconds < 1_000_000_000:
            raise SyscallError(errno.EINVAL)
        deadline = time.monotonic_ns() + seconds * 1_000_000_000 + nanoseconds
    _host_signals_now(t)
    state = t.proc.signals
    while True:
        with state.lock:
            taken = t.pending.take(wanted) or state.shared.take(wanted)
            if taken is not None:
                t.proc.signalfds.refresh()
        if taken is not None:
            signo, siginfo = taken
            if info:
                t.mm.write(info, siginfo)
            return signo
        if _deliverable(t) & ~wanted:
            raise SyscallError(errno.EINTR)  # another signal arrived: it is delivered now
        remaining = None if deadline is None else deadline - time.monotonic_ns()
        if remaining is not None and remaining <= 0:
            raise SyscallError(errno.EAGAIN)
        t.proc.group.wait(t, remaining)


def sys_sigaltstack(t: GuestThread, ss: int, old_ss: int, *_: int) -> int:
    new = _STACK.unpack(t.mm.read(ss, _STACK.size)) if ss else None
    sp, flags, size = t.altstack
    rsp = t.regs.rsp
    on_stack = bool(size) and sp <= rsp < sp + size
    if old_ss:
        shown = SS_ONSTACK if on_stack else (0 if size else SS_DISABLE)
        t.mm.write(old_ss, _STACK.pack(sp, shown | flags & SS_AUTODISARM, 0, size))
    if new is not None:
        new_sp, new_flags, _pad, new_size = new
        new_flags &= 0xFFFFFFFF
        if on_stack:
            raise SyscallError(errno.EPERM)
        mode = new_flags & ~SS_AUTODISARM
        if mode not in (0, SS_ONSTACK, SS_DISABLE):
            raise SyscallError(errno.EINVAL)
        if mode == SS_DISABLE:
            t.altstack = (0, SS_DISABLE, 0)
        else:
            if new_size < MINSIGSTKSZ:
                raise SyscallError(errno.ENOMEM)
            t.altstack = (new_sp, new_flags & SS_AUTODISARM, new_size)
    return 0


def sys_rt_sigreturn(t: GuestThread, *_: int) -> object:
    t.sigreturn()
    return CONTEXT_SET


# ---- sending ------------------------------------------------------------------------------

def _user_info(t: GuestThread, signo: int, code: int = sig.SI_USER) -> bytes:
    return sig.siginfo(signo, code, pid=t.proc.pid, uid=os.getuid())


def sys_kill(t: GuestThread, pid: int, signo: int, *_: int) -> int:
    pid, signo = args.s32(pid), _signo(signo, allow_zero=True)
    if pid == t.proc.pid:
        if signo:
            t.proc.post_signal(signo, _user_info(t, signo), sender=t)
        return 0
    result = host.call(NR["kill"], pid, signo)  # others, groups, -1: the host's rules
    if signo and pid in (0, -os.getpgrp()):
        # km's own process group: the host queued it on km too, unless km does not
        # take that signal from the host (SIGPIPE, ...): then km posts it itself.
        if signo in FORWARDED:
            _host_signals_now(t)
        elif signo not in (sig.SIGKILL, sig.SIGSTOP):
            t.proc.post_signal(signo, _user_info(t, signo), sender=t)
    return result


def _thread_of(t: GuestThread, tid: int) -> GuestThread | None:
    return t.proc.group.threads.get(tid)


def sys_tgkill(t: GuestThread, tgid: int, tid: int, signo: int, *_: int) -> int:
    tgid, tid, signo = args.s32(tgid), args.s32(tid), _signo(signo, allow_zero=True)
    if tgid <= 0 or tid <= 0:
        raise SyscallError(errno.EINVAL)
    if tgid != t.proc.pid:
        return host.call(NR["tgkill"], tgid, tid, signo)
    target = _thread_of(t, tid)
    if target is None:
        raise SyscallError(errno.ESRCH)
    if signo:
        t.proc.post_signal(signo, _user_info(t, signo, sig.SI_TKILL), target, sender=t)
    return 0


def sys_tkill(t: GuestThread, tid: int, signo: int, *_: int) -> int:
    return sys_tgkill(t, t.proc.pid, tid, signo)


def _queued_info(t: GuestThread, signo: int, uinfo: int, to_self: bool) -> bytes:
    info = bytearray(t.mm.read(uinfo, sig.SIGINFO_SIZE))
    code = struct.unpack_from("<i", info, 8)[0]
    if (code >= 0 or code == sig.SI_TKILL) and not to_self:
        raise OSError(errno.EPERM, "si_code reserved for the kernel")
    struct.pack_into("<i", info, 0, signo)
    return bytes(info)


def sys_rt_sigqueueinfo(t: GuestThread, pid: int, signo: int, uinfo: int, *_: int) -> int:
    pid, signo = args.s32(pid), _signo(signo, allow_zero=True)
    if pid != t.proc.pid:
        return host.call(NR["rt_sigqueueinfo"], pid, signo,
                         args.in_ptr(t, uinfo, sig.SIGINFO_SIZE))
    info = _queued_info(t, signo, uinfo, to_self=True)
    if signo:
        t.proc.post_signal(signo, info, sender=t)
    return 0


def sys_rt_tgsigqueueinfo(t: GuestThread, tgid: int, tid: int, signo: int, uinfo: int,
                          *_: int) -> int:
    tgid, tid, signo = args.s32(tgid), args.s32(tid), _signo(signo, allow_zero=True)
    if tgid <= 0 or tid <= 0:
        raise SyscallError(errno.EINVAL)
    if tgid != t.proc.pid:
        return host.call(NR["rt_tgsigqueueinfo"], tgid, tid, signo,
                         args.in_ptr(t, uinfo, sig.SIGINFO_SIZE))
    target = _thread_of(t, tid)
    if target is None:
        raise SyscallError(errno.ESRCH)
    info = _queued_info(t, signo, uinfo, to_self=target is t)
    if signo:
        t.proc.post_signal(signo, info, target, sender=t)
    return 0


# ---- timers ---------------------------------------------------------------------------------

# A timer's expiry is queued on km by the host; a call on the timer drains it, so an
# expiry the call meets (a disarm just after it fired) is delivered as the call returns.

def sys_alarm(t: GuestThread, seconds: int, *_: int) -> int:
    result = host.call(NR["alarm"], seconds & 0xFFFFFFFF)
    _host_signals_now(t)
    return result


def sys_setitimer(t: GuestThread, which: int, new: int, old: int, *_: int) -> int:
    result = host.call(NR["setitimer"], args.s32(which), args.in_ptr(t, new, 32),
                       args.out_ptr(t, old, 32))
    _host_signals_now(t)
    return result


def sys_getitimer(t: GuestThread, which: int, value: int, *_: int) -> int:
    result = host.call(NR["getitimer"], args.s32(which), args.out_ptr(t, value, 32))
    _host_signals_now(t)
    return result


def sys_timer_create(t: GuestThread, clock: int, sevp: int, timerid: int, *_: int) -> int:
    target = None
    event = None
    proxy = False
    if sevp:
        raw = bytearray(t.mm.read(sevp, 64))
        _value, signo, notify = _SIGEVENT.unpack_from(raw)
        if notify & ~SIGEV_THREAD_ID not in (SIGEV_SIGNAL, SIGEV_NONE, SIGEV_THREAD):
            raise SyscallError(errno.EINVAL)
        if notify in (SIGEV_SIGNAL, SIGEV_THREAD_ID) and not 1 <= signo <= sig.NSIG:
            raise SyscallError(errno.EINVAL)
        if notify == SIGEV_THREAD_ID:
            tid = struct.unpack_from("<i", raw, 16)[0]
            target = _thread_of(t, tid)
            if target is None:
                raise SyscallError(errno.EINVAL)
            # The host signal goes to km's signalfd; km routes it to that thread.
            struct.pack_into("<i", raw, 12, SIGEV_SIGNAL)
        proxy = notify != SIGEV_NONE and signo in (32, 33)
        if proxy:
            struct.pack_into("<i", raw, 8, TIMER_PROXY)
        event = bytes(raw)
    result = host.call(NR["timer_create"], args.s32(clock),
                       host.address_of(event) if event is not None else 0,
                       args.out_ptr(t, timerid, 4))
    if result == 0:
        timer = struct.unpack("<i", t.mm.read(timerid, 4))[0]
        t.proc.timers.add(timer)
        if target is not None:
            t.proc.timer_threads[timer] = target
        if proxy:
            t.proc.timer_signals[timer] = signo
    return result


def sys_timer_settime(t: GuestThread, timerid: int, flags: int, new: int, old: int,
                      *_: int) -> int:
    result = host.call(NR["timer_settime"], args.s32(timerid), flags,
                       args.in_ptr(t, new, 32), args.out_ptr(t, old, 32))
    _host_signals_now(t)
    return result


def sys_timer_gettime(t: GuestThread, timerid: int, value: int, *_: int) -> int:
    result = host.call(NR["timer_gettime"], args.s32(timerid), args.out_ptr(t, value, 32))
    _host_signals_now(t)
    return result


def sys_timer_getoverrun(t: GuestThread, timerid: int, *_: int) -> int:
    # km reads every expiry from the host at once, so the host counts no overrun; the
    # count is km's, kept when it merged expiries into one pending signal.
    result = host.call(NR["timer_getoverrun"], args.s32(timerid))
    return t.proc.signals.timer_overruns.get(args.s32(timerid), result)


def sys_timer_delete(t: GuestThread, timerid: int, *_: int) -> int:
    _host_signals_now(t)  # an expiry before the delete is still delivered
    result = host.call(NR["timer_delete"], args.s32(timerid))
    if result == 0:
        t.proc.timers.discard(args.s32(timerid))
        t.proc.timer_threads.pop(args.s32(timerid), None)
        t.proc.timer_signals.pop(args.s32(timerid), None)
    return result


SFD_NONBLOCK, SFD_CLOEXEC = 0o4000, 0o2000000


def sys_signalfd4(t: GuestThread, fd: int, mask: int, sizemask: int, flags: int,
                  *_: int) -> int:
    if sizemask != 8 or flags & ~(SFD_NONBLOCK | SFD_CLOEXEC):
        raise SyscallError(errno.EINVAL)
    watched = t.mm.read_u64(mask) & ~sig.UNBLOCKABLE
    number = args.s32(fd)
    if number == -1:
        return t.proc.signalfds.create(watched, flags)
    fd = args.fd(t, fd)
    if not t.proc.signalfds.update(fd, watched):
        host.call(NR["fcntl"], fd, 1)  # F_GETFD: EBADF for a number not open
        raise SyscallError(errno.EINVAL)  # open, but not a signalfd
    return number


def signalfd_read(t: GuestThread, file: SignalFile, fd: int, size: int,
                  put: Callable[[bytes], object]) -> int:
    """read(2) of a signalfd with room for `size` bytes: as many whole signalfd_siginfo
    records as fit and are pending, the reading thread's first; blocking (unless the
    descriptor is O_NONBLOCK) only while none is. put() stores the records in the guest."""
    wanted = size // SIGNALFD_SIGINFO_SIZE
    if not wanted:
        raise SyscallError(errno.EINVAL)
    _host_signals_now(t)
    state = t.proc.signals
    while True:
        with state.lock:
            records = read_records(t.proc, file, t.pending, wanted)
        if records:
            break
        if not os.get_blocking(fd):
            raise SyscallError(errno.EAGAIN)
        if _deliverable(t):
            raise SyscallError(ERESTARTSYS)  # a handler runs, then the read again
        t.proc.group.wait(t, None)
    data = b"".join(records)
    put(data)  # (a fault here loses the records, as Linux's copy_to_user does)
    return len(data)


def sys_signalfd(t: GuestThread, fd: int, mask: int, sizemask: int, *_: int) -> int:
    return sys_signalfd4(t, fd, mask, sizemask, 0)


HANDLERS = {
    "signalfd4": sys_signalfd4, "signalfd": sys_signalfd,
    "rt_sigaction": sys_rt_sigaction, "rt_sigprocmask": sys_rt_sigprocmask,
    "rt_sigpending": sys_rt_sigpending, "rt_sigsuspend": sys_rt_sigsuspend,
    "pause": sys_pause, "rt_sigtimedwait": sys_rt_sigtimedwait,
    "sigaltstack": sys_sigaltstack, "rt_sigreturn": sys_rt_sigreturn,
    "kill": sys_kill, "tkill": sys_tkill, "tgkill": sys_tgkill,
    "rt_sigqueueinfo": sys_rt_sigqueueinfo, "rt_tgsigqueueinfo": sys_rt_tgsigqueueinfo,
    "alarm": sys_alarm, "setitimer": sys_setitimer, "getitimer": sys_getitimer,
    "timer_create": sys_timer_create, "timer_settime": sys_timer_settime,
    "timer_gettime": sys_timer_gettime, "timer_getoverrun": sys_timer_getoverrun,
    "timer_delete": sys_timer_delete,
}
