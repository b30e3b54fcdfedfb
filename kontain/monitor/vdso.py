"""The vDSO: the host's own, shared with the guest, so time calls make no VM exit.

The host kernel maps a vDSO and its data pages ([vvar], [vvar_vclock]) into km, and
keeps the data current. km maps those same host pages into the guest (read-only, a
memslot of their own above the guest RAM) at the same relative layout, and gives the
payload AT_SYSINFO_EHDR. The vDSO's clock_gettime/gettimeofday/time/getcpu then run at
CPL 3 inside the VM: rdtsc/rdtscp execute natively there, and the guest TSC is the host
TSC, so the host's conversion data apply unchanged. When the host clock cannot be read
that way, the vDSO itself falls back to a real system call, which km serves as any other.
"""

from __future__ import annotations

import os

from kontain.linux import hostcall as host
from kontain.linux.numbers import NUMBERS as NR
from kontain.machine.layout import PAGE_SIZE, VDSO_PA, VDSO_VA
from kontain.mm.space import PROT_EXEC, PROT_READ

TYPE_CHECKING = False  # no typing import at run time: km start-up is timed
if TYPE_CHECKING:
    from kontain.monitor.process import Process

_NAMES = (b"[vvar]", b"[vvar_vclock]", b"[vdso]")


#: host_vdso()'s and _unbacked_pages()'s answers: km's vDSO stays where it is for the
#: life of the km process (an exec of the payload happens inside it; a fork's child has
#: the same mappings), so each is worked out once.
_found: dict = {}


def host_vdso() -> tuple[list[tuple[int, int, bytes]], int] | None:
    """km's own vDSO mappings: ([(start, end, name)], vdso start), if contiguous."""
    if "vdso" not in _found:
        _found["vdso"] = _read_host_vdso()
    return _found["vdso"]


def _read_host_vdso() -> tuple[list[tuple[int, int, bytes]], int] | None:
    regions = []
    try:
        with open("/proc/self/maps", "rb") as f:
            for line in f:
                name = line.rstrip().rsplit(b" ", 1)[-1]
                if name in _NAMES:
                    low, high = line.split(b" ", 1)[0].split(b"-")
                    regions.append((int(low, 16), int(high, 16), name))
    except OSError:
        return None
    regions.sort()
    vdso = [r for r in regions if r[2] == b"[vdso]"]
    if not vdso or any(a[1] != b[0] for a, b in zip(regions, regions[1:], strict=False)):
        return None
    return regions, vdso[0][0]


def install(proc: Process, base: int = VDSO_VA) -> int:
    """Map the host vDSO into the guest at base (page-aligned, in the gap above the mmap
    area); returns the guest address of its ELF image (AT_SYSINFO_EHDR), or 0 when the
    host's cannot be shared."""
    found = host_vdso()
    if found is None:
        return 0
    regions, vdso_start = found
    start, end = regions[0][0], regions[-1][1]
    proc.machine.phys.map_foreign(VDSO_PA, start, end - start)
    for low, high, name in regions:
        prot = PROT_READ | (PROT_EXEC if name == b"[vdso]" else 0)
        proc.mm.map_foreign(base + low - start, high - low, VDSO_PA + low - start, low,
                            prot, name.decode(), _unbacked_pages(low, high))
    proc.trace.log("load", f"vDSO shared at {base + vdso_start - start:#x} "
                           f"({(end - start) // PAGE_SIZE} pages)")
    return base + vdso_start - start


def _unbacked_pages(low: int, high: int) -> list[int]:
    """Offsets of the pages in [low, high) of km's own memory that fault when read: the
    vvar pages of clocks this host does not have (natively they raise SIGBUS). The
    kernel tells without km touching them: write(2) from such a page fails with EFAULT."""
    if (low, high) not in _found:
        _found[(low, high)] = _probe_unbacked(low, high)
    return list(_found[(low, high)])


def _probe_unbacked(low: int, high: int) -> list[int]:
    found = []
    fd = os.memfd_create("kontain-probe", os.MFD_CLOEXEC)
    try:
        for address in range(low, high, PAGE_SIZE):
            if host.syscall(NR["pwrite64"], fd, address, 1, 0) != 1:
                found.append(address - low)
    finally:
        os.close(fd)
    return found
