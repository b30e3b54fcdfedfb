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

A fork returns in the parent once the child's VM is ready to run: the child reports
through a close-on-exec pipe, one byte, 0 or the errno its set-up failed with. A new VM
costs the child more host tasks than a Linux fork does (its forwarding thread, and the
VM's NX-huge-page worker which KVM starts on the first KVM_RUN), so under a pids cgroup
limit or RLIMIT_NPROC the child may get its process but not its VM: the parent then reaps
it and the payload's fork fails with EAGAIN, as Linux fails one over the limit.
"""

from __future__ import annotations

import _thread
import errno
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
    limits = proc.options.process_limits  # km --policy's max_processes
    if limits is not None:
        limits.acquire()
    vfork = bool(flags & CLONE_VFORK)
    # km's descriptors, above the guest's range: the child may close_range its own.
    report_read, report_write = (proc.fds.move_high(fd) for fd in os.pipe2(os.O_CLOEXEC))
    shared_stack = None
    if vfork:
        stack = proc.mm.find(parent.regs.rsp)
        shared_stack = (parent.regs.rsp - 128, stack.end) if stack is not None else None
    try:
        # Hold the locks other threads might hold, so the child does not inherit them taken.
        with proc.mm.lock, proc.signals.lock:
            proc.mm.prepare_for_fork()
            pid = os.fork()
    except BaseException:
        os.close(report_read)
        os.close(report_write)
        if limits is not None:
            limits.release()
        raise
    if pid == 0:
        os.close(report_read)
        _become_child(proc, snapshot, flags, child_tid, report_write, shared_stack)  # no return
    os.close(report_write)
    try:
        try:
            _wait_for_child_vm(pid, report_read)
        except OSError:
            if limits is not None:  # (the child ended without running: its token back)
                limits.release()
            raise
        proc.trace.log("process", f"[{parent.tid}] fork -> pid {pid}")
        if proc.debugger is not None and not vfork:
            proc.debugger.fork_event(parent, pid)  # gdb hears of it (kontain.monitor.debugger)
        if flags & CLONE_PARENT_SETTID:
            parent.mm.write(parent_tid, pid.to_bytes(4, "little"))
        if vfork:
            received = bytearray()
            try:
                while chunk := os.read(report_read, 1 << 16):  # EOF: the child execs or exits
                    received += chunk
            except OSError:
                pass
            if shared_stack is not None and len(received) == shared_stack[1] - shared_stack[0]:
                parent.mm.write(shared_stack[0], bytes(received))
    finally:
        os.close(report_read)
    return pid


def _wait_for_child_vm(pid: int, report: int) -> None:
    """Return once the child's VM is ready; raise OSError if it could not be made (the
    child has then ended, and is reaped here: the payload never saw it)."""
    try:
        status = os.read(report, 1)
    except OSError:
        status = b""
    if status == b"\0":
        return
    try:
        os.waitpid(pid, 0)
    except ChildProcessError:
        pass  # reaped by the kernel: the payload ignores SIGCHLD
    raise OSError(status[0] if status else errno.EAGAIN, "fork: the child's VM did not start")


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


def _become_child(proc: Process, snapshot: ForkSnapshot, flags: int, child_tid: int,
                  report: int, shared_stack: tuple[int, int] | None) -> None:
    """In the new km process: a new VM over the inherited memory, one thread, run it."""
    try:
        thread = _child_vm(proc, snapshot)
    except BaseException as e:  # noqa: BLE001 - the parent's fork fails with this errno
        code = e.errno if isinstance(e, OSError) and e.errno else errno.EAGAIN
        try:
            os.write(report, bytes([min(code, 255)]))
        finally:
            os._exit(1)
    os.write(report, b"\0")
    if flags & CLONE_VFORK:
        proc.vfork_release = lambda: _send_stack(proc, report, shared_stack)
    else:
        os.close(report)
    if flags & CLONE_CHILD_SETTID:
        try:
            proc.mm.write(child_tid, proc.pid.to_bytes(4, "little"))
        except Exception:  # noqa: BLE001 - a bad pointer is the child's problem, not km's
            pass
    if flags & CLONE_CHILD_CLEARTID:
        thread.clear_child_tid = child_tid
    if proc.debugger is not None:
        proc.debugger.child_started()  # the parent's breakpoints out of this memory
    proc.trace.log("process", f"forked child {proc.pid} running")
    proc.group.add(thread)
    proc.group.run(thread)


def _child_vm(proc: Process, snapshot: ForkSnapshot) -> GuestThread:
    """The child's VM, its one thread in the forking thread's state, km's forwarding of
    host signals started: everything that can fail for want of a host task or memory."""
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
    vcpu = proc.group.new_vcpu()
    vcpu.enter_without_running()
    thread = GuestThread(proc, vcpu, proc.pid)
    cpustate.apply_thread(vcpu, snapshot.cpu)
    thread.signal_mask = snapshot.signal_mask
    thread.altstack = snapshot.altstack
    thread.name = snapshot.name
    thread.host_ident = _thread.get_ident()
    proc.host_signals = HostSignals(proc)
    proc.host_signals.start()
    return thread
