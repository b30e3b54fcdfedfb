"""The payload's address space: how mmap, munmap, mprotect, brk, mremap, madvise and msync
change its mappings, the page tables behind them, and the physical memory they hold.

The memory model (docs/ARCHITECTURE.md, "Address space"):

- A page's guest physical address never changes while it is mapped. Memory that grows
  (brk, mremap in place) gets new physical ranges of its own beside the old ones; a
  mapping that moves (mremap) keeps its physical pages and only changes the virtual
  addresses that lead to them. So no thread ever loses a write, or waits on a futex
  word (keyed by km's host address of the page), because another thread grew memory.
- Changes happen under `lock`, on a private copy of the VMA list that is published
  whole when it is consistent (kontain.mm.access): readers take no lock.
- Whenever a page loses a permission or a virtual->physical translation goes away, the
  physical pages are freed (PhysicalMemory.free) or invalidated (_invalidate), which
  makes KVM drop what it cached from the old page-table entries.

- Physical memory is an address range km hands out (the host memory behind it is only
  used once touched), but the range is finite (--mem-size). So a large private
  anonymous mapping is demand-backed: it gets no physical range when made, only as the
  payload touches it (populate: a page fault, or km's own access for a system call),
  DEMAND_CHUNK at a time. Reservations (PROT_NONE, or large) then cost nothing, as on
  Linux: Go arenas, Java heaps, sanitizer shadows of terabytes. (Shared anonymous
  memory is backed when it becomes accessible: a forked child must find the same pages.)

- The pages of a file mapping past the end of its file have no memory behind them
  (the host would fault). They are held (Vma.held_pa): not in the page tables, never
  touched by km, so the payload's access is a page fault km turns into SIGBUS with the
  address, as Linux does, and km's own access is EFAULT. When the file grows they are
  given back (populate); when it shrinks under a mapping (truncate), the vCPU's failed
  entry makes km look for the pages that went (recheck_files) and hold them.

Linux semantics worth knowing here: an operation on a range must find every page of it
mapped (ENOMEM); the vDSO and its data pages are "special mappings" that cannot be split
(EINVAL) and [vvar] can never become writable (EACCES).
"""

from __future__ import annotations

import _thread
import bisect
import errno
import os

from kontain.linux import hostcall as host_call
from kontain.linux.abi import (
    MAP_ANONYMOUS,
    MAP_FIXED,
    MAP_FIXED_NOREPLACE,
    MAP_GROWSDOWN,
    MAP_HUGETLB,
    MAP_NORESERVE,
    MAP_PRIVATE,
    MAP_SHARED,
    MAP_SHARED_VALIDATE,
    MAP_STACK,
    MAP_TYPE,
    MREMAP_DONTUNMAP,
    MREMAP_FIXED,
    MREMAP_MAYMOVE,
    PROT_EXEC,
    PROT_GROWSDOWN,
    PROT_GROWSUP,
    PROT_MASK,
    PROT_NONE,
    PROT_READ,
    PROT_SEM,
    PROT_WRITE,
)
from kontain.linux.numbers import NUMBERS as NR
from kontain.machine import hostmem
from kontain.machine.layout import HUGE_PAGE_SIZE, MMAP_MIN_ADDR, MMAP_TOP, PAGE_SIZE, USER_END
from kontain.machine.memory import OutOfPhysicalMemory, PhysicalMemory
from kontain.machine.paging import PageTables
from kontain.mm.access import GuestFault, GuestMemory, SplitBuffer
from kontain.mm.vma import Vma, page_up, pte_flags

_PAGE_MASK = PAGE_SIZE - 1
#: Anonymous mappings at least this large get physical memory on first touch.
DEMAND_BACKED_MIN = 256 << 20
#: How much of a demand-backed mapping one first touch backs (aligned).
DEMAND_CHUNK = 4 << 20
_HUGE_MASK = HUGE_PAGE_SIZE - 1
#: Private writable mappings up to this size get host pages when made (_prefault).
PREFAULT_MAX = 2 << 20
#: At most this many 2 MiB leaves at once (each costs the host a mapping boundary).
MAX_HUGE_LEAVES = 8192
#: What /proc/PID/maps shows for a shared anonymous mapping: Linux backs it with a
#: deleted file of the internal shmem mount (device 00:01).
SHARED_ANONYMOUS_NAME = "/dev/zero (deleted)"
SHMEM_DEVICE = 1  # makedev(0, 1)

__all__ = [  # what callers import from here (the constants live in kontain.mm.vma)
    "AddressSpace", "GuestFault", "SplitBuffer", "Vma", "page_up", "pte_flags",
    "MAP_ANONYMOUS", "MAP_FIXED", "MAP_FIXED_NOREPLACE", "MAP_PRIVATE", "MAP_SHARED",
    "MAP_TYPE", "PROT_EXEC", "PROT_NONE", "PROT_READ", "PROT_WRITE",
    "MREMAP_MAYMOVE", "MREMAP_FIXED", "MREMAP_DONTUNMAP",
]


_host_mmap_min_addr: list[int] = []
_commit_policy: list[tuple[int, int]] = []
#: Below this size no commit policy of Linux's refuses a mapping on any real machine.
COMMIT_CHECK_MIN = 1 << 30


def _hold_from(vma: Vma, at: int) -> list[Vma]:
    """vma as [start, at) mapped and [at, end) held (past the end of its file)."""
    if at <= vma.start:
        return [vma.replace(pa=None, held_pa=vma.pa)]
    tail = vma.tail(at)
    return [vma.head(at), tail.replace(pa=None, held_pa=tail.pa)]


def overcommit_refuses(size: int) -> bool:
    """Whether Linux's commit policy (vm.overcommit_memory) refuses memory that counts
    against it (private writable, shared anonymous; not MAP_NORESERVE) of this size:
    in the default heuristic mode, one allocation larger than RAM + swap; in mode 2,
    one past the commit limit left. Demand-backed mappings make reservations free
    in km, so without this km would grant what Linux refuses."""
    if size < COMMIT_CHECK_MIN:
        return False
    if not _commit_policy:
        try:
            with open("/proc/sys/vm/overcommit_memory", "rb") as f:
                mode = int(f.read())
        except (OSError, ValueError):
            mode = 0
        meminfo = _meminfo()
        _commit_policy.append((mode, (meminfo.get(b"MemTotal", 0)
                                      + meminfo.get(b"SwapTotal", 0)) << 10))
    mode, ram_and_swap = _commit_policy[0]
    if mode == 1:
        return False
    if mode == 2:
        meminfo = _meminfo()
        left = meminfo.get(b"CommitLimit", 0) - meminfo.get(b"Committed_AS", 0)
        return size > left << 10
    return bool(ram_and_swap) and size > ram_and_swap


def _meminfo() -> dict[bytes, int]:
    """/proc/meminfo's fields in KiB (empty if it cannot be read)."""
    try:
        with open("/proc/meminfo", "rb") as f:
            lines = f.read().splitlines()
    except OSError:
        return {}
    fields = {}
    for line in lines:
        key, _, value = line.partition(b":")
        number = value.split()
        if number and number[0].isdigit():
            fields[key] = int(number[0])
    return fields


def host_mmap_min_addr() -> int:
    """The host's vm.mmap_min_addr: a fixed mapping below it is EPERM, as for a process
    without CAP_SYS_RAWIO (km's payloads never have it). Read once, when first needed."""
    if not _host_mmap_min_addr:
        try:
            with open("/proc/sys/vm/mmap_min_addr", "rb") as f:
                _host_mmap_min_addr.append(int(f.read()))
        except (OSError, ValueError):
            _host_mmap_min_addr.append(MMAP_MIN_ADDR)
    return _host_mmap_min_addr[0]


class _Edit:
    """A private copy of the VMA list, changed under the address-space lock and then
    published whole (AddressSpace._publish)."""

    def __init__(self, index: tuple[list[int], list[Vma]]) -> None:
        self.starts = list(index[0])
        self.vmas = list(index[1])

    def find(self, va: int) -> Vma | None:
        i = bisect.bisect_right(self.starts, va) - 1
        if i >= 0 and va < self.vmas[i].end:
            return self.vmas[i]
        return None

    def first_ending_after(self, va: int) -> int:
        i = bisect.bisect_right(self.starts, va) - 1
        if i < 0 or self.vmas[i].end <= va:
            i += 1
        return i

    def overlaps(self, start: int, end: int) -> bool:
        i = self.first_ending_after(start)
        return i < len(self.vmas) and self.vmas[i].start < end

    def covering(self, start: int, end: int) -> list[Vma]:
        """The VMAs over [start, end), which must have every page mapped (else ENOMEM)."""
        out = []
        va = start
        i = self.first_ending_after(start)
        while va < end:
            if i >= len(self.vmas) or self.vmas[i].start > va:
                raise OSError(errno.ENOMEM, "range not mapped")
            out.append(self.vmas[i])
            va = self.vmas[i].end
            i += 1
        return out

    def split(self, at: int) -> None:
        """Make `at` a VMA boundary if it falls inside one (special mappings: EINVAL)."""
        i = bisect.bisect_right(self.starts, at) - 1
        if i >= 0:
            vma = self.vmas[i]
            if vma.start < at < vma.end:
                if vma.foreign:
                    raise OSError(errno.EINVAL, "the vDSO cannot be split")
                self.vmas[i:i + 1] = [vma.head(at), vma.tail(at)]
                self.starts.insert(i + 1, at)

    def cut(self, start: int, end: int) -> tuple[int, int]:
        """Indices [i, j) of the VMAs inside [start, end), after splitting at both ends."""
        self.split(start)
        self.split(end)
        return bisect.bisect_left(self.starts, start), bisect.bisect_left(self.starts, end)

    def remove(self, start: int, end: int) -> list[Vma]:
        i, j = self.cut(start, end)
        removed = self.vmas[i:j]
        del self.vmas[i:j], self.starts[i:j]
        return removed

    def insert(self, vma: Vma) -> None:
        i = bisect.bisect_left(self.starts, vma.start)
        self.starts.insert(i, vma.start)
        self.vmas.insert(i, vma)

    def replace(self, old: Vma, new: Vma) -> None:
        i = bisect.bisect_left(self.starts, old.start)
        assert self.vmas[i] is old
        self.vmas[i] = new
        self.starts[i] = new.start

    def find_free(self, length: int, top: int = MMAP_TOP, align: int = PAGE_SIZE) -> int:
        """Highest gap of `length` bytes below top, at an `align` multiple (top-down,
        as Linux's mmap)."""
        end = top
        i = bisect.bisect_left(self.starts, end) - 1
        while i >= 0:
            vma = self.vmas[i]
            if vma.end <= (end - length) & -align:
                return (end - length) & -align
            end = min(end, vma.start)
            i -= 1
        if (end - length) & -align >= MMAP_MIN_ADDR:
            return (end - length) & -align
        raise OSError(errno.ENOMEM, "no free address range")


class AddressSpace(GuestMemory):
    """The guest's virtual memory: the VMA list, the page tables behind it, brk."""

    def __init__(self, phys: PhysicalMemory, page_tables: PageTables) -> None:
        super().__init__(phys.view, phys.host_base)
        self.phys = phys
        self.pt = page_tables
        self.brk_start = 0
        self.brk_end = 0
        #: Top of the top-down mmap area (the program's layout: kontain.monitor.aslr).
        self.mmap_top = MMAP_TOP
        #: Held by every change to the mappings (readers of guest memory do not take it).
        self.lock = _thread.RLock()
        #: Bumped around every invalidation: a vCPU whose KVM_RUN failed with EFAULT
        #: while host pages were being invalidated retries (kontain.monitor.thread).
        self.invalidation_epoch = 0
        #: A 2 MiB leaf went whose host huge page had been split: KVM may hold 4 KiB
        #: shadow entries of it that no longer match the tables ("2 MiB pages").
        self._shadow_suspect = False
        page_tables.on_huge_gone = self._huge_gone

    # ---- publishing and releasing ------------------------------------------------------

    def _edit(self) -> _Edit:
        return _Edit(self._index)

    def _publish(self, edit: _Edit) -> None:
        self._index = (edit.starts, edit.vmas)

    def _release(self, vmas: list[Vma]) -> None:
        """Drop the translations of VMAs that are gone and give their memory back
        (after the list without them is published: no reader can reach them)."""
        for vma in vmas:
            if vma.pa is None and vma.held_pa is None:
                continue
            self.pt.unmap(vma.start, vma.size)
            if not vma.foreign:
                self.phys.free(vma.pa if vma.pa is not None else vma.held_pa, vma.size)
        self._settle()

    def _invalidate(self, vma: Vma) -> None:
        """KVM must forget what it cached of this VMA's old translations (its pages
        stay). A vCPU touching them meanwhile fails with EFAULT and retries."""
        if vma.pa is None or vma.foreign:
            return
        self.invalidation_epoch += 1
        try:
            hostmem.invalidate(self.phys.host_address(vma.pa), vma.size, vma.host_prot())
        finally:
            self.invalidation_epoch += 1

    def _allocate_pa(self, size: int, va: int | None = None) -> int:
        """Physical memory for size bytes (to be mapped at va: see PhysicalMemory.allocate)."""
        try:
            return self.phys.allocate(size, va)
        except OutOfPhysicalMemory:
            raise OSError(errno.ENOMEM, "guest memory exhausted") from None

    def _map(self, vma: Vma) -> None:
        """Write the page-table entries of a VMA (none while it has no access)."""
        if vma.foreign and vma.prot:
            for va in range(vma.start, vma.end, PAGE_SIZE):  # a few pages, some unbacked
                if va in self.unbacked:
                    self.pt.unmap(va, PAGE_SIZE)
                else:
                    self.pt.map(va, vma.foreign_pa + va - vma.start, PAGE_SIZE,
                                pte_flags(vma.prot))
        elif vma.prot and vma.pa is not None:
            if self._huge_eligible(vma):
                self._map_leaving_slots(vma)
            else:
                self.pt.map(vma.start, vma.pa, vma.size, pte_flags(vma.prot))
        else:
            self.pt.unmap(vma.start, vma.size)
        self._settle()

    # ---- 2 MiB pages ------------------------------------------------------------------

    @staticmethod
    def _huge_eligible(vma: Vma) -> bool:
        """Whether the whole 2 MiB slots of vma may be 2 MiB leaves: private memory,
        anonymous or a file's (then not writable: its slots become copies of the file
        when first touched), not a thread stack, executable only where KVM maps
        executable memory with 2 MiB pages (no iTLB-multihit mitigation), whose
        virtual and physical addresses agree modulo 2 MiB."""
        return vma.size >= HUGE_PAGE_SIZE and vma.foreign_pa is None \
            and vma.flags & MAP_TYPE == MAP_PRIVATE and not vma.flags & MAP_STACK \
            and not (vma.inode and vma.prot & PROT_WRITE) \
            and (hostmem.EXECUTABLE_HUGE_PAGES or not vma.prot & PROT_EXEC) \
            and not (vma.pa - vma.start) & _HUGE_MASK

    def _map_leaving_slots(self, vma: Vma) -> None:
        """Map vma with 4 KiB leaves except its whole 2 MiB slots, which keep their
        2 MiB leaf (with the new flags) or stay empty until first touched
        (fill_slot): a 2 MiB leaf is worth it only once touched."""
        flags = pte_flags(vma.prot)
        first = (vma.start + _HUGE_MASK) & ~_HUGE_MASK
        last = vma.end & ~_HUGE_MASK
        pt = self.pt
        if vma.start < first:
            pt.map(vma.start, vma.pa, first - vma.start, flags)
        for slot in range(first, last, HUGE_PAGE_SIZE):
            pa = vma.pa + slot - vma.start
            huge = pt.huge.get(slot >> 21)
            if huge is not None and huge[0] == pa:
                pt.map_huge(slot, pa, flags)
            elif huge is not None or pt.tabled(slot):
                pt.map(slot, pa, HUGE_PAGE_SIZE, flags)
        if last < vma.end:
            pt.map(last, vma.pa + last - vma.start, vma.end - last, flags)

    def fill_slot(self, va: int) -> bool:
        """Map the page at va if it was left for its first touch (_map_leaving_slots):
        its whole 2 MiB slot with one 2 MiB leaf over a host huge page km makes now, or
        with 4 KiB leaves where the host gives none or the slot is no longer whole in
        one mapping (a change since cut the mapping it was left in). False if va is
        mapped already, or not in memory that may be."""
        with self.lock:
            vma = self.find(va)
            if vma is None or not vma.prot or vma.pa is None or vma.foreign_pa is not None \
                    or self.pt.translate(va) is not None:
                return False
            slot = va & ~_HUGE_MASK
            flags = pte_flags(vma.prot)
            start, end = max(vma.start, slot), min(vma.end, slot + HUGE_PAGE_SIZE)
            if end - start < HUGE_PAGE_SIZE or not self._huge_eligible(vma) \
                    or self.pt.tabled(slot):
                self.pt.map(start, vma.pa + start - vma.start, end - start, flags)
                return True
            pa = vma.pa + slot - vma.start
            host = self.phys.host_address(pa)
            room = len(self.pt.huge) < MAX_HUGE_LEAVES
            if vma.inode:
                huge = room and self._copy_file_slot(host)
            else:
                huge = room and hostmem.back_huge(host, self.relocate_fd)
            if huge:
                self.pt.map_huge(slot, pa, flags)
            else:
                self.pt.map(slot, pa, HUGE_PAGE_SIZE, flags)
            return True

    def _copy_file_slot(self, host: int) -> bool:
        """Replace 2 MiB of a private file mapping's host pages by a copy in a huge
        page (a first touch of program text or read-only data then faults once, not
        512 times; the copy costs 2 MiB of memory the page cache would have shared).
        False if the file's pages cannot all be read (it shrank: they stay as they
        were) or the host gives no huge page (the copy stays, in 4 KiB pages)."""
        if not hostmem.huge_pages_possible(self.relocate_fd):
            return False
        scratch = self._scratch_fd()
        size = HUGE_PAGE_SIZE
        try:
            if host_call.syscall(NR["pwrite64"], scratch, host, size, 0) != size:
                return False  # through the kernel: EFAULT, not SIGBUS in km
            hostmem.reset_anonymous(host, size)
            hostmem.madvise(host, size, hostmem.MADV_HUGEPAGE)
            if host_call.syscall(NR["pread64"], scratch, host, size, 0) != size:
                self.view[host - self.host_base:host - self.host_base + size] = \
                    os.pread(scratch, size, 0)
            return hostmem.huge_mapped(host, self.relocate_fd)
        finally:
            os.ftruncate(scratch, 0)

    def _huge_gone(self, pa: int) -> None:
        if not hostmem.huge_mapped(self.phys.host_address(pa), self.relocate_fd):
            self._shadow_suspect = True

    def _settle(self) -> None:
        """After a change of the tables: if a 2 MiB leaf went whose host page had been
        split, KVM may have shadowed the leaf with a 4 KiB table it would now reuse
        for whatever km put in its place, so it must forget all its shadow tables."""
        if self._shadow_suspect:
            self._shadow_suspect = False
            self.phys.flush_shadow()

    def prepare_for_fork(self) -> None:
        """Before a host fork: its copy-on-write splits the host's huge pages, under
        which KVM would shadow 2 MiB leaves with 4 KiB tables (in both processes), so
        every 2 MiB leaf becomes an equivalent table first."""
        with self.lock:
            self.pt.split_all()
            self._settle()

    def poke(self, va: int, data: bytes) -> None:
        """Write guest memory whatever its protection (km loading a program, as the
        kernel does); bytes outside any mapping are not written."""
        vma = self.find(va)
        if vma is not None and vma.pa is None and self.populate(va, len(data), False):
            vma = self.find(va)
        if vma is not None and vma.pa is not None and not vma.foreign \
                and va + len(data) <= vma.end:
            pa = vma.pa + va - vma.start
            self.view[pa:pa + len(data)] = data

    def populate(self, va: int, size: int, write: bool) -> bool:
        """Back the demand-backed mapping at va: DEMAND_CHUNK-aligned chunks covering
        [va, va+size) within it get physical memory (fresh zero pages) and page-table
        entries. False if there is no such mapping, it does not allow the access, or
        guest physical memory is exhausted (the access then fails as unmapped)."""
        with self.lock:
            edit = self._edit()
            vma = edit.find(va)
            if vma is None or vma.foreign or not vma.prot \
                    or write and not vma.prot & PROT_WRITE:
                return False
            if vma.pa is not None:
                return True  # another thread backed it meanwhile
            if vma.held_pa is not None:
                return self._release_held(edit, vma, va)
            if vma.file_backed:
                return False
            start = max(vma.start, va & ~(DEMAND_CHUNK - 1))
            end = min(vma.end, -(-(va + max(size, 1)) // DEMAND_CHUNK) * DEMAND_CHUNK)
            # Stop at the first part already backed (a populate of a long range).
            i = bisect.bisect_right(edit.starts, va) - 1
            while i + 1 < len(edit.vmas) and edit.vmas[i + 1].start < end \
                    and edit.vmas[i + 1].start == edit.vmas[i].end \
                    and edit.vmas[i + 1].pa is None and edit.vmas[i + 1].prot == vma.prot \
                    and edit.vmas[i + 1].flags == vma.flags:
                i += 1
            end = min(end, edit.vmas[i].end)
            try:
                pa = self._allocate_pa(end - start, start)
            except OSError:
                return False
            if vma.shared:
                self._back(pa, end - start, vma.prot, vma.flags, -1, 0, True)
            first, last = edit.cut(start, end)
            backed = []
            for piece in edit.vmas[first:last]:
                new = piece.replace(pa=pa + piece.start - start)
                edit.replace(piece, new)
                backed.append(new)
            self._publish(edit)
            for new in backed:
                self._map(new)
            self.fill_slot(va)
            return True

    # ---- file pages past the end of the file ----------------------------------------

    def _file_end(self, vma: Vma, pa: int) -> int:
        """The first address of vma (physical range at pa) the host has no memory
        behind, or vma.end: found by asking the kernel, page by page in a binary
        search (the pages of a file that are backed are a prefix)."""
        base = self.phys.host_address(pa)
        low, high = 0, vma.size // PAGE_SIZE - 1  # the answer is a page in [low, high]
        if self.host_page_backed(base + high * PAGE_SIZE):
            return vma.end
        while low < high:  # page high is not backed
            middle = (low + high) // 2
            if self.host_page_backed(base + middle * PAGE_SIZE):
                low = middle + 1
            else:
                high = middle
        return vma.start + low * PAGE_SIZE

    def _release_held(self, edit: _Edit, vma: Vma, va: int) -> bool:
        """The file under a held part may have grown: give back what it covers now.
        True if va is mapped again (the lock held)."""
        end = self._file_end(vma, vma.held_pa)
        if end <= va:
            return False
        i, j = edit.cut(vma.start, end)
        released = [piece.replace(pa=piece.held_pa, held_pa=None) for piece in edit.vmas[i:j]]
        for old, new in zip(edit.vmas[i:j], released, strict=True):
            edit.replace(old, new)
        self._publish(edit)
        for new in released:
            self._map(new)
        return True

    def recheck_files(self, device: int | None = None, inode: int | None = None) -> bool:
        """Hold the pages of file mappings (of one file, if named) whose file no longer
        covers them (it was truncated); True if there were any. For a vCPU that KVM
        could not enter because a page had no host memory, without saying which, and
        after the payload shrank a file itself."""
        with self.lock:
            edit = self._edit()
            found = []
            for vma in edit.vmas:
                if vma.file_backed and vma.pa is not None and not vma.foreign \
                        and (inode is None or vma.inode == inode and vma.device == device):
                    end = self._file_end(vma, vma.pa)
                    if end < vma.end:
                        found.append((vma, end))
            if not found:
                return False
            for vma, end in found:
                i, _ = edit.cut(end, vma.end)
                held = edit.vmas[i]
                edit.replace(held, held.replace(pa=None, held_pa=held.pa))
            self._publish(edit)
            for vma, end in found:
                self.pt.unmap(end, vma.end - end)
                self._invalidate(vma)
            return True

    # ---- mmap, munmap -----------------------------------------------------------------

    def map_foreign(self, va: int, size: int, guest_phys: int, host_address: int, prot: int,
                    name: str, unbacked: list[int] = ()) -> None:
        """Map guest physical memory that is not RAM (see kontain.monitor.vdso).

        Its pa is the host address relative to host_base, so pointer translation for
        the host works as for RAM; km's own reads go through _bytes_at. unbacked: the
        offsets of pages the host has no memory behind (left unmapped: SIGBUS)."""
        with self.lock:
            self.unbacked = self.unbacked | {va + offset for offset in unbacked}
            edit = self._edit()
            vma = Vma(va, va + size, prot, MAP_PRIVATE, host_address - self.host_base, name,
                      foreign_pa=guest_phys)
            edit.insert(vma)
            self._map(vma)
            self._publish(edit)

    def find_free(self, length: int, top: int | None = None) -> int:
        return self._edit().find_free(length, self.mmap_top if top is None else top)

    def mmap(self, addr: int, length: int, prot: int, flags: int, fd: int = -1,
             offset: int = 0, name: str = "") -> int:
        """Linux mmap(2) on the guest address space. Raises OSError(errno)."""
        if length <= 0 or offset & _PAGE_MASK:  # (unknown prot bits are ignored)
            raise OSError(errno.EINVAL, "mmap")
        kind = flags & MAP_TYPE
        if kind not in (MAP_SHARED, MAP_PRIVATE, MAP_SHARED_VALIDATE) \
                or kind == MAP_SHARED_VALIDATE and flags & MAP_ANONYMOUS:
            raise OSError(errno.EINVAL, "mmap")
        if kind == MAP_SHARED_VALIDATE:
            flags = flags & ~MAP_TYPE | MAP_SHARED
        if flags & MAP_HUGETLB:
            raise OSError(errno.EINVAL, "mmap: MAP_HUGETLB is not supported")
        prot &= PROT_MASK
        if length > USER_END:
            raise OSError(errno.ENOMEM, "mmap")
        length = page_up(length)
        anonymous = bool(flags & MAP_ANONYMOUS)
        accounted = (prot & PROT_WRITE if kind == MAP_PRIVATE else anonymous) \
            and not flags & MAP_NORESERVE
        if accounted and overcommit_refuses(length):
            raise OSError(errno.ENOMEM, "mmap: refused by the commit policy")
        inode = device = 0
        if anonymous and kind != MAP_PRIVATE:
            name, device = SHARED_ANONYMOUS_NAME, SHMEM_DEVICE
        if not anonymous:
            st = os.fstat(fd)  # EBADF for a bad fd
            if st.st_mode & 0o170000 not in (0o100000, 0o020000):  # regular or char dev
                raise OSError(errno.ENODEV, "mmap")
            inode, device = st.st_ino, st.st_dev
            if offset > (1 << 63) - length:
                raise OSError(errno.EOVERFLOW, "mmap")
        with self.lock:
            edit = self._edit()
            start = self._place(edit, addr, length, flags)
            replaced: list[Vma] = []
            if flags & (MAP_FIXED | MAP_FIXED_NOREPLACE):
                replaced = edit.remove(start, start + length)
            pa = None
            if not anonymous or prot and (length < DEMAND_BACKED_MIN or kind != MAP_PRIVATE):
                pa = self._allocate_pa(length, start)
                try:
                    self._back(pa, length, prot, flags, fd, offset, anonymous)
                except OSError:
                    self.phys.free(pa, length)
                    raise
            vma = Vma(start, start + length, prot, flags & ~MAP_FIXED, pa, name,
                      0 if anonymous else offset, inode, device)
            pieces = [vma]
            in_file = length
            if not anonymous:
                in_file = max(0, min(length, page_up(st.st_size) - offset))
                if in_file < length:
                    pieces = _hold_from(vma, start + in_file)
            for piece in pieces:
                edit.insert(piece)
            self._publish(edit)
            self._release(replaced)
            for piece in pieces:
                self._map(piece)
            if prot & PROT_WRITE and kind == MAP_PRIVATE and pa is not None \
                    and not flags & (MAP_GROWSDOWN | MAP_STACK):
                self._prefault(pa, length if anonymous else in_file)
            return start

    def _prefault(self, pa: int, size: int) -> None:
        """Give the host pages of a small private writable mapping now, writable: KVM
        maps up to 8 neighbouring guest pages in one shadow fault when their host pages
        are there (and their accessed bits preset), so first touches of data segments,
        heaps and arenas fault an eighth as often (python3 -c pass: -15% CPU for
        +1.8 MiB). Larger mappings are left to their first touch (and 2 MiB pages)."""
        if 0 < size <= PREFAULT_MAX:
            try:
                hostmem.madvise(self.phys.host_address(pa), size, hostmem.MADV_POPULATE_WRITE)
            except OSError:
                pass  # out of memory now: the touches will say so, as before

    def _place(self, edit: _Edit, addr: int, length: int, flags: int) -> int:
        if flags & (MAP_FIXED | MAP_FIXED_NOREPLACE):
            if addr & _PAGE_MASK or addr + length > USER_END:
                raise OSError(errno.EINVAL if addr & _PAGE_MASK else errno.ENOMEM, "mmap")
            if addr < host_mmap_min_addr():
                raise OSError(errno.EPERM, "mmap below vm.mmap_min_addr")
            if flags & MAP_FIXED_NOREPLACE and not flags & MAP_FIXED \
                    and edit.overlaps(addr, addr + length):
                raise OSError(errno.EEXIST, "mmap")
            return addr
        addr = page_up(addr) if addr else 0
        if addr and MMAP_MIN_ADDR <= addr and addr + length <= USER_END \
                and not edit.overlaps(addr, addr + length):
            return addr
        # Large private anonymous memory 2 MiB-aligned, as Linux aligns it for
        # transparent huge pages: so its slots can be 2 MiB leaves.
        align = HUGE_PAGE_SIZE if length >= HUGE_PAGE_SIZE and flags & MAP_ANONYMOUS \
            and flags & MAP_TYPE == MAP_PRIVATE and not flags & MAP_STACK else PAGE_SIZE
        try:
            return edit.find_free(length, self.mmap_top, align)
        except OSError:
            return edit.find_free(length, self.mmap_top)

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
        # Private file mapping: the pages past the end of the file fault on the host
        # as they would natively; the address space holds them (never touched by km).
        hostmem.mmap_fixed(host, length, hostmem.PROT_READ | hostmem.PROT_WRITE,
                           hostmem.MAP_PRIVATE, fd, offset)

    def munmap(self, addr: int, length: int) -> None:
        if addr & _PAGE_MASK or length <= 0 or length > USER_END or addr + length > USER_END:
            raise OSError(errno.EINVAL, "munmap")
        with self.lock:
            edit = self._edit()
            removed = edit.remove(addr, addr + page_up(length))
            self._publish(edit)
            self._release(removed)

    # ---- mprotect ---------------------------------------------------------------------

    def mprotect(self, addr: int, length: int, prot: int) -> None:
        grows = prot & (PROT_GROWSDOWN | PROT_GROWSUP)
        if addr & _PAGE_MASK or prot & ~PROT_MASK & ~(PROT_SEM | PROT_GROWSDOWN | PROT_GROWSUP) \
                or grows == PROT_GROWSDOWN | PROT_GROWSUP:
            raise OSError(errno.EINVAL, "mprotect")
        prot &= PROT_MASK
        end = addr + page_up(length)
        if end > USER_END or end < addr:
            raise OSError(errno.ENOMEM, "mprotect")
        if length == 0:
            return
        with self.lock:
            edit = self._edit()
            if grows:
                # The whole stack below: only a MAP_GROWSDOWN mapping grows (none grows up
                # on x86).
                first = edit.find(addr)
                if first is None:
                    raise OSError(errno.ENOMEM, "mprotect")
                if grows == PROT_GROWSUP or not first.flags & MAP_GROWSDOWN:
                    raise OSError(errno.EINVAL, "mprotect: the mapping does not grow")
                addr = first.start
            for vma in edit.covering(addr, end):
                if vma.foreign and prot & PROT_WRITE and vma.name != "[vdso]":
                    # Checked before any split, as Linux does: [vvar] has no VM_MAYWRITE.
                    raise OSError(errno.EACCES, "[vvar] cannot be made writable")
            gaining = sum(v.size for v in edit.covering(addr, end)
                          if prot & PROT_WRITE and not v.prot & PROT_WRITE and not v.shared
                          and not v.flags & MAP_NORESERVE)
            if overcommit_refuses(gaining):
                raise OSError(errno.ENOMEM, "mprotect: refused by the commit policy")
            i, j = edit.cut(addr, end)
            changed: list[tuple[Vma, Vma]] = []
            try:
                for vma in edit.vmas[i:j]:
                    changed.append((vma, self._with_prot(vma, prot)))
            except OSError:
                for old, new in changed:  # nothing changed after all: give memory back
                    if new.pa is not None and new.pa != old.pa:
                        self.phys.free(new.pa, new.size)
                raise
            for old, new in changed:
                edit.replace(old, new)
            self._publish(edit)
            for old, new in changed:
                self._map(new)
                if old.prot & ~new.prot or (old.foreign and not new.foreign):
                    self._invalidate(old)

    def _with_prot(self, vma: Vma, prot: int) -> Vma:
        """vma with a new protection, its memory made ready for it."""
        if vma.foreign:
            if prot & PROT_WRITE:
                return self._private_copy(vma).replace(prot=prot)
            return vma.replace(prot=prot)
        if vma.shared and vma.file_backed and prot & PROT_WRITE and not vma.prot & PROT_WRITE:
            # EACCES if the file was opened read-only, as on Linux.
            base = vma.pa if vma.pa is not None else vma.held_pa
            hostmem.mprotect(self.phys.host_address(base), vma.size,
                             hostmem.PROT_READ | hostmem.PROT_WRITE)
        if prot and vma.pa is None and not vma.file_backed \
                and (vma.size < DEMAND_BACKED_MIN or vma.shared):
            pa = self._allocate_pa(vma.size, vma.start)
            if vma.shared:
                self._back(pa, vma.size, prot, vma.flags, -1, 0, True)
            return vma.replace(prot=prot, pa=pa)
        return vma.replace(prot=prot)

    def _private_copy(self, vma: Vma) -> Vma:
        """A writable vDSO is the process's own copy of it (copy-on-write, as Linux)."""
        pa = self._allocate_pa(vma.size)
        self.view[pa:pa + vma.size] = self._bytes_at(vma.pa, vma.size, kernel=True)
        return vma.replace(pa=pa, foreign_pa=None)

    # ---- brk ------------------------------------------------------------------------

    def set_brk_start(self, addr: int) -> None:
        self.brk_start = self.brk_end = page_up(addr)

    def brk(self, new_end: int) -> int:
        """Linux brk(2): move the end of the heap; returns the (possibly unchanged) end."""
        with self.lock:
            if new_end < self.brk_start or new_end > USER_END:
                return self.brk_end
            old_top, new_top = page_up(self.brk_end), page_up(new_end)
            try:
                if new_top > old_top:
                    edit = self._edit()
                    if edit.overlaps(old_top, new_top):
                        return self.brk_end
                    self._grow(edit, old_top, new_top, "[heap]")
                elif new_top < old_top:
                    self.munmap(new_top, old_top - new_top)
            except OSError:
                return self.brk_end
            self.brk_end = new_end
            return new_end

    def _grow(self, edit: _Edit, end: int, new_end: int, name: str) -> None:
        """Extend the private anonymous memory ending at `end` up to new_end (free space).

        The VMA below keeps its physical pages: the new part continues its physical
        range when the pages after it are free, and is a VMA of its own otherwise."""
        below = edit.find(end - 1)
        if below is not None and (below.end != end or below.name != name):
            below = None  # (the heap starts as a mapping of its own above the program)
        size = new_end - end
        if (below is None or below.prot & PROT_WRITE and not below.flags & MAP_NORESERVE) \
                and overcommit_refuses(size):
            raise OSError(errno.ENOMEM, "refused by the commit policy")
        if below is not None and below.pa is not None \
                and not below.shared and not below.file_backed and not below.foreign \
                and self.phys.try_extend(below.pa, below.size, below.size + size):
            grown = below.replace(end=new_end)
            edit.replace(below, grown)
            self._publish(edit)
            self.pt.map(end, below.pa + below.size, size, pte_flags(grown.prot))
            if grown.prot & PROT_WRITE:
                self._prefault(below.pa + below.size, size)
            return
        if below is not None:
            prot, flags = below.prot, below.flags
        else:
            prot, flags = PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS
        eager = size < DEMAND_BACKED_MIN or below is not None and below.shared
        pa = self._allocate_pa(size) if prot and eager else None
        if pa is not None and below is not None and below.shared and not below.file_backed:
            host = self.phys.host_address(pa)
            hostmem.mmap_fixed(host, size, hostmem.PROT_READ | hostmem.PROT_WRITE,
                               hostmem.MAP_SHARED | hostmem.MAP_ANONYMOUS)
        vma = Vma(end, new_end, prot, flags, pa, name)
        edit.insert(vma)
        self._publish(edit)
        self._map(vma)
        if pa is not None and prot & PROT_WRITE and not vma.shared:
            self._prefault(pa, size)

    # ---- mremap -----------------------------------------------------------------------

    def mremap(self, old: int, old_size: int, new_size: int, flags: int,
               new_addr: int = 0) -> int:
        if old & _PAGE_MASK or flags & ~(MREMAP_MAYMOVE | MREMAP_FIXED | MREMAP_DONTUNMAP) \
                or flags & MREMAP_FIXED and not flags & MREMAP_MAYMOVE or new_size <= 0:
            raise OSError(errno.EINVAL, "mremap")
        if flags & MREMAP_DONTUNMAP and (not flags & MREMAP_MAYMOVE or old_size != new_size):
            raise OSError(errno.EINVAL, "mremap: MREMAP_DONTUNMAP moves, and only as it is")
        if new_size > USER_END:
            raise OSError(errno.EINVAL, "mremap: larger than the address space")
        if old_size > USER_END:
            raise OSError(errno.ENOMEM, "mremap")
        old_size, new_size = page_up(old_size), page_up(new_size)
        with self.lock:
            edit = self._edit()
            first = edit.find(old)
            if first is None:
                raise OSError(errno.EFAULT, "mremap")
            if old_size == 0:
                # Linux duplicates a shared mapping here; km does not (yet), and a private
                # one is EINVAL on Linux too.
                raise OSError(errno.EINVAL, "mremap of old size 0")
            if not flags & (MREMAP_FIXED | MREMAP_DONTUNMAP) and new_size <= old_size:
                # Shrinking in place only unmaps the tail, holes or not (as Linux).
                if new_size < old_size:
                    removed = edit.remove(old + new_size, old + old_size)
                    self._publish(edit)
                    self._release(removed)
                return old
            try:
                pieces = edit.covering(old, old + old_size)
            except OSError:
                raise OSError(errno.EFAULT, "mremap of a range with a hole") from None
            if not all(a.continues(b) for a, b in zip(pieces, pieces[1:], strict=False)):
                raise OSError(errno.EFAULT, "mremap across mappings")
            if flags & MREMAP_FIXED:
                if new_addr & _PAGE_MASK or new_addr + new_size > USER_END \
                        or new_addr < old + old_size and old < new_addr + new_size:
                    raise OSError(errno.EINVAL, "mremap")
                if new_addr < host_mmap_min_addr():
                    raise OSError(errno.EPERM, "mremap below vm.mmap_min_addr")
                if flags & MREMAP_DONTUNMAP:
                    return self._move_leaving_empty(edit, pieces, old, old_size, new_addr)
                return self._move(edit, old, old_size, new_size, new_addr)
            if flags & MREMAP_DONTUNMAP:
                edit.cut(old, old + old_size)
                free = edit.find_free(old_size, self.mmap_top)
                return self._move_leaving_empty(edit, pieces, old, old_size, free)
            last = pieces[-1]
            growable = not last.file_backed and not last.foreign
            if growable and old + new_size <= USER_END and not edit.overlaps(
                    old + old_size, old + new_size):
                edit.cut(old, old + old_size)
                self._grow(edit, old + old_size, old + new_size, last.name)
                return old
            if not flags & MREMAP_MAYMOVE:
                raise OSError(errno.ENOMEM, "mremap")
            edit.cut(old, old + old_size)
            free = edit.find_free(new_size, self.mmap_top)
            return self._move(edit, old, old_size, new_size, free)

    def _move(self, edit: _Edit, old: int, old_size: int, new_size: int, new_addr: int) -> int:
        """Move [old, old+old_size) to new_addr, resized to new_size. The pages keep their
        physical addresses: only the virtual addresses leading to them change."""
        size = min(old_size, new_size)
        dropped = edit.remove(old + size, old + old_size) if size < old_size else []
        moving = edit.remove(old, old + size)
        if moving and moving[0].foreign and size != sum(v.size for v in moving):
            raise OSError(errno.EINVAL, "the vDSO cannot be split")
        replaced = edit.remove(new_addr, new_addr + new_size)
        moved = [vma.replace(start=vma.start - old + new_addr, end=vma.end - old + new_addr)
                 for vma in moving]
        for vma in moved:
            edit.insert(vma)
        self._publish(edit)
        self._release(dropped + replaced)
        for vma in moving:
            self.pt.unmap(vma.start, vma.size)
        for vma in moved:
            self._map(vma)
        for vma in moving:
            self._invalidate(vma)
        if new_size > size:
            if moved[-1].file_backed or moved[-1].foreign:
                raise OSError(errno.ENOMEM, "mremap: cannot grow a file mapping")
            self._grow(self._edit(), new_addr + size, new_addr + new_size, moved[-1].name)
        return new_addr

    def _move_leaving_empty(self, edit: _Edit, pieces: list[Vma], old: int, size: int,
                            new_addr: int) -> int:
        """MREMAP_DONTUNMAP: the pages move to new_addr, and [old, old+size) stays mapped
        as it was, empty (zero pages on the next touch, as Linux gives a private
        anonymous mapping). Shared and file mappings would have to show the same
        memory at both addresses, which physically contiguous mappings cannot: EINVAL
        (as Linux before 5.13 said for them)."""
        if any(vma.file_backed or vma.shared or vma.foreign for vma in pieces):
            raise OSError(errno.EINVAL, "mremap: MREMAP_DONTUNMAP of a shared or file mapping")
        moved_to = self._move(edit, old, size, size, new_addr)
        edit = self._edit()
        fresh = []
        for vma in pieces:
            start, end = max(vma.start, old), min(vma.end, old + size)
            eager = vma.prot and end - start < DEMAND_BACKED_MIN
            pa = self._allocate_pa(end - start) if eager else None
            fresh.append(Vma(start, end, vma.prot, vma.flags, pa, vma.name))
        for vma in fresh:
            edit.insert(vma)
        self._publish(edit)
        for vma in fresh:
            self._map(vma)
        return moved_to

    # ---- madvise, msync ---------------------------------------------------------------

    def madvise(self, addr: int, length: int, advice: int) -> None:
        if addr & _PAGE_MASK or length < 0 or length > USER_END:
            raise OSError(errno.EINVAL, "madvise")
        end = addr + page_up(length)
        with self.lock:
            vmas = self._edit().covering(addr, end)
            # The advice may drop or split the host's huge pages (DONTNEED, PAGEOUT,
            # ...): the 2 MiB leaves over them become tables first.
            self.pt.split_range(addr, end)
            self._settle()
            for vma in vmas:
                if vma.pa is None or vma.foreign:
                    continue
                start, stop = max(addr, vma.start), min(end, vma.end)
                hostmem.madvise(self.phys.host_address(vma.pa + start - vma.start),
                                stop - start, advice)

    def msync(self, addr: int, length: int, flags: int) -> None:
        if addr & _PAGE_MASK or flags & ~7 or flags & 5 == 5 or length > USER_END:
            raise OSError(errno.EINVAL, "msync")
        end = addr + page_up(length)
        with self.lock:
            for vma in self._edit().covering(addr, end):
                if vma.pa is not None and vma.shared and vma.file_backed:
                    start, stop = max(addr, vma.start), min(end, vma.end)
                    hostmem.msync(self.phys.host_address(vma.pa + start - vma.start),
                                  stop - start, flags)
