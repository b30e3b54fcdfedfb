"""The system around the process: uname, sethostname, setdomainname, getrandom,
sysinfo, personality, memfd, eventfd."""

from __future__ import annotations

import errno
import os

from kontain.linux import hostcall as host
from kontain.linux.hostcall import SyscallError
from kontain.linux.numbers import NUMBERS as NR
from kontain.syscalls import args

TYPE_CHECKING = False  # no typing import at run time: km start-up is timed
if TYPE_CHECKING:
    from kontain.monitor.thread import GuestThread

UTSNAME_SIZE = 6 * 65
NEW_UTS_LEN = 64
#: Offsets of the fields sethostname and setdomainname change in struct new_utsname.
UTS_FIELDS = {"nodename": 65, "domainname": 5 * 65}
SYSINFO_SIZE = 112


def sys_uname(t: GuestThread, buf: int, *_: int) -> int:
    result = host.call(NR["uname"], args.out_ptr(t, buf, UTSNAME_SIZE))
    for field, value in t.proc.uts_names.items():
        t.mm.write(buf + UTS_FIELDS[field], value.ljust(NEW_UTS_LEN + 1, b"\0"))
    return result


def _set_uts_name(t: GuestThread, field: str, name: int, length: int) -> int:
    """sethostname/setdomainname: the payload's own names, never the host's (km's
    payloads are each as in a UTS namespace of their own). Privileged as Linux: a
    payload running as root may, others get EPERM."""
    if os.geteuid() != 0:
        raise SyscallError(errno.EPERM)
    length = args.s32(length)
    if not 0 <= length <= NEW_UTS_LEN:
        raise SyscallError(errno.EINVAL)
    t.proc.uts_names[field] = t.mm.read(name, length) if length else b""
    return 0


def sys_sethostname(t: GuestThread, name: int, length: int, *_: int) -> int:
    return _set_uts_name(t, "nodename", name, length)


def sys_setdomainname(t: GuestThread, name: int, length: int, *_: int) -> int:
    return _set_uts_name(t, "domainname", name, length)


def sys_getrandom(t: GuestThread, buf: int, length: int, flags: int, *_: int) -> int:
    length = min(length, args.MAX_RW_COUNT)
    address, length = args.buffer_ptr(t, buf, length, True) if length else (0, 0)
    return host.call(NR["getrandom"], address, length, flags)


def sys_sysinfo(t: GuestThread, info: int, *_: int) -> int:
    return host.call(NR["sysinfo"], args.out_ptr(t, info, SYSINFO_SIZE))


def sys_personality(t: GuestThread, persona: int, *_: int) -> int:
    persona &= 0xFFFFFFFF
    if persona == 0xFFFFFFFF:
        return t.proc.personality
    # Any value is taken and kept (x86-64 has had no execution domains to refuse since
    # Linux 4.1); only its flags mean anything to km (ADDR_NO_RANDOMIZE).
    old, t.proc.personality = t.proc.personality, persona
    return old


def sys_eventfd2(t: GuestThread, initval: int, flags: int, *_: int) -> int:
    return t.proc.fds.adopt(host.call(NR["eventfd2"], initval & 0xFFFFFFFF, flags))


def sys_eventfd(t: GuestThread, initval: int, *_: int) -> int:
    return sys_eventfd2(t, initval, 0)


def sys_memfd_create(t: GuestThread, name: int, flags: int, *_: int) -> int:
    label = t.mm.cstring(name, 250)
    return t.proc.fds.adopt(host.call(NR["memfd_create"], host.address_of(label), flags))


HANDLERS = {
    "uname": sys_uname, "sethostname": sys_sethostname, "setdomainname": sys_setdomainname,
    "getrandom": sys_getrandom, "sysinfo": sys_sysinfo,
    "personality": sys_personality, "eventfd2": sys_eventfd2, "eventfd": sys_eventfd,
    "memfd_create": sys_memfd_create,
}
