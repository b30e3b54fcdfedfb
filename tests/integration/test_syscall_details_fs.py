"""Details of file, descriptor and socket calls where km must answer exactly as Linux:
the directory descriptor of *at() calls (ignored for absolute paths, EBADF, ENOTDIR),
ioctl's descriptor checked before its request, the network interface ioctls (which km
answers itself: its seccomp filter forwards none), socket calls on what is no socket
(Linux's errors in Linux's order), and symlink's target stored as text.

tests/payloads/sysdetails_fs.c makes the calls and prints what each returned; it runs
natively and under km (and under km --root, where km resolves every path itself, with
the payload inside the root), and the outputs must be the same.
"""

from __future__ import annotations

import re
import shutil
from pathlib import Path

import pytest
from conftest import FLAVOURS

from .oracle import compare

BUSYBOX = "/bin/busybox"
LIBCS = ["musl", "glibc"]


@pytest.fixture(scope="module")
def sysdetails(request):
    """Builds the payload in one flavour (the builder is session-scoped)."""
    builder = request.getfixturevalue("payloads")

    def build(libc: str = "musl") -> Path:
        return builder.build("sysdetails_fs", FLAVOURS[libc])
    return build


def in_root(run_native, run_km, tmp_path: Path, payload: Path, mode: str):
    """The payload natively in a directory, and under km --root with its working
    directory /w inside the root: (native, km) results."""
    native_dir = tmp_path / "native"
    native_dir.mkdir()
    root = tmp_path / "root"
    (root / "w").mkdir(parents=True)
    shutil.copy(payload, root / "sysdetails_fs")
    native = run_native([payload, mode], cwd=native_dir)
    under_km = run_km(["--root", str(root), "/sysdetails_fs", mode, "/w"], cwd=tmp_path)
    return native, under_km


# ---- *at() and their directory descriptor ------------------------------------------------

def test_at_calls_and_their_dirfd(sysdetails, run_both, assert_same):
    """Every *at() call: dirfd ignored for an absolute path whatever it is (-1, closed,
    beyond the limit, a file, a pipe); EBADF and ENOTDIR for a relative one; the path's
    own errors (EFAULT, ENOENT) before the descriptor's."""
    out = compare(run_both([sysdetails(), "at"]), assert_same)
    assert "dirfd -1 abs openat: fd\n" in out
    assert "dirfd -1 abs mkdirat: 0\n" in out
    assert "dirfd above the limit abs newfstatat: 0\n" in out
    assert "dirfd file abs symlinkat: 0\n" in out
    assert "dirfd -1 rel openat: -1 EBADF\n" in out
    assert "dirfd closed rel unlinkat rmdir: -1 EBADF\n" in out
    assert "dirfd file rel statx: -1 ENOTDIR\n" in out
    assert "dirfd pipe rel readlinkat: -1 ENOTDIR\n" in out
    assert "dirfd -1 abs openat2 beneath: -1 EXDEV\n" in out
    assert "dirfd -1 NULL newfstatat: -1 EFAULT\n" in out
    assert "dirfd -1 empty openat: -1 ENOENT\n" in out
    assert "dirfd dir rel linkat: 0\n" in out


def test_at_calls_and_their_dirfd_under_root(sysdetails, run_native, run_km, tmp_path,
                                            assert_same):
    """The same under km --root, where km resolves paths and checks the descriptor."""
    native, under_km = in_root(run_native, run_km, tmp_path, sysdetails(), "at")
    assert native.returncode == 0, native.err
    assert_same(native, under_km)


# ---- ioctl --------------------------------------------------------------------------------

def test_ioctl_checks_the_descriptor_first(sysdetails, run_both, assert_same):
    """EBADF for a descriptor that is not open whatever the request and the pointer;
    then ENOTTY for a file that is no terminal, before a bad pointer's EFAULT."""
    out = compare(run_both([sysdetails(), "ioctl"]), assert_same)
    assert "ioctl closed unknown 0x1234 good: -1 EBADF\n" in out
    assert "ioctl closed TCGETS NULL: -1 EBADF\n" in out
    assert "ioctl above the limit SIOCGIFCONF bad: -1 EBADF\n" in out
    assert "ioctl file TCGETS bad: -1 ENOTTY\n" in out
    assert "ioctl pipe FIONREAD kernel: -1 EFAULT\n" in out
    assert "ioctl socket SIOCGIFINDEX good: 0\n" in out


# ---- network interfaces -------------------------------------------------------------------

@pytest.mark.parametrize("libc", LIBCS)
def test_interface_ioctls(sysdetails, run_both, assert_same, libc):
    """SIOCGIFCONF (a pointer inside the structure; NULL asks for the length), the
    SIOCGIF* requests on every interface and their errors, byte for byte, on inet,
    inet6 and unix sockets; if_nameindex, if_nametoindex, a scoped IPv6 address."""
    out = compare(run_both([sysdetails(libc), "ifaces"]), assert_same)
    assert "if_nametoindex lo: 1\n" in out
    assert "getaddrinfo fe80::1%lo: scope id 1 (lo is 1)\n" in out
    assert "inet SIOCGIFCONF 40: 0\n  length 40\n  lo family 2 127.0.0.1\n" in out
    assert "inet SIOCGIFADDR lo: 0\n" in out
    assert "inet6 SIOCGIFADDR lo: -1 ENOTTY\n" in out
    assert "unix SIOCGIFINDEX no-such-if0: -1 ENODEV\n" in out
    assert "inet SIOCGIFADDR lo:0: -1 EADDRNOTAVAIL\n" in out


def test_interface_ioctls_under_root(sysdetails, run_native, run_km, tmp_path, assert_same):
    """km's jail (its own mount namespace) still sees the host's interfaces."""
    native, under_km = in_root(run_native, run_km, tmp_path, sysdetails(), "ifaces")
    assert native.returncode == 0, native.err
    assert_same(native, under_km)


def test_interface_changes_are_refused(sysdetails, run_km):
    """km changes no host interface: the SIOCSIF* requests are EPERM, as for an
    unprivileged process, after the descriptor's and the structure's own errors.
    (Not compared with a native run: natively, as root, they would change things.)"""
    out = run_km([sysdetails(), "ioctl"]).out
    assert "ioctl socket SIOCSIFFLAGS NULL: -1 EFAULT\n" in out
    assert "ioctl closed SIOCSIFFLAGS bad: -1 EBADF\n" in out
    assert "ioctl file SIOCSIFFLAGS bad: -1 ENOTTY\n" in out


def _stable(text: str) -> str:
    """Tool output without what changes from one run to the next (traffic counters,
    address lifetimes)."""
    return "".join(line for line in text.splitlines(keepends=True)
                   if not re.search(r"packets|bytes|valid_lft|collisions", line))


@pytest.mark.parametrize("argv", [["ifconfig", "lo"], ["ifconfig", "-a"],
                                  ["ifconfig", "no-such-if0"], ["ip", "addr"], ["ip", "link"],
                                  ["ip", "-4", "addr", "show", "dev", "lo"]],
                         ids=lambda argv: "-".join(argv))
def test_busybox_network_tools(run_both, argv):
    runs = run_both([BUSYBOX, *argv])
    assert runs.native.returncode == runs.km.returncode, runs.km.err
    assert _stable(runs.km.out) == _stable(runs.native.out)
    assert runs.km.err == runs.native.err
    if argv[-1] == "lo":
        assert "127.0.0.1" in runs.km.out


# ---- socket calls on what is no socket ------------------------------------------------------

def test_socket_calls_errors_in_linux_order(sysdetails, run_both, assert_same):
    """Every socket call on a closed descriptor, -1, one beyond the limit, a file, a
    pipe and sockets, with bad pointers and lengths: EBADF, ENOTSOCK, EFAULT, EINVAL in
    the order Linux finds them (connect reads its address before it asks for a socket;
    sendto checks its buffer first of all)."""
    out = compare(run_both([sysdetails(), "sockerr"]), assert_same)
    assert "closed getsockname bad bad: -1 EBADF\n" in out
    assert "file getsockname bad bad: -1 ENOTSOCK\n" in out
    assert "file connect bad 16: -1 EFAULT\n" in out
    assert "file bind bad 16: -1 ENOTSOCK\n" in out
    assert "closed sendto kernel: -1 EFAULT\n" in out
    assert "above the limit getpeername bad bad: -1 EBADF\n" in out
    assert "pipe sendmsg iovlen 5000: -1 ENOTSOCK\n" in out
    assert "udp getsockname NULL len0: 0\n  len 16\n" in out


def test_socket_calls_errors_under_root(sysdetails, run_native, run_km, tmp_path,
                                        assert_same):
    """The same under km --root, where a unix socket's path is resolved by km."""
    native, under_km = in_root(run_native, run_km, tmp_path, sysdetails(), "sockerr")
    assert native.returncode == 0, native.err
    assert_same(native, under_km)


# ---- symlink ------------------------------------------------------------------------------

def test_symlink_stores_its_target_as_text(sysdetails, run_both, assert_same):
    out = compare(run_both([sysdetails(), "symlink"]), assert_same)
    assert 'readlink l-dotdot: "../../../../../../../../etc/passwd"\n' in out
    assert "symlink 4095-byte target: 0\n" in out
    assert "symlink 4096-byte target: -1 ENAMETOOLONG\n" in out
    assert 'symlink "" "l-empty": -1 ENOENT\n' in out
    assert "symlink empty target, bad link: -1 ENOENT\n" in out


def test_symlink_stores_its_target_as_text_under_root(sysdetails, run_native, run_km,
                                                      tmp_path, assert_same):
    """Under km --root only the link's own name is resolved (inside the root): a
    target leaving the root, dangling or through missing directories is just text."""
    native, under_km = in_root(run_native, run_km, tmp_path, sysdetails(), "symlink")
    assert native.returncode == 0, native.err
    assert_same(native, under_km)
    assert 'readlink l-dangling-absolute: "/nonexistent/dir/x"\n' in under_km.out
    assert 'symlink "x" "l-new/": -1 ENOENT\n' in under_km.out
