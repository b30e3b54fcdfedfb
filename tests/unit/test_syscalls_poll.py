"""System call handlers of the poll family (kontain/syscalls/poll.py) without KVM: poll,
ppoll, select, pselect6, and epoll (create, ctl, wait, pwait, pwait2).

Linux is the oracle: each case is also made natively by this process, with host memory
laid out as the guest's is, and km must give the same result, errno and bytes (revents,
fd_sets, epoll_event records). km's own descriptors must look closed: POLLNVAL in poll,
EBADF in epoll_ctl. Every wait here has a zero timeout or something ready, so nothing
blocks.
"""

from __future__ import annotations

import ctypes
import errno
import os
import struct

import pytest
from harness import Guest, make_process, make_thread
from oracle import (
    BAD,
    HOLE,
    LAYOUT,
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
    MAP_ANONYMOUS,
    MAP_FIXED,
    MAP_PRIVATE,
)
from kontain.syscalls import poll as family

POLLIN, POLLOUT, POLLNVAL = 0x1, 0x4, 0x20
POLLFD = struct.Struct("<ihh")
EPOLL_EVENT = struct.Struct("<IQ")  # packed on x86-64: 12 bytes
EPOLL_CTL_ADD, EPOLL_CTL_DEL, EPOLL_CTL_MOD = 1, 2, 3
EPOLLIN, EPOLLOUT, EPOLLET = 0x1, 0x4, 1 << 31
ZERO_TIME = struct.pack("<qq", 0, 0)


@pytest.fixture
def thread():
    return make_thread(make_process())


@pytest.fixture
def guest(thread):
    return Guest(thread)


@pytest.fixture
def twin(thread):
    made: list[Twin] = []

    def make(prots: list[int | None], data: bytes = b"") -> Twin:
        made.append(Twin(thread, prots, data))
        return made[-1]
    yield make
    for t in made:
        t.close()


@pytest.fixture
def fds():
    """Descriptors a test opens, closed after it (whichever are still open)."""
    opened: list[int] = []
    yield opened
    for fd in opened:
        try:
            os.close(fd)
        except OSError:
            pass


@pytest.fixture
def pipe(fds):
    """A pipe with something to read: (read end, write end)."""
    r, w = os.pipe()
    os.write(w, b"ready")
    fds += [r, w]
    return r, w


def closed_fd() -> int:
    """A descriptor number that is not open (in this process, hence in the guest)."""
    fd = os.open(os.devnull, os.O_RDONLY)
    os.close(fd)
    return fd


# ---- poll, ppoll -------------------------------------------------------------------------

def _pollfds(*entries: tuple[int, int]) -> bytes:
    return b"".join(POLLFD.pack(fd, events, 0) for fd, events in entries)


def test_poll_reports_what_linux_reports(thread, guest, pipe):
    r, w = pipe
    entries = _pollfds((r, POLLIN), (w, POLLOUT | POLLIN), (-1, POLLIN), (closed_fd(), POLLIN),
                       (r, 0))
    km, linux = guest.put(entries), host(entries)
    assert call(thread, "poll", km, 5, 0) == native("poll", linux, 5, 0) == 3
    assert guest.read(km, len(entries)) == ctypes.string_at(linux, len(entries))
    km, linux = guest.put(entries), host(entries)
    assert call(thread, "ppoll", km, 5, guest.put(ZERO_TIME), 0, 8) == \
        native("ppoll", linux, 5, host(ZERO_TIME), 0, 8) == 3
    assert guest.read(km, len(entries)) == ctypes.string_at(linux, len(entries))
    assert call(thread, "poll", 0, 0, 0) == native("poll", 0, 0, 0) == 0


def test_km_descriptors_poll_as_closed_ones(thread, guest, pipe):
    r, _ = pipe
    base = thread.proc.fds.km_base
    entries = _pollfds((r, POLLIN), (base, POLLIN), (base + 7, POLLOUT))
    km = guest.put(entries)
    linux = host(_pollfds((r, POLLIN), (closed_fd(), POLLIN), (closed_fd(), POLLOUT)))
    assert call(thread, "poll", km, 3, 0) == native("poll", linux, 3, 0) == 3
    for i, fd in enumerate((r, base, base + 7)):
        km_fd, km_events, km_revents = POLLFD.unpack(guest.read(km + 8 * i, 8))
        _, linux_events, linux_revents = POLLFD.unpack(ctypes.string_at(linux + 8 * i, 8))
        assert (km_fd, km_events, km_revents) == (fd, linux_events, linux_revents)


def test_poll_arguments_are_checked(thread, twin, pipe):
    r, _ = pipe
    t = twin([RW, RO, HOLE])
    entry = _pollfds((r, POLLIN))
    t.put(0, entry, thread)
    t.put(PAGE - 4, entry[:4], thread)  # an entry straddling into the read-only page
    for guest_arg, host_arg, nfds in [(BAD, BAD, 1), (0, 0, 1), (t.guest + PAGE, t.host + PAGE, 1),
                                      (t.guest + PAGE - 4, t.host + PAGE - 4, 1),
                                      (t.guest + 2 * PAGE - 4, t.host + 2 * PAGE - 4, 1),
                                      (BAD, BAD, 0)]:
        assert call(thread, "poll", guest_arg, nfds, 0) == native("poll", host_arg, nfds, 0)
    # more entries than the guest's RLIMIT_NOFILE: EINVAL, as Linux says under that limit
    assert call(thread, "poll", t.guest, thread.proc.fds.guest_soft + 1, 0) == -errno.EINVAL


def test_ppoll_timeouts(thread, guest, pipe):
    r, _ = pipe
    entry = _pollfds((r, POLLIN))
    for timeout in (struct.pack("<qq", 0, 1_000_000_000), struct.pack("<qq", -1, 0),
                    struct.pack("<qq", 1, 0)):
        assert call(thread, "ppoll", guest.put(entry), 1, guest.put(timeout), 0, 8) == \
            native("ppoll", host(entry), 1, host(timeout), 0, 8)
    ts = guest.put(struct.pack("<qq", 5, 0))
    assert call(thread, "ppoll", guest.put(entry), 1, ts, 0, 8) == 1
    left = struct.unpack("<qq", guest.read(ts, 16))
    assert (0, 0) <= left <= (5, 0)  # the time left, written back as Linux does
    assert call(thread, "ppoll", guest.put(entry), 1, BAD, 0, 8) == \
        native("ppoll", host(entry), 1, BAD, 0, 8) == -errno.EFAULT


def test_ppoll_with_a_read_only_zero_timeout(thread, twin, pipe):
    r, _ = pipe
    t = twin([RO])
    entry = host(_pollfds((r, POLLIN)))
    assert native("ppoll", entry, 1, t.host, 0, 8) == 1
    km_entry = LAYOUT + PAGE
    thread.mm.mmap(km_entry, PAGE, RW, MAP_PRIVATE | MAP_ANONYMOUS | MAP_FIXED)
    thread.mm.write(km_entry, _pollfds((r, POLLIN)))
    assert call(thread, "ppoll", km_entry, 1, t.guest, 0, 8) == 1


@pytest.mark.parametrize("mask, size", [("good", 4), ("good", 16), ("bad", 8)])
def test_ppoll_checks_its_signal_mask(thread, guest, pipe, mask, size):
    r, _ = pipe
    entry = _pollfds((r, POLLIN))
    km_mask, linux_mask = (guest.put(bytes(8)), host(8)) if mask == "good" else (BAD, BAD)
    assert call(thread, "ppoll", guest.put(entry), 1, guest.put(ZERO_TIME), km_mask, size) \
        == native("ppoll", host(entry), 1, host(ZERO_TIME), linux_mask, size) < 0


SIGUSR1 = 10


@pytest.mark.parametrize("name", ["ppoll", "pselect6", "epoll_pwait", "epoll_pwait2"])
def test_a_wait_with_a_mask_that_unblocks_a_pending_signal_is_eintr(thread, guest, name):
    """The temporary mask is in place while the call runs: a pending signal it unblocks
    ends the call with EINTR, the original mask saved for after the handler (which needs
    a running vCPU); a mask that keeps it blocked lets the call run and is undone."""
    thread.signal_mask = 1 << (SIGUSR1 - 1)
    assert call(thread, "kill", thread.proc.pid, SIGUSR1) == 0
    epfd = native("epoll_create1", 0)
    try:
        for new_mask, expected in ((0, -errno.EINTR), (1 << (SIGUSR1 - 1), 0)):
            mask = guest.put(struct.pack("<Q", new_mask))
            if name == "ppoll":
                args = (0, 0, guest.put(ZERO_TIME), mask, 8)
            elif name == "pselect6":
                args = (0, 0, 0, 0, guest.put(ZERO_TIME), guest.put(struct.pack("<QQ", mask, 8)))
            elif name == "epoll_pwait":
                args = (epfd, guest.alloc(12), 1, 0, mask, 8)
            else:
                args = (epfd, guest.alloc(12), 1, guest.put(ZERO_TIME), mask, 8)
            assert call(thread, name, *args) == expected
            if expected == -errno.EINTR:
                assert (thread.signal_mask, thread.saved_mask) == (0, 1 << (SIGUSR1 - 1))
                thread.signal_mask, thread.saved_mask = thread.saved_mask, None  # as sigreturn
            else:
                assert (thread.signal_mask, thread.saved_mask) == (1 << (SIGUSR1 - 1), None)
    finally:
        os.close(epfd)


# ---- select, pselect6 -------------------------------------------------------------------

def _fd_set(*fds: int, size: int = 128) -> bytes:
    bits = 0
    for fd in fds:
        bits |= 1 << fd
    return bits.to_bytes(size, "little")


@pytest.mark.parametrize("name", ["select", "pselect6"])
def test_select_reports_what_linux_reports(thread, guest, pipe, name):
    r, w = pipe
    nfds = max(r, w) + 1
    sets = [_fd_set(r, w), _fd_set(r, w), _fd_set()]
    km = [guest.put(s) for s in sets]
    linux = [host(s) for s in sets]
    assert call(thread, name, nfds, *km, guest.put(ZERO_TIME), 0) == \
        native(name, nfds, *linux, host(ZERO_TIME), 0) == 2
    for k, n in zip(km, linux, strict=True):
        assert guest.read(k, 128) == ctypes.string_at(n, 128)


def test_select_errors(thread, guest, twin, pipe):
    r, w = pipe
    nfds = max(r, w) + 1
    closed = closed_fd()
    size = (max(nfds, closed + 1) + 63) // 64 * 8  # the bytes an fd_set of nfds bits takes
    t = twin([RW, RO, HOLE])
    t.put(0, _fd_set(r, size=size), thread)
    t.put(size, _fd_set(closed, size=size), thread)
    cases = [(-1 & 0xFFFFFFFF, t.guest, t.host, ZERO_TIME),
             (nfds, t.guest + PAGE, t.host + PAGE, ZERO_TIME),       # read-only set
             (nfds, t.guest + 2 * PAGE, t.host + 2 * PAGE, ZERO_TIME),  # in the hole
             (nfds, t.guest, t.host, struct.pack("<qq", 0, -1)),        # bad timeval
             (nfds, t.guest, t.host, struct.pack("<qq", -1, 0)),
             (closed + 1, t.guest + size, t.host + size, ZERO_TIME)]  # a closed fd's bit
    for nfds_arg, guest_set, host_set, timeout in cases:
        assert call(thread, "select", nfds_arg, guest_set, 0, 0, guest.put(timeout)) == \
            native("select", nfds_arg, host_set, 0, 0, host(timeout)), (nfds_arg, timeout)
    assert call(thread, "select", nfds, t.guest, 0, 0, BAD) == \
        native("select", nfds, t.host, 0, 0, BAD) == -errno.EFAULT


def test_select_never_watches_km_descriptors(thread, guest, fds):
    base = thread.proc.fds.km_base
    r, w = os.pipe()
    fds += [r, w]
    km_fd = os.dup2(w, base)  # stands for one of km's own, writable
    fds.append(km_fd)
    writable = guest.put(_fd_set(km_fd, size=(base + 64) // 64 * 8))
    assert call(thread, "select", base + 1, 0, writable, 0, guest.put(ZERO_TIME)) == 0


def test_select_with_a_read_only_zero_timeout(thread, twin):
    t = twin([RO])
    assert native("select", 0, 0, 0, 0, t.host) == 0
    assert call(thread, "select", 0, 0, 0, 0, t.guest) == 0


@pytest.mark.parametrize("name", ["select", "pselect6", "ppoll"])
def test_a_read_only_timeout_that_runs_out_keeps_its_value(thread, twin, name):
    """The time left (none) cannot be written back: Linux lets the call succeed and
    the timeout keep its value."""
    usec = 1000 if name == "select" else 1_000_000  # 1 ms as a timeval or a timespec
    timeout = struct.pack("<qq", 0, usec)
    t = twin([RO], timeout)
    args = (0, 0, 0, 0) if name != "ppoll" else (0, 0)
    after = (0,) if name == "pselect6" else (0, 8) if name == "ppoll" else ()
    assert native(name, *args, t.host, *after) == 0
    assert call(thread, name, *args, t.guest, *after) == 0
    assert thread.mm.read(t.guest, 16) == ctypes.string_at(t.host, 16) == timeout


@pytest.mark.parametrize("sticky", [False, True])
def test_the_time_left_is_written_back_unless_timeouts_are_sticky(thread, guest, sticky):
    """personality(STICKY_TIMEOUTS) keeps a timeout as it was; otherwise Linux writes
    back what is left of it (here nothing: it ran out)."""
    timeout = struct.pack("<qq", 0, 1000)
    if sticky:
        thread.proc.personality = 0x4000000
    km = guest.put(timeout)
    assert call(thread, "select", 0, 0, 0, 0, km) == 0
    assert guest.read(km, 16) == (timeout if sticky else ZERO_TIME)


@pytest.mark.parametrize("case", ["bad pointer", "bad set", "bad size"])
def test_pselect6_checks_its_signal_mask(thread, guest, case):
    if case == "bad pointer":
        km_arg, linux_arg = BAD, BAD
    elif case == "bad set":
        km_arg, linux_arg = guest.put(struct.pack("<QQ", BAD, 8)), host(struct.pack("<QQ", BAD, 8))
    else:
        km_arg = guest.put(struct.pack("<QQ", guest.put(bytes(8)), 4))
        linux_arg = host(struct.pack("<QQ", host(8), 4))
    assert call(thread, "pselect6", 0, 0, 0, 0, guest.put(ZERO_TIME), km_arg) == \
        native("pselect6", 0, 0, 0, 0, host(ZERO_TIME), linux_arg) < 0


# ---- epoll -------------------------------------------------------------------------------

def test_epoll_create(thread, fds):
    for name, arg in [("epoll_create1", 0), ("epoll_create1", os.O_CLOEXEC),
                      ("epoll_create1", 1), ("epoll_create", 1), ("epoll_create", 0),
                      ("epoll_create", -1 & 0xFFFFFFFF)]:
        km, linux = call(thread, name, arg), native(name, arg)
        fds += [fd for fd in (km, linux) if fd >= 0]
        assert (km >= 0, min(km, 0)) == (linux >= 0, min(linux, 0)), (name, arg)


@pytest.fixture
def epolls(fds):
    """Two epoll instances, one for km, one for Linux."""
    km, linux = native("epoll_create1", 0), native("epoll_create1", 0)
    assert km >= 0 and linux >= 0
    fds += [km, linux]
    return km, linux


def test_epoll_ctl_and_wait_like_linux(thread, guest, pipe, epolls):
    r, w = pipe
    km_ep, linux_ep = epolls
    for op, fd, events, data in [(EPOLL_CTL_ADD, r, EPOLLIN, 0x1111),
                                 (EPOLL_CTL_ADD, w, EPOLLOUT | EPOLLET, 0x2222),
                                 (EPOLL_CTL_ADD, r, EPOLLIN, 0),          # EEXIST
                                 (EPOLL_CTL_MOD, w, EPOLLOUT, 0x3333),
                                 (EPOLL_CTL_DEL, closed_fd(), 0, 0),      # EBADF
                                 (99, r, EPOLLIN, 0)]:                    # EINVAL
        event = EPOLL_EVENT.pack(events, data)
        assert call(thread, "epoll_ctl", km_ep, op, fd, guest.put(event)) == \
            native("epoll_ctl", linux_ep, op, fd, host(event)), (op, fd)
    km_events, linux_events = guest.alloc(12 * 8), host(12 * 8)
    assert call(thread, "epoll_wait", km_ep, km_events, 8, 0) == \
        native("epoll_wait", linux_ep, linux_events, 8, 0) == 2
    assert guest.read(km_events, 24) == ctypes.string_at(linux_events, 24)
    assert call(thread, "epoll_pwait", km_ep, km_events, 8, 0, 0, 8) == \
        native("epoll_pwait", linux_ep, linux_events, 8, 0, 0, 8) == 2
    assert call(thread, "epoll_pwait2", km_ep, km_events, 1, guest.put(ZERO_TIME), 0, 8) == \
        native("epoll_pwait2", linux_ep, linux_events, 1, host(ZERO_TIME), 0, 8) == 1
    assert guest.read(km_events, 12) == ctypes.string_at(linux_events, 12)
    assert call(thread, "epoll_ctl", km_ep, EPOLL_CTL_DEL, r, 0) == \
        native("epoll_ctl", linux_ep, EPOLL_CTL_DEL, r, 0) == 0


def test_epoll_ctl_errors(thread, guest, pipe, epolls, fds):
    r, _ = pipe
    km_ep, linux_ep = epolls
    event = EPOLL_EVENT.pack(EPOLLIN, 0)
    plain = os.open(os.devnull, os.O_RDONLY)
    fds.append(plain)
    for ep_km, ep_linux, fd, pointer in [(km_ep, linux_ep, r, "bad"), (km_ep, linux_ep, r, None),
                                         (km_ep, linux_ep, km_ep, "ok"),   # itself: EINVAL
                                         (plain, plain, r, "ok"),          # not an epoll
                                         (r, r, plain, "ok")]:
        km_event = BAD if pointer == "bad" else 0 if pointer is None else guest.put(event)
        linux_event = BAD if pointer == "bad" else 0 if pointer is None else host(event)
        if fd == km_ep:
            assert call(thread, "epoll_ctl", ep_km, EPOLL_CTL_ADD, km_ep, km_event) == \
                native("epoll_ctl", ep_linux, EPOLL_CTL_ADD, linux_ep, linux_event)
            continue
        assert call(thread, "epoll_ctl", ep_km, EPOLL_CTL_ADD, fd, km_event) == \
            native("epoll_ctl", ep_linux, EPOLL_CTL_ADD, fd, linux_event)
    base = thread.proc.fds.km_base
    assert call(thread, "epoll_ctl", km_ep, EPOLL_CTL_ADD, base, guest.put(event)) == -errno.EBADF
    assert call(thread, "epoll_ctl", base, EPOLL_CTL_ADD, r, guest.put(event)) == -errno.EBADF


def test_epoll_wait_errors(thread, guest, twin, pipe, epolls, fds):
    r, _ = pipe
    km_ep, linux_ep = epolls
    event = EPOLL_EVENT.pack(EPOLLIN, 7)
    call(thread, "epoll_ctl", km_ep, EPOLL_CTL_ADD, r, guest.put(event))
    native("epoll_ctl", linux_ep, EPOLL_CTL_ADD, r, host(event))
    t = twin([RW, RO, HOLE])
    plain = os.open(os.devnull, os.O_RDONLY)
    fds.append(plain)
    for name in ("epoll_wait", "epoll_pwait"):
        for ep_km, ep_linux, guest_events, host_events, maxevents in [
                (km_ep, linux_ep, t.guest, t.host, 0),
                (km_ep, linux_ep, t.guest, t.host, -1 & 0xFFFFFFFF),
                (km_ep, linux_ep, t.guest, t.host, 0x7FFFFFFF),     # more than INT_MAX bytes
                (km_ep, linux_ep, 0, 0, 1), (km_ep, linux_ep, BAD, BAD, 1),
                (km_ep, linux_ep, t.guest + PAGE, t.host + PAGE, 1),      # read-only
                (km_ep, linux_ep, t.guest + 2 * PAGE, t.host + 2 * PAGE, 1),
                (plain, plain, t.guest, t.host, 1)]:                 # not an epoll
            assert call(thread, name, ep_km, guest_events, maxevents, 0, 0, 8) == \
                native(name, ep_linux, host_events, maxevents, 0, 0, 8), (name, maxevents)
    assert call(thread, "epoll_wait", thread.proc.fds.km_base, t.guest, 1, 0) == -errno.EBADF
    assert call(thread, "epoll_pwait2", km_ep, t.guest, 1, BAD, 0, 8) == \
        native("epoll_pwait2", linux_ep, t.host, 1, BAD, 0, 8) == -errno.EFAULT


def test_epoll_wait_writes_only_the_ready_events(thread, twin, pipe, epolls):
    r, _ = pipe
    km_ep, linux_ep = epolls
    event = EPOLL_EVENT.pack(EPOLLIN, 7)
    t = twin([RW, HOLE])
    t.put(0, event, thread)
    assert native("epoll_ctl", km_ep, EPOLL_CTL_ADD, r, t.host) == 0
    assert native("epoll_ctl", linux_ep, EPOLL_CTL_ADD, r, t.host) == 0
    assert native("epoll_wait", linux_ep, t.host + PAGE - 12, 16, 0) == 1
    assert call(thread, "epoll_wait", km_ep, t.guest + PAGE - 12, 16, 0) == 1


@pytest.mark.parametrize("at", [PAGE - 4, 2 * PAGE - 4], ids=["4 bytes", "read-only"])
def test_epoll_wait_with_no_room_for_an_event_is_efault(thread, twin, pipe, epolls, at):
    """An event ready and not one record of room before the first byte Linux cannot
    write (4 bytes before a read-only page, or none at all): EFAULT."""
    r, _ = pipe
    km_ep, linux_ep = epolls
    event = EPOLL_EVENT.pack(EPOLLIN, 7)
    t = twin([RW, RO, HOLE])
    t.put(0, event, thread)
    assert native("epoll_ctl", km_ep, EPOLL_CTL_ADD, r, t.host) == 0
    assert native("epoll_ctl", linux_ep, EPOLL_CTL_ADD, r, t.host) == 0
    assert native("epoll_wait", linux_ep, t.host + at, 16, 0) == -errno.EFAULT
    assert call(thread, "epoll_wait", km_ep, t.guest + at, 16, 0) == -errno.EFAULT


@pytest.mark.parametrize("name", ["epoll_pwait", "epoll_pwait2"])
@pytest.mark.parametrize("mask, size", [("good", 4), ("bad", 8)])
def test_epoll_pwait_checks_its_signal_mask(thread, guest, epolls, name, mask, size):
    km_ep, linux_ep = epolls
    km_mask, linux_mask = (guest.put(bytes(8)), host(8)) if mask == "good" else (BAD, BAD)
    km_timeout = 0 if name == "epoll_pwait" else guest.put(ZERO_TIME)
    linux_timeout = 0 if name == "epoll_pwait" else host(ZERO_TIME)
    assert call(thread, name, km_ep, guest.alloc(12), 1, km_timeout, km_mask, size) == \
        native(name, linux_ep, host(12), 1, linux_timeout, linux_mask, size) < 0


# ---- hostile registers ---------------------------------------------------------------------

NOT_SWEPT: dict[str, str] = {}  # every handler of the family is swept


@pytest.mark.parametrize("name", sorted(set(family.HANDLERS) - set(NOT_SWEPT)))
def test_hostile_registers_give_errors_never_crashes(thread, name):
    hostile_registers_leave_km_untouched(thread, name)
