"""System call handlers without KVM (tests/unit/harness.py): results, errnos, pointer
checks, one family after another; and the run loop driven by a stand-in for KVM_RUN."""

from __future__ import annotations

import errno
import os
import struct

import pytest
from harness import Guest, make_process, make_thread

from kontain.kvm import constants as k
from kontain.linux.numbers import NUMBERS as NR
from kontain.machine import stub
from kontain.mm.access import GuestFault
from kontain.monitor.dispatch import CONTEXT_SET
from kontain.monitor.exits import ExitProcess

BAD = 0x7F00_DEAD_0000  # an address nothing is mapped at


@pytest.fixture
def thread():
    proc = make_process()
    return make_thread(proc)


@pytest.fixture
def guest(thread):
    return Guest(thread)


def call(thread, name: str, *args: int) -> int:
    """Run one handler as the run loop does: its result, or -errno."""
    handler = thread.proc.syscalls.table[NR[name]]
    args = list(args) + [0] * (6 - len(args))
    try:
        return handler(thread, *args)
    except OSError as e:
        return -e.errno


# ---- the contract ------------------------------------------------------------------------

def test_errors_are_raised_with_their_errno(thread, guest):
    handler = thread.proc.syscalls.table[NR["close"]]
    with pytest.raises(OSError) as e:
        handler(thread, 999, 0, 0, 0, 0, 0)
    assert e.value.errno == errno.EBADF


def test_a_bad_pointer_is_efault_never_a_crash(thread, guest):
    assert call(thread, "uname", BAD) == -errno.EFAULT
    assert call(thread, "pipe2", BAD, 0) == -errno.EFAULT
    assert call(thread, "clock_gettime", 0, BAD) == -errno.EFAULT
    with pytest.raises(GuestFault):
        thread.mm.read(BAD, 1)


def test_unknown_calls_are_enosys(thread):
    assert thread.proc.syscalls.unknown(thread, 999) == -errno.ENOSYS


# ---- files ---------------------------------------------------------------------------------

def test_open_write_read_close(thread, guest, tmp_path):
    path = guest.string(tmp_path / "f")
    fd = call(thread, "openat", -100 & 0xFFFFFFFF, path, os.O_CREAT | os.O_RDWR, 0o600)
    assert fd >= 0
    data = guest.put(b"hello")
    assert call(thread, "write", fd, data, 5) == 5
    assert call(thread, "lseek", fd, 0, os.SEEK_SET) == 0
    buf = guest.alloc(16)
    assert call(thread, "read", fd, buf, 16) == 5 and guest.read(buf, 5) == b"hello"
    statbuf = guest.alloc(144)
    assert call(thread, "fstat", fd, statbuf) == 0
    assert struct.unpack_from("<q", guest.read(statbuf, 144), 48)[0] == 5  # st_size
    assert call(thread, "close", fd) == 0
    assert call(thread, "close", fd) == -errno.EBADF


def test_paths_are_checked(thread, guest, tmp_path):
    assert call(thread, "openat", -100 & 0xFFFFFFFF, BAD, 0, 0) == -errno.EFAULT
    assert call(thread, "openat", -100 & 0xFFFFFFFF, guest.string(""), 0, 0) == -errno.ENOENT
    long = guest.string(b"x" * 5000)
    assert call(thread, "openat", -100 & 0xFFFFFFFF, long, 0, 0) == -errno.ENAMETOOLONG


def test_km_descriptors_are_not_the_guests(thread):
    km_fd = thread.proc.fds.km_base + 1
    assert call(thread, "close", km_fd) == -errno.EBADF
    assert call(thread, "dup", km_fd) == -errno.EBADF


def test_device_nodes_cannot_be_made(thread, guest, tmp_path):
    path = guest.string(tmp_path / "dev")
    assert call(thread, "mknod", path, 0o020666, os.makedev(1, 3)) == -errno.EPERM
    assert call(thread, "mknod", path, 0o010666, 0) == 0  # a fifo is fine
    assert os.path.exists(tmp_path / "dev")


# ---- memory ------------------------------------------------------------------------------

def test_mmap_munmap_and_their_errors(thread):
    address = call(thread, "mmap", 0, 8192, 3, 0x22, -1 & 0xFFFFFFFF, 0)
    assert address > 0 and thread.mm.find(address) is not None
    assert call(thread, "munmap", address, 8192) == 0
    assert call(thread, "mmap", 0, 0, 3, 0x22, -1 & 0xFFFFFFFF, 0) == -errno.EINVAL
    assert call(thread, "munmap", address + 1, 4096) == -errno.EINVAL
    assert call(thread, "mprotect", 0x5000, 4096, 1) == -errno.ENOMEM


def test_mincore_answers_like_linux(thread, guest):
    vec = guest.alloc(16)
    assert call(thread, "mincore", 0x1000, 1 << 62, vec) == -errno.ENOMEM
    assert call(thread, "mincore", 0x1001, 4096, vec) == -errno.EINVAL


# ---- limits, identity ---------------------------------------------------------------------

def test_limits_are_64_bit_values(thread, guest):
    new = guest.put(struct.pack("<QQ", 1 << 63, (1 << 64) - 1))
    old = guest.alloc(16)
    assert call(thread, "prlimit64", 0, 3, new, old) == 0  # RLIMIT_STACK
    assert call(thread, "prlimit64", 0, 3, 0, old) == 0
    assert struct.unpack("<QQ", guest.read(old, 16)) == (1 << 63, (1 << 64) - 1)
    bad = guest.put(struct.pack("<QQ", 10, 5))
    assert call(thread, "prlimit64", 0, 3, bad, 0) == -errno.EINVAL


def test_getpid_is_the_process(thread):
    assert call(thread, "getpid") == thread.proc.pid


# ---- signals -------------------------------------------------------------------------------

def test_sigaction_and_sigprocmask(thread, guest):
    act = guest.put(struct.pack("<QQQQ", 0x401000, 0x04000000, 0x402000, 0))
    old = guest.alloc(32)
    assert call(thread, "rt_sigaction", 10, act, old, 8) == 0
    assert thread.proc.signals.action(10).handler == 0x401000
    assert call(thread, "rt_sigaction", 9, act, 0, 8) == -errno.EINVAL  # SIGKILL
    assert call(thread, "rt_sigaction", 10, act, 0, 4) == -errno.EINVAL  # sigsetsize
    mask = guest.put(struct.pack("<Q", 1 << 9))
    assert call(thread, "rt_sigprocmask", 0, mask, 0, 8) == 0  # SIG_BLOCK SIGUSR1
    assert thread.signal_mask == 1 << 9


def test_a_signal_to_itself_is_pending_until_delivered(thread):
    assert call(thread, "rt_sigprocmask", 0, 0, 0, 8) == 0
    thread.signal_mask = 1 << 9
    assert call(thread, "kill", thread.proc.pid, 10) == 0
    assert thread.proc.signals.shared.bits & (1 << 9)


def test_rt_sigreturn_says_it_set_the_context(thread, guest):
    from kontain.monitor import sigframe
    registers = dict.fromkeys(sigframe.GREG_ORDER, 0)
    registers.update(rip=0x401000, rsp=guest.alloc(0x10000) + 0x10000)
    frame = sigframe.build(registers, 0, bytes(128), 0, (0, 2, 0), False,
                           bytes(thread.proc.machine.xsave_size), 7)
    thread.mm.write(frame.fp_address, frame.fpstate)
    thread.mm.write(frame.address, frame.image)
    thread.regs.rsp = frame.address + 8  # as after the handler's `ret` into sa_restorer
    thread.regs.rcx, thread.regs.r11 = 0x401000, 0x202
    assert call(thread, "rt_sigreturn") is CONTEXT_SET
    assert thread.user_context()[:2] == (0x401000, registers["rsp"])


# ---- the run loop, with a stand-in for KVM_RUN ---------------------------------------------

def test_run_loop_dispatches_system_calls_until_exit_group(thread, guest, tmp_path):
    """Each "KVM_RUN" plays one exit of a guest that writes to a file and exits."""
    fd = os.open(tmp_path / "out", os.O_CREAT | os.O_WRONLY, 0o600)
    data = guest.put(b"from the run loop\n")
    calls = iter([(NR["write"], fd, data, 18), (NR["exit_group"], 7, 0, 0)])
    results = []

    def kvm_run(vcpu_fd: int, request: int, arg: int) -> int:
        assert request == k.KVM_RUN
        run, regs = thread.run_struct, thread.regs
        if run.exit_reason == k.KVM_EXIT_IO:  # the result of the previous call
            results.append(regs.rax)
        nr, a0, a1, a2 = next(calls)
        run.exit_reason = k.KVM_EXIT_IO
        run.exit.io.port = stub.SYSCALL_PORT
        regs.rax, regs.rdi, regs.rsi, regs.rdx = nr, a0, a1, a2
        regs.rcx, regs.r11 = 0x401000, 0x202
        return 0

    thread.run_ioctl = kvm_run
    with pytest.raises(ExitProcess) as e:
        thread.run()
    os.close(fd)
    assert e.value.status == 7 and results == [18]
    assert (tmp_path / "out").read_bytes() == b"from the run loop\n"
    assert thread.regs.rip == 0x401000  # returned to rcx, as after `syscall`
