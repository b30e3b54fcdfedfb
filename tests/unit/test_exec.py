"""execve before its point of no return, without KVM: the `#!` line as binfmt_script
reads it (kontain.loader.script), and kontain.monitor.exec.prepare finding what would
run, or the errno execve returns, in a process whose root is a temporary directory."""

from __future__ import annotations

import errno
import os
import shutil

import pytest
from harness import make_process

from kontain.loader.elf import ExecError
from kontain.loader.script import interpreter_line
from kontain.monitor.exec import MAX_ARG_BYTES, prepare


@pytest.mark.parametrize("head, expected", [
    (b"\x7fELF", None),
    (b"#!/bin/sh\n", (b"/bin/sh", None)),
    (b"#! \t/bin/sh \t -e -x \t\nrest", (b"/bin/sh", b"-e -x")),
    (b"#!/bin/sh\r\n", (b"/bin/sh\r", None)),
    (b"#!/bin/sh", (b"/bin/sh", None)),                    # zero-padded: NUL ends it
    (b"#!/bin/sh\0-x\n", (b"/bin/sh", None)),              # strnchr stops at the NUL
    (b"#!/bin/sh a\0b\n", (b"/bin/sh", b"a")),
    (b"#!\0/bin/sh\n", (b"", None)),                       # names the working directory
    (b"#!/bin/sh " + b"y" * 300, (b"/bin/sh", b"y" * 245)),  # cut before byte 255
])
def test_interpreter_line(head, expected):
    assert interpreter_line(head) == expected


@pytest.mark.parametrize("head", [
    b"#!\n", b"#!  \t \n", b"#!" + b" " * 300, b"#!" + b"/" * 300 + b"bin/sh\n",
])
def test_interpreter_line_refused(head):
    with pytest.raises(ExecError) as caught:
        interpreter_line(head)
    assert caught.value.errno == errno.ENOEXEC


@pytest.fixture
def root(tmp_path):
    """A root with /bin/prog (a real static ELF, copied) and room for scripts."""
    (tmp_path / "bin").mkdir()
    shutil.copy("/bin/busybox", tmp_path / "bin" / "prog")
    return tmp_path


def script(root, name: str, text: bytes, mode: int = 0o755) -> None:
    (root / name).write_bytes(text)
    (root / name).chmod(mode)


def errno_of(proc, path: bytes, argv=(b"x",), envp=()) -> int:
    with pytest.raises(ExecError) as caught:
        prepare(proc, path, list(argv), list(envp))
    return caught.value.errno


def test_an_elf_is_opened_by_its_path_inside_the_root(root):
    proc = make_process(str(root))
    request = prepare(proc, b"/bin/prog", [b"prog", b"a"], [b"E=1"])
    try:
        assert request.name == "/bin/prog"
        assert request.argv == [b"prog", b"a"] and request.envp == [b"E=1"]
        assert request.execfn == b"/bin/prog"
        assert os.fstat(request.fd).st_ino == os.stat(root / "bin" / "prog").st_ino
        assert request.fd >= proc.fds.km_base  # out of the guest's descriptor range
    finally:
        request.close()


def test_a_script_chain_becomes_the_interpreter_argv(root):
    script(root, "inner", b"#!/bin/prog -x\n")
    script(root, "outer", b"#!/inner arg\n")
    proc = make_process(str(root))
    request = prepare(proc, b"/outer", [b"outer", b"1", b"2"], [])
    try:
        assert request.name == "/bin/prog"
        assert request.argv == [b"/bin/prog", b"-x", b"/inner", b"arg", b"/outer", b"1", b"2"]
        assert request.execfn == b"/outer"
    finally:
        request.close()


def test_a_script_by_descriptor_is_shown_by_the_kernel_name(root):
    script(root, "s", b"#!/bin/prog\n")
    proc = make_process(str(root))
    request = prepare(proc, b"/s", [b"s"], [], shown=b"/dev/fd/5")
    try:
        assert request.argv == [b"/bin/prog", b"/dev/fd/5"]
        assert request.execfn == b"/dev/fd/5"
    finally:
        request.close()
    with pytest.raises(ExecError) as caught:
        prepare(proc, b"/s", [b"s"], [], shown=b"/dev/fd/5", script_unreachable=True)
    assert caught.value.errno == errno.ENOENT


def test_five_levels_of_interpreters_and_no_more(root):
    previous = b"/bin/prog"
    for level in range(1, 7):
        script(root, f"l{level}", b"#!" + previous + b"\n")
        previous = b"/l%d" % level
    proc = make_process(str(root))
    prepare(proc, b"/l5", [b"l5"], []).close()
    assert errno_of(proc, b"/l6") == errno.ELOOP
    script(root, "self", b"#!/self\n")
    assert errno_of(proc, b"/self") == errno.ELOOP


def test_execve_errnos(root):
    proc = make_process(str(root))
    script(root, "noexec", b"#!/bin/prog\n", mode=0o644)
    script(root, "garbage", b"\x00\x01 not a program\n")
    script(root, "missing-interp", b"#!/nowhere/sh\n")
    script(root, "empty-name", b"#!\0\n")
    script(root, "blank", b"#!   \n")
    os.mkfifo(root / "fifo", 0o755)
    assert errno_of(proc, b"/nowhere") == errno.ENOENT
    assert errno_of(proc, b"/noexec") == errno.EACCES
    assert errno_of(proc, b"/bin") == errno.EACCES
    assert errno_of(proc, b"/fifo") == errno.EACCES      # at once, not waiting for a writer
    assert errno_of(proc, b"/garbage") == errno.ENOEXEC
    assert errno_of(proc, b"/missing-interp") == errno.ENOENT
    assert errno_of(proc, b"/empty-name") == errno.EACCES  # the working directory
    assert errno_of(proc, b"/blank") == errno.ENOEXEC
    assert errno_of(proc, b"/bin/prog/x") == errno.ENOTDIR
    assert errno_of(proc, b"/bin/prog", [b"x" * MAX_ARG_BYTES]) == errno.E2BIG


def test_a_path_cannot_leave_the_root(root, tmp_path_factory):
    outside = tmp_path_factory.mktemp("outside")
    shutil.copy("/bin/busybox", outside / "prog")
    (root / "escape").symlink_to(outside / "prog")
    proc = make_process(str(root))
    assert errno_of(proc, b"/../" + os.fsencode(outside / "prog")) == errno.ENOENT
    assert errno_of(proc, b"/escape") == errno.ENOENT
