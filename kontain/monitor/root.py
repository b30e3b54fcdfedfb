"""The payload's root directory (`km --root DIR`): every guest path resolves inside DIR.

With the default root (the host's /) guest paths are host paths and nothing is done.
Otherwise each path is resolved by the host kernel with openat2(RESOLVE_IN_ROOT) from
a descriptor on DIR: `..`, absolute symlinks and symlinks racing with the lookup all
stay inside DIR, because the kernel itself treats DIR as `/` for the whole walk. The
syscall then runs on what was resolved, named through /proc/self/fd/N:

- a path whose last component is followed (stat, open, chdir, execve...) becomes the
  descriptor of the object itself;
- a path whose last component is not followed, or does not exist yet (lstat, unlink,
  rename, mkdir, symlink, bind...), becomes its parent's descriptor plus that one
  name, which the host looks up inside the parent without following it.

The guest's working directory is kept as a guest path; the host's follows it.
"""

from __future__ import annotations

import ctypes
import errno
import os
import posixpath

from kontain.linux import hostcall as host
from kontain.linux.numbers import NUMBERS as NR

TYPE_CHECKING = False  # no typing import at run time: km start-up is timed
if TYPE_CHECKING:
    from kontain.monitor.fdspace import FdSpace

O_PATH = 0o10000000
O_NOFOLLOW = 0o400000
O_DIRECTORY = 0o200000
O_CLOEXEC = 0o2000000
O_CREAT, O_TMPFILE = 0o100, 0o20200000
VALID_OPEN_FLAGS = 0o37777703
RESOLVE_NO_MAGICLINKS, RESOLVE_IN_ROOT = 0x02, 0x10
#: Descriptors km keeps per thread for resolved paths (reused by each resolution).
SCRATCH_SLOTS = 4


class OpenHow(ctypes.Structure):
    _fields_ = [("flags", ctypes.c_uint64), ("mode", ctypes.c_uint64),
                ("resolve", ctypes.c_uint64)]


def openat2(dirfd: int, path: bytes, flags: int, mode: int = 0,
            resolve: int = RESOLVE_IN_ROOT | RESOLVE_NO_MAGICLINKS) -> int:
    """openat2(2); returns the fd or -errno."""
    how = OpenHow(flags, mode, resolve)
    # bytes objects are NUL-terminated in memory; `path` stays alive across the call.
    return host.syscall(NR["openat2"], dirfd, host.address_of(path), ctypes.addressof(how),
                        ctypes.sizeof(how))


class PayloadRoot:
    """How guest paths become host paths."""

    def __init__(self, directory: str, fds: FdSpace) -> None:
        self.directory = os.path.realpath(directory)
        self.confined = self.directory != "/"
        self.cwd = b"/"
        self._fds = fds
        self.fd = -1
        self._scratch: list[int] = []
        self._next = 0
        if self.confined:
            fd = os.open(self.directory, O_PATH | O_DIRECTORY | O_CLOEXEC)
            self.fd = fds.move_high(fd)
            self._scratch = [fds.move_high(os.open("/", O_PATH | O_CLOEXEC))
                             for _ in range(SCRATCH_SLOTS)]
            # Inside the root already (a km exec'd by a payload in it): keep that cwd.
            host_cwd, root = os.getcwdb(), os.fsencode(self.directory)
            if host_cwd == root or host_cwd.startswith(root + b"/"):
                self.cwd = self.guest_path_of_host(host_cwd)
            else:
                os.chdir(self.directory)

    def guest_absolute(self, path: bytes) -> bytes:
        return path if path.startswith(b"/") else posixpath.join(self.cwd, path)

    def _hold(self, fd: int) -> bytes:
        """Park a resolved descriptor in a scratch slot; name it for the host."""
        slot = self._scratch[self._next % SCRATCH_SLOTS]
        self._next += 1
        os.dup2(fd, slot)
        os.close(fd)
        return b"/proc/self/fd/%d" % slot

    def resolve(self, path: bytes, follow: bool = True) -> bytes:
        """The host name of a guest path (see the module docstring)."""
        if not self.confined:
            return path
        full = self.guest_absolute(path)
        if follow:
            fd = openat2(self.fd, full, O_PATH | O_CLOEXEC)
            if fd >= 0:
                return self._hold(fd)
            if fd != -errno.ENOENT:
                raise OSError(-fd, os.strerror(-fd))
        parent, name = posixpath.split(full.rstrip(b"/") or b"/")
        if not name:  # the root itself
            return self._hold(os.dup(self.fd))
        fd = openat2(self.fd, parent or b"/", O_PATH | O_DIRECTORY | O_CLOEXEC)
        if fd < 0:
            raise OSError(-fd, os.strerror(-fd))
        if name == b"..":  # never lets the last component climb out
            return self._hold(fd)
        return self._hold(fd) + b"/" + name

    def open(self, path: bytes, flags: int, mode: int) -> int:
        """open(2) of a guest path, confined; returns the fd or -errno."""
        flags &= VALID_OPEN_FLAGS  # openat2 refuses bits open(2) would ignore
        if not flags & (O_CREAT | O_TMPFILE):
            mode = 0
        return openat2(self.fd, self.guest_absolute(path), flags, mode & 0o7777)

    def chdir(self, path: bytes) -> int:
        target = self.guest_absolute(path)
        fd = openat2(self.fd, target, O_PATH | O_DIRECTORY | O_CLOEXEC)
        if fd < 0:
            return fd
        try:
            os.fchdir(fd)
        finally:
            os.close(fd)
        self.cwd = self._canonical(target)
        return 0

    def _canonical(self, path: bytes) -> bytes:
        """The guest path of what path names (symlinks resolved inside the root)."""
        fd = openat2(self.fd, path, O_PATH | O_CLOEXEC)
        if fd < 0:
            return posixpath.normpath(path)
        try:
            return self.guest_path_of_host(os.readlink(b"/proc/self/fd/%d" % fd))
        finally:
            os.close(fd)

    def guest_path_of_host(self, host_path: bytes) -> bytes:
        """A host path inside the root, as the guest names it."""
        root = os.fsencode(self.directory)
        if host_path == root:
            return b"/"
        if host_path.startswith(root + b"/"):
            return host_path[len(root):]
        return host_path


def host_path_in_root(directory: str, guest_path: str, search_path: str | None) -> str:
    """The host path of a payload named inside a root (searched in PATH when it has no
    slash, as km does outside one). Raises FileNotFoundError."""
    root = os.path.realpath(directory)
    candidates = [guest_path] if "/" in guest_path else [
        posixpath.join(d or "/", guest_path) for d in (search_path or "/usr/bin:/bin").split(":")]
    fd = os.open(root, O_PATH | O_DIRECTORY | O_CLOEXEC)
    try:
        for candidate in candidates:
            found = openat2(fd, os.fsencode(candidate), O_PATH | O_CLOEXEC)
            if found >= 0:
                try:
                    return os.readlink(f"/proc/self/fd/{found}")
                finally:
                    os.close(found)
    finally:
        os.close(fd)
    raise FileNotFoundError(guest_path)
