"""Checked access to guest memory: the hot path of every system call that takes a pointer.

A guest pointer becomes an offset in PhysicalMemory.view (its guest physical address)
by one bisect over the sorted VMA starts plus an addition. Any thread may do this at
any time without a lock: the VMA list is published as one immutable (starts, vmas)
pair, replaced whole by the address space when a mapping changes, so a reader works on
a consistent snapshot. (A reader racing with munmap of the same range may still move
bytes into pages being given back; that is the payload's own race, as on Linux, and
never reaches outside guest memory.)

Every failure is GuestFault, which a system call returns as EFAULT. A mapping whose
physical memory is given on first touch (kontain.mm.space, "demand-backed") is touched
here too: an access km makes for the payload backs it first (populate), as the kernel's
copy_to_user faults pages in.
"""

from __future__ import annotations

import bisect
import errno
import os
import struct

from kontain.linux import hostcall as host
from kontain.linux.hostcall import SyscallError
from kontain.linux.numbers import NUMBERS as NR
from kontain.machine.layout import PAGE_SIZE, USER_END
from kontain.mm.vma import PROT_WRITE, Vma

TYPE_CHECKING = False  # no typing import at run time: km start-up is timed
if TYPE_CHECKING:
    from collections.abc import Callable

_PAGE_MASK = PAGE_SIZE - 1
_U64 = struct.Struct("<Q")


def _same_fd(fd: int) -> int:
    return fd


class GuestFault(SyscallError):
    """A guest pointer km was asked to use is not accessible: the call fails with EFAULT."""

    def __init__(self, va: int) -> None:
        super().__init__(errno.EFAULT, f"bad guest address {va:#x}")
        self.va = va


class SplitBuffer(GuestFault):
    """The range is accessible but not physically contiguous (it spans two VMAs), so no
    single host pointer covers it; kontain.syscalls.args bounces it through km."""


class GuestMemory:
    """Reading, writing and translating guest virtual addresses."""

    def __init__(self, view: memoryview, host_base: int) -> None:
        #: Byte view of guest physical memory (index = guest physical address).
        self.view = view
        #: km's address of guest physical address 0: host address = host_base + pa.
        self.host_base = host_base
        #: The published mappings: sorted starts and the VMAs, never mutated in place.
        self._index: tuple[list[int], list[Vma]] = ([], [])
        #: Guest pages of host memory mapped in (the vDSO's data) that the host has no
        #: memory behind: touching one is SIGBUS, as natively; they are never mapped.
        self.unbacked: frozenset[int] = frozenset()
        self._scratch = -1  # a memfd km copies host memory that may fault through
        #: Moves a descriptor km makes for itself out of the guest's range (the
        #: process's FdSpace.move_high; the identity where there is no guest).
        self.relocate_fd: Callable[[int], int] = _same_fd

    # ---- lookup -----------------------------------------------------------------------

    def vmas(self) -> list[Vma]:
        return list(self._index[1])

    def find(self, va: int) -> Vma | None:
        """The VMA containing va, if any."""
        starts, vmas = self._index
        i = bisect.bisect_right(starts, va) - 1
        if i >= 0:
            vma = vmas[i]
            if va < vma.end:
                return vma
        return None

    # ---- translation ------------------------------------------------------------------

    def translate(self, va: int, size: int, write: bool = False) -> int:
        """Physical address of [va, va+size), which must be accessible (writable if
        write) and physically contiguous; GuestFault (SplitBuffer) otherwise."""
        starts, vmas = self._index
        i = bisect.bisect_right(starts, va) - 1
        if i >= 0:
            vma = vmas[i]
            if va + size <= vma.end and vma.pa is not None and size >= 0 \
                    and (vma.prot & PROT_WRITE if write else vma.prot):
                return vma.pa + va - vma.start
        segments = self.segments(va, size, write)
        if len(segments) == 1:
            return segments[0][0]
        if not segments:
            return 0
        raise SplitBuffer(va)

    def populate(self, va: int, size: int, write: bool) -> bool:
        """Give physical memory to the demand-backed mapping at va, for an access of
        size bytes; True if va is backed now (by this call or another thread's)."""
        return False

    def fill_slot(self, va: int) -> bool:
        """Map the untouched 2 MiB slot around va (kontain.mm.space); True if it was one."""
        return False

    def segments(self, va: int, size: int, write: bool = False) -> list[tuple[int, int]]:
        """[(physical address, length)] covering [va, va+size), merged where contiguous."""
        if size <= 0:
            if size < 0:
                raise GuestFault(va)
            return []
        if va < 0 or va + size > USER_END:
            raise GuestFault(va)
        starts, vmas = self._index
        out: list[tuple[int, int]] = []
        end = va + size
        i = bisect.bisect_right(starts, va) - 1
        while va < end:
            if i < 0 or i >= len(vmas):
                raise GuestFault(va)
            vma = vmas[i]
            if vma.pa is None and vma.start <= va < vma.end \
                    and self.populate(va, end - va, write):
                starts, vmas = self._index  # published again: look va up anew
                i = bisect.bisect_right(starts, va) - 1
                continue
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
        starts, vmas = self._index
        out: list[tuple[int, int]] = []
        end = min(va + size, USER_END)
        i = bisect.bisect_right(starts, va) - 1
        while va < end and 0 <= i < len(vmas):
            vma = vmas[i]
            if vma.pa is None and vma.start <= va < vma.end \
                    and self.populate(va, end - va, write):
                starts, vmas = self._index
                i = bisect.bisect_right(starts, va) - 1
                continue
            if not vma.start <= va < vma.end or vma.pa is None \
                    or not (vma.prot & PROT_WRITE if write else vma.prot):
                break
            n = min(end, vma.end) - va
            pa = vma.pa + va - vma.start
            if out and out[-1][0] + out[-1][1] == pa:
                out[-1] = (out[-1][0], out[-1][1] + n)
            else:
                out.append((pa, n))
            va += n
            i += 1
        return out

    def buffers(self, va: int, size: int, write: bool = False) -> list[memoryview]:
        """Zero-copy views of guest memory for host I/O (os.readv/os.writev)."""
        view = self.view
        return [view[pa:pa + n] for pa, n in self.segments(va, size, write)]

    # ---- copying ----------------------------------------------------------------------

    def read(self, va: int, size: int) -> bytes:
        starts, vmas = self._index
        i = bisect.bisect_right(starts, va) - 1
        if i >= 0:
            vma = vmas[i]
            if va + size <= vma.end and vma.pa is not None and vma.prot and size >= 0 \
                    and not vma.kernel_copy:
                pa = vma.pa + va - vma.start
                return self.view[pa:pa + size].tobytes()
        return b"".join(self._bytes_at(pa, n, kernel) for pa, n, kernel
                        in self._pieces(va, size, False))

    def _pieces(self, va: int, size: int, write: bool) -> list[tuple[int, int, bool]]:
        """[(physical address, length, whether only the kernel may copy it)] covering
        [va, va+size), one per VMA (the slow path of read and write)."""
        end = va + size
        if size < 0 or va < 0 or end > USER_END:
            raise GuestFault(va)
        out = []
        while va < end:
            vma = self.find(va)
            if vma is not None and vma.pa is None and self.populate(va, end - va, write):
                continue
            if vma is None or vma.pa is None \
                    or not (vma.prot & PROT_WRITE if write else vma.prot):
                raise GuestFault(va)
            n = min(end, vma.end) - va
            out.append((vma.pa + va - vma.start, n, vma.kernel_copy))
            va += n
        return out

    def _bytes_at(self, pa: int, size: int, kernel: bool = False) -> bytes:
        """Bytes at a translated address: guest RAM, or memory km must not touch itself
        (host memory mapped in, the vDSO's; shared file pages): those are copied by the
        kernel (a write to a memfd), which fails with EFAULT where km would fault."""
        if not kernel and 0 <= pa and pa + size <= len(self.view):
            return self.view[pa:pa + size].tobytes()
        scratch = self._scratch_fd()
        copied = host.syscall(NR["pwrite64"], scratch, self.host_base + pa, size, 0)
        if copied != size:
            raise GuestFault(pa)
        return os.pread(scratch, size, 0)

    def _copy_in(self, pa: int, data: bytes | bytearray | memoryview) -> None:
        """Write bytes km must not touch itself, through the kernel (see _bytes_at)."""
        scratch = self._scratch_fd()
        os.pwrite(scratch, data, 0)
        if host.syscall(NR["pread64"], scratch, self.host_base + pa, len(data), 0) \
                != len(data):
            raise GuestFault(pa)

    def _scratch_fd(self) -> int:
        if self._scratch < 0:
            self._scratch = self.relocate_fd(os.memfd_create("kontain-copy", os.MFD_CLOEXEC))
        return self._scratch

    def close(self) -> None:
        """Let go of km's own descriptors (the memory goes with the VM)."""
        if self._scratch >= 0:
            os.close(self._scratch)
            self._scratch = -1

    def host_page_backed(self, host_address: int) -> bool:
        """Whether the host has memory behind the page at host_address (a page of a
        file mapping past the end of its file has none), asked of the kernel."""
        return host.syscall(NR["pwrite64"], self._scratch_fd(), host_address & ~_PAGE_MASK,
                            1, 0) == 1

    def write(self, va: int, data: bytes | bytearray | memoryview) -> None:
        size = len(data)
        starts, vmas = self._index
        i = bisect.bisect_right(starts, va) - 1
        if i >= 0:
            vma = vmas[i]
            if va + size <= vma.end and vma.pa is not None and vma.prot & PROT_WRITE \
                    and not vma.kernel_copy:
                pa = vma.pa + va - vma.start
                self.view[pa:pa + size] = data
                return
        done = 0
        for pa, n, kernel in self._pieces(va, size, True):
            if kernel:
                self._copy_in(pa, data[done:done + n])
            else:
                self.view[pa:pa + n] = data[done:done + n]
            done += n

    def unpack(self, layout: struct.Struct, va: int) -> tuple:
        return layout.unpack(self.read(va, layout.size))

    def pack(self, layout: struct.Struct, va: int, *values: object) -> None:
        self.write(va, layout.pack(*values))

    def read_u64(self, va: int) -> int:
        return _U64.unpack(self.read(va, 8))[0]

    def write_u64(self, va: int, value: int) -> None:
        self.write(va, _U64.pack(value & 0xFFFF_FFFF_FFFF_FFFF))

    def cstring(self, va: int, limit: int = 4096) -> bytes:
        """A NUL-terminated string of at most limit bytes (callers check the length)."""
        out = b""
        while len(out) < limit:
            vma = self.find(va)
            if vma is not None and vma.pa is None and self.populate(va, 1, False):
                vma = self.find(va)
            if vma is None or vma.pa is None or not vma.prot:
                raise GuestFault(va)
            n = min(vma.end - va, PAGE_SIZE - (va & _PAGE_MASK), limit - len(out))
            chunk = self._bytes_at(vma.pa + va - vma.start, n, vma.kernel_copy)
            nul = chunk.find(b"\0")
            if nul >= 0:
                return out + chunk[:nul]
            out += chunk
            va += n
        return out

    def host_address(self, va: int) -> int | None:
        """km's address of the byte at va (for host calls keyed by address: futexes)."""
        vma = self.find(va)
        if vma is not None and vma.pa is None and self.populate(va, 1, False):
            vma = self.find(va)
        if vma is None or vma.pa is None:
            return None
        return self.host_base + vma.pa + va - vma.start

    def virtual_address_of(self, pa: int) -> int | None:
        """The guest virtual address mapping guest physical address pa, if any."""
        for vma in self._index[1]:
            base = vma.pa if vma.foreign_pa is None else vma.foreign_pa
            if base is not None and base <= pa < base + vma.size:
                return vma.start + pa - base
        return None

    def access_allowed(self, va: int, write: bool, execute: bool) -> bool:
        """Whether the current mappings permit this access (for spurious-fault checks)."""
        vma = self.find(va)
        if vma is None or (vma.pa is None and vma.foreign_pa is None) \
                or va & ~_PAGE_MASK in self.unbacked:
            return False
        need = PROT_WRITE if write else 4 if execute else 7
        return bool(vma.prot & need)
