"""The interrupt descriptor table: 32 exception gates into the stub.

Gates for #BP (int3) and #OF (into) have DPL 3 so user code may raise them, as on Linux;
every other gate is DPL 0, so `int $n` from user mode raises #GP instead.
Vectors 32..255 are not present: nothing in a Kontain VM raises interrupts.
"""

from __future__ import annotations

import struct

from kontain.machine.gdt import KERNEL_CS

_INTERRUPT_GATE = 0xE
_PRESENT = 0x80
USER_CALLABLE_VECTORS = frozenset({3, 4})


def gate(handler: int, dpl: int) -> bytes:
    """One 16-byte 64-bit interrupt gate (Intel SDM vol. 3, 6.14.1)."""
    return struct.pack("<HHBBHII", handler & 0xFFFF, KERNEL_CS, 0,
                       _PRESENT | dpl << 5 | _INTERRUPT_GATE, (handler >> 16) & 0xFFFF,
                       handler >> 32, 0)


def build_idt(vector_handler: dict[int, int]) -> bytes:
    """The IDT for vectors 0..max, from a map of vector -> handler address."""
    entries = b""
    for vector in range(max(vector_handler) + 1):
        dpl = 3 if vector in USER_CALLABLE_VECTORS else 0
        entries += gate(vector_handler[vector], dpl)
    return entries
