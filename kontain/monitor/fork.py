"""fork: a guest process becomes two km processes, each with its own VM.

km forks itself on the host. Guest memory is one MAP_PRIVATE host mapping, so the child
km inherits a copy-on-write copy of all of it — page tables included, at the same
addresses — and shared guest mappings stay shared. A KVM VM belongs to the process that
created it, so the child builds a new VM over the inherited memory, registers the same
memslots, and starts one vCPU with the forking thread's registers (rax = 0). Guest fds
are host fds, so they are inherited exactly as Linux does; so are cwd, umask, rlimits.

vfork (and clone with CLONE_VFORK) is a fork whose parent waits until the child execs
or exits: the child holds the write end of a close-on-exec pipe the parent reads. A vfork
child shares its parent's memory on Linux, and libcs rely on that for one thing: results
left in the parent's stack frame (glibc's posix_spawn reports a failed exec that way).
So when the child execs or exits it sends the used part of the parent thread's stack
back through the pipe, and the parent stores it before it resumes.
"""

from __future__ import annotations

import _thread
import os

from kontain.linux.abi import (
    CLONE_CHILD_CLEARTID,
    CLONE_CHILD_SETTID,
    CLONE_PARENT_SETTID,
    CLONE_SETTLS,
    CLONE_VFORK,
)
from kontain.machine import cpustate
from kontain.monitor import signals as sig
from kontain.monitor.group import ThreadGroup
from kontain.monitor.hostsignals import HostSignals
from kontain.monitor.thread import GuestThread

TYPE_CHECKING = False  # no typing import at run time: km start-up is timed
if TYPE_CHECKING:
    from kontain.monitor.process import Process



class ForkSnapshot:
    """The forking thread's CPU state, taken in the parent before the host fork."""

    def __init__(self, parent: GuestThread, flags: int, stack: int, tls: int) -> None:
        self.cpu = parent.clone_state(stack, tls if flags & CLONE_SETTLS else None)
        self.signal_mask = parent.signal_mask
        self.altstack = parent.altstack
        self.name = parent.name


def fork_process(proc: Process, parent: GuestThread, flags: int, stack: int, parent_tid: int,
                 child_tid: int, tls: int) -> int:
    """fork/vfork/clone without CLONE_VM|CLONE_THREAD; returns the child's pid."""
    snapshot = ForkSnapshot(parent, flags, stack, tls)
    vfork = bool(flags & CLONE_VFORK)
    if vfork:
        # km's descriptors, above the guest's range: the child may close_range its own.
        wait_read, wait_write = (proc.fds.move_high(fd) for fd in os.pipe2(os.O_CLOEXEC))
        stack = proc.mm.find(parent.regs.rsp)
        shared_stack = (parent.regs.rsp - 128, stack.end) if stack is not None else None
    # Hold the locks other threads might hold, so the child does not inherit them taken.
    with proc.mm.lock, proc.signals.lock:
        pid = os.fork()
    if pid == 0:
        if vfork:
            os.close(wait_read)
            proc.vfork_release = lambda: _send_stack(proc, wait_write, shared_stack)
        _become_child(proc, snapshot, flags, child_tid)  # never returns
    proc.trace.log("process", f"[{parent.tid}] fork -> pid {pid}")
    if flags & CLONE_PARENT_SETTID:
        parent.mm.write(parent_tid, pid.to_bytes(4, "little"))
    if vfork:
        os.close(wait_write)
        received = bytearray()
        try:
            while chunk := os.read(wait_read, 1 << 16):  # EOF when the child execs or exits
                received += chunk
        except OSError:
            pass
        os.close(wait_read)
        if shared_stack is not None and len(received) == shared_stack[1] - shared_stack[0]:
            parent.mm.write(shared_stack[0], bytes(received))
    return pid


def _send_stack(proc: Process, pipe: int, region: tuple[int, int] | None) -> None:
    """In a vfork child about to exec or exit: hand the shared stack back to the parent."""
    proc.vfork_release = None
    try:
        if region is not None:
            data = proc.mm.read(region[0], region[1] - region[0])
            view = memoryview(data)
            while view:
                view = view[os.write(pipe, view):]
    except Exception:  # noqa: BLE001 - the parent then keeps its own copy
        pass
    try:
        os.close(pipe)
    except OSError:
        pass


def _become_child(proc: Process, snapshot: ForkSnapshot, flags: int, child_tid: int) -> None:
    """In the new km process: a new VM over the inherited memory, one thread, run it."""
    old_vcpus = proc.group.forget_after_fork()
    proc.pid = os.getpid()
    for vcpu in old_vcpus:
        vcpu.close()
    proc.host_signals.close()
    proc.machine.recreate_vm()
    proc.group = ThreadGroup(proc)  # (the parent's kicker thread did not survive the fork)
    proc.timer_threads = {}
    proc.signals.shared = sig.PendingQueue()
    proc.signalfds.after_fork()
    thread = GuestThread(proc, proc.group.new_vcpu(), proc.pid)
    vcpu = thread.vcpu
    cpustate.apply(vcpu, snapshot.cpu, sregs=False)
    thread.signal_mask = snapshot.signal_mask
    thread.altstack = snapshot.altstack
    thread.name = snapshot.name
    thread.host_ident = _thread.get_ident()
    if flags & CLONE_CHILD_SETTID:
        try:
            proc.mm.write(child_tid, proc.pid.to_bytes(4, "little"))
        except Exception:  # noqa: BLE001 - a bad pointer is the child's problem, not km's
            pass
    if flags & CLONE_CHILD_CLEARTID:
        thread.clear_child_tid = child_tid
    proc.trace.log("process", f"forked child {proc.pid} running")
    proc.host_signals = HostSignals(proc)
    proc.host_signals.start()
    proc.group.add(thread)
    proc.group.run(thread)
