"""Guest physical memory: the memslot ladder and the range allocator."""

from __future__ import annotations

from kontain.machine.layout import DYNAMIC_PA
from kontain.machine.memory import FIRST_SLOT_SIZE, PhysicalMemory, ladder


def test_ladder_doubles_and_covers_the_size() -> None:
    slots = ladder(1 << 30)
    assert slots[0] == (0, FIRST_SLOT_SIZE)
    for (start, size), (next_start, _) in zip(slots, slots[1:], strict=False):
        assert next_start == start + size
    assert slots[-1][0] + slots[-1][1] >= 1 << 30
    assert [size for _, size in slots[1:]] == [FIRST_SLOT_SIZE << i for i in range(len(slots) - 1)]


def test_only_the_first_slot_is_registered_at_start(vm, phys: PhysicalMemory) -> None:
    assert vm.slots == [(0, 0, FIRST_SLOT_SIZE, phys.host_base)]


def test_slots_are_registered_as_allocations_reach_them(vm, phys: PhysicalMemory) -> None:
    pa = phys.allocate(256 << 20)
    assert pa >= DYNAMIC_PA
    covered = max(start + size for _, start, size, _ in vm.slots)
    assert covered >= pa + (256 << 20)
    for _slot, start, _size, host in vm.slots:
        assert host == phys.host_base + start


def test_free_ranges_merge_and_are_reused(phys: PhysicalMemory) -> None:
    free_before = phys.free_bytes()
    a = phys.allocate(1 << 20)
    b = phys.allocate(1 << 20)
    phys.free(a, 1 << 20)
    phys.free(b, 1 << 20)
    assert phys.free_bytes() == free_before
    assert phys.allocate(1 << 20) == a


def test_try_extend_grows_in_place_only_into_free_space(phys: PhysicalMemory) -> None:
    a = phys.allocate(4096)
    assert phys.try_extend(a, 4096, 3 * 4096)
    b = phys.allocate(4096)
    assert b == a + 3 * 4096
    assert not phys.try_extend(a, 3 * 4096, 5 * 4096)


def test_freed_memory_reads_as_zero(phys: PhysicalMemory) -> None:
    a = phys.allocate(4096)
    phys.view[a:a + 4] = b"abcd"
    phys.free(a, 4096)
    assert phys.view[a:a + 4] == b"\0\0\0\0"
