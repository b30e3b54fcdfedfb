"""ctypes mirrors of the KVM ABI structures (see /usr/include/linux/kvm.h, x86 part).

Field order and sizes follow the kernel headers exactly; tests/test_kvm_abi.py compiles
a C program against the installed headers and checks every size and offset here.
"""

from __future__ import annotations

import ctypes

u8, u16, u32, u64 = ctypes.c_uint8, ctypes.c_uint16, ctypes.c_uint32, ctypes.c_uint64


class Regs(ctypes.Structure):
    """struct kvm_regs: the general purpose registers, rip and rflags."""

    _fields_ = [(name, u64) for name in (
        "rax", "rbx", "rcx", "rdx", "rsi", "rdi", "rsp", "rbp",
        "r8", "r9", "r10", "r11", "r12", "r13", "r14", "r15", "rip", "rflags")]


class Segment(ctypes.Structure):
    """struct kvm_segment: a segment register in its unpacked (VMCS-like) form."""

    _fields_ = [
        ("base", u64), ("limit", u32), ("selector", u16), ("type", u8),
        ("present", u8), ("dpl", u8), ("db", u8), ("s", u8), ("l", u8), ("g", u8),
        ("avl", u8), ("unusable", u8), ("padding", u8)]


class DTable(ctypes.Structure):
    """struct kvm_dtable: a descriptor table register (GDTR/IDTR)."""

    _fields_ = [("base", u64), ("limit", u16), ("padding", u16 * 3)]


class Sregs(ctypes.Structure):
    """struct kvm_sregs: segment, descriptor table and control registers."""

    _fields_ = [
        ("cs", Segment), ("ds", Segment), ("es", Segment), ("fs", Segment),
        ("gs", Segment), ("ss", Segment), ("tr", Segment), ("ldt", Segment),
        ("gdt", DTable), ("idt", DTable),
        ("cr0", u64), ("cr2", u64), ("cr3", u64), ("cr4", u64), ("cr8", u64),
        ("efer", u64), ("apic_base", u64), ("interrupt_bitmap", u64 * 4)]


class VcpuEvents(ctypes.Structure):
    """struct kvm_vcpu_events, kept opaque: km never injects events."""

    _fields_ = [("raw", u8 * 64)]


class SyncRegs(ctypes.Structure):
    """struct kvm_sync_regs: registers exchanged through kvm_run without ioctls."""

    _fields_ = [("regs", Regs), ("sregs", Sregs), ("events", VcpuEvents)]


class IoExit(ctypes.Structure):
    """kvm_run.io: a port I/O exit; the data sits at kvm_run + data_offset."""

    _fields_ = [("direction", u8), ("size", u8), ("port", u16), ("count", u32),
                ("data_offset", u64)]


class FailEntry(ctypes.Structure):
    _fields_ = [("hardware_entry_failure_reason", u64), ("cpu", u32)]


class InternalError(ctypes.Structure):
    _fields_ = [("suberror", u32), ("ndata", u32), ("data", u64 * 16)]


class MmioExit(ctypes.Structure):
    """kvm_run.mmio: an access to guest physical memory no writable memslot backs."""

    _fields_ = [("phys_addr", u64), ("data", u8 * 8), ("len", u32), ("is_write", u8)]


class ExitUnion(ctypes.Union):
    _fields_ = [("io", IoExit), ("mmio", MmioExit), ("fail_entry", FailEntry),
                ("internal", InternalError), ("padding", u8 * 256)]


class Run(ctypes.Structure):
    """struct kvm_run: the page shared between KVM and the VMM for one vCPU."""

    _fields_ = [
        ("request_interrupt_window", u8), ("immediate_exit", u8), ("padding1", u8 * 6),
        ("exit_reason", u32), ("ready_for_interrupt_injection", u8), ("if_flag", u8),
        ("flags", u16), ("cr8", u64), ("apic_base", u64), ("exit", ExitUnion),
        ("kvm_valid_regs", u64), ("kvm_dirty_regs", u64), ("s", SyncRegs),
        ("s_padding", u8 * (2048 - ctypes.sizeof(SyncRegs)))]


class UserspaceMemoryRegion(ctypes.Structure):
    """struct kvm_userspace_memory_region."""

    _fields_ = [("slot", u32), ("flags", u32), ("guest_phys_addr", u64),
                ("memory_size", u64), ("userspace_addr", u64)]


class CpuidEntry2(ctypes.Structure):
    """struct kvm_cpuid_entry2."""

    _fields_ = [("function", u32), ("index", u32), ("flags", u32), ("eax", u32),
                ("ebx", u32), ("ecx", u32), ("edx", u32), ("padding", u32 * 3)]


def cpuid2(n: int) -> ctypes.Structure:
    """A struct kvm_cpuid2 with room for n entries."""

    class Cpuid2(ctypes.Structure):
        _fields_ = [("nent", u32), ("padding", u32), ("entries", CpuidEntry2 * n)]

    return Cpuid2(nent=n)


class MsrEntry(ctypes.Structure):
    _fields_ = [("index", u32), ("reserved", u32), ("data", u64)]


def msrs(entries: list[tuple[int, int]]) -> ctypes.Structure:
    """A struct kvm_msrs holding the given (index, value) pairs."""

    class Msrs(ctypes.Structure):
        _fields_ = [("nmsrs", u32), ("pad", u32), ("entries", MsrEntry * len(entries))]

    m = Msrs(nmsrs=len(entries))
    for i, (index, value) in enumerate(entries):
        m.entries[i].index = index
        m.entries[i].data = value
    return m


class Xcr(ctypes.Structure):
    _fields_ = [("xcr", u32), ("reserved", u32), ("value", u64)]


class Xcrs(ctypes.Structure):
    """struct kvm_xcrs."""

    _fields_ = [("nr_xcrs", u32), ("flags", u32), ("xcrs", Xcr * 16), ("padding", u64 * 16)]


class Debugregs(ctypes.Structure):
    """struct kvm_debugregs: DR0-3, DR6, DR7 (hardware breakpoints and watchpoints)."""

    _fields_ = [("db", u64 * 4), ("dr6", u64), ("dr7", u64), ("flags", u64),
                ("reserved", u64 * 9)]


class Xsave(ctypes.Structure):
    """struct kvm_xsave (the 4 KiB legacy size; KVM_GET_XSAVE2 may need more)."""

    _fields_ = [("region", u32 * 1024)]


class Fpu(ctypes.Structure):
    """struct kvm_fpu."""

    _fields_ = [("fpr", u8 * 128), ("fcw", u16), ("fsw", u16), ("ftwx", u8), ("pad1", u8),
                ("last_opcode", u16), ("last_ip", u64), ("last_dp", u64),
                ("xmm", u8 * 256), ("mxcsr", u32), ("pad2", u32)]
