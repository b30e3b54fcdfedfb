/* What an execve resets, and execve many times in a row.
 *
 *   exec_reset state          set CPU state a program cannot pass on (x87 control and tag
 *                             words, MXCSR, XMM/YMM/opmask registers, the GS base), write
 *                             a page, then execve itself as "after VDSO PAGE".
 *   exec_reset after V P      what the new program finds: all of it reset; neither the
 *                             old vDSO address V nor the old page P readable; a page
 *                             mapped anew at V reads as zeros.
 *   exec_reset chain N MARK   execve itself N times; when N reaches MARK and 0, print a
 *                             line and wait for a byte on stdin (the test looks at the
 *                             process then).
 *   exec_reset threads N      beside three busy threads (spinning, sleeping, blocked in
 *                             read), a fourth thread execs "threads N-1"; at 0, start
 *                             and join four threads.
 */
#define _GNU_SOURCE
#include <pthread.h>
#include <setjmp.h>
#include <signal.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/auxv.h>
#include <sys/mman.h>
#include <sys/syscall.h>
#include <unistd.h>

#include "payload.h"

#define ARCH_SET_GS 0x1001
#define ARCH_GET_GS 0x1004
#define PAGE_ADDRESS 0x31000000UL

static sigjmp_buf probe_jump;

static void on_fault(int sig)
{
    siglongjmp(probe_jump, sig);
}

/* Whether reading address faults (the signal's name) or what it reads. */
static const char *probe(uintptr_t address)
{
    static char buf[64];
    int sig = sigsetjmp(probe_jump, 1);
    if (sig)
        return sig == SIGSEGV ? "SIGSEGV" : "another signal";
    unsigned char byte = *(volatile unsigned char *)address;
    snprintf(buf, sizeof buf, "readable (first byte %#x)", byte);
    return buf;
}

static int has_avx512(void)
{
    __builtin_cpu_init();
    return __builtin_cpu_supports("avx512f");
}

static void set_state_and_exec(const char *self, char *const argv[])
{
    static uint8_t pattern[32] __attribute__((aligned(32)));
    memset(pattern, 0xA5, sizeof pattern);
    uint16_t fcw = 0x0C7F;          /* round toward zero, 64-bit precision: not 0x37F */
    uint32_t mxcsr = 0x7F80 | 0x8040; /* round toward zero, FTZ and DAZ: not 0x1F80 */
    if (has_avx512()) {
        uint64_t mask = 0x5A5A5A5A5A5A5A5AULL;
        __asm__ volatile("kmovq %0, %%k1" : : "m"(mask));  /* (k1 is no register the compiler uses here) */
    }
    syscall(SYS_arch_prctl, ARCH_SET_GS, 0x12345000UL);
    /* Everything set in the one asm statement that makes the system call, so that no
     * library code runs between and changes it. */
    long ret;
    __asm__ volatile(
        "vmovdqu (%[p]), %%ymm8\n\t"
        "vmovdqu (%[p]), %%ymm9\n\t"
        "vmovdqu (%[p]), %%ymm12\n\t"
        "vmovdqu (%[p]), %%ymm15\n\t"
        "fldcw %[fcw]\n\t"
        "fld1\n\t"
        "fldpi\n\t"
        "ldmxcsr %[mxcsr]\n\t"
        "syscall\n\t"
        : "=a"(ret)
        : "a"((long)SYS_execve), "D"(self), "S"(argv), "d"(environ), [p] "r"(pattern),
          [fcw] "m"(fcw), [mxcsr] "m"(mxcsr)
        : "rcx", "r11", "memory", "xmm8", "xmm9", "xmm12", "xmm15", "st", "st(1)");
    printf("FATAL: execve returned %ld\n", ret);
    exit(1);
}

static void after(uintptr_t old_vdso, uintptr_t old_page)
{
    uint16_t fcw;
    uint32_t mxcsr;
    struct { uint16_t cw, pad0, sw, pad1, tw, pad2; uint32_t rest[4]; } env;
    __asm__ volatile("fnstcw %0" : "=m"(fcw));
    __asm__ volatile("stmxcsr %0" : "=m"(mxcsr));
    __asm__ volatile("fnstenv %0\n\tfldenv %0" : "=m"(env));
    printf("x87 control word: %#x, tag word: %#x\n", fcw, env.tw);
    printf("MXCSR: %#x\n", mxcsr);
    uint8_t regs[4][32];
    __asm__ volatile("vmovdqu %%ymm8, 0(%0)\n\tvmovdqu %%ymm9, 32(%0)\n\t"
                     "vmovdqu %%ymm12, 64(%0)\n\tvmovdqu %%ymm15, 96(%0)"
                     : : "r"(regs) : "memory");
    int nonzero = 0;
    for (size_t i = 0; i < sizeof regs; i++)
        nonzero |= ((uint8_t *)regs)[i] == 0xA5;
    printf("the old program's YMM values: %s\n", nonzero ? "still there" : "gone");
    if (has_avx512()) {
        uint64_t mask;
        __asm__ volatile("kmovq %%k1, %0" : "=m"(mask));
        printf("opmask k1 kept: %s\n", mask == 0x5A5A5A5A5A5A5A5AULL ? "yes" : "no");
    }
    unsigned long gs = 1;
    syscall(SYS_arch_prctl, ARCH_GET_GS, &gs);
    printf("GS base: %#lx\n", gs);

    struct sigaction sa = {.sa_handler = on_fault};
    sigaction(SIGSEGV, &sa, NULL);
    sigaction(SIGBUS, &sa, NULL);
    printf("the old program's page: %s\n", probe(old_page));
    printf("the old program's vDSO address: %s\n", probe(old_vdso));
    void *p = mmap((void *)old_vdso, 4 * 4096, PROT_READ | PROT_WRITE,
                   MAP_PRIVATE | MAP_ANONYMOUS | MAP_FIXED, -1, 0);
    if (p == MAP_FAILED) {
        printf("FATAL: mmap at the old vDSO address: %s\n", errno_name(errno));
        exit(1);
    }
    int zeros = 1;
    for (int i = 0; i < 4 * 4096; i++)
        zeros &= ((volatile uint8_t *)p)[i] == 0;
    printf("a new mapping there reads as zeros: %s\n", zeros ? "yes" : "no");
}

static void chain(const char *self, long n, long mark)
{
    if (n == mark || n == 0) {
        printf("at %ld\n", n);
        fflush(stdout);
        char byte;
        if (read(0, &byte, 1) != 1) {
            printf("FATAL: no go-ahead on stdin\n");
            exit(1);
        }
    }
    if (n == 0) {
        printf("chain done\n");
        return;
    }
    char count[32], at[32];
    snprintf(count, sizeof count, "%ld", n - 1);
    snprintf(at, sizeof at, "%ld", mark);
    execl(self, "exec_reset", "chain", count, at, (char *)NULL);
    printf("FATAL: execl: %s\n", errno_name(errno));
    exit(1);
}

static int block_pipe[2];
static volatile long spin_count;

static void *spinner(void *arg)
{
    (void)arg;
    for (;;)
        spin_count++;
    return NULL;
}

static void *sleeper(void *arg)
{
    (void)arg;
    for (;;)
        usleep(1000);
    return NULL;
}

static void *reader(void *arg)
{
    (void)arg;
    char byte;
    read(block_pipe[0], &byte, 1);
    printf("FATAL: the reader read\n");
    return NULL;
}

static char exec_count[32], exec_pid[32];

static void *execer(void *arg)
{
    (void)arg;
    execl("/proc/self/exe", "exec_reset", "threads", exec_count, exec_pid, (char *)NULL);
    printf("FATAL: execl from a thread: %s\n", errno_name(errno));
    exit(1);
}

static void *worker(void *arg)
{
    long n = (long)arg, sum = 0;
    for (long i = 0; i <= 1000 * n; i++)
        sum += i;
    return (void *)sum;
}

static void threads(long n, long pid)
{
    if (pid && pid != getpid())
        printf("FATAL: the pid changed at exec\n");
    if (n == 0) {
        pthread_t t[4];
        long sum = 0;
        for (long i = 0; i < 4; i++)
            pthread_create(&t[i], NULL, worker, (void *)(i + 1));
        for (int i = 0; i < 4; i++) {
            void *r;
            pthread_join(t[i], &r);
            sum += (long)r;
        }
        printf("after the execs from threads: 4 threads joined, sum %ld\n", sum);
        return;
    }
    printf("generation %ld\n", n);
    pipe(block_pipe);
    pthread_t t;
    pthread_create(&t, NULL, spinner, NULL);
    pthread_create(&t, NULL, sleeper, NULL);
    pthread_create(&t, NULL, reader, NULL);
    snprintf(exec_count, sizeof exec_count, "%ld", n - 1);
    snprintf(exec_pid, sizeof exec_pid, "%ld", (long)getpid());
    pthread_create(&t, NULL, execer, NULL);
    for (;;)
        pause();
}

int main(int argc, char **argv)
{
    setvbuf(stdout, NULL, _IONBF, 0);
    if (argc >= 2 && !strcmp(argv[1], "state")) {
        uint8_t *page = mmap((void *)PAGE_ADDRESS, 4096, PROT_READ | PROT_WRITE,
                             MAP_PRIVATE | MAP_ANONYMOUS | MAP_FIXED, -1, 0);
        if (page == MAP_FAILED) {
            printf("FATAL: mmap: %s\n", errno_name(errno));
            return 1;
        }
        memset(page, 0x5A, 4096);
        char vdso[32], old_page[32];
        snprintf(vdso, sizeof vdso, "%#lx", getauxval(AT_SYSINFO_EHDR));
        snprintf(old_page, sizeof old_page, "%#lx", PAGE_ADDRESS);
        char *args[] = {"exec_reset", "after", vdso, old_page, NULL};
        set_state_and_exec("/proc/self/exe", args);
    }
    if (argc >= 4 && !strcmp(argv[1], "after")) {
        after(strtoul(argv[2], NULL, 0), strtoul(argv[3], NULL, 0));
        return 0;
    }
    if (argc >= 4 && !strcmp(argv[1], "chain")) {
        chain("/proc/self/exe", atol(argv[2]), atol(argv[3]));
        return 0;
    }
    if (argc >= 3 && !strcmp(argv[1], "threads")) {
        threads(atol(argv[2]), argc >= 4 ? atol(argv[3]) : 0);
        return 0;
    }
    printf("FATAL: usage: exec_reset state | after V P | chain N MARK | threads N\n");
    return 1;
}
