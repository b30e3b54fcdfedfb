"""Turning argument registers into checked values: fds, paths, and guest pointers.

Every pointer a handler passes to the host goes through here: it is checked against
the guest's mappings (GuestFault -> EFAULT) and turned into km's address of the same
bytes, so the host kernel works on guest memory in place.
"""

from __future__ import annotations

import errno

from kontain.linux.abi import AT_FDCWD
from kontain.linux.hostcall import address_of
from kontain.mm.access import GuestFault, SplitBuffer

TYPE_CHECKING = False  # no typing import at run time: km start-up is timed
if TYPE_CHECKING:
    from collections.abc import Callable

    from kontain.monitor.thread import GuestThread

PATH_MAX = 4096
#: Linux caps one read/write at this many bytes (MAX_RW_COUNT).
MAX_RW_COUNT = 0x7FFFF000


def s32(value: int) -> int:
    """The low 32 bits of a register as a signed int (C `int` arguments)."""
    value &= 0xFFFFFFFF
    return value - (1 << 32) if value & 0x80000000 else value


def s64(value: int) -> int:
    return value - (1 << 64) if value & (1 << 63) else value


def fd(t: GuestThread, value: int) -> int:
    """A guest file descriptor argument; EBADF for negative ones or km's own."""
    number = s32(value)
    if not 0 <= number < t.proc.fds.km_base:
        raise OSError(errno.EBADF, "bad file descriptor")
    return number


def dirfd(t: GuestThread, value: int) -> int:
    """A *at() directory fd: AT_FDCWD or a guest descriptor."""
    number = s32(value)
    return number if number == AT_FDCWD else fd(t, value)


def path(t: GuestThread, va: int) -> bytes:
    """A NUL-terminated path from guest memory."""
    if not va:
        raise GuestFault(0)
    name = t.mm.cstring(va, PATH_MAX)
    if len(name) >= PATH_MAX:
        raise OSError(errno.ENAMETOOLONG, "path too long")
    return name


def optional_path(t: GuestThread, va: int) -> bytes | None:
    return None if not va else path(t, va)


#: Largest buffer km copies through its own memory when the guest's spans two mappings.
BOUNCE_LIMIT = 1 << 20


def out_ptr(t: GuestThread, va: int, size: int) -> int:
    """km address of a guest buffer the host will write size bytes to (0 stays NULL)."""
    if not va:
        return 0
    mm = t.mm
    try:
        return mm.host_base + mm.translate(va, size, True)
    except SplitBuffer:
        return t.bounce(va, size, True)


def in_ptr(t: GuestThread, va: int, size: int) -> int:
    """km address of a guest buffer the host will read size bytes from (0 stays NULL)."""
    if not va:
        return 0
    mm = t.mm
    try:
        return mm.host_base + mm.translate(va, size, False)
    except SplitBuffer:
        return t.bounce(va, size, False)


def buffer_ptr(t: GuestThread, va: int, size: int, write: bool) -> tuple[int, int]:
    """(km address, usable length) of a read/write buffer.

    Like Linux, a transfer into a buffer that is only partly mapped moves what fits in
    the mapped prefix; only a buffer whose first byte is bad gives EFAULT. A buffer
    spanning two mappings goes through km's memory (up to BOUNCE_LIMIT bytes; beyond,
    the transfer stops at the end of the first mapping).
    """
    mm = t.mm
    try:
        return mm.host_base + mm.translate(va, size, write), size
    except GuestFault:
        segments = mm.accessible_prefix(va, size, write)
        if not segments:
            raise
        total = sum(n for _pa, n in segments)
        if len(segments) > 1 and total <= BOUNCE_LIMIT:
            return t.bounce(va, total, write), total
        pa, length = segments[0]
        return mm.host_base + pa, length


def copied_out(t: GuestThread, va: int, size: int, most: int,
               call: Callable[[int, int], int]) -> int:
    """call(pointer, size) of a host call that writes its result's count of bytes to a
    guest buffer of size bytes (readlink, getxattr, listxattr).

    In place when the buffer is one accessible piece of km's memory. Otherwise the host
    writes km's copy (of at most `most` bytes, enough for any result), which goes to the
    guest afterwards, as Linux copies out (copy_to_user): after the call's own errors,
    only the bytes written, EFAULT if those are not all writable (NULL included). A
    size of 0 has no pointer at all (Linux does not look at it)."""
    if not size:
        return call(0, 0)
    mm = t.mm
    try:
        pointer = mm.host_base + mm.translate(va, size, True)
    except GuestFault:
        pass
    else:
        return call(pointer, size)
    copy = bytearray(most)
    result = call(address_of(copy), most)
    if result > 0:
        t.mm.write(va, bytes(copy[:result]))
    return result
