"""ELF validation and the initial stack."""

from __future__ import annotations

import os
import struct

import pytest

from kontain.loader import stack
from kontain.loader.elf import ExecError, read_elf


def _elf_header(cls: int = 2, machine: int = 62, phnum: int = 1) -> bytes:
    ident = b"\x7fELF" + bytes([cls, 1, 1]) + bytes(9)
    return ident + struct.pack("<HHIQQQIHHHHHH", 2, machine, 1, 0x401000, 64, 0, 0, 64, 56,
                               phnum, 0, 0, 0)


def _check(tmp_path, data: bytes) -> str:
    path = tmp_path / "bin"
    path.write_bytes(data)
    fd = os.open(path, os.O_RDONLY)
    try:
        with pytest.raises(ExecError) as e:
            read_elf(str(path), fd)
    finally:
        os.close(fd)
    assert e.value.errno == 8  # ENOEXEC
    return str(e.value)


def test_text_file_is_not_elf(tmp_path) -> None:
    assert "not an ELF" in _check(tmp_path, b"#!/bin/sh\necho hi\n")


def test_32_bit_elf_is_refused(tmp_path) -> None:
    assert "64-bit" in _check(tmp_path, _elf_header(cls=1))


def test_other_architecture_is_refused(tmp_path) -> None:
    assert "architecture" in _check(tmp_path, _elf_header(machine=183))


def test_truncated_program_headers_are_refused(tmp_path) -> None:
    assert "truncated" in _check(tmp_path, _elf_header(phnum=4) + bytes(20))


def test_truncated_header_is_refused(tmp_path) -> None:
    assert "truncated" in _check(tmp_path, _elf_header()[:40])


def test_initial_stack_layout() -> None:
    top = 0x7FFF_FFFF_E000
    rsp, image = stack.build_initial_stack(
        top, [b"prog", b"arg"], [b"A=1"], b"/bin/prog", [(stack.AT_PAGESZ, 4096)], b"R" * 16)
    assert rsp % 16 == 0 and rsp + len(image) == top

    def word(va: int) -> int:
        return struct.unpack_from("<Q", image, va - rsp)[0]

    def string(va: int) -> bytes:
        off = va - rsp
        return image[off:image.index(b"\0", off)]

    assert word(rsp) == 2
    assert [string(word(rsp + 8)), string(word(rsp + 16))] == [b"prog", b"arg"]
    assert word(rsp + 24) == 0
    assert string(word(rsp + 32)) == b"A=1" and word(rsp + 40) == 0
    auxv = {}
    va = rsp + 48
    while word(va):
        auxv[word(va)] = word(va + 8)
        va += 16
    assert auxv[stack.AT_PAGESZ] == 4096
    assert string(auxv[stack.AT_EXECFN]) == b"/bin/prog"
    assert string(auxv[stack.AT_PLATFORM]) == b"x86_64"
    off = auxv[stack.AT_RANDOM] - rsp
    assert image[off:off + 16] == b"R" * 16
