"""Reading ELF64 x86-64 executables: the header, the program headers, the interpreter.

System V gABI and the x86-64 psABI; field layouts from /usr/include/elf.h.
"""

from __future__ import annotations

import errno
import os
import struct

ET_EXEC, ET_DYN = 2, 3
EM_X86_64 = 62
PT_LOAD, PT_INTERP, PT_PHDR, PT_GNU_STACK, PT_TLS = 1, 3, 6, 0x6474E551, 7
PF_X, PF_W, PF_R = 1, 2, 4

_EHDR = struct.Struct("<16sHHIQQQIHHHHHH")
_PHDR = struct.Struct("<IIQQQQQQ")
MAX_PHDRS_BYTES = 65536


class ExecError(Exception):
    """The file cannot be executed; errno says why (ENOENT, EACCES, ENOEXEC, ...)."""

    def __init__(self, err: int, message: str) -> None:
        super().__init__(message)
        self.errno = err


class Segment:
    """One program header (Elf64_Phdr)."""

    __slots__ = ("type", "flags", "offset", "vaddr", "paddr", "filesz", "memsz", "align")

    def __init__(self, type: int, flags: int, offset: int, vaddr: int, paddr: int,
                 filesz: int, memsz: int, align: int) -> None:
        self.type, self.flags, self.offset, self.vaddr = type, flags, offset, vaddr
        self.paddr, self.filesz, self.memsz, self.align = paddr, filesz, memsz, align


class ElfImage:
    """What the loader needs from an executable file."""

    def __init__(self, path: str, type: int, entry: int, phoff: int, phentsize: int,
                 segments: tuple[Segment, ...], interpreter: str | None,
                 raw_phdrs: bytes) -> None:
        self.path, self.type, self.entry, self.phoff = path, type, entry, phoff
        self.phentsize, self.segments, self.interpreter = phentsize, segments, interpreter
        self.raw_phdrs = raw_phdrs

    @property
    def loads(self) -> list[Segment]:
        return [s for s in self.segments if s.type == PT_LOAD]

    @property
    def phnum(self) -> int:
        return len(self.segments)

    def span(self) -> tuple[int, int]:
        """[lowest page, highest end) of the PT_LOAD segments, unrelocated."""
        loads = self.loads
        low = min(s.vaddr for s in loads) & ~0xFFF
        high = max(s.vaddr + s.memsz for s in loads)
        return low, high

    def phdr_vaddr(self) -> int | None:
        """Unrelocated address of the program headers in memory, if they are loaded."""
        for s in self.segments:
            if s.type == PT_PHDR:
                return s.vaddr
        for s in self.loads:
            if s.offset <= self.phoff < s.offset + s.filesz:
                return s.vaddr + self.phoff - s.offset
        return None

    def executable_stack(self) -> bool:
        for s in self.segments:
            if s.type == PT_GNU_STACK:
                return bool(s.flags & PF_X)
        return False


def read_elf(path: str, fd: int) -> ElfImage:
    """Parse and validate an ELF executable open on fd. Raises ExecError(ENOEXEC)."""
    header = os.pread(fd, _EHDR.size, 0)
    if len(header) < 4 or header[:4] != b"\x7fELF":
        raise ExecError(errno.ENOEXEC, "not an ELF executable")
    if len(header) < _EHDR.size:
        raise ExecError(errno.ENOEXEC, "truncated ELF header")
    (ident, e_type, machine, _version, entry, phoff, _shoff, _flags, _ehsize, phentsize,
     phnum, _shentsize, _shnum, _shstrndx) = _EHDR.unpack(header)
    if ident[4] != 2:
        raise ExecError(errno.ENOEXEC, "not a 64-bit ELF (32-bit executables are not supported)")
    if ident[5] != 1:
        raise ExecError(errno.ENOEXEC, "not a little-endian ELF")
    if machine != EM_X86_64:
        raise ExecError(errno.ENOEXEC, f"ELF for another architecture (e_machine {machine})")
    if e_type not in (ET_EXEC, ET_DYN):
        raise ExecError(errno.ENOEXEC, f"ELF type {e_type} is not executable")
    if phentsize != _PHDR.size or phnum == 0 or phnum * phentsize > MAX_PHDRS_BYTES:
        raise ExecError(errno.ENOEXEC, "bad ELF program headers")
    size = os.fstat(fd).st_size
    if phoff + phnum * phentsize > size:
        raise ExecError(errno.ENOEXEC, "truncated ELF program headers")
    raw = os.pread(fd, phnum * phentsize, phoff)
    if len(raw) < phnum * phentsize:
        raise ExecError(errno.ENOEXEC, "truncated ELF program headers")
    segments = []
    interpreter = None
    for i in range(phnum):
        seg = Segment(*_PHDR.unpack_from(raw, i * phentsize))
        segments.append(seg)
        if seg.type == PT_LOAD:
            if seg.filesz > seg.memsz or (seg.vaddr - seg.offset) & 0xFFF:
                raise ExecError(errno.ENOEXEC, "bad PT_LOAD segment")
            if seg.offset + seg.filesz > size:
                raise ExecError(errno.ENOEXEC, "truncated ELF: a segment extends past the end")
        elif seg.type == PT_INTERP and interpreter is None:
            # As binfmt_elf: 2..PATH_MAX bytes ending in NUL, read as a C string.
            if not 2 <= seg.filesz <= 4096 or seg.offset + seg.filesz > size:
                raise ExecError(errno.ENOEXEC, "bad PT_INTERP")
            name = os.pread(fd, seg.filesz, seg.offset)
            if len(name) < seg.filesz or not name.endswith(b"\0"):
                raise ExecError(errno.ENOEXEC, "bad PT_INTERP")
            name = name.split(b"\0", 1)[0]
            if not name:
                raise ExecError(errno.ENOENT, "empty PT_INTERP")
            interpreter = os.fsdecode(name)
    if not any(s.type == PT_LOAD for s in segments):
        raise ExecError(errno.ENOEXEC, "ELF without loadable segments")
    return ElfImage(path, e_type, entry, phoff, phentsize, tuple(segments), interpreter, raw)
