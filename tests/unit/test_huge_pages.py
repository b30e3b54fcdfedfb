"""2 MiB guest pages: where km writes them, how they split, and when KVM's shadow must
be flushed (docs/ARCHITECTURE.md, "2 MiB pages")."""

from __future__ import annotations

import pytest

from kontain.linux.abi import (
    MAP_ANONYMOUS,
    MAP_PRIVATE,
    MAP_STACK,
    PROT_EXEC,
    PROT_NONE,
    PROT_READ,
    PROT_WRITE,
)
from kontain.machine import hostmem
from kontain.machine.memory import PhysicalMemory
from kontain.machine.paging import PTE_NX, PTE_PRESENT, PTE_USER, PTE_WRITE, PageTables
from kontain.mm.space import AddressSpace

MIB = 1 << 20
HUGE = 2 * MIB
RW = PROT_READ | PROT_WRITE
ANON = MAP_PRIVATE | MAP_ANONYMOUS
LEAF = PTE_PRESENT | PTE_USER | PTE_WRITE | PTE_NX


def _thp_here(phys: PhysicalMemory) -> bool:
    probe = phys.allocate(HUGE)
    try:
        return hostmem.back_huge(phys.host_address(probe))
    finally:
        phys.free(probe, HUGE)


@pytest.fixture
def huge_mm(mm: AddressSpace) -> AddressSpace:
    if not _thp_here(mm.phys):
        pytest.skip("this host gives no transparent huge pages")
    return mm


def test_huge_leaf_translates_and_splits_into_an_equivalent_table(phys) -> None:
    pt = PageTables(phys)
    gone: list[int] = []
    pt.on_huge_gone = gone.append
    pa = phys.allocate(HUGE)
    pt.map_huge(0x4000_0000, pa, LEAF)
    assert pt.translate(0x4000_0000 + 0x12345) == (pa + 0x12345, LEAF)
    assert not pt.tabled(0x4000_0000)
    pt.split_range(0x4000_1000, 0x4000_2000)
    assert gone == [pa] and pt.tabled(0x4000_0000) and not pt.huge
    for offset in (0, 0x1000, 0x12345, HUGE - 1):
        assert pt.translate(0x4000_0000 + offset) == (pa + offset, LEAF)


def test_unmap_clears_a_whole_huge_leaf_and_splits_a_partial_one(phys) -> None:
    pt = PageTables(phys)
    gone: list[int] = []
    pt.on_huge_gone = gone.append
    a, b = phys.allocate(HUGE), phys.allocate(HUGE)
    pt.map_huge(0x4000_0000, a, LEAF)
    pt.map_huge(0x4020_0000, b, LEAF)
    pt.unmap(0x4000_0000, HUGE + 0x3000)
    assert gone == [a, b]
    assert pt.translate(0x4000_0000) is None and pt.translate(0x401F_F000) is None
    assert not pt.tabled(0x4000_0000)  # cleared whole: may be a 2 MiB leaf again
    assert pt.translate(0x4020_2000) is None
    assert pt.translate(0x4020_3000) == (b + 0x3000, LEAF)
    assert pt.tabled(0x4020_0000)


def test_four_kib_map_over_a_huge_leaf_splits_it(phys) -> None:
    pt = PageTables(phys)
    pa = phys.allocate(HUGE)
    pt.map_huge(0x4000_0000, pa, LEAF)
    pt.map(0x4000_5000, pa + 0x5000, 0x1000, PTE_PRESENT | PTE_USER)
    assert pt.translate(0x4000_5000) == (pa + 0x5000, PTE_PRESENT | PTE_USER)
    assert pt.translate(0x4000_6000) == (pa + 0x6000, LEAF)


def test_large_anonymous_mappings_are_2mib_aligned_and_wait_for_their_first_touch(
        mm: AddressSpace) -> None:
    base = mm.mmap(0, 5 * MIB, RW, ANON)
    assert base % HUGE == 0
    assert mm.pt.translate(base) is None  # whole slots: mapped at the first touch
    assert mm.pt.translate(base + 4 * MIB) is not None  # the partial tail: 4 KiB leaves
    assert mm.fill_slot(base + 12345)
    assert mm.pt.translate(base + 12345) is not None
    assert not mm.fill_slot(base + 4 * MIB)  # not a whole slot


@pytest.mark.parametrize("prot, flags", [(RW | PROT_EXEC, ANON), (RW, ANON | MAP_STACK),
                                         (PROT_NONE, ANON)])
def test_executable_stack_and_inaccessible_memory_get_no_huge_leaves(
        mm: AddressSpace, prot: int, flags: int, monkeypatch) -> None:
    monkeypatch.setattr(hostmem, "EXECUTABLE_HUGE_PAGES", False)
    base = mm.mmap(0, 4 * MIB, prot, flags)
    mm.fill_slot(base)
    assert not mm.pt.huge


@pytest.mark.parametrize("change", ["MAP_FIXED", "munmap", "mprotect"])
def test_an_untouched_slot_cut_by_a_change_is_mapped_at_its_first_touch(
        mm: AddressSpace, change: str) -> None:
    """A slot left for its first touch, then cut by a change to part of it: the pieces
    left are no whole slot, and must still map when touched."""
    base = mm.mmap(0, 4 * MIB, RW, ANON)
    middle = base + MIB
    if change == "MAP_FIXED":
        mm.mmap(middle, 0x1000, RW, ANON | 0x10)
    elif change == "munmap":
        mm.munmap(middle, 0x1000)
    else:
        mm.mprotect(middle, 0x1000, PROT_READ)
    for va in (base, middle - 0x1000, middle + 0x1000, base + HUGE - 0x1000):
        if mm.pt.translate(va) is None:
            assert mm.fill_slot(va)
        assert mm.pt.translate(va) is not None, hex(va - base)
    assert (mm.pt.translate(middle) is None) == (change == "munmap")


def test_first_touch_makes_a_huge_leaf_over_a_host_huge_page(huge_mm: AddressSpace) -> None:
    mm = huge_mm
    base = mm.mmap(0, 4 * MIB, RW, ANON)
    assert mm.fill_slot(base + HUGE + 5)
    assert (base + HUGE) >> 21 in mm.pt.huge
    mm.write(base + HUGE + 100, b"kept")
    mm.mprotect(base + HUGE + 0x3000, 0x1000, PROT_READ)  # splits it
    assert not mm.pt.huge
    assert mm.pt.translate(base + HUGE + 0x3000)[1] & PTE_WRITE == 0
    assert mm.pt.translate(base + HUGE + 0x4000)[1] & PTE_WRITE
    assert mm.read(base + HUGE + 100, 4) == b"kept"
    assert not mm.fill_slot(base + HUGE)  # split once, 4 KiB leaves for good


def test_fork_splits_every_huge_leaf(huge_mm: AddressSpace) -> None:
    mm = huge_mm
    base = mm.mmap(0, 8 * MIB, RW, ANON)
    for offset in range(0, 8 * MIB, HUGE):
        mm.fill_slot(base + offset)
    assert len(mm.pt.huge) == 4
    mm.prepare_for_fork()
    assert not mm.pt.huge
    assert mm.pt.translate(base + 7 * MIB) is not None


def test_a_huge_leaf_whose_host_page_was_split_flushes_kvms_shadow(huge_mm, vm) -> None:
    mm = huge_mm
    base = mm.mmap(0, 4 * MIB, RW, ANON)
    mm.fill_slot(base)
    vma = mm.find(base)
    # The host splits its huge page behind km's back (as reclaim may): KVM may then have
    # shadowed the 2 MiB leaf with a 4 KiB table.
    hostmem.madvise(mm.phys.host_address(vma.pa), 0x1000, hostmem.MADV_DONTNEED)
    before = len(vm.slots)
    mm.munmap(base, 4 * MIB)
    flushes = [s for s in vm.slots[before:] if s[0] == 255]
    assert [s[2] for s in flushes] == [4096, 0]  # a memslot made and deleted


def test_no_flush_while_the_host_page_stayed_huge(huge_mm, vm) -> None:
    mm = huge_mm
    base = mm.mmap(0, 4 * MIB, RW, ANON)
    mm.fill_slot(base)
    before = len(vm.slots)
    mm.munmap(base, 4 * MIB)
    assert not [s for s in vm.slots[before:] if s[0] == 255]
