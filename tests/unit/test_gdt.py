"""GDT entries and the segment registers derived from them."""

from __future__ import annotations

import struct

from kontain.machine import gdt


def test_user_code_is_64_bit_dpl3_at_linux_selector() -> None:
    seg = gdt.user_code_segment()
    assert (seg.selector, seg.dpl, seg.l, seg.db, seg.s, seg.present) == (0x33, 3, 1, 0, 1, 1)
    assert seg.type == 0xB and seg.limit == 0xFFFFFFFF and seg.g == 1


def test_user_data_is_writable_dpl3() -> None:
    seg = gdt.user_data_segment()
    assert (seg.selector, seg.dpl, seg.type, seg.db) == (0x2B, 3, 0x3, 1)


def test_kernel_segments_are_dpl0() -> None:
    assert gdt.kernel_code_segment().dpl == 0 and gdt.kernel_code_segment().l == 1
    assert gdt.kernel_data_segment().selector == 0x18


def test_table_holds_entries_at_their_selectors_and_a_tss_per_vcpu() -> None:
    table = gdt.build_gdt([0x1122_3344_5566_7000, 0xFFFF_FF80_0000_8000])
    entries = struct.unpack(f"<{len(table) // 8}Q", table)
    assert entries[gdt.USER_CS >> 3] == gdt.USER_CODE
    assert entries[gdt.KERNEL_CS >> 3] == gdt.KERNEL_CODE
    low, high = entries[gdt.tss_selector(1) >> 3], entries[(gdt.tss_selector(1) >> 3) + 1]
    assert high == 0xFFFF_FF80
    tss = gdt.segment_from_descriptor(low, gdt.tss_selector(1))
    assert tss.base == 0x0000_8000 and tss.limit == gdt.TSS_LIMIT and tss.type == 0x9


def test_tss_register_is_busy_with_full_base() -> None:
    seg = gdt.tss_segment(3, 0xFFFF_FF80_0000_A000)
    assert seg.base == 0xFFFF_FF80_0000_A000 and seg.type == 0xB
    assert seg.selector == gdt.tss_selector(3)
