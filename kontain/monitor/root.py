"""Guest paths: the one place where a path the payload names becomes something the host
can act on. With `km --root DIR` it is the confinement boundary.

Every system call that takes a path or a unix socket address asks this resolver, which
gives back what the host call should use:

- With the host's / (no --root) a guest path is a host path, except for km's own /proc
  entries (kontain.monitor.procfs), which describe the payload instead of km.
- With --root DIR every path is resolved by the host kernel with openat2(RESOLVE_IN_ROOT
  | RESOLVE_NO_MAGICLINKS) from a descriptor on DIR: `..`, absolute symlinks and
  symlinks that change during the lookup all stay inside DIR, because the kernel treats
  DIR as / for the whole walk. The host call then names what was resolved through
  /proc/self/fd/N: the object itself when the call follows the last component, its
  parent plus the last name when it does not. A path whose last component does not
  exist is an error for a call that follows it, exactly as on Linux: no fallback ever
  hands the host a name it would follow by its own rules. open(O_CREAT) through a
  dangling symlink is openat2 itself, so the file is created inside DIR.
- Magic links (/proc/<pid>/fd/N, exe, cwd, root) are never followed by the host; the
  resolver follows those of the payload's own process the way the payload means them
  (the guest's descriptor N, its executable, its cwd, its /), and refuses the others.

The descriptors a resolution holds live in slots above the guest's descriptors, two per
host thread (a call takes at most two paths), so threads never share them. The guest's
working directory is a guest path; the host's follows it.
"""

from __future__ import annotations

import _thread
import ctypes
import errno
import os
import posixpath
import stat

from kontain.linux import hostcall as host
from kontain.linux.abi import (
    AT_FDCWD,
    O_CLOEXEC,
    O_CREAT,
    O_DIRECTORY,
    O_NOFOLLOW,
    O_PATH,
    O_TMPFILE,
    RESOLVE_BENEATH,
    RESOLVE_IN_ROOT,
    RESOLVE_NO_MAGICLINKS,
    RESOLVE_NO_SYMLINKS,
    VALID_OPEN_FLAGS,
)
from kontain.linux.numbers import NUMBERS as NR
from kontain.monitor.procfs import HostObject, is_procfs

TYPE_CHECKING = False  # no typing import at run time: km start-up is timed
if TYPE_CHECKING:
    from kontain.monitor.fdspace import FdSpace
    from kontain.monitor.procfs import ProcFs

#: Symlinks followed in one lookup before ELOOP (Linux's MAXSYMLINKS).
MAX_SYMLINKS = 40
SLOTS_PER_THREAD = 2


class OpenHow(ctypes.Structure):
    _fields_ = [("flags", ctypes.c_uint64), ("mode", ctypes.c_uint64),
                ("resolve", ctypes.c_uint64)]


#: How often openat2 is made again when the kernel saw a rename or mount race.
RACE_RETRIES = 64


def openat2(dirfd: int, path: bytes, flags: int, mode: int = 0,
            resolve: int = RESOLVE_IN_ROOT | RESOLVE_NO_MAGICLINKS) -> int:
    """openat2(2); returns the fd or -errno.

    With RESOLVE_IN_ROOT or RESOLVE_BENEATH the kernel gives EAGAIN when a rename or
    mount anywhere raced with a `..` on the way (it cannot then vouch the walk stayed
    inside): the call is made again, as the kernel asks. (A payload renaming in a loop
    would otherwise see EAGAIN from an open, which Linux never gives it.)"""
    how = OpenHow(flags, mode, resolve)
    # bytes objects are NUL-terminated in memory; `path` stays alive across the call.
    for _attempt in range(RACE_RETRIES):
        fd = host.syscall(NR["openat2"], dirfd, host.address_of(path), ctypes.addressof(how),
                          ctypes.sizeof(how))
        if fd != -errno.EAGAIN:
            break
    return fd


def _error(code: int, what: bytes | str = "") -> OSError:
    return OSError(code, os.strerror(code), what)


class _Slots:
    """One host thread's parking places for resolved descriptors."""

    def __init__(self, fds: FdSpace) -> None:
        self.fds = [fds.move_high(os.open("/", O_PATH | O_CLOEXEC))
                    for _ in range(SLOTS_PER_THREAD)]

    def __del__(self) -> None:  # the host thread ended
        for fd in self.fds:
            try:
                os.close(fd)
            except OSError:
                pass


class PayloadRoot:
    """How guest paths become host paths (see the module docstring)."""

    def __init__(self, directory: str, fds: FdSpace, host_directory: str | None = None) -> None:
        self.directory = os.path.realpath(directory)
        self.confined = self.directory != "/"
        #: The root's path on the host, for messages (it differs inside km's jail).
        self.host_directory = host_directory or self.directory
        self._root_bytes = os.fsencode(self.directory)
        self._fds = fds
        self._local = _thread._local()
        self.procfs: ProcFs | None = None  # set by the process once both exist
        self.fd = -1
        #: The guest's working directory (a guest path) when confined.
        self.cwd = b"/"
        if self.confined:
            fd = os.open(self.directory, O_PATH | O_DIRECTORY | O_CLOEXEC)
            self.fd = fds.move_high(fd)
            # Inside the root already (a km exec'd by a payload in it): keep that cwd.
            guest = self.guest_path_of_host(os.getcwdb())
            if guest is not None:
                self.cwd = guest
            else:
                os.chdir(self.directory)

    # ---- guest paths ------------------------------------------------------------------

    def guest_path_of_host(self, host_path: bytes) -> bytes | None:
        """A host path as the guest names it: None when it is outside the root."""
        if not self.confined:
            return host_path
        root = self._root_bytes
        if host_path == root:
            return b"/"
        if host_path.startswith(root + b"/"):
            return host_path[len(root):]
        return None

    def guest_path_of_fd(self, fd: int) -> bytes | None:
        try:
            return self.guest_path_of_host(os.readlink(b"/proc/self/fd/%d" % fd))
        except OSError:
            return None

    def getcwd(self) -> bytes:
        return self.cwd if self.confined else os.getcwdb()

    def _absolute(self, dirfd: int, path: bytes) -> bytes:
        """The guest absolute path of path (relative to dirfd or the cwd)."""
        if path.startswith(b"/"):
            return path
        if dirfd == AT_FDCWD:
            base = self.getcwd()
        else:
            base = self.guest_path_of_fd(dirfd)
            if base is None:
                # A descriptor from outside the root (inherited): nothing it leads to
                # can be named inside the root.
                raise _error(errno.EACCES, path)
        return base.rstrip(b"/") + b"/" + path if path else base

    def _own_entry(self, dirfd: int, path: bytes) -> bytes | None:
        """Our own /proc entry, if path spells one (for the unconfined fast path)."""
        if self.procfs is None or not path.startswith(b"/proc"):
            return None
        return self.procfs.own_entry(path)

    # ---- resolution -------------------------------------------------------------------

    def _slot(self, index: int) -> int:
        slots = getattr(self._local, "slots", None)
        if slots is None:
            slots = self._local.slots = _Slots(self._fds)
        return slots.fds[index]

    def _park(self, fd: int, slot: int) -> bytes:
        """Keep a resolved descriptor in this thread's slot; name it for the host."""
        place = self._slot(slot)
        os.dup2(fd, place, inheritable=False)
        os.close(fd)
        return b"/proc/self/fd/%d" % place

    def _open_in_root(self, path: bytes, flags: int, mode: int = 0, extra: int = 0) -> int:
        """openat2 of a guest absolute path inside the root; following our own magic
        links the way the payload means them. Returns an fd (raises OSError)."""
        fd = openat2(self.fd, path, flags, mode, RESOLVE_IN_ROOT | RESOLVE_NO_MAGICLINKS | extra)
        if fd >= 0:
            return fd
        if fd != -errno.ELOOP or extra & RESOLVE_NO_SYMLINKS:
            raise _error(-fd, path)
        # A magic link on the way, or a real loop: km walks the path itself, link by
        # link (40 at most in all, as Linux), then opens what it found with no link
        # left to follow. A link that appears meanwhile makes that fail: walk again.
        for _attempt in range(3):
            resolved = self._walk(path, bool(flags & O_NOFOLLOW))
            fd = openat2(self.fd, resolved, flags, mode, RESOLVE_IN_ROOT
                         | RESOLVE_NO_MAGICLINKS | RESOLVE_NO_SYMLINKS | extra)
            if fd != -errno.ELOOP:
                break
        if fd < 0:
            raise _error(-fd, path)
        return fd

    def _walk(self, path: bytes, nofollow_last: bool) -> bytes:
        """path with every symlink and magic link along it replaced by its target: a
        guest path with none left (but a last component kept as is if nofollow_last)."""
        pending = [p for p in path.split(b"/") if p]
        done = b"/"
        hops = 0
        while pending:
            part = pending.pop(0)
            if part == b".":
                continue
            if part == b"..":
                done = posixpath.dirname(done)
                continue
            here = posixpath.join(done, part)
            if not pending and nofollow_last:
                return here
            fd = openat2(self.fd, here, O_PATH | O_NOFOLLOW | O_CLOEXEC, 0,
                         RESOLVE_IN_ROOT | RESOLVE_NO_MAGICLINKS | RESOLVE_NO_SYMLINKS)
            if fd < 0:
                raise _error(-fd, path)
            try:
                if not stat.S_ISLNK(os.fstat(fd).st_mode):
                    done = here
                    continue
                hops += 1
                if hops > MAX_SYMLINKS:
                    raise _error(errno.ELOOP, path)
                if is_procfs(fd):
                    target = self._magic(fd, final=not pending)
                else:
                    target = os.readlink(b"", dir_fd=fd)
            finally:
                os.close(fd)
            if target.startswith(b"/"):
                done = b"/"
            pending[:0] = [p for p in target.split(b"/") if p]
        return done

    def _magic(self, fd: int, final: bool) -> bytes:
        """Where a procfs link leads: ours as the payload means it; others' are refused.
        (self, thread-self, mounts and net are plain symlinks and are read as such.)"""
        assert self.procfs is not None
        entry = self.procfs.classify(fd)
        if entry is None:
            target = os.readlink(b"", dir_fd=fd)
            if target.startswith(b"/") or b":" in target:
                raise _error(errno.EACCES, b"a link of another process")
            return target  # relative to the directory it is in, as any symlink
        target = self.procfs.magic_target(entry, final=final)
        if target is None:  # not a magic link of ours
            return os.readlink(b"", dir_fd=fd)
        return target

    def _guard(self, fd: int) -> int:
        """A descriptor resolved or opened for the guest: if it is on procfs, it must
        not be one of km's own entries (kontain.monitor.procfs). Returns fd, or raises
        after closing it."""
        if self.procfs is None or not is_procfs(fd):
            return fd
        try:
            entry = self.procfs.classify(fd)
        except OSError:
            os.close(fd)
            raise
        if entry is not None:
            os.close(fd)
            raise _OwnEntry(entry)
        return fd

    def lookup(self, dirfd: int, path: bytes, follow: bool = True,
               slot: int = 0) -> tuple[int, bytes]:
        """(host dirfd, host path) for a host *at() call on what a guest path names.

        follow: whether the call follows a symlink in the last component. Raises
        OSError with the errno Linux would give (ENOENT, ELOOP, EACCES, ...)."""
        if not path:
            raise _error(errno.ENOENT, path)  # (AT_EMPTY_PATH is the caller's business)
        if not self.confined:
            entry = self._own_entry(dirfd, path)
            if entry is None:
                return dirfd, path
            return AT_FDCWD, self._own_path(entry, follow)
        full = self._absolute(dirfd, path)
        if self.procfs is not None:
            entry = self.procfs.own_entry(full)
            if entry is not None and not self._has_proc():
                return AT_FDCWD, self._own_path(entry, follow)
        parent, name = posixpath.split(full.rstrip(b"/") or b"/")
        if follow or name in (b"", b".", b".."):
            # The object itself, named through its descriptor. A call that does not
            # follow links must still see a directory here (`lstat /`), not the
            # descriptor's magic link: hence the trailing `/.` for those.
            suffix = b"" if follow else b"/."
            try:
                return AT_FDCWD, self._park(self._guard(
                    self._open_in_root(full, O_PATH | O_CLOEXEC)), slot) + suffix
            except _OwnEntry as own:
                return AT_FDCWD, self._own_path(own.entry, True)
            except HostObject as obj:
                return AT_FDCWD, obj.path
        try:
            parent_fd = self._guard(self._open_in_root(parent, O_PATH | O_DIRECTORY | O_CLOEXEC))
        except _OwnEntry as own:
            return AT_FDCWD, self._own_path(own.entry + b"/" + name if own.entry else name,
                                            False)
        return AT_FDCWD, self._park(parent_fd, slot) + b"/" + name

    def _has_proc(self) -> bool:
        """Whether the root has a procfs at /proc (else /proc/self is km's own help)."""
        fd = openat2(self.fd, b"/proc", O_PATH | O_DIRECTORY | O_CLOEXEC)
        if fd < 0:
            return False
        try:
            return is_procfs(fd)
        finally:
            os.close(fd)

    def _own_path(self, entry: bytes, follow: bool) -> bytes:
        """The host path of one of our own /proc entries, for calls that only look at
        it (stat, access, ...): the same object in km's own /proc, or where our magic
        links lead when the call goes through one."""
        assert self.procfs is not None
        split = self.procfs.split_magic(entry)
        if split is not None and (follow or split[1]):
            try:
                target = self.procfs.magic_target(entry, final=True)
            except HostObject as obj:
                return obj.path
            assert target is not None
            return self.lookup(AT_FDCWD, target, follow, 1)[1]
        # By pid, not /proc/self: a call that does not follow links must find the
        # directory itself when entry is empty.
        own = b"/proc/%d" % os.getpid()
        return own + b"/" + entry if entry else own

    def resolve(self, path: bytes, follow: bool = True, slot: int = 0) -> bytes:
        """The host path of a guest path (for calls without a directory argument)."""
        return self.lookup(AT_FDCWD, path, follow, slot)[1]

    # ---- open -------------------------------------------------------------------------

    def open(self, dirfd: int, path: bytes, flags: int, mode: int, resolve: int = 0) -> int:
        """open/openat/openat2 of a guest path; returns the new host fd (raises OSError).

        resolve: the guest's own openat2 RESOLVE_* flags, which apply on top."""
        if not path:
            raise _error(errno.ENOENT, path)
        flags &= VALID_OPEN_FLAGS  # openat2 refuses bits open(2) would ignore
        if flags & O_PATH:  # (musl adds O_LARGEFILE, which O_PATH opens ignore)
            flags &= O_PATH | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC
        if not flags & (O_CREAT | O_TMPFILE):
            mode = 0
        mode &= 0o7777
        if not self.confined:
            entry = self._own_entry(dirfd, path)
            if entry is not None:
                return self._open_own(entry, flags)
            if resolve:
                fd = openat2(dirfd, path, flags, mode, resolve)
            else:
                fd = host.syscall(NR["openat"], dirfd, host.address_of(path), flags, mode)
            if fd < 0:
                raise _error(-fd, path)
        else:
            if resolve & (RESOLVE_BENEATH | RESOLVE_IN_ROOT) and dirfd != AT_FDCWD:
                # The guest confines the lookup to its own directory (inside the root).
                if self.guest_path_of_fd(dirfd) is None:
                    raise _error(errno.EACCES, path)
                fd = openat2(dirfd, path, flags, mode, resolve | RESOLVE_NO_MAGICLINKS)
                if fd < 0:
                    raise _error(-fd, path)
            else:
                full = self._absolute(dirfd, path)
                if self.procfs is not None:
                    entry = self.procfs.own_entry(full)
                    if entry is not None and not self._has_proc():
                        return self._open_own(entry, flags)
                try:
                    fd = self._open_in_root(full, flags, mode,
                                            resolve & ~(RESOLVE_IN_ROOT | RESOLVE_BENEATH))
                except HostObject as obj:
                    fd = os.open(obj.path, flags & ~O_CREAT)
        try:
            return self._guard(fd)
        except _OwnEntry as own:
            return self._open_own(own.entry, flags)

    def _open_own(self, entry: bytes, flags: int) -> int:
        assert self.procfs is not None
        try:
            target = self.procfs.magic_target(entry, final=True)
        except HostObject as obj:
            return os.open(obj.path, flags & ~O_CREAT)
        if target is not None:
            return self.open(AT_FDCWD, target, flags & ~O_CREAT, 0)
        return self.procfs.open_own(entry, flags)

    # ---- special calls ----------------------------------------------------------------

    def readlink(self, dirfd: int, path: bytes) -> bytes | None:
        """readlink of one of our own /proc links, as the payload sees it; None for any
        other path (the caller asks the host)."""
        if self.procfs is None:
            return None
        if not self.confined:
            entry = self._own_entry(dirfd, path)
            if entry is not None:
                return self.procfs.readlink_own(entry)
            # Reached another way (relative to a directory in /proc, through a symlink):
            # what decides is the directory the link is in.
            parent, name = posixpath.split(path)
            try:
                fd = os.open(parent or b".", O_PATH | O_DIRECTORY | O_CLOEXEC,
                             dir_fd=None if dirfd == AT_FDCWD else dirfd)
            except OSError:
                return None
            try:
                entry = self.procfs.classify(fd) if is_procfs(fd) else None
            finally:
                os.close(fd)
            return None if entry is None else self.procfs.readlink_own(
                entry + b"/" + name if entry else name)
        full = self._absolute(dirfd, path)
        entry = self.procfs.own_entry(full)
        if entry is not None and not self._has_proc():
            return self.procfs.readlink_own(entry)
        parent, name = posixpath.split(full.rstrip(b"/") or b"/")
        try:
            fd = self._guard(self._open_in_root(parent, O_PATH | O_DIRECTORY | O_CLOEXEC))
        except _OwnEntry as own:
            return self.procfs.readlink_own(own.entry + b"/" + name if own.entry else name)
        os.close(fd)
        return None

    def chdir(self, path: bytes) -> None:
        """chdir of a guest path (confined): the host's cwd follows."""
        full = self._absolute(AT_FDCWD, path)
        fd = self._open_in_root(full, O_PATH | O_DIRECTORY | O_CLOEXEC)
        try:
            guest = self.guest_path_of_fd(fd)
            if guest is None:
                raise _error(errno.ENOENT, path)
            os.fchdir(fd)
        finally:
            os.close(fd)
        self.cwd = guest

    def fchdir(self, fd: int) -> None:
        """fchdir to a guest descriptor: it must be a directory inside the root."""
        guest = self.guest_path_of_fd(fd) if self.confined else b""
        if guest is None:
            raise _error(errno.EACCES, b"a directory outside the root")
        os.fchdir(fd)
        if self.confined:
            self.cwd = guest

    def unix_address(self, path: bytes, creating: bool) -> bytes:
        """The host sun_path for a guest unix socket path (bind creates the last
        component; connect and sendto follow it)."""
        if not self.confined:
            return path
        return self.resolve(path, follow=not creating)


class _OwnEntry(Exception):
    """A resolved object turned out to be one of km's own /proc entries."""

    def __init__(self, entry: bytes) -> None:
        super().__init__(entry)
        self.entry = entry


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
