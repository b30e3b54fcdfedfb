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
    CLONE_THREAD,
    CLONE_VFORK,
    CLONE_VM,
    FUTEX_CMD_MASK,
    FUTEX_CMP_REQUEUE,
    FUTEX_CMP_REQUEUE_PI,
    FUTEX_FD,
    FUTEX_LOCK_PI,
    FUTEX_LOCK_PI2,
    FUTEX_REQUEUE,
    FUTEX_WAIT,
    FUTEX_WAIT_BITSET,
    FUTEX_WAIT_REQUEUE_PI,
    FUTEX_WAKE_OP,
)
from kontain.linux.hostcall import SyscallError
from kontain.linux.numbers import NUMBERS as NR
from kontain.monitor.fork import fork_process
from kontain.syscalls import args

TYPE_CHECKING = False  # no typing import at run time: km start-up is timed
if TYPE_CHECKING:
    from kontain.monitor.thread import GuestThread

CLONE_ARGS = struct.Struct("<QQQQQQQQQQQ")  # struct clone_args (up to cgroup)
CLONE_ARGS_SIZE_VER0 = 64

#: Operations whose fourth argument is a timeout (a timespec pointer), not a count.
_TIMEOUT_OPS = frozenset({FUTEX_WAIT, FUTEX_LOCK_PI, FUTEX_WAIT_BITSET, FUTEX_WAIT_REQUEUE_PI,
                          FUTEX_LOCK_PI2})
#: Operations that use a second futex word (uaddr2).
_SECOND_WORD_OPS = frozenset({FUTEX_REQUEUE, FUTEX_CMP_REQUEUE, FUTEX_WAKE_OP,
                              FUTEX_WAIT_REQUEUE_PI, FUTEX_CMP_REQUEUE_PI})




def _clone(t: GuestThread, flags: int, stack: int, parent_tid: int, child_tid: int,
           tls: int) -> int:
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


def sys_clone3(t: GuestThread, cl_args: int, size: int, *_: int) -> int:
    if size < CLONE_ARGS_SIZE_VER0 or size > 4096:
        raise SyscallError(errno.EINVAL)
    raw = t.mm.read(cl_args, min(size, CLONE_ARGS.size)).ljust(CLONE_ARGS.size, b"\0")
    (flags, _pidfd, child_tid, parent_tid, exit_signal, stack, stack_size, tls, set_tid,
     set_tid_size, _cgroup) = CLONE_ARGS.unpack(raw)
    if set_tid or set_tid_size:
        raise SyscallError(errno.EPERM)
    if exit_signal and flags & CLONE_THREAD:
        raise SyscallError(errno.EINVAL)
    top = stack + stack_size if stack else 0
    return _clone(t, flags | (exit_signal & 0xFF), top, parent_tid, child_tid, tls)


def _word(t: GuestThread, va: int) -> int:
    """km's address of a futex word: 4 bytes, aligned, writable guest memory."""
    if va & 3:
        raise OSError(errno.EINVAL, "unaligned futex")
    return args.out_ptr(t, va, 4) or _fault()


def _fault() -> int:
    raise OSError(errno.EFAULT, "futex at NULL")


def sys_futex(t: GuestThread, uaddr: int, op: int, val: int, timeout: int, uaddr2: int,
              val3: int) -> int:
    op &= 0xFFFFFFFF
    command = op & FUTEX_CMD_MASK
    if command in (FUTEX_FD,) or command > FUTEX_LOCK_PI2:
        raise SyscallError(errno.ENOSYS)
    word = _word(t, uaddr)
    fourth = timeout
    if command in _TIMEOUT_OPS:
        fourth = args.in_ptr(t, timeout, 16)
    second = _word(t, uaddr2) if command in _SECOND_WORD_OPS else uaddr2
    return host.call(NR["futex"], word, op, val & 0xFFFFFFFF, fourth, second,
                     val3 & 0xFFFFFFFF)



HANDLERS = {"clone": sys_clone, "clone3": sys_clone3, "futex": sys_futex}
