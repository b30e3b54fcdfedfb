"""The architectural state of a fresh vCPU: long mode, paging, SSE/AVX, syscall MSRs.

Every vCPU starts in 64-bit mode at CPL 3 with RFLAGS.IOPL=3, its TR pointing at its
own TSS (whose RSP0 is the top of its own ring-0 stack page).
"""

from __future__ import annotations

import ctypes

from kontain.kvm import structs as s
from kontain.kvm.api import Vcpu
from kontain.machine import gdt
from kontain.machine.layout import GDT_PA, IDT_PA, MAX_VCPUS, kernel_va

CR0_PE, CR0_MP, CR0_ET, CR0_NE, CR0_WP, CR0_AM, CR0_PG = (
    1 << 0, 1 << 1, 1 << 4, 1 << 5, 1 << 16, 1 << 18, 1 << 31)
CR4_PAE, CR4_PGE, CR4_OSFXSR, CR4_OSXMMEXCPT, CR4_FSGSBASE, CR4_OSXSAVE = (
    1 << 5, 1 << 7, 1 << 9, 1 << 10, 1 << 16, 1 << 18)
EFER_SCE, EFER_LME, EFER_LMA, EFER_NXE = 1 << 0, 1 << 8, 1 << 10, 1 << 11

MSR_STAR, MSR_LSTAR, MSR_CSTAR, MSR_SFMASK = 0xC0000081, 0xC0000082, 0xC0000083, 0xC0000084
MSR_FS_BASE, MSR_GS_BASE, MSR_KERNEL_GS_BASE = 0xC0000100, 0xC0000101, 0xC0000102
MSR_TSC_AUX = 0xC0000103

RFLAGS_FIXED = 1 << 1
RFLAGS_TF, RFLAGS_IF, RFLAGS_DF, RFLAGS_IOPL3, RFLAGS_NT, RFLAGS_RF, RFLAGS_AC = (
    1 << 8, 1 << 9, 1 << 10, 3 << 12, 1 << 14, 1 << 16, 1 << 18)
#: The user-mode RFLAGS a thread starts with: IOPL=3 lets it issue `out` to km directly.
USER_RFLAGS = RFLAGS_FIXED | RFLAGS_IOPL3
#: Flags cleared on `syscall` entry, as Linux does (arch/x86/kernel/cpu/common.c), except
#: IOPL: on PVM the stub runs at CPL 3 and its `out` needs IOPL=3.
SYSCALL_MASK = RFLAGS_TF | RFLAGS_IF | RFLAGS_DF | RFLAGS_NT | RFLAGS_RF | RFLAGS_AC
#: The RFLAGS bits user code may change (arithmetic flags, TF, IF, DF, OF, AC, ID).
USER_RFLAGS_MASK = 0x240FD5

XCR0_X87 = 1
#: The initial x87/SSE control words, where they sit in the XSAVE legacy area, and the
#: XSTATE_BV bits of those two components (Intel SDM vol. 1, 13.4 and 13.6).
FCW_INIT, MXCSR_INIT = 0x37F, 0x1F80
MXCSR_OFFSET, XSTATE_BV_OFFSET = 24, 512
XFEATURE_X87, XFEATURE_SSE = 1, 2
#: DR6 and DR7 at power-on: every breakpoint off (their reserved bits read as set).
DR6_INIT, DR7_INIT = 0xFFFF0FF0, 0x400
#: struct kvm_vcpu_events: where its flags field is, and the flags km sets.
EVENTS_FLAGS_OFFSET = 20
KVM_VCPUEVENT_VALID_NMI_PENDING, KVM_VCPUEVENT_VALID_SHADOW = 0x1, 0x4
CPUID_1_ECX_OSXSAVE = 1 << 27
CPUID_7_EBX_FSGSBASE = 1 << 0


def guest_cpuid(supported: ctypes.Structure) -> ctypes.Structure:
    """The host-supported CPUID, adjusted to the state this VM sets up."""
    for i in range(supported.nent):
        e = supported.entries[i]
        if e.function == 1:
            e.ecx |= CPUID_1_ECX_OSXSAVE  # CR4.OSXSAVE is set below
    return supported


def supported_xcr0(cpuid: ctypes.Structure) -> int:
    """The XSAVE features KVM supports (CPUID.(EAX=0DH,ECX=0):EDX:EAX)."""
    for i in range(cpuid.nent):
        e = cpuid.entries[i]
        if e.function == 0xD and e.index == 0:
            return e.eax | e.edx << 32
    return XCR0_X87


def xsave_size(cpuid: ctypes.Structure) -> int:
    """Bytes of the XSAVE area for all supported features (CPUID.(EAX=0DH,ECX=0):ECX)."""
    for i in range(cpuid.nent):
        e = cpuid.entries[i]
        if e.function == 0xD and e.index == 0:
            return max(e.ecx, 576)
    return 512 + 64


def has_fsgsbase(cpuid: ctypes.Structure) -> bool:
    for i in range(cpuid.nent):
        e = cpuid.entries[i]
        if e.function == 7 and e.index == 0:
            return bool(e.ebx & CPUID_7_EBX_FSGSBASE)
    return False


def configure(vcpu: Vcpu, cpuid: ctypes.Structure, pml4: int, tss_base: int,
              syscall_entry: int) -> s.Sregs:
    """Put a freshly created vCPU in the state the ring-0 stub expects. Returns the
    segment and control registers it gave it (what reset gives it again)."""
    vcpu.set_cpuid2(cpuid)
    sregs = vcpu.get_sregs()
    sregs.cr0 = CR0_PE | CR0_MP | CR0_ET | CR0_NE | CR0_WP | CR0_AM | CR0_PG
    sregs.cr4 = CR4_PAE | CR4_PGE | CR4_OSFXSR | CR4_OSXMMEXCPT | CR4_OSXSAVE
    if has_fsgsbase(cpuid):
        sregs.cr4 |= CR4_FSGSBASE
    sregs.cr3 = pml4
    sregs.efer = EFER_SCE | EFER_LME | EFER_LMA | EFER_NXE
    sregs.gdt.base, sregs.gdt.limit = kernel_va(GDT_PA), gdt.gdt_size(MAX_VCPUS) - 1
    sregs.idt.base, sregs.idt.limit = kernel_va(IDT_PA), 32 * 16 - 1
    sregs.cs = gdt.user_code_segment()
    user_data = gdt.user_data_segment()
    sregs.ss = sregs.ds = sregs.es = sregs.fs = sregs.gs = user_data
    sregs.tr = gdt.tss_segment(vcpu.id, tss_base)
    sregs.ldt.unusable = 1
    vcpu.set_sregs(sregs)
    _set_registers(vcpu, supported_xcr0(cpuid), syscall_entry)
    return sregs


def reset(vcpu: Vcpu, sregs: s.Sregs, pml4: int, xcr0: int, syscall_entry: int) -> None:
    """Put a vCPU that has run a program back in the state configure gave it when it
    was new (sregs: the registers configure returned then), with pml4 as its page
    tables, for the next program (an execve): nothing the old program left in it
    survives. Its CPUID stays: KVM refuses to change it once a vCPU has run."""
    sregs.cr3 = pml4
    vcpu.set_sregs(sregs)  # (FS and GS bases included: the segments' bases are 0)
    _set_registers(vcpu, xcr0, syscall_entry)
    # x87/SSE/AVX registers and control words, as at power-on (and as Linux's exec
    # leaves them: fpu__clear_user_states); hardware breakpoints off (exec flushes
    # them); no exception, NMI or interrupt shadow pending.
    vcpu.set_xsave(initial_xsave())
    vcpu.set_debugregs(s.Debugregs(dr6=DR6_INIT, dr7=DR7_INIT))
    vcpu.set_vcpu_events(cleared_events())


def _set_registers(vcpu: Vcpu, xcr0: int, syscall_entry: int) -> None:
    """XCR0, the syscall and segment-base MSRs, the general registers (all zero)."""
    xcrs = s.Xcrs(nr_xcrs=1)
    xcrs.xcrs[0].xcr = 0
    xcrs.xcrs[0].value = xcr0
    vcpu.set_xcrs(xcrs)
    vcpu.set_msrs([
        (MSR_STAR, gdt.KERNEL_CS << 32 | (gdt.USER_DS - 8) << 48),
        (MSR_LSTAR, syscall_entry),
        (MSR_CSTAR, syscall_entry),
        (MSR_SFMASK, SYSCALL_MASK),
        (MSR_FS_BASE, 0), (MSR_GS_BASE, 0), (MSR_KERNEL_GS_BASE, 0),
        (MSR_TSC_AUX, vcpu.id),
    ])
    vcpu.set_regs(s.Regs(rflags=USER_RFLAGS))


def initial_xsave() -> s.Xsave:
    """The XSAVE image of x87/SSE in their initial state (FCW 0x37F, MXCSR 0x1F80, every
    register empty or zero) and every other component in its init state. XSTATE_BV
    names x87 and SSE: KVM takes MXCSR from the image only when one of them is listed,
    and would otherwise keep the old program's rounding and exception masks."""
    xsave = s.Xsave()
    xsave.region[0] = FCW_INIT
    xsave.region[MXCSR_OFFSET // 4] = MXCSR_INIT
    xsave.region[XSTATE_BV_OFFSET // 4] = XFEATURE_X87 | XFEATURE_SSE
    return xsave


def cleared_events() -> s.VcpuEvents:
    """struct kvm_vcpu_events with nothing pending or injected and no interrupt shadow,
    its flags saying the NMI and shadow fields count too."""
    events = s.VcpuEvents()
    events.raw[EVENTS_FLAGS_OFFSET] = KVM_VCPUEVENT_VALID_NMI_PENDING | KVM_VCPUEVENT_VALID_SHADOW
    return events
