"""System call handlers of the fs family (kontain/syscalls/fs.py) without KVM: open and
openat2, close and close_range, dup*, fcntl, ioctl, flock, the stat family, getdents,
access, links and directories, permissions and ownership, times, sizes and sync, the
working directory and umask, pipes, statfs, mknod and extended attributes.

Linux is the oracle: each case is also made natively by this process on its own files in
tmp_path (and on host memory laid out as the guest's is), and km must give the same
result, errno and structure bytes. Every path and file lives under tmp_path; the
process's cwd and umask are restored after the tests that change them.
"""

from __future__ import annotations

import ctypes
import errno
import fcntl
import os
import stat
import struct

import pytest
from harness import Guest, make_process, make_thread
from oracle import (
    BAD,
    HOLE,
    MASK64,
    PAGE,
    RO,
    RW,
    Twin,
    call,
    host,
    hostile_registers_leave_km_untouched,
    native,
)

from kontain.syscalls import fs as family

AT_FDCWD = -100 & 0xFFFFFFFF
AT_SYMLINK_NOFOLLOW, AT_REMOVEDIR, AT_SYMLINK_FOLLOW, AT_EMPTY_PATH = 0x100, 0x200, 0x400, 0x1000
STAT_SIZE, STATX_SIZE = 144, 256


def hstr(path: str | os.PathLike | bytes) -> int:
    return host(os.fsencode(path))


@pytest.fixture
def thread():
    return make_thread(make_process())


@pytest.fixture
def guest(thread):
    return Guest(thread)


@pytest.fixture
def twin(thread):
    made: list[Twin] = []

    def make(prots: list[int | None], data: bytes = b"") -> Twin:
        made.append(Twin(thread, prots, data))
        return made[-1]
    yield make
    for t in made:
        t.close()


@pytest.fixture
def fds():
    """Descriptors a test opens, closed after it (whichever are still open)."""
    opened: list[int] = []
    yield opened
    for fd in opened:
        try:
            os.close(fd)
        except OSError:
            pass


@pytest.fixture
def in_tmp(tmp_path, monkeypatch):
    """The process works in tmp_path (restored after), for relative paths and chdir."""
    monkeypatch.chdir(tmp_path)
    return tmp_path


def closed_fd() -> int:
    """A descriptor number that is not open (in this process, hence in the guest)."""
    fd = os.open(os.devnull, os.O_RDONLY)
    os.close(fd)
    return fd


def both(thread, guest, name: str, *args) -> tuple[int, int]:
    """(km's answer, Linux's answer) to one call. Arguments are ints, or paths and byte
    strings (bytes/str/PathLike), which each side gets in its own memory."""
    def side(for_guest: bool) -> list[int]:
        out = []
        for a in args:
            if isinstance(a, int):
                out.append(a)
            elif isinstance(a, bytes):
                out.append(guest.put(a) if for_guest else host(a))
            else:
                out.append(guest.string(a) if for_guest else hstr(a))
        return out
    return call(thread, name, *side(True)), native(name, *side(False))


def same(thread, guest, name: str, *args) -> int:
    """km and Linux answer one call alike; that answer."""
    km, linux = both(thread, guest, name, *args)
    assert km == linux, f"{name}: km {km}, Linux {linux}"
    return km


# ---- open, openat, openat2, creat --------------------------------------------------------

def test_open_creates_files_as_linux_does(thread, guest, tmp_path, fds):
    fd = call(thread, "openat", AT_FDCWD, guest.string(tmp_path / "km"),
              os.O_CREAT | os.O_RDWR | os.O_EXCL, 0o640)
    nfd = native("openat", AT_FDCWD, hstr(tmp_path / "linux"),
                 os.O_CREAT | os.O_RDWR | os.O_EXCL, 0o640)
    fds += [fd, nfd]
    assert fd >= 0 and nfd >= 0
    km, linux = os.fstat(fd), os.fstat(nfd)
    assert (km.st_mode, km.st_uid, km.st_size) == (linux.st_mode, linux.st_uid, linux.st_size)
    assert fcntl.fcntl(fd, fcntl.F_GETFL) == fcntl.fcntl(nfd, fcntl.F_GETFL)
    c = call(thread, "creat", guest.string(tmp_path / "km"), 0o600)
    fds.append(c)
    assert c >= 0 and fcntl.fcntl(c, fcntl.F_GETFL) & os.O_ACCMODE == os.O_WRONLY
    o = call(thread, "open", guest.string(tmp_path / "km"), os.O_RDONLY | os.O_CLOEXEC, 0)
    fds.append(o)
    assert o >= 0 and fcntl.fcntl(o, fcntl.F_GETFD) == fcntl.FD_CLOEXEC
    assert same(thread, guest, "open", tmp_path / "none", os.O_RDONLY, 0) == -errno.ENOENT


@pytest.mark.parametrize("flags", [
    os.O_RDONLY, os.O_CREAT | os.O_EXCL | os.O_WRONLY, os.O_DIRECTORY, os.O_CREAT | os.O_DIRECTORY,
    os.O_TMPFILE | os.O_RDONLY, os.O_WRONLY | os.O_TRUNC, os.O_RDONLY | os.O_NOFOLLOW,
    os.O_PATH, 0o4, 3])
@pytest.mark.parametrize("target", ["file", "dir", "missing", "link"])
def test_open_errors_are_linux_errors(thread, guest, tmp_path, fds, flags, target):
    (tmp_path / "file").write_bytes(b"x")
    (tmp_path / "dir").mkdir()
    (tmp_path / "link").symlink_to("file")
    path = tmp_path / target
    km = call(thread, "openat", AT_FDCWD, guest.string(path), flags, 0o600)
    if km >= 0:
        fds.append(km)
        if target == "missing":
            os.unlink(path)  # created by km: let Linux create it again
    linux = native("openat", AT_FDCWD, hstr(path), flags, 0o600)
    if linux >= 0:
        fds.append(linux)
    assert (km >= 0, km if km < 0 else 0) == (linux >= 0, linux if linux < 0 else 0)


def test_open_paths_are_checked(thread, twin, tmp_path, fds):
    """NULL, unmapped, unterminated before a hole, a name ending on the last byte of
    a mapping, and the PATH_MAX limit."""
    name = os.fsencode(tmp_path / "f") + b"\0"
    (tmp_path / "f").write_bytes(b"")
    t = twin([RW, HOLE, RW, HOLE])
    at_end = PAGE - len(name)
    thread.mm.write(t.guest + at_end, name)
    ctypes.memmove(t.host + at_end, name, len(name))
    unterminated = 3 * PAGE - 3  # "abc" and no NUL before the hole
    thread.mm.write(t.guest + unterminated, b"abc")
    ctypes.memmove(t.host + unterminated, b"abc", 3)
    for guest_path, host_path, expected in [(0, 0, -errno.EFAULT), (BAD, BAD, -errno.EFAULT),
                                            (t.guest + unterminated, t.host + unterminated,
                                             -errno.EFAULT)]:
        assert call(thread, "openat", AT_FDCWD, guest_path, 0) == \
            native("openat", AT_FDCWD, host_path, 0) == expected
    km = call(thread, "openat", AT_FDCWD, t.guest + at_end, 0)
    linux = native("openat", AT_FDCWD, t.host + at_end, 0)
    fds += [km, linux]
    assert km >= 0 and linux >= 0


@pytest.mark.parametrize("length, opens", [(4095, True), (4096, False), (5000, False)])
def test_path_max(thread, guest, fds, length, opens):
    """A path of PATH_MAX - 1 bytes (slashes: it names /) opens; PATH_MAX does not."""
    km, linux = both(thread, guest, "openat", AT_FDCWD, b"/" * length + b"\0", os.O_RDONLY)
    fds += [fd for fd in (km, linux) if fd >= 0]
    assert (km >= 0, linux >= 0) == (opens, opens)
    if not opens:
        assert km == linux == -errno.ENAMETOOLONG


def test_dirfd_is_honoured_and_checked(thread, guest, tmp_path, fds):
    (tmp_path / "f").write_bytes(b"x")
    d = os.open(tmp_path, os.O_RDONLY | os.O_DIRECTORY)
    fds.append(d)
    fd = call(thread, "openat", d, guest.string("f"), 0)
    fds.append(fd)
    assert fd >= 0 and os.path.samestat(os.fstat(fd), os.stat(tmp_path / "f"))
    closed = closed_fd()
    assert same(thread, guest, "openat", closed, "f", 0) == -errno.EBADF
    f = os.open(tmp_path / "f", os.O_RDONLY)
    fds.append(f)
    assert same(thread, guest, "openat", f, "f", 0) == -errno.ENOTDIR
    for km_fd in (thread.proc.fds.km_base, thread.proc.fds.km_base + 5):
        assert call(thread, "openat", km_fd, guest.string("f"), 0) == -errno.EBADF


def test_dirfd_is_ignored_for_absolute_paths(thread, guest, tmp_path, fds):
    (tmp_path / "f").write_bytes(b"x")
    km, linux = both(thread, guest, "openat", -5 & 0xFFFFFFFF, tmp_path / "f", 0)
    fds += [fd for fd in (km, linux) if fd >= 0]
    assert linux >= 0
    assert km >= 0


def _open_how(flags: int, mode: int = 0, resolve: int = 0, size: int = 24) -> bytes:
    return struct.pack("<QQQ", flags, mode, resolve).ljust(size, b"\0")


@pytest.mark.parametrize("how, size", [
    (_open_how(os.O_RDONLY), 24), (_open_how(os.O_RDONLY, size=32), 32),
    (_open_how(os.O_RDONLY), 16), (_open_how(os.O_RDONLY, size=40)[:32] + b"\1" * 8, 40),
    (_open_how(os.O_RDONLY, mode=0o600), 24), (_open_how(os.O_CREAT | os.O_RDWR, 0o10000), 24),
    (_open_how(os.O_RDONLY, resolve=0x40), 24), (_open_how(1 << 40), 24),
    (_open_how(os.O_RDONLY, resolve=0x04), 24), (_open_how(os.O_RDONLY, resolve=0x08), 24)])
def test_openat2_checks_open_how(thread, guest, tmp_path, fds, how, size):
    (tmp_path / "f").write_bytes(b"x")
    km, linux = both(thread, guest, "openat2", AT_FDCWD, tmp_path / "f", how, size)
    fds += [fd for fd in (km, linux) if fd >= 0]
    assert (km >= 0, min(km, 0)) == (linux >= 0, min(linux, 0))


def test_openat2_of_a_huge_open_how_is_e2big(thread, guest, tmp_path):
    assert same(thread, guest, "openat2", AT_FDCWD, tmp_path, _open_how(0, size=PAGE + 8),
                PAGE + 8) == -errno.E2BIG


def test_openat2_refuses_invalid_flag_bits(thread, guest, tmp_path, fds):
    (tmp_path / "f").write_bytes(b"x")
    km, linux = both(thread, guest, "openat2", AT_FDCWD, tmp_path / "f", _open_how(0o4), 24)
    fds += [fd for fd in (km, linux) if fd >= 0]
    assert linux == -errno.EINVAL
    assert km == -errno.EINVAL


def test_openat2_pointers(thread, guest, tmp_path):
    assert same(thread, guest, "openat2", AT_FDCWD, tmp_path, BAD, 24) == -errno.EFAULT
    assert same(thread, guest, "openat2", AT_FDCWD, tmp_path, 0, 24) == -errno.EFAULT
    assert same(thread, guest, "openat2", AT_FDCWD, 0, _open_how(0), 24) == -errno.EFAULT


# ---- close, close_range, dup -------------------------------------------------------------

def test_close_and_km_descriptors(thread):
    fd = os.open(os.devnull, os.O_RDONLY)
    assert call(thread, "close", fd) == 0
    assert call(thread, "close", fd) == native("close", fd) == -errno.EBADF
    for km_fd in (thread.proc.fds.km_base, -1 & 0xFFFFFFFF):
        assert call(thread, "close", km_fd) == -errno.EBADF


def test_close_range_stops_below_km_descriptors(thread, fds):
    base = thread.proc.fds.km_base
    source = os.open(os.devnull, os.O_RDONLY)
    fds.append(source)
    guest_fds = [os.dup2(source, base - 3 + i) for i in range(3)]
    km_fd = fcntl.fcntl(source, fcntl.F_DUPFD, base)  # stands for one of km's own
    fds += guest_fds + [km_fd]
    assert km_fd >= base
    assert call(thread, "close_range", base - 3, 0xFFFFFFFF, 0) == 0
    for fd in guest_fds:
        with pytest.raises(OSError):
            os.fstat(fd)
    os.fstat(km_fd)  # still open
    guest_fd = os.dup2(source, base - 1)
    fds.append(guest_fd)
    assert call(thread, "close_range", base - 1, base + 10, 4) == 0  # CLOSE_RANGE_CLOEXEC
    assert fcntl.fcntl(guest_fd, fcntl.F_GETFD) == fcntl.FD_CLOEXEC
    assert fcntl.fcntl(km_fd, fcntl.F_GETFD) == 0


def test_close_range_arguments(thread):
    base = thread.proc.fds.km_base
    assert call(thread, "close_range", 10, 5, 0) == native("close_range", 10, 5, 0) \
        == -errno.EINVAL
    # bad flags, on a range of closed guest descriptors (nothing is closed either way)
    assert call(thread, "close_range", base - 2, base - 1, 0x1234) == \
        native("close_range", base - 2, base - 1, 0x1234) == -errno.EINVAL


def test_close_range_checks_flags_above_the_guest_range(thread):
    base = thread.proc.fds.km_base
    assert native("close_range", base + 100, 0xFFFFFFFF, 0x1234) == -errno.EINVAL
    assert call(thread, "close_range", base + 100, 0xFFFFFFFF, 0x1234) == -errno.EINVAL


def test_dup_family(thread, fds):
    fd = os.open(os.devnull, os.O_RDONLY)
    fds.append(fd)
    new = call(thread, "dup", fd)
    fds.append(new)
    assert new >= 0 and os.path.samestat(os.fstat(new), os.fstat(fd))
    target = closed_fd()
    assert call(thread, "dup2", fd, target) == target
    fds.append(target)
    assert call(thread, "dup2", fd, fd) == native("dup2", fd, fd) == fd
    assert call(thread, "dup3", fd, fd, 0) == native("dup3", fd, fd, 0) == -errno.EINVAL
    target = closed_fd()
    assert call(thread, "dup3", fd, target, 0x1234) == native("dup3", fd, target, 0x1234) \
        == -errno.EINVAL
    assert call(thread, "dup3", fd, target, os.O_CLOEXEC) == target
    fds.append(target)
    assert fcntl.fcntl(target, fcntl.F_GETFD) == fcntl.FD_CLOEXEC
    closed = closed_fd()
    assert call(thread, "dup", closed) == native("dup", closed) == -errno.EBADF
    assert call(thread, "dup2", closed, 100) == native("dup2", closed, 100) == -errno.EBADF


def test_dup_never_reaches_km_descriptors(thread, fds):
    fd = os.open(os.devnull, os.O_RDONLY)
    fds.append(fd)
    base = thread.proc.fds.km_base
    for name in ("dup2", "dup3"):
        for target in (base, base + 1, -1 & 0xFFFFFFFF, thread.proc.fds.guest_soft):
            assert call(thread, name, fd, target, 0) == -errno.EBADF
        assert call(thread, name, base, 100, 0) == -errno.EBADF


def test_new_descriptors_respect_the_guests_rlimit_nofile(thread, guest, fds):
    """The guest lowers its RLIMIT_NOFILE: a new descriptor above it is EMFILE (and the
    host's is closed again), as Linux does under that limit."""
    fd = os.open(os.devnull, os.O_RDONLY)
    fds.append(fd)
    lowest_free = closed_fd()
    limit = guest.put(struct.pack("<QQ", lowest_free, thread.proc.fds.guest_hard))
    assert call(thread, "prlimit64", 0, 7, limit, 0) == 0
    assert call(thread, "dup", fd) == -errno.EMFILE
    assert call(thread, "fcntl", fd, fcntl.F_DUPFD, 0) == -errno.EMFILE
    assert call(thread, "pipe2", guest.alloc(8), 0) == -errno.EMFILE
    assert closed_fd() == lowest_free  # nothing leaked
    assert call(thread, "fcntl", fd, fcntl.F_DUPFD, lowest_free) == -errno.EINVAL


# ---- fcntl, ioctl, flock ---------------------------------------------------------------

def test_fcntl_flags_like_linux(thread, tmp_path, fds):
    (tmp_path / "f").write_bytes(b"x")
    fd, nfd = (os.open(tmp_path / "f", os.O_RDWR) for _ in range(2))
    fds += [fd, nfd]
    for cmd, arg in [(fcntl.F_SETFD, 1), (fcntl.F_GETFD, 0), (fcntl.F_SETFL, os.O_APPEND),
                     (fcntl.F_GETFL, 0), (fcntl.F_SETFL, os.O_NONBLOCK | os.O_APPEND),
                     (fcntl.F_GETFL, 0), (fcntl.F_GETOWN, 0), (fcntl.F_GETSIG, 0),
                     (fcntl.F_SETSIG, 65), (fcntl.F_GETLEASE, 0), (fcntl.F_GET_SEALS, 0),
                     (0x7FFF, 0)]:
        assert call(thread, "fcntl", fd, cmd, arg) == native("fcntl", nfd, cmd, arg), cmd


def test_fcntl_dupfd(thread, fds):
    fd = os.open(os.devnull, os.O_RDONLY)
    fds.append(fd)
    new = call(thread, "fcntl", fd, fcntl.F_DUPFD_CLOEXEC, 500)
    fds.append(new)
    assert new >= 500 and fcntl.fcntl(new, fcntl.F_GETFD) == fcntl.FD_CLOEXEC
    for arg in (-1 & 0xFFFFFFFF, thread.proc.fds.km_base, thread.proc.fds.guest_soft):
        assert call(thread, "fcntl", fd, fcntl.F_DUPFD, arg) == -errno.EINVAL


FLOCK = struct.Struct("<hh4xqqi4x")  # l_type, l_whence, l_start, l_len, l_pid


def test_fcntl_locks_write_the_flock_linux_writes(thread, guest, tmp_path, fds):
    (tmp_path / "f").write_bytes(b"x" * 100)
    fd, nfd = (os.open(tmp_path / "f", os.O_RDWR) for _ in range(2))
    fds += [fd, nfd]
    lock = FLOCK.pack(fcntl.F_WRLCK, 0, 10, 20, 0)
    assert call(thread, "fcntl", fd, fcntl.F_SETLK, guest.put(lock)) == 0
    # Ask about the lock from an open file description of its own (OFD query).
    other = os.open(tmp_path / "f", os.O_RDWR)
    fds.append(other)
    query = FLOCK.pack(fcntl.F_WRLCK, 0, 0, 0, 0)
    km_out, linux_out = guest.put(query), host(query)
    assert call(thread, "fcntl", other, 36, km_out) == native("fcntl", other, 36, linux_out) == 0
    assert guest.read(km_out, 32) == ctypes.string_at(linux_out, 32)
    assert FLOCK.unpack(guest.read(km_out, 32))[:4] == (fcntl.F_WRLCK, 0, 10, 20)
    assert call(thread, "fcntl", fd, fcntl.F_SETLK, guest.put(lock.replace(b"\1", b"\2", 1))) \
        == 0  # unlock


@pytest.mark.parametrize("cmd", [fcntl.F_GETLK, fcntl.F_SETLK, 36, 37, 16, 15, 1035])
def test_fcntl_structure_pointers(thread, twin, tmp_path, fds, cmd):
    (tmp_path / "f").write_bytes(b"x")
    fd = os.open(tmp_path / "f", os.O_RDWR)
    fds.append(fd)
    t = twin([RO, HOLE], FLOCK.pack(fcntl.F_RDLCK, 0, 0, 0, 0))
    for guest_arg, host_arg in [(0, 0), (BAD, BAD), (t.guest, t.host),
                                (t.guest + PAGE - 4, t.host + PAGE - 4)]:
        assert call(thread, "fcntl", fd, cmd, guest_arg) == native("fcntl", fd, cmd, host_arg)


def test_ioctl_like_linux(thread, guest, tmp_path, fds):
    (tmp_path / "f").write_bytes(b"12345")
    f = os.open(tmp_path / "f", os.O_RDONLY)
    r, w = os.pipe()
    fds += [f, r, w]
    os.write(w, b"abc")
    km_out, linux_out = guest.alloc(64), host(64)
    for fd, request in [(r, 0x541B), (f, 0x541B), (f, 0x5401), (f, 0x5413), (r, 0x5460),
                        (f, 0x5460), (f, 0x80081272)]:
        km = call(thread, "ioctl", fd, request, km_out)
        assert km == native("ioctl", fd, request, linux_out), hex(request)
        if km == 0:
            assert guest.read(km_out, 8) == ctypes.string_at(linux_out, 8)
    one = guest.put(struct.pack("<i", 1))
    assert call(thread, "ioctl", r, 0x5421, one) == 0  # FIONBIO
    assert os.get_blocking(r) is False
    assert call(thread, "ioctl", r, 0x5451, 0) == 0  # FIOCLEX
    assert fcntl.fcntl(r, fcntl.F_GETFD) == fcntl.FD_CLOEXEC


def test_ioctl_refuses_what_it_does_not_know(thread, guest, fds):
    r, w = os.pipe()
    fds += [r, w]
    for request in (0x5412, 0x1234, 0xC0DE_0000 | 0x5401, 0x4004_6602):  # TIOCSTI, ...
        assert call(thread, "ioctl", r, request, guest.alloc(8)) == -errno.ENOTTY
    assert call(thread, "ioctl", thread.proc.fds.km_base, 0x541B, guest.alloc(8)) \
        == -errno.EBADF
    assert call(thread, "ioctl", r, 0x541B, BAD) == native("ioctl", r, 0x541B, BAD) \
        == -errno.EFAULT


def test_fcntl_getowner_uids(thread, guest, fds):
    fd = os.open(os.devnull, os.O_RDONLY)
    fds.append(fd)
    km_out, linux_out = guest.alloc(8), host(8)
    assert native("fcntl", fd, 17, linux_out) == 0
    assert call(thread, "fcntl", fd, 17, km_out) == 0
    assert guest.read(km_out, 8) == ctypes.string_at(linux_out, 8)


def test_ioctl_on_a_closed_descriptor_is_ebadf(thread):
    closed = closed_fd()
    assert native("ioctl", closed, 0x1234, 0) == -errno.EBADF
    assert call(thread, "ioctl", closed, 0x1234, 0) == -errno.EBADF


def test_terminal_ioctls_on_a_file_are_enotty_whatever_the_pointer(thread, tmp_path, fds):
    f = os.open(tmp_path, os.O_RDONLY)
    fds.append(f)
    assert native("ioctl", f, 0x5401, 0) == -errno.ENOTTY
    assert call(thread, "ioctl", f, 0x5401, 0) == -errno.ENOTTY


def test_flock_like_linux(thread, tmp_path, fds):
    for side in ("km", "linux"):
        (tmp_path / side).write_bytes(b"")
    fd, nfd = os.open(tmp_path / "km", os.O_RDONLY), os.open(tmp_path / "linux", os.O_RDONLY)
    fds += [fd, nfd]
    for operation in (fcntl.LOCK_SH, fcntl.LOCK_EX | fcntl.LOCK_NB, fcntl.LOCK_UN, 0, 99):
        assert call(thread, "flock", fd, operation) == native("flock", nfd, operation)
    assert call(thread, "flock", fd, fcntl.LOCK_EX) == 0
    other = os.open(tmp_path / "km", os.O_RDONLY)  # an open file description of its own
    fds.append(other)
    assert call(thread, "flock", other, fcntl.LOCK_EX | fcntl.LOCK_NB) == -errno.EWOULDBLOCK
    assert call(thread, "flock", thread.proc.fds.km_base, fcntl.LOCK_EX) == -errno.EBADF


# ---- stat ---------------------------------------------------------------------------------

@pytest.fixture
def tree(tmp_path):
    """A file, a directory, a symlink to the file and a dangling one."""
    (tmp_path / "file").write_bytes(b"x" * 1234)
    (tmp_path / "dir").mkdir()
    (tmp_path / "link").symlink_to("file")
    (tmp_path / "dangling").symlink_to("nowhere")
    return tmp_path


@pytest.mark.parametrize("target", ["file", "dir", "link", "dangling", "missing"])
def test_stat_family_writes_what_linux_writes(thread, guest, tree, target):
    path = tree / target
    for name, follow in (("stat", True), ("lstat", False)):
        km_buf, linux_buf = guest.alloc(STAT_SIZE), host(STAT_SIZE)
        km = call(thread, name, guest.string(path), km_buf)
        assert km == native(name, hstr(path), linux_buf), (name, follow)
        assert guest.read(km_buf, STAT_SIZE) == ctypes.string_at(linux_buf, STAT_SIZE)
    for flags in (0, AT_SYMLINK_NOFOLLOW):
        km_buf, linux_buf = guest.alloc(STAT_SIZE), host(STAT_SIZE)
        assert call(thread, "newfstatat", AT_FDCWD, guest.string(path), km_buf, flags) == \
            native("newfstatat", AT_FDCWD, hstr(path), linux_buf, flags)
        assert guest.read(km_buf, STAT_SIZE) == ctypes.string_at(linux_buf, STAT_SIZE)
        km_buf, linux_buf = guest.alloc(STATX_SIZE), host(STATX_SIZE)
        assert call(thread, "statx", AT_FDCWD, guest.string(path), flags, 0xFFF, km_buf) == \
            native("statx", AT_FDCWD, hstr(path), flags, 0xFFF, linux_buf)
        # stx_atime can move between the two calls only if something reads the file
        assert guest.read(km_buf, STATX_SIZE) == ctypes.string_at(linux_buf, STATX_SIZE)


def test_fstat_and_empty_paths(thread, guest, tree, fds):
    fd = os.open(tree / "file", os.O_RDONLY)
    fds.append(fd)
    km_buf, linux_buf = guest.alloc(STAT_SIZE), host(STAT_SIZE)
    assert call(thread, "fstat", fd, km_buf) == native("fstat", fd, linux_buf) == 0
    assert guest.read(km_buf, STAT_SIZE) == ctypes.string_at(linux_buf, STAT_SIZE)
    for flags in (AT_EMPTY_PATH, 0):
        km_buf, linux_buf = guest.alloc(STAT_SIZE), host(STAT_SIZE)
        assert call(thread, "newfstatat", fd, guest.string(""), km_buf, flags) == \
            native("newfstatat", fd, hstr(""), linux_buf, flags)
        assert guest.read(km_buf, STAT_SIZE) == ctypes.string_at(linux_buf, STAT_SIZE)
        km_buf, linux_buf = guest.alloc(STATX_SIZE), host(STATX_SIZE)
        assert call(thread, "statx", fd, guest.string(""), flags, 0x7FF, km_buf) == \
            native("statx", fd, hstr(""), flags, 0x7FF, linux_buf)
        assert guest.read(km_buf, STATX_SIZE) == ctypes.string_at(linux_buf, STATX_SIZE)
    base = thread.proc.fds.km_base
    assert call(thread, "fstat", base, km_buf) == -errno.EBADF
    assert call(thread, "newfstatat", base, guest.string(""), km_buf, AT_EMPTY_PATH) \
        == -errno.EBADF
    assert call(thread, "statx", base, guest.string(""), AT_EMPTY_PATH, 0, km_buf) \
        == -errno.EBADF


@pytest.mark.parametrize("name", ["newfstatat", "statx"])
def test_a_null_path_with_at_empty_path_is_the_descriptor(thread, guest, tree, fds, name):
    fd = os.open(tree / "file", os.O_RDONLY)
    fds.append(fd)
    km_buf, linux_buf = guest.alloc(STATX_SIZE), host(STATX_SIZE)
    if name == "statx":
        assert native(name, fd, 0, AT_EMPTY_PATH, 0x7FF, linux_buf) == 0
        assert call(thread, name, fd, 0, AT_EMPTY_PATH, 0x7FF, km_buf) == 0
    else:
        assert native(name, fd, 0, linux_buf, AT_EMPTY_PATH) == 0
        assert call(thread, name, fd, 0, km_buf, AT_EMPTY_PATH) == 0


def test_stat_buffers_and_flags_are_checked(thread, twin, tree):
    path = os.fsencode(tree / "file") + b"\0"
    t = twin([RW, RO, HOLE])
    thread.mm.write(t.guest, path)
    ctypes.memmove(t.host, path, len(path))
    for offset in (PAGE, 2 * PAGE - 8, 2 * PAGE, PAGE - 8):
        assert call(thread, "stat", t.guest, t.guest + offset) == \
            native("stat", t.host, t.host + offset), offset
        assert call(thread, "statx", AT_FDCWD, t.guest, 0, 0x7FF, t.guest + offset) == \
            native("statx", AT_FDCWD, t.host, 0, 0x7FF, t.host + offset), offset
    buf = t.guest + 512
    for flags in (0x1, 0x8000_0000, AT_REMOVEDIR):
        assert call(thread, "newfstatat", AT_FDCWD, t.guest, buf, flags) == \
            native("newfstatat", AT_FDCWD, t.host, t.host + 512, flags)
    assert call(thread, "statx", AT_FDCWD, t.guest, 0x6000, 0, buf) == \
        native("statx", AT_FDCWD, t.host, 0x6000, 0, t.host + 512) == -errno.EINVAL
    # a km address and a kernel address for the buffer
    km = ctypes.create_string_buffer(b"km", STAT_SIZE)
    assert call(thread, "stat", t.guest, ctypes.addressof(km)) == -errno.EFAULT
    assert km.raw[:2] == b"km"


# ---- getdents --------------------------------------------------------------------------

@pytest.mark.parametrize("name", ["getdents64", "getdents"])
def test_getdents_lists_what_linux_lists(thread, guest, tree, fds, name):
    fd, nfd = (os.open(tree, os.O_RDONLY | os.O_DIRECTORY) for _ in range(2))
    fds += [fd, nfd]
    km_buf, linux_buf = guest.alloc(PAGE), host(PAGE)
    km = call(thread, name, fd, km_buf, PAGE)
    assert km == native(name, nfd, linux_buf, PAGE) > 0
    assert guest.read(km_buf, km) == ctypes.string_at(linux_buf, km)
    assert call(thread, name, fd, km_buf, PAGE) == native(name, nfd, linux_buf, PAGE) == 0


@pytest.mark.parametrize("name", ["getdents64", "getdents"])
def test_getdents_errors(thread, guest, twin, tree, fds, name):
    fd = os.open(tree, os.O_RDONLY | os.O_DIRECTORY)
    f = os.open(tree / "file", os.O_RDONLY)
    fds += [fd, f]
    t = twin([RO, RW, HOLE])
    for guest_arg, host_arg, count in [(t.guest + PAGE, t.host + PAGE, 10),
                                       (BAD, BAD, PAGE), (t.guest, t.host, PAGE),
                                       (0, 0, PAGE)]:
        os.lseek(fd, 0, 0)
        km = call(thread, name, fd, guest_arg, count)
        os.lseek(fd, 0, 0)
        assert km == native(name, fd, host_arg, count), (hex(guest_arg), count)
    assert call(thread, name, f, t.guest + PAGE, PAGE) == native(name, f, t.host + PAGE, PAGE) \
        == -errno.ENOTDIR
    assert call(thread, name, thread.proc.fds.km_base, t.guest + PAGE, PAGE) == -errno.EBADF


def test_getdents_into_a_buffer_ending_in_a_hole(thread, twin, tree, fds):
    """The mapped part holds a few entries: both return those, in the same order (Linux
    may also return the one whose padding alone lies past the mapping; km leaves it for
    the next call, which loses nothing)."""
    fd, nfd = (os.open(tree, os.O_RDONLY | os.O_DIRECTORY) for _ in range(2))
    fds += [fd, nfd]
    t = twin([RW, HOLE])
    start = PAGE - 100
    km = call(thread, "getdents64", fd, t.guest + start, PAGE)
    linux = native("getdents64", nfd, t.host + start, PAGE)
    assert 0 < km <= linux <= 100 + 7
    assert thread.mm.read(t.guest + start, km) == ctypes.string_at(t.host + start, km)
    rest = call(thread, "getdents64", fd, t.guest, PAGE)  # the next call goes on from there
    assert rest > 0 and os.lseek(fd, 0, os.SEEK_CUR) > 0


# ---- access, readlink ----------------------------------------------------------------------

@pytest.mark.parametrize("mode", [os.F_OK, os.R_OK | os.W_OK, os.X_OK, 8, 0xFF])
def test_access_family(thread, guest, tree, mode):
    os.chmod(tree / "file", 0o644)
    for target in ("file", "dir", "link", "dangling", "missing"):
        path = tree / target
        assert same(thread, guest, "access", path, mode) == \
            same(thread, guest, "faccessat", AT_FDCWD, path, mode)
        for flags in (0, AT_SYMLINK_NOFOLLOW, 0x200, AT_EMPTY_PATH):  # AT_EACCESS
            same(thread, guest, "faccessat2", AT_FDCWD, path, mode, flags)
        same(thread, guest, "faccessat2", AT_FDCWD, path, mode, 0x8000)


def test_readlink_like_linux(thread, guest, tree):
    for target in ("link", "dangling", "file", "missing"):
        path = tree / target
        for size in (100, 3, 1):
            km_buf, linux_buf = guest.alloc(128), host(128)
            km = call(thread, "readlink", guest.string(path), km_buf, size)
            assert km == native("readlink", hstr(path), linux_buf, size)
            if km > 0:
                assert guest.read(km_buf, km) == ctypes.string_at(linux_buf, km)
        for size in (0, -1 & 0xFFFFFFFF, -1 & MASK64):
            assert same(thread, guest, "readlinkat", AT_FDCWD, path, bytes(8), size) \
                == -errno.EINVAL


def test_readlinkat_relative_and_empty(thread, guest, tree, fds):
    d = os.open(tree, os.O_RDONLY | os.O_DIRECTORY)
    link = os.open(tree / "link", os.O_PATH | os.O_NOFOLLOW)
    fds += [d, link]
    buf = bytes(64)
    assert same(thread, guest, "readlinkat", d, "link", buf, 64) == 4
    assert same(thread, guest, "readlinkat", link, "", buf, 64) == 4  # the O_PATH link itself
    assert same(thread, guest, "readlinkat", d, "", buf, 64) == -errno.ENOENT
    assert same(thread, guest, "readlinkat", closed_fd(), "link", buf, 64) == -errno.EBADF
    assert call(thread, "readlinkat", thread.proc.fds.km_base, guest.string("link"),
                guest.alloc(64), 64) == -errno.EBADF


def test_readlink_into_bad_buffers(thread, twin, tree):
    path = os.fsencode(tree / "link") + b"\0"
    t = twin([RW, RO, HOLE])
    thread.mm.write(t.guest, path)
    ctypes.memmove(t.host, path, len(path))
    for offset in (PAGE, 2 * PAGE):
        assert call(thread, "readlink", t.guest, t.guest + offset, 64) == \
            native("readlink", t.host, t.host + offset, 64) == -errno.EFAULT


def test_readlink_into_a_partly_mapped_buffer_is_efault(thread, twin, tree):
    (tree / "long").symlink_to("x" * 64)
    path = os.fsencode(tree / "long") + b"\0"
    t = twin([RW, HOLE])
    thread.mm.write(t.guest, path)
    ctypes.memmove(t.host, path, len(path))
    assert native("readlink", t.host, t.host + PAGE - 10, 64) == -errno.EFAULT
    assert call(thread, "readlink", t.guest, t.guest + PAGE - 10, 64) == -errno.EFAULT


def test_readlink_copies_only_the_link(thread, twin, tree):
    """Only the link's bytes are copied out: the rest of the buffer may be a hole, and
    a link that is missing is ENOENT whatever the buffer."""
    path = os.fsencode(tree / "link") + b"\0"
    t = twin([RW, HOLE])
    thread.mm.write(t.guest, path)
    ctypes.memmove(t.host, path, len(path))
    assert call(thread, "readlink", t.guest, t.guest + PAGE - 10, 64) == \
        native("readlink", t.host, t.host + PAGE - 10, 64) == 4
    assert thread.mm.read(t.guest + PAGE - 10, 4) == ctypes.string_at(t.host + PAGE - 10, 4)
    missing = os.fsencode(tree / "missing") + b"\0"
    thread.mm.write(t.guest, missing)
    ctypes.memmove(t.host, missing, len(missing))
    assert call(thread, "readlink", t.guest, t.guest + PAGE, 64) == \
        native("readlink", t.host, t.host + PAGE, 64) == -errno.ENOENT


def test_readlinkat_checks_the_size_first(thread, guest):
    assert same(thread, guest, "readlinkat", closed_fd(), BAD, BAD, 0) == -errno.EINVAL


# ---- directories and links -------------------------------------------------------------

def test_directories_like_linux(thread, guest, tmp_path):
    km, linux = tmp_path / "km", tmp_path / "linux"
    for side in (km, linux):
        side.mkdir()
        (side / "file").write_bytes(b"")
        (side / "full").mkdir()
        (side / "full" / "x").write_bytes(b"")

    def both_sides(name, *args):
        """The call on km's tree and on Linux's: the same answer."""
        def adapt(a, root):
            return os.fsencode(root / a) + b"\0" if isinstance(a, str) else a
        result = call(thread, name, *(guest.put(adapt(a, km)) if isinstance(a, str) else a
                                      for a in args))
        assert result == native(name, *(host(adapt(a, linux)) if isinstance(a, str) else a
                                        for a in args)), (name, args)
    both_sides("mkdir", "new", 0o755)
    both_sides("mkdir", "new", 0o755)                      # EEXIST
    both_sides("mkdir", "missing/new", 0o755)              # ENOENT
    both_sides("mkdir", "file/new", 0o755)                 # ENOTDIR
    both_sides("mkdirat", AT_FDCWD, "new2", 0o700)
    both_sides("rmdir", "full")                            # ENOTEMPTY
    both_sides("rmdir", "file")                            # ENOTDIR
    both_sides("rmdir", "new")
    both_sides("unlink", "new2")                           # EISDIR
    both_sides("unlink", "file")
    both_sides("unlink", "file")                           # ENOENT
    both_sides("unlinkat", AT_FDCWD, "new2", AT_REMOVEDIR)
    both_sides("unlinkat", AT_FDCWD, "full", 0x1234)      # EINVAL
    assert sorted(os.listdir(km)) == sorted(os.listdir(linux)) == ["full"]
    assert os.stat(km / "full").st_mode == os.stat(linux / "full").st_mode


def test_renames_like_linux(thread, guest, tmp_path):
    for side in ("km", "linux"):
        (tmp_path / side).mkdir()
        (tmp_path / side / "a").write_bytes(b"A")
        (tmp_path / side / "b").write_bytes(b"B")
        (tmp_path / side / "d").mkdir()

    def both_sides(name, *args):
        def side(root, put):
            return [put(os.fsencode(tmp_path / root / a) + b"\0") if isinstance(a, str) else a
                    for a in args]
        assert call(thread, name, *side("km", guest.put)) == \
            native(name, *side("linux", host)), (name, args)
    both_sides("renameat2", AT_FDCWD, "a", AT_FDCWD, "b", 1)        # RENAME_NOREPLACE
    both_sides("renameat2", AT_FDCWD, "a", AT_FDCWD, "b", 2)        # RENAME_EXCHANGE
    both_sides("renameat2", AT_FDCWD, "a", AT_FDCWD, "b", 3)        # both: EINVAL
    both_sides("renameat2", AT_FDCWD, "a", AT_FDCWD, "b", 0x80)     # unknown flag
    both_sides("rename", "a", "d")                                   # EISDIR
    both_sides("rename", "d", "a")                                   # ENOTDIR
    both_sides("renameat", AT_FDCWD, "a", AT_FDCWD, "c")
    both_sides("rename", "missing", "e")
    both_sides("rename", "d", "d/sub")                               # EINVAL
    for side in ("km", "linux"):
        root = tmp_path / side
        assert sorted(os.listdir(root)) == ["b", "c", "d"]
    assert (tmp_path / "km" / "c").read_bytes() == (tmp_path / "linux" / "c").read_bytes()


def test_links_like_linux(thread, guest, tmp_path, fds):
    for side in ("km", "linux"):
        (tmp_path / side).mkdir()
        (tmp_path / side / "file").write_bytes(b"F")
        (tmp_path / side / "sym").symlink_to("file")

    def both_sides(name, *args):
        """str: a path in the side's tree; bytes: a string as it is (a link's target)."""
        def side(root, put):
            return [put(os.fsencode(tmp_path / root / a) + b"\0") if isinstance(a, str)
                    else put(a) if isinstance(a, bytes) else a for a in args]
        assert call(thread, name, *side("km", guest.put)) == \
            native(name, *side("linux", host)), (name, args)
    both_sides("link", "file", "hard")
    both_sides("link", "file", "hard")                                # EEXIST
    both_sides("linkat", AT_FDCWD, "sym", AT_FDCWD, "to-link", 0)     # the link itself
    both_sides("linkat", AT_FDCWD, "sym", AT_FDCWD, "to-file", AT_SYMLINK_FOLLOW)
    both_sides("linkat", AT_FDCWD, "sym", AT_FDCWD, "x", 0x1234)      # EINVAL
    both_sides("symlink", b"anything at all\0", "s2")
    both_sides("symlinkat", b"file\0", AT_FDCWD, "s3")
    both_sides("symlink", b"file\0", "missing/s4")
    for side in ("km", "linux"):
        root = tmp_path / side
        assert os.path.islink(root / "to-link") and not os.path.islink(root / "to-file")
        assert os.readlink(root / "s2") == "anything at all"
    assert same(thread, guest, "symlink", b"\0", tmp_path / "empty") == -errno.ENOENT
    assert same(thread, guest, "symlink", BAD, tmp_path / "bad") == -errno.EFAULT


def test_linkat_with_at_empty_path_links_the_descriptor(thread, guest, tmp_path, fds):
    (tmp_path / "file").write_bytes(b"F")
    fd = os.open(tmp_path / "file", os.O_RDONLY)
    fds.append(fd)
    assert native("linkat", fd, hstr(""), AT_FDCWD, hstr(tmp_path / "linux"),
                  AT_EMPTY_PATH) == 0
    assert call(thread, "linkat", fd, guest.string(""), AT_FDCWD,
                guest.string(tmp_path / "km"), AT_EMPTY_PATH) == 0


# ---- permissions, ownership, times, sizes ------------------------------------------------

def test_chmod_family(thread, guest, tree, fds):
    fd = os.open(tree / "file", os.O_RDONLY)
    fds.append(fd)
    assert same(thread, guest, "chmod", tree / "file", 0o7777) == 0
    assert stat.S_IMODE(os.stat(tree / "file").st_mode) == 0o7777
    assert call(thread, "fchmod", fd, 0o600) == 0
    assert stat.S_IMODE(os.stat(tree / "file").st_mode) == 0o600
    assert same(thread, guest, "fchmodat", AT_FDCWD, tree / "link", 0o640) == 0
    assert stat.S_IMODE(os.stat(tree / "file").st_mode) == 0o640
    assert same(thread, guest, "chmod", tree / "missing", 0o600) == -errno.ENOENT
    assert same(thread, guest, "chmod", tree / "dangling", 0o600) == -errno.ENOENT
    assert call(thread, "fchmod", thread.proc.fds.km_base, 0o600) == -errno.EBADF
    assert call(thread, "fchmod", closed_fd(), 0o600) == native("fchmod", closed_fd(), 0o600)


def test_chown_family(thread, guest, tree, fds):
    """Ownership changes to the owner it already has (the tests may run as root), or to
    -1 (unchanged), with and without following links."""
    fd = os.open(tree / "file", os.O_RDONLY)
    fds.append(fd)
    uid, gid = os.getuid(), os.getgid()
    keep = -1 & 0xFFFFFFFF
    assert same(thread, guest, "chown", tree / "file", uid, gid) == 0
    assert same(thread, guest, "lchown", tree / "link", keep, gid) == 0
    assert same(thread, guest, "fchownat", AT_FDCWD, tree / "link", uid, keep,
                AT_SYMLINK_NOFOLLOW) == 0
    assert same(thread, guest, "fchownat", AT_FDCWD, tree / "link", uid, keep, 0x1234) \
        == -errno.EINVAL
    assert same(thread, guest, "fchownat", fd, "", keep, keep, AT_EMPTY_PATH) == 0
    assert same(thread, guest, "chown", tree / "missing", uid, gid) == -errno.ENOENT
    assert call(thread, "fchown", fd, keep, keep) == 0
    assert call(thread, "fchown", thread.proc.fds.km_base, keep, keep) == -errno.EBADF


TIMESPECS = struct.Struct("<qqqq")
UTIME_NOW, UTIME_OMIT = (1 << 30) - 1, (1 << 30) - 2


def test_utimensat_sets_the_times_linux_sets(thread, guest, tmp_path, fds):
    for side in ("km", "linux"):
        (tmp_path / side).write_bytes(b"")
    km, linux = tmp_path / "km", tmp_path / "linux"
    for times in (TIMESPECS.pack(1, 2, 3, 4), TIMESPECS.pack(5, UTIME_OMIT, 6, 7),
                  TIMESPECS.pack(0, 1_000_000_000, 0, 0), TIMESPECS.pack(-1, 0, 0, 0)):
        assert call(thread, "utimensat", AT_FDCWD, guest.string(km), guest.put(times), 0) == \
            native("utimensat", AT_FDCWD, hstr(linux), host(times), 0)
        assert (os.stat(km).st_atime_ns, os.stat(km).st_mtime_ns) == \
            (os.stat(linux).st_atime_ns, os.stat(linux).st_mtime_ns)
    fd = os.open(km, os.O_RDONLY)
    fds.append(fd)
    times = TIMESPECS.pack(10, 0, 20, 0)
    assert call(thread, "utimensat", fd, 0, guest.put(times), 0) == 0  # futimens
    assert os.stat(km).st_mtime == 20
    assert same(thread, guest, "utimensat", AT_FDCWD, 0, times, 0) == -errno.EFAULT
    assert same(thread, guest, "utimensat", fd, 0, times, AT_SYMLINK_NOFOLLOW) == -errno.EINVAL
    assert same(thread, guest, "utimensat", AT_FDCWD, km, times, 0x1234) == -errno.EINVAL
    assert call(thread, "utimensat", AT_FDCWD, guest.string(km), BAD, 0) == \
        native("utimensat", AT_FDCWD, hstr(linux), BAD, 0) == -errno.EFAULT
    assert call(thread, "utimensat", thread.proc.fds.km_base, 0, 0, 0) == -errno.EBADF


def test_old_time_calls(thread, guest, tmp_path):
    for side in ("km", "linux"):
        (tmp_path / side).write_bytes(b"")
    km, linux = tmp_path / "km", tmp_path / "linux"
    timevals = struct.pack("<qqqq", 100, 5, 200, 6)
    assert call(thread, "utimes", guest.string(km), guest.put(timevals)) == \
        native("utimes", hstr(linux), host(timevals)) == 0
    assert os.stat(km).st_mtime_ns == os.stat(linux).st_mtime_ns == 200_000_006_000
    assert call(thread, "futimesat", AT_FDCWD, guest.string(km),
                guest.put(struct.pack("<qqqq", 1, 0, 2, 0))) == 0
    assert os.stat(km).st_mtime == 2
    utimbuf = struct.pack("<qq", 300, 400)
    assert call(thread, "utime", guest.string(km), guest.put(utimbuf)) == \
        native("utime", hstr(linux), host(utimbuf)) == 0
    assert os.stat(km).st_mtime == os.stat(linux).st_mtime == 400
    bad_usec = struct.pack("<qqqq", 1, 1_000_000, 2, 0)
    assert same(thread, guest, "utimes", km, bad_usec) == -errno.EINVAL
    assert same(thread, guest, "utime", km, BAD) == -errno.EFAULT


def test_truncate_family(thread, guest, tmp_path, fds):
    for side in ("km", "linux"):
        (tmp_path / side).write_bytes(b"0123456789")
    km, linux = tmp_path / "km", tmp_path / "linux"
    for length in (4, 100, -1 & MASK64):
        assert call(thread, "truncate", guest.string(km), length) == \
            native("truncate", hstr(linux), length)
        assert km.read_bytes() == linux.read_bytes()
    assert same(thread, guest, "truncate", tmp_path, 0) == -errno.EISDIR
    fd, nfd = os.open(km, os.O_RDONLY), os.open(linux, os.O_RDONLY)
    fds += [fd, nfd]
    assert call(thread, "ftruncate", fd, 1) == native("ftruncate", nfd, 1) < 0


def test_descriptor_calls_with_plain_arguments(thread, tmp_path, fds):
    (tmp_path / "f").write_bytes(b"x" * 100)
    fd = os.open(tmp_path / "f", os.O_RDWR)
    r, w = os.pipe()
    fds += [fd, r, w]
    cases = [("fsync", fd), ("fdatasync", fd), ("fsync", r),
             ("sync_file_range", fd, 0, 10, 0), ("sync_file_range", fd, 0, 10, 0x80),
             ("fallocate", fd, 0, 0, 200), ("fallocate", fd, 0x80, 0, 10),
             ("fallocate", fd, 0, 0, 0), ("fadvise64", fd, 0, 0, 4), ("fadvise64", fd, 0, 0, 99),
             ("fadvise64", r, 0, 0, 0), ("readahead", fd, 0, 10), ("readahead", r, 0, 10)]
    for name, *args in cases:
        assert call(thread, name, *args) == native(name, *args), (name, args)
    assert os.fstat(fd).st_size == 200
    closed = closed_fd()
    for name in ("fsync", "fdatasync", "syncfs", "fallocate", "fadvise64", "readahead",
                 "ftruncate", "fchmod", "fchown", "sync_file_range"):
        assert call(thread, name, closed, 0, 0, 1) == native(name, closed, 0, 0, 1) \
            == -errno.EBADF
        assert call(thread, name, thread.proc.fds.km_base, 0, 0, 1) == -errno.EBADF


# ---- working directory, umask --------------------------------------------------------------

def test_getcwd_like_linux(thread, twin, in_tmp):
    cwd = os.fsencode(in_tmp)
    t = twin([RW, RO, HOLE])
    cases = [(0, 0), (len(cwd), 0), (len(cwd) + 1, 0), (PAGE, 0), (PAGE, PAGE),
             (PAGE, 2 * PAGE), (len(cwd) + 1, PAGE - 3), (len(cwd) + 1, 2 * PAGE - 3)]
    for size, offset in cases:
        km = call(thread, "getcwd", t.guest + offset, size)
        assert km == native("getcwd", t.host + offset, size), (size, offset)
        if km > 0:
            assert thread.mm.read(t.guest + offset, km) == cwd + b"\0"
    assert call(thread, "getcwd", 0, 100) == native("getcwd", 0, 100) == -errno.EFAULT


def test_chdir_and_fchdir(thread, guest, in_tmp, fds):
    (in_tmp / "sub").mkdir()
    (in_tmp / "file").write_bytes(b"")
    assert call(thread, "chdir", guest.string("sub")) == 0
    assert os.getcwd() == str(in_tmp / "sub")
    assert call(thread, "chdir", guest.string("..")) == 0
    assert os.getcwd() == str(in_tmp)
    for target in ("file", "missing", ""):
        assert same(thread, guest, "chdir", target) < 0
    assert same(thread, guest, "chdir", BAD) == -errno.EFAULT
    d = os.open(in_tmp / "sub", os.O_RDONLY | os.O_DIRECTORY)
    f = os.open(in_tmp / "file", os.O_RDONLY)
    fds += [d, f]
    assert call(thread, "fchdir", d) == 0 and os.getcwd() == str(in_tmp / "sub")
    assert call(thread, "fchdir", f) == native("fchdir", f) == -errno.ENOTDIR
    assert call(thread, "fchdir", thread.proc.fds.km_base) == -errno.EBADF
    assert call(thread, "fchdir", closed_fd()) == native("fchdir", closed_fd()) == -errno.EBADF
    assert os.getcwd() == str(in_tmp / "sub")


def test_umask(thread):
    old = os.umask(0o022)
    try:
        assert call(thread, "umask", 0o077) == 0o022
        assert call(thread, "umask", 0o7777 | 1 << 40) == 0o077  # only the permission bits
        assert call(thread, "umask", 0o022) == 0o777
    finally:
        os.umask(old)


# ---- pipes, statfs, mknod ---------------------------------------------------------------

def _open_count() -> int:
    return len(os.listdir("/proc/self/fd"))


def test_pipe2_writes_two_descriptors(thread, guest, fds):
    out = guest.alloc(8)
    assert call(thread, "pipe2", out, os.O_CLOEXEC | os.O_NONBLOCK) == 0
    r, w = struct.unpack("<ii", guest.read(out, 8))
    fds += [r, w]
    assert fcntl.fcntl(r, fcntl.F_GETFD) == fcntl.FD_CLOEXEC and not os.get_blocking(w)
    os.write(w, b"through")
    assert os.read(r, 10) == b"through"
    assert call(thread, "pipe", out) == 0
    fds += list(struct.unpack("<ii", guest.read(out, 8)))


def test_pipe2_errors_leak_nothing(thread, twin):
    t = twin([RO, RW, HOLE])
    before = _open_count()
    for guest_arg, host_arg, flags in [(0, 0, 0), (BAD, BAD, 0), (t.guest, t.host, 0),
                                       (t.guest + 2 * PAGE - 4, t.host + 2 * PAGE - 4, 0),
                                       (t.guest + PAGE, t.host + PAGE, 0x1234)]:
        assert call(thread, "pipe2", guest_arg, flags) == native("pipe2", host_arg, flags) < 0
        assert _open_count() == before


def test_pipe2_checks_flags_first(thread):
    assert native("pipe2", BAD, 0x1234) == -errno.EINVAL
    assert call(thread, "pipe2", BAD, 0x1234) == -errno.EINVAL


STATFS = struct.Struct("<qqqqqqq2iqqq4q")  # type bsize blocks bfree bavail files ffree fsid...


def test_statfs_describes_the_same_file_system(thread, guest, twin, tmp_path, fds):
    fd = os.open(tmp_path, os.O_RDONLY)
    fds.append(fd)
    km_buf, linux_buf = guest.alloc(120), host(120)
    assert call(thread, "statfs", guest.string(tmp_path), km_buf) == \
        native("statfs", hstr(tmp_path), linux_buf) == 0
    stable = (0, 1, 2, 5, 7, 8, 9, 10, 11)  # not the free counts, which others change
    km_fields, linux_fields = STATFS.unpack(guest.read(km_buf, 120)), \
        STATFS.unpack(ctypes.string_at(linux_buf, 120))
    assert [km_fields[i] for i in stable] == [linux_fields[i] for i in stable]
    assert call(thread, "fstatfs", fd, km_buf) == native("fstatfs", fd, linux_buf) == 0
    assert STATFS.unpack(guest.read(km_buf, 120))[0] == linux_fields[0]
    t = twin([RW, RO, HOLE])
    for offset in (PAGE, 2 * PAGE - 60, 2 * PAGE):
        assert call(thread, "fstatfs", fd, t.guest + offset) == \
            native("fstatfs", fd, t.host + offset) == -errno.EFAULT
    assert same(thread, guest, "statfs", tmp_path / "missing", bytes(120)) == -errno.ENOENT
    assert call(thread, "fstatfs", thread.proc.fds.km_base, km_buf) == -errno.EBADF


@pytest.mark.parametrize("kind", [stat.S_IFIFO, stat.S_IFREG, stat.S_IFSOCK, 0])
def test_mknod_makes_fifos_files_and_sockets(thread, guest, tmp_path, kind):
    km, linux = both(thread, guest, "mknod", tmp_path / "km", kind | 0o600, 0)
    native("mknodat", AT_FDCWD, hstr(tmp_path / "linux"), kind | 0o600, 0)
    assert km == 0
    assert stat.S_IFMT(os.lstat(tmp_path / "km").st_mode) == \
        stat.S_IFMT(os.lstat(tmp_path / "linux").st_mode)
    assert same(thread, guest, "mknodat", AT_FDCWD, tmp_path / "km", kind | 0o600, 0) \
        == -errno.EEXIST


@pytest.mark.parametrize("kind", [stat.S_IFCHR, stat.S_IFBLK, stat.S_IFDIR])
def test_device_nodes_and_directories_are_eperm(thread, guest, tmp_path, kind):
    """Device nodes are refused as in an unprivileged container (even to root)."""
    assert call(thread, "mknod", guest.string(tmp_path / "dev"), kind | 0o600,
                os.makedev(1, 3)) == -errno.EPERM
    assert not os.path.lexists(tmp_path / "dev")


@pytest.mark.parametrize("kind", [stat.S_IFLNK, 0o170000])
def test_mknod_of_an_invalid_type_is_einval(thread, guest, tmp_path, kind):
    assert native("mknod", hstr(tmp_path / "linux"), kind | 0o600, 0) == -errno.EINVAL
    assert call(thread, "mknod", guest.string(tmp_path / "km"), kind | 0o600, 0) \
        == -errno.EINVAL


# ---- extended attributes ----------------------------------------------------------------

@pytest.fixture
def xfiles(tmp_path):
    """Two files with the same attribute, for km and for Linux."""
    paths = []
    for side in ("km", "linux"):
        path = tmp_path / side
        path.write_bytes(b"")
        os.setxattr(path, "user.k", b"value")
        paths.append(path)
    return paths


def _xboth(thread, guest, xfiles, name: str, *args) -> int:
    """One xattr call on km's file and on Linux's (by path, or by descriptor for the f*
    calls): the same answer. A str argument is an attribute name, bytes a buffer's
    contents, an int a number."""
    def side(put, put_string) -> list[int]:
        return [a if isinstance(a, int) else put(a) if isinstance(a, bytes) else put_string(a)
                for a in args]
    km_path, linux_path = xfiles
    if name.startswith("f"):
        fd, nfd = os.open(km_path, os.O_RDONLY), os.open(linux_path, os.O_RDONLY)
        try:
            km = call(thread, name, fd, *side(guest.put, guest.string))
            linux = native(name, nfd, *side(host, hstr))
        finally:
            os.close(fd)
            os.close(nfd)
    else:
        km = call(thread, name, guest.string(km_path), *side(guest.put, guest.string))
        linux = native(name, hstr(linux_path), *side(host, hstr))
    assert km == linux, (name, args, km, linux)
    return km


@pytest.mark.parametrize("prefix", ["", "l", "f"])
def test_xattrs_like_linux(thread, guest, xfiles, prefix):
    get, set_, lst, remove = (prefix + op for op in
                              ("getxattr", "setxattr", "listxattr", "removexattr"))
    assert _xboth(thread, guest, xfiles, get, "user.k", bytes(64), 64) == 5
    assert _xboth(thread, guest, xfiles, get, "user.k", bytes(64), 2) == -errno.ERANGE
    assert _xboth(thread, guest, xfiles, get, "user.k", 0, 0) == 5
    assert _xboth(thread, guest, xfiles, get, "user.missing", bytes(8), 8) == -errno.ENODATA
    assert _xboth(thread, guest, xfiles, get, "x" * 300, bytes(8), 8) == -errno.ERANGE
    assert _xboth(thread, guest, xfiles, set_, "user.new", b"abc", 3, 0) == 0
    assert _xboth(thread, guest, xfiles, set_, "user.new", b"abc", 3, 1) == -errno.EEXIST
    assert _xboth(thread, guest, xfiles, set_, "user.none", b"abc", 3, 2) == -errno.ENODATA
    assert _xboth(thread, guest, xfiles, set_, "user.new", b"abc", 3, 4) == -errno.EINVAL
    assert _xboth(thread, guest, xfiles, set_, "user.empty", 0, 0, 0) == 0
    assert _xboth(thread, guest, xfiles, lst, bytes(128), 128) > 0
    assert _xboth(thread, guest, xfiles, lst, 0, 0) > 0
    assert _xboth(thread, guest, xfiles, lst, bytes(4), 4) == -errno.ERANGE
    assert _xboth(thread, guest, xfiles, remove, "user.new") == 0
    assert _xboth(thread, guest, xfiles, remove, "user.new") == -errno.ENODATA
    km, linux = xfiles
    assert sorted(os.listxattr(km)) == sorted(os.listxattr(linux))


def test_xattr_pointers(thread, guest, xfiles):
    km, linux = xfiles
    name = guest.string("user.k")
    for op, args in [("getxattr", (BAD, 8)), ("setxattr", (BAD, 8, 0)),
                     ("listxattr", (BAD, 8))]:
        assert call(thread, op, guest.string(km), *((name,) if op != "listxattr" else ()),
                    *args) == native(op, hstr(linux), *((hstr("user.k"),)
                                                        if op != "listxattr" else ()), *args)
    assert call(thread, "getxattr", guest.string(km), 0, guest.alloc(8), 8) == -errno.EFAULT
    assert call(thread, "getxattr", guest.string(km), BAD, guest.alloc(8), 8) == -errno.EFAULT
    assert call(thread, "fgetxattr", thread.proc.fds.km_base, name, guest.alloc(8), 8) \
        == -errno.EBADF


def test_setxattr_of_a_value_over_64k_is_e2big(thread, guest, xfiles):
    assert _xboth(thread, guest, xfiles, "setxattr", "user.big", bytes(70000), 65537, 0) \
        == -errno.E2BIG


def test_getxattr_into_null_with_a_size_is_efault(thread, guest, xfiles):
    assert _xboth(thread, guest, xfiles, "getxattr", "user.k", 0, 10) == -errno.EFAULT


def test_xattr_values_in_partly_mapped_buffers(thread, twin, xfiles):
    """getxattr/listxattr copy out only what they return; setxattr reads all its value,
    and a size over 64 KiB is E2BIG whatever the pointer (the size is a size_t)."""
    t = twin([RW, HOLE])
    km_data, linux_data = (os.fsencode(path) + b"\0user.k\0" for path in xfiles)
    thread.mm.write(t.guest, km_data)
    ctypes.memmove(t.host, linux_data, len(linux_data))
    km_path, linux_path = t.guest, t.host
    km_name, linux_name = t.guest + len(km_data) - 7, t.host + len(linux_data) - 7
    for start, expected in ((PAGE - 8, 5), (PAGE - 2, -errno.EFAULT)):
        assert call(thread, "getxattr", km_path, km_name, t.guest + start, 64) == \
            native("getxattr", linux_path, linux_name, t.host + start, 64) == expected
    assert call(thread, "listxattr", km_path, t.guest + PAGE - 16, 64) == \
        native("listxattr", linux_path, t.host + PAGE - 16, 64) == len(b"user.k\0")
    for size, expected in ((16, -errno.EFAULT), ((1 << 32) + 1, -errno.E2BIG)):
        assert call(thread, "setxattr", km_path, km_name, t.guest + PAGE - 8, size, 0) == \
            native("setxattr", linux_path, linux_name, t.host + PAGE - 8, size, 0) == expected


# ---- hostile registers ---------------------------------------------------------------------

#: Handlers never called with arbitrary registers here: they act on this process.
NOT_SWEPT = {
    "umask": "changes this process's umask",
    "sync": "flushes every file system: slow, and nothing to check",
    "syncfs": "flushes a whole file system: slow, and nothing to check",
}


@pytest.mark.parametrize("name", sorted(set(family.HANDLERS) - set(NOT_SWEPT)))
def test_hostile_registers_give_errors_never_crashes(thread, name):
    hostile_registers_leave_km_untouched(thread, name)
