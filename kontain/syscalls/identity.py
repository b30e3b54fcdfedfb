"""The process and its identity: exit, ids, limits, usage, scheduling, arch_prctl,
thread bookkeeping (set_tid_address, robust lists, rseq), prctl."""

from __future__ import annotations

import ctypes
import errno
import os
import struct

from kontain.linux import hostcall as host
from kontain.linux.hostcall import SyscallError
from kontain.linux.numbers import NUMBERS as NR
from kontain.machine import cpu
from kontain.monitor.exits import ExitProcess, ThreadExit
from kontain.syscalls import args

TYPE_CHECKING = False  # no typing import at run time: km start-up is timed
if TYPE_CHECKING:
    from kontain.monitor.thread import GuestThread

_RLIMIT = struct.Struct("<QQ")
RLIM_INFINITY = (1 << 64) - 1
RLIMIT_NOFILE = 7
#: Limits km applies to itself as well as reporting them (they act per host process);
#: the others are the guest's own (km's memory limits must not follow the guest's).
HOST_ENFORCED_LIMITS = frozenset({0, 1, 4})  # RLIMIT_CPU, RLIMIT_FSIZE, RLIMIT_CORE


def sys_exit(t: GuestThread, status: int, *_: int) -> int:
    raise ThreadExit(status)


def sys_exit_group(t: GuestThread, status: int, *_: int) -> int:
    raise ExitProcess(status)


def sys_getpid(t: GuestThread, *_: int) -> int:
    return t.proc.pid


def sys_gettid(t: GuestThread, *_: int) -> int:
    return t.tid


def sys_getppid(t: GuestThread, *_: int) -> int:
    return os.getppid()


def _plain(name: str):
    """A call with only integer arguments, made on the host as it is."""
    number = NR[name]

    def handler(t: GuestThread, a0: int, a1: int, a2: int, a3: int, a4: int, a5: int) -> int:
        return host.call(number, a0, a1, a2, a3, a4, a5)
    handler.__name__ = f"sys_{name}"
    return handler


def _own_credentials(name: str):
    """A set*id call, made on the host as it is: it changes the calling host thread's
    credentials (libcs make it in every thread), which a thread it creates inherits."""
    number = NR[name]

    def handler(t: GuestThread, a0: int, a1: int, a2: int, a3: int, a4: int, a5: int) -> int:
        t.host_state_changed()
        before = _effective_ids()
        result = host.call(number, a0, a1, a2, a3, a4, a5)
        if _effective_ids() != before:
            # Linux's commit_creds: a process whose effective or filesystem ids
            # change is no longer dumpable (fs.suid_dumpable is 0 by default).
            t.proc.dumpable = 0
        return result
    handler.__name__ = f"sys_{name}"
    return handler


def _effective_ids() -> tuple[int, int, int, int]:
    """The calling host thread's effective and filesystem uid and gid."""
    return (os.geteuid(), os.getegid(), host.call(NR["setfsuid"], -1),
            host.call(NR["setfsgid"], -1))


def sys_getresuid(t: GuestThread, ruid: int, euid: int, suid: int, *_: int) -> int:
    return host.call(NR["getresuid"], args.out_ptr(t, ruid, 4), args.out_ptr(t, euid, 4),
                     args.out_ptr(t, suid, 4))


def sys_getresgid(t: GuestThread, rgid: int, egid: int, sgid: int, *_: int) -> int:
    return host.call(NR["getresgid"], args.out_ptr(t, rgid, 4), args.out_ptr(t, egid, 4),
                     args.out_ptr(t, sgid, 4))


def sys_getgroups(t: GuestThread, size: int, lst: int, *_: int) -> int:
    size = args.s32(size)
    if size < 0:
        raise SyscallError(errno.EINVAL)
    if not size:
        return host.call(NR["getgroups"], 0, 0)
    count = host.call(NR["getgroups"], 0, 0)
    if size < count:
        raise SyscallError(errno.EINVAL)
    # Linux writes only the groups there are, so only those bytes need be mapped. The
    # host is told no more room than was checked: a setgroups by another thread in
    # between makes it EINVAL (a moment's answer), never a write past the checked bytes.
    return host.call(NR["getgroups"], count, args.out_ptr(t, lst, 4 * count) if count else 0)


def sys_setgroups(t: GuestThread, size: int, lst: int, *_: int) -> int:
    size = args.s32(size)
    if not 0 <= size <= 65536:
        raise SyscallError(errno.EINVAL)
    t.host_state_changed()
    return host.call(NR["setgroups"], size, args.in_ptr(t, lst, 4 * size) if size else 0)


# ---- other processes and threads ---------------------------------------------------------

def _target(t: GuestThread, pid: int) -> int:
    """The host pid a call naming pid is made on: 0 for the caller and its process, the
    tid of another of the payload's threads, the pid of another process in the payload's
    reach: one it may signal (with Landlock's signal scope, km's own processes). km's
    helper threads and processes out of reach (the host's) are ESRCH, as in a pid
    namespace and as pidfd_open has them: the payload reads nothing of them. Callers
    use this only to read; another process's settings are never changed."""
    if pid in (0, t.proc.pid, t.tid):
        return 0
    if pid in t.proc.group.threads:
        return pid
    if pid < 0 or os.path.exists(f"/proc/self/task/{pid}") \
            or host.syscall(NR["kill"], pid, 0) != 0:  # kill(pid, 0) only probes
        raise SyscallError(errno.ESRCH)
    return pid


# ---- capabilities -------------------------------------------------------------------------

#: capget's versions and how many 32-bit words of each set they move.
_CAP_WORDS = {0x19980330: 1, 0x20071026: 2, 0x20080522: 2}


def sys_capget(t: GuestThread, header: int, data: int, *_: int) -> int:
    """The payload's capabilities are km's (the host's answer about km's thread), or
    those of another of its processes. An unknown version is EINVAL with the version
    the kernel prefers written back (libcap and Go's capability package ask that way)."""
    version, pid = struct.unpack("<Ii", t.mm.read(header, 8))
    box = ctypes.create_string_buffer(struct.pack("<Ii", version, 0), 8)
    words = _CAP_WORDS.get(version)
    if words is not None and pid < 0:
        raise SyscallError(errno.EINVAL)
    if words is not None and pid:
        struct.pack_into("<i", box, 4, _target(t, pid))
    sets = ctypes.create_string_buffer(24)
    result = host.syscall(NR["capget"], ctypes.addressof(box),
                          ctypes.addressof(sets) if data else 0)
    if words is None:
        t.mm.write(header, box.raw[:4])  # the version the kernel prefers
    host.check(result)
    if data:
        t.mm.write(data, sets.raw[:12 * words])
    return 0


def sys_capset(t: GuestThread, header: int, data: int, *_: int) -> int:
    """Not yet: capset would change only the calling host thread's sets, and km's own
    seccomp filter keeps capset from km (a subverted monitor must not regain what its
    jail dropped). EPERM, as for a process without CAP_SETPCAP changing another's."""
    version, _pid = struct.unpack("<Ii", t.mm.read(header, 8))
    if version not in _CAP_WORDS:
        t.mm.write(header, struct.pack("<I", 0x20080522))
        raise SyscallError(errno.EINVAL)
    raise SyscallError(errno.EPERM)


# ---- nice values --------------------------------------------------------------------------

PRIO_PROCESS, PRIO_PGRP, PRIO_USER = 0, 1, 2


def _priority_target(t: GuestThread, which: int, who: int) -> tuple[int, int]:
    """(which, who) for the host: the payload's own processes only. A process group
    other than the payload's own, or a user (every process of that uid on the host,
    km's and the host's alike), would reach past the payload: they mean the payload's
    own process, when they name it, and ESRCH otherwise."""
    which, who = args.s32(which), args.s32(who)
    if which == PRIO_PROCESS:
        return which, _target(t, who)
    if which == PRIO_PGRP:
        if who in (0, os.getpgrp()):
            return PRIO_PROCESS, 0
        raise SyscallError(errno.ESRCH)
    if which == PRIO_USER:
        if who in (0, os.getuid()):
            return PRIO_PROCESS, 0
        raise SyscallError(errno.ESRCH)
    raise SyscallError(errno.EINVAL)


def sys_getpriority(t: GuestThread, which: int, who: int, *_: int) -> int:
    return host.call(NR["getpriority"], *_priority_target(t, which, who))


def sys_setpriority(t: GuestThread, which: int, who: int, prio: int, *_: int) -> int:
    which, host_who = _priority_target(t, which, who)
    target = t if host_who in (0, t.tid) else t.proc.group.threads.get(host_who)
    if target is not None:  # (a nice value is a thread's, and a new thread inherits it)
        target.host_state_changed()
    return host.call(NR["setpriority"], which, host_who, args.s32(prio))


# ---- limits ------------------------------------------------------------------------------

def _set_limit(t: GuestThread, resource_id: int, soft: int, hard: int) -> None:
    """setrlimit as the payload sees it; limits are 64-bit values, RLIM_INFINITY is
    2**64 - 1 (any other value, however large, is a finite limit)."""
    if soft > hard:
        raise OSError(errno.EINVAL, "soft limit above hard limit")
    if resource_id == RLIMIT_NOFILE:
        t.proc.fds.set_limit(soft, hard)
        return
    _old_soft, old_hard = t.proc.guest_rlimit(resource_id)
    if hard > old_hard and os.geteuid() != 0:
        raise OSError(errno.EPERM, "raising a hard limit")
    if resource_id in HOST_ENFORCED_LIMITS:
        limit = ctypes.create_string_buffer(_RLIMIT.pack(soft, hard), _RLIMIT.size)
        host.call(NR["prlimit64"], 0, resource_id, ctypes.addressof(limit), 0)
    t.proc.rlimits[resource_id] = (soft, hard)


def sys_prlimit64(t: GuestThread, pid: int, resource_id: int, new: int, old: int,
                  *_: int) -> int:
    new_limit = _RLIMIT.unpack(t.mm.read(new, 16)) if new else None
    target = _target(t, args.s32(pid))
    if target and target not in t.proc.group.threads:
        return _prlimit_elsewhere(t, target, resource_id, new_limit, old)
    resource_id &= 0xFFFFFFFF
    if resource_id >= 16:
        raise SyscallError(errno.EINVAL)
    previous = t.proc.guest_rlimit(resource_id)
    if new_limit is not None:
        _set_limit(t, resource_id, *new_limit)
    if old:  # written last, as Linux does: a bad pointer is EFAULT with the limit set
        t.mm.write(old, _RLIMIT.pack(*previous))
    return 0


def _prlimit_elsewhere(t: GuestThread, pid: int, resource_id: int,
                       new_limit: tuple[int, int] | None, old: int) -> int:
    """Another process's limits, as the host has them (what its /proc/PID/limits shows).
    They are never set: in reach are only km's other processes, whose host limits are
    km's own (its memory, its descriptors above the payload's) and whose payload's limits
    live in that km; EPERM, Linux's answer without the permission."""
    if new_limit is not None:
        raise SyscallError(errno.EPERM)
    limit = ctypes.create_string_buffer(_RLIMIT.size)
    host.call(NR["prlimit64"], pid, resource_id & 0xFFFFFFFF, 0, ctypes.addressof(limit))
    if old:
        t.mm.write(old, limit.raw)
    return 0


def sys_getrlimit(t: GuestThread, resource_id: int, rlim: int, *_: int) -> int:
    return sys_prlimit64(t, 0, resource_id, 0, rlim)


def sys_setrlimit(t: GuestThread, resource_id: int, rlim: int, *_: int) -> int:
    if not rlim:
        raise SyscallError(errno.EFAULT)
    return sys_prlimit64(t, 0, resource_id, rlim, 0)


def sys_getrusage(t: GuestThread, who: int, usage: int, *_: int) -> int:
    return host.call(NR["getrusage"], args.s32(who), args.out_ptr(t, usage, 144))


# ---- scheduling ----------------------------------------------------------------------------

#: Room km gives the host for a CPU mask: Linux writes at most its cpumask size (NR_CPUS
#: bits, 8192 at most on x86-64), so a larger length changes nothing but the room.
_AFFINITY_ROOM = 8192


def sys_sched_getaffinity(t: GuestThread, pid: int, size: int, mask: int, *_: int) -> int:
    size &= 0xFFFFFFFF  # an unsigned int
    # Past the room, keep size's remainder mod 8: the host refuses what Linux would.
    room = size if size <= _AFFINITY_ROOM else _AFFINITY_ROOM + size % 8
    buffer = ctypes.create_string_buffer(room)
    pid = args.s32(pid)
    host_pid = 0 if pid in (0, t.proc.pid, t.tid) else pid
    # The host's errors first (a bad size is EINVAL before an unknown pid is ESRCH);
    # whether pid is in the payload's reach is asked after (reading changes nothing).
    written = host.call(NR["sched_getaffinity"], host_pid, room, ctypes.addressof(buffer))
    if host_pid:
        _target(t, pid)
    # Only the kernel's mask is written, so only those bytes need be mapped.
    t.mm.write(mask, buffer.raw[:written])
    return written


def sys_sched_setaffinity(t: GuestThread, pid: int, size: int, mask: int, *_: int) -> int:
    pid = args.s32(pid)
    if pid not in (0, t.proc.pid, t.tid):
        raise SyscallError(errno.ESRCH)
    t.host_state_changed()
    return host.call(NR["sched_setaffinity"], 0, size, args.in_ptr(t, mask, size))


def sys_getcpu(t: GuestThread, cpu_out: int, node: int, *_: int) -> int:
    return host.call(NR["getcpu"], args.out_ptr(t, cpu_out, 4), args.out_ptr(t, node, 4), 0)


def _sched_for_self(name: str, size: int, out: bool, needs_param: bool):
    number = NR[name]

    def handler(t: GuestThread, pid: int, a1: int, a2: int, *_: int) -> int:
        pid = args.s32(pid)
        if pid < 0 or (needs_param and not a1):  # before the pid is looked for, as Linux
            raise SyscallError(errno.EINVAL)
        pointer = 0 if out else args.in_ptr(t, a1, size)  # read before the pid is looked for
        if pid not in (0, t.proc.pid, t.tid):
            raise SyscallError(errno.ESRCH)
        if not out:
            t.host_state_changed()
        return host.call(number, 0, args.out_ptr(t, a1, size) if out else pointer, a2)
    handler.__name__ = f"sys_{name}"
    return handler


def sys_sched_setscheduler(t: GuestThread, pid: int, policy: int, param: int, *_: int) -> int:
    pid = args.s32(pid)
    if args.s32(policy) < 0 or not param or pid < 0:  # Linux's order: before the pid
        raise SyscallError(errno.EINVAL)
    pointer = args.in_ptr(t, param, 4)  # read before the pid is looked for, as Linux
    if pid not in (0, t.proc.pid, t.tid):
        raise SyscallError(errno.ESRCH)
    t.host_state_changed()
    return host.call(NR["sched_setscheduler"], 0, policy, pointer)


# ---- arch_prctl, thread bookkeeping -------------------------------------------------------

ARCH_SET_GS, ARCH_SET_FS, ARCH_GET_FS, ARCH_GET_GS = 0x1001, 0x1002, 0x1003, 0x1004
ARCH_GET_CPUID, ARCH_SET_CPUID = 0x1011, 0x1012
CANONICAL_LIMIT = 0x0000_8000_0000_0000


def sys_arch_prctl(t: GuestThread, code: int, addr: int, *_: int) -> int:
    if code in (ARCH_SET_FS, ARCH_SET_GS):
        if addr >= CANONICAL_LIMIT:
            raise SyscallError(errno.EPERM)
        t.vcpu.set_msrs([(cpu.MSR_FS_BASE if code == ARCH_SET_FS else cpu.MSR_GS_BASE, addr)])
        return 0
    if code in (ARCH_GET_FS, ARCH_GET_GS):
        msr = cpu.MSR_FS_BASE if code == ARCH_GET_FS else cpu.MSR_GS_BASE
        t.mm.write_u64(addr, t.vcpu.get_msrs([msr])[msr])
        return 0
    if code == ARCH_GET_CPUID:
        return 1  # cpuid is always allowed in a Kontain VM
    if code == ARCH_SET_CPUID:
        raise SyscallError(errno.ENODEV)  # no CPUID faulting
    raise SyscallError(errno.EINVAL)


def sys_set_tid_address(t: GuestThread, tidptr: int, *_: int) -> int:
    t.clear_child_tid = tidptr
    return t.tid


def sys_set_robust_list(t: GuestThread, head: int, length: int, *_: int) -> int:
    if length != 24:
        raise SyscallError(errno.EINVAL)
    t.robust_list = head
    return 0


def sys_get_robust_list(t: GuestThread, pid: int, head_ptr: int, len_ptr: int, *_: int) -> int:
    if args.s32(pid) not in (0, t.tid):
        raise SyscallError(errno.ESRCH)
    t.mm.write_u64(head_ptr, t.robust_list)
    t.mm.write_u64(len_ptr, 24)
    return 0


# ---- prctl ----------------------------------------------------------------------------------

PR_SET_PDEATHSIG, PR_GET_PDEATHSIG, PR_GET_DUMPABLE, PR_SET_DUMPABLE = 1, 2, 3, 4
PR_SET_NAME, PR_GET_NAME, PR_GET_SECCOMP, PR_CAPBSET_READ = 15, 16, 21, 23
PR_GET_TIMERSLACK, PR_SET_TIMERSLACK = 30, 29
PR_SET_CHILD_SUBREAPER, PR_GET_CHILD_SUBREAPER = 36, 37
PR_SET_NO_NEW_PRIVS, PR_GET_NO_NEW_PRIVS = 38, 39
PR_SET_THP_DISABLE, PR_GET_THP_DISABLE = 41, 42
PR_SET_VMA = 0x53564D41
_HOST_PRCTL = {PR_SET_PDEATHSIG, PR_CAPBSET_READ,
               PR_GET_TIMERSLACK, PR_SET_TIMERSLACK, PR_SET_CHILD_SUBREAPER,
               PR_SET_NO_NEW_PRIVS, PR_GET_NO_NEW_PRIVS, PR_SET_THP_DISABLE,
               PR_GET_THP_DISABLE, PR_GET_SECCOMP}


def sys_prctl(t: GuestThread, option: int, a2: int, a3: int, a4: int, a5: int, *_: int) -> int:
    option = args.s32(option)
    if option == PR_SET_NAME:
        # Guest threads are host threads: the name is the host thread's comm, which is
        # what /proc shows (km renamed itself after the payload at start).
        t.name = t.mm.cstring(a2, 16)[:15]
        t.host_state_changed()
        name = t.name
        return host.call(NR["prctl"], PR_SET_NAME, host.address_of(name))
    if option == PR_GET_NAME:
        return host.call(NR["prctl"], PR_GET_NAME, args.out_ptr(t, a2, 16))
    if option in (PR_SET_NO_NEW_PRIVS, PR_GET_NO_NEW_PRIVS):
        # km itself always runs with no_new_privs (its jail); the payload's own flag is
        # what it was started with or set itself (a container's noNewPrivileges).
        if option == PR_SET_NO_NEW_PRIVS and (a2 != 1 or a3 or a4 or a5) \
                or option == PR_GET_NO_NEW_PRIVS and (a2 or a3 or a4 or a5):
            raise SyscallError(errno.EINVAL)
        if option == PR_SET_NO_NEW_PRIVS:
            t.proc.no_new_privs = True
            return 0
        return int(t.proc.no_new_privs)
    if option in (PR_SET_DUMPABLE, PR_GET_DUMPABLE):
        # The payload's own flag (it decides whether it leaves a core). km itself is
        # never dumpable: the host would let other processes read km's memory.
        if option == PR_GET_DUMPABLE:
            return t.proc.dumpable
        if a2 not in (0, 1):
            raise SyscallError(errno.EINVAL)
        t.proc.dumpable = a2
        return 0
    if option in (PR_GET_PDEATHSIG, PR_GET_CHILD_SUBREAPER):
        return host.call(NR["prctl"], option, args.out_ptr(t, a2, 4))
    if option in _HOST_PRCTL:
        if option == PR_SET_TIMERSLACK or option == PR_SET_PDEATHSIG:
            t.host_state_changed()  # (the thread's own, and a new thread inherits them)
        return host.call(NR["prctl"], option, a2, a3, a4, a5)
    raise SyscallError(errno.EINVAL)


HANDLERS = {
    "capget": sys_capget, "capset": sys_capset,
    "exit": sys_exit, "exit_group": sys_exit_group,
    "getpid": sys_getpid, "gettid": sys_gettid, "getppid": sys_getppid,
    "getuid": _plain("getuid"), "geteuid": _plain("geteuid"), "getgid": _plain("getgid"),
    "getegid": _plain("getegid"), "getresuid": sys_getresuid, "getresgid": sys_getresgid,
    "getgroups": sys_getgroups, "setgroups": sys_setgroups,
    "setuid": _own_credentials("setuid"), "setgid": _own_credentials("setgid"),
    "setreuid": _own_credentials("setreuid"),
    "setregid": _own_credentials("setregid"), "setresuid": _own_credentials("setresuid"),
    "setresgid": _own_credentials("setresgid"), "setfsuid": _own_credentials("setfsuid"),
    "setfsgid": _own_credentials("setfsgid"),
    "getpgrp": _plain("getpgrp"), "getpgid": _plain("getpgid"), "getsid": _plain("getsid"),
    "setsid": _plain("setsid"), "setpgid": _plain("setpgid"),
    "prlimit64": sys_prlimit64, "getrlimit": sys_getrlimit, "setrlimit": sys_setrlimit,
    "getrusage": sys_getrusage,
    "sched_yield": _plain("sched_yield"), "sched_getaffinity": sys_sched_getaffinity,
    "sched_setaffinity": sys_sched_setaffinity, "getcpu": sys_getcpu,
    "sched_getscheduler": _plain("sched_getscheduler"),
    "sched_get_priority_max": _plain("sched_get_priority_max"),
    "sched_get_priority_min": _plain("sched_get_priority_min"),
    "sched_getparam": _sched_for_self("sched_getparam", 4, True, True),
    "sched_setscheduler": sys_sched_setscheduler,
    "sched_rr_get_interval": _sched_for_self("sched_rr_get_interval", 16, True, False),
    "sched_setparam": _sched_for_self("sched_setparam", 4, False, True),
    "getpriority": sys_getpriority, "setpriority": sys_setpriority,
    "arch_prctl": sys_arch_prctl, "set_tid_address": sys_set_tid_address,
    "set_robust_list": sys_set_robust_list, "get_robust_list": sys_get_robust_list,
    "prctl": sys_prctl,
}
