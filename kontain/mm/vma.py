"""One guest mapping (a VMA): [start, end), one protection, one kind of backing.

A Vma is immutable. The address space publishes its list of VMAs as a whole (see
kontain.mm.access), so a thread translating a guest pointer without the lock sees
either the old list or the new one, never a VMA caught half-way through a change.

A VMA is physically contiguous: guest virtual address va is guest physical address
pa + (va - start). A mapping Linux would show as one (a heap grown by brk, a region grown
by mremap) may be several VMAs side by side, each with its own physical range: that is
how memory grows without ever moving a page another thread may be using.
"""

from __future__ import annotations

from kontain.linux.abi import MAP_FIXED, MAP_SHARED, MAP_TYPE, PROT_EXEC, PROT_WRITE
from kontain.machine import hostmem
from kontain.machine.layout import PAGE_SIZE
from kontain.machine.paging import (
    PTE_ACCESSED,
    PTE_DIRTY,
    PTE_NX,
    PTE_PRESENT,
    PTE_USER,
    PTE_WRITE,
)

_PAGE_MASK = PAGE_SIZE - 1


def page_up(n: int) -> int:
    return (n + _PAGE_MASK) & ~_PAGE_MASK


def pte_flags(prot: int) -> int:
    """Leaf PTE flags for a protection. x86 cannot express write-only or exec-only.

    Accessed and dirty are preset: KVM would otherwise set them itself (a fault and
    an emulated write per page) and prefetches only neighbours that have them."""
    flags = PTE_PRESENT | PTE_USER | PTE_ACCESSED | PTE_DIRTY
    if prot & PROT_WRITE:
        flags |= PTE_WRITE
    if not prot & PROT_EXEC:
        flags |= PTE_NX
    return flags


_FIELDS = ("start", "end", "prot", "flags", "pa", "name", "offset", "inode", "device",
           "foreign_pa", "held_pa")


class Vma:
    """One mapping. Never changed once made: changes make new Vma objects (replace())."""

    __slots__ = _FIELDS + ("kernel_copy",)

    def __init__(self, start: int, end: int, prot: int, flags: int, pa: int | None,
                 name: str = "", offset: int = 0, inode: int = 0, device: int = 0,
                 foreign_pa: int | None = None, held_pa: int | None = None) -> None:
        self.start = start
        self.end = end
        self.prot = prot
        self.flags = flags
        #: Guest physical address of start; None for a PROT_NONE reservation (no memory).
        self.pa = pa
        self.name = name
        self.offset = offset
        self.inode = inode
        self.device = device
        #: For host memory that is not guest RAM (the vDSO): its guest physical address.
        #: pa then holds its host address relative to guest RAM, for the host's use.
        self.foreign_pa = foreign_pa
        #: A file mapping's part past the end of its file: its physical range, kept
        #: (pa is None: not mapped, not to be touched) until the file covers it again.
        #: Touching it is SIGBUS, as on Linux.
        self.held_pa = held_pa
        #: km must not read or write these bytes itself, only through the kernel (which
        #: fails with EFAULT where a direct access would fault in km): host memory that
        #: is not RAM, and shared file pages, which any process may truncate away.
        self.kernel_copy = foreign_pa is not None or bool(inode) and flags & MAP_TYPE == MAP_SHARED

    def replace(self, **changes: object) -> Vma:
        fields = {name: getattr(self, name) for name in _FIELDS}
        fields.update(changes)
        return Vma(**fields)  # type: ignore[arg-type]

    @property
    def size(self) -> int:
        return self.end - self.start

    @property
    def shared(self) -> bool:
        return self.flags & MAP_TYPE == MAP_SHARED

    @property
    def file_backed(self) -> bool:
        return bool(self.inode)

    @property
    def foreign(self) -> bool:
        return self.foreign_pa is not None

    def host_prot(self) -> int:
        """Protection of the host pages: writable unless a shared file mapping is read-only."""
        if self.shared and self.file_backed and not self.prot & PROT_WRITE:
            return hostmem.PROT_READ
        return hostmem.PROT_READ | hostmem.PROT_WRITE

    def head(self, at: int) -> Vma:
        """The part [start, at)."""
        return self.replace(end=at)

    def tail(self, at: int) -> Vma:
        """The part [at, end), with its physical address and file offset moved along."""
        delta = at - self.start
        return self.replace(start=at, pa=None if self.pa is None else self.pa + delta,
                            offset=self.offset + delta if self.file_backed else 0,
                            foreign_pa=None if self.foreign_pa is None
                            else self.foreign_pa + delta,
                            held_pa=None if self.held_pa is None else self.held_pa + delta)

    def continues(self, other: Vma) -> bool:
        """Whether other starts where self ends and Linux would show the two as one
        mapping (same protection, kind and file, contiguous offsets)."""
        return (self.end == other.start and self.prot == other.prot
                and self.flags & ~MAP_FIXED == other.flags & ~MAP_FIXED
                and self.name == other.name and self.inode == other.inode
                and self.device == other.device and not self.foreign and not other.foreign
                and (not self.file_backed or self.offset + self.size == other.offset))

    def __repr__(self) -> str:
        return f"Vma({self.start:#x}-{self.end:#x} prot={self.prot} {self.name!r})"
