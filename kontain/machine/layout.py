"""Where things live in the guest: physical and virtual layout of a Kontain VM.

Guest physical memory is one compact range [0, mem_size) backed by one host mapping.
The bottom of it holds the few structures the CPU itself reads (GDT, IDT, per-vCPU TSS
and kernel stack pages, the ring-0 stub); page tables and payload memory are allocated
above them as the guest asks.

Virtual addresses: the payload owns the lower canonical half, as on Linux. The kernel
structures are mapped at KERNEL_BASE + their physical address, in the upper half:
supervisor-only, except the stub's page, which must be user-executable because on PVM
`syscall` enters it without leaving CPL 3 (docs/ARCHITECTURE.md, "The syscall path").
KERNEL_BASE is the last PML4 slot: PVM hosts only let guests use part of the upper
half, and 0xffff800000000000 (the first slot) is outside it on our machines.
"""

PAGE_SIZE = 4096
PAGE_SHIFT = 12
HUGE_PAGE_SIZE = 2 << 20

#: Kernel-half base: physical address p is mapped (supervisor only) at KERNEL_BASE + p.
KERNEL_BASE = 0xFFFF_FF80_0000_0000

#: Physical addresses of the fixed structures.
GDT_PA = 0x1000
GDT_PAGES = 5  # 8 fixed entries + one 16-byte TSS descriptor per vCPU (MAX_VCPUS)
IDT_PA = GDT_PA + GDT_PAGES * PAGE_SIZE
STUB_PA = IDT_PA + PAGE_SIZE
#: One page per vCPU: its TSS at the bottom, its ring-0 stack growing down from the top.
VCPU_PAGES_PA = STUB_PA + PAGE_SIZE
MAX_VCPUS = 1024
#: First physical address handed out by the allocator (page tables, payload memory).
DYNAMIC_PA = VCPU_PAGES_PA + MAX_VCPUS * PAGE_SIZE

#: The payload's half: [0, USER_END). Linux's TASK_SIZE for 47-bit user addresses.
USER_END = 0x7FFF_FFFF_F000
#: Lowest address mmap will pick by itself (Linux's mmap_min_addr is 64 KiB).
MMAP_MIN_ADDR = 0x10000
#: The initial thread's stack ends here; the top-down mmap area starts below its gap.
STACK_TOP = 0x7FFF_FFFF_E000
STACK_SIZE = 8 << 20
MMAP_TOP = STACK_TOP - STACK_SIZE - (128 << 20)
#: Where the host's vDSO (with its data pages, [vvar]) appears in the guest: in the gap
#: between the mmap area and the stack. Its guest physical address is above the RAM.
VDSO_VA = MMAP_TOP + (1 << 20)
VDSO_PA = 1 << 45
#: Where a PIE is loaded without randomisation (kontain.monitor.aslr adds the random
#: part); Linux's ELF_ET_DYN_BASE, 2/3 of TASK_SIZE.
PIE_BASE = 0x5555_5555_4000


def vcpu_page(vcpu_id: int) -> int:
    """Physical address of vCPU vcpu_id's TSS + ring-0 stack page."""
    return VCPU_PAGES_PA + vcpu_id * PAGE_SIZE


def kernel_va(pa: int) -> int:
    """The supervisor-only virtual address of a fixed kernel structure."""
    return KERNEL_BASE + pa
