"""Processes: fork, vfork, execve, execveat, wait4, waitid.

A guest fork is a host fork of km (kontain.monitor.fork), so the guest's children are
host processes: wait4/waitid, SIGCHLD, process groups and kill go to the host as they
are, and a child km's exit status is its payload's.
"""

from __future__ import annotations

import ctypes
import errno
import fcntl
import os

from kontain.linux import hostcall as host
from kontain.linux.abi import AT_EMPTY_PATH, AT_SYMLINK_NOFOLLOW, CLONE_VFORK, CLONE_VM
from kontain.linux.hostcall import SyscallError
from kontain.linux.numbers import NUMBERS as NR
from kontain.monitor.exec import MAX_ARG_BYTES, MAX_ARG_STRLEN, execve
from kontain.monitor.fork import fork_process
from kontain.syscalls import args

TYPE_CHECKING = False  # no typing import at run time: km start-up is timed
if TYPE_CHECKING:
    from kontain.monitor.thread import GuestThread

SIGCHLD = 17
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
        value = t.mm.cstring(pointer, MAX_ARG_STRLEN)  # no NUL within: too long
        total += len(value) + 1 + 8
        if len(value) >= MAX_ARG_STRLEN or total > MAX_ARG_BYTES:
            raise OSError(errno.E2BIG, "argument list too long")
        strings.append(value)
        va += 8
    return strings


def sys_execve(t: GuestThread, path: int, argv: int, envp: int, *_: int) -> int:
    name = args.path(t, path)
    return execve(t.proc, t, name, _string_array(t, argv), _string_array(t, envp))


def sys_execveat(t: GuestThread, dirfd: int, path: int, argv: int, envp: int, flags: int,
                 *_: int) -> int:
    if flags & ~(AT_EMPTY_PATH | AT_SYMLINK_NOFOLLOW):
        raise SyscallError(errno.EINVAL)
    name = args.path(t, path)
    fd = args.s32(dirfd)
    shown, cloexec = None, False
    if not name.startswith(b"/") and fd != args.AT_FDCWD:
        # The kernel's name for a file reached by descriptor; km resolves the same
        # file through its /proc view of the descriptor.
        fd = args.fd(t, dirfd)
        if not name and not flags & AT_EMPTY_PATH:
            raise SyscallError(errno.ENOENT)
        suffix = b"/" + name if name else b""
        shown = b"/dev/fd/%d" % fd + suffix
        name = b"/proc/self/fd/%d" % fd + suffix
        cloexec = bool(fcntl.fcntl(fd, fcntl.F_GETFD) & fcntl.FD_CLOEXEC)
    elif not name and flags & AT_EMPTY_PATH and fd == args.AT_FDCWD:
        # The descriptor itself: for AT_FDCWD the working directory (EACCES, a directory).
        name = b"."
    if flags & AT_SYMLINK_NOFOLLOW and name and os.path.islink(t.proc.host_path(name, False)):
        raise SyscallError(errno.ELOOP)
    return execve(t.proc, t, name, _string_array(t, argv), _string_array(t, envp),
                  shown=shown, script_unreachable=cloexec)


def sys_wait4(t: GuestThread, pid: int, status: int, options: int, rusage: int,
              *_: int) -> int:
    # Into km's memory, then to the guest's once a child was reaped, as Linux writes
    # them: no child (ECHILD) or none ready (WNOHANG) leaves bad pointers unread.
    # A bad one after a reap is EFAULT, the child gone, as on Linux.
    status_out = ctypes.create_string_buffer(4)
    usage_out = ctypes.create_string_buffer(RUSAGE_SIZE)
    reaped = host.call(NR["wait4"], args.s32(pid), ctypes.addressof(status_out), options,
                       ctypes.addressof(usage_out) if rusage else 0)
    if reaped > 0:
        if status:
            t.mm.write(status, status_out.raw)
        if rusage:
            t.mm.write(rusage, usage_out.raw)
    return reaped


def sys_waitid(t: GuestThread, idtype: int, ident: int, infop: int, options: int,
               rusage: int, *_: int) -> int:
    return host.call(NR["waitid"], idtype, ident, args.out_ptr(t, infop, SIGINFO_SIZE),
                     options, args.out_ptr(t, rusage, RUSAGE_SIZE))


HANDLERS = {
    "fork": sys_fork, "vfork": sys_vfork, "execve": sys_execve, "execveat": sys_execveat,
    "wait4": sys_wait4, "waitid": sys_waitid,
}


