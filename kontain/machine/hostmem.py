"""Host virtual memory primitives that the mmap module lacks: MAP_FIXED replacement.

km changes what backs a guest-physical range by mapping over the host range with
MAP_FIXED. Besides changing the contents, this fires the kernel's MMU notifiers, which
make KVM drop every translation it cached for those pages (shadow page table entries
under PVM, EPT entries and guest TLB entries under VMX/SVM). See docs/ARCHITECTURE.md,
"Keeping KVM's cached translations honest".
"""

from __future__ import annotations

import ctypes
import fcntl
import os
import struct

TYPE_CHECKING = False  # no typing import at run time: km start-up is timed
if TYPE_CHECKING:
    from collections.abc import Callable

PROT_NONE, PROT_READ, PROT_WRITE, PROT_EXEC = 0, 1, 2, 4
MAP_SHARED, MAP_PRIVATE, MAP_FIXED, MAP_ANONYMOUS, MAP_NORESERVE = 1, 2, 0x10, 0x20, 0x4000
MADV_DONTNEED = 4
MAP_FAILED = ctypes.c_void_p(-1).value

_libc = ctypes.CDLL(None, use_errno=True)
_mmap = _libc.mmap
_mmap.restype = ctypes.c_void_p
_mmap.argtypes = [ctypes.c_void_p, ctypes.c_size_t, ctypes.c_int, ctypes.c_int, ctypes.c_int,
                  ctypes.c_long]
_mprotect = _libc.mprotect
_mprotect.argtypes = [ctypes.c_void_p, ctypes.c_size_t, ctypes.c_int]
_madvise = _libc.madvise
_madvise.argtypes = [ctypes.c_void_p, ctypes.c_size_t, ctypes.c_int]
_msync = _libc.msync
_msync.argtypes = [ctypes.c_void_p, ctypes.c_size_t, ctypes.c_int]
_munmap = _libc.munmap
_munmap.argtypes = [ctypes.c_void_p, ctypes.c_size_t]


def _check(result: int | None, failed: int | None = MAP_FAILED) -> int:
    if result == failed:
        err = ctypes.get_errno()
        raise OSError(err, os.strerror(err))
    return result or 0


def mmap_fixed(addr: int, length: int, prot: int, flags: int, fd: int = -1,
               offset: int = 0) -> None:
    """mmap(addr, length, prot, flags | MAP_FIXED, fd, offset)."""
    _check(_mmap(addr, length, prot, flags | MAP_FIXED, fd, offset))


def reset_anonymous(addr: int, length: int) -> None:
    """Replace a host range with fresh, unreserved zero pages (contents are dropped)."""
    mmap_fixed(addr, length, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS | MAP_NORESERVE)


def mprotect(addr: int, length: int, prot: int) -> None:
    _check(_mprotect(addr, length, prot), -1)


def madvise(addr: int, length: int, advice: int) -> None:
    _check(_madvise(addr, length, advice), -1)


def msync(addr: int, length: int, flags: int) -> None:
    _check(_msync(addr, length, flags), -1)


def invalidate(addr: int, length: int, prot: int = PROT_READ | PROT_WRITE) -> None:
    """Make KVM forget its cached translations of these pages, keeping their contents.

    Changing the host protection and back (to prot) sends the MMU notifier KVM listens
    to; KVM then drops the shadow/EPT entries and TLB entries derived from these pages,
    so a guest page-table change made by km (which KVM cannot see) takes effect. The
    detour takes away as little as it can (writable pages stay readable), so that only
    a vCPU writing these very pages meanwhile sees KVM_RUN fail, and retries.
    """
    detour = PROT_READ if prot & PROT_WRITE else PROT_NONE
    mprotect(addr, length, detour)
    mprotect(addr, length, prot)


# ---- transparent huge pages ----------------------------------------------------------

HUGE_PAGE = 2 << 20
MADV_HUGEPAGE, MADV_POPULATE_WRITE = 14, 23
#: PAGEMAP_SCAN (Linux 6.7): _IOWR('f', 16, struct pm_scan_arg), and its categories.
_PAGEMAP_SCAN = (3 << 30) | (96 << 16) | (ord("f") << 8) | 16
_PAGE_IS_PRESENT, _PAGE_IS_HUGE = 1 << 3, 1 << 6
#: (pid, fd) of /proc/self/pagemap: the file belongs to the process that opened it, so a
#: forked km opens its own.
_pagemap: list[int] = [0, -1]
_region = ctypes.create_string_buffer(24 * 2)  # two struct page_region


def _read_setting(path: str) -> bytes:
    try:
        with open(path, "rb") as f:
            return f.read().strip().lower()
    except OSError:
        return b""


# Read when km starts (its jail may hide /sys later).
#: Whether the host makes transparent huge pages where asked (madvise or always).
_THP_SETTING = _read_setting("/sys/kernel/mm/transparent_hugepage/enabled")
THP_ENABLED = bool(_THP_SETTING) and b"[never]" not in _THP_SETTING
#: Whether KVM maps executable guest memory with huge pages: not where its iTLB-multihit
#: mitigation (kvm.nx_huge_pages) is on, which splits them into 4 KiB pages.
EXECUTABLE_HUGE_PAGES = _read_setting("/sys/module/kvm/parameters/nx_huge_pages") in (
    b"n", b"never", b"off", b"0")


def _same(fd: int) -> int:
    return fd


def pagemap_fd(relocate: Callable[[int], int] = _same) -> int:
    """km's descriptor of its own /proc/self/pagemap (moved out of the guest's
    descriptor range by relocate), or -1."""
    pid = os.getpid()
    if _pagemap[0] != pid:
        if _pagemap[1] >= 0:
            os.close(_pagemap[1])
        _pagemap[0], _pagemap[1] = pid, -1
        try:
            _pagemap[1] = relocate(os.open("/proc/self/pagemap", os.O_RDONLY | os.O_CLOEXEC))
        except OSError:
            pass
    return _pagemap[1]


def huge_mapped(addr: int, relocate: Callable[[int], int] = _same) -> bool:
    """Whether the 2 MiB at addr (aligned) is one huge page mapped by one host page-
    directory entry: False when it cannot be told (no PAGEMAP_SCAN, no /proc)."""
    fd = pagemap_fd(relocate)
    if fd < 0:
        return False
    arg = bytearray(struct.pack("<12Q", 96, 0, addr, addr + HUGE_PAGE, 0,
                                ctypes.addressof(_region), 2, 0, 0, 0, 0,
                                _PAGE_IS_PRESENT | _PAGE_IS_HUGE))
    try:
        count = fcntl.ioctl(fd, _PAGEMAP_SCAN, arg)
    except OSError:
        return False
    start, end, categories = struct.unpack_from("<3Q", _region)
    return count == 1 and start == addr and end == addr + HUGE_PAGE \
        and categories == _PAGE_IS_PRESENT | _PAGE_IS_HUGE


def huge_pages_possible(relocate: Callable[[int], int] = _same) -> bool:
    """Whether km can have host huge pages and tell that it has them."""
    return THP_ENABLED and pagemap_fd(relocate) >= 0


def back_huge(addr: int, relocate: Callable[[int], int] = _same) -> bool:
    """Give the empty 2 MiB at addr (aligned) a transparent huge page now; True if the
    host maps it with one huge page (else it holds 4 KiB pages, or nothing)."""
    if not huge_pages_possible(relocate):
        return False
    try:
        madvise(addr, HUGE_PAGE, MADV_HUGEPAGE)
        madvise(addr, HUGE_PAGE, MADV_POPULATE_WRITE)
    except OSError:
        return False
    return huge_mapped(addr, relocate)
