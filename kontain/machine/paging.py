"""x86-64 4-level page tables for the guest, written by km in guest memory.

Rules that keep KVM's shadow of these tables correct (see docs/ARCHITECTURE.md,
"Keeping KVM's cached translations honest" and "2 MiB pages"):
- a table, once linked into its parent, is never unlinked or freed, so interior entries
  only ever go from not-present to present;
- whenever a leaf loses a permission or is pointed elsewhere, the caller invalidates
  the old physical pages (kontain.machine.hostmem.invalidate or PhysicalMemory.free);
- a 2 MiB leaf (PS) is written only into a page-directory slot that has never held a
  table, and only over host memory the caller made a transparent huge page: KVM then
  shadows it with one 2 MiB entry, which the host's MMU notifiers drop like any leaf.
  A 2 MiB leaf that goes (cleared, or split into an equivalent table before a change)
  is reported to `on_huge_gone` with its physical address, before anything else
  changes, so the owner can tell whether KVM may have shadowed it with 4 KiB entries
  after all (the host split its huge page) and then flush KVM's shadow.

Intel SDM vol. 3, 4.5 "4-Level Paging".
"""

from __future__ import annotations

import struct

from kontain.machine.layout import HUGE_PAGE_SIZE, PAGE_SIZE
from kontain.machine.memory import PhysicalMemory

TYPE_CHECKING = False  # no typing import at run time: km start-up is timed
if TYPE_CHECKING:
    from collections.abc import Callable

PTE_PRESENT = 1 << 0
PTE_WRITE = 1 << 1
PTE_USER = 1 << 2
PTE_ACCESSED = 1 << 5
PTE_DIRTY = 1 << 6
PTE_HUGE = 1 << 7  # PS in a page-directory entry: a 2 MiB leaf
PTE_NX = 1 << 63
ADDRESS_MASK = 0x000F_FFFF_FFFF_F000
# Accessed preset: KVM sets it itself otherwise (an emulated write per entry), and only
# prefetches neighbouring entries that have it.
_INTERIOR = PTE_PRESENT | PTE_WRITE | PTE_USER | PTE_ACCESSED
_ENTRIES = 512
_ZEROS = bytes(8 * _ENTRIES)
#: Page tables are carved from 2 MiB physical chunks so they do not fragment payload memory.
_POOL_CHUNK = HUGE_PAGE_SIZE
_HUGE_MASK = HUGE_PAGE_SIZE - 1


def _no_report(pa: int) -> None:
    pass


class PageTables:
    """One address space's paging structures, rooted at a PML4 page."""

    def __init__(self, phys: PhysicalMemory) -> None:
        self._phys = phys
        self._q = phys.view.cast("Q")
        self._bytes = phys.view
        self._pool_next = 0
        self._pool_end = 0
        self._leaf_tables: dict[int, int] = {}  # va >> 21 -> physical address of its PT
        #: va >> 21 -> (physical address, flags) of each 2 MiB leaf.
        self.huge: dict[int, tuple[int, int]] = {}
        #: Called with the physical address of a 2 MiB leaf that goes (see the rules).
        self.on_huge_gone: Callable[[int], None] = _no_report
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

    def _directory_slot(self, va: int, create: bool) -> int | None:
        """Index (in 8-byte words of guest memory) of va's page-directory entry."""
        table = self.root
        q = self._q
        for shift in (39, 30):
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
        return table // 8 + ((va >> 21) & 511)

    def _leaf_table(self, va: int, create: bool) -> int | None:
        """Physical address of the page table holding va's leaf entry (a 2 MiB leaf
        there is split into an equivalent table first, if create)."""
        key = va >> 21
        pt = self._leaf_tables.get(key)
        if pt is not None:
            return pt
        if key in self.huge:
            if not create:
                return None
            return self._split(key)
        slot = self._directory_slot(va, create)
        if slot is None:
            return None
        entry = self._q[slot]
        if entry & PTE_PRESENT:
            table = entry & ADDRESS_MASK
        elif not create:
            return None
        else:
            table = self._new_table()
            self._q[slot] = table | _INTERIOR
        self._leaf_tables[key] = table
        return table

    def tabled(self, va: int) -> bool:
        """Whether va's 2 MiB slot has ever held a page table (it can never take a
        2 MiB leaf then: KVM may still have a shadow of that table)."""
        return (va >> 21) in self._leaf_tables

    def map(self, va: int, pa: int, size: int, flags: int) -> None:
        """Map [va, va+size) to [pa, pa+size) with 4 KiB leaves of flags (PTE_* bits)."""
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

    def map_huge(self, va: int, pa: int, flags: int) -> None:
        """Map the 2 MiB at va (aligned, never tabled) to pa (aligned) with one leaf."""
        key = va >> 21
        assert not va & _HUGE_MASK and not pa & _HUGE_MASK and key not in self._leaf_tables
        slot = self._directory_slot(va, True)
        self._q[slot] = pa | flags | PTE_HUGE
        self.huge[key] = (pa, flags)

    def _split(self, key: int) -> int:
        """Replace the 2 MiB leaf of slot key by a table of 512 leaves mapping the same
        pages the same way (so whatever KVM cached stays right until a leaf changes)."""
        pa, flags = self.huge.pop(key)
        self.on_huge_gone(pa)
        table = self._new_table()
        entry = pa | flags
        at = table
        self._bytes[at:at + 8 * _ENTRIES] = struct.pack(
            f"<{_ENTRIES}Q", *range(entry, entry + HUGE_PAGE_SIZE, PAGE_SIZE))
        self._q[self._directory_slot(key << 21, False)] = table | _INTERIOR
        self._leaf_tables[key] = table
        return table

    def split_all(self) -> None:
        """Split every 2 MiB leaf (before a host fork: copy-on-write splits the host's
        huge pages, under which KVM would shadow these leaves with 4 KiB entries)."""
        for key in list(self.huge):
            self._split(key)

    def split_range(self, start: int, end: int) -> None:
        """Split the 2 MiB leaves over any part of [start, end)."""
        if self.huge:
            first, last = start >> 21, (end - 1) >> 21
            for key in [k for k in self.huge if first <= k <= last]:
                self._split(key)

    def unmap(self, va: int, size: int) -> None:
        """Clear the leaf entries of [va, va+size) (tables stay).

        Only tables that exist are touched, so unmapping a huge reservation that was
        never mapped costs nothing (a payload may reserve 2**46 bytes)."""
        end = va + size
        first, last = va >> 21, (end - 1) >> 21
        if self.huge:
            for key in [k for k in self.huge if first <= k <= last]:
                if va <= key << 21 and (key + 1) << 21 <= end:
                    pa, _flags = self.huge.pop(key)
                    self.on_huge_gone(pa)
                    self._q[self._directory_slot(key << 21, False)] = 0
                else:
                    self._split(key)
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
        huge = self.huge.get(va >> 21)
        if huge is not None:
            return huge[0] | (va & _HUGE_MASK), huge[1]
        table = self._leaf_table(va, False)
        if table is None:
            return None
        entry = self._q[table // 8 + ((va >> 12) & 511)]
        if not entry & PTE_PRESENT:
            return None
        return (entry & ADDRESS_MASK) | (va & 0xFFF), entry & ~ADDRESS_MASK
