"""A payload process without KVM, for testing system call handlers and the run loop.

`make_process()` builds a real kontain.monitor.process.Process (its address space, fd
space, root, /proc, signals, thread group and system call table) over a FakeMachine: guest
physical memory is real host memory, only the VM and its vCPUs are stand-ins. A handler
is called as the run loop calls it, `handler(thread, a0..a5)`, and its result, or the
errno it raises, checked; `Guest` puts arguments in guest memory and reads results back.

The run loop itself can run too: FakeVcpu's kvm_run is a plain structure, and a test
gives the thread a `run_ioctl` that plays the guest (sets the registers and the exit
reason of each "exit").
"""

from __future__ import annotations

import ctypes
import os

from kontain.kvm import structs as s
from kontain.linux.abi import MAP_ANONYMOUS, MAP_FIXED, MAP_PRIVATE, PROT_READ, PROT_WRITE
from kontain.machine.layout import PAGE_SIZE, kernel_va, vcpu_page
from kontain.machine.memory import PhysicalMemory
from kontain.machine.paging import PageTables
from kontain.machine.vm import IRET_FRAME_SIZE
from kontain.monitor.fdspace import FdSpace
from kontain.monitor.process import Options, Process
from kontain.monitor.thread import GuestThread
from kontain.syscalls.registry import all_handlers

GUEST_DATA = 0x1000_0000  # where Guest puts arguments
XSAVE_SIZE = 1088


class RecordingVm:
    """Stands in for kontain.kvm.api.Vm: remembers the memslots it was given."""

    def __init__(self) -> None:
        self.slots: list[tuple[int, int, int, int]] = []

    def set_user_memory_region(self, slot: int, guest_phys: int, size: int, host_addr: int,
                               flags: int = 0) -> None:
        self.slots.append((slot, guest_phys, size, host_addr))

    def close(self) -> None:
        pass


class FakeVcpu:
    """A vCPU's state, in memory: what KVM would hold, without KVM."""

    def __init__(self, vcpu_id: int) -> None:
        self.id = vcpu_id
        self.fd = -1
        self.run = s.Run()
        self._sregs = s.Sregs()
        self._sregs.cs.selector = 0x33
        self._msrs: dict[int, int] = {}
        self._xsave = s.Xsave()
        self._xcrs = s.Xcrs()
        self._debugregs = s.Debugregs()

    def get_regs(self) -> s.Regs:
        return s.Regs.from_buffer_copy(self.run.s.regs)

    def set_regs(self, regs: s.Regs) -> None:
        ctypes.memmove(ctypes.addressof(self.run.s.regs), ctypes.addressof(regs),
                       ctypes.sizeof(regs))

    def get_sregs(self) -> s.Sregs:
        return s.Sregs.from_buffer_copy(self._sregs)

    def set_sregs(self, sregs: s.Sregs) -> None:
        self._sregs = s.Sregs.from_buffer_copy(sregs)

    def get_msrs(self, indices: list[int]) -> dict[int, int]:
        return {i: self._msrs.get(i, 0) for i in indices}

    def set_msrs(self, entries: list[tuple[int, int]]) -> int:
        self._msrs.update(entries)
        return len(entries)

    def get_xsave(self) -> s.Xsave:
        return s.Xsave.from_buffer_copy(self._xsave)

    def set_xsave(self, xsave: s.Xsave) -> None:
        self._xsave = s.Xsave.from_buffer_copy(xsave)

    def get_xcrs(self) -> s.Xcrs:
        return s.Xcrs.from_buffer_copy(self._xcrs)

    def set_xcrs(self, xcrs: s.Xcrs) -> None:
        self._xcrs = s.Xcrs.from_buffer_copy(xcrs)

    def get_debugregs(self) -> s.Debugregs:
        return s.Debugregs.from_buffer_copy(self._debugregs)

    def set_debugregs(self, debugregs: s.Debugregs) -> None:
        self._debugregs = s.Debugregs.from_buffer_copy(debugregs)

    def close(self) -> None:
        pass


class FakeMachine:
    """What kontain.machine.vm.Machine offers the monitor, over real guest memory."""

    def __init__(self, mem_size: int = 1 << 30) -> None:
        self.kvm = None
        self.vm = RecordingVm()
        self.phys = PhysicalMemory(self.vm, mem_size)
        self.page_tables = PageTables(self.phys)
        self.syscall_entry = kernel_va(0x7000)
        self.syscall_in_user_mode = True  # as on PVM: syscall returns to rcx directly
        self.xcr0 = 7
        self.xsave_size = XSAVE_SIZE

    def create_vcpu(self, vcpu_id: int) -> FakeVcpu:
        return FakeVcpu(vcpu_id)

    def iret_frame_pa(self, vcpu_id: int) -> int:
        return vcpu_page(vcpu_id) + PAGE_SIZE - IRET_FRAME_SIZE

    def iret_frame_va(self, vcpu_id: int) -> int:
        return kernel_va(self.iret_frame_pa(vcpu_id))

    def close(self) -> None:
        pass


def make_process(root: str = "/", strict: bool = True) -> Process:
    """A process as km makes one, over a FakeMachine (nothing loaded, no thread yet)."""
    def no_exit(outcome: object) -> None:
        raise AssertionError(f"the process ended: {vars(outcome)}")
    return Process(Options(mem_size=1 << 30, root=root, strict=strict), FdSpace(),
                   os.dup(2), all_handlers(), no_exit, machine=FakeMachine())


def make_thread(proc: Process) -> GuestThread:
    thread = GuestThread(proc, proc.group.new_vcpu(), proc.pid)
    proc.group.add(thread)
    return thread


class Guest:
    """Guest memory for a test's arguments: a writable area, a bump allocator over it."""

    def __init__(self, thread: GuestThread, size: int = 1 << 20) -> None:
        self.mm = thread.mm
        self.mm.mmap(GUEST_DATA, size, PROT_READ | PROT_WRITE,
                     MAP_PRIVATE | MAP_ANONYMOUS | MAP_FIXED)
        self._next = GUEST_DATA

    def alloc(self, size: int) -> int:
        address = self._next
        self._next += (size + 15) & ~15
        return address

    def put(self, data: bytes) -> int:
        """Guest address of a copy of data (strings: pass them with their NUL)."""
        address = self.alloc(len(data))
        self.mm.write(address, data)
        return address

    def string(self, text: str | bytes | os.PathLike) -> int:
        return self.put(os.fsencode(text) + b"\0")

    def read(self, address: int, size: int) -> bytes:
        return self.mm.read(address, size)
