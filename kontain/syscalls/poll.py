"""Waiting on descriptors: poll, ppoll, select, pselect6, epoll, eventfd's readiness.

Guest fds are host fds, so the host does the waiting on guest memory in place. What km
must add is the fence around its own descriptors: a guest that names one (they sit
above the guest's RLIMIT_NOFILE) sees it as a closed descriptor.

ppoll, pselect6 and epoll_pwait(2) wait with the caller's mask swapped for the one
given, atomically as far as the payload can tell: a signal the new mask unblocks that is
already pending, or arrives during the wait, ends it with EINTR after its handler ran
under the temporary mask; the original mask comes back when the handler returns (or at
once, when the call returns for any other reason).
"""

from __future__ import annotations

import ctypes
import errno
import struct

from kontain.linux import hostcall as host
from kontain.linux.hostcall import SyscallError
from kontain.linux.numbers import NUMBERS as NR
from kontain.machine.layout import USER_END
from kontain.mm.access import GuestFault
from kontain.monitor import signals as sig
from kontain.syscalls import args

TYPE_CHECKING = False  # no typing import at run time: km start-up is timed
if TYPE_CHECKING:
    from collections.abc import Callable

    from kontain.monitor.thread import GuestThread

POLLNVAL = 0x20
_POLLFD = struct.Struct("<ihh")
EPOLL_EVENT_SIZE = 12  # struct epoll_event is packed on x86-64
EPOLL_MAX_EVENTS = 0x7FFFFFFF // EPOLL_EVENT_SIZE
_ALL_SIGNALS = (1 << sig.NSIG) - 1
STICKY_TIMEOUTS = 0x4000000  # a personality flag: the time left is never written back


def _with_mask(t: GuestThread, sigmask: int, sigsetsize: int, wait: Callable[[], int]) -> int:
    """Run wait() with the guest's signal mask *sigmask in place (NULL: unchanged)."""
    if not sigmask:
        return wait()
    if sigsetsize != 8:
        raise SyscallError(errno.EINVAL)
    new = t.mm.read_u64(sigmask) & ~sig.UNBLOCKABLE & _ALL_SIGNALS
    t.proc.host_signals.drain()
    with t.proc.signals.lock:
        if t.saved_mask is None:
            t.saved_mask = t.signal_mask
        t.signal_mask = new
    # From here an EINTR leaves saved_mask for the run loop: the handler's frame
    # records the original mask, which sigreturn puts back (as Linux's
    # restore_saved_sigmask_unless(-EINTR)).
    if t.has_deliverable_signal():
        raise SyscallError(errno.EINTR)
    try:
        result = wait()
    except OSError as e:
        if e.errno != errno.EINTR:
            _restore_mask(t)
        raise
    _restore_mask(t)
    return result


def _restore_mask(t: GuestThread) -> None:
    with t.proc.signals.lock:
        if t.saved_mask is not None:
            t.signal_mask, t.saved_mask = t.saved_mask, None


class _Timeout:
    """The timeout of ppoll, select and pselect6, as Linux treats it: read when the call
    starts (EFAULT then), the time left written back at the end only if there is any
    to write (a zero timeout never is) and only as far as memory allows: a timeout in
    read-only memory keeps its value. The host works on km's copy."""

    def __init__(self, t: GuestThread, va: int, size: int) -> None:
        self.va = va
        self.value = t.mm.read(va, size) if va else b""
        self.copy = ctypes.create_string_buffer(self.value, size) if va else None

    @property
    def pointer(self) -> int:
        return ctypes.addressof(self.copy) if self.copy is not None else 0

    def write_back(self, t: GuestThread) -> None:
        if self.copy is None or self.copy.raw == self.value \
                or t.proc.personality & STICKY_TIMEOUTS:
            return
        try:
            t.mm.write(self.va, self.copy.raw)
        except GuestFault:
            # Linux then makes an interrupted call EINTR, never a restart (it could not
            # record the time left); km's run loop decides restarts on its own and
            # would restart it with the whole timeout: a small, known difference.
            pass


def _finish(t: GuestThread, timeout: _Timeout, wait: Callable[[], int]) -> int:
    """wait(), with the time left written back whatever its result, as Linux does."""
    try:
        return wait()
    finally:
        timeout.write_back(t)


def _poll(t: GuestThread, number: int, fds: int, nfds: int, a2: int, a3: int = 0,
          a4: int = 0) -> int:
    if nfds > t.proc.fds.guest_soft:
        raise SyscallError(errno.EINVAL)
    size = nfds * _POLLFD.size
    pointer = args.out_ptr(t, fds, size) if nfds else 0
    # Hide km's own descriptors: give them fd -1 for the call (ignored by the host),
    # then report them as POLLNVAL, as Linux reports a closed descriptor.
    km_base = t.proc.fds.km_base
    fenced = []
    if nfds:
        raw = t.mm.read(fds, size)
        for i, (fd, events, _revents) in enumerate(_POLLFD.iter_unpack(raw)):
            if fd >= km_base:
                fenced.append((i, fd, events))
                t.mm.write(fds + i * 8, _POLLFD.pack(-1, events, 0))
    try:
        result = host.call(number, pointer, nfds, a2, a3, a4)
    finally:
        for i, fd, events in fenced:
            t.mm.write(fds + i * 8, _POLLFD.pack(fd, events, POLLNVAL))
    return result + len(fenced)


def sys_poll(t: GuestThread, fds: int, nfds: int, timeout: int, *_: int) -> int:
    return _poll(t, NR["poll"], fds, nfds & 0xFFFFFFFF, args.s32(timeout))


def sys_ppoll(t: GuestThread, fds: int, nfds: int, tsp: int, sigmask: int, sigsetsize: int,
              *_: int) -> int:
    timeout = _Timeout(t, tsp, 16)
    return _with_mask(t, sigmask, sigsetsize, lambda: _finish(t, timeout, lambda: _poll(
        t, NR["ppoll"], fds, nfds & 0xFFFFFFFF, timeout.pointer, 0, 8)))


def _fd_set_bytes(nfds: int) -> int:
    return (nfds + 63) // 64 * 8


def _select(t: GuestThread, number: int, nfds: int, readfds: int, writefds: int,
            exceptfds: int, timeout: _Timeout) -> int:
    nfds = args.s32(nfds)
    if nfds < 0:
        raise SyscallError(errno.EINVAL)
    nfds = min(nfds, t.proc.fds.km_base)  # km's descriptors are never watched
    size = _fd_set_bytes(nfds)
    return host.call(number, nfds, args.out_ptr(t, readfds, size),
                     args.out_ptr(t, writefds, size), args.out_ptr(t, exceptfds, size),
                     timeout.pointer, 0)


def sys_select(t: GuestThread, nfds: int, readfds: int, writefds: int, exceptfds: int,
               timeout: int, *_: int) -> int:
    limit = _Timeout(t, timeout, 16)  # a struct timeval
    return _finish(t, limit, lambda: _select(t, NR["select"], nfds, readfds, writefds,
                                             exceptfds, limit))


def sys_pselect6(t: GuestThread, nfds: int, readfds: int, writefds: int, exceptfds: int,
                 timeout: int, sigmask: int) -> int:
    # The sixth argument is { const sigset_t *ss; size_t ss_len; }, or NULL.
    mask, size = struct.unpack("<QQ", t.mm.read(sigmask, 16)) if sigmask else (0, 0)
    limit = _Timeout(t, timeout, 16)
    return _with_mask(t, mask, size, lambda: _finish(t, limit, lambda: _select(
        t, NR["pselect6"], nfds, readfds, writefds, exceptfds, limit)))


def sys_epoll_create(t: GuestThread, size: int, *_: int) -> int:
    if args.s32(size) <= 0:
        raise SyscallError(errno.EINVAL)
    return sys_epoll_create1(t, 0)


def sys_epoll_create1(t: GuestThread, flags: int, *_: int) -> int:
    return t.proc.fds.adopt(host.call(NR["epoll_create1"], flags))


def sys_epoll_ctl(t: GuestThread, epfd: int, op: int, fd: int, event: int, *_: int) -> int:
    return host.call(NR["epoll_ctl"], args.fd(t, epfd), op, args.fd(t, fd),
                     args.in_ptr(t, event, EPOLL_EVENT_SIZE))


def _events(t: GuestThread, events: int, maxevents: int) -> tuple[int, int]:
    """(km address, room in events) for epoll's output. Linux writes only the events
    ready, as many as fit before the first byte it cannot write (EFAULT if not one
    does): so only that prefix need be mapped, and the host is given the room it has."""
    maxevents = args.s32(maxevents)
    if not 0 < maxevents <= EPOLL_MAX_EVENTS:
        raise OSError(errno.EINVAL, "maxevents")
    size = maxevents * EPOLL_EVENT_SIZE
    if not events or events + size > USER_END:  # not user memory at all (access_ok)
        raise OSError(errno.EFAULT, "events")
    pointer, usable = args.buffer_ptr(t, events, size, True)
    room = usable // EPOLL_EVENT_SIZE
    if not room:  # (Linux would wait for an event first; its result is EFAULT too)
        raise OSError(errno.EFAULT, "events")
    return pointer, room


def sys_epoll_wait(t: GuestThread, epfd: int, events: int, maxevents: int, timeout: int,
                   *_: int) -> int:
    epfd = args.fd(t, epfd)
    return host.call(NR["epoll_wait"], epfd, *_events(t, events, maxevents),
                     args.s32(timeout))


def sys_epoll_pwait(t: GuestThread, epfd: int, events: int, maxevents: int, timeout: int,
                    sigmask: int, sigsetsize: int) -> int:
    return _with_mask(t, sigmask, sigsetsize,
                      lambda: sys_epoll_wait(t, epfd, events, maxevents, timeout))


def sys_epoll_pwait2(t: GuestThread, epfd: int, events: int, maxevents: int, timeout: int,
                     sigmask: int, sigsetsize: int) -> int:
    epfd = args.fd(t, epfd)
    pointer, room = _events(t, events, maxevents)
    limit = args.in_ptr(t, timeout, 16)
    return _with_mask(t, sigmask, sigsetsize, lambda: host.call(
        NR["epoll_pwait2"], epfd, pointer, room, limit, 0, 8))


HANDLERS = {
    "poll": sys_poll, "ppoll": sys_ppoll, "select": sys_select, "pselect6": sys_pselect6,
    "epoll_create": sys_epoll_create, "epoll_create1": sys_epoll_create1,
    "epoll_ctl": sys_epoll_ctl, "epoll_wait": sys_epoll_wait, "epoll_pwait": sys_epoll_pwait,
    "epoll_pwait2": sys_epoll_pwait2,
}
