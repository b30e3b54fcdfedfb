"""System call handlers of the thread family (kontain/syscalls/thread.py) without KVM:
clone, clone3 and futex.

Creating a thread or a process needs a running VM, so clone and clone3 are tested for
their argument checking only: the thread group's spawn and kontain.monitor.fork's
fork_process are replaced by recorders, and a test checks what they would have been
asked for, or that nothing was asked at all. futex runs on the host on km's address of
the guest word: the operations that return at once (wake, a wait whose value differs or
whose timeout is zero, PI locks nobody else holds) are compared with Linux on host memory.

Linux is the oracle; its clone/clone3 answers are taken in a forked child, so that a
call Linux unexpectedly accepted could not touch this process.
"""

from __future__ import annotations

import ctypes
import errno
import os
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

from kontain.linux.abi import (
    CLONE_CHILD_CLEARTID,
    CLONE_FS,
    CLONE_NEWNS,
    CLONE_NEWUSER,
    CLONE_PARENT_SETTID,
    CLONE_SETTLS,
    CLONE_SIGHAND,
    CLONE_THREAD,
    CLONE_VFORK,
    CLONE_VM,
    FUTEX_CMP_REQUEUE,
    FUTEX_FD,
    FUTEX_LOCK_PI,
    FUTEX_PRIVATE_FLAG,
    FUTEX_REQUEUE,
    FUTEX_TRYLOCK_PI,
    FUTEX_UNLOCK_PI,
    FUTEX_WAIT,
    FUTEX_WAIT_BITSET,
    FUTEX_WAKE,
    FUTEX_WAKE_OP,
)
from kontain.syscalls import thread as family

SIGCHLD = 17
THREAD_FLAGS = CLONE_VM | CLONE_THREAD | CLONE_SIGHAND
CLONE_ARGS = struct.Struct("<11Q")  # flags pidfd child_tid parent_tid exit_signal stack
#                                     stack_size tls set_tid set_tid_size cgroup
ZERO_TIME = struct.pack("<qq", 0, 0)


def native_in_child(name: str, *args: int) -> int:
    """The oracle for calls that would create a task if Linux accepted them: made in a
    forked child, whose answer comes back through a pipe (a task it created by mistake
    exits at once)."""
    r, w = os.pipe()
    pid = os.fork()
    if pid == 0:
        try:
            result = native(name, *args)
            if result != 0:  # 0: the new task itself, which says nothing
                os.write(w, struct.pack("<q", result))
        finally:
            os._exit(0)
    os.close(w)
    answer = os.read(r, 8)
    os.close(r)
    os.waitpid(pid, 0)
    result = struct.unpack("<q", answer)[0]
    return result if result < 0 else 0  # a new task's id is no answer to compare


@pytest.fixture
def thread():
    return make_thread(make_process())


@pytest.fixture
def guest(thread):
    return Guest(thread)


@pytest.fixture
def creations(thread, monkeypatch):
    """What km would have created: ("thread" | "process", arguments). Nothing is."""
    asked: list[tuple[str, tuple]] = []

    def spawn(parent, flags, stack, parent_tid, child_tid, tls):
        if flags & THREAD_FLAGS != THREAD_FLAGS:  # the real spawn's own check, kept
            return real_spawn(parent, flags, stack, parent_tid, child_tid, tls)
        asked.append(("thread", (flags, stack, parent_tid, child_tid, tls)))
        return 4242

    def fork_process(proc, parent, flags, stack, parent_tid, child_tid, tls):
        asked.append(("process", (flags, stack, parent_tid, child_tid, tls)))
        return 4343
    real_spawn = thread.proc.group.spawn
    monkeypatch.setattr(thread.proc.group, "spawn", spawn)
    monkeypatch.setattr("kontain.syscalls.thread.fork_process", fork_process)
    return asked


# ---- clone -------------------------------------------------------------------------------

def test_clone_of_a_thread_passes_its_arguments(thread, creations):
    flags = THREAD_FLAGS | CLONE_SETTLS | CLONE_PARENT_SETTID | CLONE_CHILD_CLEARTID
    assert call(thread, "clone", flags | (0xABCD << 32), 0x7000_0000, 0x1000, 0x2000,
                0x3000) == 4242
    assert creations == [("thread", (flags, 0x7000_0000, 0x1000, 0x2000, 0x3000))]


def test_clone_of_a_process_is_a_fork(thread, creations):
    assert call(thread, "clone", SIGCHLD, 0, 0, 0, 0) == 4343
    assert call(thread, "clone", CLONE_VM | CLONE_VFORK | SIGCHLD, 0, 0, 0, 0) == 4343
    assert [kind for kind, _ in creations] == ["process", "process"]
    assert creations[1][1][0] == CLONE_VM | CLONE_VFORK | SIGCHLD


def test_clone_flags_linux_refuses_create_nothing(thread, creations):
    """Threads without shared signal handlers or memory are EINVAL in Linux too."""
    for flags in (CLONE_THREAD, CLONE_THREAD | CLONE_VM, CLONE_THREAD | CLONE_SIGHAND):
        assert call(thread, "clone", flags, 0, 0, 0, 0) == \
            native_in_child("clone", flags, 0, 0, 0, 0) == -errno.EINVAL
    assert creations == []


def test_clone_sharing_memory_with_a_process_is_enosys(thread, creations):
    """Two km processes cannot share one VM's memory: km says ENOSYS (a documented
    limit; Linux would create the process)."""
    assert call(thread, "clone", CLONE_VM | SIGCHLD, 0, 0, 0, 0) == -errno.ENOSYS
    assert creations == []


@pytest.mark.parametrize("flags", [CLONE_SIGHAND | SIGCHLD, CLONE_NEWNS | CLONE_FS | SIGCHLD,
                                   CLONE_NEWUSER | CLONE_FS | SIGCHLD])
def test_clone_flags_linux_refuses_for_a_process_are_einval(thread, creations, flags):
    """Shared handlers without shared memory, a new mount or user namespace with a
    shared filesystem context: Linux refuses them before creating anything."""
    assert native_in_child("clone", flags, 0, 0, 0, 0) == -errno.EINVAL
    assert call(thread, "clone", flags, 0, 0, 0, 0) == -errno.EINVAL
    assert creations == []


# ---- clone3 ------------------------------------------------------------------------------

def _clone_args(flags=0, exit_signal=0, stack=0, stack_size=0, tls=0, set_tid=0,
                set_tid_size=0, child_tid=0, parent_tid=0) -> bytes:
    return CLONE_ARGS.pack(flags, 0, child_tid, parent_tid, exit_signal, stack, stack_size,
                           tls, set_tid, set_tid_size, 0)


def test_clone3_of_a_thread_passes_its_arguments(thread, guest, creations):
    flags = THREAD_FLAGS | CLONE_SETTLS
    args = _clone_args(flags, stack=0x7000_0000, stack_size=0x10000, tls=0x5000,
                       child_tid=0x2000, parent_tid=0x1000)
    assert call(thread, "clone3", guest.put(args), 88) == 4242
    assert creations == [("thread", (flags, 0x7001_0000, 0x1000, 0x2000, 0x5000))]
    creations.clear()
    assert call(thread, "clone3", guest.put(args[:64]), 64) == 4242  # version 0: 64 bytes
    assert call(thread, "clone3", guest.put(args + bytes(8)), 96) == 4242  # zero tail: fine
    assert len(creations) == 2


def test_clone3_of_a_process(thread, guest, creations):
    assert call(thread, "clone3", guest.put(_clone_args(exit_signal=SIGCHLD)), 88) == 4343
    assert creations == [("process", (SIGCHLD, 0, 0, 0, 0))]


@pytest.mark.parametrize("args, size", [
    (_clone_args(CLONE_THREAD, exit_signal=SIGCHLD), 63),            # too small
    (_clone_args(THREAD_FLAGS, exit_signal=SIGCHLD, stack=0x7000_0000, stack_size=PAGE), 88),
    (_clone_args(CLONE_THREAD, exit_signal=SIGCHLD), 88),
])
def test_clone3_errors_create_nothing(thread, guest, creations, args, size):
    assert call(thread, "clone3", guest.put(args), size) == \
        native_in_child("clone3", host(args), size) == -errno.EINVAL
    assert creations == []


def test_clone3_pointers(thread, creations):
    assert call(thread, "clone3", BAD, 88) == native_in_child("clone3", BAD, 88) \
        == -errno.EFAULT
    assert call(thread, "clone3", 0, 88) == native_in_child("clone3", 0, 88) == -errno.EFAULT
    assert creations == []


def test_clone3_set_tid_is_refused(thread, guest, creations):
    """Choosing the new task's id is refused as to an unprivileged process."""
    tid = guest.put(struct.pack("<i", 5000))
    args = _clone_args(exit_signal=SIGCHLD, set_tid=tid, set_tid_size=1)
    assert call(thread, "clone3", guest.put(args), 88) == -errno.EPERM
    assert creations == []


CLONE3_CHECKS = {
    "size above a page": (_clone_args(CLONE_THREAD, exit_signal=SIGCHLD), PAGE + 1,
                          -errno.E2BIG),
    "non-zero tail": (_clone_args(CLONE_THREAD, exit_signal=SIGCHLD) + b"\1", 89,
                      -errno.E2BIG),
    "set_tid_size without set_tid": (_clone_args(exit_signal=SIGCHLD, set_tid_size=1), 88,
                                     -errno.EINVAL),
    "exit_signal beyond 64": (_clone_args(exit_signal=0x41), 88, -errno.EINVAL),
    "exit_signal above 8 bits": (_clone_args(exit_signal=0x111), 88, -errno.EINVAL),
    "stack without a size": (_clone_args(exit_signal=SIGCHLD, stack=0x7000_0000), 88,
                             -errno.EINVAL),
    "a size without a stack": (_clone_args(exit_signal=SIGCHLD, stack_size=PAGE), 88,
                               -errno.EINVAL),
    "a stack beyond user memory": (_clone_args(exit_signal=SIGCHLD, stack=MASK64 - PAGE,
                                               stack_size=PAGE), 88, -errno.EINVAL),
    "an unknown flag": (_clone_args(1 << 40, exit_signal=SIGCHLD), 88, -errno.EINVAL),
    "a signal in the flags": (_clone_args(SIGCHLD), 88, -errno.EINVAL),
    "set_tid without set_tid_size": (_clone_args(exit_signal=SIGCHLD, set_tid=BAD), 88,
                                     -errno.EINVAL),
    "set_tid_size above 32": (_clone_args(exit_signal=SIGCHLD, set_tid=BAD, set_tid_size=33),
                              88, -errno.EINVAL),
    "an unreadable set_tid": (_clone_args(exit_signal=SIGCHLD, set_tid=BAD, set_tid_size=1),
                              88, -errno.EFAULT),
    "an unreadable tail": (None, PAGE, -errno.EFAULT),
}


@pytest.mark.parametrize("case", CLONE3_CHECKS)
def test_clone3_checks_its_arguments_as_linux_does(thread, guest, creations, case):
    args, size, expected = CLONE3_CHECKS[case]
    if args is None:  # 88 bytes of arguments, then the page ends
        t = Twin(thread, [RW, HOLE])
        try:
            at = PAGE - CLONE_ARGS.size
            linux_args, km_args = t.host + at, t.guest + at
            ctypes.memmove(linux_args, _clone_args(exit_signal=SIGCHLD), CLONE_ARGS.size)
            thread.mm.write(km_args, _clone_args(exit_signal=SIGCHLD))
            assert native_in_child("clone3", linux_args, size) == expected
            assert call(thread, "clone3", km_args, size) == expected
        finally:
            t.close()
    else:
        padded = args.ljust(size, b"\0")
        assert native_in_child("clone3", host(padded), size) == expected
        assert call(thread, "clone3", guest.put(padded), size) == expected
    assert creations == []


# ---- futex ---------------------------------------------------------------------------------

@pytest.fixture
def words(thread):
    """Futex words: a writable page and a read-only one holding 7s, a hole after."""
    data = struct.pack("<ii", 7, 7).ljust(PAGE, b"\0") + struct.pack("<i", 7)
    t = Twin(thread, [RW, RO, HOLE], data)
    yield t
    t.close()


@pytest.mark.parametrize("op, offset, val, timeout, offset2, val3", [
    (FUTEX_WAKE, 0, 1, None, None, 0),
    (FUTEX_WAKE | FUTEX_PRIVATE_FLAG, 0, 1, None, None, 0),
    (FUTEX_WAIT, 0, 8, None, None, 0),                       # the value differs: EAGAIN
    (FUTEX_WAIT, 0, 7, ZERO_TIME, None, 0),                  # timeout 0: ETIMEDOUT
    (FUTEX_WAIT, 0, 7, struct.pack("<qq", 0, -1), None, 0),  # bad timeout
    (FUTEX_WAIT, 0, 7, "bad", None, 0),
    (FUTEX_WAIT_BITSET, 0, 8, None, None, 0),                # bitset 0: EINVAL
    (FUTEX_WAIT_BITSET, 0, 8, None, None, 0xFFFFFFFF),
    (FUTEX_WAKE, PAGE, 1, None, None, 0),                    # shared, read-only: EFAULT
    (FUTEX_WAIT, PAGE, 8, None, None, 0),
    (FUTEX_WAKE, 2, 1, None, None, 0),                       # unaligned
    (FUTEX_WAKE, 2 * PAGE, 1, None, None, 0),                # in the hole
    (FUTEX_FD, 0, 0, None, None, 0), (14, 0, 0, None, None, 0), (0x7F, 0, 0, None, None, 0),
    (FUTEX_REQUEUE, 0, 1, None, 4, 0), (FUTEX_REQUEUE, 0, 1, None, 6, 0),
    (FUTEX_CMP_REQUEUE, 0, 1, None, 4, 8),                   # val3 differs: EAGAIN
    (FUTEX_CMP_REQUEUE, 0, 1, None, 4, 7),
    (FUTEX_WAKE_OP, 0, 1, None, 4, 0), (FUTEX_WAKE_OP, 0, 1, None, PAGE, 0),
    (FUTEX_WAKE_OP, 0, 1, None, 2 * PAGE, 0)])
def test_futex_like_linux(thread, guest, words, op, offset, val, timeout, offset2, val3):
    def side(base: int, put) -> tuple[int, int, int]:
        if timeout is None:
            fourth = 0
        elif timeout == "bad":
            fourth = BAD
        else:
            fourth = put(timeout)
        second = base + offset2 if offset2 is not None else 0
        return base + offset, fourth, second
    guest_args = side(words.guest, guest.put)
    host_args = side(words.host, host)
    km = call(thread, "futex", guest_args[0], op, val, guest_args[1], guest_args[2], val3)
    linux = native("futex", host_args[0], op, val, host_args[1], host_args[2], val3)
    assert km == linux
    assert thread.mm.read(words.guest, 8) == ctypes.string_at(words.host, 8)


def test_futex_null_and_km_memory(thread):
    km = ctypes.c_int32(7)
    for address in (0, BAD, ctypes.addressof(km)):
        assert call(thread, "futex", address, FUTEX_WAIT, 7, 0, 0, 0) == -errno.EFAULT
    assert native("futex", 0, FUTEX_WAKE, 1, 0, 0, 0) == -errno.EFAULT


@pytest.mark.parametrize("op, val, expected", [
    (FUTEX_WAKE | FUTEX_PRIVATE_FLAG, 1, 0), (FUTEX_WAIT | FUTEX_PRIVATE_FLAG, 8, -errno.EAGAIN)])
def test_futex_on_a_read_only_word(thread, words, op, val, expected):
    assert native("futex", words.host + PAGE, op, val, 0, 0, 0) == expected
    assert call(thread, "futex", words.guest + PAGE, op, val, 0, 0, 0) == expected


def test_futex_pi_lock_nobody_holds(thread, words):
    """LOCK_PI on a free word takes it at once (the host writes its tid: the guest's,
    since guest threads are host threads), TRYLOCK on it again is EDEADLK, UNLOCK
    frees it."""
    for base, run in ((words.guest + 8, lambda *a: call(thread, "futex", *a)),
                      (words.host + 8, lambda *a: native("futex", *a))):
        assert run(base, FUTEX_LOCK_PI, 0, 0, 0, 0) == 0
        assert run(base, FUTEX_TRYLOCK_PI, 0, 0, 0, 0) == -errno.EDEADLK
        assert run(base, FUTEX_UNLOCK_PI, 0, 0, 0, 0) == 0
    assert thread.mm.read(words.guest + 8, 4) == ctypes.string_at(words.host + 8, 4) \
        == bytes(4)


# ---- hostile registers ---------------------------------------------------------------------

#: Handlers never called with arbitrary registers here: they act on this process.
NOT_SWEPT = {
    "clone": "would create a thread or fork this process",
}


@pytest.mark.parametrize("name", sorted(set(family.HANDLERS) - set(NOT_SWEPT)))
def test_hostile_registers_give_errors_never_crashes(thread, name):
    hostile_registers_leave_km_untouched(thread, name)
