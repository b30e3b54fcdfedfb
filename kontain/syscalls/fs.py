"""Files and their metadata: open/close, dup, fcntl, ioctl, stat, directories, links,
permissions, ownership, sizes, sync, the working directory, pipes and file systems."""

from __future__ import annotations

import ctypes
import errno
import os
import struct

from kontain.linux import hostcall as host
from kontain.linux.abi import (
    AT_EMPTY_PATH,
    AT_FDCWD,
    AT_REMOVEDIR,
    AT_SYMLINK_FOLLOW,
    AT_SYMLINK_NOFOLLOW,
    O_CREAT,
    O_PATH,
    O_TMPFILE,
    RESOLVE_ALL,
    RESOLVE_BENEATH,
    RESOLVE_IN_ROOT,
    S_IFBLK,
    S_IFCHR,
    S_IFDIR,
    S_IFIFO,
    S_IFMT,
    S_IFREG,
    S_IFSOCK,
    VALID_OPEN_FLAGS,
)
from kontain.linux.hostcall import SyscallError
from kontain.linux.numbers import NUMBERS as NR
from kontain.mm.access import GuestFault
from kontain.syscalls import args, ifconf
from kontain.syscalls.net import bad_pointer, host_pointer

TYPE_CHECKING = False  # no typing import at run time: km start-up is timed
if TYPE_CHECKING:
    from kontain.monitor.thread import GuestThread

STAT_SIZE = 144
STATX_SIZE = 256
STATFS_SIZE = 120


def _dirfd(t: GuestThread, dirfd: int, name: bytes) -> int:
    """The directory a *at() call's path starts from, checked as Linux checks it (after
    the path is read): not at all when the path is absolute (or empty, which the caller
    refuses with ENOENT), EBADF when it is not one of the guest's open descriptors,
    ENOTDIR when it is not a directory."""
    if name[:1] in (b"/", b""):
        return AT_FDCWD
    number = args.s32(dirfd)
    if number == AT_FDCWD:
        return number
    number = args.fd(t, dirfd)  # km's own descriptors are not open for the guest
    if t.proc.root.confined:
        # The host never sees this descriptor (kontain.monitor.root names what it
        # resolved), so km says what the host would have. Unconfined, the host does.
        try:
            mode = os.fstat(number).st_mode
        except OSError:
            raise SyscallError(errno.EBADF) from None
        if mode & S_IFMT != S_IFDIR:
            raise SyscallError(errno.ENOTDIR)
    return number


def _at(t: GuestThread, dirfd: int, va: int, follow: bool = True,
        slot: int = 0) -> tuple[int, bytes]:
    """(host dirfd, host path) of a *at() call's (dirfd, path) (kontain.monitor.root).
    follow: whether the call follows a symlink in the last component. The path is kept
    alive by the caller until the host call returns."""
    name = args.path(t, va)
    return t.proc.root.lookup(_dirfd(t, dirfd, name), name, follow, slot)


def _new_name(t: GuestThread, dirfd: int, va: int, slot: int = 0) -> tuple[int, bytes]:
    """(host dirfd, host path) of a name a call creates other than a directory
    (symlink, link, mknod): its last component is not followed.

    A name ending in "/" asks for a directory, so Linux refuses it: EEXIST if it
    exists, ENOENT if not. Confined, kontain.monitor.root names the last component
    without its slash; km answers for the host (which would create it)."""
    name = args.path(t, va)
    dfd, path = t.proc.root.lookup(_dirfd(t, dirfd, name), name, False, slot)
    if name[-1:] == b"/" and t.proc.root.confined and name.strip(b"/"):
        try:
            os.lstat(path)  # (the last component is not followed)
        except FileNotFoundError:
            raise SyscallError(errno.ENOENT) from None
        raise SyscallError(errno.EEXIST)
    return dfd, path


def _cwd_path(t: GuestThread, va: int, follow: bool = True, slot: int = 0) -> tuple[int, bytes]:
    """(host dirfd, host path) of a path relative to the working directory."""
    return t.proc.root.lookup(AT_FDCWD, args.path(t, va), follow, slot)


def _p(name: bytes) -> int:
    return host.address_of(name)


def _new_fd(t: GuestThread, result: int) -> int:
    """Enforce the guest's RLIMIT_NOFILE on a descriptor the host just created."""
    return t.proc.fds.adopt(result)


# ---- open, close, dup -------------------------------------------------------------------

def _open(t: GuestThread, dirfd: int, name: bytes, flags: int, mode: int,
          resolve: int = 0) -> int:
    """open/openat/openat2 of a guest path name (resolved by kontain.monitor.root)."""
    host_fd = t.proc.root.open(dirfd, name, flags, mode, resolve)
    rules = t.proc.options.device_rules
    if rules is not None and not flags & O_PATH:
        _check_device(rules, host_fd, flags)
    fd = _new_fd(t, host_fd)
    if flags & os.O_TRUNC:
        _file_shrunk(t, fd)
    return fd


def _check_device(rules, host_fd: int, flags: int) -> None:
    """A container's device rules, as its devices cgroup applies them at open: a device
    node they deny is EPERM (the descriptor just opened is closed again)."""
    st = os.fstat(host_fd)
    kind = {S_IFCHR: "c", S_IFBLK: "b"}.get(st.st_mode & S_IFMT)
    if kind is not None:
        access = {os.O_RDONLY: "r", os.O_WRONLY: "w"}.get(flags & os.O_ACCMODE, "rw")
        if not rules.permits(kind, os.major(st.st_rdev), os.minor(st.st_rdev), access):
            os.close(host_fd)
            raise SyscallError(errno.EPERM)


def _file_shrunk(t: GuestThread, fd: int | None = None) -> None:
    """The payload made a file shorter: pages of its mappings of that file past the new
    end must fault (SIGBUS), not reach host memory that is gone (kontain.mm.space).
    Without a descriptor (truncate by name) every file mapping is checked: stat-ing the
    name again could reach another file if the payload swapped a symlink meanwhile."""
    if fd is None:
        t.mm.recheck_files()
        return
    try:
        st = os.fstat(fd)
    except OSError:
        return
    t.mm.recheck_files(st.st_dev, st.st_ino)


def sys_open(t: GuestThread, path: int, flags: int, mode: int, *_: int) -> int:
    return _open(t, AT_FDCWD, args.path(t, path), flags & 0xFFFFFFFF, mode & 0xFFFFFFFF)


def sys_creat(t: GuestThread, path: int, mode: int, *_: int) -> int:
    return sys_open(t, path, os.O_CREAT | os.O_WRONLY | os.O_TRUNC, mode)


def sys_openat(t: GuestThread, dirfd: int, path: int, flags: int, mode: int, *_: int) -> int:
    name = args.path(t, path)
    return _open(t, _dirfd(t, dirfd, name), name, flags & 0xFFFFFFFF, mode & 0xFFFFFFFF)


OPEN_HOW = struct.Struct("<QQQ")  # struct open_how: flags, mode, resolve


def sys_openat2(t: GuestThread, dirfd: int, path: int, how: int, size: int, *_: int) -> int:
    # Linux's order: the size, the structure, its fields, the path, then the dirfd.
    if size < OPEN_HOW.size:
        raise SyscallError(errno.EINVAL)
    if size > 4096:
        raise SyscallError(errno.E2BIG)
    raw = t.mm.read(how, size)
    if any(raw[OPEN_HOW.size:]):
        raise SyscallError(errno.E2BIG)  # fields this kernel interface does not know, set
    flags, mode, resolve = OPEN_HOW.unpack_from(raw)
    if flags & ~VALID_OPEN_FLAGS or resolve & ~RESOLVE_ALL or mode & ~0o7777 \
            or mode and not flags & (O_CREAT | O_TMPFILE):
        raise SyscallError(errno.EINVAL)
    name = args.path(t, path)
    if resolve & RESOLVE_IN_ROOT and name[:1] == b"/":
        # An absolute path starts from dirfd then: it is not ignored.
        dfd = args.dirfd(t, dirfd)
    elif resolve & RESOLVE_BENEATH and name[:1] == b"/":
        raise SyscallError(errno.EXDEV)  # nothing absolute is beneath dirfd
    else:
        dfd = _dirfd(t, dirfd, name)
    return _open(t, dfd, name, flags, mode, resolve or 0)


def sys_close(t: GuestThread, fd: int, *_: int) -> int:
    fd = args.fd(t, fd)
    t.proc.procfs.closed(fd)
    t.proc.signalfds.closed(fd)
    return host.call3(NR["close"], fd, 0, 0)


CLOSE_RANGE_UNSHARE, CLOSE_RANGE_CLOEXEC = 2, 4


def sys_close_range(t: GuestThread, first: int, last: int, flags: int, *_: int) -> int:
    first, last = first & 0xFFFFFFFF, last & 0xFFFFFFFF
    # Linux's order: the flags, then the range (before km narrows it, so that a range
    # of km's own descriptors is refused as the host would refuse it).
    if flags & 0xFFFFFFFF & ~(CLOSE_RANGE_UNSHARE | CLOSE_RANGE_CLOEXEC) or first > last:
        raise SyscallError(errno.EINVAL)
    # Never let the guest close km's own descriptors at the top of the range.
    last = min(last, t.proc.fds.km_base - 1)
    if first > last:
        return 0
    # CLOSE_RANGE_UNSHARE would give the calling *host* thread a descriptor table of
    # its own, apart from km's other threads: the payload's threads all share km's one
    # table, so the flag is dropped (the same for a process with one thread, its use).
    return host.call(NR["close_range"], first, last, flags & ~CLOSE_RANGE_UNSHARE)


def _duplicated(t: GuestThread, old: int, new: int) -> int:
    """new names what old does: km's own records of descriptors follow (signalfds)."""
    t.proc.procfs.closed(new)
    t.proc.signalfds.duplicated(old, new)
    return new


def sys_dup(t: GuestThread, fd: int, *_: int) -> int:
    fd = args.fd(t, fd)
    return _duplicated(t, fd, _new_fd(t, host.call(NR["dup"], fd)))


def _dup_target(t: GuestThread, newfd: int) -> int:
    number = args.s32(newfd)
    if not 0 <= number < t.proc.fds.usable:
        raise OSError(errno.EBADF, "dup target beyond RLIMIT_NOFILE")
    return number


def sys_dup2(t: GuestThread, oldfd: int, newfd: int, *_: int) -> int:
    old = args.fd(t, oldfd)
    new = host.call(NR["dup2"], old, _dup_target(t, newfd))
    return new if new == old else _duplicated(t, old, new)


def sys_dup3(t: GuestThread, oldfd: int, newfd: int, flags: int, *_: int) -> int:
    old = args.fd(t, oldfd)
    return _duplicated(t, old, host.call(NR["dup3"], old, _dup_target(t, newfd), flags))


# ---- fcntl, ioctl, flock ------------------------------------------------------------------

F_DUPFD, F_GETFD, F_SETFD, F_GETFL, F_SETFL = 0, 1, 2, 3, 4
F_GETLK, F_SETLK, F_SETLKW, F_SETOWN, F_GETOWN, F_SETSIG, F_GETSIG = 5, 6, 7, 8, 9, 10, 11
F_SETOWN_EX, F_GETOWN_EX, F_GETOWNER_UIDS = 15, 16, 17
F_OFD_GETLK, F_OFD_SETLK, F_OFD_SETLKW = 36, 37, 38
F_SETLEASE, F_GETLEASE, F_NOTIFY, F_DUPFD_CLOEXEC = 1024, 1025, 1026, 1030
F_SETPIPE_SZ, F_GETPIPE_SZ, F_ADD_SEALS, F_GET_SEALS = 1031, 1032, 1033, 1034
F_GET_RW_HINT, F_SET_RW_HINT, F_GET_FILE_RW_HINT, F_SET_FILE_RW_HINT = 1035, 1036, 1037, 1038
FLOCK_SIZE = 32
_FCNTL_PLAIN = {F_GETFD, F_SETFD, F_GETFL, F_SETFL, F_SETOWN, F_GETOWN, F_SETSIG, F_GETSIG,
                F_SETLEASE, F_GETLEASE, F_NOTIFY, F_SETPIPE_SZ, F_GETPIPE_SZ, F_ADD_SEALS,
                F_GET_SEALS}
_FCNTL_STRUCT = {F_GETLK: (FLOCK_SIZE, True), F_SETLK: (FLOCK_SIZE, False),
                 F_SETLKW: (FLOCK_SIZE, False), F_OFD_GETLK: (FLOCK_SIZE, True),
                 F_OFD_SETLK: (FLOCK_SIZE, False), F_OFD_SETLKW: (FLOCK_SIZE, False),
                 F_GETOWN_EX: (8, True), F_SETOWN_EX: (8, False), F_GETOWNER_UIDS: (8, True),
                 F_GET_RW_HINT: (8, True), F_SET_RW_HINT: (8, False),
                 F_GET_FILE_RW_HINT: (8, True), F_SET_FILE_RW_HINT: (8, False)}


def sys_fcntl(t: GuestThread, fd: int, cmd: int, arg: int, *_: int) -> int:
    fd = args.fd(t, fd)
    cmd = args.s32(cmd)
    if cmd in (F_DUPFD, F_DUPFD_CLOEXEC):
        lowest = args.s32(arg)
        if not 0 <= lowest < t.proc.fds.usable:
            raise SyscallError(errno.EINVAL)
        return _duplicated(t, fd, _new_fd(t, host.call(NR["fcntl"], fd, cmd, lowest)))
    if cmd in _FCNTL_PLAIN:
        result = host.call3(NR["fcntl"], fd, cmd, arg)
        if cmd == F_GETFL and fd in t.proc.signalfds.fds and t.proc.signalfds.lookup(fd):
            result = result & ~os.O_ACCMODE | os.O_RDWR  # a signalfd is opened O_RDWR
        return result
    shape = _FCNTL_STRUCT.get(cmd)
    if shape is not None:
        size, out = shape
        pointer = args.out_ptr(t, arg, size) if out else args.in_ptr(t, arg, size)
        if not pointer:
            raise SyscallError(errno.EFAULT)
        return host.call3(NR["fcntl"], fd, cmd, pointer)
    raise SyscallError(errno.EINVAL)


# Terminal and descriptor ioctls km passes through: request -> (argument size, direction).
# Direction: "out" the host writes the buffer, "in" it reads it, "inout" both, "value"
# the argument is a plain integer. Anything else is refused: an ioctl km does not know
# might carry pointers inside its argument that the host would follow into km's memory.
# TIOCSTI (0x5412) is left out on purpose: it pushes input into the terminal, which the
# shell that started km would read as commands once km exits.
TCGETS, TCSETS, TCSETSW, TCSETSF = 0x5401, 0x5402, 0x5403, 0x5404
TIOCGWINSZ, TIOCSWINSZ, FIONREAD = 0x5413, 0x5414, 0x541B
_IOCTLS = {
    TCGETS: (60, "out"), TCSETS: (60, "in"), TCSETSW: (60, "in"), TCSETSF: (60, "in"),
    0x5405: (20, "out"), 0x5406: (20, "in"), 0x5407: (20, "in"), 0x5408: (20, "in"),  # TCGETA..
    0x5409: (0, "value"), 0x540A: (0, "value"), 0x540B: (0, "value"),  # TCSBRK TCXONC TCFLSH
    0x540C: (0, "value"), 0x540D: (0, "value"),  # TIOCEXCL TIOCNXCL
    0x540E: (0, "value"), 0x540F: (4, "out"), 0x5410: (4, "in"), 0x5411: (4, "out"),
    TIOCGWINSZ: (8, "out"), TIOCSWINSZ: (8, "in"),
    0x5415: (4, "out"), 0x5416: (4, "in"), 0x5417: (4, "in"), 0x5418: (4, "in"),
    FIONREAD: (4, "out"), 0x5421: (4, "in"), 0x5422: (0, "value"), 0x5423: (4, "in"),
    0x5424: (4, "out"), 0x5425: (0, "value"), 0x5427: (0, "value"), 0x5428: (0, "value"),
    0x5429: (4, "out"), 0x802C542A: (44, "out"), 0x402C542B: (44, "in"),
    0x402C542C: (44, "in"), 0x402C542D: (44, "in"),
    0x80045430: (4, "out"), 0x40045431: (4, "in"), 0x80045432: (4, "out"),
    0x5450: (0, "value"), 0x5451: (0, "value"), 0x5452: (4, "in"),  # FIONCLEX FIOCLEX FIOASYNC
    0x5460: (8, "out"),  # FIOQSIZE
    0x80081272: (8, "out"),  # BLKGETSIZE64
}


def sys_ioctl(t: GuestThread, fd: int, request: int, arg: int, *_: int) -> int:
    fd = args.fd(t, fd)
    request &= 0xFFFFFFFF
    shape = _IOCTLS.get(request)
    if shape is None:
        if request in ifconf.REQUESTS:  # km's seccomp filter forwards none of them
            return ifconf.ioctl(t, fd, request, arg)
        # Refused, but Linux looks the descriptor up before the request.
        host.call(NR["fcntl"], fd, F_GETFD)
        raise SyscallError(errno.ENOTTY)
    size, direction = shape
    if direction == "value":
        return host.call3(NR["ioctl"], fd, request, arg)
    # A bad pointer (NULL included: no request here gives it a meaning) goes to the host
    # as a km address just as bad: EBADF, ENOTTY (not a terminal) come first, as Linux's.
    pointer = host_pointer(t, arg, size, direction != "in") or bad_pointer(0, size)
    return host.call3(NR["ioctl"], fd, request, pointer)


def sys_flock(t: GuestThread, fd: int, operation: int, *_: int) -> int:
    return host.call(NR["flock"], args.fd(t, fd), operation)


# ---- stat ---------------------------------------------------------------------------------



def sys_stat(t: GuestThread, path: int, statbuf: int, *_: int) -> int:
    dfd, name = _cwd_path(t, path)
    return host.call(NR["newfstatat"], dfd, _p(name), args.out_ptr(t, statbuf, STAT_SIZE), 0)


def sys_lstat(t: GuestThread, path: int, statbuf: int, *_: int) -> int:
    dfd, name = _cwd_path(t, path, follow=False)
    return host.call(NR["newfstatat"], dfd, _p(name), args.out_ptr(t, statbuf, STAT_SIZE),
                     AT_SYMLINK_NOFOLLOW)


STAT_MODE_OFFSET = 24  # struct stat's st_mode on x86-64
STATX_MODE_OFFSET = 28  # struct statx's stx_mode


def sys_fstat(t: GuestThread, fd: int, statbuf: int, *_: int) -> int:
    fd = args.fd(t, fd)
    result = host.call3(NR["fstat"], fd, args.out_ptr(t, statbuf, STAT_SIZE), 0)
    _signalfd_mode(t, fd, statbuf + STAT_MODE_OFFSET, 4)
    return result


def _signalfd_mode(t: GuestThread, fd: int, mode_va: int, size: int) -> None:
    """A signalfd is an anonymous inode, mode 0600 and no type (the host's is a pipe)."""
    if fd in t.proc.signalfds.fds and t.proc.signalfds.lookup(fd):
        t.mm.write(mode_va, (0o600).to_bytes(size, "little"))


def _at_path(t: GuestThread, dirfd: int, path: int, flags: int,
             slot: int = 0) -> tuple[int, bytes]:
    """(dirfd, path) of a *at() call taking AT_SYMLINK_NOFOLLOW; an empty path is
    allowed with AT_EMPTY_PATH (the call is then on dirfd itself)."""
    follow = not flags & AT_SYMLINK_NOFOLLOW
    name = args.path(t, path)
    if not name and flags & AT_EMPTY_PATH:
        return args.dirfd(t, dirfd), b""
    return t.proc.root.lookup(_dirfd(t, dirfd, name), name, follow, slot)


def _stat_path(t: GuestThread, dirfd: int, path: int, flags: int) -> tuple[int, bytes | None]:
    """_at_path for newfstatat and statx, where (since Linux 6.11) a NULL path with
    AT_EMPTY_PATH is dirfd itself too. None: the host gets NULL as well, and answers as
    its kernel does (older ones: EFAULT)."""
    if not path and flags & AT_EMPTY_PATH:
        return args.dirfd(t, dirfd), None
    return _at_path(t, dirfd, path, flags)


def _p_or_null(name: bytes | None) -> int:
    return 0 if name is None else _p(name)


def sys_newfstatat(t: GuestThread, dirfd: int, path: int, statbuf: int, flags: int,
                   *_: int) -> int:
    dfd, name = _stat_path(t, dirfd, path, flags)
    result = host.call(NR["newfstatat"], dfd, _p_or_null(name),
                       args.out_ptr(t, statbuf, STAT_SIZE), flags)
    if not name:
        _signalfd_mode(t, dfd, statbuf + STAT_MODE_OFFSET, 4)
    return result


def sys_statx(t: GuestThread, dirfd: int, path: int, flags: int, mask: int, statxbuf: int,
              *_: int) -> int:
    dfd, name = _stat_path(t, dirfd, path, flags)
    result = host.call(NR["statx"], dfd, _p_or_null(name), flags, mask,
                       args.out_ptr(t, statxbuf, STATX_SIZE))
    if not name:
        _signalfd_mode(t, dfd, statxbuf + STATX_MODE_OFFSET, 2)
    return result


def sys_getdents64(t: GuestThread, fd: int, dirp: int, count: int, *_: int) -> int:
    fd = args.fd(t, fd)
    count = min(count & 0xFFFFFFFF, args.MAX_RW_COUNT)
    address, count = args.buffer_ptr(t, dirp, count, True) if count else (0, 0)
    while True:
        result = host.call(NR["getdents64"], fd, address, count)
        if result == 0 or fd not in t.proc.procfs.filtered:
            return result
        # /proc/self/fd and task: km's own descriptors and threads are not the payload's.
        kept = t.proc.procfs.filter_entries(fd, t.mm.read(dirp, result))
        if kept:
            t.mm.write(dirp, kept)
            return len(kept)


def sys_getdents(t: GuestThread, fd: int, dirp: int, count: int, *_: int) -> int:
    fd = args.fd(t, fd)
    count = min(count & 0xFFFFFFFF, args.MAX_RW_COUNT)
    address, count = args.buffer_ptr(t, dirp, count, True) if count else (0, 0)
    return host.call(NR["getdents"], fd, address, count)


# ---- access, links, directories ---------------------------------------------------------

def sys_access(t: GuestThread, path: int, mode: int, *_: int) -> int:
    dfd, name = _cwd_path(t, path)
    return host.call(NR["faccessat"], dfd, _p(name), mode)


def sys_faccessat(t: GuestThread, dirfd: int, path: int, mode: int, *_: int) -> int:
    dfd, name = _at(t, dirfd, path)
    return host.call(NR["faccessat"], dfd, _p(name), mode)


def sys_faccessat2(t: GuestThread, dirfd: int, path: int, mode: int, flags: int, *_: int) -> int:
    dfd, name = _at_path(t, dirfd, path, flags)
    return host.call(NR["faccessat2"], dfd, _p(name), mode, flags)


def sys_readlink(t: GuestThread, path: int, buf: int, size: int, *_: int) -> int:
    return sys_readlinkat(t, AT_FDCWD & 0xFFFFFFFF, path, buf, size)


def sys_readlinkat(t: GuestThread, dirfd: int, path: int, buf: int, size: int, *_: int) -> int:
    size = args.s32(size)
    if size <= 0:  # (before anything else, as Linux)
        raise SyscallError(errno.EINVAL)
    name = args.path(t, path)
    # An empty path is the descriptor itself (an O_PATH symlink): the host's business.
    dfd = _dirfd(t, dirfd, name) if name else args.dirfd(t, dirfd)
    special = t.proc.root.readlink(dfd, name) if name else None
    if special is not None:  # one of the payload's own /proc links
        data = special[:size]
        t.mm.write(buf, data)
        return len(data)
    if name:
        dfd, name = t.proc.root.lookup(dfd, name, follow=False)
    # (no link is longer than PATH_MAX: km's copy of the buffer never needs more)
    return args.copied_out(t, buf, size, min(size, args.PATH_MAX),
                       lambda pointer, n: host.call(NR["readlinkat"], dfd, _p(name), pointer, n))


def sys_mkdirat(t: GuestThread, dirfd: int, path: int, mode: int, *_: int) -> int:
    dfd, name = _at(t, dirfd, path, follow=False)
    return host.call(NR["mkdirat"], dfd, _p(name), mode)


def sys_mkdir(t: GuestThread, path: int, mode: int, *_: int) -> int:
    return sys_mkdirat(t, AT_FDCWD & 0xFFFFFFFF, path, mode)


def sys_unlinkat(t: GuestThread, dirfd: int, path: int, flags: int, *_: int) -> int:
    dfd, name = _at(t, dirfd, path, follow=False)
    return host.call(NR["unlinkat"], dfd, _p(name), flags)


def sys_unlink(t: GuestThread, path: int, *_: int) -> int:
    return sys_unlinkat(t, AT_FDCWD & 0xFFFFFFFF, path, 0)


def sys_rmdir(t: GuestThread, path: int, *_: int) -> int:
    return sys_unlinkat(t, AT_FDCWD & 0xFFFFFFFF, path, AT_REMOVEDIR)


def sys_renameat2(t: GuestThread, olddirfd: int, old: int, newdirfd: int, new: int,
                  flags: int, *_: int) -> int:
    odfd, a = _at(t, olddirfd, old, follow=False, slot=0)
    ndfd, b = _at(t, newdirfd, new, follow=False, slot=1)
    return host.call(NR["renameat2"], odfd, _p(a), ndfd, _p(b), flags)


def sys_renameat(t: GuestThread, olddirfd: int, old: int, newdirfd: int, new: int,
                 *_: int) -> int:
    return sys_renameat2(t, olddirfd, old, newdirfd, new, 0)


def sys_rename(t: GuestThread, old: int, new: int, *_: int) -> int:
    cwd = AT_FDCWD & 0xFFFFFFFF
    return sys_renameat2(t, cwd, old, cwd, new, 0)


def sys_linkat(t: GuestThread, olddirfd: int, old: int, newdirfd: int, new: int, flags: int,
               *_: int) -> int:
    # linkat follows the old path only with AT_SYMLINK_FOLLOW.
    follow = 0 if flags & AT_SYMLINK_FOLLOW else AT_SYMLINK_NOFOLLOW
    odfd, a = _at_path(t, olddirfd, old, follow | flags & AT_EMPTY_PATH, slot=0)
    ndfd, b = _new_name(t, newdirfd, new, slot=1)
    return host.call(NR["linkat"], odfd, _p(a), ndfd, _p(b), flags)


def sys_link(t: GuestThread, old: int, new: int, *_: int) -> int:
    cwd = AT_FDCWD & 0xFFFFFFFF
    return sys_linkat(t, cwd, old, cwd, new, 0)


def sys_symlinkat(t: GuestThread, target: int, newdirfd: int, linkpath: int, *_: int) -> int:
    # The target is text, stored as it is: never resolved (links are resolved inside
    # the payload's root when they are followed). Only linkpath is a path here.
    contents = args.path(t, target)
    if not contents:
        raise SyscallError(errno.ENOENT)  # (before linkpath is looked at, as Linux)
    ndfd, b = _new_name(t, newdirfd, linkpath)
    return host.call(NR["symlinkat"], _p(contents), ndfd, _p(b))


def sys_symlink(t: GuestThread, target: int, linkpath: int, *_: int) -> int:
    return sys_symlinkat(t, target, AT_FDCWD & 0xFFFFFFFF, linkpath)


def sys_fchmodat(t: GuestThread, dirfd: int, path: int, mode: int, *_: int) -> int:
    dfd, p = _at(t, dirfd, path)
    return host.call(NR["fchmodat"], dfd, _p(p), mode)


def sys_chmod(t: GuestThread, path: int, mode: int, *_: int) -> int:
    return sys_fchmodat(t, AT_FDCWD & 0xFFFFFFFF, path, mode)


def sys_fchownat(t: GuestThread, dirfd: int, path: int, owner: int, group: int, flags: int,
                 *_: int) -> int:
    dfd, p = _at_path(t, dirfd, path, flags)
    return host.call(NR["fchownat"], dfd, _p(p), owner, group, flags)


def sys_chown(t: GuestThread, path: int, owner: int, group: int, *_: int) -> int:
    return sys_fchownat(t, AT_FDCWD & 0xFFFFFFFF, path, owner, group, 0)


def sys_lchown(t: GuestThread, path: int, owner: int, group: int, *_: int) -> int:
    return sys_fchownat(t, AT_FDCWD & 0xFFFFFFFF, path, owner, group, AT_SYMLINK_NOFOLLOW)


def sys_utimensat(t: GuestThread, dirfd: int, path: int, times: int, flags: int,
                  *_: int) -> int:
    p = None
    if path:
        dfd, p = _at_path(t, dirfd, path, flags)
    else:  # (Linux's own extension: NULL is dirfd itself)
        dfd = args.dirfd(t, dirfd)
    return host.call(NR["utimensat"], dfd, _p(p) if p is not None else 0,
                     args.in_ptr(t, times, 32), flags)


def sys_utimes(t: GuestThread, path: int, times: int, *_: int) -> int:
    return sys_futimesat(t, AT_FDCWD & 0xFFFFFFFF, path, times)


def sys_utime(t: GuestThread, path: int, times: int, *_: int) -> int:
    _dfd, p = _cwd_path(t, path)
    return host.call(NR["utime"], _p(p), args.in_ptr(t, times, 16))


def sys_futimesat(t: GuestThread, dirfd: int, path: int, times: int, *_: int) -> int:
    p = None
    if path:
        dfd, p = _at(t, dirfd, path)
    else:  # NULL is dirfd itself
        dfd = args.dirfd(t, dirfd)
    return host.call(NR["futimesat"], dfd, _p(p) if p is not None else 0,
                     args.in_ptr(t, times, 32))


def _fd_call(name: str):
    """A syscall whose first argument is a descriptor and the rest plain integers."""
    number = NR[name]

    def handler(t: GuestThread, fd: int, a1: int, a2: int, a3: int, *_: int) -> int:
        return host.call(number, args.fd(t, fd), a1, a2, a3)
    handler.__name__ = f"sys_{name}"
    return handler


def sys_truncate(t: GuestThread, path: int, length: int, *_: int) -> int:
    _dfd, p = _cwd_path(t, path)
    result = host.call(NR["truncate"], _p(p), length)
    if result == 0:
        _file_shrunk(t)
    return result


def sys_ftruncate(t: GuestThread, fd: int, length: int, *_: int) -> int:
    fd = args.fd(t, fd)
    result = host.call(NR["ftruncate"], fd, length)
    if result == 0:
        _file_shrunk(t, fd)
    return result


FALLOC_FL_COLLAPSE_RANGE = 0x08


def sys_fallocate(t: GuestThread, fd: int, mode: int, offset: int, length: int,
                  *_: int) -> int:
    fd = args.fd(t, fd)
    result = host.call(NR["fallocate"], fd, mode, offset, length)
    if result == 0 and mode & FALLOC_FL_COLLAPSE_RANGE:
        _file_shrunk(t, fd)
    return result


# ---- working directory, umask -------------------------------------------------------------

def sys_getcwd(t: GuestThread, buf: int, size: int, *_: int) -> int:
    cwd = t.proc.root.getcwd()
    if size < len(cwd) + 1:
        raise SyscallError(errno.ERANGE)
    t.mm.write(buf, cwd + b"\0")
    return len(cwd) + 1


def sys_chdir(t: GuestThread, path: int, *_: int) -> int:
    name = args.path(t, path)
    if t.proc.root.confined:
        t.proc.root.chdir(name)
        return 0
    dfd, p = t.proc.root.lookup(AT_FDCWD, name)
    return host.call(NR["chdir"], _p(p))


def sys_fchdir(t: GuestThread, fd: int, *_: int) -> int:
    t.proc.root.fchdir(args.fd(t, fd))
    return 0


def sys_umask(t: GuestThread, mask: int, *_: int) -> int:
    return host.call(NR["umask"], mask & 0o777)


# ---- pipes, file systems, sync -------------------------------------------------------------

def sys_pipe2(t: GuestThread, fds: int, flags: int, *_: int) -> int:
    try:
        pointer = args.out_ptr(t, fds, 8) or bad_pointer(0, 8)
    except GuestFault:
        # The host checks the flags first, then makes the pipe and fails to store it
        # (and closes it again), as Linux does.
        pointer = bad_pointer(fds, 8)
    result = host.call(NR["pipe2"], pointer, flags)
    if result == 0:
        # (from where the host wrote them: km's copy if the array spans two mappings,
        # which reaches the guest only when the call returns)
        pair = ctypes.string_at(pointer, 8)
        read_end, write_end = int.from_bytes(pair[:4], "little"), int.from_bytes(pair[4:], "little")
        if max(read_end, write_end) >= t.proc.fds.usable:
            os.close(read_end)
            os.close(write_end)
            raise SyscallError(errno.EMFILE)
    return result


def sys_pipe(t: GuestThread, fds: int, *_: int) -> int:
    return sys_pipe2(t, fds, 0)


def sys_statfs(t: GuestThread, path: int, buf: int, *_: int) -> int:
    _dfd, p = _cwd_path(t, path)
    return host.call(NR["statfs"], _p(p), args.out_ptr(t, buf, STATFS_SIZE))


def sys_fstatfs(t: GuestThread, fd: int, buf: int, *_: int) -> int:
    return host.call(NR["fstatfs"], args.fd(t, fd), args.out_ptr(t, buf, STATFS_SIZE))


def sys_sync(t: GuestThread, *_: int) -> int:
    return host.call(NR["sync"])




_MKNOD_TYPES = (0, S_IFREG, S_IFIFO, S_IFSOCK, S_IFCHR, S_IFBLK)


def sys_mknodat(t: GuestThread, dirfd: int, path: int, mode: int, dev: int, *_: int) -> int:
    # Linux checks the file type before the path (may_mknod): a directory is EPERM,
    # a type mknod cannot make EINVAL.
    kind = mode & S_IFMT
    if kind not in _MKNOD_TYPES:
        raise SyscallError(errno.EPERM if kind == S_IFDIR else errno.EINVAL)
    # Device nodes are refused, as in an unprivileged container: one would open a host
    # device behind the payload's root. Fifos, sockets and regular files are fine.
    if kind in (S_IFCHR, S_IFBLK):
        raise SyscallError(errno.EPERM)
    dfd, p = _new_name(t, dirfd, path)
    return host.call(NR["mknodat"], dfd, _p(p), mode, dev)


def sys_mknod(t: GuestThread, path: int, mode: int, dev: int, *_: int) -> int:
    return sys_mknodat(t, AT_FDCWD & 0xFFFFFFFF, path, mode, dev)


# ---- extended attributes ----------------------------------------------------------------

XATTR_SIZE_MAX = 1 << 16
XATTR_LIST_MAX = 1 << 16


def _xattr_in(t: GuestThread, value: int, size: int) -> int:
    """The host's pointer to setxattr's value. Linux refuses a size over XATTR_SIZE_MAX
    (E2BIG) before it reads the value, and reads all of it (EFAULT), after the name:
    a value km cannot use goes to the host as a pointer it faults on, in that order."""
    if not size:
        return 0
    if size > XATTR_SIZE_MAX:
        return bad_pointer(value)
    try:
        return args.in_ptr(t, value, size)
    except GuestFault:
        return bad_pointer(value, size)


def _xattr(kind: str, op: str):
    """getxattr/setxattr/listxattr/removexattr on a path (following or not) or an fd."""
    name = {"path": "", "link": "l", "fd": "f"}[kind] + op
    number = NR[name]

    def handler(t: GuestThread, target: int, a1: int, a2: int, a3: int, a4: int,
                *_: int) -> int:
        if kind == "fd":
            first = args.fd(t, target)
            path = None
        else:
            _dfd, path = _cwd_path(t, target, follow=kind == "path")
            first = _p(path)
        if op == "listxattr":
            size = min(a2, XATTR_LIST_MAX)
            return args.copied_out(t, a1, size, size,
                                   lambda pointer, n: host.call(number, first, pointer, n))
        attribute = t.mm.cstring(a1, 256)
        if op == "removexattr":
            return host.call(number, first, _p(attribute))
        if op == "setxattr":
            return host.call(number, first, _p(attribute), _xattr_in(t, a2, a3), a3, a4)
        size = min(a3, XATTR_SIZE_MAX)
        return args.copied_out(
            t, a2, size, size, lambda pointer, n: host.call(number, first, _p(attribute),
                                                            pointer, n))
    handler.__name__ = f"sys_{name}"
    return handler


HANDLERS = {
    **{("" if kind == "path" else kind[0]) + op: _xattr(kind, op)
       for kind in ("path", "link", "fd")
       for op in ("getxattr", "setxattr", "listxattr", "removexattr")},
    "open": sys_open, "creat": sys_creat, "openat": sys_openat, "openat2": sys_openat2,
    "close": sys_close, "close_range": sys_close_range,
    "dup": sys_dup, "dup2": sys_dup2, "dup3": sys_dup3,
    "fcntl": sys_fcntl, "ioctl": sys_ioctl, "flock": sys_flock,
    "stat": sys_stat, "lstat": sys_lstat, "fstat": sys_fstat, "newfstatat": sys_newfstatat,
    "statx": sys_statx, "getdents64": sys_getdents64, "getdents": sys_getdents,
    "access": sys_access, "faccessat": sys_faccessat, "faccessat2": sys_faccessat2,
    "readlink": sys_readlink, "readlinkat": sys_readlinkat,
    "mkdir": sys_mkdir, "mkdirat": sys_mkdirat, "rmdir": sys_rmdir,
    "unlink": sys_unlink, "unlinkat": sys_unlinkat,
    "rename": sys_rename, "renameat": sys_renameat, "renameat2": sys_renameat2,
    "link": sys_link, "linkat": sys_linkat, "symlink": sys_symlink, "symlinkat": sys_symlinkat,
    "chmod": sys_chmod, "fchmod": _fd_call("fchmod"), "fchmodat": sys_fchmodat,
    "chown": sys_chown, "lchown": sys_lchown, "fchown": _fd_call("fchown"),
    "fchownat": sys_fchownat,
    "truncate": sys_truncate, "ftruncate": sys_ftruncate,
    "fsync": _fd_call("fsync"), "fdatasync": _fd_call("fdatasync"),
    "syncfs": _fd_call("syncfs"), "sync": sys_sync,
    "sync_file_range": _fd_call("sync_file_range"),
    "fallocate": sys_fallocate, "fadvise64": _fd_call("fadvise64"),
    "readahead": _fd_call("readahead"),
    "getcwd": sys_getcwd, "chdir": sys_chdir, "fchdir": sys_fchdir, "umask": sys_umask,
    "pipe": sys_pipe, "pipe2": sys_pipe2,
    "statfs": sys_statfs, "fstatfs": sys_fstatfs,
    "utimensat": sys_utimensat, "utimes": sys_utimes, "utime": sys_utime,
    "futimesat": sys_futimesat,
    "mknod": sys_mknod, "mknodat": sys_mknodat,
}
