"""Threads: clone and clone3 (threads only; processes come with fork), futex.

futex runs on the host, on km's address of the guest word: every guest thread is a
host thread of this km process, so private futexes work as they are; the host kernel
does the waiting and waking (and timeouts), and ctypes releases the GIL meanwhile.
"""

from __future__ import annotations

import errno
import struct

from kontain.linux import hostcall as host
from kontain.linux.abi import (
    CLONE_DETACHED,
    CLONE_FS,
    CLONE_NEWNS,
    CLONE_NEWTIME,
    CLONE_NEWUSER,
    CLONE_PARENT,
    CLONE_SIGHAND,
    CLONE_THREAD,
    CLONE_VFORK,
    CLONE_VM,
    FUTEX_CMD_MASK,
    FUTEX_CMP_REQUEUE,
    FUTEX_CMP_REQUEUE_PI,
    FUTEX_FD,
    FUTEX_LOCK_PI,
    FUTEX_LOCK_PI2,
    FUTEX_PRIVATE_FLAG,
    FUTEX_REQUEUE,
    FUTEX_TRYLOCK_PI,
    FUTEX_UNLOCK_PI,
    FUTEX_WAIT,
    FUTEX_WAIT_BITSET,
    FUTEX_WAIT_REQUEUE_PI,
    FUTEX_WAKE,
    FUTEX_WAKE_OP,
    PROT_WRITE,
)
from kontain.linux.hostcall import SyscallError
from kontain.linux.numbers import NUMBERS as NR
from kontain.machine.layout import PAGE_SIZE, USER_END
from kontain.mm.space import GuestFault
from kontain.monitor.fork import fork_process
from kontain.syscalls import args

TYPE_CHECKING = False  # no typing import at run time: km start-up is timed
if TYPE_CHECKING:
    from kontain.monitor.thread import GuestThread

CLONE_ARGS = struct.Struct("<QQQQQQQQQQQ")  # struct clone_args (up to cgroup)
CLONE_ARGS_SIZE_VER0 = 64
CLONE_ARGS_SIZE_VER2 = 88  # with cgroup
CSIGNAL = 0xFF  # clone's exit signal, in its flags' low byte
NSIG = 64
MAX_PID_NS_LEVEL = 32  # set_tid's most entries
CLONE_CLEAR_SIGHAND, CLONE_INTO_CGROUP = 1 << 32, 1 << 33  # clone3 only
#: The flags clone3 knows: clone's 32, and its own two.
_CLONE3_FLAGS = 0xFFFFFFFF | CLONE_CLEAR_SIGHAND | CLONE_INTO_CGROUP

#: Operations whose fourth argument is a timeout (a timespec pointer), not a count.
_TIMEOUT_OPS = frozenset({FUTEX_WAIT, FUTEX_LOCK_PI, FUTEX_WAIT_BITSET, FUTEX_WAIT_REQUEUE_PI,
                          FUTEX_LOCK_PI2})
#: Operations that use a second futex word (uaddr2).
_SECOND_WORD_OPS = frozenset({FUTEX_REQUEUE, FUTEX_CMP_REQUEUE, FUTEX_WAKE_OP,
                              FUTEX_WAIT_REQUEUE_PI, FUTEX_CMP_REQUEUE_PI})
#: Operations that write their word (PI ones: the owner's tid goes there); the others
#: only read it, and Linux takes a read-only word for them.
_WRITES_FIRST = frozenset({FUTEX_LOCK_PI, FUTEX_UNLOCK_PI, FUTEX_TRYLOCK_PI, FUTEX_LOCK_PI2})
_WRITES_SECOND = frozenset({FUTEX_WAKE_OP, FUTEX_WAIT_REQUEUE_PI, FUTEX_CMP_REQUEUE_PI})


def _refused_flags(flags: int) -> bool:
    """Combinations Linux's copy_process refuses (EINVAL) whatever it would create."""
    return (flags & (CLONE_NEWNS | CLONE_FS) == CLONE_NEWNS | CLONE_FS
            or flags & (CLONE_NEWUSER | CLONE_FS) == CLONE_NEWUSER | CLONE_FS
            or bool(flags & CLONE_THREAD and not flags & CLONE_SIGHAND)  # threads share
            or bool(flags & CLONE_SIGHAND and not flags & CLONE_VM))  # handlers need memory


def _clone(t: GuestThread, flags: int, stack: int, parent_tid: int, child_tid: int,
           tls: int) -> int:
    if _refused_flags(flags):
        raise SyscallError(errno.EINVAL)
    if flags & CLONE_THREAD:
        return t.proc.group.spawn(t, flags, stack, parent_tid, child_tid, tls)
    if flags & CLONE_VM and not flags & CLONE_VFORK:
        # A process sharing memory with its parent: the two would be two km processes,
        # which cannot share a VM's memory.
        raise SyscallError(errno.ENOSYS)
    return fork_process(t.proc, t, flags, stack, parent_tid, child_tid, tls)


def sys_clone(t: GuestThread, flags: int, stack: int, parent_tid: int, child_tid: int,
              tls: int, *_: int) -> int:
    return _clone(t, flags & 0xFFFFFFFF, stack, parent_tid, child_tid, tls)


def _clone_args(t: GuestThread, cl_args: int, size: int) -> tuple[int, ...]:
    """struct clone_args as Linux's copy_struct_from_user reads it: a larger struct
    than km's is fine if the rest is zeros (E2BIG otherwise), a smaller one is padded."""
    if size > PAGE_SIZE:
        raise SyscallError(errno.E2BIG)
    if size < CLONE_ARGS_SIZE_VER0:
        raise SyscallError(errno.EINVAL)
    if size > CLONE_ARGS.size and any(t.mm.read(cl_args + CLONE_ARGS.size,
                                                 size - CLONE_ARGS.size)):
        raise SyscallError(errno.E2BIG)
    raw = t.mm.read(cl_args, min(size, CLONE_ARGS.size))
    return CLONE_ARGS.unpack(raw.ljust(CLONE_ARGS.size, b"\0"))


def _clone3_valid(flags: int, exit_signal: int, stack: int, stack_size: int) -> bool:
    """Linux's clone3_args_valid: known flags, none of clone's signal byte (but
    CLONE_NEWTIME's), nor CLONE_DETACHED; no exit signal for a thread or a sibling; a
    stack is an address and a size, both or neither, in user memory."""
    if flags & ~_CLONE3_FLAGS or flags & (CLONE_DETACHED | CSIGNAL & ~CLONE_NEWTIME):
        return False
    if flags & CLONE_SIGHAND and flags & CLONE_CLEAR_SIGHAND:
        return False
    if flags & (CLONE_THREAD | CLONE_PARENT) and exit_signal:
        return False
    if not stack:
        return not stack_size
    return bool(stack_size) and stack + stack_size <= USER_END


def sys_clone3(t: GuestThread, cl_args: int, size: int, *_: int) -> int:
    (flags, _pidfd, child_tid, parent_tid, exit_signal, stack, stack_size, tls, set_tid,
     set_tid_size, cgroup) = _clone_args(t, cl_args, size)
    # In Linux's order: the arguments as read, then the flags.
    if set_tid_size > MAX_PID_NS_LEVEL or bool(set_tid) != bool(set_tid_size):
        raise SyscallError(errno.EINVAL)
    if exit_signal & ~CSIGNAL or exit_signal > NSIG:
        raise SyscallError(errno.EINVAL)
    if flags & CLONE_INTO_CGROUP and (cgroup > 0x7FFFFFFF or size < CLONE_ARGS_SIZE_VER2):
        raise SyscallError(errno.EINVAL)
    if set_tid:
        t.mm.read(set_tid, 4 * set_tid_size)  # EFAULT before the flags are looked at
    if not _clone3_valid(flags, exit_signal, stack, stack_size):
        raise SyscallError(errno.EINVAL)
    if set_tid:
        raise SyscallError(errno.EPERM)  # choosing the new task's id: as if unprivileged
    top = stack + stack_size if stack else 0
    return _clone(t, flags & ~CSIGNAL | exit_signal, top, parent_tid, child_tid, tls)


def _word(t: GuestThread, va: int, write: bool, shared: bool) -> int:
    """km's address of a futex word: 4 bytes, aligned, readable guest memory (writable
    if write). A shared futex on read-only anonymous private memory is EFAULT, as in
    Linux's get_futex_key (such a page never changes: no key is made for it); km's own
    pages behind it are writable, so the host cannot tell."""
    if va & 3:
        raise OSError(errno.EINVAL, "unaligned futex")
    if not va:
        raise OSError(errno.EFAULT, "futex at NULL")
    address = args.out_ptr(t, va, 4) if write else args.in_ptr(t, va, 4)
    if shared and not write:
        vma = t.mm.find(va)
        if vma is not None and not vma.prot & PROT_WRITE and not vma.shared \
                and not vma.file_backed:
            raise OSError(errno.EFAULT, "shared futex on read-only anonymous memory")
    return address


_FUTEX = NR["futex"]
_WAIT_PRIVATE, _WAKE_PRIVATE = FUTEX_WAIT | FUTEX_PRIVATE_FLAG, FUTEX_WAKE | FUTEX_PRIVATE_FLAG


def sys_futex(t: GuestThread, uaddr: int, op: int, val: int, timeout: int, uaddr2: int,
              val3: int) -> int:
    op &= 0xFFFFFFFF
    if (op == _WAKE_PRIVATE or op == _WAIT_PRIVATE) and uaddr and not uaddr & 3:
        # The common case (a lock, a condition variable, a join): one word, read only,
        # no shared-memory check; the kernel reads no argument after the timeout.
        mm = t.mm
        try:
            word = mm.host_base + mm.translate(uaddr, 4, False)
        except GuestFault:
            pass
        else:
            if op == _WAIT_PRIVATE:
                t.proc.group.before_wait(t)
                if timeout:
                    timeout = args.in_ptr(t, timeout, 16)
            result = host.syscall4(_FUTEX, word, op, val & 0xFFFFFFFF, timeout)
            if result < 0:
                raise SyscallError(-result)
            return result
    command = op & FUTEX_CMD_MASK
    if command in (FUTEX_FD,) or command > FUTEX_LOCK_PI2:
        raise SyscallError(errno.ENOSYS)
    shared = not op & FUTEX_PRIVATE_FLAG
    word = _word(t, uaddr, command in _WRITES_FIRST, shared)
    fourth = timeout
    if command in _TIMEOUT_OPS:
        fourth = args.in_ptr(t, timeout, 16)
        if command == FUTEX_WAIT or command == FUTEX_WAIT_BITSET:
            t.proc.group.before_wait(t)
    second = _word(t, uaddr2, command in _WRITES_SECOND, shared) \
        if command in _SECOND_WORD_OPS else uaddr2
    return host.call(_FUTEX, word, op, val & 0xFFFFFFFF, fourth, second,
                     val3 & 0xFFFFFFFF)


HANDLERS = {"clone": sys_clone, "clone3": sys_clone3, "futex": sys_futex}
