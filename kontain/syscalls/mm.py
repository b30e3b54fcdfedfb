"""Memory: brk, mmap, munmap, mprotect, mremap, madvise, msync, mincore, mlock."""

from __future__ import annotations

import errno

from kontain.linux import hostcall as host
from kontain.linux.hostcall import SyscallError
from kontain.linux.numbers import NUMBERS as NR
from kontain.machine.layout import USER_END
from kontain.mm import space as m
from kontain.syscalls import args

TYPE_CHECKING = False  # no typing import at run time: km start-up is timed
if TYPE_CHECKING:
    from kontain.monitor.thread import GuestThread

#: madvise advice km forwards to the host pages backing the range; anything else is EINVAL.
FORWARDED_ADVICE = frozenset({0, 1, 2, 3, 4, 8, 10, 11, 12, 13, 14, 15, 16, 17, 18, 19, 20,
                              21, 22, 23, 24, 25})


def sys_brk(t: GuestThread, addr: int, *_: int) -> int:
    return t.mm.brk(addr)


def sys_mmap(t: GuestThread, addr: int, length: int, prot: int, flags: int, fd: int,
             offset: int) -> int:
    flags &= 0xFFFFFFFF
    number = -1
    if not flags & m.MAP_ANONYMOUS:
        number = args.fd(t, fd)
    start = t.mm.mmap(addr, length, prot & 0xFFFFFFFF, flags, number, offset,
                      name=t.proc.path_of_fd(number) if number >= 0 else "")
    t.proc.trace.log("mem", f"mmap({addr:#x}, {length:#x}, {prot}, {flags:#x}, {args.s32(fd)},"
                            f" {offset:#x}) = {start:#x}")
    return start


def sys_munmap(t: GuestThread, addr: int, length: int, *_: int) -> int:
    t.mm.munmap(addr, length)
    return 0


def sys_mprotect(t: GuestThread, addr: int, length: int, prot: int, *_: int) -> int:
    t.mm.mprotect(addr, length, prot & 0xFFFFFFFF)
    return 0


def sys_mremap(t: GuestThread, old: int, old_size: int, new_size: int, flags: int,
               new_addr: int, *_: int) -> int:
    return t.mm.mremap(old, old_size, new_size, flags & 0xFFFFFFFF, new_addr)


def sys_madvise(t: GuestThread, addr: int, length: int, advice: int, *_: int) -> int:
    advice = args.s32(advice)
    if advice not in FORWARDED_ADVICE:
        raise SyscallError(errno.EINVAL)
    t.mm.madvise(addr, length, advice)
    return 0


def sys_msync(t: GuestThread, addr: int, length: int, flags: int, *_: int) -> int:
    t.mm.msync(addr, length, flags & 0xFFFFFFFF)
    return 0


MINCORE_CHUNK = 4096  # pages per round, as the kernel's do_mincore loop


def sys_mincore(t: GuestThread, addr: int, length: int, vec: int, *_: int) -> int:
    """Residency of each page, asked of the host pages behind the guest's. Like the
    kernel, works through the range a chunk at a time, writing each chunk's answer
    before looking further (a hole is ENOMEM, a bad vec EFAULT)."""
    if addr & 0xFFF:
        raise SyscallError(errno.EINVAL)
    if length > USER_END or addr + length > USER_END:
        raise SyscallError(errno.ENOMEM)
    end = m.page_up(addr + length)
    va = addr
    while va < end:
        stop = min(end, va + MINCORE_CHUNK * 4096)
        answer = bytearray((stop - va) >> 12)
        filled = va
        while filled < stop:
            vma = t.mm.find(filled)
            if vma is None:
                raise SyscallError(errno.ENOMEM)
            upto = min(stop, vma.end)
            if vma.pa is not None and not vma.foreign:
                chunk = bytearray((upto - filled) >> 12)
                host.call(NR["mincore"], t.mm.host_base + vma.pa + filled - vma.start,
                          upto - filled, host.address_of(chunk))
                first = (filled - va) >> 12
                answer[first:first + len(chunk)] = bytes(b & 1 for b in chunk)
            filled = upto
        t.mm.write(vec + ((va - addr) >> 12), bytes(answer))
        va = stop
    return 0


def _locked_range(name: str):
    number = NR[name]

    def handler(t: GuestThread, addr: int, length: int, a2: int, *_: int) -> int:
        """Mapping by mapping, as Linux walks the range: a hole is ENOMEM (what came
        before it stays done); inaccessible mappings have nothing to lock."""
        va = addr & ~0xFFF
        end = m.page_up(addr + length)
        if end > USER_END or end < va:
            raise SyscallError(errno.ENOMEM)
        while va < end:
            vma = t.mm.find(va)
            if vma is None:
                raise SyscallError(errno.ENOMEM)
            stop = min(end, vma.end)
            if vma.prot and not vma.foreign:
                for pa, size in t.mm.segments(va, stop - va):
                    host.call(number, t.mm.host_base + pa, size, a2)
            va = stop
        return 0
    handler.__name__ = f"sys_{name}"
    return handler


HANDLERS = {
    "brk": sys_brk, "mmap": sys_mmap, "munmap": sys_munmap, "mprotect": sys_mprotect,
    "mremap": sys_mremap, "madvise": sys_madvise, "msync": sys_msync, "mincore": sys_mincore,
    "mlock": _locked_range("mlock"), "munlock": _locked_range("munlock"),
    "mlock2": _locked_range("mlock2"),
}
