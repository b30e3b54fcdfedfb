"""The ring-0 stub: its machine code (assembled from stub.S) and entry points."""

from __future__ import annotations

#: I/O port the syscall entry writes to.
SYSCALL_PORT = 0xA0
#: Exception vector N exits through port EXCEPTION_PORT_BASE + N.
EXCEPTION_PORT_BASE = 0x80
EXCEPTION_VECTORS = 32
ENTRY_SIZE = 4  # `outb %al, $imm8` (2 bytes) + `iretq` (2 bytes)

SYSCALL_ENTRY_OFFSET = 0


def vector_entry_offset(vector: int) -> int:
    return ENTRY_SIZE * (1 + vector)


def _assemble() -> bytes:
    # outb %al, $port == E6 port; iretq == 48 CF
    entries = [SYSCALL_PORT] + [EXCEPTION_PORT_BASE + v for v in range(EXCEPTION_VECTORS)]
    return b"".join(bytes((0xE6, port, 0x48, 0xCF)) for port in entries)


#: The bytes of stub.S, in order.
CODE = _assemble()

#: Vectors for which the CPU pushes an error code (Intel SDM vol. 3, table 6-1).
VECTORS_WITH_ERROR_CODE = frozenset({8, 10, 11, 12, 13, 14, 17, 21, 29, 30})
