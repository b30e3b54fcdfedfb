"""A thread's state moved to another vCPU (kontain.machine.cpustate.apply_thread): all
of it, through kvm_run's sync regs and one XSAVE, with the vCPU's own TR."""

from __future__ import annotations

from kontain.kvm import constants as k
from kontain.kvm import structs as s
from kontain.machine import cpustate, gdt
from kontain.machine.layout import kernel_va, vcpu_page


class FakeVcpu:
    def __init__(self, vcpu_id: int) -> None:
        self.id = vcpu_id
        self.run = s.Run()
        self.xsaves: list[bytes] = []

    def set_xsave(self, xsave: s.Xsave) -> None:
        self.xsaves.append(bytes(xsave))


def parent_state() -> cpustate.ThreadState:
    regs = s.Regs(rax=0, rbx=1, rcx=2, rsp=0x7000, rip=0x401000, rflags=0x3202, r15=15)
    sregs = s.Sregs(cr3=0x5000, efer=0xD01)
    sregs.cs = gdt.kernel_code_segment()  # taken in the ring-0 stub (hardware KVM)
    sregs.fs.base, sregs.gs.base, sregs.ds.selector = 0x1234000, 0x5678000, 0x2B
    sregs.tr = gdt.tss_segment(0, kernel_va(vcpu_page(0)))
    sregs.interrupt_bitmap[1] = 4
    xsave = s.Xsave()
    xsave.region[6] = 0x1F80 | 2 << 13  # MXCSR, rounding up
    return cpustate.ThreadState(regs, sregs, xsave)


def test_apply_thread_gives_the_registers_segments_and_fpu_state_of_the_parent():
    vcpu = FakeVcpu(3)
    vcpu.run.s.regs.r14 = 99  # left by the thread that ran here before
    state = parent_state()
    state.fs_base = 0xABC000  # CLONE_SETTLS
    cpustate.apply_thread(vcpu, state)
    run = vcpu.run
    assert bytes(run.s.regs) == bytes(state.regs) and run.s.regs.r14 == 0
    sregs = run.s.sregs
    assert (sregs.fs.base, sregs.gs.base, sregs.ds.selector) == (0xABC000, 0x5678000, 0x2B)
    assert (sregs.cr3, sregs.efer) == (0x5000, 0xD01)
    assert bytes(sregs.cs) == bytes(gdt.user_code_segment())
    assert bytes(sregs.ss) == bytes(gdt.user_data_segment())
    assert bytes(sregs.tr) == bytes(gdt.tss_segment(3, kernel_va(vcpu_page(3))))
    assert list(sregs.interrupt_bitmap) == [0, 0, 0, 0]
    assert run.kvm_dirty_regs == k.KVM_SYNC_X86_REGS | k.KVM_SYNC_X86_SREGS
    assert vcpu.xsaves == [bytes(state.xsave)]
