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
"""

from __future__ import annotations

import ctypes
import errno
import fcntl

from kontain.kvm import constants as k
from kontain.kvm.api import Vcpu
from kontain.machine import cpu, stub
from kontain.monitor.exits import ExitProcess, KillProcess
from kontain.monitor.mm import GuestFault

TYPE_CHECKING = False  # no typing import at run time: km start-up is timed
if TYPE_CHECKING:
    from kontain.monitor.process import Process

_MASK64 = (1 << 64) - 1
_ENOSYS = -errno.ENOSYS & _MASK64
_EFAULT = errno.EFAULT
_USER_FLAGS = cpu.USER_RFLAGS

SIGILL, SIGTRAP, SIGBUS, SIGFPE, SIGSEGV = 4, 5, 7, 8, 11
#: What each CPU exception becomes when it reaches user code (arch/x86/kernel/traps.c).
EXCEPTION_SIGNALS = {
    0: SIGFPE, 1: SIGTRAP, 3: SIGTRAP, 4: SIGSEGV, 5: SIGSEGV, 6: SIGILL, 7: SIGFPE,
    10: SIGSEGV, 11: SIGBUS, 12: SIGBUS, 13: SIGSEGV, 14: SIGSEGV, 16: SIGFPE, 17: SIGBUS,
    19: SIGFPE,
}
PF_PROTECTION, PF_WRITE, PF_USER, PF_FETCH = 1, 2, 4, 16


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
        self._last_fault = (0, 0)  # (address, count) of repeated spurious page faults
        #: Thread bookkeeping the payload's libc sets up (set_tid_address, robust lists).
        self.clear_child_tid = 0
        self.robust_list = 0
        self.name = b""
        #: Blocked signals (bit n-1 for signal n) and the alternate signal stack.
        self.signal_mask = 0
        self.altstack: tuple[int, int, int] = (0, 2, 0)  # (sp, flags, size): disabled

    # ---- user context -------------------------------------------------------------

    def set_user_entry(self, rip: int, rsp: int) -> None:
        regs = self.vcpu.get_regs()
        regs.rip, regs.rsp, regs.rflags = rip, rsp, _USER_FLAGS
        self.vcpu.set_regs(regs)

    # ---- the run loop -------------------------------------------------------------

    def run(self) -> None:
        """Run the payload until the process exits (ExitProcess / KillProcess propagate)."""
        run = self.run_struct
        regs = self.regs
        io = run.exit.io
        vcpu_fd = self.vcpu.fd
        ioctl = fcntl.ioctl
        kvm_run = k.KVM_RUN
        table = self.proc.syscalls.table
        ntable = len(table)
        syscall_port = stub.SYSCALL_PORT
        dirty = k.KVM_SYNC_X86_REGS
        run.kvm_valid_regs = k.KVM_SYNC_X86_REGS
        machine = self.proc.machine
        in_user_mode = machine.syscall_in_user_mode
        frame = self.frame
        frame_va = self._frame_va
        flags_mask = cpu.USER_RFLAGS_MASK
        while True:
            try:
                ioctl(vcpu_fd, kvm_run, 0)
            except InterruptedError:
                continue
            except OSError as e:
                self._run_failed(e)
                continue
            if run.exit_reason == 2 and io.port == syscall_port:  # KVM_EXIT_IO
                nr = regs.rax
                handler = table[nr] if nr < ntable else None
                if handler is None:
                    ret = self.proc.syscalls.unknown(self, nr)
                else:
                    try:
                        ret = handler(self, regs.rdi, regs.rsi, regs.rdx, regs.r10, regs.r8,
                                      regs.r9)
                    except GuestFault:
                        ret = -_EFAULT
                    except OSError as e:
                        ret = -(e.errno or errno.EIO)
                regs.rax = ret & _MASK64
                if in_user_mode is None:
                    in_user_mode = machine.syscall_in_user_mode = self._probe_syscall_mode()
                if in_user_mode:
                    regs.rip = regs.rcx
                    regs.rflags = regs.r11 & flags_mask | _USER_FLAGS
                else:
                    frame[0] = regs.rcx
                    frame[2] = regs.r11 & flags_mask | _USER_FLAGS
                    frame[3] = regs.rsp
                    regs.rsp = frame_va
                run.kvm_dirty_regs = dirty
                continue
            self._other_exit()

    def _probe_syscall_mode(self) -> bool:
        """Did `syscall` leave the payload at CPL 3 (PVM) rather than enter ring 0?"""
        return self.vcpu.get_sregs().cs.dpl == 3

    def _run_failed(self, error: OSError) -> None:
        if error.errno == errno.EFAULT:
            # KVM could not reach a guest page's host memory: a file mapping past the
            # end of its file. Linux delivers SIGBUS.
            raise KillProcess(SIGBUS, "guest touched memory its host cannot back")
        raise error

    def _other_exit(self) -> None:
        run = self.run_struct
        reason = run.exit_reason
        if reason == k.KVM_EXIT_IO:
            port = run.exit.io.port
            vector = port - stub.EXCEPTION_PORT_BASE
            if 0 <= vector < stub.EXCEPTION_VECTORS:
                self._exception(vector)
                return
            # An `out` the payload issued itself: Linux would raise #GP.
            raise KillProcess(SIGSEGV, f"payload did I/O to port {port:#x}")
        if reason == k.KVM_EXIT_INTR:
            return
        name = k.EXIT_REASON_NAMES.get(reason, str(reason))
        detail = ""
        if reason == k.KVM_EXIT_INTERNAL_ERROR:
            detail = f" (suberror {run.exit.internal.suberror})"
        raise KillProcess(SIGSEGV, f"unexpected VM exit {name}{detail} at rip "
                                   f"{self.regs.rip:#x}", internal=True)

    def _exception(self, vector: int) -> None:
        """A CPU exception in the payload; the hardware frame is on the ring-0 stack."""
        view = self.mm.view
        pa = self._frame_pa
        rip = int.from_bytes(view[pa:pa + 8], "little")
        error_code = 0
        if vector in stub.VECTORS_WITH_ERROR_CODE:
            error_code = int.from_bytes(view[pa - 8:pa], "little")
        if vector == 14:
            cr2 = self.vcpu.get_sregs().cr2
            address, count = self._last_fault
            count = count + 1 if address == cr2 else 1
            self._last_fault = (cr2, count)
            if count <= 3 and self.mm.access_allowed(cr2, bool(error_code & PF_WRITE),
                                                     bool(error_code & PF_FETCH)):
                # A stale translation (the TLB may hold an entry km has since widened):
                # retry the access, as Linux does for spurious faults.
                self._resume_from_exception()
                return
            raise KillProcess(SIGSEGV, f"page fault at {cr2:#x} (rip {rip:#x}, "
                                       f"error {error_code:#x})")
        signal = EXCEPTION_SIGNALS.get(vector, SIGSEGV)
        raise KillProcess(signal, f"CPU exception {vector} at rip {rip:#x}")

    def _resume_from_exception(self) -> None:
        self.regs.rsp = self._frame_va
        self.run_struct.kvm_dirty_regs = k.KVM_SYNC_X86_REGS


__all__ = ["GuestThread", "ExitProcess", "KillProcess"]
