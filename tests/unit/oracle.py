"""What every tests/unit/test_syscalls_<family>.py compares with: the same system call
made natively by this process (the oracle), a handler called as the run loop calls it,
a page layout made twice (guest and host), and the hostile-register sweep each family
runs over all its handlers."""

from __future__ import annotations

import ctypes
import os

from kontain.linux.abi import (
    MAP_ANONYMOUS,
    MAP_FIXED,
    MAP_FIXED_NOREPLACE,
    MAP_PRIVATE,
    PROT_READ,
    PROT_WRITE,
)
from kontain.linux.numbers import NUMBERS as NR
from kontain.machine.layout import kernel_va
from kontain.monitor.exits import (
    ExecImage,
    ExitProcess,
    KillProcess,
    RestartSyscall,
    ThreadExit,
    ThreadVanish,
)

MASK64 = (1 << 64) - 1
PAGE = 4096
RW, RO = PROT_READ | PROT_WRITE, PROT_READ
HOLE = None
LAYOUT = 0x2000_0000  # the guest side of a Twin (Guest's own area lies below)
BAD = 0x1000_DEAD_0000  # a pointer to nothing: no guest here maps it, and this process
#                         reserves it (PROT_NONE, below): Linux faults on it too

_libc = ctypes.CDLL(None, use_errno=True)
_libc.syscall.restype = ctypes.c_long
_libc.syscall.argtypes = [ctypes.c_long] * 7
_libc.mmap.restype = ctypes.c_void_p
_libc.mmap.argtypes = [ctypes.c_void_p, ctypes.c_size_t, ctypes.c_int, ctypes.c_int,
                       ctypes.c_int, ctypes.c_long]
_libc.mprotect.argtypes = [ctypes.c_void_p, ctypes.c_size_t, ctypes.c_int]
_libc.munmap.argtypes = [ctypes.c_void_p, ctypes.c_size_t]
_libc.mmap(BAD, PAGE, 0, MAP_PRIVATE | MAP_ANONYMOUS | MAP_FIXED_NOREPLACE, -1, 0)
_keep: list[object] = []  # host buffers the oracle's pointers lead to, kept for a test


def native(name: str, *args: int) -> int:
    """The oracle: the same system call made by this process; its result, or -errno."""
    regs = [(a & MASK64) - ((a & MASK64) >> 63 << 64) for a in args]  # as signed longs
    ctypes.set_errno(0)
    result = _libc.syscall(NR[name], *regs, *[0] * (6 - len(args)))
    return -ctypes.get_errno() if result == -1 else result


def host(data: bytes | int) -> int:
    """Address of a host buffer for the oracle: a copy of data, or data zero bytes."""
    buffer = ctypes.create_string_buffer(data)
    _keep.append(buffer)
    return ctypes.addressof(buffer)


def release_host_buffers() -> None:
    """After a test: the oracle's buffers may go."""
    _keep.clear()


def call(thread, name: str, *args: int) -> int:
    """Run one handler as the run loop does: its result, or -errno. Any exception other
    than OSError escapes and fails the test (a km bug)."""
    handler = thread.proc.syscalls.table[NR[name]]
    try:
        return handler(thread, *args, *[0] * (6 - len(args)))
    except OSError as e:
        return -e.errno
    finally:
        thread._copy_back()  # buffers bounced through km go back, as after KVM_RUN


class Twin:
    """One page layout twice: in guest memory (for km) and in this process (for the
    oracle). Pages are RW, RO or HOLE; a hole is unmapped in the guest and PROT_NONE
    on the host (a real hole there could be filled by the next mmap meanwhile)."""

    def __init__(self, thread, prots: list[int | None], data: bytes = b"") -> None:
        size = len(prots) * PAGE
        self.host = _libc.mmap(None, size, RW, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0)
        self.size = size
        self.guest = LAYOUT
        mm = thread.mm
        mm.mmap(LAYOUT, size, RW, MAP_PRIVATE | MAP_ANONYMOUS | MAP_FIXED)
        mm.write(LAYOUT, data)
        ctypes.memmove(self.host, data, len(data))
        for i, prot in enumerate(prots):
            if prot == RW:
                continue
            if prot is HOLE:
                mm.munmap(LAYOUT + i * PAGE, PAGE)
            else:
                mm.mprotect(LAYOUT + i * PAGE, PAGE, prot)
            _libc.mprotect(self.host + i * PAGE, PAGE, prot or 0)

    def put(self, offset: int, data: bytes, thread) -> None:
        """The same bytes at the same offset on both sides (the page must be writable
        in the guest; the host side is written through ctypes)."""
        thread.mm.write(self.guest + offset, data)
        ctypes.memmove(self.host + offset, data, len(data))

    def close(self) -> None:
        _libc.munmap(self.host, self.size)


CONTROL_FLOW = (ExitProcess, KillProcess, ThreadExit, ExecImage, ThreadVanish, RestartSyscall)
CANARY = b"km's own memory".ljust(PAGE, b"\xa5")


def hostile_registers_leave_km_untouched(thread, name: str) -> None:
    """Every register a pointer to nothing, a pointer to km's own memory, or one into the
    guest kernel's half (as descriptors, counts and flags they are nonsense too): the
    handler returns, raises OSError or ends the thread or process (control flow), and
    km's memory is untouched. Descriptors a call created anyway are closed."""
    canary = ctypes.create_string_buffer(CANARY, PAGE)
    handler = thread.proc.syscalls.table[NR[name]]
    before = set(os.listdir("/proc/self/fd"))
    try:
        for value in (BAD, ctypes.addressof(canary), kernel_va(0x7000)):
            try:
                handler(thread, *[value] * 6)
            except (OSError, *CONTROL_FLOW):
                pass
            finally:
                thread._copy_back()
    finally:
        for fd in set(os.listdir("/proc/self/fd")) - before:
            try:
                os.close(int(fd))
            except OSError:
                pass  # (the descriptor listdir itself used)
    assert canary.raw == CANARY
