"""Unit-test fixtures: guest memory without a real VM."""

from __future__ import annotations

import pytest
from oracle import release_host_buffers

from kontain.machine.memory import PhysicalMemory
from kontain.machine.paging import PageTables
from kontain.mm.space import AddressSpace


class RecordingVm:
    """Stands in for kontain.kvm.api.Vm: remembers the memslots it was given."""

    def __init__(self) -> None:
        self.slots: list[tuple[int, int, int, int]] = []

    def set_user_memory_region(self, slot: int, guest_phys: int, size: int, host_addr: int,
                               flags: int = 0) -> None:
        self.slots.append((slot, guest_phys, size, host_addr))


@pytest.fixture
def vm() -> RecordingVm:
    return RecordingVm()


@pytest.fixture
def phys(vm: RecordingVm) -> PhysicalMemory:
    return PhysicalMemory(vm, 4 << 30)


@pytest.fixture
def mm(phys: PhysicalMemory) -> AddressSpace:
    return AddressSpace(phys, PageTables(phys))


@pytest.fixture(autouse=True)
def _release_host_buffers():
    """The oracle's host buffers (tests/unit/oracle.py) live until the test is over."""
    yield
    release_host_buffers()
