/*
 * minivmm: the smallest VMM that does what km does for one system call, used as the
 * yardstick for km's per-syscall cost (benchmarks/run.py).
 *
 * It builds a 64-bit guest whose user code (CPL 3) runs a loop of
 *     mode "out":     out %al, $0xa0                    (one exit per iteration)
 *     mode "syscall": mov $110, %eax; syscall           (getppid, as km's payloads do)
 * and services each exit the way km does: for "syscall" the stub at LSTAR exits with
 * `out` and the VMM calls getppid() on the host and puts the result in rax. How the
 * payload resumes depends on what `syscall` did (probed once, on the first exit, as km
 * does): on PVM it stays at CPL 3, so the VMM resumes the payload at rcx with rflags
 * from r11; on hardware KVM it entered the stub at CPL 0, so the VMM writes an iret
 * frame (rcx, user cs, r11, rsp, user ss), points rsp at it and lets the stub's `iretq`
 * return to CPL 3 (docs/ARCHITECTURE.md, "The syscall path"). Prints nanoseconds per
 * iteration, of the run loop alone (VM set-up is not timed).
 *
 * usage: minivmm out|syscall ITERATIONS
 */
#include <fcntl.h>
#include <linux/kvm.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/ioctl.h>
#include <sys/mman.h>
#include <time.h>
#include <unistd.h>

#define MEM_SIZE (4 << 20)
#define PML4 0x1000
#define PDPT 0x2000
#define PD 0x3000
#define PT 0x4000
#define GDT 0x5000
#define TSS 0x6000
#define CODE 0x10000
#define STUB 0x11000
#define STACK_TOP 0x20000
#define FRAME 0x7000 /* the iret frame of a return through the stub */

static void die(const char *what) { perror(what); exit(1); }

static void seg(struct kvm_segment *s, uint16_t sel, int code, int dpl) {
	memset(s, 0, sizeof(*s));
	s->selector = sel;
	s->limit = 0xfffff;
	s->present = 1;
	s->s = 1;
	s->g = 1;
	s->dpl = dpl;
	s->type = code ? 0xb : 0x3;
	s->l = code;
	s->db = !code;
}

int main(int argc, char **argv) {
	if (argc != 3) {
		fprintf(stderr, "usage: %s out|syscall ITERATIONS\n", argv[0]);
		return 2;
	}
	int syscall_mode = strcmp(argv[1], "syscall") == 0;
	long iterations = atol(argv[2]);

	int kvm = open("/dev/kvm", O_RDWR | O_CLOEXEC);
	if (kvm < 0) die("/dev/kvm");
	int vm = ioctl(kvm, KVM_CREATE_VM, 0);
	if (vm < 0) die("KVM_CREATE_VM");
	uint8_t *mem = mmap(NULL, MEM_SIZE, PROT_READ | PROT_WRITE,
			    MAP_PRIVATE | MAP_ANONYMOUS | MAP_NORESERVE, -1, 0);
	if (mem == MAP_FAILED) die("mmap guest memory");
	struct kvm_userspace_memory_region region = {
		.slot = 0, .guest_phys_addr = 0, .memory_size = MEM_SIZE,
		.userspace_addr = (uint64_t)mem};
	if (ioctl(vm, KVM_SET_USER_MEMORY_REGION, &region) < 0) die("KVM_SET_USER_MEMORY_REGION");

	/* Identity-map the first 2 MiB with 4 KiB user pages. */
	uint64_t *pml4 = (void *)(mem + PML4), *pdpt = (void *)(mem + PDPT);
	uint64_t *pd = (void *)(mem + PD), *pt = (void *)(mem + PT);
	pml4[0] = PDPT | 7;
	pdpt[0] = PD | 7;
	pd[0] = PT | 7;
	for (int i = 1; i < 512; i++)
		pt[i] = (uint64_t)i << 12 | 7;

	/* GDT: null, kernel code 0x10, kernel data 0x18, user data 0x2b, user code 0x33. */
	uint64_t *gdt = (void *)(mem + GDT);
	gdt[2] = 0x00af9b000000ffff;
	gdt[3] = 0x00cf93000000ffff;
	gdt[5] = 0x00cff3000000ffff;
	gdt[6] = 0x00affb000000ffff;

	static const uint8_t out_loop[] = {0xe6, 0xa0, 0x48, 0xff, 0xcb, 0x75, 0xf9, 0xf4};
	static const uint8_t syscall_loop[] = {0xb8, 0x6e, 0, 0, 0, 0x0f, 0x05,
					       0x48, 0xff, 0xcb, 0x75, 0xf4, 0xf4};
	if (syscall_mode)
		memcpy(mem + CODE, syscall_loop, sizeof(syscall_loop));
	else
		memcpy(mem + CODE, out_loop, sizeof(out_loop));
	static const uint8_t stub[] = {0xe6, 0xa0, 0x48, 0xcf}; /* out %al,$0xa0; iretq */
	memcpy(mem + STUB, stub, sizeof(stub));

	int vcpu = ioctl(vm, KVM_CREATE_VCPU, 0);
	if (vcpu < 0) die("KVM_CREATE_VCPU");
	int run_size = ioctl(kvm, KVM_GET_VCPU_MMAP_SIZE, 0);
	if (run_size < 0) die("KVM_GET_VCPU_MMAP_SIZE");
	struct kvm_run *run = mmap(NULL, run_size, PROT_READ | PROT_WRITE, MAP_SHARED, vcpu, 0);
	if (run == MAP_FAILED) die("mmap kvm_run");

	struct {
		struct kvm_cpuid2 c;
		struct kvm_cpuid_entry2 e[256];
	} cpuid = {.c.nent = 256};
	if (ioctl(kvm, KVM_GET_SUPPORTED_CPUID, &cpuid) < 0) die("KVM_GET_SUPPORTED_CPUID");
	if (ioctl(vcpu, KVM_SET_CPUID2, &cpuid) < 0) die("KVM_SET_CPUID2");

	struct kvm_sregs sregs;
	ioctl(vcpu, KVM_GET_SREGS, &sregs);
	sregs.cr0 = 0x80050033;
	sregs.cr4 = 0x620; /* PAE, OSFXSR, OSXMMEXCPT */
	sregs.cr3 = PML4;
	sregs.efer = 0xd01; /* SCE, LME, LMA, NXE */
	sregs.gdt.base = GDT;
	sregs.gdt.limit = 7 * 8 - 1;
	seg(&sregs.cs, 0x33, 1, 3);
	seg(&sregs.ss, 0x2b, 0, 3);
	sregs.ds = sregs.es = sregs.fs = sregs.gs = sregs.ss;
	sregs.ldt.unusable = 1;
	memset(&sregs.tr, 0, sizeof(sregs.tr));
	sregs.tr.base = TSS;
	sregs.tr.limit = 0x67;
	sregs.tr.selector = 0x40;
	sregs.tr.type = 0xb;
	sregs.tr.present = 1;
	if (ioctl(vcpu, KVM_SET_SREGS, &sregs) < 0) die("KVM_SET_SREGS");

	struct {
		struct kvm_msrs m;
		struct kvm_msr_entry e[4];
	} msrs = {.m.nmsrs = 4,
		  .e = {{.index = 0xc0000081, .data = 0x0023001000000000ULL},
			{.index = 0xc0000082, .data = STUB},
			{.index = 0xc0000083, .data = STUB},
			{.index = 0xc0000084, .data = 0x47700}}};
	if (ioctl(vcpu, KVM_SET_MSRS, &msrs) != 4) die("KVM_SET_MSRS");

	struct kvm_regs regs = {.rip = CODE, .rsp = STACK_TOP, .rbx = iterations, .rflags = 0x3002};
	if (ioctl(vcpu, KVM_SET_REGS, &regs) < 0) die("KVM_SET_REGS");
	run->kvm_valid_regs = KVM_SYNC_X86_REGS;

	struct timespec t0, t1;
	long exits = 0;
	int ring0 = -1; /* did `syscall` enter CPL 0? -1: not probed yet */
	clock_gettime(CLOCK_MONOTONIC, &t0);
	for (;;) {
		if (ioctl(vcpu, KVM_RUN, 0) < 0) die("KVM_RUN");
		if (run->exit_reason != KVM_EXIT_IO || run->io.port != 0xa0)
			break;
		exits++;
		if (syscall_mode) {
			struct kvm_regs *r = &run->s.regs.regs;
			r->rax = getppid();
			if (ring0 < 0) {
				struct kvm_sregs now;
				if (ioctl(vcpu, KVM_GET_SREGS, &now) < 0) die("KVM_GET_SREGS");
				ring0 = now.cs.dpl == 0;
			}
			if (ring0) {
				uint64_t *frame = (void *)(mem + FRAME);
				frame[0] = r->rcx;
				frame[1] = 0x33;
				frame[2] = r->r11;
				frame[3] = r->rsp;
				frame[4] = 0x2b;
				r->rsp = FRAME;
			} else {
				r->rip = r->rcx;
				r->rflags = r->r11;
			}
			run->kvm_dirty_regs = KVM_SYNC_X86_REGS;
		}
	}
	clock_gettime(CLOCK_MONOTONIC, &t1);
	double ns = (t1.tv_sec - t0.tv_sec) * 1e9 + (t1.tv_nsec - t0.tv_nsec);
	if (exits != iterations) {
		ioctl(vcpu, KVM_GET_REGS, &regs);
		fprintf(stderr, "minivmm: %ld exits for %ld iterations (exit reason %u, rip %llx)\n",
			exits, iterations, run->exit_reason, (unsigned long long)regs.rip);
		return 1;
	}
	printf("%.1f\n", ns / iterations);
	return 0;
}
