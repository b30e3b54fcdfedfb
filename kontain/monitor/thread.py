"""A guest thread: one vCPU, the host thread that runs it, and the run loop.

The run loop is km's hot path. Each KVM_RUN returns on an `out` from the ring-0 stub:
port SYSCALL_PORT for a system call, EXCEPTION_PORT_BASE + vector for a CPU exception.
Registers travel through kvm_run's sync regs, so a system call costs one KVM_RUN and
no other ioctl.

Returning from a system call depends on what `syscall` did on this host (it is probed
once per VM, on the first system call):
- hardware KVM: `syscall` entered the stub at CPL 0; km writes the iret frame on this
  vCPU's ring-0 stack and points rsp at it, and the stub's `iretq` returns to the payload.
- PVM: `syscall` jumped to the stub without leaving CPL 3; km resumes the payload
  directly at rcx with the flags from r11, skipping the stub's `iretq`.

The payload's user context when km has it in hand comes from one of three places: a
system call (rip in rcx, rflags in r11), an exception (the hardware iret frame on the
ring-0 stack), or an interruption of KVM_RUN by a host signal (the registers
themselves, at CPL 3). Signal delivery and sigreturn work on that context and resume
through the same place.
"""

from __future__ import annotations

import _signal as host_signal  # not `signal`: it imports enum, and km start-up is timed
import ctypes
import errno
import fcntl
import struct
from time import perf_counter_ns

from kontain.kvm import constants as k
from kontain.kvm.api import Vcpu
from kontain.linux.abi import (
    ERESTART_RESTARTBLOCK,
    ERESTARTNOHAND,
    ERESTARTNOINTR,
    ERESTARTSYS,
    FUTEX_OWNER_DIED,
    FUTEX_TID_MASK,
    FUTEX_WAITERS,
    ROBUST_LIST_LIMIT,
)
from kontain.linux.numbers import NAMES, NUMBERS
from kontain.machine import cpu, cpustate, stub
from kontain.mm.space import GuestFault
from kontain.monitor import faults, sigframe
from kontain.monitor import signals as sig
from kontain.monitor.dispatch import CONTEXT_SET, TABLE_SIZE
from kontain.monitor.errors import stack
from kontain.monitor.exits import (
    ExecImage,
    ExitProcess,
    KillProcess,
    RestartSyscall,
    ThreadExit,
    ThreadVanish,
)

TYPE_CHECKING = False  # no typing import at run time: km start-up is timed
if TYPE_CHECKING:
    from kontain.monitor.process import Process

_MASK64 = (1 << 64) - 1
#: A system call that took longer than this has waited for something: the host
#: signals that came meanwhile are posted before it returns.
BLOCKED_NS = 200_000
_EFAULT = errno.EFAULT
_USER_FLAGS = cpu.USER_RFLAGS
_FLAGS_MASK = cpu.USER_RFLAGS_MASK

#: Calls that return EINTR after a handler runs even with SA_RESTART (signal(7)).
NO_RESTART_WITH_HANDLER = frozenset({
    7, 271, 23, 270, 232, 281, 441, 34, 130, 128, 35, 230, 202,  # poll ppoll select pselect6
    # epoll_wait epoll_pwait epoll_pwait2 pause rt_sigsuspend rt_sigtimedwait nanosleep
    # clock_nanosleep futex (waits with a timeout restart only without a handler)
})

#: The host signal km sends a vCPU thread to make KVM_RUN (or a blocking host call) return.
KICK_SIGNAL = host_signal.SIGRTMAX

SYSCALL, EXCEPTION, INTERRUPTED = 0, 1, 2

#: kvm_run from exit_reason (offset 8) to s.regs.r11: exit_reason, io.port, then rax to
#: r11 of the sync regs at offset 304 (struct kvm_run, kontain.kvm.structs.Run).
_EXIT = struct.Struct("<I22xH268x12Q")
#: Indexes of kvm_run's 64-bit words: kvm_dirty_regs, then s.regs' rax, rsp, rip, rflags.
_DIRTY, _RAX = 296 // 8, 304 // 8
_RSP, _RIP, _RFLAGS = _RAX + 6, _RAX + 16, _RAX + 17

#: System calls that never wait for an event (no sleep a signal could end): the run
#: loop does not time them to see whether host signals came meanwhile (BLOCKED_NS).
NEVER_WAIT = frozenset(NUMBERS[name] for name in (
    "getpid", "getppid", "gettid", "getuid", "geteuid", "getgid", "getegid", "getresuid",
    "getresgid", "getpgrp", "getpgid", "getsid", "getgroups", "clock_gettime",
    "clock_getres", "gettimeofday", "time", "rt_sigprocmask", "rt_sigaction",
    "rt_sigpending", "rt_sigreturn", "sigaltstack", "arch_prctl", "set_tid_address",
    "set_robust_list", "get_robust_list", "sched_yield", "getcpu", "uname", "umask",
    "getrlimit", "prlimit64", "getrusage", "sched_getaffinity", "brk", "mmap", "mprotect",
    "munmap", "madvise", "lseek", "dup", "dup2", "dup3", "getcwd", "fstat", "times",
    "getpriority", "personality", "capget"))
#: 1 for each number the run loop times, 0 for NEVER_WAIT ones (indexed by number).
MAY_WAIT = bytes(0 if nr in NEVER_WAIT else 1 for nr in range(TABLE_SIZE))


class GuestThread:
    """One thread of the payload, running on its own vCPU."""

    def __init__(self, proc: Process, vcpu: Vcpu, tid: int) -> None:
        self.proc = proc
        self.mm = proc.mm
        self.vcpu = vcpu
        self.tid = tid
        self.run_struct = vcpu.run
        self.regs = vcpu.run.s.regs
        machine = proc.machine
        self._frame_pa = machine.iret_frame_pa(vcpu.id)
        self._frame_va = machine.iret_frame_va(vcpu.id)
        self.frame = (ctypes.c_uint64 * 5).from_address(
            machine.phys.host_address(self._frame_pa))
        self.frame[1] = 0x33  # user cs and ss in every iret frame km writes
        self.frame[4] = 0x2B
        self._stub_start = machine.syscall_entry
        self._last_fault = (0, 0)  # (address, count) of repeated spurious page faults
        self._fault_epoch = -1  # mm.invalidation_epoch at the last EFAULT from KVM_RUN
        #: What this thread's host thread carries for it and a thread it creates
        #: inherits: name, credentials, CPU affinity, scheduling policy and nice value,
        #: timer slack. A new identity whenever one of those changes
        #: (host_state_changed); a clone inherits its parent's, and runs on a spare
        #: host thread only if one of the same started it (ThreadGroup.spawn).
        self.lineage = object()
        #: Thread bookkeeping the payload's libc sets up (set_tid_address, robust lists).
        self.clear_child_tid = 0
        self.robust_list = 0
        self.name = b""
        #: Signal state of this thread: blocked set, private queue, alternate stack.
        self.signal_mask = 0
        self.pending = sig.PendingQueue()
        self.altstack: tuple[int, int, int] = (0, 2, 0)  # (sp, flags, size): disabled
        #: Set while the thread waits in sigsuspend: the mask to restore after the handler.
        self.saved_mask: int | None = None
        #: Host identity of the thread running this vCPU (for kicks).
        self.host_ident = 0
        #: Where the user context is while km handles an exit (SYSCALL/EXCEPTION/...).
        self._context = SYSCALL
        self._resume = (0, 0, 0)
        self._syscall_nr = 0
        self.exited = False
        #: How KVM_RUN is issued: fcntl.ioctl, or a test's stand-in (no KVM needed).
        self.run_ioctl = fcntl.ioctl
        #: Set when another thread's execve makes this one vanish (ThreadGroup).
        self.must_leave = False
        #: Stopped in the paused state (ThreadGroup.pause).
        self.parked = False
        #: The CPU exception being turned into a signal (its sigcontext fields).
        self.trapno = self.error_code = self.cr2 = 0
        #: Guest buffers a handler passed to the host through a copy in km (they span
        #: two mappings): (guest address, km's copy, copy back to the guest after).
        self.bounced: list[tuple[int, ctypes.Array, bool]] = []

    def host_state_changed(self) -> None:
        """This thread's host thread was changed in what a new thread inherits (see
        lineage), by the thread itself or another."""
        self.lineage = object()

    # ---- buffers the host cannot reach in place ----------------------------------------

    def bounce(self, va: int, size: int, write: bool) -> int:
        """km's address of a copy of guest memory [va, va+size), valid until the system
        call returns; if write, the copy goes back to the guest then."""
        copy = ctypes.create_string_buffer(self.mm.read(va, size), size)
        self.bounced.append((va, copy, write))
        return ctypes.addressof(copy)

    def _copy_back(self) -> None:
        for va, copy, write in self.bounced:
            if write:
                try:
                    self.mm.write(va, copy.raw)
                except GuestFault:
                    pass  # unmapped by another thread meanwhile: the payload's race
        self.bounced.clear()

    # ---- user context -------------------------------------------------------------

    def set_user_entry(self, rip: int, rsp: int) -> None:
        regs = self.vcpu.get_regs()
        regs.rip, regs.rsp, regs.rflags = rip, rsp, _USER_FLAGS
        self.vcpu.set_regs(regs)

    def enter_context(self, kind: int) -> None:
        """Take hold of the payload's user context, found where this kind of exit left it."""
        self._context = kind
        regs = self.regs
        if kind == SYSCALL:
            self._resume = (regs.rcx, regs.rsp, regs.r11)
        elif kind == EXCEPTION:
            self._resume = (self.frame[0], self.frame[3], self.frame[2])
        else:
            self._resume = (regs.rip, regs.rsp, regs.rflags)

    def user_context(self) -> tuple[int, int, int]:
        """(rip, rsp, rflags) of the payload where it will resume."""
        return self._resume

    def resume_at(self, rip: int, rsp: int, rflags: int) -> None:
        """Make the payload resume at rip with this rsp and rflags (the other registers,
        rcx and r11 included, are whatever self.regs holds)."""
        regs = self.regs
        rflags = rflags & _FLAGS_MASK | _USER_FLAGS
        self._resume = (rip, rsp, rflags)
        if self._context == INTERRUPTED or (
                self._context == SYSCALL and self.proc.machine.syscall_in_user_mode):
            regs.rip, regs.rsp, regs.rflags = rip, rsp, rflags
        else:
            frame = self.frame
            frame[0], frame[2], frame[3] = rip, rflags, rsp
            regs.rsp = self._frame_va
        self.run_struct.kvm_dirty_regs = k.KVM_SYNC_X86_REGS

    def clone_state(self, new_stack: int, tls: int | None) -> cpustate.ThreadState:
        """The CPU state a child created by this thread's clone/fork starts with: this
        thread's, returning 0 from the system call, on new_stack if given, with tls as
        its FS base if given (CLONE_SETTLS)."""
        state = cpustate.capture_thread(self.vcpu, self.regs)
        regs = state.regs
        regs.rax = 0
        regs.rip = self.regs.rcx  # where `syscall` returns
        regs.rflags = self.regs.r11 & _FLAGS_MASK | _USER_FLAGS
        if new_stack:
            regs.rsp = new_stack
        if tls is not None:
            state.fs_base = tls
        return state

    # ---- the run loop -------------------------------------------------------------

    def run(self) -> None:
        """Run the payload until the process exits (ExitProcess / KillProcess propagate)
        or this thread ends (ThreadExit)."""
        run = self.run_struct
        # kvm_run read in one unpack (exit reason, port, the registers up to r11) and
        # written through a view of 64-bit words: ctypes field access costs 3-4 times
        # as much, on every exit.
        page = memoryview(run).cast("B")
        words = page.cast("Q")
        unpack = _EXIT.unpack_from
        vcpu_fd = self.vcpu.fd
        ioctl = self.run_ioctl
        kvm_run = k.KVM_RUN
        proc = self.proc
        table = proc.syscalls.table
        ntable = len(table)
        syscall_port = stub.SYSCALL_PORT
        exit_io = k.KVM_EXIT_IO
        dirty = k.KVM_SYNC_X86_REGS
        run.kvm_valid_regs = k.KVM_SYNC_X86_REGS
        machine = proc.machine
        in_user_mode = machine.syscall_in_user_mode
        frame = self.frame
        frame_va = self._frame_va
        flags_mask = _FLAGS_MASK
        own_pending = self.pending
        shared_pending = proc.signals.shared
        bounced = self.bounced
        context_set = CONTEXT_SET
        clock = perf_counter_ns
        may_wait = MAY_WAIT
        eintr, restart_low, restartsys = -errno.EINTR, -ERESTART_RESTARTBLOCK, -ERESTARTSYS
        while True:
            try:
                ioctl(vcpu_fd, kvm_run, 0)
            except InterruptedError:
                self._interrupted()
                continue
            except OSError as e:
                self._run_failed(e)
                continue
            reason, port, nr, _, rcx, rdx, rsi, rdi, rsp, _, r8, r9, r10, r11 = unpack(page, 8)
            if reason == exit_io and port == syscall_port:
                handler = table[nr] if nr < ntable else None
                if handler is None:
                    ret = proc.syscalls.unknown(self, nr)
                else:
                    started = clock() if may_wait[nr] else 0
                    try:
                        ret = handler(self, rdi, rsi, rdx, r10, r8, r9)
                    except OSError as e:  # the one error channel (GuestFault included)
                        ret = -(e.errno or errno.EIO)
                    except RestartSyscall:
                        ret = -ERESTARTNOINTR
                    except (ExitProcess, KillProcess, ThreadExit, ExecImage, ThreadVanish):
                        raise
                    except Exception as e:  # a km bug: the payload gets an error, km lives on
                        ret = self._handler_failed(nr, e)
                    if started and clock() - started > BLOCKED_NS:
                        # It waited (a read, a poll, a futex): a signal sent to us meanwhile
                        # is Linux's to deliver as the call returns, not whenever km's
                        # forwarding thread gets to run.
                        proc.host_signals.drain()
                if bounced:
                    self._copy_back()
                if in_user_mode is None:
                    in_user_mode = machine.syscall_in_user_mode = self._probe_syscall_mode()
                if ret is context_set:  # the handler set the whole context (rt_sigreturn)
                    continue
                if (own_pending.bits | shared_pending.bits) & ~self.signal_mask or \
                        restart_low <= ret <= eintr and (ret == eintr or ret <= restartsys):
                    self._syscall_return_slow(nr, ret)
                    continue
                # (no handler changes rcx, r11 or rsp and returns: those that set the
                # context return CONTEXT_SET, the others raise)
                words[_RAX] = ret & _MASK64
                if in_user_mode:
                    words[_RIP] = rcx
                    words[_RFLAGS] = r11 & flags_mask | _USER_FLAGS
                else:
                    frame[0] = rcx
                    frame[2] = r11 & flags_mask | _USER_FLAGS
                    frame[3] = rsp
                    words[_RSP] = frame_va
                words[_DIRTY] = dirty
                continue
            self._other_exit()

    def _handler_failed(self, nr: int, error: Exception) -> int:
        """A km bug in a handler. The payload gets EIO, never ENOSYS (a libc reads that
        as "not supported" and quietly takes another path: a bug would become a change
        of behaviour). km says so on its diagnostics stream, counts it (-S), and with
        --strict (the test suite) the process ends: a bug must not go unnoticed."""
        proc = self.proc
        name = NAMES.get(nr, str(nr))
        proc.internal_error(name, error)
        proc.trace.log("syscall", f"internal error in {name}, stack:\n{stack(error)}")
        if proc.options.strict:
            raise KillProcess(sig.SIGABRT, f"in {name} (--strict)", internal=True)
        return -errno.EIO

    def _probe_syscall_mode(self) -> bool:
        """Did `syscall` leave the payload at CPL 3 (PVM) rather than enter ring 0?"""
        return self.vcpu.get_sregs().cs.dpl == 3

    def _syscall_return_slow(self, nr: int, ret: int) -> None:
        """A system call returns with a signal to deliver or a restart to decide."""
        self.enter_context(SYSCALL)
        if ret == -errno.EINTR:
            ret = -(ERESTARTNOHAND if nr in NO_RESTART_WITH_HANDLER else ERESTARTSYS)
        self._syscall_nr = nr
        self.regs.rax = ret & _MASK64
        rip, rsp, rflags = self.user_context()
        self.resume_at(rip, rsp, rflags)
        if not self.deliver_signals(interrupted_result=ret):
            if self.saved_mask is not None:  # sigsuspend woke without running a handler
                self.signal_mask, self.saved_mask = self.saved_mask, None
            if -ERESTART_RESTARTBLOCK <= ret <= -ERESTARTSYS:
                self._restart_syscall()
        self.park_if_paused()

    def _restart_syscall(self) -> None:
        """Run the interrupted system call again: back up over `syscall`, nr in rax."""
        rip, rsp, rflags = self.user_context()
        self.regs.rax = self._syscall_nr
        self.resume_at(rip - 2, rsp, rflags)

    def _interrupted(self) -> None:
        """KVM_RUN returned EINTR: a host signal (a kick, or one for the guest)."""
        self.run_struct.immediate_exit = 0
        rip = self.regs.rip
        if self._stub_start <= rip < self._stub_start + 4096:
            return  # inside the stub: the exit it is about to take will deliver
        self.enter_context(INTERRUPTED)
        self.deliver_signals()
        self.park_if_paused()

    # ---- the paused state -----------------------------------------------------------

    def park_if_paused(self) -> None:
        """If the process is being paused, stop here until it is resumed.

        Here the thread is out of the guest with its whole user context in hand (the
        registers in kvm_run's sync regs, where it will resume in user_context()) and
        in no host call: another thread may read and change that state (a snapshot, a
        debugger); what it changes takes effect when this thread runs again."""
        group = self.proc.group
        if not group.paused:
            return
        self.run_struct.kvm_dirty_regs = k.KVM_SYNC_X86_REGS  # edits made meanwhile count
        group.park(self)
        if self.proc.debugger is not None:
            self.proc.debugger.after_park(self)  # gdb may keep this one stopped

    def kick(self) -> None:
        """Make this thread leave KVM_RUN or a blocking host call soon, and keep at it
        while a signal waits for it (see ThreadGroup.keep_kicking)."""
        self.send_kick()
        self.proc.group.keep_kicking(self)

    def send_kick(self) -> None:
        self.run_struct.immediate_exit = 1
        self.proc.wake(self)
        if self.host_ident:
            try:
                host_signal.pthread_kill(self.host_ident, KICK_SIGNAL)
            except (ProcessLookupError, OSError):
                pass

    def has_deliverable_signal(self) -> bool:
        """Whether the thread has a reason to leave the guest: a signal it does not
        block, or another thread's execve (then it must vanish)."""
        return self.must_leave or self.proc.group.paused and not self.parked or bool(
            (self.pending.bits | self.proc.signals.shared.bits) & ~self.signal_mask)

    def _run_failed(self, error: OSError) -> None:
        if error.errno == errno.EAGAIN:
            # KVM could not start the VM's worker task: a process limit (pids cgroup,
            # RLIMIT_NPROC) left no room. fork and exec check this before the payload
            # runs; here is the backstop.
            raise KillProcess(sig.SIGKILL, "no room under the process limit for the "
                              "VM's task") from None
        if error.errno != errno.EFAULT:
            raise error
        # KVM could not reach a guest page's host memory. Either km was invalidating
        # host pages meanwhile (their protection briefly narrowed; see
        # AddressSpace._invalidate): then wait for it to finish and run again. Or the
        # page has no host memory: a shared file mapping past the end of its file.
        epoch = self.mm.invalidation_epoch
        if epoch != self._fault_epoch or epoch & 1:
            self._fault_epoch = epoch
            with self.mm.lock:
                pass
            return
        # The page has no host memory: a file mapping whose file was truncated under
        # it. Hold the pages that went and enter again: the access is then a page fault,
        # and the payload gets SIGBUS with the address (faults.py).
        if self.mm.recheck_files():
            return
        # Linux sends SIGBUS (BUS_ADRERR) for the address touched; KVM names the guest
        # physical address in a KVM_EXIT_MEMORY_FAULT exit.
        run = self.run_struct
        va = None
        if run.exit_reason == k.KVM_EXIT_MEMORY_FAULT:
            gpa = int.from_bytes(bytes(run.exit.padding[8:16]), "little")
            va = self.mm.virtual_address_of(gpa)
        if va is None:
            # No address (PVM does not report one): the default action, uncatchable.
            raise KillProcess(sig.SIGBUS, "guest touched memory its host cannot back")
        self.enter_context(INTERRUPTED)
        self.force_signal(sig.SIGBUS, sig.siginfo(sig.SIGBUS, sig.BUS_ADRERR, addr=va))

    def _other_exit(self) -> None:
        run = self.run_struct
        reason = run.exit_reason
        if reason == k.KVM_EXIT_IO:
            port = run.exit.io.port
            vector = port - stub.EXCEPTION_PORT_BASE
            if 0 <= vector < stub.EXCEPTION_VECTORS and self._from_ring0():
                self.enter_context(EXCEPTION)
                self._exception(vector)
                self.regs.rsp = self._frame_va
                run.kvm_dirty_regs = k.KVM_SYNC_X86_REGS
                return
            # An `out` the payload issued itself (its own, or the stub's reached by a
            # jump): Linux would raise #GP. Only a real exception enters at ring 0.
            self.enter_context(INTERRUPTED)
            self.force_signal(sig.SIGSEGV, sig.siginfo(sig.SIGSEGV, sig.SI_KERNEL, addr=0))
            return
        if reason == k.KVM_EXIT_INTR:
            self._interrupted()
            return
        if reason == k.KVM_EXIT_MMIO:
            self._mmio(run.exit.mmio.phys_addr)
            return
        name = k.EXIT_REASON_NAMES.get(reason, str(reason))
        detail = ""
        if reason == k.KVM_EXIT_INTERNAL_ERROR:
            detail = f" (suberror {run.exit.internal.suberror})"
        raise KillProcess(sig.SIGSEGV, f"unexpected VM exit {name}{detail} at rip "
                                       f"{self.regs.rip:#x}", internal=True)

    def _from_ring0(self) -> bool:
        """Whether this exit came from the stub running at CPL 0 (a CPU exception
        delivered through the IDT) rather than from payload code at CPL 3."""
        return self.vcpu.get_sregs().cs.selector & 3 == 0

    def _mmio(self, gpa: int) -> None:
        """The payload touched guest physical memory with no (writable) RAM behind it,
        such as the vDSO's read-only data pages. km never maps such a page writable, so
        this is a stale translation or a km bug: either way the payload gets SIGSEGV
        for the address, as it would for any access its mappings do not allow."""
        rip = self.regs.rip
        # KVM completes the emulated access on the next KVM_RUN: made without running
        # the guest, so that the registers are consistent.
        try:
            self.vcpu.enter_without_running()
        except OSError:
            pass
        self.regs.rip = rip
        va = self.mm.virtual_address_of(gpa) or 0
        self.enter_context(INTERRUPTED)
        self.force_signal(sig.SIGSEGV, sig.siginfo(sig.SIGSEGV, sig.SEGV_ACCERR, addr=va))

    # ---- exceptions ------------------------------------------------------------------

    def _exception(self, vector: int) -> None:
        """A CPU exception in the payload; the hardware frame is on the ring-0 stack."""
        view = self.mm.view
        pa = self._frame_pa
        rip = int.from_bytes(view[pa:pa + 8], "little")
        error_code = 0
        if vector in stub.VECTORS_WITH_ERROR_CODE:
            error_code = int.from_bytes(view[pa - 8:pa], "little")
        self.trapno, self.error_code, self.cr2 = vector, error_code, 0
        debugger = self.proc.debugger
        if debugger is not None and vector in (1, 3) and debugger.trap(self, vector):
            return  # a breakpoint or step of gdb's (kontain.monitor.debugger)
        repeats = 1
        if vector == faults.PAGE_FAULT:
            self.cr2 = self.vcpu.get_sregs().cr2
            address, count = self._last_fault
            repeats = count + 1 if address == self.cr2 else 1
            self._last_fault = (self.cr2, repeats)
        verdict = faults.signal_for(vector, error_code, rip, self.cr2, self.mm, repeats)
        if verdict is None:
            return  # a spurious fault: the access is made again
        signo, code, address = verdict
        self.proc.trace.log("signal", f"[{self.tid}] exception {vector} at rip {rip:#x} "
                                      f"(error {error_code:#x}, cr2 {self.cr2:#x})")
        self.force_signal(signo, sig.siginfo(signo, code, addr=address))

    def force_signal(self, signo: int, info: bytes, deliver: bool = True) -> None:
        """A synchronous signal caused by this thread (Linux force_sig_info): if it is
        blocked or ignored, the default action is taken instead. deliver=False: a
        system call's own (seccomp's SIGSYS), delivered as the call returns."""
        with self.proc.signals.lock:
            action = self.proc.signals.action(signo)
            blocked = self.signal_mask & sig.bit(signo)
            if blocked or action.handler == sig.SIG_IGN:
                self.proc.signals.actions[signo] = sig.Disposition()
                self.signal_mask &= ~sig.bit(signo)
            self.pending.add(signo, info)
        if deliver:
            self.deliver_signals()

    # ---- signal delivery -------------------------------------------------------------

    def deliver_signals(self, interrupted_result: int | None = None) -> bool:
        """Deliver the deliverable signals; True if a handler frame was set up."""
        if self.must_leave:
            raise ThreadVanish()
        proc = self.proc
        state = proc.signals
        delivered = False
        while True:
            with state.lock:
                allowed = ~self.signal_mask & ((1 << sig.NSIG) - 1)
                taken = self.pending.take(allowed) or state.shared.take(allowed)
                if taken is None:
                    return delivered
                proc.signalfds.refresh()
                signo, info = taken
                action = state.action(signo)
                handler, flags = action.handler, action.flags
                if handler not in (sig.SIG_DFL, sig.SIG_IGN) and flags & sig.SA_RESETHAND:
                    # Linux resets only the handler; flags and mask stay as they were.
                    state.actions[signo] = sig.Disposition(sig.SIG_DFL, flags, action.restorer,
                                                           action.mask)
                timer = sig.timer_of(info)
                if timer is not None:
                    state.timer_overruns[timer[0]] = timer[1]
            if proc.debugger is not None and not proc.debugger.signal_stop(self, signo):
                continue  # gdb took it away (a stop of this thread, then `continue`)
            if handler == sig.SIG_IGN:
                continue
            if handler == sig.SIG_DFL:
                if signo in sig.DEFAULT_IGNORE:
                    continue
                if signo in sig.DEFAULT_STOP:
                    proc.stop_self()
                    continue
                raise KillProcess(signo, f"signal {signo}", info=info)
            self._setup_frame(signo, info, action, handler, flags, interrupted_result)
            # Like Linux, set up a frame for every signal still deliverable under the
            # handler's mask: they nest, and the last one set up runs first.
            interrupted_result = None
            delivered = True
            if not (self.pending.bits | state.shared.bits) & ~self.signal_mask:
                return True

    def _setup_frame(self, signo: int, info: bytes, action: sig.Disposition, handler: int,
                     flags: int, interrupted_result: int | None) -> None:
        regs = self.regs
        if interrupted_result is not None:
            code = -interrupted_result
            if code == ERESTARTNOHAND or code == ERESTART_RESTARTBLOCK or (
                    code == ERESTARTSYS and not flags & sig.SA_RESTART):
                regs.rax = -errno.EINTR & _MASK64
            elif code in (ERESTARTSYS, ERESTARTNOINTR):
                rip, rsp, rflags = self.user_context()
                regs.rax = self._syscall_nr
                self.resume_at(rip - 2, rsp, rflags)
        rip, rsp, rflags = self.user_context()
        old_mask = self.saved_mask if self.saved_mask is not None else self.signal_mask
        self.saved_mask = None
        registers = {name: getattr(regs, name) for name in sigframe.GREG_ORDER}
        registers["rip"], registers["rsp"], registers["rflags"] = rip, rsp, rflags
        frame = sigframe.build(registers, old_mask, info, action.restorer, self.altstack,
                               bool(flags & sig.SA_ONSTACK), self._fp_state(),
                               self.proc.machine.xcr0, (self.error_code, self.trapno, self.cr2))
        try:
            self.mm.write(frame.fp_address, frame.fpstate)
            self.mm.write(frame.address, frame.image)
        except GuestFault:
            # No room for the frame (a stack overflow without an alternate stack):
            # Linux kills the thread group with SIGSEGV.
            raise KillProcess(sig.SIGSEGV, "cannot write the signal frame") from None
        if self.altstack[1] & sigframe.SS_AUTODISARM:
            # The handler runs with no alternate stack (so it can switch contexts away
            # from it); the frame keeps it for sigreturn to arm again.
            self.altstack = (0, sigframe.SS_DISABLE, 0)
        with self.proc.signals.lock:
            block = action.mask | (0 if flags & sig.SA_NODEFER else sig.bit(signo))
            self.signal_mask = (self.signal_mask | block) & ~sig.UNBLOCKABLE
        self.trapno = self.error_code = self.cr2 = 0
        regs.rdi = signo
        regs.rsi = frame.siginfo
        regs.rdx = frame.ucontext
        regs.rax = 0
        self.proc.trace.log("signal", f"[{self.tid}] deliver signal {signo} to {handler:#x}")
        self.resume_at(handler, frame.address, rflags & ~(cpu.RFLAGS_TF | cpu.RFLAGS_DF))

    def _fp_state(self) -> bytes:
        return bytes(self.vcpu.get_xsave())[:self.proc.machine.xsave_size]

    def sigreturn(self) -> None:
        """rt_sigreturn: restore the context saved in the frame at rsp - 8."""
        self.enter_context(SYSCALL)
        frame = self.regs.rsp - 8
        try:
            saved = sigframe.parse(self.mm.read(frame + sigframe.OFFSET_UCONTEXT,
                                                sigframe.SAVED_SIZE))
        except GuestFault:
            raise KillProcess(sig.SIGSEGV, "rt_sigreturn with a bad frame") from None
        greg = saved.registers
        regs = self.regs
        for name in sigframe.GREG_ORDER:
            if name not in ("rip", "rsp", "rflags"):
                setattr(regs, name, greg[name])
        if saved.fp_address:
            self._restore_fp(saved.fp_address)
        with self.proc.signals.lock:
            self.signal_mask = saved.mask & ~sig.UNBLOCKABLE
        if saved.altstack is not None:
            self.altstack = saved.altstack
        self.resume_at(greg["rip"], greg["rsp"], greg["rflags"])
        if (self.pending.bits | self.proc.signals.shared.bits) & ~self.signal_mask:
            self.deliver_signals()

    def _restore_fp(self, address: int) -> None:
        size = self.proc.machine.xsave_size
        try:
            image = self.mm.read(address, size)
        except GuestFault:
            raise KillProcess(sig.SIGSEGV, "rt_sigreturn with a bad FP state") from None
        xsave = self.vcpu.get_xsave()
        ctypes.memmove(ctypes.addressof(xsave), image, size)
        try:
            self.vcpu.set_xsave(xsave)
        except OSError:
            raise KillProcess(sig.SIGSEGV, "rt_sigreturn with an invalid FP state") from None

    # ---- thread end -----------------------------------------------------------------

    def exit_thread(self) -> None:
        """This thread ends: its robust futexes are released (then wake_joiner)."""
        self.exited = True
        if self.robust_list:
            self._release_robust_futexes()

    def wake_joiner(self) -> None:
        """The last step of a thread's end that the payload sees: *clear_child_tid = 0
        and a futex wake there (CLONE_CHILD_CLEARTID), which a pthread_join waits for."""
        if self.clear_child_tid:
            try:
                self.mm.write(self.clear_child_tid, b"\0\0\0\0")
                self.proc.futex_wake(self.clear_child_tid, 1)
            except GuestFault:
                pass

    def _release_robust_futexes(self) -> None:
        """Mark the robust futexes this thread still holds FUTEX_OWNER_DIED and wake a
        waiter on each, as the kernel does at thread exit (kernel/futex/core.c)."""
        mm = self.mm
        try:
            head = self.robust_list
            entry, offset, pending = struct.unpack("<QqQ", mm.read(head, 24))
            entries = []
            while entry != head and len(entries) < ROBUST_LIST_LIMIT:
                entries.append(entry & ~1)
                entry = mm.read_u64(entry & ~1)
            if pending:
                entries.append(pending & ~1)
            for node in entries:
                word_address = node + offset
                word = int.from_bytes(mm.read(word_address, 4), "little")
                if word & FUTEX_TID_MASK != self.tid:
                    continue
                mm.write(word_address, ((word & FUTEX_WAITERS) | FUTEX_OWNER_DIED)
                         .to_bytes(4, "little"))
                if word & FUTEX_WAITERS:
                    self.proc.futex_wake(word_address, 1)
        except GuestFault:
            pass




__all__ = ["GuestThread", "ExitProcess", "KillProcess", "ThreadExit", "KICK_SIGNAL"]
