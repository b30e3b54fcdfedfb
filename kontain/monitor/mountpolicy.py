"""km --policy's files: read_only, writable, hidden, tmpfs, mounts, as a mount namespace
of km's own, built before km's jail (kontain.monitor.jail), which keeps it.

The payload's root is changed in place, in a namespace no other process sees: the host
kernel then gives exactly what Linux gives on such mounts (EROFS on a read-only one,
ENOSPC on a full tmpfs), for every call and every path that reaches them, symlinks and
`..` included. In order:

1. read_only: True makes the whole root read-only (recursively: mount_setattr); paths,
   those only (each bound onto itself, then read-only);
2. tmpfs: a new, empty tmpfs on each path (tmpfs_size each; default 64 MiB);
3. writable: each path bound (from the host's tree as it was before 2: a writable
   directory under a tmpfs path gets a mount point made in that tmpfs) and made
   writable again;
4. mounts: each host path bound at its guest path (which must exist), "ro" or "rw";
5. hidden: a directory gets an empty read-only tmpfs over it, a file an empty read-only
   file: nothing of theirs can be read.

Guest paths are resolved inside the root by the kernel (openat2 RESOLVE_IN_ROOT), and
mounts are made on the descriptor that resolution gave: a symlink in the root cannot
send a mount outside it. Needs root (CAP_SYS_ADMIN): without it km refuses to start,
rather than run the payload without the file policy.
"""

from __future__ import annotations

import ctypes
import errno
import os
import stat
import struct

from kontain.linux import hostcall as host
from kontain.linux.abi import CLONE_NEWNS, O_CLOEXEC, O_PATH
from kontain.linux.numbers import NUMBERS as NR
from kontain.monitor.jail import MS_BIND, MS_NODEV, MS_NOSUID, MS_REC
from kontain.monitor.jail import _mount as mount
from kontain.monitor.root import openat2

TYPE_CHECKING = False  # no typing import at run time: km start-up is timed
if TYPE_CHECKING:
    from kontain.monitor.policy import Policy

MS_PRIVATE = 0x40000
MNT_DETACH = 2
AT_EMPTY_PATH, AT_RECURSIVE = 0x1000, 0x8000
MOUNT_ATTR_RDONLY = 0x1
DEFAULT_TMPFS_SIZE = 64 << 20
_libc = ctypes.CDLL(None, use_errno=True)


def _set_read_only(fd: int, read_only: bool) -> None:
    """Every mount at and under fd read-only (or writable again)."""
    attr = struct.pack("<QQQQ", MOUNT_ATTR_RDONLY if read_only else 0,
                       0 if read_only else MOUNT_ATTR_RDONLY, 0, 0)
    buffer = ctypes.create_string_buffer(attr, len(attr))
    result = host.syscall(NR["mount_setattr"], fd, host.address_of(b""),
                          AT_EMPTY_PATH | AT_RECURSIVE, ctypes.addressof(buffer), len(attr))
    if result < 0:
        raise OSError(-result, f"mount_setattr: {os.strerror(-result)}")


def _set_read_only_at(view: _View, path: str, read_only: bool) -> None:
    """_set_read_only on the mount at path in the payload's view."""
    fd = view.open(path)
    try:
        _set_read_only(fd, read_only)
    finally:
        os.close(fd)


class _View:
    def __init__(self, root: str) -> None:
        self.root = root
        self.root_fd = os.open(root, O_PATH | O_CLOEXEC)

    def open(self, guest_path: str) -> int:
        """An O_PATH descriptor on guest_path, resolved inside the root."""
        fd = openat2(self.root_fd, os.fsencode(guest_path), O_PATH | O_CLOEXEC)
        if fd < 0:
            raise OSError(-fd, f"{guest_path}: {os.strerror(-fd)} (in the payload's root)")
        return fd

    @staticmethod
    def name(fd: int) -> bytes:
        return b"/proc/self/fd/%d" % fd

    def mount_point(self, guest_path: str, source: int) -> int:
        """A descriptor on guest_path, made (as source's kind) if a tmpfs of the payload's
        covers it now; only there: km never creates anything in the payload's root."""
        try:
            return self.open(guest_path)
        except FileNotFoundError:
            pass
        parent, _, name = guest_path.rstrip("/").rpartition("/")
        fd = self.mount_point(parent or "/", -1)
        try:
            directory = source < 0 or stat.S_ISDIR(os.stat(self.name(source)).st_mode)
            if not _on_tmpfs(self.name(fd)):
                raise OSError(errno.ENOENT, f"{guest_path}: no such mount point in the root")
            if directory:
                os.mkdir(name, 0o755, dir_fd=fd)
            else:
                os.close(os.open(name, os.O_CREAT | os.O_WRONLY | O_CLOEXEC, 0o644, dir_fd=fd))
        finally:
            os.close(fd)
        return self.open(guest_path)

    def bind_self(self, guest_path: str) -> int:
        """guest_path bound onto itself (a mount of its own); returns a descriptor on
        the new mount."""
        fd = self.open(guest_path)
        try:
            mount(self.name(fd), self.name(fd), None, MS_BIND | MS_REC)
        finally:
            os.close(fd)
        return self.open(guest_path)


def prepare(policy: Policy, root: str) -> str:
    """Build the payload's view of root (see the module docstring); returns the root."""
    if os.geteuid() != 0:
        raise OSError(errno.EPERM, "read_only, writable, hidden, tmpfs and mounts need "
                                   "km to run as root (a mount namespace of its own)")
    result = host.syscall(NR["unshare"], CLONE_NEWNS)
    if result < 0:
        raise OSError(-result, f"unshare: {os.strerror(-result)}")
    mount(None, b"/", None, MS_REC | MS_PRIVATE)
    root = os.path.realpath(root)
    if root != "/":  # (the root becomes a mount of its own, to be made read-only)
        mount(os.fsencode(root), os.fsencode(root), None, MS_BIND | MS_REC)
    view = _View(root)
    try:
        _build(policy, view)
    finally:
        os.close(view.root_fd)
    return root


def _build(policy: Policy, view: _View) -> None:
    if policy.read_only is True:
        _set_read_only_at(view, "/", True)
    elif policy.read_only:
        for path in policy.read_only:
            fd = view.bind_self(path)
            try:
                _set_read_only(fd, True)
            finally:
                os.close(fd)
    # Writable paths are taken before a tmpfs may cover them (a writable directory
    # under /tmp stays the host's, inside the payload's private /tmp).
    writable = [(path, view.open(path)) for path in policy.writable or ()]
    try:
        size = policy.tmpfs_size or DEFAULT_TMPFS_SIZE
        for path in policy.tmpfs or ():
            fd = view.open(path)
            try:
                _libc_mount(b"tmpfs", view.name(fd), b"tmpfs", MS_NOSUID | MS_NODEV,
                            b"mode=1777,size=%d" % size)
            finally:
                os.close(fd)
        for path, source in writable:
            fd = view.mount_point(path, source)
            try:
                mount(view.name(source), view.name(fd), None, MS_BIND | MS_REC)
            finally:
                os.close(fd)
            _set_read_only_at(view, path, False)
    finally:
        for _path, source in writable:
            os.close(source)
    for target, (source, mode) in (policy.mounts or {}).items():
        fd = view.open(target)
        try:
            mount(os.fsencode(source), view.name(fd), None, MS_BIND | MS_REC)
        finally:
            os.close(fd)
        if mode == "ro":
            _set_read_only_at(view, target, True)
    if policy.hidden:
        _hide(policy.hidden, view)


def _hide(paths: tuple[str, ...], view: _View) -> None:
    empty_file = None
    staging = None
    try:
        for path in paths:
            try:
                fd = view.open(path)
            except OSError as e:
                if e.errno == errno.ENOENT:
                    continue  # nothing there to hide
                raise
            try:
                target = view.name(fd)
                if stat.S_ISDIR(os.stat(target).st_mode):
                    _libc_mount(b"tmpfs", target, b"tmpfs", MS_NOSUID | MS_NODEV,
                                b"mode=000,size=4k")
                else:
                    if empty_file is None:
                        staging, empty_file = _empty_file()
                    mount(empty_file, target, None, MS_BIND)
            finally:
                os.close(fd)
            _set_read_only_at(view, path, True)
    finally:
        if staging is not None:  # (the bound file stays: its tmpfs lives on with it)
            _libc.umount2(staging, MNT_DETACH)


def _empty_file() -> tuple[bytes, bytes]:
    """An empty, mode 000 file on a small tmpfs mounted for a moment on a directory of
    km's namespace (unmounted again once the hidden files are bound to it)."""
    staging = next(p for p in (b"/mnt", b"/tmp", b"/var/tmp", b"/dev") if os.path.isdir(p))
    _libc_mount(b"tmpfs", staging, b"tmpfs", MS_NOSUID | MS_NODEV, b"size=4k")
    path = staging + b"/hidden"
    os.close(os.open(path, os.O_CREAT | os.O_WRONLY | O_CLOEXEC, 0))
    return staging, path


def _on_tmpfs(path: bytes) -> bool:
    TMPFS_MAGIC = 0x01021994
    buffer = ctypes.create_string_buffer(120)
    _libc.statfs.argtypes = [ctypes.c_char_p, ctypes.c_void_p]
    if _libc.statfs(path, buffer) != 0:
        return False
    return struct.unpack_from("<q", buffer.raw)[0] == TMPFS_MAGIC


def _libc_mount(source: bytes, target: bytes, fstype: bytes, flags: int, data: bytes) -> None:
    _libc.mount.argtypes = [ctypes.c_char_p, ctypes.c_char_p, ctypes.c_char_p,
                            ctypes.c_ulong, ctypes.c_char_p]
    if _libc.mount(source, target, fstype, flags, data) != 0:
        err = ctypes.get_errno()
        raise OSError(err, f"mount {target.decode(errors='replace')}: {os.strerror(err)}")

