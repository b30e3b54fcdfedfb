"""Clocks and sleeping: clock_gettime/getres/settime, gettimeofday, time, nanosleep,
clock_nanosleep, times, timerfd."""

from __future__ import annotations

import ctypes
import errno
import struct

from kontain.linux import hostcall as host
from kontain.linux.hostcall import SyscallError
from kontain.linux.numbers import NUMBERS as NR
from kontain.syscalls import args

TYPE_CHECKING = False  # no typing import at run time: km start-up is timed
if TYPE_CHECKING:
    from collections.abc import Callable

    from kontain.monitor.thread import GuestThread

TIMESPEC = 16
TIMEVAL = 16
ITIMERSPEC = 32
TIMER_ABSTIME = 1
_TIME = struct.Struct("<q")


def sys_clock_gettime(t: GuestThread, clock: int, tp: int, *_: int) -> int:
    return host.call3(NR["clock_gettime"], args.s32(clock), args.out_ptr(t, tp, TIMESPEC), 0)


def sys_clock_getres(t: GuestThread, clock: int, res: int, *_: int) -> int:
    return host.call3(NR["clock_getres"], args.s32(clock), args.out_ptr(t, res, TIMESPEC), 0)


def sys_clock_settime(t: GuestThread, clock: int, tp: int, *_: int) -> int:
    return host.call(NR["clock_settime"], args.s32(clock), args.in_ptr(t, tp, TIMESPEC))


def sys_gettimeofday(t: GuestThread, tv: int, tz: int, *_: int) -> int:
    return host.call3(NR["gettimeofday"], args.out_ptr(t, tv, TIMEVAL),
                      args.out_ptr(t, tz, 8), 0)


def sys_time(t: GuestThread, tloc: int, *_: int) -> int:
    now = host.call(NR["time"], 0)
    if tloc:
        t.mm.write(tloc, _TIME.pack(now))
    return now


def _sleep(t: GuestThread, rem: int, sleep: Callable[[int], int]) -> int:
    """sleep(km's address for the time left): Linux writes rem only when a signal ends
    the sleep early, so only then need it be writable (EFAULT then, not EINTR)."""
    left = ctypes.create_string_buffer(TIMESPEC)
    try:
        return sleep(ctypes.addressof(left) if rem else 0)
    except OSError as e:
        if e.errno == errno.EINTR and rem:
            t.mm.write(rem, left.raw)
        raise


def sys_nanosleep(t: GuestThread, req: int, rem: int, *_: int) -> int:
    request = args.in_ptr(t, req, TIMESPEC)
    if not request:
        raise SyscallError(errno.EFAULT)
    return _sleep(t, rem, lambda left: host.call(NR["nanosleep"], request, left))


def sys_clock_nanosleep(t: GuestThread, clock: int, flags: int, req: int, rem: int,
                        *_: int) -> int:
    request = args.in_ptr(t, req, TIMESPEC)
    if not request:
        raise SyscallError(errno.EFAULT)
    if flags & TIMER_ABSTIME:
        rem = 0  # never written: an absolute sleep is restarted as it was
    return _sleep(t, rem, lambda left: host.call(NR["clock_nanosleep"], args.s32(clock),
                                                 flags, request, left))


def sys_times(t: GuestThread, buf: int, *_: int) -> int:
    return host.call(NR["times"], args.out_ptr(t, buf, 32))


def sys_timerfd_create(t: GuestThread, clock: int, flags: int, *_: int) -> int:
    return t.proc.fds.adopt(host.call(NR["timerfd_create"], args.s32(clock), flags))


def sys_timerfd_settime(t: GuestThread, fd: int, flags: int, new: int, old: int,
                        *_: int) -> int:
    return host.call(NR["timerfd_settime"], args.fd(t, fd), flags,
                     args.in_ptr(t, new, ITIMERSPEC), args.out_ptr(t, old, ITIMERSPEC))


def sys_timerfd_gettime(t: GuestThread, fd: int, cur: int, *_: int) -> int:
    return host.call(NR["timerfd_gettime"], args.fd(t, fd), args.out_ptr(t, cur, ITIMERSPEC))


HANDLERS = {
    "clock_gettime": sys_clock_gettime, "clock_getres": sys_clock_getres,
    "clock_settime": sys_clock_settime, "gettimeofday": sys_gettimeofday, "time": sys_time,
    "nanosleep": sys_nanosleep, "clock_nanosleep": sys_clock_nanosleep, "times": sys_times,
    "timerfd_create": sys_timerfd_create, "timerfd_settime": sys_timerfd_settime,
    "timerfd_gettime": sys_timerfd_gettime,
}
