"""The ctypes mirrors and ioctl numbers agree with the installed kernel headers."""

from __future__ import annotations

import ctypes
import os
import shutil
import subprocess

import pytest

from kontain.kvm import constants as k
from kontain.kvm import structs as s

PROGRAM = r"""
#include <stdio.h>
#include <stddef.h>
#include <linux/kvm.h>
#define P(name, value) printf("%s %lu\n", name, (unsigned long)(value));
int main(void) {
  P("KVM_GET_API_VERSION", KVM_GET_API_VERSION) P("KVM_CREATE_VM", KVM_CREATE_VM)
  P("KVM_CHECK_EXTENSION", KVM_CHECK_EXTENSION) P("KVM_GET_VCPU_MMAP_SIZE", KVM_GET_VCPU_MMAP_SIZE)
  P("KVM_GET_SUPPORTED_CPUID", KVM_GET_SUPPORTED_CPUID) P("KVM_CREATE_VCPU", KVM_CREATE_VCPU)
  P("KVM_SET_USER_MEMORY_REGION", KVM_SET_USER_MEMORY_REGION) P("KVM_RUN", KVM_RUN)
  P("KVM_GET_REGS", KVM_GET_REGS) P("KVM_SET_REGS", KVM_SET_REGS)
  P("KVM_GET_SREGS", KVM_GET_SREGS) P("KVM_SET_SREGS", KVM_SET_SREGS)
  P("KVM_GET_MSRS", KVM_GET_MSRS) P("KVM_SET_MSRS", KVM_SET_MSRS)
  P("KVM_SET_CPUID2", KVM_SET_CPUID2)
  P("KVM_GET_FPU", KVM_GET_FPU) P("KVM_SET_FPU", KVM_SET_FPU)
  P("KVM_GET_XSAVE", KVM_GET_XSAVE) P("KVM_SET_XSAVE", KVM_SET_XSAVE)
  P("KVM_GET_XCRS", KVM_GET_XCRS) P("KVM_SET_XCRS", KVM_SET_XCRS)
  P("KVM_GET_DEBUGREGS", KVM_GET_DEBUGREGS) P("KVM_SET_DEBUGREGS", KVM_SET_DEBUGREGS)
  P("sizeof debugregs", sizeof(struct kvm_debugregs))
  P("KVM_CAP_SYNC_REGS", KVM_CAP_SYNC_REGS) P("KVM_CAP_IMMEDIATE_EXIT", KVM_CAP_IMMEDIATE_EXIT)
  P("sizeof run", sizeof(struct kvm_run)) P("offsetof run.s", offsetof(struct kvm_run, s))
  P("offsetof run.kvm_valid_regs", offsetof(struct kvm_run, kvm_valid_regs))
  P("offsetof run.io", offsetof(struct kvm_run, io))
  P("sizeof regs", sizeof(struct kvm_regs)) P("sizeof sregs", sizeof(struct kvm_sregs))
  P("sizeof sync_regs", sizeof(struct kvm_sync_regs)) P("sizeof xcrs", sizeof(struct kvm_xcrs))
  P("sizeof fpu", sizeof(struct kvm_fpu)) P("sizeof segment", sizeof(struct kvm_segment))
  P("sizeof cpuid_entry2", sizeof(struct kvm_cpuid_entry2))
  P("sizeof memory_region", sizeof(struct kvm_userspace_memory_region))
  return 0;
}
"""


@pytest.fixture(scope="module")
def header_facts(tmp_path_factory: pytest.TempPathFactory) -> dict[str, int]:
    if shutil.which("gcc") is None:
        pytest.fail("gcc is needed to read the kernel headers")
    d = tmp_path_factory.mktemp("abi")
    (d / "abi.c").write_text(PROGRAM)
    subprocess.run(["gcc", "-o", str(d / "abi"), str(d / "abi.c")], check=True)
    out = subprocess.run([str(d / "abi")], check=True, capture_output=True, text=True).stdout
    return {line.rsplit(" ", 1)[0]: int(line.rsplit(" ", 1)[1]) for line in out.splitlines()}


def test_ioctl_numbers_match_the_headers(header_facts: dict[str, int]) -> None:
    for name, value in header_facts.items():
        if name.startswith("KVM_"):
            assert getattr(k, name) == value, name


def test_structure_layouts_match_the_headers(header_facts: dict[str, int]) -> None:
    assert ctypes.sizeof(s.Run) == header_facts["sizeof run"]
    assert s.Run.s.offset == header_facts["offsetof run.s"]
    assert s.Run.kvm_valid_regs.offset == header_facts["offsetof run.kvm_valid_regs"]
    assert s.Run.exit.offset == header_facts["offsetof run.io"]
    assert ctypes.sizeof(s.Regs) == header_facts["sizeof regs"]
    assert ctypes.sizeof(s.Sregs) == header_facts["sizeof sregs"]
    assert ctypes.sizeof(s.SyncRegs) == header_facts["sizeof sync_regs"]
    assert ctypes.sizeof(s.Xcrs) == header_facts["sizeof xcrs"]
    assert ctypes.sizeof(s.Fpu) == header_facts["sizeof fpu"]
    assert ctypes.sizeof(s.Debugregs) == header_facts["sizeof debugregs"]
    assert ctypes.sizeof(s.Segment) == header_facts["sizeof segment"]
    assert ctypes.sizeof(s.CpuidEntry2) == header_facts["sizeof cpuid_entry2"]
    assert ctypes.sizeof(s.UserspaceMemoryRegion) == header_facts["sizeof memory_region"]


@pytest.mark.skipif(not os.access("/dev/kvm", os.R_OK | os.W_OK), reason="needs /dev/kvm")
def test_the_host_cpuid_is_asked_once_and_each_vm_gets_its_own_copy():
    from kontain.kvm.api import Kvm

    kvm = Kvm()
    try:
        first = kvm.supported_cpuid()
        asked = kvm._supported_cpuid
        first.entries[0].eax ^= 0xFFFF  # a VM adjusts its copy (cpu.guest_cpuid)
        second = kvm.supported_cpuid()
        assert kvm._supported_cpuid is asked
        assert second.entries[0].eax == first.entries[0].eax ^ 0xFFFF
        assert second.nent == first.nent > 0
        assert kvm.vcpu_mmap_size() == kvm.vcpu_mmap_size() >= 4096
    finally:
        kvm.close()
