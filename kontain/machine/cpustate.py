"""A vCPU's whole architectural state, as a value: captured from one vCPU and applied to
another (a forked or cloned thread, a snapshot, a debugger's view and edits).

What a payload thread can see or change at CPL 3 is all here: the general registers,
the segment and control registers (FS/GS bases included), the FPU/SSE/AVX state
(XSAVE), XCR0, and the debug registers (hardware breakpoints). The MSRs km programs
once per vCPU (syscall entry, EFER) are set up by kontain.machine.cpu and not carried.
"""

from __future__ import annotations

import ctypes

from kontain.kvm import structs as s
from kontain.kvm.api import Vcpu
from kontain.machine.cpu import MSR_FS_BASE, MSR_GS_BASE, MSR_KERNEL_GS_BASE

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
