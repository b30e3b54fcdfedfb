"""km's own seccomp filter (kontain.monitor.seccomp), tried in a forked child."""

from __future__ import annotations

import ctypes
import os
import signal

import pytest

from kontain.linux import hostcall as host
from kontain.linux.numbers import NUMBERS as NR
from kontain.monitor import seccomp

CLONE_NEWUSER, SIGCHLD = 0x10000000, 17
TIOCSTI, TCGETS, KVM_GET_API_VERSION = 0x5412, 0x5401, 0xAE00


def in_filtered_child(check) -> int:
    """Run check() in a child under the filter; its exit status (or -signal)."""
    pid = os.fork()
    if pid == 0:
        try:
            host.syscall(NR["prctl"], 38, 1, 0, 0, 0)  # PR_SET_NO_NEW_PRIVS
            seccomp.install()
            os._exit(check())
        except BaseException:  # noqa: BLE001
            os._exit(99)
    _, status = os.waitpid(pid, 0)
    return os.waitstatus_to_exitcode(status)


def test_allowed_calls_work():
    assert in_filtered_child(lambda: 0 if os.getpid() > 0 and os.read(
        os.open("/dev/null", os.O_RDONLY), 1) == b"" else 1) == 0


def test_unlisted_calls_fail_with_enosys():
    assert in_filtered_child(lambda: 0 if host.syscall(NR["mq_open"], 0, 0, 0, 0) == -38
                             else 1) == 0


@pytest.mark.parametrize("name", ["ptrace", "process_vm_readv", "open_by_handle_at", "mount",
                                  "io_uring_setup", "bpf", "unshare"])
def test_forbidden_calls_kill_km(name):
    assert in_filtered_child(lambda: host.syscall(NR[name], 0, 0, 0, 0) and 1) \
        == -signal.SIGSYS


def test_clone_may_not_make_namespaces():
    def check() -> int:
        refused = host.syscall(NR["clone"], CLONE_NEWUSER | SIGCHLD, 0, 0, 0, 0) == -1
        return 0 if refused else 1
    assert in_filtered_child(check) == 0


def test_ioctl_allows_kvm_and_terminals_but_not_tiocsti():
    def check() -> int:
        fd = os.open("/dev/null", os.O_RDONLY)
        byte = ctypes.c_char(b"x")
        tiocsti = host.syscall(NR["ioctl"], fd, TIOCSTI, ctypes.addressof(byte))
        tcgets = host.syscall(NR["ioctl"], fd, TCGETS, 0)
        kvm = host.syscall(NR["ioctl"], fd, KVM_GET_API_VERSION, 0)
        # Allowed requests reach the kernel (ENOTTY on /dev/null); TIOCSTI does not.
        return 0 if (tiocsti, tcgets, kvm) == (-1, -25, -25) else 1
    assert in_filtered_child(check) == 0


def test_the_filter_is_small_enough_to_search():
    program = seccomp.build_filter()
    assert len(program) % 8 == 0 and len(program) // 8 < 4096  # BPF_MAXINSNS


def test_the_prebuilt_program_is_current():
    from kontain.monitor.seccomp_program import PROGRAM
    assert PROGRAM == seccomp.build_filter(), \
        "regenerate it: .venv/bin/python -m kontain.monitor.seccomp"
