"""A vCPU's whole architectural state, as a value: captured from one vCPU and applied to
another (a forked or cloned thread, a snapshot, a debugger's view and edits).

What a payload thread can see or change at CPL 3 is all here: the general registers,
the segment and control registers (FS/GS bases included), the FPU/SSE/AVX state
(XSAVE), XCR0, and the debug registers (hardware breakpoints). The MSRs km programs
once per vCPU (syscall entry, EFER) are set up by kontain.machine.cpu and not carried.

A new thread or a forked child's thread needs less (ThreadState: what can differ between
two threads of km's VMs), moved in three ioctls instead of eleven.
"""

from __future__ import annotations

import ctypes

from kontain.kvm import constants as k
from kontain.kvm import structs as s
from kontain.kvm.api import Vcpu
from kontain.machine import gdt
from kontain.machine.cpu import MSR_FS_BASE, MSR_GS_BASE, MSR_KERNEL_GS_BASE
from kontain.machine.layout import kernel_va, vcpu_page

#: The MSRs that belong to a thread rather than to the machine.
THREAD_MSRS = (MSR_FS_BASE, MSR_GS_BASE, MSR_KERNEL_GS_BASE)


class CpuState:
    """Copies of a vCPU's state structures (changing one changes nothing until apply)."""

    __slots__ = ("regs", "sregs", "msrs", "xsave", "xcrs", "debugregs")

    def __init__(self, regs: s.Regs, sregs: s.Sregs, msrs: dict[int, int], xsave: s.Xsave,
                 xcrs: s.Xcrs, debugregs: s.Debugregs) -> None:
        self.regs, self.sregs, self.msrs = regs, sregs, msrs
        self.xsave, self.xcrs, self.debugregs = xsave, xcrs, debugregs

    @property
    def fs_base(self) -> int:
        return self.msrs[MSR_FS_BASE]

    @fs_base.setter
    def fs_base(self, value: int) -> None:
        self.msrs[MSR_FS_BASE] = value

    def copy(self) -> CpuState:
        def dup(structure: ctypes.Structure) -> ctypes.Structure:
            return type(structure).from_buffer_copy(structure)
        return CpuState(dup(self.regs), dup(self.sregs), dict(self.msrs), dup(self.xsave),
                        dup(self.xcrs), dup(self.debugregs))


def capture(vcpu: Vcpu, regs: s.Regs | None = None) -> CpuState:
    """vcpu's state now. regs: the general registers to use instead of asking KVM (the
    copy kvm_run's sync regs hold while km handles an exit is the current one)."""
    regs = s.Regs.from_buffer_copy(regs) if regs is not None else vcpu.get_regs()
    return CpuState(regs, vcpu.get_sregs(), vcpu.get_msrs(list(THREAD_MSRS)), vcpu.get_xsave(),
                    vcpu.get_xcrs(), vcpu.get_debugregs())


def apply(vcpu: Vcpu, state: CpuState, sregs: bool = True) -> None:
    """Give vcpu this state. sregs=False keeps vcpu's own segment and control registers
    (a new vCPU of the same VM already has the right ones, and its own TSS)."""
    if sregs:
        vcpu.set_sregs(state.sregs)
    vcpu.set_msrs(list(state.msrs.items()))
    vcpu.set_xcrs(state.xcrs)
    vcpu.set_xsave(state.xsave)
    vcpu.set_debugregs(state.debugregs)
    vcpu.set_regs(state.regs)


class ThreadState:
    """What a thread made by clone, or a forked child's one thread, starts with: the
    parent's general registers, segment registers (the FS and GS bases are theirs) and
    FPU/SSE/AVX state. The rest of CpuState is the same on every vCPU of km's VMs and
    the payload cannot change it: XCR0, the debug registers and KERNEL_GS_BASE are
    written only at CPL 0, the payload never runs there and km sets them once per vCPU
    (kontain.machine.cpu.configure). So moving it costs two ioctls here and one in
    apply_thread, instead of five and six."""

    __slots__ = ("regs", "sregs", "xsave")

    def __init__(self, regs: s.Regs, sregs: s.Sregs, xsave: s.Xsave) -> None:
        self.regs, self.sregs, self.xsave = regs, sregs, xsave

    @property
    def fs_base(self) -> int:
        return self.sregs.fs.base

    @fs_base.setter
    def fs_base(self, value: int) -> None:
        self.sregs.fs.base = value


def capture_thread(vcpu: Vcpu, regs: s.Regs) -> ThreadState:
    """vcpu's thread state now; regs: its general registers (kvm_run's sync regs while
    km handles an exit hold the current ones)."""
    return ThreadState(s.Regs.from_buffer_copy(regs), vcpu.get_sregs(), vcpu.get_xsave())


def apply_thread(vcpu: Vcpu, state: ThreadState) -> None:
    """Give vcpu this thread state, all of it (a vCPU reused from an ended thread keeps
    nothing of that one's). The registers and segments go through kvm_run's sync regs,
    which KVM loads at the next KVM_RUN, with the user code and stack segments and this
    vCPU's own TR (the parent's state may have been taken in the ring-0 stub, and TR is
    per vCPU); the FPU state takes one ioctl."""
    sregs = s.Sregs.from_buffer_copy(state.sregs)
    sregs.cs = gdt.user_code_segment()
    sregs.ss = gdt.user_data_segment()
    sregs.tr = gdt.tss_segment(vcpu.id, kernel_va(vcpu_page(vcpu.id)))
    for i in range(len(sregs.interrupt_bitmap)):
        sregs.interrupt_bitmap[i] = 0  # no interrupt to inject: km has none
    vcpu.set_xsave(state.xsave)
    run = vcpu.run
    run.s.regs = state.regs
    run.s.sregs = sregs
    run.kvm_dirty_regs |= k.KVM_SYNC_X86_REGS | k.KVM_SYNC_X86_SREGS
