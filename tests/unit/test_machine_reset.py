"""Machine.reset (an execve keeps the VM): on a real KVM VM, what a reset vCPU and the
reset memory hold, which vCPUs create_vcpu hands out again, and the ABI km uses for it."""

from __future__ import annotations

import ctypes
import mmap
import os
import shutil
import subprocess

import pytest

from kontain.kvm import api
from kontain.kvm import structs as s
from kontain.machine import cpu
from kontain.machine.layout import DYNAMIC_PA, GDT_PA, PAGE_SIZE, STUB_PA, kernel_va, vcpu_page

needs_kvm = pytest.mark.skipif(not os.access("/dev/kvm", os.R_OK | os.W_OK),
                               reason="needs /dev/kvm")

ABI_PROGRAM = r"""
#include <stdio.h>
#include <stddef.h>
#include <linux/kvm.h>
int main(void) {
  printf("%lu %lu %lu %d %d\n", (unsigned long)KVM_SET_VCPU_EVENTS,
         sizeof(struct kvm_vcpu_events), offsetof(struct kvm_vcpu_events, flags),
         KVM_VCPUEVENT_VALID_NMI_PENDING, KVM_VCPUEVENT_VALID_SHADOW);
  return 0;
}
"""


def test_vcpu_events_abi_matches_the_headers(tmp_path):
    if shutil.which("gcc") is None:
        pytest.fail("gcc is needed to read the kernel headers")
    (tmp_path / "abi.c").write_text(ABI_PROGRAM)
    subprocess.run(["gcc", "-o", str(tmp_path / "abi"), str(tmp_path / "abi.c")], check=True)
    out = subprocess.run([str(tmp_path / "abi")], check=True, capture_output=True,
                         text=True).stdout.split()
    assert int(out[0]) == api.KVM_SET_VCPU_EVENTS
    assert int(out[1]) == ctypes.sizeof(s.VcpuEvents)
    assert int(out[2]) == cpu.EVENTS_FLAGS_OFFSET
    assert int(out[3]) == cpu.KVM_VCPUEVENT_VALID_NMI_PENDING
    assert int(out[4]) == cpu.KVM_VCPUEVENT_VALID_SHADOW


@pytest.fixture
def machine():
    from kontain.machine.vm import Machine
    m = Machine(1 << 30)
    yield m
    m.close()


def _dirty(vcpu: api.Vcpu) -> None:
    """Leave in a vCPU what a program could: registers, FS/GS bases, x87/SSE state."""
    vcpu.set_regs(s.Regs(rax=5, rbx=6, r15=7, rip=0x401000, rsp=0x7000, rflags=0x3202))
    vcpu.set_msrs([(cpu.MSR_FS_BASE, 0x1234000), (cpu.MSR_GS_BASE, 0x5678000)])
    xsave = vcpu.get_xsave()
    xsave.region[0] = 0x0C7F  # FCW
    xsave.region[6] = 0xFFC0  # MXCSR
    for i in range(40, 104):  # XMM0-15
        xsave.region[i] = 0xA5A5A5A5
    xsave.region[128] |= 3  # XSTATE_BV: x87, SSE
    vcpu.set_xsave(xsave)
    vcpu.set_debugregs(s.Debugregs(db=(s.u64 * 4)(0x401000, 0, 0, 0), dr6=0xFFFF0FF0,
                                   dr7=0x401))


def _assert_new(machine, vcpu: api.Vcpu) -> None:
    regs = vcpu.get_regs()
    assert [getattr(regs, name) for name, _ in s.Regs._fields_ if name != "rflags"] == \
        [0] * 17
    assert regs.rflags == cpu.USER_RFLAGS
    sregs = vcpu.get_sregs()
    assert sregs.cr3 == machine.page_tables.root
    assert sregs.fs.base == sregs.gs.base == 0
    assert sregs.tr.base == kernel_va(vcpu_page(vcpu.id))
    assert vcpu.get_msrs([cpu.MSR_FS_BASE, cpu.MSR_GS_BASE, cpu.MSR_TSC_AUX]) == {
        cpu.MSR_FS_BASE: 0, cpu.MSR_GS_BASE: 0, cpu.MSR_TSC_AUX: vcpu.id}
    xsave = vcpu.get_xsave()
    assert xsave.region[0] & 0xFFFF == cpu.FCW_INIT
    assert xsave.region[6] == cpu.MXCSR_INIT
    assert list(xsave.region[40:104]) == [0] * 64
    debug = vcpu.get_debugregs()
    assert list(debug.db) == [0] * 4
    assert debug.dr7 == cpu.DR7_INIT


@needs_kvm
def test_a_reset_vcpu_is_in_a_new_vcpus_state(machine):
    vcpu = machine.create_vcpu(0)
    old_root = machine.page_tables.root
    _dirty(vcpu)
    machine.reset([vcpu], vcpu)
    again = machine.create_vcpu(0)
    assert again is vcpu  # no KVM_CREATE_VCPU: the same vCPU, reset
    _assert_new(machine, vcpu)
    assert machine.page_tables.root == old_root  # the same page, in new page tables


@needs_kvm
def test_every_vcpu_is_handed_out_again_by_its_id(machine):
    """KVM cannot destroy a vCPU: after a reset, asking for ids 0 and 1 gives back the
    old ones (whichever thread called execve), a higher id makes a new one."""
    vcpus = [machine.create_vcpu(i) for i in range(2)]
    for vcpu in vcpus:
        _dirty(vcpu)
    machine.reset(vcpus, vcpus[1])
    assert machine.create_vcpu(0) is vcpus[0]
    assert machine.create_vcpu(1) is vcpus[1]
    new = machine.create_vcpu(2)
    assert new not in vcpus
    for vcpu in vcpus:
        _assert_new(machine, vcpu)
    for vcpu in (*vcpus, new):
        vcpu.close()


@needs_kvm
def test_reset_memory_is_zero_and_all_free_and_kernel_structures_stay(machine):
    phys = machine.phys
    full = phys.free_bytes()
    pa = phys.allocate(4 * PAGE_SIZE)
    phys.view[pa:pa + 4] = b"old!"
    # A shared file mapping placed over guest memory goes back to private zero pages.
    fd = os.memfd_create("t")
    os.write(fd, b"file" * 1024)
    shared = phys.allocate(PAGE_SIZE)
    from kontain.machine import hostmem
    hostmem.mmap_fixed(phys.host_address(shared), PAGE_SIZE, 3, mmap.MAP_SHARED, fd)
    os.close(fd)
    gdt_before = bytes(phys.view[GDT_PA:STUB_PA + PAGE_SIZE])
    machine.reset([], None)
    assert phys.free_bytes() == full
    assert bytes(phys.view[pa:pa + 4]) == bytes(4)
    assert bytes(phys.view[shared:shared + 4]) == bytes(4)
    phys.view[shared:shared + 4] = b"priv"  # writable, private again
    assert bytes(phys.view[GDT_PA:STUB_PA + PAGE_SIZE]) == gdt_before
    pt = machine.page_tables
    assert pt.translate(kernel_va(GDT_PA))[0] == GDT_PA
    assert pt.translate(kernel_va(STUB_PA))[0] == STUB_PA
    assert pt.root >= DYNAMIC_PA


@needs_kvm
def test_the_same_foreign_range_is_registered_once(machine):
    page = mmap.mmap(-1, PAGE_SIZE)
    address = ctypes.addressof(ctypes.c_char.from_buffer(page))
    machine.phys.map_foreign(1 << 45, address, PAGE_SIZE)
    machine.reset([], None)
    machine.phys.map_foreign(1 << 45, address, PAGE_SIZE)  # KVM would say EEXIST
    assert len(machine.phys.foreign) == 1
