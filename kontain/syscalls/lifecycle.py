"""Processes: fork, vfork, execve, execveat, wait4, waitid.

A guest fork is a host fork of km (kontain.monitor.fork), so the guest's children are
host processes: wait4/waitid, SIGCHLD, process groups and kill go to the host as they
are, and a child km's exit status is its payload's.
"""

from __future__ import annotations

import errno

from kontain.linux import hostcall as host
from kontain.linux.abi import AT_EMPTY_PATH, CLONE_VFORK, CLONE_VM
from kontain.linux.numbers import NUMBERS as NR
from kontain.monitor.exec import execve
from kontain.monitor.fork import fork_process
from kontain.syscalls import args

TYPE_CHECKING = False  # no typing import at run time: km start-up is timed
if TYPE_CHECKING:
    from kontain.monitor.thread import GuestThread

SIGCHLD = 17
MAX_ARG_STRINGS = 0x7FFFFFFF
#: Linux caps argv + envp at a quarter of the stack limit; km's stack is 8 MiB.
MAX_ARG_BYTES = 2 << 20
RUSAGE_SIZE = 144
SIGINFO_SIZE = 128


def sys_fork(t: GuestThread, *_: int) -> int:
    return fork_process(t.proc, t, SIGCHLD, 0, 0, 0, 0)


def sys_vfork(t: GuestThread, *_: int) -> int:
    return fork_process(t.proc, t, CLONE_VM | CLONE_VFORK | SIGCHLD, 0, 0, 0, 0)


def _string_array(t: GuestThread, va: int) -> list[bytes]:
    """A NULL-terminated array of string pointers (argv, envp); NULL is an empty array."""
    strings: list[bytes] = []
    total = 0
    while va:
        pointer = t.mm.read_u64(va)
        if not pointer:
            break
        value = t.mm.cstring(pointer, MAX_ARG_BYTES)
        total += len(value) + 1 + 8
        if total > MAX_ARG_BYTES:
            raise OSError(errno.E2BIG, "argument list too long")
        strings.append(value)
        va += 8
    return strings


def sys_execve(t: GuestThread, path: int, argv: int, envp: int, *_: int) -> int:
    name = args.path(t, path)
    return execve(t.proc, t, name, _string_array(t, argv), _string_array(t, envp))


def sys_execveat(t: GuestThread, dirfd: int, path: int, argv: int, envp: int, flags: int,
                 *_: int) -> int:
    name = args.path(t, path)
    fd = args.s32(dirfd)
    if not name and flags & AT_EMPTY_PATH:
        name = b"/proc/self/fd/%d" % args.fd(t, dirfd)
    elif not name.startswith(b"/") and fd != args.AT_FDCWD:
        name = b"/proc/self/fd/%d/" % args.fd(t, dirfd) + name
    return execve(t.proc, t, name, _string_array(t, argv), _string_array(t, envp))


def sys_wait4(t: GuestThread, pid: int, status: int, options: int, rusage: int,
              *_: int) -> int:
    return host.call(NR["wait4"], args.s32(pid), args.out_ptr(t, status, 4), options,
                     args.out_ptr(t, rusage, RUSAGE_SIZE))


def sys_waitid(t: GuestThread, idtype: int, ident: int, infop: int, options: int,
               rusage: int, *_: int) -> int:
    return host.call(NR["waitid"], idtype, ident, args.out_ptr(t, infop, SIGINFO_SIZE),
                     options, args.out_ptr(t, rusage, RUSAGE_SIZE))


HANDLERS = {
    "fork": sys_fork, "vfork": sys_vfork, "execve": sys_execve, "execveat": sys_execveat,
    "wait4": sys_wait4, "waitid": sys_waitid,
}


