"""Guest physical memory: one host reservation, KVM memslots added as it fills, and a
first-fit allocator of physical ranges.

The whole guest-physical range [0, size) is a single MAP_NORESERVE host mapping, so
guest physical address p lives at host address host_base + p and untouched memory
costs nothing. KVM memslots cost time in proportion to their size, so they are
registered as a ladder that doubles (32 MiB, 32 MiB, 64 MiB, 128 MiB, ...), each only
when the allocator first hands out an address inside it: a small payload starts with
one small slot, a big one still reaches the whole range.
"""

from __future__ import annotations

import bisect
import ctypes
import mmap

from kontain.kvm.api import Vm
from kontain.machine import hostmem
from kontain.machine.layout import DYNAMIC_PA, HUGE_PAGE_SIZE, PAGE_SIZE

FIRST_SLOT_SIZE = 32 << 20
#: Memslot numbers from here on hold host ranges that are not guest RAM.
FOREIGN_SLOT_BASE = 256
#: A memslot made and deleted only to make KVM drop every shadow page (flush_shadow),
#: at a guest-physical address nothing else uses.
_FLUSH_SLOT, _FLUSH_PA = FOREIGN_SLOT_BASE - 1, 1 << 44


def ladder(size: int) -> list[tuple[int, int]]:
    """The (start, size) of each memslot covering [0, size)."""
    slots = [(0, FIRST_SLOT_SIZE)]
    end = FIRST_SLOT_SIZE
    while end < size:
        slots.append((end, end))
        end *= 2
    return slots


class OutOfPhysicalMemory(Exception):
    """No free guest-physical range of the requested size."""


class PhysicalMemory:
    """Guest-physical memory of one VM and who owns which range of it."""

    def __init__(self, vm: Vm, size: int) -> None:
        slots = ladder(size)
        self.size = slots[-1][0] + slots[-1][1]
        self._vm = vm
        self._backing = mmap.mmap(-1, self.size, flags=mmap.MAP_PRIVATE | hostmem.MAP_NORESERVE)
        self.host_base = ctypes.addressof(ctypes.c_char.from_buffer(self._backing))
        #: Byte view of all of guest-physical memory (index = guest physical address).
        self.view = memoryview(self._backing)
        self._slots = slots
        self._registered = 0
        #: Host ranges mapped into guest physical memory beside the RAM (the vDSO):
        #: (slot, guest physical address, size, host address).
        self.foreign: list[tuple[int, int, int, int]] = []
        # Free ranges as two parallel sorted lists of starts and ends.
        self._free_starts = [DYNAMIC_PA]
        self._free_ends = [self.size]
        self._ensure_slots(DYNAMIC_PA)

    def _ensure_slots(self, end: int) -> None:
        """Register memslots until [0, end) is covered."""
        while self._registered < len(self._slots):
            start, size = self._slots[self._registered]
            if start >= end:
                return
            self._vm.set_user_memory_region(self._registered, start, size, self.host_base + start)
            self._registered += 1

    def rebind(self, vm: Vm) -> None:
        """Register the same memslots with another VM (a forked km's new VM): the
        memory, inherited copy-on-write by the host fork, is already in place."""
        self._vm = vm
        for index in range(self._registered):
            start, size = self._slots[index]
            vm.set_user_memory_region(index, start, size, self.host_base + start)
        for slot, guest_phys, size, host_address in self.foreign:
            vm.set_user_memory_region(slot, guest_phys, size, host_address)

    def map_foreign(self, guest_phys: int, host_address: int, size: int) -> None:
        """Make a range of km's own memory (outside the guest RAM) guest-physical. The
        same range again (the vDSO of the next program after an execve) is a no-op."""
        if any(f[1:] == (guest_phys, size, host_address) for f in self.foreign):
            return
        slot = FOREIGN_SLOT_BASE + len(self.foreign)
        self._vm.set_user_memory_region(slot, guest_phys, size, host_address)
        self.foreign.append((slot, guest_phys, size, host_address))

    def flush_shadow(self) -> None:
        """Make KVM drop every shadow page table of this VM (the next accesses fault
        them in again): deleting a memslot zaps them all (x86's SLOT_ZAP_ALL quirk, on
        by default). For the rare case in kontain.mm.space that needs it."""
        self._vm.set_user_memory_region(_FLUSH_SLOT, _FLUSH_PA, PAGE_SIZE, self.host_base)
        self._vm.set_user_memory_region(_FLUSH_SLOT, _FLUSH_PA, 0, self.host_base)

    def host_address(self, pa: int) -> int:
        return self.host_base + pa

    def allocate(self, size: int, congruent: int | None = None) -> int:
        """A free physical range of size bytes (page multiple), lowest address first.
        One of 2 MiB or more starts 2 MiB-aligned, or, given congruent (the virtual
        address it will be mapped at), at the same offset within 2 MiB: so the whole
        2 MiB slots of the mapping can be 2 MiB pages."""
        big = size >= HUGE_PAGE_SIZE
        align = HUGE_PAGE_SIZE if big else PAGE_SIZE
        offset = congruent & (HUGE_PAGE_SIZE - 1) if big and congruent is not None else 0
        starts, ends = self._free_starts, self._free_ends
        for i, start in enumerate(starts):
            aligned = ((start - offset + align - 1) & -align) + offset
            if aligned < start:
                aligned += align
            if aligned + size <= ends[i]:
                self._take(i, aligned, aligned + size)
                self._ensure_slots(aligned + size)
                return aligned
        raise OutOfPhysicalMemory(size)

    def _take(self, i: int, start: int, end: int) -> None:
        """Remove [start, end) from free range i, which contains it."""
        fs, fe = self._free_starts[i], self._free_ends[i]
        del self._free_starts[i], self._free_ends[i]
        if end < fe:
            self._free_starts.insert(i, end)
            self._free_ends.insert(i, fe)
        if fs < start:
            self._free_starts.insert(i, fs)
            self._free_ends.insert(i, start)

    def try_extend(self, pa: int, size: int, new_size: int) -> bool:
        """Grow the allocation [pa, pa+size) in place to new_size if the space is free."""
        end = pa + size
        i = bisect.bisect_left(self._free_starts, end)
        if i < len(self._free_starts) and self._free_starts[i] == end \
                and self._free_ends[i] >= pa + new_size:
            self._take(i, end, pa + new_size)
            self._ensure_slots(pa + new_size)
            return True
        return False

    def free(self, pa: int, size: int) -> None:
        """Give a range back: its host pages are dropped and KVM forgets them."""
        hostmem.reset_anonymous(self.host_base + pa, size)
        starts, ends = self._free_starts, self._free_ends
        i = bisect.bisect_left(starts, pa)
        end = pa + size
        if i < len(starts) and starts[i] == end:  # merge with the following range
            end = ends[i]
            del starts[i], ends[i]
        if i > 0 and ends[i - 1] == pa:  # merge with the preceding range
            ends[i - 1] = end
        else:
            starts.insert(i, pa)
            ends.insert(i, end)

    def close(self) -> None:
        """Unmap all of guest memory (the VM using it is gone). If a view of it is
        still held somewhere, the pages are given back and the range stays reserved."""
        try:
            self.view.release()
            self._backing.close()
        except BufferError:
            hostmem.reset_anonymous(self.host_base, self.size)

    def free_bytes(self) -> int:
        return sum(e - s for s, e in zip(self._free_starts, self._free_ends, strict=True))

    def reset(self) -> None:
        """Take every allocation back at once, for the next program of an execve. The
        part of the range ever handed out gets fresh private zero pages again (what
        km mapped over it, shared and file mappings included, goes), and the free
        list starts over. The memslots stay registered, and KVM drops every shadow page
        (flush_shadow): the old program's must not be found again for the new page
        tables, which reuse the same physical pages."""
        start, size = self._slots[self._registered - 1]
        hostmem.reset_anonymous(self.host_base + DYNAMIC_PA, start + size - DYNAMIC_PA)
        self.flush_shadow()
        self._free_starts = [DYNAMIC_PA]
        self._free_ends = [self.size]
