"""System call handlers of the mm family (kontain/syscalls/mm.py) without KVM: brk, mmap,
munmap, mprotect, mremap, madvise, msync, mincore, mlock/munlock/mlock2.

The semantics of the address space itself are tested in test_mm.py; these tests are about
the system calls: how arguments are taken from the registers, and the errno of every
error path, compared with what Linux answers when this process makes the same call on
host memory of the same shape (the oracle's successful mappings are unmapped again).
"""

from __future__ import annotations

import ctypes
import errno
import os

import pytest
from harness import Guest, make_process, make_thread
from oracle import (
    BAD,
    MASK64,
    PAGE,
    RW,
    _libc,
    call,
    hostile_registers_leave_km_untouched,
    native,
)

from kontain.linux.abi import (
    MAP_ANONYMOUS,
    MAP_FIXED,
    MAP_FIXED_NOREPLACE,
    MAP_PRIVATE,
    MAP_SHARED,
    MAP_SHARED_VALIDATE,
    MREMAP_DONTUNMAP,
    MREMAP_FIXED,
    MREMAP_MAYMOVE,
    PROT_EXEC,
    PROT_READ,
    PROT_WRITE,
)
from kontain.syscalls import mm as family

NO_FD = -1 & 0xFFFFFFFF
AREA = 0x3000_0000  # guest mappings of these tests (Guest's own area lies below)
MADV_DONTNEED, MADV_FREE, MADV_HWPOISON = 4, 8, 100


def errno_of(result: int) -> int:
    """A result reduced to what can be compared across two address spaces: the errno,
    or 0 for any success (the addresses differ)."""
    return result if -4096 < result < 0 else 0


def native_mmap(*args: int) -> int:
    """Linux's answer to mmap, its mapping (if any) undone at once."""
    result = native("mmap", *args)
    if not -4096 < result < 0:
        _libc.munmap(result, args[1])
    return errno_of(result)


@pytest.fixture
def thread():
    return make_thread(make_process())


@pytest.fixture
def guest(thread):
    return Guest(thread)


@pytest.fixture
def host_area():
    """Three host pages with a hole in the middle (and a function to fill it back)."""
    base = _libc.mmap(None, 3 * PAGE, RW, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0)
    _libc.munmap(base + PAGE, PAGE)
    yield base
    _libc.munmap(base, 3 * PAGE)


@pytest.fixture
def guest_area(thread):
    """The same in the guest: three pages at AREA, the middle one unmapped."""
    thread.mm.mmap(AREA, 3 * PAGE, RW, MAP_PRIVATE | MAP_ANONYMOUS | MAP_FIXED)
    thread.mm.munmap(AREA + PAGE, PAGE)
    return AREA


@pytest.fixture
def files(tmp_path):
    opened: list[int] = []

    def make(contents: bytes, flags: int = os.O_RDWR) -> int:
        path = tmp_path / f"f{len(opened)}"
        path.write_bytes(contents)
        opened.append(os.open(path, flags))
        return opened[-1]
    yield make
    for fd in opened:
        os.close(fd)


# ---- brk ---------------------------------------------------------------------------------

def test_brk_moves_the_heap_and_refuses_what_it_cannot(thread):
    thread.mm.set_brk_start(0x0200_0000)
    assert call(thread, "brk", 0) == 0x0200_0000  # a query
    assert call(thread, "brk", 0x0200_3000) == 0x0200_3000
    thread.mm.write(0x0200_2FF8, b"heap top")
    assert call(thread, "brk", 0x0100_0000) == 0x0200_3000  # below the start: unchanged
    assert call(thread, "brk", MASK64) == 0x0200_3000        # beyond user space: unchanged
    assert call(thread, "brk", 0x0200_1000) == 0x0200_1000
    assert thread.mm.find(0x0200_2000) is None


# ---- mmap ---------------------------------------------------------------------------------

def test_anonymous_mmap_and_munmap(thread):
    address = call(thread, "mmap", 0, 3 * PAGE, RW, MAP_PRIVATE | MAP_ANONYMOUS, NO_FD, 0)
    assert 0 < address < 1 << 47 and address % PAGE == 0
    vma = thread.mm.find(address)
    assert vma.start == address and vma.end == address + 3 * PAGE and vma.prot == RW
    assert call(thread, "mmap", address + PAGE, PAGE, PROT_READ,
                MAP_PRIVATE | MAP_ANONYMOUS | MAP_FIXED, NO_FD, 0) == address + PAGE
    assert thread.mm.find(address + PAGE).prot == PROT_READ
    assert call(thread, "mmap", address, PAGE, RW,
                MAP_PRIVATE | MAP_ANONYMOUS | MAP_FIXED_NOREPLACE, NO_FD, 0) == -errno.EEXIST
    assert call(thread, "munmap", address, 3 * PAGE) == 0
    assert thread.mm.find(address) is None


@pytest.mark.parametrize("addr, length, prot, flags, offset", [
    (0, 0, RW, MAP_PRIVATE | MAP_ANONYMOUS, 0),                        # no length
    (0, PAGE, RW, MAP_ANONYMOUS, 0),                                   # neither shared nor private
    (0, PAGE, RW, MAP_SHARED | MAP_PRIVATE | MAP_ANONYMOUS | 0x8, 0),  # an unknown type
    (0, PAGE, RW, MAP_PRIVATE | MAP_ANONYMOUS, 1),                     # unaligned offset
    (AREA + 1, PAGE, RW, MAP_PRIVATE | MAP_ANONYMOUS | MAP_FIXED, 0),  # unaligned fixed
    (0, 1 << 62, RW, MAP_PRIVATE | MAP_ANONYMOUS, 0),                  # too long
    (0, MASK64, RW, MAP_PRIVATE | MAP_ANONYMOUS, 0),
    (0, PAGE, RW, MAP_SHARED_VALIDATE | MAP_ANONYMOUS, 0),             # EINVAL
    (0, PAGE, RW, MAP_SHARED | MAP_ANONYMOUS, 0),
    (0, PAGE, PROT_READ | 0x100, MAP_PRIVATE | MAP_ANONYMOUS, 0),      # unknown prot bits
    (0, PAGE, RW, MAP_PRIVATE | MAP_ANONYMOUS | 0x4000_0000, 0),      # an unknown flag
    (0, PAGE, PROT_EXEC, MAP_PRIVATE | MAP_ANONYMOUS, -PAGE & MASK64),
])
def test_anonymous_mmap_errors_like_linux(thread, addr, length, prot, flags, offset):
    # (the only fixed address here is unaligned: Linux refuses it before mapping anything)
    host_addr = 0x3000_0000_0000 + (addr & (PAGE - 1)) if addr else 0
    assert errno_of(call(thread, "mmap", addr, length, prot, flags, NO_FD, offset)) == \
        native_mmap(host_addr, length, prot, flags, NO_FD, offset)


def test_file_mappings(thread, files, tmp_path):
    data = bytes(range(256)) * 32
    fd = files(data)
    address = call(thread, "mmap", 0, 2 * PAGE, PROT_READ, MAP_PRIVATE, fd, PAGE)
    assert address > 0
    assert thread.mm.read(address, PAGE) == data[PAGE:2 * PAGE]
    shared = call(thread, "mmap", 0, PAGE, RW, MAP_SHARED, fd, 0)
    thread.mm.write(shared, b"written through")
    assert os.pread(fd, 15, 0) == b"written through"  # a shared mapping is the file


def test_file_mapping_errors_like_linux(thread, files, tmp_path):
    data = b"x" * PAGE
    read_only, write_only = files(data, os.O_RDONLY), files(data, os.O_WRONLY)
    directory = os.open(tmp_path, os.O_RDONLY)
    r, w = os.pipe()
    closed = os.dup(r)
    os.close(closed)
    try:
        cases = [(read_only, PROT_READ | PROT_WRITE, MAP_SHARED, 0),    # EACCES
                 (write_only, PROT_READ, MAP_PRIVATE, 0),               # EACCES
                 (directory, PROT_READ, MAP_PRIVATE, 0),                # ENODEV
                 (r, PROT_READ, MAP_PRIVATE, 0),                        # ENODEV
                 (closed, PROT_READ, MAP_PRIVATE, 0),                   # EBADF
                 (NO_FD, PROT_READ, MAP_PRIVATE, 0),                    # EBADF
                 (read_only, PROT_READ, MAP_PRIVATE, 1 << 62),           # beyond: fine
                 (read_only, PROT_READ | PROT_WRITE, MAP_PRIVATE, 0)]   # private: fine
        for fd, prot, flags, offset in cases:
            assert errno_of(call(thread, "mmap", 0, PAGE, prot, flags, fd, offset)) == \
                native_mmap(0, PAGE, prot, flags, fd, offset), (fd, prot, flags, offset)
    finally:
        for fd in (directory, r, w):
            os.close(fd)
    for fd in (thread.proc.fds.km_base, thread.proc.fds.km_base + 3):
        assert call(thread, "mmap", 0, PAGE, PROT_READ, MAP_PRIVATE, fd, 0) == -errno.EBADF
    # MAP_ANONYMOUS ignores the descriptor, km's included
    assert call(thread, "mmap", 0, PAGE, PROT_READ, MAP_PRIVATE | MAP_ANONYMOUS,
                thread.proc.fds.km_base, 0) > 0


def test_mapping_an_empty_write_only_file_is_eacces(thread, files):
    fd = files(b"", os.O_WRONLY)
    assert native_mmap(0, PAGE, PROT_READ, MAP_PRIVATE, fd, 0) == -errno.EACCES
    assert errno_of(call(thread, "mmap", 0, PAGE, PROT_READ, MAP_PRIVATE, fd, 0)) \
        == -errno.EACCES


# ---- munmap, mprotect ---------------------------------------------------------------------

@pytest.mark.parametrize("offset, length", [(0, PAGE), (1, PAGE), (0, 0), (0, 3 * PAGE),
                                            (PAGE, PAGE), (0, MASK64), (0, 1 << 47)])
def test_munmap_like_linux(thread, guest_area, host_area, offset, length):
    assert call(thread, "munmap", guest_area + offset, length) == \
        native("munmap", host_area + offset, length)


@pytest.mark.parametrize("offset, length, prot", [
    (0, PAGE, PROT_READ), (0, 3 * PAGE, PROT_READ), (PAGE, PAGE, PROT_READ),
    (1, PAGE, PROT_READ), (0, 0, PROT_READ), (0, PAGE, 0x10),
    (0, PAGE, 0x8), (0, PAGE, 0x0100_0000), (0, PAGE, 0x0200_0000),  # SEM, GROWSDOWN/UP
    (0, PAGE, 0x0300_0000),
    (2 * PAGE, PAGE, PROT_READ | PROT_WRITE | PROT_EXEC), (0, MASK64 - PAGE, PROT_READ)])
def test_mprotect_like_linux(thread, guest_area, host_area, offset, length, prot):
    assert call(thread, "mprotect", guest_area + offset, length, prot) == \
        native("mprotect", host_area + offset, length, prot)


def test_mprotect_changes_what_the_guest_may_do(thread, guest_area):
    assert call(thread, "mprotect", guest_area, PAGE, PROT_READ) == 0
    assert thread.mm.find(guest_area).prot == PROT_READ
    zero = os.open("/dev/zero", os.O_RDONLY | os.O_CLOEXEC)
    try:  # (a read with data to move: Linux faults on the buffer, as km must)
        assert call(thread, "read", zero, guest_area, 1) == -errno.EFAULT  # not writable now
    finally:
        os.close(zero)


# ---- mremap ------------------------------------------------------------------------------

@pytest.mark.parametrize("offset, old, new, flags", [
    (0, PAGE, 2 * PAGE, 0),                          # grows in place, into the hole
    (0, PAGE, PAGE, 0), (0, PAGE, PAGE // 2, 0), (1, PAGE, PAGE, 0), (0, PAGE, 0, 0),
    (PAGE, PAGE, PAGE, 0),                           # the hole: EFAULT
    (0, 3 * PAGE, 3 * PAGE, 0), (0, 3 * PAGE, 2 * PAGE, 0),  # over the hole: kept, cut
    (0, 3 * PAGE, 4 * PAGE, MREMAP_MAYMOVE),                   # over the hole, grown: EFAULT
    (0, PAGE, 2 * PAGE, MREMAP_MAYMOVE | MREMAP_DONTUNMAP),    # DONTUNMAP: the same size
    (0, PAGE, PAGE, MREMAP_DONTUNMAP),                         # DONTUNMAP without MAYMOVE
    (0, PAGE, PAGE, MREMAP_FIXED),                   # FIXED without MAYMOVE
    (0, PAGE, PAGE, 8),                              # an unknown flag
    (0, PAGE, 1 << 62, MREMAP_MAYMOVE)])
def test_mremap_like_linux(thread, guest_area, host_area, offset, old, new, flags):
    km = call(thread, "mremap", guest_area + offset, old, new, flags, 0)
    linux = native("mremap", host_area + offset, old, new, flags, 0)
    assert errno_of(km) == errno_of(linux)


def test_mremap_moves_keep_the_contents(thread, guest_area):
    thread.mm.write(guest_area + 2 * PAGE, b"moving")
    target = AREA + 16 * PAGE
    assert call(thread, "mremap", guest_area + 2 * PAGE, PAGE, 2 * PAGE,
                MREMAP_MAYMOVE | MREMAP_FIXED, target) == target
    assert thread.mm.read(target, 6) == b"moving"
    assert thread.mm.find(guest_area + 2 * PAGE) is None
    assert call(thread, "mremap", target, PAGE, PAGE, MREMAP_MAYMOVE | MREMAP_FIXED,
                target + 1) == -errno.EINVAL


def test_mremap_dontunmap_moves_the_pages_and_leaves_the_range_empty(thread, guest_area,
                                                                     host_area):
    flags = MREMAP_MAYMOVE | MREMAP_DONTUNMAP
    ctypes.memmove(host_area, b"moving", 6)
    moved = native("mremap", host_area, PAGE, PAGE, flags, 0)
    assert moved > 0 and ctypes.string_at(moved, 6) == b"moving"
    assert ctypes.string_at(host_area, 6) == bytes(6)  # still mapped, empty
    thread.mm.write(guest_area, b"moving")
    moved = call(thread, "mremap", guest_area, PAGE, PAGE, flags, 0)
    assert moved > 0 and thread.mm.read(moved, 6) == b"moving"
    assert thread.mm.read(guest_area, 6) == bytes(6)
    assert thread.mm.find(guest_area).prot == thread.mm.find(moved).prot
    target = AREA + 32 * PAGE
    assert call(thread, "mremap", moved, PAGE, PAGE, flags | MREMAP_FIXED, target) == target
    assert thread.mm.read(target, 6) == b"moving" and thread.mm.read(moved, 6) == bytes(6)


# ---- madvise, msync, mincore, mlock ------------------------------------------------------

@pytest.mark.parametrize("offset, length, advice", [
    (0, PAGE, MADV_DONTNEED), (0, 0, MADV_DONTNEED), (1, PAGE, MADV_DONTNEED),
    (PAGE, PAGE, MADV_DONTNEED), (0, 3 * PAGE, MADV_DONTNEED), (0, PAGE, MADV_FREE),
    (0, PAGE, 999), (0, PAGE, -1 & 0xFFFFFFFF), (0, PAGE, 12), (0, MASK64, MADV_DONTNEED)])
def test_madvise_like_linux(thread, guest_area, host_area, offset, length, advice):
    assert call(thread, "madvise", guest_area + offset, length, advice) == \
        native("madvise", host_area + offset, length, advice)


def test_madv_dontneed_gives_zero_pages_back(thread, guest_area):
    thread.mm.write(guest_area, b"forget me")
    assert call(thread, "madvise", guest_area, PAGE, MADV_DONTNEED) == 0
    assert thread.mm.read(guest_area, 9) == bytes(9)


@pytest.mark.parametrize("offset, length, flags", [
    (0, PAGE, 4), (0, PAGE, 1), (0, PAGE, 5), (0, PAGE, 8), (1, PAGE, 4), (PAGE, PAGE, 4),
    (0, 3 * PAGE, 4), (0, 0, 4), (2 * PAGE, PAGE, 2)])
def test_msync_like_linux(thread, guest_area, host_area, offset, length, flags):
    assert call(thread, "msync", guest_area + offset, length, flags) == \
        native("msync", host_area + offset, length, flags)


def test_mincore_like_linux(thread, guest, guest_area, host_area):
    thread.mm.write(guest_area, b"resident")
    ctypes.memmove(host_area, b"resident", 8)
    km_vec, linux_vec = guest.alloc(8), ctypes.create_string_buffer(8)
    assert call(thread, "mincore", guest_area, PAGE, km_vec) == \
        native("mincore", host_area, PAGE, ctypes.addressof(linux_vec)) == 0
    assert guest.read(km_vec, 1) == linux_vec.raw[:1] == b"\x01"
    for offset, length, vec in [(0, 3 * PAGE, km_vec), (1, PAGE, km_vec), (0, PAGE, 0),
                                (0, PAGE, BAD), (2 * PAGE, PAGE, km_vec)]:
        linux_vec_arg = vec if vec != km_vec else ctypes.addressof(linux_vec)
        assert call(thread, "mincore", guest_area + offset, length, vec) == \
            native("mincore", host_area + offset, length, linux_vec_arg), (offset, length)


@pytest.mark.parametrize("name", ["mlock", "munlock", "mlock2"])
def test_mlock_of_mapped_memory(thread, guest_area, host_area, name):
    assert call(thread, name, guest_area, PAGE, 0) == native(name, host_area, PAGE, 0) == 0
    assert call(thread, name, guest_area + 5, 10, 0) == native(name, host_area + 5, 10, 0)
    native("munlock", host_area, PAGE)


def test_mlock2_flags(thread, guest_area, host_area):
    for flags in (1, 2, 0x80):  # MLOCK_ONFAULT, then unknown bits
        assert call(thread, "mlock2", guest_area, PAGE, flags) == \
            native("mlock2", host_area, PAGE, flags)
    native("munlock", host_area, PAGE)


@pytest.mark.parametrize("name", ["mlock", "munlock", "mlock2"])
def test_mlock_of_a_hole_is_enomem(thread, guest_area, host_area, name):
    assert native(name, host_area, 3 * PAGE, 0) == -errno.ENOMEM
    native("munlock", host_area, PAGE)
    assert call(thread, name, guest_area, 3 * PAGE, 0) == -errno.ENOMEM


# ---- hostile registers ---------------------------------------------------------------------

NOT_SWEPT: dict[str, str] = {}  # every handler of the family is swept


@pytest.mark.parametrize("name", sorted(set(family.HANDLERS) - set(NOT_SWEPT)))
def test_hostile_registers_give_errors_never_crashes(thread, name):
    hostile_registers_leave_km_untouched(thread, name)
