"""The payload's address space: its mappings (VMAs), brk, and checked access to its memory.

Every mapping is physically contiguous: a VMA [start, end) with physical base pa holds
guest virtual address va at guest physical address pa + (va - start), which is offset
pa + (va - start) of PhysicalMemory.view. Translating a guest pointer is therefore one
bisect over the sorted VMA starts plus an addition; this is the hot path of every
syscall that touches guest memory.

A VMA without physical memory (pa is None) is a PROT_NONE anonymous reservation: it
holds addresses and costs nothing until mprotect makes it accessible.

The invariant that keeps KVM honest (see kontain.machine.paging): whenever a page loses
a permission or a virtual->physical translation goes away, the old physical pages are
either freed (PhysicalMemory.free) or invalidated (hostmem.invalidate).
"""

from __future__ import annotations

import _thread
import bisect
import ctypes
import errno
import os
import struct

from kontain.machine import hostmem
from kontain.machine.layout import MMAP_MIN_ADDR, MMAP_TOP, PAGE_SIZE, USER_END
from kontain.machine.memory import OutOfPhysicalMemory, PhysicalMemory
from kontain.machine.paging import PTE_NX, PTE_PRESENT, PTE_USER, PTE_WRITE, PageTables

PROT_NONE, PROT_READ, PROT_WRITE, PROT_EXEC = 0, 1, 2, 4
PROT_MASK = PROT_READ | PROT_WRITE | PROT_EXEC
MAP_SHARED, MAP_PRIVATE, MAP_SHARED_VALIDATE = 0x01, 0x02, 0x03
MAP_TYPE = 0x0F
MAP_FIXED, MAP_ANONYMOUS = 0x10, 0x20
MAP_GROWSDOWN, MAP_DENYWRITE, MAP_EXECUTABLE, MAP_LOCKED = 0x100, 0x800, 0x1000, 0x2000
MAP_NORESERVE, MAP_POPULATE, MAP_NONBLOCK, MAP_STACK = 0x4000, 0x8000, 0x10000, 0x20000
MAP_HUGETLB, MAP_SYNC, MAP_FIXED_NOREPLACE = 0x40000, 0x80000, 0x100000
MAP_32BIT = 0x40
MREMAP_MAYMOVE, MREMAP_FIXED, MREMAP_DONTUNMAP = 1, 2, 4

_PAGE_MASK = PAGE_SIZE - 1
_U64 = struct.Struct("<Q")


class GuestFault(Exception):
    """A guest pointer km was asked to use is not accessible; the syscall returns EFAULT."""

    def __init__(self, va: int) -> None:
        super().__init__(f"bad guest address {va:#x}")
        self.va = va


def page_up(n: int) -> int:
    return (n + _PAGE_MASK) & ~_PAGE_MASK


def pte_flags(prot: int) -> int:
    """Leaf PTE flags for a protection. x86 cannot express write-only or exec-only."""
    flags = PTE_PRESENT | PTE_USER
    if prot & PROT_WRITE:
        flags |= PTE_WRITE
    if not prot & PROT_EXEC:
        flags |= PTE_NX
    return flags


class Vma:
    """One mapping: [start, end) with one protection and one kind of backing."""

    __slots__ = ("start", "end", "prot", "flags", "pa", "name", "offset", "inode", "device",
                 "foreign_pa")

    def __init__(self, start: int, end: int, prot: int, flags: int, pa: int | None,
                 name: str = "", offset: int = 0, inode: int = 0, device: int = 0) -> None:
        self.start = start
        self.end = end
        self.prot = prot
        self.flags = flags
        self.pa = pa
        self.name = name
        self.offset = offset
        self.inode = inode
        self.device = device
        #: For a mapping of host memory that is not guest RAM (the vDSO): its guest
        #: physical address. km itself never reads such a mapping (pa stays None).
        self.foreign_pa: int | None = None

    @property
    def shared(self) -> bool:
        return self.flags & MAP_TYPE == MAP_SHARED

    @property
    def file_backed(self) -> bool:
        return bool(self.inode)

    def host_prot(self) -> int:
        """Protection of the host pages: writable unless a shared file mapping is read-only."""
        if self.shared and self.file_backed and not self.prot & PROT_WRITE:
            return hostmem.PROT_READ
        return hostmem.PROT_READ | hostmem.PROT_WRITE

    def split_at(self, at: int) -> Vma:
        """Cut this VMA at `at`; self keeps [start, at), the returned VMA is [at, end)."""
        delta = at - self.start
        tail = Vma(at, self.end, self.prot, self.flags,
                   None if self.pa is None else self.pa + delta, self.name,
                   self.offset + delta if self.file_backed else 0, self.inode, self.device)
        self.end = at
        return tail

    def __repr__(self) -> str:
        return f"Vma({self.start:#x}-{self.end:#x} prot={self.prot} {self.name!r})"


class AddressSpace:
    """The guest's virtual memory: the VMA list, the page tables behind it, brk."""

    def __init__(self, phys: PhysicalMemory, page_tables: PageTables) -> None:
        self.phys = phys
        self.pt = page_tables
        self.view = phys.view
        #: km's address of guest physical address 0: host address = host_base + pa.
        self.host_base = phys.host_base
        self._starts: list[int] = []
        self._vmas: list[Vma] = []
        self.brk_start = 0
        self.brk_end = 0
        self.lock = _thread.RLock()

    # ---- lookup -------------------------------------------------------------------

    def vmas(self) -> list[Vma]:
        return list(self._vmas)

    def find(self, va: int) -> Vma | None:
        """The VMA containing va, if any."""
        i = bisect.bisect_right(self._starts, va) - 1
        if i >= 0:
            vma = self._vmas[i]
            if va < vma.end:
                return vma
        return None

    # ---- checked access to guest memory (the syscall hot path) ---------------------

    def translate(self, va: int, size: int, write: bool = False) -> int:
        """Physical address (offset in self.view) of [va, va+size), which must be
        accessible (writable if write) and physically contiguous; else GuestFault."""
        i = bisect.bisect_right(self._starts, va) - 1
        if i >= 0:
            vma = self._vmas[i]
            if va + size <= vma.end and vma.pa is not None \
                    and (vma.prot & PROT_WRITE if write else vma.prot):
                return vma.pa + va - vma.start
        segments = self.segments(va, size, write)
        if len(segments) == 1:
            return segments[0][0]
        if not segments:
            return 0
        raise GuestFault(va)  # spans physically discontiguous mappings

    def segments(self, va: int, size: int, write: bool = False) -> list[tuple[int, int]]:
        """[(physical address, length)] covering [va, va+size), merged where contiguous."""
        if size <= 0:
            if size < 0:
                raise GuestFault(va)
            return []
        if va < 0 or va + size > USER_END:
            raise GuestFault(va)
        out: list[tuple[int, int]] = []
        end = va + size
        i = bisect.bisect_right(self._starts, va) - 1
        while va < end:
            if i < 0 or i >= len(self._vmas):
                raise GuestFault(va)
            vma = self._vmas[i]
            if not vma.start <= va < vma.end or vma.pa is None \
                    or not (vma.prot & PROT_WRITE if write else vma.prot):
                raise GuestFault(va)
            n = min(end, vma.end) - va
            pa = vma.pa + va - vma.start
            if out and out[-1][0] + out[-1][1] == pa:
                out[-1] = (out[-1][0], out[-1][1] + n)
            else:
                out.append((pa, n))
            va += n
            i += 1
        return out

    def accessible_prefix(self, va: int, size: int, write: bool = False) -> list[tuple[int, int]]:
        """The segments of the longest accessible prefix of [va, va+size) (maybe none)."""
        out: list[tuple[int, int]] = []
        end = va + size
        while va < end:
            vma = self.find(va)
            if vma is None or vma.pa is None or not (vma.prot & PROT_WRITE if write else vma.prot):
                break
            n = min(end, vma.end) - va
            pa = vma.pa + va - vma.start
            if out and out[-1][0] + out[-1][1] == pa:
                out[-1] = (out[-1][0], out[-1][1] + n)
            else:
                out.append((pa, n))
            va += n
        return out

    def buffers(self, va: int, size: int, write: bool = False) -> list[memoryview]:
        """Zero-copy views of guest memory for host I/O (os.readv/os.writev)."""
        view = self.view
        return [view[pa:pa + n] for pa, n in self.segments(va, size, write)]

    def read(self, va: int, size: int) -> bytes:
        i = bisect.bisect_right(self._starts, va) - 1
        if i >= 0:
            vma = self._vmas[i]
            if va + size <= vma.end and vma.pa is not None and vma.prot and size >= 0:
                pa = vma.pa + va - vma.start
                if vma.foreign_pa is None:
                    return self.view[pa:pa + size].tobytes()
        return b"".join(self._bytes_at(pa, n) for pa, n in self.segments(va, size))

    def _bytes_at(self, pa: int, size: int) -> bytes:
        """Bytes at a translated address: guest RAM, or host memory mapped in (vDSO)."""
        if 0 <= pa and pa + size <= len(self.view):
            return self.view[pa:pa + size].tobytes()
        return ctypes.string_at(self.host_base + pa, size)

    def write(self, va: int, data: bytes | bytearray | memoryview) -> None:
        size = len(data)
        i = bisect.bisect_right(self._starts, va) - 1
        if i >= 0:
            vma = self._vmas[i]
            if va + size <= vma.end and vma.pa is not None and vma.prot & PROT_WRITE:
                pa = vma.pa + va - vma.start
                self.view[pa:pa + size] = data
                return
        done = 0
        for buf in self.buffers(va, size, True):
            buf[:] = data[done:done + len(buf)]
            done += len(buf)

    def unpack(self, layout: struct.Struct, va: int) -> tuple:
        return layout.unpack(self.read(va, layout.size))

    def pack(self, layout: struct.Struct, va: int, *values: object) -> None:
        self.write(va, layout.pack(*values))

    def read_u64(self, va: int) -> int:
        return _U64.unpack(self.read(va, 8))[0]

    def write_u64(self, va: int, value: int) -> None:
        self.write(va, _U64.pack(value & 0xFFFF_FFFF_FFFF_FFFF))

    def cstring(self, va: int, limit: int = 4096) -> bytes:
        """A NUL-terminated string; ENAMETOOLONG-style callers check the length."""
        out = b""
        while len(out) < limit:
            vma = self.find(va)
            if vma is None or vma.pa is None or not vma.prot:
                raise GuestFault(va)
            n = min(vma.end - va, PAGE_SIZE - (va & _PAGE_MASK), limit - len(out))
            chunk = self._bytes_at(vma.pa + va - vma.start, n)
            nul = chunk.find(b"\0")
            if nul >= 0:
                return out + chunk[:nul]
            out += chunk
            va += n
        return out

    # ---- mapping changes ------------------------------------------------------------

    def _index_of_first_ending_after(self, va: int) -> int:
        i = bisect.bisect_right(self._starts, va) - 1
        if i < 0 or self._vmas[i].end <= va:
            i += 1
        return i

    def _overlaps(self, start: int, end: int) -> bool:
        i = self._index_of_first_ending_after(start)
        return i < len(self._vmas) and self._vmas[i].start < end

    def _split(self, at: int) -> None:
        """Make `at` a VMA boundary if it falls inside one."""
        i = bisect.bisect_right(self._starts, at) - 1
        if i >= 0:
            vma = self._vmas[i]
            if vma.start < at < vma.end:
                tail = vma.split_at(at)
                self._vmas.insert(i + 1, tail)
                self._starts.insert(i + 1, at)

    def _range(self, start: int, end: int) -> tuple[int, int]:
        """Indices [i, j) of the VMAs inside [start, end), after splitting at both ends."""
        self._split(start)
        self._split(end)
        i = bisect.bisect_left(self._starts, start)
        j = bisect.bisect_left(self._starts, end)
        return i, j

    def _insert(self, vma: Vma) -> None:
        i = bisect.bisect_left(self._starts, vma.start)
        self._starts.insert(i, vma.start)
        self._vmas.insert(i, vma)

    def _release(self, vma: Vma) -> None:
        """Drop a VMA's translations and give its physical memory back."""
        if vma.foreign_pa is not None:
            self.pt.unmap(vma.start, vma.end - vma.start)
            return
        if vma.pa is not None:
            self.pt.unmap(vma.start, vma.end - vma.start)
            self.phys.free(vma.pa, vma.end - vma.start)

    def _unmap_range(self, start: int, end: int) -> None:
        i, j = self._range(start, end)
        for vma in self._vmas[i:j]:
            self._release(vma)
        del self._vmas[i:j], self._starts[i:j]

    def map_foreign(self, va: int, size: int, guest_phys: int, host_address: int, prot: int,
                    name: str) -> None:
        """Map guest physical memory that is not RAM (see kontain.monitor.vdso).

        Its pa is the host address relative to host_base, so pointer translation for
        the host works as for RAM; km's own reads go through _bytes_at."""
        with self.lock:
            vma = Vma(va, va + size, prot, MAP_PRIVATE, host_address - self.host_base, name)
            vma.foreign_pa = guest_phys
            self._insert(vma)
            self.pt.map(va, guest_phys, size, pte_flags(prot))

    def find_free(self, length: int, top: int = MMAP_TOP) -> int:
        """Highest gap of `length` bytes below top (top-down, as Linux's mmap)."""
        end = top
        i = bisect.bisect_left(self._starts, end) - 1
        while i >= 0:
            vma = self._vmas[i]
            if vma.end <= end - length:
                return end - length
            end = min(end, vma.start)
            i -= 1
        if end - length >= MMAP_MIN_ADDR:
            return end - length
        raise OSError(errno.ENOMEM, "no free address range")

    def _allocate_pa(self, size: int) -> int:
        try:
            return self.phys.allocate(size)
        except OutOfPhysicalMemory:
            raise OSError(errno.ENOMEM, "guest memory exhausted") from None

    def mmap(self, addr: int, length: int, prot: int, flags: int, fd: int = -1,
             offset: int = 0, name: str = "") -> int:
        """Linux mmap(2) on the guest address space. Raises OSError(errno)."""
        if length <= 0 or prot & ~PROT_MASK & ~0x01000000 or offset & _PAGE_MASK:
            raise OSError(errno.EINVAL, "mmap")
        kind = flags & MAP_TYPE
        if kind not in (MAP_SHARED, MAP_PRIVATE, MAP_SHARED_VALIDATE):
            raise OSError(errno.EINVAL, "mmap")
        if kind == MAP_SHARED_VALIDATE:
            flags = flags & ~MAP_TYPE | MAP_SHARED
        if flags & MAP_HUGETLB:
            raise OSError(errno.EINVAL, "mmap: MAP_HUGETLB is not supported")
        prot &= PROT_MASK
        length = page_up(length)
        if length > USER_END:
            raise OSError(errno.ENOMEM, "mmap")
        anonymous = bool(flags & MAP_ANONYMOUS)
        inode = device = 0
        if not anonymous:
            st = os.fstat(fd)  # EBADF for a bad fd
            if st.st_mode & 0o170000 not in (0o100000, 0o020000):  # regular or char dev
                raise OSError(errno.ENODEV, "mmap")
            inode, device = st.st_ino, st.st_dev
            if offset > (1 << 63) - length:
                raise OSError(errno.EOVERFLOW, "mmap")
        with self.lock:
            start = self._place(addr, length, flags)
            pa = None
            if prot or not anonymous or kind != MAP_PRIVATE:
                pa = self._allocate_pa(length)
                try:
                    self._back(pa, length, prot, flags, fd, offset, anonymous)
                except OSError:
                    self.phys.free(pa, length)
                    raise
            if flags & (MAP_FIXED | MAP_FIXED_NOREPLACE):
                self._unmap_range(start, start + length)
            vma = Vma(start, start + length, prot, flags, pa, name,
                      0 if anonymous else offset, inode, device)
            self._insert(vma)
            if pa is not None and prot:
                self.pt.map(start, pa, length, pte_flags(prot))
            return start

    def _place(self, addr: int, length: int, flags: int) -> int:
        if flags & (MAP_FIXED | MAP_FIXED_NOREPLACE):
            if addr & _PAGE_MASK or addr + length > USER_END or addr < MMAP_MIN_ADDR:
                raise OSError(errno.EINVAL if addr & _PAGE_MASK else errno.ENOMEM, "mmap")
            if flags & MAP_FIXED_NOREPLACE and not flags & MAP_FIXED \
                    and self._overlaps(addr, addr + length):
                raise OSError(errno.EEXIST, "mmap")
            return addr
        addr = page_up(addr) if addr else 0
        if addr and MMAP_MIN_ADDR <= addr and addr + length <= USER_END \
                and not self._overlaps(addr, addr + length):
            return addr
        return self.find_free(length)

    def _back(self, pa: int, length: int, prot: int, flags: int, fd: int, offset: int,
              anonymous: bool) -> None:
        """Give the physical range [pa, pa+length) its host backing."""
        host = self.phys.host_address(pa)
        shared = flags & MAP_TYPE == MAP_SHARED
        if anonymous:
            if shared:
                hostmem.mmap_fixed(host, length, hostmem.PROT_READ | hostmem.PROT_WRITE,
                                   hostmem.MAP_SHARED | hostmem.MAP_ANONYMOUS)
            return  # private anonymous: the fresh pages of the reservation
        if shared:
            host_prot = hostmem.PROT_READ | (hostmem.PROT_WRITE if prot & PROT_WRITE else 0)
            hostmem.mmap_fixed(host, length, host_prot, hostmem.MAP_SHARED, fd, offset)
            return
        # Private file mapping: map the pages that exist in the file; the rest of the
        # range stays zero (Linux would raise SIGBUS there; km must never fault on it).
        size = os.fstat(fd).st_size
        in_file = min(length, max(0, page_up(size - offset))) if size > offset else 0
        if in_file:
            hostmem.mmap_fixed(host, in_file, hostmem.PROT_READ | hostmem.PROT_WRITE,
                               hostmem.MAP_PRIVATE, fd, offset)

    def munmap(self, addr: int, length: int) -> None:
        if addr & _PAGE_MASK or length <= 0 or addr + length > USER_END:
            raise OSError(errno.EINVAL, "munmap")
        with self.lock:
            self._unmap_range(addr, addr + page_up(length))

    def mprotect(self, addr: int, length: int, prot: int) -> None:
        if addr & _PAGE_MASK or prot & ~PROT_MASK & ~0x03000000:
            raise OSError(errno.EINVAL, "mprotect")
        prot &= PROT_MASK
        end = addr + page_up(length)
        if end > USER_END or end < addr:
            raise OSError(errno.ENOMEM, "mprotect")
        if length == 0:
            return
        with self.lock:
            # Every page of the range must be mapped (else ENOMEM, nothing changed).
            va = addr
            i = self._index_of_first_ending_after(addr)
            while va < end:
                if i >= len(self._vmas) or self._vmas[i].start > va:
                    raise OSError(errno.ENOMEM, "mprotect")
                va = self._vmas[i].end
                i += 1
            for vma in self._vmas[slice(*self._range(addr, end))]:
                if vma.shared and vma.file_backed and prot & PROT_WRITE \
                        and not vma.prot & PROT_WRITE:
                    host = self.phys.host_address(vma.pa)
                    # EACCES if the file was opened read-only, as on Linux.
                    hostmem.mprotect(host, vma.end - vma.start,
                                     hostmem.PROT_READ | hostmem.PROT_WRITE)
                self._set_prot(vma, prot)

    def _set_prot(self, vma: Vma, prot: int) -> None:
        size = vma.end - vma.start
        if vma.foreign_pa is not None:
            if prot & PROT_WRITE:
                raise OSError(errno.EACCES, "the vDSO is read-only")
            vma.prot = prot
            self.pt.map(vma.start, vma.foreign_pa, size, pte_flags(prot)) if prot else \
                self.pt.unmap(vma.start, size)
            return
        old = vma.prot
        if prot and vma.pa is None:
            vma.pa = self._allocate_pa(size)
        vma.prot = prot
        if prot:
            self.pt.map(vma.start, vma.pa, size, pte_flags(prot))
        else:
            self.pt.unmap(vma.start, size)
        if old & ~prot and vma.pa is not None:
            hostmem.invalidate(self.phys.host_address(vma.pa), size, vma.host_prot())

    # ---- brk ------------------------------------------------------------------------

    def set_brk_start(self, addr: int) -> None:
        self.brk_start = self.brk_end = page_up(addr)

    def brk(self, new_end: int) -> int:
        """Linux brk(2): move the end of the heap; returns the (possibly unchanged) end."""
        with self.lock:
            if new_end < self.brk_start:
                return self.brk_end
            old_top, new_top = page_up(self.brk_end), page_up(new_end)
            try:
                if new_top > old_top:
                    if self._overlaps(old_top, new_top):
                        return self.brk_end
                    self._grow_heap(old_top, new_top)
                elif new_top < old_top:
                    self._unmap_range(new_top, old_top)
            except OSError:
                return self.brk_end
            self.brk_end = new_end
            return new_end

    def _grow_heap(self, old_top: int, new_top: int) -> None:
        heap = self.find(old_top - 1) if old_top > self.brk_start else None
        if heap is not None and heap.name == "[heap]" and heap.end == old_top:
            self._grow_in_place(heap, new_top)
        else:
            self.mmap(old_top, new_top - old_top, PROT_READ | PROT_WRITE,
                      MAP_PRIVATE | MAP_ANONYMOUS | MAP_FIXED, name="[heap]")

    def _grow_in_place(self, vma: Vma, new_end: int) -> None:
        """Extend an anonymous private VMA upwards; the caller checked the space is free."""
        old_size, new_size = vma.end - vma.start, new_end - vma.start
        if vma.pa is not None and not self.phys.try_extend(vma.pa, old_size, new_size):
            new_pa = self._allocate_pa(new_size)
            # Move the pages (no copy); the old host range is left unmapped, so put
            # fresh reservation pages back before the allocator hands it out again.
            hostmem.move(self.phys.host_address(vma.pa), old_size,
                         self.phys.host_address(new_pa))
            self.phys.free(vma.pa, old_size)
            vma.pa = new_pa
            self.pt.map(vma.start, new_pa, old_size, pte_flags(vma.prot))
        vma.end = new_end
        if vma.pa is not None and vma.prot:
            self.pt.map(vma.start + old_size, vma.pa + old_size, new_size - old_size,
                        pte_flags(vma.prot))

    # ---- mremap, madvise, msync -------------------------------------------------------

    def mremap(self, old: int, old_size: int, new_size: int, flags: int,
               new_addr: int = 0) -> int:
        if old & _PAGE_MASK or flags & ~(MREMAP_MAYMOVE | MREMAP_FIXED | MREMAP_DONTUNMAP) \
                or flags & MREMAP_FIXED and not flags & MREMAP_MAYMOVE or new_size <= 0:
            raise OSError(errno.EINVAL, "mremap")
        if flags & MREMAP_DONTUNMAP:
            raise OSError(errno.EINVAL, "mremap: MREMAP_DONTUNMAP is not supported")
        old_size, new_size = page_up(old_size), page_up(new_size)
        with self.lock:
            vma = self.find(old)
            if vma is None:
                raise OSError(errno.EFAULT, "mremap")
            if old_size == 0:
                # Linux duplicates a shared mapping here; km does not (yet), and a private
                # one is EINVAL on Linux too.
                raise OSError(errno.EINVAL, "mremap of old size 0")
            if old + old_size > vma.end:
                raise OSError(errno.EFAULT, "mremap")
            if flags & MREMAP_FIXED:
                if new_addr & _PAGE_MASK or new_addr < old + old_size and old < new_addr + new_size:
                    raise OSError(errno.EINVAL, "mremap")
                self._unmap_range(new_addr, new_addr + new_size)
                return self._move(old, old_size, new_size, new_addr)
            if new_size <= old_size:
                if new_size < old_size:
                    self._unmap_range(old + new_size, old + old_size)
                return old
            self._split(old)
            self._split(old + old_size)
            vma = self.find(old)
            assert vma is not None
            if not self._overlaps(vma.end, old + new_size) and old + new_size <= USER_END \
                    and (vma.pa is None or not vma.file_backed and not vma.shared):
                self._grow_in_place(vma, old + new_size)
                return old
            if not flags & MREMAP_MAYMOVE:
                raise OSError(errno.ENOMEM, "mremap")
            return self._move(old, old_size, new_size, self.find_free(new_size))

    def _move(self, old: int, old_size: int, new_size: int, new_addr: int) -> int:
        """Move the mapping at [old, old+old_size) to new_addr, resized to new_size."""
        i, j = self._range(old, old + old_size)
        if j - i != 1:
            raise OSError(errno.EFAULT, "mremap across mappings")
        vma = self._vmas[i]
        del self._vmas[i], self._starts[i]
        if vma.pa is not None:
            self.pt.unmap(vma.start, old_size)
        size = min(old_size, new_size)
        if new_size < old_size and vma.pa is not None:
            self.phys.free(vma.pa + new_size, old_size - new_size)
        if vma.pa is not None:
            # The pages stay at the same physical address; drop the old translations.
            hostmem.invalidate(self.phys.host_address(vma.pa), size, vma.host_prot())
        vma.start, vma.end = new_addr, new_addr + size
        self._insert(vma)
        if vma.pa is not None and vma.prot:
            self.pt.map(new_addr, vma.pa, size, pte_flags(vma.prot))
        if new_size > size:
            if vma.file_backed or vma.shared:
                # Extend with a fresh mapping of the same kind (its own physical range).
                raise OSError(errno.ENOMEM, "mremap: cannot grow a file or shared mapping")
            self._grow_in_place(vma, new_addr + new_size)
        return new_addr

    def madvise(self, addr: int, length: int, advice: int) -> None:
        if addr & _PAGE_MASK or length < 0:
            raise OSError(errno.EINVAL, "madvise")
        end = addr + page_up(length)
        with self.lock:
            va = addr
            i = self._index_of_first_ending_after(addr)
            touched = []
            while va < end:
                if i >= len(self._vmas) or self._vmas[i].start > va:
                    raise OSError(errno.ENOMEM, "madvise")
                vma = self._vmas[i]
                touched.append((vma, va, min(end, vma.end)))
                va = vma.end
                i += 1
            for vma, start, stop in touched:
                if vma.pa is None:
                    continue
                host = self.phys.host_address(vma.pa + start - vma.start)
                hostmem.madvise(host, stop - start, advice)

    def msync(self, addr: int, length: int, flags: int) -> None:
        if addr & _PAGE_MASK or flags & ~7 or flags & 5 == 5:
            raise OSError(errno.EINVAL, "msync")
        end = addr + page_up(length)
        with self.lock:
            va = addr
            i = self._index_of_first_ending_after(addr)
            while va < end:
                if i >= len(self._vmas) or self._vmas[i].start > va:
                    raise OSError(errno.ENOMEM, "msync")
                vma = self._vmas[i]
                stop = min(end, vma.end)
                if vma.pa is not None and vma.shared and vma.file_backed:
                    hostmem.msync(self.phys.host_address(vma.pa + va - vma.start), stop - va,
                                  flags)
                va = stop
                i += 1

    def virtual_address_of(self, pa: int) -> int | None:
        """The guest virtual address mapping guest physical address pa, if any."""
        for vma in self._vmas:
            if vma.pa is not None and vma.foreign_pa is None \
                    and vma.pa <= pa < vma.pa + (vma.end - vma.start):
                return vma.start + pa - vma.pa
        return None

    def access_allowed(self, va: int, write: bool, execute: bool) -> bool:
        """Whether the current mappings permit this access (for spurious-fault checks)."""
        vma = self.find(va)
        if vma is None or vma.pa is None:
            return False
        need = PROT_WRITE if write else PROT_EXEC if execute else PROT_MASK
        return bool(vma.prot & need)
