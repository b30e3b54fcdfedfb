"""A thin typed layer over the KVM ioctls: one method per ioctl, no policy.

Errors surface as OSError from the ioctl. Everything that decides anything (memory
layout, CPU state, what an exit means) lives in kontain.machine and above.
"""

from __future__ import annotations

import ctypes
import fcntl
import os

from kontain.kvm import constants as k
from kontain.kvm import structs as s

_libc = ctypes.CDLL(None, use_errno=True)
_libc_mmap = _libc.mmap
_libc_mmap.restype = ctypes.c_void_p
_libc_mmap.argtypes = [ctypes.c_void_p, ctypes.c_size_t, ctypes.c_int, ctypes.c_int,
                       ctypes.c_int, ctypes.c_long]
_libc_munmap = _libc.munmap
_libc_munmap.argtypes = [ctypes.c_void_p, ctypes.c_size_t]

#: _IOW(KVMIO, 0xa0, struct kvm_vcpu_events) (64 bytes)
KVM_SET_VCPU_EVENTS = 0x4040AEA0


class Kvm:
    """The /dev/kvm system handle."""

    def __init__(self, path: str = "/dev/kvm") -> None:
        self.fd = os.open(path, os.O_RDWR | os.O_CLOEXEC)
        version = fcntl.ioctl(self.fd, k.KVM_GET_API_VERSION)
        if version != k.KVM_API_VERSION:
            raise OSError(f"unsupported KVM API version {version}")
        # What the host answers once, asked again by every VM (an exec, a fork's child):
        # KVM_GET_SUPPORTED_CPUID alone costs ~0.5 ms on PVM.
        self._vcpu_mmap_size = 0
        self._supported_cpuid: ctypes.Structure | None = None

    def check_extension(self, cap: int) -> int:
        return fcntl.ioctl(self.fd, k.KVM_CHECK_EXTENSION, cap)

    def vcpu_mmap_size(self) -> int:
        if not self._vcpu_mmap_size:
            self._vcpu_mmap_size = fcntl.ioctl(self.fd, k.KVM_GET_VCPU_MMAP_SIZE)
        return self._vcpu_mmap_size

    def supported_cpuid(self) -> ctypes.Structure:
        """KVM_GET_SUPPORTED_CPUID (a copy of the host's answer: the caller may adjust it)."""
        if self._supported_cpuid is None:
            self._supported_cpuid = self._ask_supported_cpuid()
        return type(self._supported_cpuid).from_buffer_copy(self._supported_cpuid)

    def _ask_supported_cpuid(self) -> ctypes.Structure:
        """KVM_GET_SUPPORTED_CPUID, growing the buffer until it fits."""
        n = 64
        while True:
            cpuid = s.cpuid2(n)
            try:
                fcntl.ioctl(self.fd, k.KVM_GET_SUPPORTED_CPUID, cpuid, True)
                return cpuid
            except OSError as e:
                if e.errno != 7 or n > 4096:  # E2BIG
                    raise
                n *= 2

    def create_vm(self) -> Vm:
        return Vm(self, fcntl.ioctl(self.fd, k.KVM_CREATE_VM, 0))

    def close(self) -> None:
        os.close(self.fd)

class Vm:
    """A KVM virtual machine file descriptor."""

    def __init__(self, kvm: Kvm, fd: int) -> None:
        self.kvm = kvm
        self.fd = fd
        self._run_size = kvm.vcpu_mmap_size()

    def set_user_memory_region(self, slot: int, guest_phys: int, size: int,
                               host_addr: int, flags: int = 0) -> None:
        region = s.UserspaceMemoryRegion(slot, flags, guest_phys, size, host_addr)
        fcntl.ioctl(self.fd, k.KVM_SET_USER_MEMORY_REGION, region)

    def set_tss_addr(self, addr: int) -> None:
        fcntl.ioctl(self.fd, k.KVM_SET_TSS_ADDR, addr)

    def create_vcpu(self, vcpu_id: int) -> Vcpu:
        fd = fcntl.ioctl(self.fd, k.KVM_CREATE_VCPU, vcpu_id)
        return Vcpu(fd, vcpu_id, self._run_size)

    def close(self) -> None:
        os.close(self.fd)

class Vcpu:
    """A vCPU file descriptor and its mmap'ed struct kvm_run."""

    def __init__(self, fd: int, vcpu_id: int, run_size: int) -> None:
        self.fd = fd
        self.id = vcpu_id
        self._run_size = run_size
        # libc mmap, not the mmap module: that one keeps a dup of fd open, at a low number.
        addr = _libc_mmap(None, run_size, 3, 1, fd, 0)  # PROT_READ|PROT_WRITE, MAP_SHARED
        if addr in (None, ctypes.c_void_p(-1).value):
            raise OSError(ctypes.get_errno(), "mmap of kvm_run failed")
        self._run_addr = addr
        self.run = s.Run.from_address(addr)

    def run_once(self) -> None:
        """KVM_RUN; raises OSError(EINTR) when a host signal interrupted it."""
        fcntl.ioctl(self.fd, k.KVM_RUN, 0)

    def enter_without_running(self) -> None:
        """KVM_RUN with immediate_exit set: the guest does not run, but KVM does what it
        does on entry. It completes an emulated access left pending by the last exit.
        And on the first entry from a thread it does its first-run work: since Linux
        6.13 that starts the VM's NX-huge-page recovery worker, a task charged to the
        calling process's pids cgroup and RLIMIT_NPROC. When a process limit leaves no
        room for it this raises OSError(EAGAIN) here, where the caller can fail a fork
        as Linux would, instead of later in the middle of the payload's run."""
        self.run.immediate_exit = 1
        try:
            fcntl.ioctl(self.fd, k.KVM_RUN, 0)
        except InterruptedError:
            pass  # what immediate_exit returns
        finally:
            self.run.immediate_exit = 0

    def get_regs(self) -> s.Regs:
        regs = s.Regs()
        fcntl.ioctl(self.fd, k.KVM_GET_REGS, regs, True)
        return regs

    def set_regs(self, regs: s.Regs) -> None:
        fcntl.ioctl(self.fd, k.KVM_SET_REGS, regs)

    def get_sregs(self) -> s.Sregs:
        sregs = s.Sregs()
        fcntl.ioctl(self.fd, k.KVM_GET_SREGS, sregs, True)
        return sregs

    def set_sregs(self, sregs: s.Sregs) -> None:
        fcntl.ioctl(self.fd, k.KVM_SET_SREGS, sregs)

    def set_cpuid2(self, cpuid: ctypes.Structure) -> None:
        fcntl.ioctl(self.fd, k.KVM_SET_CPUID2, cpuid)

    def set_msrs(self, entries: list[tuple[int, int]]) -> int:
        return fcntl.ioctl(self.fd, k.KVM_SET_MSRS, s.msrs(entries))

    def get_msrs(self, indices: list[int]) -> dict[int, int]:
        m = s.msrs([(i, 0) for i in indices])
        n = fcntl.ioctl(self.fd, k.KVM_GET_MSRS, m, True)
        return {m.entries[i].index: m.entries[i].data for i in range(n)}

    def get_xcrs(self) -> s.Xcrs:
        xcrs = s.Xcrs()
        fcntl.ioctl(self.fd, k.KVM_GET_XCRS, xcrs, True)
        return xcrs

    def set_xcrs(self, xcrs: s.Xcrs) -> None:
        fcntl.ioctl(self.fd, k.KVM_SET_XCRS, xcrs)

    def get_xsave(self) -> s.Xsave:
        xsave = s.Xsave()
        fcntl.ioctl(self.fd, k.KVM_GET_XSAVE, xsave, True)
        return xsave

    def set_xsave(self, xsave: s.Xsave) -> None:
        fcntl.ioctl(self.fd, k.KVM_SET_XSAVE, xsave)

    def get_debugregs(self) -> s.Debugregs:
        debugregs = s.Debugregs()
        fcntl.ioctl(self.fd, k.KVM_GET_DEBUGREGS, debugregs, True)
        return debugregs

    def set_debugregs(self, debugregs: s.Debugregs) -> None:
        fcntl.ioctl(self.fd, k.KVM_SET_DEBUGREGS, debugregs)

    def set_vcpu_events(self, events: s.VcpuEvents) -> None:
        fcntl.ioctl(self.fd, KVM_SET_VCPU_EVENTS, events)

    def get_fpu(self) -> s.Fpu:
        fpu = s.Fpu()
        fcntl.ioctl(self.fd, k.KVM_GET_FPU, fpu, True)
        return fpu

    def set_fpu(self, fpu: s.Fpu) -> None:
        fcntl.ioctl(self.fd, k.KVM_SET_FPU, fpu)

    def close(self) -> None:
        del self.run
        _libc_munmap(self._run_addr, self._run_size)
        os.close(self.fd)
