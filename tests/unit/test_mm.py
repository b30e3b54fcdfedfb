"""The guest address space: mappings, protections, brk, mremap and checked access."""

from __future__ import annotations

import errno

import pytest

from kontain.machine.layout import MMAP_TOP
from kontain.machine.paging import PTE_NX, PTE_WRITE
from kontain.mm.space import (
    MAP_ANONYMOUS,
    MAP_FIXED,
    MAP_FIXED_NOREPLACE,
    MAP_PRIVATE,
    MAP_SHARED,
    MREMAP_FIXED,
    MREMAP_MAYMOVE,
    PROT_EXEC,
    PROT_NONE,
    PROT_READ,
    PROT_WRITE,
    AddressSpace,
    GuestFault,
)

RW = PROT_READ | PROT_WRITE
ANON = MAP_PRIVATE | MAP_ANONYMOUS


def test_mmap_without_hint_is_top_down_below_mmap_top(mm: AddressSpace) -> None:
    a = mm.mmap(0, 8192, RW, ANON)
    b = mm.mmap(0, 4096, RW, ANON)
    assert a + 8192 == MMAP_TOP and b + 4096 == a


def test_hint_is_honoured_when_free(mm: AddressSpace) -> None:
    assert mm.mmap(0x1234_5000, 4096, RW, ANON) == 0x1234_5000
    assert mm.mmap(0x1234_5000, 4096, RW, ANON) != 0x1234_5000


def test_fixed_noreplace_refuses_overlap(mm: AddressSpace) -> None:
    mm.mmap(0x5000_0000, 4096, RW, ANON | MAP_FIXED)
    with pytest.raises(OSError) as e:
        mm.mmap(0x5000_0000, 4096, RW, ANON | MAP_FIXED_NOREPLACE)
    assert e.value.errno == errno.EEXIST


def test_fixed_replaces_the_middle_of_a_mapping(mm: AddressSpace) -> None:
    base = mm.mmap(0x6000_0000, 3 * 4096, RW, ANON | MAP_FIXED)
    mm.write(base, b"A" * 3 * 4096)
    mm.mmap(base + 4096, 4096, PROT_READ, ANON | MAP_FIXED)
    assert mm.read(base, 1) == b"A" and mm.read(base + 4096, 1) == b"\0"
    assert mm.read(base + 8192, 1) == b"A"
    assert [v.prot for v in mm.vmas()] == [RW, PROT_READ, RW]


def test_reads_and_writes_check_protection(mm: AddressSpace) -> None:
    base = mm.mmap(0, 4096, PROT_READ, ANON)
    assert mm.read(base, 4) == b"\0" * 4
    with pytest.raises(GuestFault):
        mm.write(base, b"x")
    with pytest.raises(GuestFault):
        mm.read(0, 1)
    with pytest.raises(GuestFault):
        mm.read(0xFFFF_8000_0000_0000, 8)


def test_access_spanning_adjacent_mappings(mm: AddressSpace) -> None:
    base = mm.mmap(0x7000_0000, 4096, RW, ANON | MAP_FIXED)
    mm.mmap(base + 4096, 4096, RW, ANON | MAP_FIXED)
    mm.write(base + 4094, b"wxyz")
    assert mm.read(base + 4094, 4) == b"wxyz"


def test_mprotect_updates_page_tables(mm: AddressSpace) -> None:
    base = mm.mmap(0, 4 * 4096, RW, ANON)
    mm.mprotect(base + 4096, 4096, PROT_READ | PROT_EXEC)
    _pa, flags = mm.pt.translate(base + 4096)
    assert not flags & PTE_WRITE and not flags & PTE_NX
    mm.mprotect(base + 8192, 4096, PROT_NONE)
    assert mm.pt.translate(base + 8192) is None
    assert mm.pt.translate(base)[1] & PTE_WRITE


def test_mprotect_of_a_hole_is_enomem(mm: AddressSpace) -> None:
    base = mm.mmap(0, 4096, RW, ANON)
    with pytest.raises(OSError) as e:
        mm.mprotect(base, 2 * 4096, PROT_READ)
    assert e.value.errno == errno.ENOMEM


def test_prot_none_reservation_costs_no_physical_memory(mm: AddressSpace) -> None:
    free = mm.phys.free_bytes()
    base = mm.mmap(0, 1 << 30, PROT_NONE, ANON)
    assert mm.phys.free_bytes() == free
    mm.mprotect(base, 1 << 20, RW)
    mm.write(base, b"ok")
    assert mm.phys.free_bytes() == free - (1 << 20)


def test_munmap_returns_physical_memory(mm: AddressSpace) -> None:
    mm.munmap(mm.mmap(0, 1 << 30, RW, ANON), 1 << 30)  # page tables stay allocated
    free = mm.phys.free_bytes()
    for _ in range(8):
        base = mm.mmap(0, 1 << 30, RW, ANON)
        mm.write(base + (1 << 29), b"x")
        mm.munmap(base, 1 << 30)
    assert mm.phys.free_bytes() == free
    assert mm.vmas() == []


def test_brk_grows_shrinks_and_keeps_contents(mm: AddressSpace) -> None:
    mm.set_brk_start(0x60_0000)
    assert mm.brk(0) == 0x60_0000
    assert mm.brk(0x60_0000 + 100) == 0x60_0000 + 100
    mm.write(0x60_0000, b"heap")
    mm.mmap(0x60_0000 + 8192, 4096, RW, ANON | MAP_FIXED)  # forces the heap to move physically
    mm.munmap(0x60_0000 + 8192, 4096)
    mm.phys.allocate(4096)
    assert mm.brk(0x60_0000 + (1 << 20)) == 0x60_0000 + (1 << 20)
    assert mm.read(0x60_0000, 4) == b"heap"
    assert mm.brk(0x60_0000 + 4096) == 0x60_0000 + 4096
    with pytest.raises(GuestFault):
        mm.read(0x60_0000 + 8192, 1)


def test_brk_refuses_to_run_into_a_mapping(mm: AddressSpace) -> None:
    mm.set_brk_start(0x60_0000)
    mm.mmap(0x70_0000, 4096, RW, ANON | MAP_FIXED)
    assert mm.brk(0x80_0000) == 0x60_0000


def test_mremap_grows_in_place_and_by_moving(mm: AddressSpace) -> None:
    base = mm.mmap(0x9000_0000, 4096, RW, ANON | MAP_FIXED)
    mm.write(base, b"data")
    assert mm.mremap(base, 4096, 8192, 0) == base
    mm.mmap(base + 8192, 4096, RW, ANON | MAP_FIXED)  # block further growth in place
    with pytest.raises(OSError):
        mm.mremap(base, 8192, 16384, 0)
    moved = mm.mremap(base, 8192, 16384, MREMAP_MAYMOVE)
    assert moved != base and mm.read(moved, 4) == b"data"
    with pytest.raises(GuestFault):
        mm.read(base, 1)
    fixed = mm.mremap(moved, 16384, 4096, MREMAP_MAYMOVE | MREMAP_FIXED, 0xA000_0000)
    assert fixed == 0xA000_0000 and mm.read(fixed, 4) == b"data"


def test_shared_anonymous_mapping_is_backed(mm: AddressSpace) -> None:
    base = mm.mmap(0, 4096, RW, MAP_SHARED | MAP_ANONYMOUS)
    mm.write(base, b"shared")
    assert mm.read(base, 6) == b"shared"


def test_file_mapping_reads_the_file(mm: AddressSpace, tmp_path) -> None:
    path = tmp_path / "f"
    path.write_bytes(b"0123456789" * 1000)
    import os
    fd = os.open(path, os.O_RDONLY)
    try:
        base = mm.mmap(0, 8192, PROT_READ, MAP_PRIVATE, fd, 4096)
    finally:
        os.close(fd)
    assert mm.read(base, 4) == (b"0123456789" * 1000)[4096:4100]
    # Past the end of the file the mapping reads as zeros (never a fault inside km).
    assert mm.read(base + 8192 - 4, 4) == b"\0" * 4


def test_cstring_stops_at_nul_and_faults_past_the_mapping(mm: AddressSpace) -> None:
    base = mm.mmap(0, 4096, RW, ANON)
    mm.write(base, b"hello\0world")
    assert mm.cstring(base) == b"hello"
    mm.write(base + 4090, b"abcdef")
    with pytest.raises(GuestFault):
        mm.cstring(base + 4090)
