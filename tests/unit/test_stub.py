"""The ring-0 stub's bytes are exactly what its assembly source assembles to."""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

import pytest

from kontain.machine import stub

SOURCE = Path(stub.__file__).with_name("stub.S")


@pytest.mark.skipif(shutil.which("as") is None or shutil.which("objcopy") is None,
                    reason="GNU as/objcopy not installed")
def test_stub_bytes_match_the_assembly_source(tmp_path: Path) -> None:
    obj, binary = tmp_path / "stub.o", tmp_path / "stub.bin"
    subprocess.run(["as", "-o", str(obj), str(SOURCE)], check=True)
    subprocess.run(["objcopy", "-O", "binary", "-j", ".text", str(obj), str(binary)], check=True)
    assert binary.read_bytes() == stub.CODE


def test_every_entry_is_one_out_and_one_iretq() -> None:
    entries = [stub.CODE[i:i + stub.ENTRY_SIZE] for i in range(0, len(stub.CODE), stub.ENTRY_SIZE)]
    assert entries[0] == bytes([0xE6, stub.SYSCALL_PORT, 0x48, 0xCF])
    for vector in range(stub.EXCEPTION_VECTORS):
        entry = stub.CODE[stub.vector_entry_offset(vector):][:stub.ENTRY_SIZE]
        assert entry == bytes([0xE6, stub.EXCEPTION_PORT_BASE + vector, 0x48, 0xCF])
