"""System call handlers of the lifecycle family (kontain/syscalls/lifecycle.py) without
KVM: fork, vfork, execve, execveat, wait4 and waitid.

fork and vfork need a running VM: they are tested for what they ask
kontain.monitor.fork.fork_process (replaced by a recorder). execve is tested up to its
point of no return, where km raises ExecImage (control flow, not an error) with what it
would run; everything that makes execve fail before that point is compared with Linux,
whose own execve is made in a forked child (had Linux accepted, only that child would
have been replaced). wait4 and waitid are tested on real children of this process.
"""

from __future__ import annotations

import ctypes
import errno
import os
import struct

import pytest
from harness import Guest, make_process, make_thread
from oracle import BAD, call, host, hostile_registers_leave_km_untouched, native

from kontain.linux.abi import (
    CLONE_VFORK,
    CLONE_VM,
)
from kontain.monitor.exits import (
    ExecImage,
)
from kontain.syscalls import lifecycle as family

AT_FDCWD = -100 & 0xFFFFFFFF
AT_SYMLINK_NOFOLLOW, AT_EMPTY_PATH = 0x100, 0x1000
SIGCHLD = 17
WNOHANG, WEXITED = 1, 4
P_PID = 1
CLD_EXITED = 1


def native_exec(name: str, *args: int) -> int:
    """Linux's answer to an execve/execveat, taken in a forked child: -errno, or 0 if it
    ran the program (which then replaced the child, not this process)."""
    r, w = os.pipe()
    pid = os.fork()
    if pid == 0:
        try:
            os.close(r)
            os.set_inheritable(w, False)
            os.write(w, struct.pack("<q", native(name, *args)))
        finally:
            os._exit(0)
    os.close(w)
    answer = os.read(r, 8)
    os.close(r)
    os.waitpid(pid, 0)
    return struct.unpack("<q", answer)[0] if answer else 0


def km_exec(thread, name: str, *args: int):
    """km's answer to an execve: -errno, or the request it would run (ExecImage)."""
    try:
        return call(thread, name, *args)
    except ExecImage as image:
        image.request.close()
        return image.request


@pytest.fixture
def thread():
    return make_thread(make_process())


@pytest.fixture
def guest(thread):
    return Guest(thread)


@pytest.fixture
def programs(tmp_path):
    """Things to exec in tmp_path: a script, a script whose interpreter is missing, a
    file that is not executable, an empty executable file, a directory, a symlink."""
    script = tmp_path / "script"
    script.write_bytes(b"#!/bin/sh -e\nexit 0\n")
    missing = tmp_path / "missing-interpreter"
    missing.write_bytes(b"#!/nonexistent/shell\n")
    plain = tmp_path / "plain"
    plain.write_bytes(b"#!/bin/sh\n")
    empty = tmp_path / "empty"
    empty.write_bytes(b"")
    for path in (script, missing, empty):
        path.chmod(0o755)
    plain.chmod(0o644)
    (tmp_path / "link").symlink_to("script")
    (tmp_path / "dangling").symlink_to("nowhere")
    return tmp_path


def _argv(put, *strings: bytes) -> int:
    """A NULL-terminated argv array (put: where the strings and the array go)."""
    pointers = [put(s + b"\0") for s in strings]
    return put(struct.pack(f"<{len(pointers) + 1}Q", *pointers, 0))


# ---- fork, vfork ---------------------------------------------------------------------------

def test_fork_and_vfork_ask_for_the_right_process(thread, monkeypatch):
    asked = []

    def fork_process(proc, parent, flags, stack, parent_tid, child_tid, tls):
        asked.append((proc, parent, flags, stack, parent_tid, child_tid, tls))
        return 4242
    monkeypatch.setattr("kontain.syscalls.lifecycle.fork_process", fork_process)
    assert call(thread, "fork") == 4242
    assert call(thread, "vfork") == 4242
    assert asked == [(thread.proc, thread, SIGCHLD, 0, 0, 0, 0),
                     (thread.proc, thread, CLONE_VM | CLONE_VFORK | SIGCHLD, 0, 0, 0, 0)]


# ---- execve ---------------------------------------------------------------------------------

def test_execve_of_a_script_reaches_the_point_of_no_return(thread, guest, programs):
    path = os.fsencode(programs / "script")
    argv = _argv(guest.put, b"script", b"arg")
    envp = _argv(guest.put, b"A=1")
    request = km_exec(thread, "execve", guest.put(path + b"\0"), argv, envp)
    assert not isinstance(request, int), request
    assert request.argv == [b"/bin/sh", b"-e", path, b"arg"]
    assert request.envp == [b"A=1"]
    assert request.execfn == path
    # NULL argv and envp are empty arrays, as on Linux
    request = km_exec(thread, "execve", guest.put(path + b"\0"), 0, 0)
    assert request.argv == [b"/bin/sh", b"-e", path] and request.envp == []


@pytest.mark.parametrize("target", ["missing", "plain", "empty", "missing-interpreter", ".",
                                    "dangling", "script/x", ""])
def test_execve_failures_like_linux(thread, guest, programs, target):
    path = os.fsencode(programs / target) if target else b""
    km = km_exec(thread, "execve", guest.put(path + b"\0"), _argv(guest.put, b"x"), 0)
    linux = native_exec("execve", host(path + b"\0"), _argv(host, b"x"), 0)
    assert linux < 0
    assert km == linux


def test_execve_pointers(thread, guest, programs):
    path = os.fsencode(programs / "script") + b"\0"
    bad_entry = guest.put(struct.pack("<QQ", BAD, 0))
    for path_arg, argv, envp in [(0, 0, 0), (BAD, 0, 0), (guest.put(path), BAD, 0),
                                 (guest.put(path), 0, BAD), (guest.put(path), bad_entry, 0)]:
        host_path = path_arg if path_arg in (0, BAD) else host(path)
        host_argv = argv if argv in (0, BAD) else host(struct.pack("<QQ", BAD, 0))
        assert km_exec(thread, "execve", path_arg, argv, envp) == \
            native_exec("execve", host_path, host_argv, envp) == -errno.EFAULT


def test_execve_of_a_too_long_argument_is_e2big(thread, guest, programs):
    path = os.fsencode(programs / "script") + b"\0"
    long = b"a" * (32 * 4096 + 1)
    assert native_exec("execve", host(path), _argv(host, b"x", long), 0) == -errno.E2BIG
    assert km_exec(thread, "execve", guest.put(path), _argv(guest.put, b"x", long), 0) \
        == -errno.E2BIG


# ---- execveat -----------------------------------------------------------------------------

@pytest.fixture
def fds():
    opened: list[int] = []
    yield opened
    for fd in opened:
        try:
            os.close(fd)
        except OSError:
            pass


def test_execveat_of_a_descriptor_and_relative_paths(thread, guest, programs, fds):
    fd = os.open(programs / "script", os.O_RDONLY)
    d = os.open(programs, os.O_RDONLY | os.O_DIRECTORY)
    for inheritable in (fd, d):  # a script named through them must survive the exec
        os.set_inheritable(inheritable, True)
    cloexec = os.open(programs / "script", os.O_RDONLY | os.O_CLOEXEC)
    cloexec_dir = os.open(programs, os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC)
    fds += [fd, d, cloexec, cloexec_dir]
    argv = _argv(guest.put, b"x")
    request = km_exec(thread, "execveat", fd, guest.put(b"\0"), argv, 0, AT_EMPTY_PATH)
    assert not isinstance(request, int), request
    assert request.argv[:2] == [b"/bin/sh", b"-e"]
    request = km_exec(thread, "execveat", d, guest.put(b"script\0"), argv, 0, 0)
    assert not isinstance(request, int), request
    for dirfd, name, flags in [(d, b"missing", 0), (d, b"plain", 0), (fd, b"", 0),
                               (os.open(programs / "plain", os.O_RDONLY), b"", AT_EMPTY_PATH),
                               (fd, b"x", 0),
                               (cloexec, b"", AT_EMPTY_PATH),  # the script is unreachable
                               (cloexec_dir, b"script", 0),    # so is this one
                               (d, b"missing", 0x1234),        # unknown flags
                               (d, b"dangling", AT_SYMLINK_NOFOLLOW),
                               (d, b"link", AT_SYMLINK_NOFOLLOW)]:
        if dirfd not in fds:
            fds.append(dirfd)
        km = km_exec(thread, "execveat", dirfd, guest.put(name + b"\0"), argv, 0, flags)
        assert km == native_exec("execveat", dirfd, host(name + b"\0"), _argv(host, b"x"),
                                 0, flags), (name, flags)
    for bad in (thread.proc.fds.km_base, -1 & 0xFFFFFFFF):
        assert km_exec(thread, "execveat", bad, guest.put(b"\0"), argv, 0, AT_EMPTY_PATH) \
            == -errno.EBADF
        assert km_exec(thread, "execveat", bad, guest.put(b"script\0"), argv, 0, 0) \
            == -errno.EBADF


def test_execveat_of_the_working_directory_is_eacces(thread, guest, programs, monkeypatch):
    monkeypatch.chdir(programs)
    assert native_exec("execveat", AT_FDCWD, host(b"\0"), _argv(host, b"x"), 0,
                       AT_EMPTY_PATH) == -errno.EACCES
    assert km_exec(thread, "execveat", AT_FDCWD, guest.put(b"\0"), _argv(guest.put, b"x"),
                   0, AT_EMPTY_PATH) == -errno.EACCES


# ---- wait4, waitid ------------------------------------------------------------------------

@pytest.fixture
def children():
    """Children of this process that exit at once with a status, reaped by the end."""
    made: list[int] = []

    def make(status: int) -> int:
        pid = os.fork()
        if pid == 0:
            os._exit(status)
        made.append(pid)
        return pid
    yield make
    for pid in made:
        try:
            os.waitpid(pid, 0)
        except ChildProcessError:
            pass


def test_wait4_reaps_a_child_like_linux(thread, guest, children):
    km_child, linux_child = children(7), children(7)
    km_status, km_usage = guest.alloc(4), guest.alloc(144)
    linux_status, linux_usage = host(4), host(144)
    assert call(thread, "wait4", km_child, km_status, 0, km_usage) == km_child
    assert native("wait4", linux_child, linux_status, 0, linux_usage) == linux_child
    assert guest.read(km_status, 4) == ctypes.string_at(linux_status, 4)
    assert struct.unpack("<i", guest.read(km_status, 4))[0] == 7 << 8
    assert call(thread, "wait4", km_child, km_status, 0, 0) == -errno.ECHILD  # reaped


def test_wait4_errors_like_linux(thread, guest, children):
    child = children(0)
    for pid, options in [(1, 0), (0x7FFF_FFF0, 0), (child, 0x1234_0000)]:
        assert call(thread, "wait4", pid, guest.alloc(4), options, 0) == \
            native("wait4", pid, host(4), options, 0), (pid, options)


def test_wait4_without_children_ignores_the_pointers(thread):
    assert native("wait4", 1, BAD, 0, BAD) == -errno.ECHILD
    assert call(thread, "wait4", 1, BAD, 0, BAD) == -errno.ECHILD


@pytest.mark.parametrize("bad", ["status", "rusage"])
def test_wait4_reaps_before_it_writes(thread, guest, children, bad):
    """A bad pointer is found when the status is written: the child is reaped all the
    same, and the call is EFAULT."""
    km_child, linux_child = children(5), children(5)
    os.waitid(os.P_PID, km_child, os.WEXITED | os.WNOWAIT)  # both have exited
    os.waitid(os.P_PID, linux_child, os.WEXITED | os.WNOWAIT)
    km_args = (BAD, 0) if bad == "status" else (guest.alloc(4), BAD)
    linux_args = (BAD, 0) if bad == "status" else (host(4), BAD)
    assert call(thread, "wait4", km_child, km_args[0], WNOHANG, km_args[1]) == \
        native("wait4", linux_child, linux_args[0], WNOHANG, linux_args[1]) == -errno.EFAULT
    assert call(thread, "wait4", km_child, 0, WNOHANG, 0) == \
        native("wait4", linux_child, 0, WNOHANG, 0) == -errno.ECHILD


def test_waitid_writes_the_siginfo_linux_writes(thread, guest, children):
    km_child, linux_child = children(3), children(3)
    km_info, linux_info = guest.alloc(128), host(128)
    assert call(thread, "waitid", P_PID, km_child, km_info, WEXITED, 0) == 0
    assert native("waitid", P_PID, linux_child, linux_info, WEXITED, 0) == 0
    km_bytes, linux_bytes = guest.read(km_info, 128), ctypes.string_at(linux_info, 128)
    signo, _errno, code, pid = struct.unpack_from("<iii4xi", km_bytes)
    assert (signo, code, pid) == (SIGCHLD, CLD_EXITED, km_child)
    assert km_bytes[:16] == linux_bytes[:16] and km_bytes[20:] == linux_bytes[20:]
    for idtype, ident, options in [(P_PID, km_child, WEXITED), (99, 0, WEXITED),
                                   (P_PID, 1, WEXITED), (P_PID, 1, 0), (P_PID, 1, 0x1234)]:
        assert call(thread, "waitid", idtype, ident, km_info, options, 0) == \
            native("waitid", idtype, ident, linux_info, options, 0), (idtype, ident, options)


# ---- hostile registers ---------------------------------------------------------------------

#: Handlers never called with arbitrary registers here: they act on this process.
NOT_SWEPT = {
    "fork": "forks this process",
    "vfork": "forks this process",
}


@pytest.mark.parametrize("name", sorted(set(family.HANDLERS) - set(NOT_SWEPT)))
def test_hostile_registers_give_errors_never_crashes(thread, name):
    hostile_registers_leave_km_untouched(thread, name)
