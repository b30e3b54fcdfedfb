"""The run loop's shortcuts agree with what they replace: kvm_run read with one struct
unpack and written as 64-bit words (kontain.monitor.thread), host calls through short
prototypes (kontain.linux.hostcall), the table of calls not timed for signals."""

from __future__ import annotations

import ctypes
import errno
import os

from kontain.kvm import constants as k
from kontain.kvm import structs as s
from kontain.linux import hostcall as host
from kontain.linux.numbers import NUMBERS as NR
from kontain.monitor import thread

REGS = ("rax", "rbx", "rcx", "rdx", "rsi", "rdi", "rsp", "rbp", "r8", "r9", "r10", "r11")


def test_one_unpack_reads_exit_reason_port_and_registers_as_the_fields_hold_them():
    run = s.Run()
    run.exit_reason = k.KVM_EXIT_IO
    run.exit.io.port = 0x1234
    for i, name in enumerate(REGS):
        setattr(run.s.regs, name, (0xF1 << 56) + i)  # every byte matters
    values = thread._EXIT.unpack_from(memoryview(run).cast("B"), 8)
    assert values == (k.KVM_EXIT_IO, 0x1234, *((0xF1 << 56) + i for i in range(len(REGS))))


def test_word_writes_land_in_the_fields():
    run = s.Run()
    words = memoryview(run).cast("B").cast("Q")
    words[thread._RAX], words[thread._RSP] = 1, 2
    words[thread._RIP], words[thread._RFLAGS] = 3, 4
    words[thread._DIRTY] = k.KVM_SYNC_X86_REGS
    regs = run.s.regs
    assert (regs.rax, regs.rsp, regs.rip, regs.rflags) == (1, 2, 3, 4)
    assert run.kvm_dirty_regs == k.KVM_SYNC_X86_REGS and regs.rbx == regs.r15 == 0


def test_calls_that_wait_are_timed_and_only_those_that_cannot_are_not():
    for name in ("read", "write", "futex", "ppoll", "nanosleep", "wait4", "rt_sigsuspend",
                 "clone", "clone3", "accept4", "recvfrom", "rt_sigtimedwait", "close"):
        assert thread.MAY_WAIT[NR[name]], name
    for name in ("getppid", "clock_gettime", "rt_sigprocmask", "mmap", "brk"):
        assert not thread.MAY_WAIT[NR[name]], name


def test_short_prototypes_return_results_and_negative_errnos():
    r, w = os.pipe()
    try:
        data = ctypes.create_string_buffer(b"abc", 3)
        assert host.syscall3(NR["write"], w, ctypes.addressof(data), 3) == 3
        out = ctypes.create_string_buffer(3)
        assert host.syscall3(NR["read"], r, ctypes.addressof(out), 3) == 3
        assert out.raw == b"abc"
        assert host.syscall3(NR["read"], -1, ctypes.addressof(out), 3) == -errno.EBADF
        assert host.syscall4(NR["pread64"], r, ctypes.addressof(out), 3, 0) == -errno.ESPIPE
    finally:
        os.close(r)
        os.close(w)
