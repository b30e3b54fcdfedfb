"""x86-64 4-level page tables for the guest, written by km in guest memory.

Rules that keep KVM's shadow of these tables correct (see docs/ARCHITECTURE.md):
- leaves are 4 KiB pages only;
- a table, once linked into its parent, is never unlinked or freed, so interior entries
  only ever go from not-present to present;
- whenever a leaf loses a permission or is pointed elsewhere, the caller invalidates
  the old physical pages (kontain.machine.hostmem.invalidate or PhysicalMemory.free).

Intel SDM vol. 3, 4.5 "4-Level Paging".
"""

from __future__ import annotations

import struct

from kontain.machine.layout import HUGE_PAGE_SIZE, PAGE_SIZE
from kontain.machine.memory import PhysicalMemory

PTE_PRESENT = 1 << 0
PTE_WRITE = 1 << 1
PTE_USER = 1 << 2
PTE_ACCESSED = 1 << 5
PTE_DIRTY = 1 << 6
PTE_NX = 1 << 63
ADDRESS_MASK = 0x000F_FFFF_FFFF_F000
_INTERIOR = PTE_PRESENT | PTE_WRITE | PTE_USER
_ENTRIES = 512
_ZEROS = bytes(8 * _ENTRIES)
#: Page tables are carved from 2 MiB physical chunks so they do not fragment payload memory.
_POOL_CHUNK = HUGE_PAGE_SIZE


class PageTables:
    """One address space's paging structures, rooted at a PML4 page."""

    def __init__(self, phys: PhysicalMemory) -> None:
        self._phys = phys
        self._q = phys.view.cast("Q")
        self._bytes = phys.view
        self._pool_next = 0
        self._pool_end = 0
        self._leaf_tables: dict[int, int] = {}  # va >> 21 -> physical address of its PT
        self.root = self._new_table()

    def release(self) -> None:
        """Let go of guest memory (the machine is being destroyed)."""
        self._q.release()
        self._leaf_tables.clear()

    def _new_table(self) -> int:
        if self._pool_next == self._pool_end:
            self._pool_next = self._phys.allocate(_POOL_CHUNK)
            self._pool_end = self._pool_next + _POOL_CHUNK
        pa = self._pool_next
        self._pool_next += PAGE_SIZE
        return pa

    def _leaf_table(self, va: int, create: bool) -> int | None:
        """Physical address of the page table holding va's leaf entry."""
        key = va >> 21
        pt = self._leaf_tables.get(key)
        if pt is not None:
            return pt
        table = self.root
        q = self._q
        for shift in (39, 30, 21):
            slot = table // 8 + ((va >> shift) & 511)
            entry = q[slot]
            if not entry & PTE_PRESENT:
                if not create:
                    return None
                child = self._new_table()
                q[slot] = child | _INTERIOR
                table = child
            else:
                table = entry & ADDRESS_MASK
        self._leaf_tables[key] = table
        return table

    def map(self, va: int, pa: int, size: int, flags: int) -> None:
        """Map [va, va+size) to [pa, pa+size) with leaf flags (PTE_* bits)."""
        end = va + size
        view = self._bytes
        pack = struct.pack
        while va < end:
            n = min((end - va) // PAGE_SIZE, _ENTRIES - ((va >> 12) & 511))
            first = self._leaf_table(va, True) + ((va >> 12) & 511) * 8
            entry = pa | flags
            view[first:first + 8 * n] = pack(f"<{n}Q", *range(entry, entry + n * PAGE_SIZE,
                                                                PAGE_SIZE))
            va += n * PAGE_SIZE
            pa += n * PAGE_SIZE

    def unmap(self, va: int, size: int) -> None:
        """Clear the leaf entries of [va, va+size) (tables stay).

        Only tables that exist are touched, so unmapping a huge reservation that was
        never mapped costs nothing (a payload may reserve 2**46 bytes)."""
        end = va + size
        first, last = va >> 21, (end - 1) >> 21
        tables = self._leaf_tables
        if last - first >= len(tables):
            keys: list[int] | range = sorted(k for k in tables if first <= k <= last)
        else:
            keys = range(first, last + 1)
        view = self._bytes
        for key in keys:
            table = tables.get(key)
            if table is None:
                continue
            low, high = max(va, key << 21), min(end, (key + 1) << 21)
            at = table + ((low >> 12) & 511) * 8
            n = (high - low) >> 12
            view[at:at + 8 * n] = _ZEROS[:8 * n]

    def translate(self, va: int) -> tuple[int, int] | None:
        """(physical address, leaf flags) of va, or None when not mapped."""
        table = self._leaf_table(va, False)
        if table is None:
            return None
        entry = self._q[table // 8 + ((va >> 12) & 511)]
        if not entry & PTE_PRESENT:
            return None
        return (entry & ADDRESS_MASK) | (va & 0xFFF), entry & ~ADDRESS_MASK
