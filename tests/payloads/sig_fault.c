/* CPU exceptions as signals: sig_fault MODE. SIGSEGV (si_addr, SEGV_MAPERR/ACCERR),
 * SIGBUS, SIGFPE, SIGILL, SIGTRAP, recovered with siglongjmp or by editing the saved RIP;
 * stack overflow on an alternate stack; faults that must kill. Output is one write(2)
 * per line and only deterministic (addresses are compared, never printed).
 *
 * modes: segv segv_context traps bus double_fault altstack overflow_noalt
 *        die_fpe die_ill die_trap die_segv_ignored die_segv_blocked die_thread */
#define _GNU_SOURCE
#include <pthread.h>
#include <setjmp.h>
#include <sys/mman.h>
#include <ucontext.h>

#pragma GCC diagnostic ignored "-Warray-bounds"
#pragma GCC diagnostic ignored "-Winfinite-recursion"

#include <signal.h>
#include <stdarg.h>
#include <stdint.h>
#include <sys/syscall.h>
#include <time.h>
#include <unistd.h>

#include "sig_common.h"


/* ================================================================ recoverable faults */

static sigjmp_buf jb;
static volatile int caught_sig, caught_code, caught_trapno_ok;
static void *volatile caught_addr;
static volatile greg_t caught_rip, caught_err, caught_trapno;
static volatile int handler_mask_has_sig;

static void fault_handler(int sig, siginfo_t *si, void *ucv)
{
    ucontext_t *uc = ucv;
    caught_sig = sig;
    caught_code = si->si_code;
    caught_addr = si->si_addr;
    caught_rip = uc->uc_mcontext.gregs[REG_RIP];
    caught_err = uc->uc_mcontext.gregs[REG_ERR];
    caught_trapno = uc->uc_mcontext.gregs[REG_TRAPNO];
    handler_mask_has_sig = is_blocked(sig);
    siglongjmp(jb, 1);
}

/* run fn(arg); report the signal it raised */
static void expect_fault(const char *what, void (*fn)(void *), void *arg, void *want_addr)
{
    caught_sig = 0;
    if (sigsetjmp(jb, 1) == 0) {
        fn(arg);
        say("%s: no signal (wrong)\n", what);
        return;
    }
    say("%s: %s %s, si_addr is the address used %s, signal unblocked after siglongjmp %s\n",
        what, sig_name(caught_sig), code_name(caught_sig, caught_code),
        yes_no(caught_addr == want_addr), yes_no(!is_blocked(caught_sig)));
}

static void do_read(void *p) { (void)*(volatile char *)p; }
static void do_write(void *p) { *(volatile char *)p = 1; }
static void do_exec(void *p) { ((void (*)(void))p)(); }

static long page;

static int mode_segv(void)
{
    install(SIGSEGV, fault_handler, 0);
    install(SIGBUS, fault_handler, 0);
    page = sysconf(_SC_PAGESIZE);

    char *gone = mmap(NULL, 2 * page, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS,
                      -1, 0);
    munmap(gone, 2 * page);
    expect_fault("read of an unmapped page", do_read, gone + 123, gone + 123);
    expect_fault("write to an unmapped page", do_write, gone + page + 7, gone + page + 7);
    expect_fault("read of address 0", do_read, NULL, NULL);

    char *ro = mmap(NULL, page, PROT_READ, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
    expect_fault("write to a PROT_READ page", do_write, ro + 99, ro + 99);
    do_read(ro + 5);
    say("reading it is fine\n");
    char *none = mmap(NULL, page, PROT_NONE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
    expect_fault("read of a PROT_NONE page", do_read, none + 1, none + 1);
    mprotect(ro, page, PROT_READ | PROT_WRITE);
    do_write(ro + 99);
    say("after mprotect(PROT_READ|PROT_WRITE) the write works: %d\n", ro[99]);
    mprotect(ro, page, PROT_NONE);
    expect_fault("read after mprotect(PROT_NONE)", do_read, ro + 3, ro + 3);

    expect_fault("write to the program's text", do_write, (void *)&mode_segv,
                 (void *)&mode_segv);
    static const char rodata[] = "constant";
    expect_fault("write to .rodata", do_write, (void *)rodata, (void *)rodata);

    char *rw = mmap(NULL, page, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
    rw[0] = (char)0xc3; /* ret */
    expect_fault("call into a PROT_READ|PROT_WRITE page", do_exec, rw, rw);

    /* a non-canonical address: #GP, which Linux reports as SI_KERNEL with si_addr 0 */
    expect_fault("read of a non-canonical address", do_read, (void *)0x8000000000000000UL,
                 NULL);

    install(SIGSEGV, fault_handler, SA_NODEFER);
    expect_fault("SA_NODEFER handler, NULL write", do_write, (void *)8, (void *)8);
    say("SIGSEGV blocked inside the SA_NODEFER handler: %s\n", yes_no(handler_mask_has_sig));
    install(SIGSEGV, fault_handler, 0);
    expect_fault("again without SA_NODEFER", do_write, (void *)8, (void *)8);
    say("SIGSEGV blocked inside the handler: %s\n", yes_no(handler_mask_has_sig));
    return 0;
}

/* the page-fault details Linux puts in the ucontext: trap number 14 and the error code */
static int mode_segv_context(void)
{
    install(SIGSEGV, fault_handler, 0);
    page = sysconf(_SC_PAGESIZE);
    char *gone = mmap(NULL, page, PROT_READ, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
    char *ro = mmap(NULL, page, PROT_READ, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
    do_read(ro);
    munmap(gone, page);
    struct { const char *what; void (*fn)(void *); void *p; } cases[] = {
        {"read, not present", do_read, gone},
        {"write, not present", do_write, gone},
        {"write, present read-only", do_write, ro},
    };
    for (int i = 0; i < 3; i++) {
        expect_fault(cases[i].what, cases[i].fn, cases[i].p, cases[i].p);
        say("  trapno %ld, error code %#lx\n", (long)caught_trapno, (long)caught_err);
    }
    return 0;
}

/* ================================================================ SIGFPE, SIGILL, SIGTRAP */

static volatile int resumed;

/* the handler edits the saved RIP to step over the faulting instruction and returns */
static void skip_handler(int sig, siginfo_t *si, void *ucv)
{
    ucontext_t *uc = ucv;
    unsigned char *rip = (unsigned char *)uc->uc_mcontext.gregs[REG_RIP];
    caught_sig = sig;
    caught_code = si->si_code;
    caught_addr = si->si_addr;
    caught_rip = (greg_t)rip;
    caught_trapno = uc->uc_mcontext.gregs[REG_TRAPNO];
    if (si->si_code <= 0) /* sent, not a fault: nothing to skip */
        return;
    if (sig == SIGILL && rip[0] == 0x0f && rip[1] == 0x0b)
        uc->uc_mcontext.gregs[REG_RIP] += 2; /* ud2 */
    else if (sig == SIGFPE)
        uc->uc_mcontext.gregs[REG_RIP] += 3; /* idiv %rcx: 48 f7 f9 */
    /* SIGTRAP from int3: RIP already points after the int3 */
}

extern char ud2_at[], idiv_at[], int3_at[], int3_after[];

static int mode_traps(void)
{
    install(SIGFPE, skip_handler, 0);
    install(SIGILL, skip_handler, 0);
    install(SIGTRAP, skip_handler, 0);

    /* integer division by zero: #DE */
    long q = 0;
    __asm__ volatile("mov $100, %%rax\n cqo\n xor %%ecx, %%ecx\n"
                     ".globl idiv_at\n idiv_at: idiv %%rcx\n mov $42, %0\n"
                     : "=r"(q) : : "rax", "rdx", "rcx");
    say("idiv by zero: %s %s, si_addr is the idiv %s, RIP was the idiv %s, trapno %ld, "
        "resumed after it with %ld\n", sig_name(caught_sig), code_name(caught_sig, caught_code),
        yes_no(caught_addr == (void *)idiv_at), yes_no(caught_rip == (greg_t)idiv_at),
        (long)caught_trapno, q);

    /* LONG_MIN / -1 overflows: #DE too, also FPE_INTDIV on Linux */
    caught_sig = 0;
    __asm__ volatile("mov $0x8000000000000000, %%rax\n cqo\n mov $-1, %%rcx\n"
                     "idiv %%rcx\n mov $43, %0\n"
                     : "=r"(q) : : "rax", "rdx", "rcx");
    say("LONG_MIN / -1: %s %s, resumed with %ld\n", sig_name(caught_sig),
        code_name(caught_sig, caught_code), q);

    /* and the C way, with siglongjmp out of a SIGFPE handler */
    install(SIGFPE, fault_handler, 0);
    volatile int zero = 0, num = 7;
    if (sigsetjmp(jb, 1) == 0) {
        volatile int r = num / zero;
        (void)r;
        say("C division by zero: no signal (wrong)\n");
    } else {
        say("C division by zero: %s %s, si_addr == RIP %s\n", sig_name(caught_sig),
            code_name(caught_sig, caught_code), yes_no(caught_addr == (void *)caught_rip));
    }

    /* ud2 */
    caught_sig = 0;
    __asm__ volatile(".globl ud2_at\n ud2_at: ud2\n");
    say("ud2: %s %s, si_addr is the ud2 %s, trapno %ld, resumed after it\n",
        sig_name(caught_sig), code_name(caught_sig, caught_code),
        yes_no(caught_addr == (void *)ud2_at), (long)caught_trapno);

    /* __builtin_trap() with siglongjmp */
    install(SIGILL, fault_handler, 0);
    if (sigsetjmp(jb, 1) == 0) {
        __builtin_trap();
    } else {
        say("__builtin_trap: %s %s, si_addr == RIP %s\n", sig_name(caught_sig),
            code_name(caught_sig, caught_code), yes_no(caught_addr == (void *)caught_rip));
    }

    /* int3: a trap, RIP after the instruction, SI_KERNEL */
    caught_sig = 0;
    __asm__ volatile(".globl int3_at\n int3_at: int3\n .globl int3_after\n int3_after: nop\n");
    say("int3: %s %s, RIP after the int3 %s, trapno %ld\n", sig_name(caught_sig),
        code_name(caught_sig, caught_code), yes_no(caught_rip == (greg_t)int3_after),
        (long)caught_trapno);

    /* a privileged instruction: hlt at CPL 3 is #GP, SIGSEGV SI_KERNEL */
    install(SIGSEGV, fault_handler, 0);
    if (sigsetjmp(jb, 1) == 0) {
        __asm__ volatile("hlt");
        say("hlt: no signal (wrong)\n");
    } else {
        say("hlt: %s %s, si_addr %s\n", sig_name(caught_sig), code_name(caught_sig, caught_code),
            caught_addr ? "non-zero" : "0");
    }
    /* raise(SIGFPE): a software signal, not a fault */
    install(SIGFPE, skip_handler, 0);
    caught_sig = 0;
    raise(SIGFPE);
    say("raise(SIGFPE): %s %s\n", sig_name(caught_sig), code_name(caught_sig, caught_code));
    return 0;
}

/* unhandled faults kill with the matching signal */
static int mode_die(const char *how)
{
    say("about to %s\n", how);
    if (!strcmp(how, "fpe")) {
        volatile int z = 0, n = 7;
        return n / z;
    }
    if (!strcmp(how, "ill"))
        __builtin_trap();
    if (!strcmp(how, "trap"))
        __asm__ volatile("int3");
    if (!strcmp(how, "segv_ignored")) {
        signal(SIGSEGV, SIG_IGN); /* a fault is forced through anyway */
        *(volatile int *)16 = 1;
    }
    if (!strcmp(how, "segv_blocked")) {
        block(SIGSEGV, SIG_BLOCK); /* a fault while blocked kills too */
        *(volatile int *)16 = 1;
    }
    say("survived (wrong)\n");
    return 0;
}

static void *faulting_thread(void *arg)
{
    (void)arg;
    say("a thread dereferences a bad pointer\n");
    *(volatile int *)40 = 1;
    return NULL;
}

/* an unhandled fault in a non-main thread kills the whole process */
static int mode_die_thread(void)
{
    pthread_t t;
    pthread_create(&t, NULL, faulting_thread, NULL);
    pthread_join(t, NULL);
    say("survived (wrong)\n");
    return 0;
}

/* ================================================================ fault in the handler */

static void faulting_handler(int sig, siginfo_t *si, void *uc)
{
    (void)uc;
    say("in the SIGSEGV handler (si_addr %s), SIGSEGV blocked %s; faulting again\n",
        si->si_addr == (void *)24 ? "24" : "?", yes_no(is_blocked(sig)));
    *(volatile int *)32 = 1;
    say("handler survived its own fault (wrong)\n");
}

static int mode_double_fault(void)
{
    install(SIGSEGV, faulting_handler, 0);
    *(volatile int *)24 = 1;
    say("main survived (wrong)\n");
    return 0;
}

/* ================================================================ SIGBUS */

static int mode_bus(void)
{
    install(SIGBUS, fault_handler, 0);
    page = sysconf(_SC_PAGESIZE);
    FILE *f = tmpfile();
    ftruncate(fileno(f), page);
    char *m = mmap(NULL, 3 * page, PROT_READ | PROT_WRITE, MAP_SHARED, fileno(f), 0);
    m[10] = 1;
    say("write within the file: fine\n");
    expect_fault("read of a mapped page past the end of the file", do_read, m + page + 8,
                 m + page + 8);
    expect_fault("write past the end of the file", do_write, m + 2 * page + 1, m + 2 * page + 1);
    ftruncate(fileno(f), 3 * page);
    do_write(m + 2 * page + 1);
    say("after extending the file the write works: %d\n", m[2 * page + 1]);
    ftruncate(fileno(f), page / 2);
    expect_fault("read past a truncated end", do_read, m + page + 5, m + page + 5);
    /* The kernel's own access past the end is EFAULT, not a signal. */
    long r = syscall(SYS_rt_sigprocmask, SIG_BLOCK, NULL, m + page, 8);
    say("rt_sigprocmask storing past the end: %ld %s\n", r, r < 0 ? ename(errno) : "");
    r = write(fileno(f), m + 2 * page, 16);
    say("write(2) from past the end: %ld %s\n", r, r < 0 ? ename(errno) : "");
    /* A private mapping is the same: past the end of the file is SIGBUS. */
    char *p = mmap(NULL, 2 * page, PROT_READ | PROT_WRITE, MAP_PRIVATE, fileno(f), 0);
    p[1] = 2;
    expect_fault("private mapping, read past the end", do_read, p + page + 3, p + page + 3);
    /* Truncated under a private mapping by the process itself, then used by the kernel
     * and by the process. */
    ftruncate(fileno(f), 3 * page);
    char *q = mmap(NULL, 3 * page, PROT_READ | PROT_WRITE, MAP_PRIVATE, fileno(f), 0);
    q[2 * page] = 1;  /* a private copy of this page now, yet a truncate discards it too */
    do_read(q + page);
    ftruncate(fileno(f), 10);
    r = syscall(SYS_rt_sigprocmask, SIG_BLOCK, NULL, q + page, 8);
    say("private, truncated: rt_sigprocmask storing there: %ld %s\n", r,
        r < 0 ? ename(errno) : "");
    expect_fault("private, truncated: read there", do_read, q + page + 1, q + page + 1);
    expect_fault("private, truncated: read of the copied page", do_read, q + 2 * page,
                 q + 2 * page);
    return 0;
}

/* ================================================================ sigaltstack */

static char *alt_base;
static size_t alt_size;
static volatile int on_alt, alt_flags_onstack, eperm_on_change;

static void overflow_handler(int sig, siginfo_t *si, void *uc)
{
    (void)uc;
    char local;
    caught_sig = sig;
    caught_code = si->si_code;
    on_alt = &local >= alt_base && &local < alt_base + alt_size;
    stack_t cur;
    sigaltstack(NULL, &cur);
    alt_flags_onstack = (cur.ss_flags & SS_ONSTACK) != 0;
    static char other_stack[65536];
    stack_t other = {.ss_sp = other_stack, .ss_size = sizeof other_stack, .ss_flags = 0};
    eperm_on_change = sigaltstack(&other, NULL) == -1 && errno == EPERM;
    siglongjmp(jb, 1);
}

static volatile long depth;

__attribute__((noinline)) static long recurse(long n)
{
    volatile char buf[512];
    buf[0] = (char)n;
    depth++;
    return recurse(n + 1) + buf[0];
}

static void *overflow_thread(void *arg)
{
    (void)arg;
    alt_size = 4 * 16384;
    alt_base = malloc(alt_size);
    stack_t ss = {.ss_sp = alt_base, .ss_size = alt_size, .ss_flags = 0};
    sigaltstack(&ss, NULL);
    if (sigsetjmp(jb, 1) == 0) {
        recurse(0);
    }
    say("thread: overflow caught: %s, handler on the alternate stack %s, SS_ONSTACK %s, "
        "EPERM when changing it %s\n", sig_name(caught_sig), yes_no(on_alt),
        yes_no(alt_flags_onstack), yes_no(eperm_on_change));
    return NULL;
}

static int mode_altstack(void)
{
    stack_t ss, old;
    ss.ss_sp = malloc(1024);
    ss.ss_size = 1024;
    ss.ss_flags = 0;
    long r = sigaltstack(&ss, NULL);
    say("sigaltstack too small: %ld %s\n", r, r ? ename(errno) : "");
    ss.ss_flags = 12345;
    ss.ss_size = 65536;
    r = sigaltstack(&ss, NULL);
    say("sigaltstack bad flags: %ld %s\n", r, r ? ename(errno) : "");
    sigaltstack(NULL, &old);
    say("initially disabled: %s\n", yes_no(old.ss_flags & SS_DISABLE));

    alt_size = 4 * 16384;
    alt_base = malloc(alt_size);
    ss.ss_sp = alt_base;
    ss.ss_size = alt_size;
    ss.ss_flags = 0;
    say("sigaltstack: %d\n", sigaltstack(&ss, NULL));
    sigaltstack(NULL, &old);
    say("query: same base %s, same size %s, flags %d\n", yes_no(old.ss_sp == alt_base),
        yes_no(old.ss_size == alt_size), old.ss_flags);
    install(SIGSEGV, overflow_handler, SA_ONSTACK);

    /* the main thread's stack */
    if (sigsetjmp(jb, 1) == 0)
        recurse(0);
    say("main: overflow caught: %s, handler on the alternate stack %s, SS_ONSTACK %s, "
        "EPERM when changing it %s\n", sig_name(caught_sig), yes_no(on_alt),
        yes_no(alt_flags_onstack), yes_no(eperm_on_change));
    sigaltstack(NULL, &old);
    say("after siglongjmp: SS_ONSTACK %s\n", yes_no(old.ss_flags & SS_ONSTACK));
    /* and a second time: the stack is usable again */
    caught_sig = 0;
    if (sigsetjmp(jb, 1) == 0)
        recurse(0);
    say("main, second overflow: %s, on the alternate stack %s\n", sig_name(caught_sig),
        yes_no(on_alt));

    /* a thread with a small stack: each thread has its own alternate stack */
    pthread_attr_t attr;
    pthread_attr_init(&attr);
    pthread_attr_setstacksize(&attr, 256 * 1024);
    pthread_t t;
    caught_sig = 0;
    pthread_create(&t, &attr, overflow_thread, NULL);
    pthread_join(t, NULL);

    /* SS_DISABLE */
    ss.ss_flags = SS_DISABLE;
    sigaltstack(&ss, NULL);
    sigaltstack(NULL, &old);
    say("disabled again: %s\n", yes_no(old.ss_flags & SS_DISABLE));
    return 0;
}

/* without an alternate stack the overflow's SIGSEGV cannot be handled: killed */
static int mode_overflow_noalt(void)
{
    install(SIGSEGV, overflow_handler, 0);
    say("overflowing the stack without an alternate stack\n");
    recurse(0);
    return 0;
}

int main(int argc, char **argv)
{
    const char *m = argc > 1 ? argv[1] : "";
    if (!strcmp(m, "segv")) return mode_segv();
    if (!strcmp(m, "segv_context")) return mode_segv_context();
    if (!strcmp(m, "traps")) return mode_traps();
    if (!strcmp(m, "bus")) return mode_bus();
    if (!strcmp(m, "double_fault")) return mode_double_fault();
    if (!strcmp(m, "altstack")) return mode_altstack();
    if (!strcmp(m, "overflow_noalt")) return mode_overflow_noalt();
    if (!strcmp(m, "die_thread")) return mode_die_thread();
    if (!strncmp(m, "die_", 4)) return mode_die(m + 4);
    say("unknown mode %s\n", m);
    return 2;
}
