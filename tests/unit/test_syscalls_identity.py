"""System call handlers of the identity family (kontain/syscalls/identity.py) without
KVM: exit and exit_group, process and user ids, groups, resource limits and usage,
scheduling and CPU affinity, arch_prctl, set_tid_address, robust lists and prctl.

Linux is the oracle: each case is also made natively by this process, and km must give
the same result, errno and bytes. The tests may run as root, so nothing here changes this
process's credentials, limits, scheduling or affinity: ids are "set" to what they are, and
the other calls only with arguments Linux refuses; the thread name is restored.
"""

from __future__ import annotations

import ctypes
import errno
import os
import resource
import struct
import threading

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

from kontain.machine import cpu
from kontain.monitor.exits import (
    ExitProcess,
    ThreadExit,
)
from kontain.syscalls import identity as family

KEEP = -1 & 0xFFFFFFFF  # "unchanged" for the set*id calls
RLIMIT = struct.Struct("<QQ")
RLIM_INFINITY = MASK64
RLIMIT_CPU, RLIMIT_FSIZE, RLIMIT_STACK, RLIMIT_CORE, RLIMIT_NOFILE = 0, 1, 3, 4, 7
ARCH_SET_GS, ARCH_SET_FS, ARCH_GET_FS, ARCH_GET_GS = 0x1001, 0x1002, 0x1003, 0x1004
ARCH_GET_CPUID, ARCH_SET_CPUID = 0x1011, 0x1012
PR_SET_NAME, PR_GET_NAME = 15, 16


@pytest.fixture
def thread():
    return make_thread(make_process())


@pytest.fixture
def guest(thread):
    return Guest(thread)


@pytest.fixture
def twin(thread):
    """The standard layout for pointer checks: RW, RO, then a hole."""
    t = Twin(thread, [RW, RO, HOLE])
    yield t
    t.close()


def pointer_cases(t: Twin, size: int) -> list[tuple[int, int]]:
    """(guest, host) pointers for an output of size bytes: unmapped, read-only,
    straddling into the read-only page, straddling into the hole."""
    return [(BAD, BAD), (t.guest + PAGE, t.host + PAGE),
            (t.guest + PAGE - size // 2, t.host + PAGE - size // 2),
            (t.guest + 2 * PAGE - size // 2, t.host + 2 * PAGE - size // 2)]


# ---- exit ----------------------------------------------------------------------------------

def test_exit_and_exit_group_end_the_thread_and_the_process(thread):
    """Not errors: control flow that passes through the handler contract."""
    with pytest.raises(ThreadExit) as ended:
        call(thread, "exit", 3)
    assert ended.value.status == 3
    with pytest.raises(ExitProcess) as gone:
        call(thread, "exit_group", 300)
    assert gone.value.status == 300 & 0xFF  # the parent sees the low byte, as on Linux


# ---- ids --------------------------------------------------------------------------------

def test_ids_like_linux(thread):
    assert call(thread, "getpid") == thread.proc.pid == os.getpid()
    assert call(thread, "gettid") == thread.tid
    assert call(thread, "getppid") == native("getppid")
    for name in ("getuid", "geteuid", "getgid", "getegid", "getpgrp"):
        assert call(thread, name) == native(name), name
    for name, arg in [("getpgid", 0), ("getsid", 0), ("getpgid", os.getppid()),
                      ("getpgid", -1 & 0xFFFFFFFF), ("getsid", 0x7FFF_FFF0)]:
        assert call(thread, name, arg) == native(name, arg), (name, arg)


def test_setting_ids_to_what_they_are(thread):
    uid, gid = os.getuid(), os.getgid()
    for name, args in [("setuid", (uid,)), ("setgid", (gid,)), ("setreuid", (KEEP, KEEP)),
                       ("setregid", (KEEP, KEEP)), ("setresuid", (KEEP, KEEP, KEEP)),
                       ("setresgid", (KEEP, KEEP, KEEP)), ("setfsuid", (KEEP,)),
                       ("setfsgid", (KEEP,)), ("setpgid", (-1 & 0xFFFFFFFF, 0))]:
        assert call(thread, name, *args) == native(name, *args), name
    assert (os.getuid(), os.getgid()) == (uid, gid)


@pytest.mark.parametrize("name", ["getresuid", "getresgid"])
def test_getres_ids(thread, guest, twin, name):
    km = [guest.alloc(4) for _ in range(3)]
    linux = [host(4) for _ in range(3)]
    assert call(thread, name, *km) == native(name, *linux) == 0
    assert [guest.read(a, 4) for a in km] == [ctypes.string_at(a, 4) for a in linux]
    for i in range(3):
        for guest_arg, host_arg in pointer_cases(twin, 4) + [(0, 0)]:
            km_args, linux_args = list(km), list(linux)
            km_args[i], linux_args[i] = guest_arg, host_arg
            assert call(thread, name, *km_args) == native(name, *linux_args) == -errno.EFAULT


def test_getgroups(thread, guest, twin):
    count = native("getgroups", 0, 0)
    assert call(thread, "getgroups", 0, BAD) == count  # size 0: the count, list untouched
    km, linux = guest.alloc(4 * (count + 1)), host(4 * (count + 1))
    assert call(thread, "getgroups", count + 1, km) == \
        native("getgroups", count + 1, linux) == count
    assert guest.read(km, 4 * count) == ctypes.string_at(linux, 4 * count)
    for size in (-1 & 0xFFFFFFFF, max(count - 1, 0) or 0):
        assert call(thread, "getgroups", size, km) == native("getgroups", size, linux)
    if count:
        for guest_arg, host_arg in pointer_cases(twin, 4 * count):
            assert call(thread, "getgroups", count, guest_arg) == \
                native("getgroups", count, host_arg) == -errno.EFAULT


def test_getgroups_writes_only_the_groups(thread, twin):
    count = native("getgroups", 0, 0)
    at_end = PAGE - 4 * count
    assert native("getgroups", 65536, twin.host + at_end) == count
    assert call(thread, "getgroups", 65536, twin.guest + at_end) == count


def test_setgroups_errors_set_nothing(thread, guest):
    before = os.getgroups()
    for size, km_list, linux_list in [(-1 & 0xFFFFFFFF, 0, 0), (65537, 0, 0),
                                      (1, BAD, BAD), (1, 0, 0)]:
        assert call(thread, "setgroups", size, km_list) == \
            native("setgroups", size, linux_list) < 0, size
    assert os.getgroups() == before


# ---- limits -------------------------------------------------------------------------------

@pytest.mark.parametrize("resource_id", [r for r in range(16) if r != RLIMIT_NOFILE])
def test_limits_read_like_linux(thread, guest, resource_id):
    km, linux = guest.alloc(16), host(16)
    assert call(thread, "prlimit64", 0, resource_id, 0, km) == \
        native("prlimit64", 0, resource_id, 0, linux) == 0
    assert guest.read(km, 16) == ctypes.string_at(linux, 16)
    assert call(thread, "getrlimit", resource_id, km) == 0
    assert guest.read(km, 16) == ctypes.string_at(linux, 16)


def test_rlimit_nofile_is_the_guests(thread, guest):
    """The guest sees its own RLIMIT_NOFILE, below km's descriptors."""
    out = guest.alloc(16)
    assert call(thread, "prlimit64", 0, RLIMIT_NOFILE, 0, out) == 0
    soft, hard = RLIMIT.unpack(guest.read(out, 16))
    assert (soft, hard) == (thread.proc.fds.guest_soft, thread.proc.fds.guest_hard)
    above = guest.put(RLIMIT.pack(hard + 1, hard + 1))
    assert call(thread, "prlimit64", 0, RLIMIT_NOFILE, above, 0) == -errno.EPERM
    lower = guest.put(RLIMIT.pack(64, hard))
    assert call(thread, "setrlimit", RLIMIT_NOFILE, lower) == 0
    assert call(thread, "getrlimit", RLIMIT_NOFILE, out) == 0
    assert RLIMIT.unpack(guest.read(out, 16)) == (64, hard)


def test_setting_limits(thread, guest):
    host_limits = {r: resource.getrlimit(r) for r in (RLIMIT_CPU, RLIMIT_FSIZE, RLIMIT_CORE)}
    stack = guest.put(RLIMIT.pack(1 << 20, RLIM_INFINITY))
    assert call(thread, "prlimit64", thread.proc.pid, RLIMIT_STACK, stack, 0) == 0
    out = guest.alloc(16)
    assert call(thread, "prlimit64", 0, RLIMIT_STACK, 0, out) == 0
    assert RLIMIT.unpack(guest.read(out, 16)) == (1 << 20, RLIM_INFINITY)
    # limits km enforces on itself too: set to what they are, so the host keeps them
    for resource_id, (soft, hard) in host_limits.items():
        values = [RLIM_INFINITY if v == resource.RLIM_INFINITY else v for v in (soft, hard)]
        assert call(thread, "setrlimit", resource_id, guest.put(RLIMIT.pack(*values))) == 0
        assert resource.getrlimit(resource_id) == (soft, hard)
    inverted = RLIMIT.pack(10, 5)
    for name, args in [("prlimit64", (0, RLIMIT_STACK, inverted, 0)),
                       ("prlimit64", (0, 16, 0, bytes(16))),
                       ("prlimit64", (0, -1 & 0xFFFFFFFF, 0, bytes(16))),
                       ("prlimit64", (0, RLIMIT_STACK, BAD, 0)),
                       ("prlimit64", (0, RLIMIT_STACK, 0, BAD)),
                       ("prlimit64", (-1 & 0xFFFFFFFF, RLIMIT_STACK, 0, bytes(16))),
                       ("prlimit64", (0x7FFF_FFF0, RLIMIT_STACK, 0, bytes(16))),
                       ("setrlimit", (RLIMIT_STACK, 0)), ("getrlimit", (RLIMIT_STACK, BAD)),
                       ("getrlimit", (99, bytes(16)))]:
        km_args = [guest.put(a) if isinstance(a, bytes) else a for a in args]
        linux_args = [host(a) if isinstance(a, bytes) else a for a in args]
        assert call(thread, name, *km_args) == native(name, *linux_args), (name, args)


def test_prlimit64_of_another_process(thread, guest):
    linux = host(16)
    assert native("prlimit64", os.getppid(), RLIMIT_STACK, 0, linux) == 0
    km = guest.alloc(16)
    assert call(thread, "prlimit64", os.getppid(), RLIMIT_STACK, 0, km) == 0
    assert guest.read(km, 16) == ctypes.string_at(linux, 16)


def test_other_processes_limits_are_never_set(thread, guest):
    """In a payload's reach are only km's other processes, whose host limits are km's
    own: km refuses to set them (EPERM, as without the permission); it reads them."""
    before = resource.prlimit(os.getppid(), resource.RLIMIT_STACK)
    stack = guest.put(RLIMIT.pack(*[RLIM_INFINITY if v == resource.RLIM_INFINITY else v
                                    for v in before]))
    assert call(thread, "prlimit64", os.getppid(), RLIMIT_STACK, stack, 0) == -errno.EPERM
    assert call(thread, "prlimit64", os.getppid(), 16, 0, guest.alloc(16)) == \
        native("prlimit64", os.getppid(), 16, 0, host(16)) == -errno.EINVAL
    assert call(thread, "prlimit64", os.getppid(), RLIMIT_STACK, 0, BAD) == \
        native("prlimit64", os.getppid(), RLIMIT_STACK, 0, BAD) == -errno.EFAULT
    assert resource.prlimit(os.getppid(), resource.RLIMIT_STACK) == before


@pytest.fixture
def km_helper():
    """The tid of a thread of this process that is not one of the guest's: a stand-in
    for km's own helper threads."""
    started, done = threading.Event(), threading.Event()
    tids: list[int] = []

    def helper() -> None:
        tids.append(threading.get_native_id())
        started.set()
        done.wait()
    worker = threading.Thread(target=helper)
    worker.start()
    started.wait()
    yield tids[0]
    done.set()
    worker.join()


def test_km_helper_threads_are_not_there(thread, guest, km_helper):
    """As in a pid namespace: the payload sees no thread of km's own (natively, a
    thread of one's process answers)."""
    assert native("prlimit64", km_helper, RLIMIT_STACK, 0, host(16)) == 0
    assert call(thread, "prlimit64", km_helper, RLIMIT_STACK, 0, guest.alloc(16)) == \
        -errno.ESRCH
    assert native("sched_getaffinity", km_helper, 128, host(128)) > 0
    assert call(thread, "sched_getaffinity", km_helper, 128, guest.alloc(128)) == -errno.ESRCH


def test_getrusage(thread, guest, twin):
    out = guest.alloc(144)
    for who in (0, -1 & 0xFFFFFFFF, 1):  # self, children, thread
        assert call(thread, "getrusage", who, out) == native("getrusage", who, host(144)) == 0
    assert call(thread, "getrusage", 5, out) == native("getrusage", 5, host(144)) \
        == -errno.EINVAL
    for guest_arg, host_arg in pointer_cases(twin, 144) + [(0, 0)]:
        assert call(thread, "getrusage", 0, guest_arg) == native("getrusage", 0, host_arg) \
            == -errno.EFAULT


# ---- scheduling ----------------------------------------------------------------------------

def test_sched_getaffinity_like_linux(thread, guest, twin):
    for size in (128, 8, 1024, 7, 4, 0):
        km, linux = guest.alloc(1024), host(1024)
        result = call(thread, "sched_getaffinity", 0, size, km)
        assert result == native("sched_getaffinity", 0, size, linux), size
        if result > 0:
            assert guest.read(km, result) == ctypes.string_at(linux, result)
    for pid in (thread.proc.pid, -1 & 0xFFFFFFFF):
        assert call(thread, "sched_getaffinity", pid, 128, guest.alloc(128)) == \
            native("sched_getaffinity", pid, 128, host(128))
    for guest_arg, host_arg in pointer_cases(twin, 8):
        assert call(thread, "sched_getaffinity", 0, 8, guest_arg) == \
            native("sched_getaffinity", 0, 8, host_arg)


def test_sched_setaffinity_to_what_it_is(thread, guest):
    current = host(128)
    size = native("sched_getaffinity", 0, 128, current)
    mask = ctypes.string_at(current, size)
    assert call(thread, "sched_setaffinity", 0, size, guest.put(mask)) == 0
    assert call(thread, "sched_setaffinity", 0, size, guest.put(bytes(size))) == \
        native("sched_setaffinity", 0, size, host(bytes(size))) == -errno.EINVAL
    assert call(thread, "sched_setaffinity", 0, size, BAD) == \
        native("sched_setaffinity", 0, size, BAD) == -errno.EFAULT
    assert native("sched_getaffinity", 0, 128, current) == size
    assert ctypes.string_at(current, size) == mask


@pytest.mark.parametrize("size", [1024, -8 & MASK64])
def test_sched_getaffinity_writes_only_the_cpumask(thread, twin, size):
    mask_size = native("sched_getaffinity", 0, 1024, host(1024))
    at_end = PAGE - mask_size
    assert native("sched_getaffinity", 0, size, twin.host + at_end) == mask_size
    assert call(thread, "sched_getaffinity", 0, size, twin.guest + at_end) == mask_size


def test_sched_getaffinity_of_another_process(thread, guest):
    linux = host(128)
    size = native("sched_getaffinity", os.getppid(), 128, linux)
    assert size > 0
    km = guest.alloc(128)
    assert call(thread, "sched_getaffinity", os.getppid(), 128, km) == size


def test_getcpu(thread, guest, twin):
    cpu_out, node = guest.alloc(4), guest.alloc(4)
    assert call(thread, "getcpu", cpu_out, node) == 0
    assert 0 <= struct.unpack("<I", guest.read(cpu_out, 4))[0] < os.cpu_count()
    assert call(thread, "getcpu", 0, 0) == native("getcpu", 0, 0, 0) == 0
    for guest_arg, host_arg in pointer_cases(twin, 4):
        assert call(thread, "getcpu", guest_arg, 0) == native("getcpu", host_arg, 0, 0)


def test_scheduling_queries_like_linux(thread, guest):
    for name, args in [("sched_getscheduler", (0,)), ("sched_getscheduler", (0x7FFF_FFF0,)),
                       ("sched_get_priority_max", (1,)), ("sched_get_priority_min", (2,)),
                       ("sched_get_priority_max", (99,)), ("sched_yield", ()),
                       ("getpriority", (0, 0)), ("getpriority", (9, 0))]:
        assert call(thread, name, *args) == native(name, *args), name
    km, linux = guest.alloc(16), host(16)
    for name, size in (("sched_getparam", 4), ("sched_rr_get_interval", 16)):
        assert call(thread, name, 0, km) == native(name, 0, linux) == 0
        assert guest.read(km, size) == ctypes.string_at(linux, size)
        assert call(thread, name, 0, BAD) == native(name, 0, BAD) == -errno.EFAULT
    assert call(thread, "sched_getparam", 0, 0) == native("sched_getparam", 0, 0) \
        == -errno.EINVAL


def test_scheduling_changes_to_what_it_is(thread, guest):
    """SCHED_OTHER, priority 0: what this process has; then arguments Linux refuses."""
    assert native("sched_getscheduler", 0) == 0
    zero = struct.pack("<i", 0)
    assert call(thread, "sched_setscheduler", 0, 0, guest.put(zero)) == 0
    assert call(thread, "sched_setparam", 0, guest.put(zero)) == 0
    for policy, param in [(99, zero), (0, struct.pack("<i", 5)), (0, None)]:
        km_param = guest.put(param) if param is not None else 0
        linux_param = host(param) if param is not None else 0
        assert call(thread, "sched_setscheduler", 0, policy, km_param) == \
            native("sched_setscheduler", 0, policy, linux_param) < 0, policy


@pytest.mark.parametrize("name", ["sched_getparam", "sched_setparam", "sched_rr_get_interval",
                                  "sched_setscheduler"])
def test_scheduling_calls_refuse_negative_pids(thread, guest, name):
    args = (0, bytes(16)) if name == "sched_setscheduler" else (bytes(16),)
    linux = [host(a) if isinstance(a, bytes) else a for a in args]
    km = [guest.put(a) if isinstance(a, bytes) else a for a in args]
    assert native(name, -1 & 0xFFFFFFFF, *linux) == -errno.EINVAL
    assert call(thread, name, -1 & 0xFFFFFFFF, *km) == -errno.EINVAL


# ---- arch_prctl, thread bookkeeping --------------------------------------------------------

def test_arch_prctl_sets_and_reads_the_segment_bases(thread, guest, twin):
    assert call(thread, "arch_prctl", ARCH_SET_FS, 0x7000_1000) == 0
    assert call(thread, "arch_prctl", ARCH_SET_GS, 0x7000_2000) == 0
    assert thread.vcpu.get_msrs([cpu.MSR_FS_BASE])[cpu.MSR_FS_BASE] == 0x7000_1000
    out = guest.alloc(8)
    assert call(thread, "arch_prctl", ARCH_GET_FS, out) == 0
    assert struct.unpack("<Q", guest.read(out, 8))[0] == 0x7000_1000
    assert call(thread, "arch_prctl", ARCH_GET_GS, out) == 0
    assert struct.unpack("<Q", guest.read(out, 8))[0] == 0x7000_2000
    for guest_arg, host_arg in pointer_cases(twin, 8) + [(0, 0)]:
        assert call(thread, "arch_prctl", ARCH_GET_FS, guest_arg) == \
            native("arch_prctl", ARCH_GET_FS, host_arg) == -errno.EFAULT
    for address in (1 << 47, MASK64, 0xFFFF_8000_0000_0000):  # not canonical user addresses
        assert call(thread, "arch_prctl", ARCH_SET_FS, address) == -errno.EPERM
    assert thread.vcpu.get_msrs([cpu.MSR_FS_BASE])[cpu.MSR_FS_BASE] == 0x7000_1000
    assert call(thread, "arch_prctl", 0x9999, 0) == native("arch_prctl", 0x9999, 0) \
        == -errno.EINVAL
    assert call(thread, "arch_prctl", ARCH_GET_CPUID, 0) == 1
    assert call(thread, "arch_prctl", ARCH_SET_CPUID, 0) == -errno.ENODEV


def test_set_tid_address_and_robust_lists(thread, guest, twin):
    assert call(thread, "set_tid_address", 0x1234_5678) == thread.tid
    assert thread.clear_child_tid == 0x1234_5678
    assert call(thread, "set_robust_list", 0x5000, 24) == 0
    for length in (0, 23, 25, MASK64):
        assert call(thread, "set_robust_list", 0x5000, length) == \
            native("set_robust_list", 0, length) == -errno.EINVAL
    head, length = guest.alloc(8), guest.alloc(8)
    assert call(thread, "get_robust_list", 0, head, length) == 0
    assert struct.unpack("<QQ", guest.read(head, 8) + guest.read(length, 8)) == (0x5000, 24)
    assert call(thread, "get_robust_list", thread.tid, head, length) == 0
    linux_head, linux_length = host(8), host(8)
    assert call(thread, "get_robust_list", 0x7FFF_FFF0, head, length) == \
        native("get_robust_list", 0x7FFF_FFF0, linux_head, linux_length) == -errno.ESRCH
    for guest_arg, host_arg in pointer_cases(twin, 8):
        assert call(thread, "get_robust_list", 0, guest_arg, length) == \
            native("get_robust_list", 0, host_arg, linux_length) == -errno.EFAULT
        assert call(thread, "get_robust_list", 0, head, guest_arg) == \
            native("get_robust_list", 0, linux_head, host_arg) == -errno.EFAULT


# ---- prctl -------------------------------------------------------------------------------

@pytest.fixture
def thread_name():
    """This thread's name, restored after the test (km renames the host thread)."""
    saved = host(16)
    native("prctl", PR_GET_NAME, saved)
    yield
    native("prctl", PR_SET_NAME, saved)


def test_prctl_thread_name(thread, guest, twin, thread_name):
    assert call(thread, "prctl", PR_SET_NAME, guest.string("a-very-long-thread-name")) == 0
    km, linux = guest.alloc(16), host(16)
    assert call(thread, "prctl", PR_GET_NAME, km) == native("prctl", PR_GET_NAME, linux) == 0
    assert guest.read(km, 16) == ctypes.string_at(linux, 16) == b"a-very-long-thr\0"
    assert thread.name == b"a-very-long-thr"
    for guest_arg, host_arg in pointer_cases(twin, 16) + [(0, 0)]:
        assert call(thread, "prctl", PR_GET_NAME, guest_arg) == \
            native("prctl", PR_GET_NAME, host_arg) == -errno.EFAULT
    for guest_arg, host_arg in [(0, 0), (BAD, BAD)]:
        assert call(thread, "prctl", PR_SET_NAME, guest_arg) == \
            native("prctl", PR_SET_NAME, host_arg) == -errno.EFAULT


@pytest.mark.parametrize("option, arg", [
    (2, "int"), (37, "int"),             # PR_GET_PDEATHSIG, PR_GET_CHILD_SUBREAPER
    (3, 0), (23, 0), (23, 99), (30, 0), (39, 0), (42, 0), (21, 0),
    (9999, 0), (-1 & 0xFFFFFFFF, 0)])
def test_prctl_queries_like_linux(thread, guest, option, arg):
    if arg == "int":
        km, linux = guest.alloc(4), host(4)
        assert call(thread, "prctl", option, km) == native("prctl", option, linux)
        assert guest.read(km, 4) == ctypes.string_at(linux, 4)
        assert call(thread, "prctl", option, BAD) == native("prctl", option, BAD) \
            == -errno.EFAULT
    else:
        assert call(thread, "prctl", option, arg, 0, 0, 0) == \
            native("prctl", option, arg, 0, 0, 0)


def test_prctl_dumpable_is_the_payloads_own_flag(thread):
    """PR_SET_DUMPABLE must never reach the host: a dumpable km lets other processes of
    its user read its memory through /proc (km's jail made it non-dumpable)."""
    PR_GET_DUMPABLE, PR_SET_DUMPABLE = 3, 4
    before = native("prctl", PR_GET_DUMPABLE, 0, 0, 0, 0)
    assert call(thread, "prctl", PR_SET_DUMPABLE, 1 - before, 0, 0, 0) == 0
    assert call(thread, "prctl", PR_GET_DUMPABLE, 0, 0, 0, 0) == 1 - before
    assert native("prctl", PR_GET_DUMPABLE, 0, 0, 0, 0) == before
    assert call(thread, "prctl", PR_SET_DUMPABLE, 2, 0, 0, 0) == \
        native("prctl", PR_SET_DUMPABLE, 2, 0, 0, 0) == -errno.EINVAL


# ---- hostile registers ---------------------------------------------------------------------

#: Handlers never called with arbitrary registers here: they act on this process.
NOT_SWEPT = {
    "setuid": "as root, would change this process's credentials",
    "setgid": "as root, would change this process's credentials",
    "setreuid": "as root, would change this process's credentials",
    "setregid": "as root, would change this process's credentials",
    "setresuid": "as root, would change this process's credentials",
    "setresgid": "as root, would change this process's credentials",
    "setfsuid": "as root, would change this process's credentials",
    "setfsgid": "as root, would change this process's credentials",
    "setsid": "would move this process to a session of its own",
    "setpgid": "would move this process to another process group",
    "setpriority": "would change this process's niceness",
}


@pytest.mark.parametrize("name", sorted(set(family.HANDLERS) - set(NOT_SWEPT)))
def test_hostile_registers_give_errors_never_crashes(thread, name):
    hostile_registers_leave_km_untouched(thread, name)


def test_nice_values_reach_only_the_payloads_own_processes(thread):
    """getpriority/setpriority of the payload itself work as natively; a user (every
    process of that uid on the host) or another process group is out of reach: ESRCH,
    as in a pid namespace (host processes are too, under km's jail: tests/security)."""
    PRIO_PROCESS, PRIO_PGRP, PRIO_USER = 0, 1, 2
    assert call(thread, "getpriority", PRIO_PROCESS, 0) == native("getpriority", PRIO_PROCESS, 0)
    assert call(thread, "getpriority", PRIO_USER, 0) > 0
    for which, who in ((PRIO_USER, 12345), (PRIO_PGRP, 1)):
        assert call(thread, "getpriority", which, who) == -errno.ESRCH, (which, who)
        assert call(thread, "setpriority", which, who, 19) == -errno.ESRCH, (which, who)
    assert call(thread, "getpriority", 7, 0) == native("getpriority", 7, 0) == -errno.EINVAL


def test_capget_like_linux(thread, guest):
    """The version probe libcap and Go's capability package make (version 0: EINVAL and
    the preferred version written back), then the sets, as the host has them."""
    header = guest.put(struct.pack("<Ii", 0, 0))
    host_header = ctypes.create_string_buffer(struct.pack("<Ii", 0, 0), 8)
    assert call(thread, "capget", header, 0) == \
        native("capget", ctypes.addressof(host_header), 0)
    assert guest.read(header, 4) == host_header.raw[:4] == struct.pack("<I", 0x20080522)
    data, host_data = guest.alloc(24), ctypes.create_string_buffer(24)
    assert call(thread, "capget", header, data) == \
        native("capget", ctypes.addressof(host_header), ctypes.addressof(host_data)) == 0
    assert guest.read(data, 24) == host_data.raw
    bad_pid = guest.put(struct.pack("<Ii", 0x20080522, -1))
    assert call(thread, "capget", bad_pid, data) == -errno.EINVAL
    assert call(thread, "capset", header, data) == -errno.EPERM
