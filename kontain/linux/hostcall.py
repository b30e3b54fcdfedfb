"""Calling the host kernel on the guest's behalf.

Most system calls are carried out by making the same call on the host with the guest's
pointers translated to km's addresses of the same bytes: the host kernel then reads and
writes guest memory directly (no copies) and does the rest exactly as Linux does,
because it is Linux. Structures are the same on both sides (same architecture, same ABI).
ctypes releases the GIL around the call, so a blocking call stalls only its own vCPU.
"""

from __future__ import annotations

import ctypes

_libc = ctypes.CDLL(None, use_errno=True)


def _prototype(arguments: int) -> ctypes._CFuncPtr:
    """libc's syscall() taking nr and this many longs. Each declared argument costs its
    conversion on every call (about 0.14 us), so hot paths use the shortest prototype
    the call allows. syscall() is variadic and always loads six argument registers: with
    a shorter prototype the ones not passed hold whatever was there, so a short
    prototype is only for calls whose kernel side never reads those arguments."""
    return ctypes.CFUNCTYPE(ctypes.c_long, *[ctypes.c_long] * (arguments + 1),
                            use_errno=True)(("syscall", _libc))


_syscall = _prototype(6)
_syscall3 = _prototype(3)
_syscall4 = _prototype(4)
_get_errno = ctypes.get_errno


class SyscallError(OSError):
    """A system call failed with errno (a host call's, or one km decided on for the
    guest's: the only way a handler reports an error, restart codes included)."""

    def __init__(self, code: int, detail: str = "") -> None:
        super().__init__(code, detail or f"errno {code}")


def syscall(nr: int, a0: int = 0, a1: int = 0, a2: int = 0, a3: int = 0, a4: int = 0,
            a5: int = 0) -> int:
    """The host system call nr; returns its result, or -errno on failure."""
    result = _syscall(nr, a0, a1, a2, a3, a4, a5)
    if result == -1:
        return -_get_errno()
    return result


def call(nr: int, a0: int = 0, a1: int = 0, a2: int = 0, a3: int = 0, a4: int = 0,
         a5: int = 0) -> int:
    """The host system call nr; returns its result, raises SyscallError on failure."""
    result = _syscall(nr, a0, a1, a2, a3, a4, a5)
    if result == -1:
        raise SyscallError(_get_errno())
    return result


def call3(nr: int, a0: int, a1: int, a2: int) -> int:
    """call() of a call whose kernel side reads only its first three arguments (pass 0
    for those of the three it does not take): the others are not set (see _prototype)."""
    result = _syscall3(nr, a0, a1, a2)
    if result == -1:
        raise SyscallError(_get_errno())
    return result


def syscall3(nr: int, a0: int, a1: int, a2: int) -> int:
    """syscall() of a call whose kernel side reads only its first three arguments
    (read, write, readv, writev, lseek...): the others are not set (see _prototype)."""
    result = _syscall3(nr, a0, a1, a2)
    if result == -1:
        return -_get_errno()
    return result


def syscall4(nr: int, a0: int, a1: int, a2: int, a3: int) -> int:
    """syscall() of a call whose kernel side reads only its first four arguments
    (pread64, pwrite64; futex's FUTEX_WAIT and FUTEX_WAKE)."""
    result = _syscall4(nr, a0, a1, a2, a3)
    if result == -1:
        return -_get_errno()
    return result


def check(result: int) -> int:
    """A result of syscall(), errors raised as SyscallError (for callers that look at
    the -errno first)."""
    if result < 0:
        raise SyscallError(-result)
    return result


def address_of(buffer: bytes | bytearray | ctypes.Array) -> int:
    """Host address of a km-side buffer, to pass as a pointer argument.

    The caller must keep the buffer referenced until the call returns: pass a name,
    never a temporary such as `path + b"x"`. (CPython keeps bytes NUL-terminated, so a
    bytes path needs no explicit terminator.)"""
    if isinstance(buffer, bytes):
        return ctypes.cast(ctypes.c_char_p(buffer), ctypes.c_void_p).value or 0
    return ctypes.addressof((ctypes.c_char * len(buffer)).from_buffer(buffer))
