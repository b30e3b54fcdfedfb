"""System call handlers of the misc family (kontain/syscalls/misc.py) without KVM: uname,
getrandom, sysinfo, personality, eventfd/eventfd2 and memfd_create.

Linux is the oracle: each case is also made natively by this process, on host memory laid
out as the guest's is, and km must give the same result, errno and bytes (struct utsname
whole; the fields of struct sysinfo that do not move between two calls).
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
    PAGE,
    RO,
    RW,
    Twin,
    call,
    host,
    hostile_registers_leave_km_untouched,
    native,
)

from kontain.syscalls import misc as family

UTSNAME_SIZE, SYSINFO_SIZE = 390, 112
GRND_NONBLOCK, GRND_RANDOM, GRND_INSECURE = 1, 2, 4
MFD_CLOEXEC, MFD_ALLOW_SEALING = 1, 2


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


@pytest.fixture
def fds():
    opened: list[int] = []
    yield opened
    for fd in opened:
        try:
            os.close(fd)
        except OSError:
            pass


def pointer_cases(t: Twin, size: int) -> list[tuple[int, int]]:
    """(guest, host) pointers for an output of size bytes: NULL, unmapped, read-only,
    straddling into the read-only page, straddling into the hole."""
    return [(0, 0), (BAD, BAD), (t.guest + PAGE, t.host + PAGE),
            (t.guest + PAGE - size // 2, t.host + PAGE - size // 2),
            (t.guest + 2 * PAGE - size // 2, t.host + 2 * PAGE - size // 2)]


# ---- uname, sysinfo --------------------------------------------------------------------

def test_uname_writes_what_linux_writes(thread, guest, twin):
    km, linux = guest.alloc(UTSNAME_SIZE), host(UTSNAME_SIZE)
    assert call(thread, "uname", km) == native("uname", linux) == 0
    assert guest.read(km, UTSNAME_SIZE) == ctypes.string_at(linux, UTSNAME_SIZE)
    for guest_arg, host_arg in pointer_cases(twin, UTSNAME_SIZE):
        assert call(thread, "uname", guest_arg) == native("uname", host_arg) == -errno.EFAULT
    km_memory = ctypes.create_string_buffer(b"km", UTSNAME_SIZE)
    assert call(thread, "uname", ctypes.addressof(km_memory)) == -errno.EFAULT
    assert km_memory.raw[:3] == b"km\0"


NODENAME, DOMAINNAME = 65, 5 * 65  # offsets in struct utsname


@pytest.mark.parametrize("name, offset", [("sethostname", NODENAME),
                                          ("setdomainname", DOMAINNAME)])
def test_uts_names_are_the_payloads_own(thread, guest, name, offset):
    """The payload's names change what it reads back, never the host's."""
    if os.geteuid() != 0:
        assert call(thread, name, guest.put(b"x"), 1) == native(name, host(b"x"), 1) \
            == -errno.EPERM
        return
    host_before = host(UTSNAME_SIZE)
    native("uname", host_before)
    assert call(thread, name, guest.put(b"payload-name-and-more"), 12) == 0
    out = guest.alloc(UTSNAME_SIZE)
    assert call(thread, "uname", out) == 0
    assert guest.read(out + offset, 65) == b"payload-name".ljust(65, b"\0")
    host_after = host(UTSNAME_SIZE)
    native("uname", host_after)
    assert ctypes.string_at(host_after, UTSNAME_SIZE) == \
        ctypes.string_at(host_before, UTSNAME_SIZE)
    assert call(thread, name, 0, 0) == 0  # an empty name
    assert call(thread, "uname", out) == 0
    assert guest.read(out + offset, 65) == bytes(65)


@pytest.mark.parametrize("name", ["sethostname", "setdomainname"])
def test_uts_name_errors_like_linux(thread, twin, name):
    """Only arguments Linux refuses before it would set anything (the host's names must
    not change)."""
    for guest_arg, host_arg, length in [(twin.guest, twin.host, 65),
                                        (twin.guest, twin.host, -1 & 0xFFFFFFFF),
                                        (BAD, BAD, 5), (0, 0, 5),
                                        (twin.guest + 2 * PAGE - 2, twin.host + 2 * PAGE - 2, 5)]:
        assert call(thread, name, guest_arg, length) == native(name, host_arg, length) < 0


SYSINFO = struct.Struct("<q3Q6QH6xQQI")  # uptime loads[3] ram*4 swap*2 procs high*2 mem_unit


def test_sysinfo_describes_the_host(thread, guest, twin):
    km, linux = guest.alloc(SYSINFO_SIZE), host(SYSINFO_SIZE)
    assert call(thread, "sysinfo", km) == native("sysinfo", linux) == 0
    km_info = SYSINFO.unpack_from(guest.read(km, SYSINFO_SIZE))
    linux_info = SYSINFO.unpack_from(ctypes.string_at(linux, SYSINFO_SIZE))
    assert abs(km_info[0] - linux_info[0]) <= 1          # uptime
    for field in (4, 8, 11, 12, 13):                     # totalram totalswap high, mem_unit
        assert km_info[field] == linux_info[field], field
    for guest_arg, host_arg in pointer_cases(twin, SYSINFO_SIZE):
        assert call(thread, "sysinfo", guest_arg) == native("sysinfo", host_arg) \
            == -errno.EFAULT


# ---- getrandom ------------------------------------------------------------------------------

@pytest.mark.parametrize("flags", [0, GRND_NONBLOCK, GRND_RANDOM | GRND_NONBLOCK, GRND_INSECURE,
                                   GRND_RANDOM | GRND_INSECURE, 0x80])
def test_getrandom_flags_like_linux(thread, guest, flags):
    assert call(thread, "getrandom", guest.alloc(64), 64, flags) == \
        native("getrandom", host(64), 64, flags)


def test_getrandom_fills_what_is_mapped(thread, guest, twin):
    out = guest.alloc(256)
    assert call(thread, "getrandom", out, 256, 0) == 256
    assert guest.read(out, 256) != bytes(256)
    assert call(thread, "getrandom", BAD, 0, 0) == native("getrandom", BAD, 0, 0) == 0
    cases = pointer_cases(twin, 64) + [(twin.guest + PAGE - 100, twin.host + PAGE - 100)]
    for guest_arg, host_arg in cases:
        # straddling into a page it cannot write, Linux fills the part before it
        assert call(thread, "getrandom", guest_arg, 200, 0) == \
            native("getrandom", host_arg, 200, 0), hex(guest_arg)


# ---- personality -------------------------------------------------------------------------

QUERY = 0xFFFFFFFF
ADDR_NO_RANDOMIZE, PER_BSD = 0x0040000, 0x0006


def test_personality_is_the_guests_own(thread):
    assert call(thread, "personality", QUERY) == 0
    assert call(thread, "personality", ADDR_NO_RANDOMIZE) == 0
    assert call(thread, "personality", QUERY) == ADDR_NO_RANDOMIZE
    assert call(thread, "personality", (1 << 32) | QUERY) == ADDR_NO_RANDOMIZE  # 32-bit arg
    assert call(thread, "personality", 0) == ADDR_NO_RANDOMIZE
    assert native("personality", QUERY) == native("personality", QUERY)  # the host's: untouched


def test_personality_accepts_any_persona(thread):
    old = native("personality", QUERY)
    try:
        assert native("personality", PER_BSD) == old
    finally:
        native("personality", old)
    assert call(thread, "personality", PER_BSD) == 0


# ---- eventfd, memfd ------------------------------------------------------------------------

@pytest.mark.parametrize("name, initval, flags", [
    ("eventfd2", 0, 0), ("eventfd2", 5, os.O_CLOEXEC | os.O_NONBLOCK), ("eventfd2", 0, 1),
    ("eventfd2", 0, 0x8000_0000), ("eventfd", 3, 0), ("eventfd2", (1 << 32) | 7, 0)])
def test_eventfd_like_linux(thread, guest, fds, name, initval, flags):
    km, linux = call(thread, name, initval, flags), native(name, initval, flags)
    fds.extend(fd for fd in (km, linux) if fd >= 0)
    assert (km >= 0, min(km, 0)) == (linux >= 0, min(linux, 0))
    if km >= 0:
        assert os.get_blocking(km) == os.get_blocking(linux)
        os.set_blocking(km, False)
        os.set_blocking(linux, False)
        buf = guest.alloc(8)
        linux_buf = host(8)
        assert call(thread, "read", km, buf, 8) == native("read", linux, linux_buf, 8)
        assert guest.read(buf, 8) == ctypes.string_at(linux_buf, 8)


def test_eventfd_counts_through_km_read_and_write(thread, guest, fds):
    fd = call(thread, "eventfd2", 0, os.O_NONBLOCK)
    fds.append(fd)
    one = guest.put(struct.pack("<Q", 1))
    assert call(thread, "write", fd, one, 8) == 8
    assert call(thread, "write", fd, one, 8) == 8
    assert call(thread, "write", fd, one, 4) == -errno.EINVAL  # a counter is 8 bytes
    out = guest.alloc(8)
    assert call(thread, "read", fd, out, 8) == 8
    assert struct.unpack("<Q", guest.read(out, 8))[0] == 2
    assert call(thread, "read", fd, out, 8) == -errno.EAGAIN


@pytest.mark.parametrize("name_length, flags", [(0, 0), (10, MFD_CLOEXEC | MFD_ALLOW_SEALING),
                                                (249, 0), (250, 0), (300, 0), (10, 0x8000)])
def test_memfd_create_like_linux(thread, guest, fds, name_length, flags):
    name = b"m" * name_length + b"\0"
    km, linux = call(thread, "memfd_create", guest.put(name), flags), \
        native("memfd_create", host(name), flags)
    fds.extend(fd for fd in (km, linux) if fd >= 0)
    assert (km >= 0, min(km, 0)) == (linux >= 0, min(linux, 0))
    if km >= 0:
        assert os.readlink(f"/proc/self/fd/{km}") == os.readlink(f"/proc/self/fd/{linux}")


def test_memfd_create_names_are_checked(thread, fds):
    """NULL, unmapped, and a name running into a hole; one read from read-only memory
    and running into it is fine."""
    data = bytes(PAGE - 3) + b"abc" + b"def\0" + bytes(PAGE - 7) + b"xyz"
    t = Twin(thread, [RW, RO, HOLE], data)
    try:
        for guest_arg, host_arg in [(0, 0), (BAD, BAD), (t.guest + 2 * PAGE - 3,
                                                         t.host + 2 * PAGE - 3)]:
            assert call(thread, "memfd_create", guest_arg, 0) == \
                native("memfd_create", host_arg, 0) == -errno.EFAULT
        km = call(thread, "memfd_create", t.guest + PAGE - 3, 0)
        linux = native("memfd_create", t.host + PAGE - 3, 0)
        fds += [km, linux]
        assert km >= 0 and linux >= 0
        assert os.readlink(f"/proc/self/fd/{km}") == os.readlink(f"/proc/self/fd/{linux}")
    finally:
        t.close()


# ---- hostile registers ---------------------------------------------------------------------

NOT_SWEPT: dict[str, str] = {}  # every handler of the family is swept


@pytest.mark.parametrize("name", sorted(set(family.HANDLERS) - set(NOT_SWEPT)))
def test_hostile_registers_give_errors_never_crashes(thread, name):
    hostile_registers_leave_km_untouched(thread, name)
