"""Mapping an ELF image into a guest address space, the way Linux's binfmt_elf does.

Each PT_LOAD becomes a private file mapping of its pages (so the payload's text is the
host page cache, shared and lazily read), plus anonymous zero pages for the bss.
"""

from __future__ import annotations

from kontain.linux.abi import (
    MAP_ANONYMOUS,
    MAP_FIXED,
    MAP_PRIVATE,
    PROT_EXEC,
    PROT_NONE,
    PROT_READ,
    PROT_WRITE,
)
from kontain.loader.elf import ET_DYN, PF_R, PF_W, PF_X, ElfImage

TYPE_CHECKING = False  # no typing import at run time: km start-up is timed
if TYPE_CHECKING:
    from kontain.mm.space import AddressSpace

PAGE = 4096


class LoadedImage:
    """Where an image landed: its load bias and the addresses the auxv reports."""

    def __init__(self, bias: int, entry: int, phdr: int, phnum: int, phent: int,
                 end: int) -> None:
        self.bias, self.entry, self.phdr, self.phnum, self.phent = bias, entry, phdr, phnum, phent
        #: Highest mapped address (page-aligned): the brk starts here.
        self.end = end


def segment_prot(flags: int) -> int:
    return ((PROT_READ if flags & PF_R else 0) | (PROT_WRITE if flags & PF_W else 0)
            | (PROT_EXEC if flags & PF_X else 0))


def load_image(mm: AddressSpace, image: ElfImage, fd: int, base_hint: int) -> LoadedImage:
    """Map image (open on fd) into mm. ET_DYN images go at a free range near base_hint."""
    low, high = image.span()
    bias = 0
    if image.type == ET_DYN:
        # Reserve the whole span first so the segments keep their relative layout, at
        # the largest alignment a segment asks for (as binfmt_elf's maximum_alignment):
        # reserve that much more, keep the aligned part.
        span = page_up(high) - low
        align = max([PAGE] + [seg.align for seg in image.loads
                              if seg.align & (seg.align - 1) == 0])
        extra = align - PAGE
        reserved = mm.mmap(base_hint & ~(align - 1), span + extra, PROT_NONE,
                           MAP_PRIVATE | MAP_ANONYMOUS, name=image.path)
        start = -(-(reserved - (low & (align - 1))) // align) * align + (low & (align - 1))
        if start > reserved:
            mm.munmap(reserved, start - reserved)
        if reserved + span + extra > start + span:
            mm.munmap(start + span, reserved + span + extra - start - span)
        bias = start - low
    name = image.path
    for seg in image.loads:
        prot = segment_prot(seg.flags)
        start = (seg.vaddr & ~(PAGE - 1)) + bias
        file_end = seg.vaddr + seg.filesz + bias
        mem_end = page_up(seg.vaddr + seg.memsz + bias)
        if seg.filesz:
            mm.mmap(start, page_up(file_end) - start, prot, MAP_PRIVATE | MAP_FIXED, fd,
                    seg.offset & ~(PAGE - 1), name=name)
            if seg.memsz > seg.filesz and file_end & (PAGE - 1):
                # The bss starts inside the last file page: clear the rest of that page.
                _zero(mm, file_end, page_up(file_end) - file_end)
        anon_start = page_up(file_end) if seg.filesz else start
        if mem_end > anon_start:
            mm.mmap(anon_start, mem_end - anon_start, prot,
                    MAP_PRIVATE | MAP_ANONYMOUS | MAP_FIXED)
    phdr = image.phdr_vaddr()
    return LoadedImage(bias=bias, entry=image.entry + bias,
                       phdr=(phdr + bias) if phdr is not None else 0,
                       phnum=image.phnum, phent=image.phentsize, end=page_up(high + bias))


def _zero(mm: AddressSpace, va: int, size: int) -> None:
    """Write zeros whatever the page's protection: km is the loader here, not the guest."""
    mm.poke(va, bytes(size))


def page_up(n: int) -> int:
    return (n + PAGE - 1) & ~(PAGE - 1)
