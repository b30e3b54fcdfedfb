"""System call handlers of the time family (kontain/syscalls/time.py) without KVM:
clock_gettime/getres/settime, gettimeofday, time, nanosleep, clock_nanosleep, times and
timerfd.

Linux is the oracle: each case is also made natively by this process, and km must give
the same errno; values read from a clock must lie between two native readings taken
around km's (a deterministic check, no sleeping). No call here sets the host's clock or
sleeps: clock_settime is only made with arguments Linux refuses, and every sleep is of
zero length or to a time already past.
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
    PAGE,
    RO,
    RW,
    Twin,
    call,
    host,
    hostile_registers_leave_km_untouched,
    native,
)

from kontain.syscalls import time as family

CLOCK_REALTIME, CLOCK_MONOTONIC, CLOCK_PROCESS_CPUTIME_ID = 0, 1, 2
CLOCK_THREAD_CPUTIME_ID, CLOCK_BOOTTIME = 3, 7
TIMER_ABSTIME = 1
TIMESPEC = struct.Struct("<qq")
ZERO = TIMESPEC.pack(0, 0)


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
    """(guest, host) pointers for an output of size bytes: NULL, unmapped, read-only,
    straddling into the read-only page, straddling into the hole, km's own memory."""
    return [(0, 0), (BAD, BAD), (t.guest + PAGE, t.host + PAGE),
            (t.guest + PAGE - size // 2, t.host + PAGE - size // 2),
            (t.guest + 2 * PAGE - size // 2, t.host + 2 * PAGE - size // 2)]


def ns(data: bytes, offset: int = 0) -> int:
    seconds, nanoseconds = TIMESPEC.unpack_from(data, offset)
    return seconds * 1_000_000_000 + nanoseconds


def native_now(clock: int) -> int:
    ts = host(16)
    assert native("clock_gettime", clock, ts) == 0
    return ns(ctypes.string_at(ts, 16))


# ---- clocks --------------------------------------------------------------------------------

@pytest.mark.parametrize("clock", [CLOCK_REALTIME, CLOCK_MONOTONIC, CLOCK_BOOTTIME])
def test_clock_gettime_reads_the_hosts_clock(thread, guest, clock):
    out = guest.alloc(16)
    before = native_now(clock)
    assert call(thread, "clock_gettime", clock, out) == 0
    after = native_now(clock)
    assert before <= ns(guest.read(out, 16)) <= after
    assert 0 <= TIMESPEC.unpack(guest.read(out, 16))[1] < 1_000_000_000


@pytest.mark.parametrize("clock", [CLOCK_PROCESS_CPUTIME_ID, CLOCK_THREAD_CPUTIME_ID, 99,
                                   -1 & 0xFFFFFFFF, (-7 & 0xFFFFFFFF)])
def test_clock_ids_like_linux(thread, guest, clock):
    assert call(thread, "clock_gettime", clock, guest.alloc(16)) == \
        native("clock_gettime", clock, host(16))
    km, linux = guest.alloc(16), host(16)
    assert call(thread, "clock_getres", clock, km) == native("clock_getres", clock, linux)
    assert guest.read(km, 16) == ctypes.string_at(linux, 16)


@pytest.mark.parametrize("name", ["clock_gettime", "clock_getres"])
def test_clock_pointers(thread, twin, name):
    for guest_arg, host_arg in pointer_cases(twin, 16):
        assert call(thread, name, CLOCK_MONOTONIC, guest_arg) == \
            native(name, CLOCK_MONOTONIC, host_arg), (name, hex(guest_arg))
    km = ctypes.create_string_buffer(b"km memory", 16)
    assert call(thread, name, CLOCK_MONOTONIC, ctypes.addressof(km)) == -errno.EFAULT
    assert km.value == b"km memory"


def test_clock_settime_errors_without_setting_anything(thread, guest, twin):
    """Only arguments Linux refuses before it would set a clock (these tests may run as
    root, and the host's clock must not move)."""
    invalid = TIMESPEC.pack(0, 1_000_000_000)
    for clock, guest_arg, host_arg in [(CLOCK_REALTIME, guest.put(invalid), host(invalid)),
                                       (CLOCK_REALTIME, BAD, BAD), (CLOCK_REALTIME, 0, 0),
                                       (CLOCK_MONOTONIC, guest.put(ZERO), host(ZERO)),
                                       (99, guest.put(ZERO), host(ZERO)),
                                       (CLOCK_REALTIME, twin.guest + 2 * PAGE - 8,
                                        twin.host + 2 * PAGE - 8)]:
        assert call(thread, "clock_settime", clock, guest_arg) == \
            native("clock_settime", clock, host_arg) < 0


def test_gettimeofday_and_time(thread, guest, twin):
    tv, tz = guest.alloc(16), guest.alloc(8)
    before = native_now(CLOCK_REALTIME) // 1000
    assert call(thread, "gettimeofday", tv, tz) == 0
    after = native_now(CLOCK_REALTIME) // 1000
    seconds, microseconds = struct.unpack("<qq", guest.read(tv, 16))
    assert before <= seconds * 1_000_000 + microseconds <= after + 1
    linux_tz = host(8)
    native("gettimeofday", 0, linux_tz)
    assert guest.read(tz, 8) == ctypes.string_at(linux_tz, 8)
    assert call(thread, "gettimeofday", 0, 0) == native("gettimeofday", 0, 0) == 0
    for guest_arg, host_arg in pointer_cases(twin, 16)[1:]:
        assert call(thread, "gettimeofday", guest_arg, 0) == \
            native("gettimeofday", host_arg, 0) == -errno.EFAULT
    tloc = guest.alloc(8)
    before = native("time", 0)
    now = call(thread, "time", tloc)
    assert before <= now <= native("time", 0)
    assert struct.unpack("<q", guest.read(tloc, 8))[0] == now
    assert call(thread, "time", 0) >= now
    for guest_arg, host_arg in pointer_cases(twin, 8)[1:]:
        assert call(thread, "time", guest_arg) == native("time", host_arg) == -errno.EFAULT


# ---- sleeping (never for long) -------------------------------------------------------------

@pytest.mark.parametrize("request_", [ZERO, TIMESPEC.pack(0, 1_000_000_000),
                                      TIMESPEC.pack(-1, 0), TIMESPEC.pack(0, -1), None, "bad"])
def test_nanosleep_like_linux(thread, guest, request_):
    if request_ is None:
        km_req = linux_req = 0
    elif request_ == "bad":
        km_req = linux_req = BAD
    else:
        km_req, linux_req = guest.put(request_), host(request_)
    assert call(thread, "nanosleep", km_req, guest.alloc(16)) == \
        native("nanosleep", linux_req, host(16))


@pytest.mark.parametrize("name", ["nanosleep", "clock_nanosleep"])
def test_sleep_with_a_read_only_remainder(thread, guest, twin, name):
    before = (CLOCK_MONOTONIC, 0) if name == "clock_nanosleep" else ()
    assert native(name, *before, host(ZERO), twin.host + PAGE) == 0
    assert call(thread, name, *before, guest.put(ZERO), twin.guest + PAGE) == 0


@pytest.fixture
def alarm():
    """alarm() makes SIGALRM interrupt this thread's system call 20 ms later (the
    handler does nothing: the call returns EINTR)."""
    old = signal.signal(signal.SIGALRM, lambda *_: None)
    yield lambda: signal.setitimer(signal.ITIMER_REAL, 0.02)
    signal.setitimer(signal.ITIMER_REAL, 0)
    signal.signal(signal.SIGALRM, old)


@pytest.mark.parametrize("name", ["nanosleep", "clock_nanosleep"])
def test_an_interrupted_sleep_writes_the_time_left(thread, guest, alarm, name):
    """Only then is rem written: EINTR with the time left, EFAULT if it cannot be."""
    before = (CLOCK_MONOTONIC, 0) if name == "clock_nanosleep" else ()
    second = TIMESPEC.pack(1, 0)
    alarm()
    assert native(name, *before, host(second), BAD) == -errno.EFAULT
    alarm()
    assert call(thread, name, *before, guest.put(second), BAD) == -errno.EFAULT
    rem = guest.alloc(16)
    alarm()
    assert call(thread, name, *before, guest.put(second), rem) == -errno.EINTR
    assert (0, 0) < TIMESPEC.unpack(guest.read(rem, 16)) < (1, 0)


@pytest.mark.parametrize("clock, flags, request_", [
    (CLOCK_MONOTONIC, 0, ZERO), (CLOCK_REALTIME, TIMER_ABSTIME, TIMESPEC.pack(1, 0)),
    (CLOCK_MONOTONIC, TIMER_ABSTIME, ZERO), (CLOCK_THREAD_CPUTIME_ID, 0, ZERO),
    (99, 0, ZERO), (CLOCK_MONOTONIC, 0, TIMESPEC.pack(0, 1_000_000_000)),
    (CLOCK_MONOTONIC, 0x10, ZERO), (CLOCK_MONOTONIC, 0, None), (CLOCK_MONOTONIC, 0, "bad")])
def test_clock_nanosleep_like_linux(thread, guest, clock, flags, request_):
    if request_ is None:
        km_req = linux_req = 0
    elif request_ == "bad":
        km_req = linux_req = BAD
    else:
        km_req, linux_req = guest.put(request_), host(request_)
    assert call(thread, "clock_nanosleep", clock, flags, km_req, 0) == \
        native("clock_nanosleep", clock, flags, linux_req, 0)


def test_times(thread, guest, twin):
    buf = guest.alloc(32)
    before = native("times", 0)
    ticks = call(thread, "times", buf)
    assert before <= ticks <= native("times", 0)
    assert all(v >= 0 for v in struct.unpack("<qqqq", guest.read(buf, 32)))
    assert call(thread, "times", 0) >= ticks
    for guest_arg, host_arg in pointer_cases(twin, 32)[1:]:
        assert call(thread, "times", guest_arg) == native("times", host_arg) == -errno.EFAULT


# ---- timerfd -----------------------------------------------------------------------------

@pytest.fixture
def fds():
    opened: list[int] = []
    yield opened
    for fd in opened:
        try:
            os.close(fd)
        except OSError:
            pass


@pytest.mark.parametrize("clock, flags", [(CLOCK_MONOTONIC, 0), (CLOCK_REALTIME, os.O_CLOEXEC),
                                          (CLOCK_MONOTONIC, os.O_NONBLOCK), (99, 0),
                                          (CLOCK_THREAD_CPUTIME_ID, 0), (CLOCK_MONOTONIC, 1)])
def test_timerfd_create_like_linux(thread, fds, clock, flags):
    km, linux = call(thread, "timerfd_create", clock, flags), \
        native("timerfd_create", clock, flags)
    fds.extend(fd for fd in (km, linux) if fd >= 0)
    assert (km >= 0, min(km, 0)) == (linux >= 0, min(linux, 0))


def test_timerfd_settime_and_gettime(thread, guest, twin, fds):
    km_fd, linux_fd = (native("timerfd_create", CLOCK_MONOTONIC, os.O_NONBLOCK)
                       for _ in range(2))
    fds += [km_fd, linux_fd]
    spec = struct.pack("<qqqq", 7, 0, 1000, 0)  # interval 7 s, first expiry in 1000 s
    old = guest.alloc(32)
    assert call(thread, "timerfd_settime", km_fd, 0, guest.put(spec), old) == 0
    assert guest.read(old, 32) == bytes(32)  # it was disarmed
    current = guest.alloc(32)
    assert call(thread, "timerfd_gettime", km_fd, current) == 0
    interval, _, seconds, nanoseconds = struct.unpack("<qqqq", guest.read(current, 32))
    assert interval == 7 and 0 < seconds * 10**9 + nanoseconds <= 1000 * 10**9
    disarm = bytes(32)
    assert call(thread, "timerfd_settime", km_fd, 0, guest.put(disarm), old) == 0
    assert struct.unpack("<qqqq", guest.read(old, 32))[0] == 7
    bad_spec = struct.pack("<qqqq", 0, 0, 0, 1_000_000_000)
    for flags, guest_new, host_new in [(0, guest.put(bad_spec), host(bad_spec)),
                                       (0x10, guest.put(disarm), host(disarm)),
                                       (0, 0, 0), (0, BAD, BAD)]:
        assert call(thread, "timerfd_settime", km_fd, flags, guest_new, 0) == \
            native("timerfd_settime", linux_fd, flags, host_new, 0)
    for guest_arg, host_arg in pointer_cases(twin, 32):
        assert call(thread, "timerfd_gettime", km_fd, guest_arg) == \
            native("timerfd_gettime", linux_fd, host_arg)
    plain = os.open(os.devnull, os.O_RDONLY)
    fds.append(plain)
    assert call(thread, "timerfd_gettime", plain, current) == \
        native("timerfd_gettime", plain, host(32)) == -errno.EINVAL
    base = thread.proc.fds.km_base
    assert call(thread, "timerfd_gettime", base, current) == -errno.EBADF
    assert call(thread, "timerfd_settime", base, 0, guest.put(disarm), 0) == -errno.EBADF


def test_reading_an_expired_timerfd_through_km(thread, guest, fds):
    """A timer set to a time already past has expired once: read() says so."""
    fd = call(thread, "timerfd_create", CLOCK_MONOTONIC, os.O_NONBLOCK)
    fds.append(fd)
    past = struct.pack("<qqqq", 0, 0, 0, 1)  # absolute: 1 ns after boot
    assert call(thread, "timerfd_settime", fd, TIMER_ABSTIME, guest.put(past), 0) == 0
    buf = guest.alloc(8)
    assert call(thread, "read", fd, buf, 8) == 8
    assert struct.unpack("<Q", guest.read(buf, 8))[0] == 1
    assert call(thread, "read", fd, buf, 8) == -errno.EAGAIN


# ---- hostile registers ---------------------------------------------------------------------

NOT_SWEPT: dict[str, str] = {}  # every handler of the family is swept


@pytest.mark.parametrize("name", sorted(set(family.HANDLERS) - set(NOT_SWEPT)))
def test_hostile_registers_give_errors_never_crashes(thread, name):
    hostile_registers_leave_km_untouched(thread, name)
