"""The global descriptor table and the segment registers derived from it.

Selectors follow Linux x86-64 (arch/x86/include/asm/segment.h) so that what a payload
sees (the cs/ss saved in a signal frame, `mov %cs`) matches native:
__KERNEL_CS 0x10, __KERNEL_DS 0x18, __USER_DS 0x2b, __USER_CS 0x33, TSS from 0x40.

Each descriptor is built once as a packed 8-byte GDT entry, and the kvm_segment given to
KVM_SET_SREGS is decoded from that same entry, so the table in guest memory and the
registers can never disagree (Intel SDM vol. 3, 3.4.5 "Segment Descriptors").
"""

from __future__ import annotations

import struct

from kontain.kvm.structs import Segment

KERNEL_CS = 0x10
KERNEL_DS = 0x18
USER_DS = 0x2B
USER_CS = 0x33
TSS_SELECTOR_BASE = 0x40  # vCPU n uses selector 0x40 + 16 * n
FIXED_ENTRIES = 8

# Access byte bits: present, DPL, S (code/data), type.
_P = 0x80
_S = 0x10
_CODE_EXEC_READ = 0xB  # execute/read, accessed (so the CPU never writes the GDT)
_DATA_READ_WRITE = 0x3  # read/write, accessed
_TSS_AVAILABLE = 0x9
# Flags nibble: G (4 KiB granularity), L (64-bit code).
_G = 0x8
_L = 0x2
_DB = 0x4


def descriptor(base: int, limit: int, access: int, flags: int) -> int:
    """Pack one 8-byte segment descriptor."""
    return ((limit & 0xFFFF) | (base & 0xFFFFFF) << 16 | access << 40
            | ((limit >> 16) & 0xF) << 48 | flags << 52 | ((base >> 24) & 0xFF) << 56)


def segment_from_descriptor(entry: int, selector: int) -> Segment:
    """Decode a descriptor into the register form KVM wants."""
    access = (entry >> 40) & 0xFF
    flags = (entry >> 52) & 0xF
    limit = (entry & 0xFFFF) | ((entry >> 48) & 0xF) << 16
    if flags & _G:
        limit = (limit << 12) | 0xFFF  # the surprising part: G scales the limit by pages
    return Segment(
        base=((entry >> 16) & 0xFFFFFF) | ((entry >> 56) & 0xFF) << 24,
        limit=limit, selector=selector, type=access & 0xF, present=(access >> 7) & 1,
        dpl=(access >> 5) & 3, db=(flags >> 2) & 1, s=(access >> 4) & 1,
        l=(flags >> 1) & 1, g=(flags >> 3) & 1, avl=flags & 1)


KERNEL_CODE = descriptor(0, 0xFFFFF, _P | _S | _CODE_EXEC_READ, _G | _L)
KERNEL_DATA = descriptor(0, 0xFFFFF, _P | _S | _DATA_READ_WRITE, _G | _DB)
USER_DATA = descriptor(0, 0xFFFFF, _P | 3 << 5 | _S | _DATA_READ_WRITE, _G | _DB)
USER_CODE = descriptor(0, 0xFFFFF, _P | 3 << 5 | _S | _CODE_EXEC_READ, _G | _L)

TSS_LIMIT = 0x67  # a 104-byte 64-bit TSS, no I/O permission bitmap


def tss_descriptor(base: int) -> tuple[int, int]:
    """The 16-byte system descriptor of a 64-bit TSS, as two 8-byte halves."""
    low = descriptor(base & 0xFFFFFFFF, TSS_LIMIT, _P | _TSS_AVAILABLE, 0)
    return low, base >> 32


def tss_selector(vcpu_id: int) -> int:
    return TSS_SELECTOR_BASE + 16 * vcpu_id


def build_gdt(tss_bases: list[int]) -> bytes:
    """The whole table: fixed entries at Linux's selectors, then one TSS per vCPU."""
    entries = [0] * FIXED_ENTRIES
    entries[KERNEL_CS >> 3] = KERNEL_CODE
    entries[KERNEL_DS >> 3] = KERNEL_DATA
    entries[USER_DS >> 3] = USER_DATA
    entries[USER_CS >> 3] = USER_CODE
    for base in tss_bases:
        entries.extend(tss_descriptor(base))
    return struct.pack(f"<{len(entries)}Q", *entries)


def tss_segment(vcpu_id: int, base: int) -> Segment:
    """TR for vCPU vcpu_id: a busy 64-bit TSS (the state after `ltr`)."""
    seg = segment_from_descriptor(tss_descriptor(base)[0], tss_selector(vcpu_id))
    seg.base = base
    seg.type = 0xB  # busy
    return seg


def kernel_code_segment() -> Segment:
    return segment_from_descriptor(KERNEL_CODE, KERNEL_CS)


def kernel_data_segment() -> Segment:
    return segment_from_descriptor(KERNEL_DATA, KERNEL_DS)


def user_code_segment() -> Segment:
    return segment_from_descriptor(USER_CODE, USER_CS)


def user_data_segment() -> Segment:
    return segment_from_descriptor(USER_DATA, USER_DS)


def gdt_size(vcpus: int) -> int:
    return 8 * (FIXED_ENTRIES + 2 * vcpus)
