"""Guest page tables written by km."""

from __future__ import annotations

from kontain.machine.memory import PhysicalMemory
from kontain.machine.paging import PTE_NX, PTE_PRESENT, PTE_USER, PTE_WRITE, PageTables

RW = PTE_PRESENT | PTE_USER | PTE_WRITE | PTE_NX


def test_mapped_pages_translate_to_their_physical_pages(phys: PhysicalMemory) -> None:
    pt = PageTables(phys)
    pa = phys.allocate(8 << 20)
    pt.map(0x40_0000, pa, 8 << 20, RW)  # crosses several page tables
    assert pt.translate(0x40_0123) == (pa + 0x123, RW)
    assert pt.translate(0x40_0000 + (8 << 20) - 1)[0] == pa + (8 << 20) - 1
    assert pt.translate(0x40_0000 + (8 << 20)) is None


def test_unmap_clears_leaves_only(phys: PhysicalMemory) -> None:
    pt = PageTables(phys)
    pa = phys.allocate(4 * 4096)
    pt.map(0x1000_0000, pa, 4 * 4096, RW)
    pt.unmap(0x1000_1000, 4096)
    assert pt.translate(0x1000_1000) is None
    assert pt.translate(0x1000_0000) is not None and pt.translate(0x1000_2000) is not None


def test_remap_changes_flags(phys: PhysicalMemory) -> None:
    pt = PageTables(phys)
    pa = phys.allocate(4096)
    pt.map(0x2000, pa, 4096, RW)
    pt.map(0x2000, pa, 4096, PTE_PRESENT | PTE_USER)
    assert pt.translate(0x2000) == (pa, PTE_PRESENT | PTE_USER)


def test_kernel_half_addresses_use_upper_pml4_slots(phys: PhysicalMemory) -> None:
    pt = PageTables(phys)
    pa = phys.allocate(4096)
    pt.map(0xFFFF_FF80_0000_1000, pa, 4096, PTE_PRESENT | PTE_WRITE)
    root = phys.view.cast("Q")
    assert root[pt.root // 8 + 511] & PTE_PRESENT
    assert pt.translate(0xFFFF_FF80_0000_1008) == (pa + 8, PTE_PRESENT | PTE_WRITE)
