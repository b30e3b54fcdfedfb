"""One Kontain VM assembled from its parts: memory, page tables, GDT/IDT/TSS, stub, vCPUs."""

from __future__ import annotations

import struct

from kontain.kvm import structs as s
from kontain.kvm.api import Kvm, Vcpu
from kontain.machine import cpu, gdt, idt, stub
from kontain.machine.layout import (
    GDT_PA,
    IDT_PA,
    MAX_VCPUS,
    PAGE_SIZE,
    STUB_PA,
    kernel_va,
    vcpu_page,
)
from kontain.machine.memory import PhysicalMemory
from kontain.machine.paging import PTE_NX, PTE_PRESENT, PTE_USER, PTE_WRITE, PageTables

TYPE_CHECKING = False  # no typing import at run time: km start-up is timed
if TYPE_CHECKING:
    from collections.abc import Callable

#: The iret frame (rip, cs, rflags, rsp, ss) sits at the top of each vCPU's ring-0 stack.
IRET_FRAME_SIZE = 5 * 8
TSS_RSP0_OFFSET = 4
_KERNEL_DATA = PTE_PRESENT | PTE_WRITE | PTE_NX


class Machine:
    """A VM with its guest-physical memory, page tables and ring-0 support in place."""

    def __init__(self, mem_size: int, relocate_fd: Callable[[int], int] = lambda fd: fd,
                 kvm: Kvm | None = None) -> None:
        self._relocate_fd = relocate_fd
        if kvm is None:
            kvm = Kvm()
            kvm.fd = relocate_fd(kvm.fd)
        #: The /dev/kvm handle: kept for the next VM (a fork's child: an exec keeps this
        #: one), which may have to be made after the payload dropped the privileges
        #: /dev/kvm asks for.
        self.kvm = kvm
        self.vm = self.kvm.create_vm()
        self.vm.fd = relocate_fd(self.vm.fd)
        self.phys = PhysicalMemory(self.vm, mem_size)
        self.page_tables = PageTables(self.phys)
        self.cpuid = cpu.guest_cpuid(self.kvm.supported_cpuid())
        self.syscall_entry = kernel_va(STUB_PA) + stub.SYSCALL_ENTRY_OFFSET
        #: Whether `syscall` leaves the payload at CPL 3 (PVM) instead of entering ring 0;
        #: None until the first system call shows which (kontain.monitor.thread).
        self.syscall_in_user_mode: bool | None = None
        #: The XSAVE features enabled in every vCPU, and the size of their save area.
        self.xcr0 = cpu.supported_xcr0(self.cpuid)
        self.xsave_size = cpu.xsave_size(self.cpuid)
        #: vCPUs of the previous program (execve keeps the VM), by id: KVM cannot
        #: destroy a vCPU, so create_vcpu hands these out again, reset, for their ids.
        self._spare_vcpus: dict[int, Vcpu] = {}
        #: Ids of spare vCPUs whose last exit may leave KVM work for their next entry.
        self._unsettled: set[int] = set()
        #: The segment and control registers each vCPU was configured with, by id.
        self._sregs: dict[int, s.Sregs] = {}
        self._install_kernel_structures()
        self._map_kernel_structures()

    def _install_kernel_structures(self) -> None:
        view = self.phys.view
        table = gdt.build_gdt([])  # each vCPU's TSS descriptor is added when it is created
        view[GDT_PA:GDT_PA + len(table)] = table
        handlers = {v: kernel_va(STUB_PA) + stub.vector_entry_offset(v)
                    for v in range(stub.EXCEPTION_VECTORS)}
        table = idt.build_idt(handlers)
        view[IDT_PA:IDT_PA + len(table)] = table
        view[STUB_PA:STUB_PA + len(stub.CODE)] = stub.CODE

    def _map_kernel_structures(self) -> None:
        """Map the GDT, IDT and stub in the current page tables. A vCPU's page is mapped
        as the vCPU is made or reused (_install_vcpu_structures): mapping all MAX_VCPUS
        pages ahead would cost a thousand PTEs at every start and exec."""
        # The stub is read-only and executable, and user-accessible (on PVM, `syscall`
        # runs it at CPL 3); the rest is supervisor-only data (the CPU writes iret
        # frames on the ring-0 stacks).
        pt = self.page_tables
        pt.map(kernel_va(GDT_PA), GDT_PA, STUB_PA - GDT_PA, _KERNEL_DATA)
        pt.map(kernel_va(STUB_PA), STUB_PA, PAGE_SIZE, PTE_PRESENT | PTE_USER)

    def _map_vcpu_page(self, vcpu_id: int) -> None:
        page = vcpu_page(vcpu_id)
        self.page_tables.map(kernel_va(page), page, PAGE_SIZE, _KERNEL_DATA)

    def recreate_vm(self) -> None:
        """Give this machine a new KVM VM over the same memory (after a host fork: a VM
        belongs to the process that created it)."""
        old = self.vm
        self.vm = self.kvm.create_vm()
        self.vm.fd = self._relocate_fd(self.vm.fd)
        old.close()
        self.phys.rebind(self.vm)
        self._close_spares()  # the old VM's

    def reset(self, vcpus: list[Vcpu], current: Vcpu | None) -> None:
        """Make this machine new for the next program of an execve, keeping the VM,
        its memslots and its vCPUs: guest memory is dropped (PhysicalMemory.reset, which
        also makes KVM forget every translation), new page tables get the kernel
        structures (which stay in place below DYNAMIC_PA, with every vCPU's TSS), and
        vcpus, all of the old program's, are kept for create_vcpu to hand out again.
        current is the execve's caller's: its last exit was that system call."""
        self._spare_vcpus = {vcpu.id: vcpu for vcpu in vcpus}
        self._unsettled = {vcpu.id for vcpu in vcpus if vcpu is not current}
        self.page_tables.release()
        self.phys.reset()
        self.page_tables = PageTables(self.phys)
        self._map_kernel_structures()

    def _close_spares(self) -> None:
        for vcpu in self._spare_vcpus.values():
            vcpu.close()
        self._spare_vcpus = {}
        self._unsettled = set()

    def close(self) -> None:
        """Destroy the VM and give its memory back (its vCPUs in use are closed already)."""
        self._close_spares()
        self.vm.close()
        self.page_tables.release()
        self.phys.close()

    def iret_frame_pa(self, vcpu_id: int) -> int:
        """Physical address of vCPU vcpu_id's iret frame (rip, cs, rflags, rsp, ss)."""
        return vcpu_page(vcpu_id) + PAGE_SIZE - IRET_FRAME_SIZE

    def iret_frame_va(self, vcpu_id: int) -> int:
        return kernel_va(self.iret_frame_pa(vcpu_id))

    def _install_vcpu_structures(self, vcpu_id: int) -> None:
        """vCPU vcpu_id's TSS (RSP0 = top of its stack page) and its GDT descriptor."""
        page = vcpu_page(vcpu_id)
        self._map_vcpu_page(vcpu_id)
        view = self.phys.view
        view[page + TSS_RSP0_OFFSET:page + TSS_RSP0_OFFSET + 8] = struct.pack(
            "<Q", kernel_va(page + PAGE_SIZE))
        slot = GDT_PA + gdt.tss_selector(vcpu_id)
        view[slot:slot + 16] = struct.pack("<2Q", *gdt.tss_descriptor(kernel_va(page)))

    def create_vcpu(self, vcpu_id: int) -> Vcpu:
        if not 0 <= vcpu_id < MAX_VCPUS:
            raise ValueError(f"vCPU id {vcpu_id} out of range")
        spare = self._spare_vcpus.pop(vcpu_id, None)
        if spare is not None:
            self._reuse(spare)
            return spare
        self._install_vcpu_structures(vcpu_id)
        vcpu = self.vm.create_vcpu(vcpu_id)
        vcpu.fd = self._relocate_fd(vcpu.fd)
        self._sregs[vcpu_id] = cpu.configure(vcpu, self.cpuid, self.page_tables.root,
                                             kernel_va(vcpu_page(vcpu_id)), self.syscall_entry)
        return vcpu

    def _reuse(self, vcpu: Vcpu) -> None:
        """Give a vCPU of the previous program a new vCPU's state."""
        vcpu.run.kvm_dirty_regs = 0  # the registers set below count, not kvm_run's copy
        if vcpu.id in self._unsettled:
            # A thread that vanished may have left an exit KVM completes on the next
            # entry (an `in` it emulates). Complete it now, before the state is reset.
            self._unsettled.discard(vcpu.id)
            try:
                vcpu.enter_without_running()
            except OSError:
                pass  # whatever it was, the reset below overwrites it
        # Its TSS and ring-0 stack page as a new vCPU finds it (no old iret frames).
        page = vcpu_page(vcpu.id)
        self.phys.view[page:page + PAGE_SIZE] = bytes(PAGE_SIZE)
        self._install_vcpu_structures(vcpu.id)
        cpu.reset(vcpu, self._sregs[vcpu.id], self.page_tables.root, self.xcr0,
                  self.syscall_entry)
