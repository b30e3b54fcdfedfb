"""The payload's threads: one vCPU and one host thread each.

clone(CLONE_VM|CLONE_THREAD) creates a GuestThread on a vCPU (reused from threads that
ended: KVM cannot destroy a vCPU) and a host thread runs it: a spare one started ahead
by an earlier thread, or a new one. The guest tid is the host thread's tid, so tids are
unique and tgkill-able like native ones; a host thread ends with its guest thread, so a
tid does not come back at once (Linux hands them out in turn). Each thread has an eventfd
km uses to wake it from waits (sigsuspend, sigtimedwait, pause).

The process ends when its last thread exits, or at once when one thread calls
exit_group or dies of a signal: Process.end() never returns.
"""

from __future__ import annotations

import _thread
import ctypes
import errno
import os
import time

from kontain.linux import hostcall as host
from kontain.linux.abi import (
    CLONE_CHILD_CLEARTID,
    CLONE_CHILD_SETTID,
    CLONE_PARENT_SETTID,
    CLONE_SETTLS,
    CLONE_SIGHAND,
    CLONE_THREAD,
    CLONE_VM,
    FUTEX_WAKE,
)
from kontain.linux.hostcall import SyscallError
from kontain.linux.numbers import NUMBERS as NR
from kontain.machine import cpustate
from kontain.monitor.errors import stack, where
from kontain.monitor.exits import (
    ExecImage,
    ExitProcess,
    KillProcess,
    RestartSyscall,
    ThreadExit,
    ThreadVanish,
)
from kontain.monitor.signals import SIGSEGV
from kontain.monitor.thread import GuestThread

TYPE_CHECKING = False  # no typing import at run time: km start-up is timed
if TYPE_CHECKING:
    from kontain.monitor.process import Process

KICK_RETRY_SECONDS = 0.003
#: Spare host threads a process keeps started ahead of clones (see ThreadGroup.spawn).
SPARE_LIMIT = 2


class _Spare:
    """A host thread started ahead of a clone, waiting for the guest thread it is to
    run (job): a clone hands it one and opens its gate; a new image (execve), or a
    newer spare taking its place, opens it with none, and the host thread ends. It has
    never run a guest thread, so its tid is a new one, as Linux's for a new thread (a
    host thread that ran one ends with it: its tid must not come back at once)."""

    __slots__ = ("gate", "tid", "ident", "job", "lineage")

    def __init__(self, lineage: object) -> None:
        self.gate = _thread.allocate_lock()
        self.gate.acquire()
        self.tid = self.ident = 0  # set by the host thread once it runs
        self.job: GuestThread | None = None
        #: What the host thread carries (GuestThread.lineage): its creator's.
        self.lineage = lineage


class ThreadGroup:
    """All threads of one process and the vCPUs they run on."""

    def __init__(self, proc: Process) -> None:
        self._proc = proc
        self._lock = _thread.allocate_lock()
        self._idle_vcpus: list = []
        self._next_vcpu_id = 0
        self.threads: dict[int, GuestThread] = {}
        self._wake_fds: dict[int, int] = {}
        self._kick_targets: set[GuestThread] = set()
        self._kicker_wakeup = _thread.allocate_lock()
        self._kicker_wakeup.acquire()
        self._kicker_running = False
        #: Whether the process is paused (or being paused): see pause().
        self.paused = False
        self._gates: list = []  # one lock per parked thread, released by resume()
        self._parked_event = _thread.allocate_lock()  # released when a thread parks
        self._parked_event.acquire()
        #: The thread whose execve makes the others vanish (stop_others), if any.
        self._exec_owner: GuestThread | None = None
        #: vCPUs of threads that vanished: closed with the VM they belong to.
        self._retired_vcpus: list = []
        #: The host thread that started the process (it parks rather than end).
        self._main_ident = _thread.get_ident()
        #: Spare host threads for the next clones (at most SPARE_LIMIT), newest last.
        self._spares: list[_Spare] = []
        #: The lineages of those spares, and of the threads that made clones lately:
        #: only a thread of one of these starts a spare (before_wait).
        self._spare_lineages: set = set()
        self._cloners: set = set()

    # ---- creation -------------------------------------------------------------------

    def new_vcpu(self):
        with self._lock:
            if self._idle_vcpus:
                return self._idle_vcpus.pop()
            vcpu_id = self._next_vcpu_id
            self._next_vcpu_id += 1
        return self._proc.machine.create_vcpu(vcpu_id)

    def add(self, thread: GuestThread) -> None:
        with self._lock:
            self.threads[thread.tid] = thread

    def spawn(self, parent: GuestThread, flags: int, stack: int, parent_tid: int,
              child_tid: int, tls: int) -> int:
        """clone() of a thread: returns the new thread's tid.

        The new thread runs on a spare host thread if one was started ahead that
        carries what the new thread inherits from its parent's (GuestThread.lineage):
        its tid is known, and one lock release starts it. Otherwise a new host thread
        starts, and tells its tid. Spares are started by threads that made clones, as
        they wait (before_wait): off the path of the clone and of the new thread."""
        required = CLONE_VM | CLONE_THREAD | CLONE_SIGHAND
        if flags & required != required:
            raise SyscallError(errno.EINVAL if flags & CLONE_THREAD else errno.ENOSYS)
        spare = None
        lineage = parent.lineage
        with self._lock:
            if lineage not in self._cloners:
                if len(self._cloners) >= 4 * SPARE_LIMIT:
                    self._cloners.clear()  # (lineages whose threads changed since)
                self._cloners.add(lineage)
            spares = self._spares
            for i in range(len(spares) - 1, -1, -1):
                if spares[i].lineage is lineage and spares[i].tid:
                    spare = spares.pop(i)
                    self._spare_lineages.discard(lineage)
                    break
        if spare is None:
            return self._spawn_host_thread(parent, flags, stack, parent_tid, child_tid, tls)
        vcpu = self.new_vcpu()
        child = GuestThread(self._proc, vcpu, spare.tid)
        child.host_ident = spare.ident
        try:
            self._prepare(child, parent, flags, stack, child_tid, tls)
        except BaseException:
            with self._lock:
                self._idle_vcpus.append(vcpu)
                self._spares.append(spare)
                self._spare_lineages.add(lineage)
            raise
        vcpu.run.immediate_exit = 0  # (a late kick meant for a thread that ended)
        self.add(child)
        try:
            self._set_tids(parent, flags, parent_tid, child_tid, child.tid)
        finally:
            spare.job = child
            spare.gate.release()
        self._proc.trace.log("thread", f"[{parent.tid}] clone -> thread {child.tid} on "
                                       f"vCPU {vcpu.id} (spare host thread)")
        return child.tid

    @staticmethod
    def _prepare(child: GuestThread, parent: GuestThread, flags: int, stack: int,
                 child_tid: int, tls: int) -> None:
        """The new thread's CPU state and what it inherits of its parent's."""
        cpustate.apply_thread(child.vcpu, parent.clone_state(
            stack, tls if flags & CLONE_SETTLS else None))
        child.signal_mask = parent.signal_mask
        child.lineage = parent.lineage
        if flags & CLONE_CHILD_CLEARTID:
            child.clear_child_tid = child_tid

    @staticmethod
    def _set_tids(parent: GuestThread, flags: int, parent_tid: int, child_tid: int,
                  tid: int) -> None:
        if flags & CLONE_PARENT_SETTID:
            parent.mm.write(parent_tid, tid.to_bytes(4, "little"))
        if flags & CLONE_CHILD_SETTID:
            parent.mm.write(child_tid, tid.to_bytes(4, "little"))

    def _spawn_host_thread(self, parent: GuestThread, flags: int, stack: int,
                           parent_tid: int, child_tid: int, tls: int) -> int:
        vcpu = self.new_vcpu()
        child = GuestThread(self._proc, vcpu, 0)
        self._prepare(child, parent, flags, stack, child_tid, tls)
        ready, go = _thread.allocate_lock(), _thread.allocate_lock()
        ready.acquire()
        go.acquire()
        try:
            _thread.start_new_thread(self.host_thread, (child, ready, go))
        except RuntimeError:  # no host task to spare: a pids limit, RLIMIT_NPROC
            with self._lock:
                self._idle_vcpus.append(vcpu)
            raise SyscallError(errno.EAGAIN) from None
        ready.acquire()  # the child knows its tid
        tid = child.tid
        try:
            self._set_tids(parent, flags, parent_tid, child_tid, tid)
        finally:
            go.release()
        self._proc.trace.log("thread", f"[{parent.tid}] clone -> thread {tid} on vCPU {vcpu.id}")
        return tid

    def host_thread(self, child: GuestThread, ready, go) -> None:
        """The body of a new host thread for child: it joins the group, says so
        (ready), waits for go, then runs child (a clone's, or a resumed thread's)."""
        child.tid = _thread.get_native_id()
        child.host_ident = _thread.get_ident()
        self.add(child)
        ready.release()
        go.acquire()
        self.run(child)

    def before_wait(self, thread: GuestThread) -> None:
        """thread is about to wait (a futex wait: a join, a lock, a condition): if it
        made clones lately and no spare host thread is there for its next one, start
        one now, while it has nothing else to do. From thread's host thread, which
        carries thread.lineage, so the spare inherits the same."""
        lineage = thread.lineage
        if lineage not in self._cloners or lineage in self._spare_lineages:
            return
        spare = _Spare(lineage)
        evicted = None
        with self._lock:
            if self._exec_owner is not None or lineage in self._spare_lineages:
                return
            if len(self._spares) >= SPARE_LIMIT:
                evicted = self._spares.pop(0)  # the oldest ends
                self._spare_lineages.discard(evicted.lineage)
            self._spares.append(spare)
            self._spare_lineages.add(lineage)
        if evicted is not None:
            evicted.gate.release()
        try:
            _thread.start_new_thread(self._spare_thread, (spare,))
        except RuntimeError:  # no host task to spare: the payload's own come first
            with self._lock:
                if spare in self._spares:
                    self._spares.remove(spare)
                    self._spare_lineages.discard(lineage)

    def _spare_thread(self, spare: _Spare) -> None:
        spare.ident = _thread.get_ident()
        spare.tid = _thread.get_native_id()  # (last: spawn takes a spare with a tid)
        spare.gate.acquire()  # until a clone gives it a thread (or an execve, none)
        if spare.job is not None:
            self.run(spare.job)

    # ---- running and ending ------------------------------------------------------------

    def run(self, thread: GuestThread) -> None:
        """Run one thread to its end; ends the process when it was the last one. An
        execve replaces the process's image and goes on with its new first thread."""
        proc = self._proc
        while True:
            try:
                thread.run()
            except ExecImage as e:
                thread = proc.replace_image(thread, e.request)
                continue
            except ThreadVanish:
                self._vanished(thread)
            except ThreadExit as e:
                self._thread_ended(thread, e.status)
            except ExitProcess as e:
                proc.end(proc.outcome(status=e.status))
            except KillProcess as e:
                outcome = proc.outcome(signal=e.signo, reason=e.reason, internal=e.internal)
                outcome.info = e.info
                proc.end(outcome)
            except BaseException as e:  # a km bug must not leave a half-dead process behind
                proc.trace.log("thread", f"[{thread.tid}] stack:\n{stack(e)}")
                proc.end(proc.outcome(signal=SIGSEGV,
                                      reason=f"in thread {thread.tid}: {where(e)}",
                                      internal=True))
            return

    # ---- the paused state: every thread stopped where its state can be read and changed

    def pause(self, timeout: float | None = None) -> bool:
        """Stop every thread of the process at a known point (out of the guest, its
        user context in hand, in no host call: GuestThread.park_if_paused) and return
        once all are stopped (True), or when timeout seconds pass (False, still
        pausing). The caller is not one of the process's threads. Off the fast path:
        the kick (immediate_exit and a signal) brings each thread out."""
        with self._lock:
            self.paused = True
            threads = list(self.threads.values())
        for thread in threads:
            thread.kick()
        deadline = None if timeout is None else time.monotonic() + timeout
        while any(not t.parked and not t.exited for t in self.all()):
            remaining = -1 if deadline is None else deadline - time.monotonic()
            if deadline is not None and remaining <= 0:
                return False
            self._parked_event.acquire(timeout=remaining)  # released as each one parks
        return True

    def resume(self) -> None:
        """Let every thread go on from where it stopped."""
        with self._lock:
            self.paused = False
            gates, self._gates = self._gates, []
        for gate in gates:
            gate.release()

    def park(self, thread: GuestThread) -> None:
        """Called by a thread that finds the process paused: stop until resumed."""
        gate = _thread.allocate_lock()
        gate.acquire()
        with self._lock:
            if not self.paused:
                return
            self._gates.append(gate)
            thread.parked = True
        if self._parked_event.locked():
            try:
                self._parked_event.release()
            except RuntimeError:  # released by another thread meanwhile
                pass
        gate.acquire()  # until resume()
        thread.parked = False

    # ---- execve: the other threads vanish ---------------------------------------------

    def stop_others(self, thread: GuestThread) -> None:
        """Make every other thread leave at once (they vanish, without exit(2)'s side
        effects) and wait until they have: thread's execve is past its point of no
        return. If another thread is exec'ing already, that one wins: this one vanishes."""
        with self._lock:
            if self._exec_owner not in (None, thread):
                raise ThreadVanish()
            self._exec_owner = thread
            others = [t for t in self.threads.values() if t is not thread]
            for other in others:
                other.must_leave = True
        for other in others:
            other.kick()
        while True:
            with self._lock:
                if all(t is thread for t in self.threads.values()):
                    return
            self.wait(thread, 50_000_000, interruptible=False)  # woken as each one vanishes

    def _vanished(self, thread: GuestThread) -> None:
        thread.exited = True
        with self._lock:
            self.threads.pop(thread.tid, None)
            self._retired_vcpus.append(thread.vcpu)
            wake = self._wake_fds.pop(thread.tid, None)
            owner = self._exec_owner
        if wake is not None:
            os.close(wake)
        self._proc.trace.log("thread", f"[{thread.tid}] vanishes (execve in another thread)")
        if owner is not None:
            self.wake(owner)
        if thread.host_ident == self._main_ident:
            # The main host thread must outlive the process: park it.
            lock = _thread.allocate_lock()
            lock.acquire()
            lock.acquire()

    def reset(self) -> list:
        """For an execve: forget every thread and return every vCPU (Machine.reset
        keeps them, reset, for the new program's threads). The caller's thread is the
        only one left, and is replaced; spare host threads end."""
        with self._lock:
            vcpus = [t.vcpu for t in self.threads.values()] + self._idle_vcpus \
                + self._retired_vcpus
            for fd in self._wake_fds.values():
                os.close(fd)
            self._wake_fds = {}
            self.threads = {}
            self._idle_vcpus = []
            spares, self._spares = self._spares, []
            self._spare_lineages = set()
            self._cloners = set()
            self._retired_vcpus = []
            self._next_vcpu_id = 0
            self._exec_owner = None
        for spare in spares:  # the host threads end
            spare.gate.release()
        return vcpus

    def _thread_ended(self, thread: GuestThread, status: int) -> None:
        thread.exit_thread()
        # The joiner (pthread_join) waits for this alone: wake it before the rest. (While
        # the thread is still in self.threads: an execve waits for that, and only then
        # replaces the memory written here.)
        thread.wake_joiner()
        proc = self._proc
        with self._lock:
            self.threads.pop(thread.tid, None)
            remaining = len(self.threads)
            self._idle_vcpus.append(thread.vcpu)
            wake = self._wake_fds.pop(thread.tid, None)
            owner = self._exec_owner
        if wake is not None:
            os.close(wake)
        proc.trace.log("thread", f"[{thread.tid}] exit({status}), {remaining} left")
        if remaining == 0:
            proc.end(proc.outcome(status=status))
        if owner is not None:
            self.wake(owner)  # an execve waits for the other threads to be gone
        if thread.tid == proc.pid:
            # The main host thread must outlive the process: park it.
            lock = _thread.allocate_lock()
            lock.acquire()
            lock.acquire()

    # ---- waking threads -------------------------------------------------------------------

    def wake_fd(self, thread: GuestThread) -> int:
        with self._lock:
            fd = self._wake_fds.get(thread.tid)
            if fd is None:
                fd = self._proc.fds.move_high(os.eventfd(0, os.EFD_CLOEXEC | os.EFD_NONBLOCK))
                self._wake_fds[thread.tid] = fd
            return fd

    def wake(self, thread: GuestThread) -> None:
        try:
            os.eventfd_write(self.wake_fd(thread), 1)
        except OSError:
            pass

    def wait(self, thread: GuestThread, timeout_ns: int | None,
             interruptible: bool = True) -> None:
        """Sleep until woken (a signal for this thread) or the timeout passes. A thread
        that must vanish (another one is exec'ing) leaves from here; one waiting in a
        system call gives way to a pause (the call is made again afterwards)."""
        if thread.must_leave:
            raise ThreadVanish()
        if interruptible and self.paused:
            raise RestartSyscall()
        fd = self.wake_fd(thread)
        pollfd = (ctypes.c_int32 * 2)(fd, 1)  # struct pollfd {fd, events=POLLIN, revents}
        ts = None
        if timeout_ns is not None:
            ts = (ctypes.c_int64 * 2)(timeout_ns // 1_000_000_000, timeout_ns % 1_000_000_000)
        host.syscall(NR["ppoll"], ctypes.addressof(pollfd), 1,
                     ctypes.addressof(ts) if ts is not None else 0, 0, 8)
        try:
            os.eventfd_read(fd)
        except OSError:
            pass
        if thread.must_leave:
            raise ThreadVanish()
        if interruptible and self.paused:
            raise RestartSyscall()

    def futex_wake(self, address: int, count: int) -> None:
        host_address = self._proc.mm.host_address(address)
        if host_address is None:
            return
        # A shared wake, as the kernel's own (mm_release, handle_futex_death): on
        # Linux it wakes the waiters of a shared FUTEX_WAIT only (a private one has
        # another key), and here too, the guest's futexes being the host's.
        host.syscall4(NR["futex"], host_address, FUTEX_WAKE, count, 0)

    def keep_kicking(self, thread: GuestThread) -> None:
        """Re-kick thread every few milliseconds until it has taken its signal.

        One kick can be lost: if it lands while the thread runs km's own code, just
        before a blocking host call, that call does not see it. So a kicker thread
        repeats the kick as long as a signal the thread does not block waits for it."""
        with self._lock:
            self._kick_targets.add(thread)
            start = not self._kicker_running
            self._kicker_running = True
        if start:
            try:
                _thread.start_new_thread(self._kicker, ())
            except RuntimeError:
                # No host task to spare (a pids limit): the kick already sent stands
                # alone, and the next one tries again to start the kicker.
                with self._lock:
                    self._kicker_running = False
        elif self._kicker_wakeup.locked():
            try:
                self._kicker_wakeup.release()
            except RuntimeError:
                pass

    def _kicker(self) -> None:
        while True:
            with self._lock:
                targets = list(self._kick_targets)
            if not targets:
                self._kicker_wakeup.acquire(timeout=1.0)
                continue
            time.sleep(KICK_RETRY_SECONDS)
            for thread in targets:
                if thread.exited or not thread.has_deliverable_signal():
                    with self._lock:
                        self._kick_targets.discard(thread)
                else:
                    thread.send_kick()

    def pick_receiver(self, signo_bit: int, preferred: GuestThread | None) -> GuestThread | None:
        """The thread a process-directed signal should interrupt: one not blocking it."""
        if preferred is not None and not preferred.signal_mask & signo_bit:
            return preferred
        with self._lock:
            threads = list(self.threads.values())
        for thread in threads:
            if not thread.signal_mask & signo_bit:
                return thread
        return None

    def forget_after_fork(self) -> list:
        """In a forked child, where only the forking thread survived: release what the
        parent's threads owned and return their vCPUs (to close). No locking: a lock
        another parent thread held at fork time would never be released here."""
        for fd in self._wake_fds.values():
            os.close(fd)
        self._wake_fds = {}
        return [t.vcpu for t in self.threads.values()] + list(self._idle_vcpus)

    def all(self) -> list[GuestThread]:
        with self._lock:
            return list(self.threads.values())
