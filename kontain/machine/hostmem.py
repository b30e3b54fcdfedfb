"""Host virtual memory primitives that the mmap module lacks: MAP_FIXED replacement.

km changes what backs a guest-physical range by mapping over the host range with
MAP_FIXED. Besides changing the contents, this fires the kernel's MMU notifiers, which
make KVM drop every translation it cached for those pages (shadow page table entries
under PVM, EPT entries and guest TLB entries under VMX/SVM). See docs/ARCHITECTURE.md,
"Keeping KVM's cached translations honest".
"""

from __future__ import annotations

import ctypes
import os

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
