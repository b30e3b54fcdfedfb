/* syscall_fuzz: seeded random raw system calls, to shake km (or any kernel) with.
 *
 *   syscall_fuzz [-v] [-n] [-l N] [-w MS] [-k K] SEED CALLS [DIR]
 *
 *   SEED    the random seed (same seed, same calls)
 *   CALLS   how many system calls to make
 *   DIR     a throwaway directory to chdir to first (everything is created there)
 *   -v      print each call ("#K name(args)") on stdout before making it
 *   -n      we run in fresh namespaces (km in fuzz/sandbox): also fuzz SysV IPC, POSIX
 *           message queues, mount calls, sethostname, AF_NETLINK/AF_PACKET sockets
 *   -l N    one call in N may be a lethal one (exit_group with a random status, a fatal
 *           signal to itself, unmapping its own text, rt_sigreturn of garbage...)
 *   -w MS   the watchdog period (default 10 ms, see below)
 *   -k K    generate calls 0..K-1 as usual but make only call K: a one-call reproducer
 *
 * Arguments come from a table of signatures (one letter per argument: fd, path, in/out
 * buffer and its length, iovec, msghdr, sockaddr, timespec, signal, pid, mm address...),
 * each drawn from plausible values, edge values (0, -1, 1<<63, INT_MAX, page boundaries,
 * huge sizes) and bad pointers (NULL, unmapped, kernel half, non-canonical, straddling a
 * mapped/unmapped boundary, our own text, stack and heap). Syscall numbers outside the
 * table and numbers with high bits set are tried too.
 *
 * The program must survive its own calls, so what would simply end it or hang it is
 * neutered: exit/exit_group are never made (unless -l); signals go only to itself, only
 * ones it handles or ignores; pids given to kill, prlimit, setpriority, ptrace... are our
 * own or ones that do not exist (a negative pid is a process group: never); at most
 * MAX_FORKS fork/clone calls, whose children leave at once (in assembly, right after the
 * syscall instruction, touching no memory); mm calls never hit our own text, data, stack
 * or scratch memory; calls that change the host (reboot, clock_settime, settimeofday,
 * modules, swap, acct, kexec, iopl, fanotify, bpf, keyrings, io_uring) are skipped. A
 * blocking call (read of an empty pipe, pause, futex wait, long sleeps) cannot hang it: a
 * SIGALRM watchdog fires every MS milliseconds with a handler installed without
 * SA_RESTART, so the call returns EINTR; the calls that could disarm it (sigaction,
 * sigprocmask, setitimer, alarm) are followed by re-arming it. Everything the program
 * needs stays off-limits: it runs on a stack of its own, uses no libc after start-up
 * (raw syscalls only, no TLS), and keeps its state where no generated pointer points.
 *
 * One check of km itself lives here: a call given our read-only text (or the vDSO) as an
 * output buffer must not change it (Linux says EFAULT); if it did, the program says
 * "syscall_fuzz: FAILURE: ..." and exits 3.
 *
 * Output (stdout): "syscall_fuzz: progress N" every 1024 calls, and at the end
 * "syscall_fuzz: seed S: N calls made (...)". Run it under `km --root DIR`, inside
 * fuzz/sandbox: natively, outside namespaces, it would create files outside DIR.
 */
#define _GNU_SOURCE
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <sys/auxv.h>

typedef uint64_t u64;
typedef int64_t i64;

/* ---------------------------------------------------------------------------------------
 * Raw system calls: no errno, no TLS, nothing libc could trip over after a random call. */

static inline long raw6(long n, long a1, long a2, long a3, long a4, long a5, long a6)
{
    long ret;
    register long r10 __asm__("r10") = a4;
    register long r8 __asm__("r8") = a5;
    register long r9 __asm__("r9") = a6;
    __asm__ volatile("syscall"
                     : "=a"(ret)
                     : "a"(n), "D"(a1), "S"(a2), "d"(a3), "r"(r10), "r"(r8), "r"(r9)
                     : "rcx", "r11", "memory");
    return ret;
}
#define raw0(n) raw6(n, 0, 0, 0, 0, 0, 0)
#define raw1(n, a) raw6(n, (long)(a), 0, 0, 0, 0, 0)
#define raw2(n, a, b) raw6(n, (long)(a), (long)(b), 0, 0, 0, 0)
#define raw3(n, a, b, c) raw6(n, (long)(a), (long)(b), (long)(c), 0, 0, 0)
#define raw4(n, a, b, c, d) raw6(n, (long)(a), (long)(b), (long)(c), (long)(d), 0, 0)

/* fork, vfork, clone, clone3: the child (rax == 0) exits right after the syscall
 * instruction, without touching its stack (which may be ours, shared, or garbage). */
static long raw_fork6(long n, long a1, long a2, long a3, long a4, long a5, long a6)
{
    long ret;
    register long r10 __asm__("r10") = a4;
    register long r8 __asm__("r8") = a5;
    register long r9 __asm__("r9") = a6;
    __asm__ volatile("syscall\n\t"
                     "test %%rax, %%rax\n\t"
                     "jnz 1f\n\t"
                     "mov $60, %%eax\n\t"
                     "xor %%edi, %%edi\n\t"
                     "syscall\n\t"
                     "ud2\n"
                     "1:"
                     : "=a"(ret)
                     : "a"(n), "D"(a1), "S"(a2), "d"(a3), "r"(r10), "r"(r8), "r"(r9)
                     : "rcx", "r11", "memory");
    return ret;
}

/* x86-64 needs SA_RESTORER: the restorer is rt_sigreturn. */
extern void fuzz_restorer(void);
__asm__(".text\n"
        ".globl fuzz_restorer\n"
        "fuzz_restorer:\n\t"
        "mov $15, %eax\n\t"
        "syscall\n\t"
        "hlt\n");

enum {
    NR_read = 0, NR_write = 1, NR_open = 2, NR_close = 3, NR_mmap = 9, NR_mprotect = 10,
    NR_munmap = 11, NR_brk = 12, NR_rt_sigaction = 13, NR_rt_sigprocmask = 14,
    NR_rt_sigreturn = 15, NR_pipe = 22, NR_mremap = 25, NR_madvise = 28, NR_dup2 = 33,
    NR_alarm = 37, NR_setitimer = 38, NR_getpid = 39, NR_socket = 41, NR_bind = 49,
    NR_listen = 50, NR_socketpair = 53, NR_clone = 56, NR_fork = 57, NR_vfork = 58,
    NR_exit = 60, NR_wait4 = 61, NR_kill = 62, NR_fcntl = 72, NR_mkdir = 83, NR_symlink = 88,
    NR_link = 86, NR_setrlimit = 160, NR_prctl = 157, NR_arch_prctl = 158, NR_gettid = 186,
    NR_exit_group = 231, NR_mknod = 133, NR_prlimit64 = 302, NR_rseq = 334,
    NR_timer_create = 222, NR_timer_settime = 223, NR_eventfd2 = 290, NR_epoll_create1 = 291,
    NR_dup3 = 292, NR_pipe2 = 293, NR_inotify_init1 = 294, NR_timerfd_create = 283,
    NR_signalfd4 = 289, NR_memfd_create = 319, NR_pidfd_open = 434, NR_clone3 = 435,
    NR_close_range = 436, NR_openat = 257, NR_mknodat = 259, NR_getrlimit = 97,
};

#define PAGE 4096UL
#define AT_FDCWD_ (-100L)
#define O_RDONLY_ 0
#define O_RDWR_ 02
#define O_CREAT_ 0100
#define O_NONBLOCK_ 04000
#define O_DIRECTORY_ 0200000
#define O_CLOEXEC_ 02000000
#define O_PATH_ 010000000
#define PROT_NONE_ 0
#define PROT_READ_ 1
#define PROT_WRITE_ 2
#define MAP_PRIVATE_ 0x02
#define MAP_FIXED_ 0x10
#define MAP_ANON_ 0x20
#define MAP_FIXED_NOREPLACE_ 0x100000
#define SIGALRM_ 14
#define SA_RESTORER_ 0x04000000UL
#define SIG_DFL_ 0UL
#define SIG_IGN_ 1UL
#define ITIMER_REAL_ 0
#define RLIMIT_CPU_ 0
#define RLIMIT_FSIZE_ 1
#define RLIMIT_NOFILE_ 7
#define RLIM_INF (~0UL)
#define CLONE_VM_ 0x100UL
#define CLONE_THREAD_ 0x10000UL
#define ARCH_SET_GS 0x1001
#define ARCH_SET_FS 0x1002
#define ARCH_GET_FS 0x1003
#define KERNEL_BASE 0xffffff8000000000UL /* km's kernel half: GDT, IDT, TSS, stub */

#define MAX_FORKS 16
#define MAX_THREADS 16
#define POOL_MAX 48
#define SCRATCH_LEN (64 * 1024UL)
#define ARENA_LEN (1024 * 1024UL)
#define TSTACK_LEN (64 * 1024UL)
#define MYSTACK_LEN (1024 * 1024UL)
#define RESET_EVERY 512
#define FSIZE_LIMIT (64UL << 20)

/* Fixed addresses (MAP_FIXED_NOREPLACE, kernel's choice if taken), so that a pointer
 * printed by -v means the same thing in a -k replay. */
#define SCRATCH_AT 0x300000000000UL
#define ARENA_AT 0x310000000000UL
#define TSTACK_AT 0x320000000000UL
#define MYSTACK_AT 0x330000000000UL

/* ---------------------------------------------------------------------------------------
 * State. Nothing here is ever the target of a generated pointer. */

static u64 rng_state;
static int verbose, nsmode, lethal_one_in, watchdog_ms = 10, only_call = -1;
static long seed, ncalls;
static long self_pid, self_tid;
static u64 fs_base;
static int pool[POOL_MAX], npool;
static unsigned char *scratch, *arena, *tstack, *mystack;
static size_t scratch_off;
static u64 ostack, heap, vdso, text_lo, text_hi, initial_brk;
static struct rlimit_ {
    u64 cur, max;
} nofile_limit, cpu_limit;
static u64 kept_max[16]; /* hard limits never lowered: CPU, FSIZE, DATA, NOFILE, AS */
static long made, skipped, forks, threads, touches, touch_faults, timers, housekeeping;
static char start_dir[512];
static const char *dir_arg;

static const unsigned char RODATA_SAMPLE[256] = {1, 2, 3, 4, 5, 6, 7, 8, '/', 'a', 0};

struct range {
    u64 lo, hi;
};
static struct range protect[8];
static int nprotect;

/* ---------------------------------------------------------------------------------------
 * Output without libc. */

static void out(const char *s, size_t n) { raw3(NR_write, 1, s, n); }

static char line[1024];
static size_t line_len;

static void put(const char *s)
{
    while (*s && line_len < sizeof line - 1)
        line[line_len++] = *s++;
}

static void put_hex(u64 v)
{
    char buf[19];
    int i = 18;
    buf[i] = 0;
    do {
        buf[--i] = "0123456789abcdef"[v & 15];
        v >>= 4;
    } while (v);
    buf[--i] = 'x';
    buf[--i] = '0';
    put(buf + i);
}

static void put_dec(i64 v)
{
    char buf[24];
    int i = 23;
    u64 u = v < 0 ? -(u64)v : (u64)v;
    buf[i] = 0;
    do {
        buf[--i] = (char)('0' + u % 10);
        u /= 10;
    } while (u);
    if (v < 0)
        buf[--i] = '-';
    put(buf + i);
}

static void flush_line(void)
{
    line[line_len++] = '\n';
    out(line, line_len);
    line_len = 0;
}

/* ---------------------------------------------------------------------------------------
 * Random numbers (splitmix64: any state, including 0, is fine). */

static u64 next(void)
{
    u64 z = (rng_state += 0x9e3779b97f4a7c15UL);
    z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9UL;
    z = (z ^ (z >> 27)) * 0x94d049bb133111ebUL;
    return z ^ (z >> 31);
}

/* Always one draw, whatever n: generation must not depend on what earlier calls
 * returned (the pool's size...), so that -k K regenerates exactly call K. */
static u64 below(u64 n)
{
    u64 r = next();
    return n ? r % n : 0;
}
static int chance(int percent) { return (int)below(100) < percent; }
#define PICK(array) (array[below(sizeof(array) / sizeof(array[0]))])

static const u64 EDGE[] = {
    0, 1, 2, 3, 4, 7, 8, 15, 16, 31, 32, 63, 64, 127, 128, 255, 256, 511, 512, 1023, 1024,
    4095, 4096, 4097, 8192, 65535, 65536, 0x7fff, 0x8000, 0x7fffffff, 0x80000000,
    0xffffffff, 0x100000000, 0x100000001, 0x100000003, 0x7fffffffffffffff,
    0x8000000000000000, 0x8000000000000001, 0xffffffffffffffff, 0xfffffffffffffffe,
    0xfffffffffffff000, 0xffffffff80000000, 0xffffffff7fffffff, 1UL << 47, (1UL << 47) - 1,
    (1UL << 47) - 4096, 1UL << 48, 1UL << 62, (u64)-4095, (u64)-100, 1UL << 31 | 1,
    0x4000000000000000, 0x00007ffffffff000, 0xffff800000000000,
};

static u64 gen_int(void)
{
    switch (below(10)) {
    case 0: case 1: case 2: case 3: return below(65);
    case 4: case 5: case 6: return PICK(EDGE);
    case 7: return -(u64)below(65);
    case 8: return (uint32_t)next();
    default: return next();
    }
}

static u64 gen_small(void) { return chance(85) ? below(17) : PICK(EDGE); }

/* ---------------------------------------------------------------------------------------
 * Memory for arguments: a bump allocator in `scratch`, which ends in a PROT_NONE guard
 * page and then a hole; the `arena`, a megabyte that the random mm calls may carve up. */

static unsigned char *scratch_end(void) { return scratch + SCRATCH_LEN; }

/* Are the n bytes at p all in scratch? (Written so that p + n cannot wrap.) */
static int in_scratch(u64 p, u64 n)
{
    return p >= (u64)scratch && p <= (u64)scratch_end() && n <= (u64)scratch_end() - p;
}

static void fill_random(unsigned char *p, size_t n)
{
    size_t i = 0;
    for (; i + 8 <= n; i += 8) {
        u64 v = chance(30) ? PICK(EDGE) : next();
        memcpy(p + i, &v, 8);
    }
    for (; i < n; i++)
        p[i] = (unsigned char)next();
}

/* n bytes of scratch; sometimes placed so that they run into the guard page. */
static unsigned char *alloc(size_t n)
{
    if (n > SCRATCH_LEN / 4 || chance(6))
        return scratch_end() - (n < SCRATCH_LEN ? below(n + 1) : below(64));
    scratch_off = (scratch_off + 15) & ~15UL;
    if (scratch_off + n > SCRATCH_LEN - PAGE)
        scratch_off = 0;
    unsigned char *p = scratch + scratch_off + below(4) * (chance(20) ? 1 : 0);
    scratch_off += n + 8;
    return p;
}

static u64 bad_pointer(void)
{
    static const u64 fixed[] = {
        0, 1, 8, 0xfff, 0x1000, 0x10000, 0xdead0000, 0x0000800000000000,
        0x00007ffffffff000, 0x00007fffffffffff, 0x8000000000000000, 0xffff800000000000,
        0xffffffff81000000, 0xffffffffff600000, 0xfffffffffffff000, 0xffffffffffffffff,
        0xfffffffffffffff0, 0x0000fffffffff000,
    };
    switch (below(8)) {
    case 0: case 1: case 2: return PICK(fixed);
    case 3: return KERNEL_BASE + below(64) * PAGE + below(PAGE);
    case 4: return (u64)scratch_end() + below(2 * PAGE);   /* guard page, then the hole */
    case 5: return (u64)arena - PAGE + below(PAGE);         /* below the arena: unmapped */
    case 6: return (u64)scratch_end() - below(8) - 1;        /* straddles the guard */
    default: return next();
    }
}

/* An address for the kernel to read from: mostly our buffers, sometimes anything. */
static u64 in_target(size_t n)
{
    switch (below(20)) {
    case 0: return (u64)arena + below(ARENA_LEN);
    case 1: return text_lo + below(text_hi - text_lo);
    case 2: return (u64)RODATA_SAMPLE;
    case 3: return ostack - below(4096) + below(8192);
    case 4: return heap + below(65536);
    case 5: return vdso ? vdso + below(2 * PAGE) : 0;
    case 6: case 7: return bad_pointer();
    default: {
        unsigned char *p = alloc(n);
        if (p + n <= scratch_end())
            fill_random(p, n);
        else if (p < scratch_end())
            fill_random(p, scratch_end() - p);
        return (u64)p;
    }
    }
}

/* Read-only places handed out as output buffers, to check km writes nothing there. */
struct ro_check {
    u64 at;
    unsigned char saved[64];
};
static struct ro_check ro_checks[4];
static int nro_checks;

static void watch_ro(u64 at)
{
    if (nro_checks < 4 && at) {
        ro_checks[nro_checks].at = at;
        memcpy(ro_checks[nro_checks].saved, (void *)at, 64);
        nro_checks++;
    }
}

/* An address for the kernel to write to: never our state, code is read-only. */
static u64 out_target(size_t n)
{
    switch (below(20)) {
    case 0: case 1: return (u64)arena + below(ARENA_LEN);
    case 2: { u64 at = text_lo + below(text_hi - text_lo - 64); watch_ro(at); return at; }
    case 3: return ostack - below(16384);
    case 4: return heap + below(65536);
    case 5: return vdso ? vdso - below(8) * PAGE : 0; /* vDSO or vvar */
    case 6: case 7: return bad_pointer();
    default: {
        unsigned char *p = alloc(n);
        if (p + n <= scratch_end())
            memset(p, 0xa5, n);
        return (u64)p;
    }
    }
}

/* Words for generic structures: small numbers, edge values, pointers, fds. */
static int gen_fd(void);

static u64 gen_word(void)
{
    switch (below(10)) {
    case 0: case 1: return below(17);
    case 2: case 3: return PICK(EDGE);
    case 4: return in_target(64);
    case 5: return bad_pointer();
    case 6: return (u64)(i64)gen_fd();
    default: return next();
    }
}

static u64 gen_struct_in(size_t n)
{
    if (chance(8))
        return bad_pointer();
    unsigned char *p = alloc(n);
    size_t room = p < scratch_end() ? (size_t)(scratch_end() - p) : 0;
    for (size_t i = 0; i + 8 <= n && i + 8 <= room; i += 8) {
        u64 w = gen_word();
        memcpy(p + i, &w, 8);
    }
    return (u64)p;
}

static size_t gen_struct_size(void)
{
    static const size_t sizes[] = {8, 16, 24, 32, 64, 88, 104, 128, 144, 256, 512, 1024};
    return chance(80) ? PICK(sizes) : below(4096);
}

/* ---------------------------------------------------------------------------------------
 * Paths: names that exist in DIR, names that do not, `..`, absolute paths (inside the
 * root under km), km's synthesized /proc/self entries; unterminated and over-long
 * strings. Never a name that exists on a host (so an escape creates nothing that
 * matters), never /proc/self/exe (exec would restart us) nor /proc/self/mem or root. */

static const char *const PREFIXES[] = {
    "", "", "", "", "./", "/", "/", "../", "../../../../", "d/", "d/e/", "/d/../", "l/",
    "y/", "/proc/self/", "/proc/self/fd/", "/proc/self/task/", "/proc/", "/dev/", "//",
    "a/", "x/",
};
static const char *const NAMES[] = {
    "a", "b", "d", "e", "h", "l", "p", "s", "x", "y", "z", "n", "m", "new", "d/e", ".", "..",
    "", "fd", "maps", "status", "cmdline", "stat", "auxv", "environ", "cwd", "1", "3",
    "4", "1000", "1023", "4095", "65535", "null", "zero", "full", "urandom", "self",
    "mounts", "a\377\001", "-", "a b", "*", "a/", "d/.", "sock", "fifo",
};

static u64 gen_path(void)
{
    int kind = (int)below(100);
    if (kind < 5)
        return bad_pointer();
    if (kind < 8) { /* no terminating NUL before the guard page */
        size_t n = 1 + below(300);
        unsigned char *p = scratch_end() - n;
        memset(p, 'a', n);
        return (u64)p;
    }
    if (kind < 10) { /* longer than PATH_MAX, or a component longer than NAME_MAX */
        size_t n = chance(50) ? 4096 + below(3) : 255 + below(3);
        unsigned char *p = alloc(n + 1);
        if (p + n + 1 > scratch_end())
            return (u64)p;
        memset(p, 'a', n);
        if (n > 300)
            for (size_t i = 100; i < n; i += 100)
                p[i] = '/';
        p[n] = 0;
        return (u64)p;
    }
    char buf[512];
    size_t len = 0;
    const char *parts[3] = {PICK(PREFIXES), PICK(NAMES), chance(20) ? PICK(NAMES) : NULL};
    for (int i = 0; i < 3 && parts[i]; i++) {
        if (i == 2 && len < sizeof buf - 1)
            buf[len++] = '/';
        for (const char *s = parts[i]; *s && len < sizeof buf - 1; s++)
            buf[len++] = *s;
    }
    buf[len] = 0;
    unsigned char *p = alloc(len + 1);
    if (p >= scratch_end())
        return (u64)p;
    if (p + len + 1 > scratch_end()) /* straddles the guard: copy what fits */
        len = (size_t)(scratch_end() - p) - 1;
    memcpy(p, buf, len);
    p[len] = 0;
    return (u64)p;
}

/* ---------------------------------------------------------------------------------------
 * File descriptors: ones we opened, -1, AT_FDCWD, km's own range near RLIMIT_NOFILE,
 * values with high bits set (the kernel reads an int). Never 1 or 2: stdout is our log. */

static int gen_fd(void)
{
    int fd;
    switch (below(20)) {
    case 0: fd = -1; break;
    case 1: fd = (int)AT_FDCWD_; break;
    case 2: fd = 0; break;
    case 3: fd = (int)(nofile_limit.cur + below(64)); break; /* km keeps its own fds there */
    case 4: fd = (int)nofile_limit.cur - 1 - (int)below(4); break;
    case 5: { static const int big[] = {1023, 1024, 4095, 65535, 1048575, 0x7fffffff,
                                        (int)0x80000000};
              fd = PICK(big); break; }
    case 6: fd = 3 + (int)below(60); break;
    default: { int k = (int)below((u64)npool); fd = npool ? pool[k] : 3; break; }
    }
    return fd == 1 || fd == 2 ? 3 + (int)below(8) : fd;
}

static u64 gen_fd_arg(void)
{
    int fd = gen_fd();
    if (chance(3)) /* an int in a 64-bit register: the upper half must be ignored */
        return (u64)(uint32_t)fd | (below(2) ? 0xffffffff00000000UL : 0x100000000UL);
    return (u64)(i64)fd;
}

/* ---------------------------------------------------------------------------------------
 * Memory-management arguments. mm calls that could unmap or change what we run on are
 * kept off our own ranges (unless the call is a lethal one). */

static u64 gen_mm_addr(void)
{
    switch (below(12)) {
    case 0: case 1: case 2: case 3: return (u64)arena + below(ARENA_LEN / PAGE) * PAGE;
    case 4: return (u64)arena + below(ARENA_LEN);               /* unaligned */
    case 5: return heap + below(16) * PAGE;
    case 6: return chance(50) || !vdso ? ostack & ~(PAGE - 1) : vdso - below(8) * PAGE;
    case 7: return (u64)arena + ARENA_LEN + below(16) * PAGE;  /* past the arena */
    case 8: return 0;
    case 9: return PICK(EDGE) & ~(PAGE - 1);
    case 10: return bad_pointer() & ~(PAGE - 1);
    default: return chance(50) ? next() & 0x7ffffffff000UL : next();
    }
}

static u64 gen_mm_len(void)
{
    switch (below(8)) {
    case 0: case 1: case 2: return (1 + below(16)) * PAGE;
    case 3: return below(ARENA_LEN);
    case 4: return 0;
    case 5: return ARENA_LEN + below(4) * PAGE;
    default: return PICK(EDGE);
    }
}

static int overlaps_protected(u64 addr, u64 len)
{
    u64 lo = addr & ~(PAGE - 1), hi = addr + len + PAGE - 1;
    if (len == 0)
        hi = lo + PAGE;
    if (hi < addr) /* wraps past 2^64: Linux refuses those outright */
        return 0;
    hi &= ~(PAGE - 1);
    for (int i = 0; i < nprotect; i++)
        if (lo < protect[i].hi && hi > protect[i].lo)
            return 1;
    return 0;
}

/* Moves [*addr, *addr + *len) into the arena when it would hit one of our ranges;
 * returns nonzero when even that does not help (then the call is skipped). */
static int keep_off(u64 *addr, u64 *len)
{
    if (!overlaps_protected(*addr, *len))
        return 0;
    *addr = (u64)arena + below(ARENA_LEN / PAGE) * PAGE;
    if (overlaps_protected(*addr, *len))
        *len = (1 + below(16)) * PAGE;
    return overlaps_protected(*addr, *len);
}

/* ---------------------------------------------------------------------------------------
 * Signals. Handlers are no-ops installed without SA_RESTART (a blocking call returns
 * EINTR); fault signals keep their default action (a real fault must end the program, not
 * loop), except around the touch step. Signals we send ourselves are SAFE_SIGNALS. */

static void on_signal(int sig) { (void)sig; }

/* The touch step (see touch()) reads or writes one byte at a random address; a fault
 * there resumes at fuzz_touch_fault, which returns 1. Any other SIGSEGV/SIGBUS is real:
 * back to the default action, and the faulting instruction runs again and kills us. */
extern char fuzz_touch[], fuzz_touch_end[], fuzz_touch_fault[];
__asm__(".text\n"
        ".globl fuzz_touch, fuzz_touch_end, fuzz_touch_fault\n"
        "fuzz_touch:\n\t" /* int fuzz_touch(void *at, int value, int write) */
        "test %edx, %edx\n\t"
        "jz 1f\n\t"
        "movb %sil, (%rdi)\n\t"
        "jmp 2f\n"
        "1:\n\t"
        "movb (%rdi), %al\n"
        "2:\n\t"
        "xor %eax, %eax\n\t"
        "ret\n"
        "fuzz_touch_end:\n"
        "fuzz_touch_fault:\n\t"
        "mov $1, %eax\n\t"
        "ret\n");

struct ksigaction {
    u64 handler, flags, restorer, mask;
};

#define SA_SIGINFO_ 4UL
#define UC_RIP_OFFSET 168 /* uc_mcontext.gregs[REG_RIP] in the x86-64 ucontext */

static void on_fault(int sig, void *info, void *ucontext)
{
    (void)info;
    u64 *rip = (u64 *)((char *)ucontext + UC_RIP_OFFSET);
    if (*rip >= (u64)fuzz_touch && *rip < (u64)fuzz_touch_end) {
        *rip = (u64)fuzz_touch_fault;
        return;
    }
    struct ksigaction dfl = {SIG_DFL_, SA_RESTORER_, (u64)fuzz_restorer, 0};
    raw4(NR_rt_sigaction, sig, &dfl, 0, 8);
}

static struct ksigaction disposition(int sig)
{
    struct ksigaction sa = {(u64)on_signal, SA_RESTORER_, (u64)fuzz_restorer, 0};
    switch (sig) {
    case 7: case 11: /* SIGBUS, SIGSEGV: recover from the touch step only */
        sa.handler = (u64)on_fault;
        sa.flags |= SA_SIGINFO_;
        break;
    case 13: case 25: /* SIGPIPE, SIGXFSZ: errors instead */
        sa.handler = SIG_IGN_;
        break;
    case 4: case 5: case 6: case 8: case 31: /* SIGILL, SIGTRAP, SIGABRT, SIGFPE, SIGSYS */
    case 17: case 18: case 23: case 28:      /* default: ignore (or continue) */
        sa.handler = SIG_DFL_;
        break;
    }
    return sa;
}

static void set_disposition(int sig)
{
    if (sig < 1 || sig > 64 || sig == 9 || sig == 19)
        return;
    struct ksigaction sa = disposition(sig);
    raw4(NR_rt_sigaction, sig, &sa, 0, 8);
    housekeeping++;
}

static const int SAFE_SIGNALS[] = {0, 1, 2, 3, 10, 12, 13, 14, 15, 16, 17, 18, 20, 21, 22,
                                   23, 24, 25, 26, 27, 28, 29, 30, 32, 33, 34, 40, 63, 64};

static u64 gen_signal(void)
{
    if (chance(10)) {
        static const u64 bogus[] = {65, 100, (u64)-1, 0x80000000, 0x100000000 | 10};
        return PICK(bogus);
    }
    return (u64)PICK(SAFE_SIGNALS);
}

static void arm_watchdog(void)
{
    u64 usec = (u64)watchdog_ms * 1000;
    u64 it[4] = {usec / 1000000, usec % 1000000, usec / 1000000, usec % 1000000};
    u64 unblock = 1UL << (SIGALRM_ - 1) | 1UL << (11 - 1) | 1UL << (7 - 1);
    raw3(NR_setitimer, ITIMER_REAL_, it, 0);
    raw4(NR_rt_sigprocmask, 1 /* SIG_UNBLOCK */, &unblock, 0, 8);
    housekeeping += 2;
}

static u64 gen_sigset(void)
{
    u64 p = chance(10) ? (chance(50) ? 0 : bad_pointer()) : (u64)alloc(8);
    if (in_scratch(p, 8)) { /* (a "bad" pointer may land in scratch too) */
        u64 *set = (u64 *)p;
        *set = chance(30) ? ~0UL : next();
        *set &= ~(1UL << (SIGALRM_ - 1)); /* a temporary mask must not block the watchdog */
    }
    return p;
}

/* ---------------------------------------------------------------------------------------
 * Pids: ourselves, our thread, or pids that do not exist. Never 0 (our process group),
 * never negative (process groups, or -1: every process). */

static u64 gen_target_pid(void)
{
    static const u64 nobody[] = {0x3ffffff0, 0x7fffffff, 99999, 0x80000000 /* INT_MIN */};
    switch (below(6)) {
    case 0: case 1: return (u64)self_pid;
    case 2: return (u64)self_tid;
    default: return PICK(nobody);
    }
}

/* ---------------------------------------------------------------------------------------
 * Structures. */

struct gen_ctx {
    u64 last_size; /* size of the last buffer built, for the length after it */
    u64 count;     /* element count of the last array built */
    int resource;  /* for rlimit structures */
};

static u64 gen_len(struct gen_ctx *c)
{
    switch (below(10)) {
    case 0: case 1: case 2: case 3: case 4: return c->last_size;
    case 5: return below(c->last_size + 1);
    case 6: return 0;
    case 7: return c->last_size + 1 + below(64);
    default: return PICK(EDGE);
    }
}

static u64 gen_buf_size(void)
{
    static const u64 sizes[] = {0, 1, 8, 16, 64, 100, 256, 512, 1024, 4096, 8192};
    return chance(70) ? PICK(sizes) : below(16384);
}

static u64 gen_timespec(int usec)
{
    if (chance(10))
        return 0; /* no timeout: the watchdog ends the wait */
    if (chance(5))
        return bad_pointer();
    u64 *ts = (u64 *)alloc(16);
    if ((unsigned char *)(ts + 2) > scratch_end())
        return (u64)ts;
    u64 unit = usec ? 1000 : 1000000; /* 1 ms in the field's unit */
    switch (below(10)) {
    case 0: ts[0] = 0; ts[1] = 0; break;
    case 1: ts[0] = 0; ts[1] = usec ? 1000000 : 1000000000; break;  /* invalid */
    case 2: ts[0] = 0; ts[1] = (u64)-1; break;
    case 3: ts[0] = (u64)-1; ts[1] = 0; break;
    case 4: ts[0] = PICK(EDGE); ts[1] = below(unit * 1000); break;  /* huge: watchdog */
    default: ts[0] = 0; ts[1] = below(20 * unit); break;
    }
    return (u64)ts;
}

/* itimerval / itimerspec: periodic timers firing faster than km delivers signals would
 * bury it (a few dozen timers at 1 ms do), so intervals are 0 or at least 10 ms. */
static u64 gen_itimer(int usec)
{
    if (chance(10))
        return chance(50) ? 0 : bad_pointer();
    u64 *it = (u64 *)alloc(32);
    if ((unsigned char *)(it + 4) > scratch_end())
        return (u64)it;
    u64 unit = usec ? 1000 : 1000000;
    it[0] = chance(50) ? 0 : below(3);
    it[1] = chance(50) ? 0 : 10 * unit + below(90 * unit); /* >= 10 ms: see above */
    if (chance(5))
        it[1] = (u64)-1; /* invalid */
    it[2] = chance(80) ? 0 : PICK(EDGE);
    it[3] = chance(10) ? (u64)-1 : below(100 * unit);
    return (u64)it;
}

static u64 gen_iovec(struct gen_ctx *c, int output)
{
    if (chance(8)) {
        c->count = gen_small();
        return bad_pointer();
    }
    u64 n = chance(90) ? below(9) : 64 + below(64);
    u64 *iov = (u64 *)alloc(n * 16);
    for (u64 i = 0; i < n && (unsigned char *)(iov + 2 * i + 2) <= scratch_end(); i++) {
        u64 len = chance(80) ? gen_buf_size() : PICK(EDGE);
        iov[2 * i] = output ? out_target(len < 8192 ? len : 8192)
                            : in_target(len < 8192 ? len : 8192);
        iov[2 * i + 1] = len;
    }
    c->count = n;
    return (u64)iov;
}

static u64 gen_count(struct gen_ctx *c)
{
    static const u64 odd[] = {0, 1, 1024, 1025, 0x7fffffff, 0x80000000, (u64)-1, 1UL << 32};
    return chance(85) ? c->count : PICK(odd);
}

static u64 gen_sockaddr(struct gen_ctx *c)
{
    if (chance(8)) {
        c->last_size = below(200);
        return bad_pointer();
    }
    unsigned char *p = alloc(128);
    if (p + 128 > scratch_end()) {
        c->last_size = 16;
        return (u64)p;
    }
    memset(p, 0, 128);
    u64 size;
    switch (below(10)) {
    case 0: case 1: case 2: { /* AF_UNIX: a path in DIR, abstract, or autobind */
        static const char *const names[] = {"s", "sock", "d/s", "/s", "../s", "x", "a", ""};
        const char *name = PICK(names);
        p[0] = 1;
        size_t n = strlen(name);
        int abstract = chance(25);
        memcpy(p + 2 + abstract, name, n);
        size = 2 + abstract + n + (chance(50) ? 1 : 0);
        if (chance(10))
            size = 2;
        if (chance(5)) { /* sun_path without a NUL, all 108 bytes */
            memset(p + 2, 'q', 108);
            size = 110;
        }
        break;
    }
    case 3: case 4: case 5: { /* AF_INET: loopback or any */
        p[0] = 2;
        static const uint16_t ports[] = {0, 0x611e /* 7777 */, 0x5000, 0xffff, 0x0100};
        uint16_t port = PICK(ports);
        memcpy(p + 2, &port, 2);
        if (chance(70)) {
            p[4] = 127;
            p[7] = 1;
        } else if (nsmode && chance(50)) {
            fill_random(p + 4, 4);
        }
        size = 16;
        break;
    }
    case 6: case 7: /* AF_INET6: ::1 or :: */
        p[0] = 10;
        p[3] = 0x1e;
        if (chance(70))
            p[23] = 1;
        size = 28;
        break;
    case 8: /* AF_NETLINK / AF_PACKET change the network: only inside namespaces */
        p[0] = nsmode ? (chance(50) ? 16 : 17) : 1;
        fill_random(p + 2, 14);
        size = 16;
        break;
    default:
        fill_random(p, 128);
        p[1] = 0;
        if (!nsmode && (p[0] == 15 || p[0] == 16 || p[0] == 17))
            p[0] = 0;
        size = below(129);
        break;
    }
    c->last_size = size;
    return (u64)p;
}

static u64 gen_socklen_ptr(void)
{
    if (chance(8))
        return bad_pointer();
    uint32_t *n = (uint32_t *)alloc(4);
    if ((unsigned char *)(n + 1) <= scratch_end())
        *n = chance(70) ? 128 : (uint32_t)PICK(EDGE);
    return (u64)n;
}

static u64 gen_cmsgs(u64 *size)
{
    unsigned char *p = alloc(256);
    if (p + 256 > scratch_end()) {
        *size = 256;
        return (u64)p;
    }
    fill_random(p, 256);
    u64 *hdr = (u64 *)p;
    switch (below(4)) {
    case 0: case 1: { /* SCM_RIGHTS: our fds, bad fds, km's */
        u64 n = below(8);
        hdr[0] = 16 + 4 * n;
        ((uint32_t *)p)[2] = 1;
        ((uint32_t *)p)[3] = 1;
        for (u64 i = 0; i < n; i++)
            ((int32_t *)(p + 16))[i] = gen_fd();
        *size = 16 + 4 * n + (chance(80) ? (8 - (4 * n) % 8) % 8 : 0);
        break;
    }
    case 2: /* SCM_CREDENTIALS */
        hdr[0] = 28;
        ((uint32_t *)p)[2] = 1;
        ((uint32_t *)p)[3] = 2;
        ((uint32_t *)p)[4] = chance(50) ? (uint32_t)self_pid : (uint32_t)next();
        *size = 32;
        break;
    default: /* garbage: lengths that lie */
        hdr[0] = PICK(EDGE);
        *size = chance(50) ? 16 + below(64) : PICK(EDGE);
        break;
    }
    return (u64)p;
}

static u64 gen_msghdr(struct gen_ctx *c, int output)
{
    if (chance(8))
        return bad_pointer();
    u64 *m = (u64 *)alloc(56);
    if ((unsigned char *)(m + 7) > scratch_end())
        return (u64)m;
    struct gen_ctx sub = {0, 0, 0};
    if (chance(60)) {
        m[0] = 0;
        m[1] = 0;
    } else {
        m[0] = output ? out_target(128) : gen_sockaddr(&sub);
        m[1] = output ? (chance(70) ? 128 : PICK(EDGE)) : sub.last_size;
        if (chance(10))
            m[1] = PICK(EDGE);
    }
    m[2] = gen_iovec(&sub, output);
    m[3] = gen_count(&sub);
    u64 csize = 0;
    if (chance(40)) {
        m[4] = output ? out_target(256) : gen_cmsgs(&csize);
        m[5] = output ? (chance(70) ? 256 : PICK(EDGE)) : csize;
    } else {
        m[4] = 0;
        m[5] = chance(90) ? 0 : PICK(EDGE);
    }
    m[6] = chance(80) ? 0 : next();
    (void)c;
    return (u64)m;
}

static u64 gen_mmsghdr(struct gen_ctx *c, int output)
{
    u64 n = chance(90) ? below(5) : PICK(EDGE) & 0x3ff;
    u64 *v = (u64 *)alloc(64 * (n ? n : 1));
    for (u64 i = 0; i < n && (unsigned char *)(v + 8 * i + 8) <= scratch_end(); i++) {
        u64 m = gen_msghdr(c, output);
        if (in_scratch(m, 56))
            memcpy(v + 8 * i, (void *)m, 56);
        v[8 * i + 7] = next();
    }
    c->count = n;
    return chance(8) ? bad_pointer() : (u64)v;
}

static u64 gen_sigaction(void)
{
    if (chance(10))
        return chance(50) ? 0 : bad_pointer();
    struct ksigaction *sa = (struct ksigaction *)alloc(sizeof *sa);
    if ((unsigned char *)(sa + 1) > scratch_end())
        return (u64)sa;
    static const u64 handlers[] = {SIG_DFL_, SIG_IGN_, 2, 0xdead0000, KERNEL_BASE};
    sa->handler = chance(60) ? (u64)on_signal : PICK(handlers);
    sa->flags = chance(70) ? SA_RESTORER_ | (next() & 0x18000007UL) : next();
    sa->restorer = chance(80) ? (u64)fuzz_restorer : gen_word();
    sa->mask = next();
    return (u64)sa;
}

static u64 gen_rlimit(struct gen_ctx *c)
{
    static const u64 values[] = {0, 1, 64, 1024, 1UL << 20, 1UL << 31, 1UL << 32,
                                 1UL << 62, 1UL << 63, (1UL << 63) - 1, (1UL << 63) + 1,
                                 RLIM_INF, RLIM_INF - 1, 0x7fffffff};
    if (chance(8))
        return bad_pointer();
    u64 *r = (u64 *)alloc(16);
    if ((unsigned char *)(r + 2) > scratch_end())
        return (u64)r;
    r[0] = chance(80) ? PICK(values) : next();
    r[1] = chance(80) ? PICK(values) : next();
    if (c->resource == RLIMIT_CPU_) {
        /* A low CPU limit is a SIGKILL, and so is a huge one: the kernel multiplies it
         * by 10^9 in 64 bits. */
        if (r[0] < 3600 || (r[0] > (1UL << 34) && r[0] != RLIM_INF))
            r[0] = RLIM_INF;
        if (r[1] < 3600 || (r[1] > (1UL << 34) && r[1] != RLIM_INF))
            r[1] = RLIM_INF;
    }
    /* The hard limits we live by stay: without CAP_SYS_RESOURCE (containers often drop
     * it) a lowered one is lowered for good, and stdout would stop at RLIMIT_FSIZE. */
    if (c->resource >= 0 && c->resource < 16 && kept_max[c->resource])
        r[1] = kept_max[c->resource];
    return (u64)r;
}

static u64 gen_pollfds(struct gen_ctx *c)
{
    u64 n = chance(90) ? below(9) : PICK(EDGE) & 0xffff;
    int32_t *p = (int32_t *)alloc(8 * (n ? n : 1));
    for (u64 i = 0; i < n && (unsigned char *)(p + 2 * i + 2) <= scratch_end(); i++) {
        p[2 * i] = gen_fd();
        p[2 * i + 1] = (int32_t)(chance(70) ? (next() & 0x3f) : next());
    }
    c->count = n;
    return chance(5) ? bad_pointer() : (u64)p;
}

static u64 gen_fdset(void)
{
    if (chance(30))
        return 0;
    if (chance(8))
        return bad_pointer();
    unsigned char *p = alloc(128);
    if (p + 128 <= scratch_end()) {
        memset(p, 0, 128);
        for (int i = 0; i < 4; i++) {
            int fd = gen_fd() & 1023;
            p[fd / 8] |= (unsigned char)(1 << (fd % 8));
        }
    }
    return (u64)p;
}

static u64 gen_epoll_event(void)
{
    if (chance(10))
        return chance(50) ? 0 : bad_pointer();
    unsigned char *p = alloc(12);
    if (p + 12 <= scratch_end())
        fill_random(p, 12);
    return (u64)p;
}

static u64 gen_open_how(struct gen_ctx *c)
{
    u64 *h = (u64 *)alloc(32);
    c->last_size = chance(80) ? 24 : PICK(EDGE) & 0xffff;
    if ((unsigned char *)(h + 4) > scratch_end())
        return (u64)h;
    h[0] = chance(90) ? (next() & 0x3ffffff) : next();
    h[1] = chance(90) ? (next() & 07777) : next();
    h[2] = chance(80) ? (next() & 0x3f) : next();
    h[3] = chance(90) ? 0 : next();
    return chance(5) ? bad_pointer() : (u64)h;
}

static u64 gen_ptr_array(void)
{
    if (chance(15))
        return chance(50) ? 0 : bad_pointer();
    u64 n = below(6);
    u64 *v = (u64 *)alloc(8 * (n + 1));
    for (u64 i = 0; i <= n && (unsigned char *)(v + i + 1) <= scratch_end(); i++)
        v[i] = i == n && chance(90) ? 0 : (chance(70) ? gen_path() : gen_word());
    return (u64)v;
}

static u64 gen_open_flags(void)
{
    static const u64 bits[] = {0100, 0200, 01000, 02000, 04000, 010000, 040000, 0200000,
                               0400000, 01000000, 02000000, 04010000, 010000000,
                               020200000};
    u64 f = below(4);
    for (int i = (int)below(4); i > 0; i--)
        f |= PICK(bits);
    if (chance(60))
        f |= O_NONBLOCK_; /* opening a FIFO would block (the watchdog would end it) */
    if (chance(3))
        f = next();
    return f;
}

static u64 gen_mode(void)
{
    static const u64 types[] = {0, 0, 0, 0010000, 0140000, 0100000, 0020000, 0060000,
                                0040000, 0120000, 0170000};
    return (chance(90) ? below(010000) : next() & 07777) | PICK(types);
}

static u64 gen_flags(void)
{
    switch (below(6)) {
    case 0: return 0;
    case 1: return 1UL << below(32);
    case 2: return next() & 0xff;
    case 3: return PICK(EDGE);
    default: return next() & ((1UL << below(33)) - 1);
    }
}

static u64 gen_prot(void)
{
    static const u64 extra[] = {0x01000000 /* GROWSDOWN */, 0x02000000 /* GROWSUP */, 0x8,
                                0x10};
    u64 p = below(8);
    if (chance(10))
        p |= PICK(extra);
    return chance(3) ? next() : p;
}

static u64 gen_mmap_flags(void)
{
    static const u64 bits[] = {0x10, 0x20, 0x100, 0x800, 0x1000, 0x2000, 0x4000, 0x8000,
                               0x10000, 0x20000, 0x40000, 0x80000, 0x100000, 0x4000000};
    u64 f = chance(85) ? 2 : (chance(50) ? 1 : 3); /* mostly MAP_PRIVATE */
    if (chance(70))
        f |= MAP_ANON_;
    for (int i = (int)below(3); i > 0; i--)
        f |= PICK(bits);
    return chance(3) ? next() : f;
}

static u64 gen_uid(void)
{
    static const u64 uids[] = {0, 0, 0, 1, 1000, 65534, 0xffffffff, 0x7fffffff, 12345};
    return chance(90) ? PICK(uids) : next();
}

static u64 gen_ioctl_request(void)
{
    static const u64 requests[] = {
        0x541b /* FIONREAD */, 0x5421 /* FIONBIO */, 0x5451 /* FIOCLEX */,
        0x5450 /* FIONCLEX */, 0x5452 /* FIOASYNC */, 0x5401 /* TCGETS */,
        0x5413 /* TIOCGWINSZ */, 0x5411 /* TIOCOUTQ */, 0x540f /* TIOCGPGRP */,
        0x5429 /* TIOCGSID */, 0x80045430 /* TIOCGPTN */, 2 /* FIGETBSZ */, 1 /* FIBMAP */,
        0x80086601 /* FS_IOC_GETFLAGS */, 0x80087601 /* FS_IOC_GETVERSION */,
        0x40049409 /* FICLONE */, 0x5460 /* FIOQSIZE */, 0x8912 /* SIOCGIFCONF */,
        0x8913 /* SIOCGIFFLAGS */, 0x8915 /* SIOCGIFADDR */, 0x8933 /* SIOCGIFINDEX */,
        0x8910 /* SIOCGIFNAME */, 0x8921 /* SIOCGIFMTU */, 0x8905 /* SIOCATMARK */,
        0x8906 /* SIOCGSTAMP */, 0xae00 /* KVM_GET_API_VERSION */, 0xae01 /* KVM_CREATE_VM */,
        0xae03 /* KVM_CHECK_EXTENSION */, 0xae04 /* KVM_GET_VCPU_MMAP_SIZE */,
        0xae80 /* KVM_RUN */, 0x4020ae46 /* KVM_SET_USER_MEMORY_REGION */,
        0x8090ae81 /* KVM_GET_REGS */, 0xb701 /* NS_GET_USERNS */, 0x80084504,
        0xc0184800, 0x4004ae8b,
    };
    u64 req = chance(75) ? PICK(requests) : (chance(50) ? (uint32_t)next() : next());
    /* Requests that change the host whatever the fd: freeze/shut down filesystems ('X'),
     * file and ext4 attributes ('f', except the getters above), block devices (0x12),
     * btrfs (0x94), consoles ('K'), loop devices ('L'), terminal input injection and
     * ownership ('T' setters), interface and route setters (0x89). */
    uint32_t cmd = (uint32_t)req;
    unsigned type = (cmd >> 8) & 0xff;
    int getter = cmd == 0x80086601 || cmd == 0x80087601;
    if (!getter && (type == 'X' || type == 'f' || type == 0x12 || type == 0x94 ||
                    type == 'K' || type == 'L' || type == 'V'))
        return 0x541b;
    if (type == 'T' && cmd != 0x5401 && cmd != 0x5413 && cmd != 0x541b && cmd != 0x5421 &&
        cmd != 0x5411 && cmd != 0x540f && cmd != 0x5429 && cmd != 0x5450 && cmd != 0x5451 &&
        cmd != 0x5452 && cmd != 0x5460 && cmd != 0x80045430)
        return 0x541b;
    if (type == 0x89 && (cmd & 0xff) != 0x12 && (cmd & 0xff) != 0x13 &&
        (cmd & 0xff) != 0x15 && (cmd & 0xff) != 0x33 && (cmd & 0xff) != 0x10 &&
        (cmd & 0xff) != 0x21 && (cmd & 0xff) != 0x05 && (cmd & 0xff) != 0x06)
        return 0x8913;
    if (type == 0x8b) /* wireless */
        return 0x8913;
    return req;
}

/* ---------------------------------------------------------------------------------------
 * The table: number, name, one letter per argument, weight, flags.
 *
 *   a mm address     L mm length      r prot          M mmap flags    i int (edge-biased)
 *   f fd             d dirfd          p path          o open flags    m mode
 *   b in buffer      B out buffer     l its length    x in struct     X out struct
 *   v in iovec[]     V out iovec[]    c its count     h msghdr (send) H msghdr (recv)
 *   6 mmsghdr[] send 7 mmsghdr[] recv j argv/envp[]   g xattr name    n small count
 *   k sockaddr       K its length     q sockaddr out  Q socklen ptr   e domain
 *   D socket type    O sockopt level  N sockopt name  E epoll_event   y pollfd[]
 *   t timespec       u timeval        T itimerspec    Y itimerval     Z fd_set
 *   s signal to send S sigset         z sigset size   A sigaction     R rlimit resource
 *   G rlimit         J open_how       P our pid/bogus w any pid       U uid/gid
 *   W selector       F flags          I ioctl request  (other: garbage, must be ignored)
 */
enum { SKIP = 1, NS = 2, FORKISH = 4, MM = 8 };

struct syscall_def {
    short nr;
    const char *name;
    const char *sig;
    unsigned char weight, flags;
};

static const struct syscall_def TABLE[] = {
    {0, "read", "fBl", 8, 0},           {1, "write", "fbl", 8, 0},
    {2, "open", "pom", 8, 0},           {3, "close", "f", 4, 0},
    {4, "stat", "pX", 4, 0},            {5, "fstat", "fX", 4, 0},
    {6, "lstat", "pX", 4, 0},           {7, "poll", "yci", 4, 0},
    {8, "lseek", "fiW", 4, 0},          {9, "mmap", "aLrMfi", 8, MM},
    {10, "mprotect", "aLr", 6, MM},     {11, "munmap", "aL", 6, MM},
    {12, "brk", "a", 4, 0},             {13, "rt_sigaction", "iAXz", 6, 0},
    {14, "rt_sigprocmask", "WSXz", 6, 0}, {15, "rt_sigreturn", "", 0, SKIP},
    {16, "ioctl", "fIx", 8, 0},         {17, "pread64", "fBli", 4, 0},
    {18, "pwrite64", "fbli", 4, 0},     {19, "readv", "fVc", 6, 0},
    {20, "writev", "fvc", 6, 0},        {21, "access", "pi", 3, 0},
    {22, "pipe", "X", 3, 0},            {23, "select", "nZZZu", 3, 0},
    {24, "sched_yield", "", 1, 0},      {25, "mremap", "aLLFa", 6, MM},
    {26, "msync", "aLF", 3, 0},         {27, "mincore", "aLB", 6, 0},
    {28, "madvise", "aLW", 6, MM},      {29, "shmget", "iLF", 2, NS},
    {30, "shmat", "iaF", 2, NS | MM},   {31, "shmctl", "iWx", 2, NS},
    {32, "dup", "f", 3, 0},             {33, "dup2", "ff", 3, 0},
    {34, "pause", "", 1, 0},            {35, "nanosleep", "tX", 2, 0},
    {36, "getitimer", "WX", 2, 0},      {37, "alarm", "i", 2, 0},
    {38, "setitimer", "WYX", 3, 0},     {39, "getpid", "", 1, 0},
    {40, "sendfile", "ffxl", 4, 0},     {41, "socket", "eDi", 6, 0},
    {42, "connect", "fkK", 5, 0},       {43, "accept", "fqQ", 3, 0},
    {44, "sendto", "fblFkK", 5, 0},     {45, "recvfrom", "fBlFqQ", 5, 0},
    {46, "sendmsg", "fhF", 6, 0},       {47, "recvmsg", "fHF", 6, 0},
    {48, "shutdown", "fW", 2, 0},       {49, "bind", "fkK", 5, 0},
    {50, "listen", "fi", 2, 0},         {51, "getsockname", "fqQ", 3, 0},
    {52, "getpeername", "fqQ", 3, 0},   {53, "socketpair", "eDiX", 3, 0},
    {54, "setsockopt", "fONbl", 6, 0},  {55, "getsockopt", "fONBQ", 6, 0},
    {56, "clone", "FaXXi", 2, FORKISH}, {57, "fork", "", 1, FORKISH},
    {58, "vfork", "", 1, FORKISH},      {59, "execve", "pjj", 3, 0},
    {60, "exit", "i", 0, SKIP},         {61, "wait4", "wXFX", 3, 0},
    {62, "kill", "Ps", 3, 0},           {63, "uname", "X", 2, 0},
    {64, "semget", "iiF", 2, NS},       {65, "semop", "ixn", 2, NS},
    {66, "semctl", "iiWx", 2, NS},      {67, "shmdt", "a", 2, NS | MM},
    {68, "msgget", "iF", 2, NS},        {69, "msgsnd", "iblF", 2, NS},
    {70, "msgrcv", "iBliF", 2, NS},     {71, "msgctl", "iWx", 2, NS},
    {72, "fcntl", "fWi", 8, 0},         {73, "flock", "fW", 2, 0},
    {74, "fsync", "f", 1, 0},           {75, "fdatasync", "f", 1, 0},
    {76, "truncate", "pi", 3, 0},       {77, "ftruncate", "fi", 3, 0},
    {78, "getdents", "fBl", 4, 0},      {79, "getcwd", "Bl", 3, 0},
    {80, "chdir", "p", 2, 0},           {81, "fchdir", "f", 2, 0},
    {82, "rename", "pp", 4, 0},         {83, "mkdir", "pm", 4, 0},
    {84, "rmdir", "p", 3, 0},           {85, "creat", "pm", 3, 0},
    {86, "link", "pp", 3, 0},           {87, "unlink", "p", 3, 0},
    {88, "symlink", "pp", 4, 0},        {89, "readlink", "pBl", 4, 0},
    {90, "chmod", "pm", 3, 0},          {91, "fchmod", "fm", 2, 0},
    {92, "chown", "pUU", 2, 0},         {93, "fchown", "fUU", 2, 0},
    {94, "lchown", "pUU", 2, 0},        {95, "umask", "m", 1, 0},
    {96, "gettimeofday", "XX", 2, 0},   {97, "getrlimit", "RX", 2, 0},
    {98, "getrusage", "WX", 2, 0},      {99, "sysinfo", "X", 2, 0},
    {100, "times", "X", 2, 0},          {101, "ptrace", "iPaa", 2, 0},
    {102, "getuid", "", 1, 0},          {103, "syslog", "WBl", 1, 0},
    {104, "getgid", "", 1, 0},          {105, "setuid", "U", 1, 0},
    {106, "setgid", "U", 1, 0},         {107, "geteuid", "", 1, 0},
    {108, "getegid", "", 1, 0},         {109, "setpgid", "PP", 2, 0},
    {110, "getppid", "", 1, 0},         {111, "getpgrp", "", 1, 0},
    {112, "setsid", "", 1, 0},          {113, "setreuid", "UU", 1, 0},
    {114, "setregid", "UU", 1, 0},      {115, "getgroups", "nX", 2, 0},
    {116, "setgroups", "nx", 1, 0},     {117, "setresuid", "UUU", 1, 0},
    {118, "getresuid", "XXX", 2, 0},    {119, "setresgid", "UUU", 1, 0},
    {120, "getresgid", "XXX", 2, 0},    {121, "getpgid", "w", 2, 0},
    {122, "setfsuid", "U", 1, 0},       {123, "setfsgid", "U", 1, 0},
    {124, "getsid", "w", 2, 0},         {125, "capget", "xX", 2, 0},
    {126, "capset", "xx", 1, 0},        {127, "rt_sigpending", "Xz", 2, 0},
    {128, "rt_sigtimedwait", "SXtz", 3, 0}, {129, "rt_sigqueueinfo", "Psx", 3, 0},
    {130, "rt_sigsuspend", "Sz", 2, 0}, {131, "sigaltstack", "xX", 3, 0},
    {132, "utime", "px", 2, 0},         {133, "mknod", "pmi", 3, 0},
    {134, "uselib", "p", 1, 0},         {135, "personality", "i", 2, 0},
    {136, "ustat", "iX", 1, 0},         {137, "statfs", "pX", 2, 0},
    {138, "fstatfs", "fX", 2, 0},       {139, "sysfs", "WiX", 1, 0},
    {140, "getpriority", "Wi", 2, 0},   {141, "setpriority", "WPi", 2, 0},
    {142, "sched_setparam", "Px", 1, 0}, {143, "sched_getparam", "wX", 1, 0},
    {144, "sched_setscheduler", "Pix", 1, 0}, {145, "sched_getscheduler", "w", 1, 0},
    {146, "sched_get_priority_max", "i", 1, 0}, {147, "sched_get_priority_min", "i", 1, 0},
    {148, "sched_rr_get_interval", "wX", 1, 0}, {149, "mlock", "aL", 3, 0},
    {150, "munlock", "aL", 2, 0},       {151, "mlockall", "F", 0, SKIP},
    {152, "munlockall", "", 1, 0},      {153, "vhangup", "", 0, SKIP},
    {154, "modify_ldt", "Wxl", 2, 0},   {155, "pivot_root", "pp", 1, NS},
    {156, "_sysctl", "x", 1, 0},        {157, "prctl", "iiiii", 6, 0},
    {158, "arch_prctl", "ia", 4, 0},    {159, "adjtimex", "x", 1, 0},
    {160, "setrlimit", "RG", 3, 0},     {161, "chroot", "p", 1, 0},
    {162, "sync", "", 1, 0},            {163, "acct", "p", 0, SKIP},
    {164, "settimeofday", "xx", 0, SKIP}, {165, "mount", "pppFx", 1, NS},
    {166, "umount2", "pF", 1, NS},      {167, "swapon", "pF", 0, SKIP},
    {168, "swapoff", "p", 0, SKIP},     {169, "reboot", "iiix", 0, SKIP},
    {170, "sethostname", "bl", 1, NS},  {171, "setdomainname", "bl", 1, NS},
    {172, "iopl", "i", 0, SKIP},        {173, "ioperm", "iii", 0, SKIP},
    {174, "create_module", "pi", 1, 0}, {175, "init_module", "blp", 0, SKIP},
    {176, "delete_module", "pF", 0, SKIP}, {177, "get_kernel_syms", "X", 1, 0},
    {178, "query_module", "piBlX", 1, 0}, {179, "quotactl", "ipix", 0, SKIP},
    {180, "nfsservctl", "ixX", 1, 0},   {181, "getpmsg", "xxxxx", 1, 0},
    {182, "putpmsg", "xxxxx", 1, 0},    {183, "afs_syscall", "xxxxx", 1, 0},
    {184, "tuxcall", "xxx", 1, 0},      {185, "security", "xxx", 1, 0},
    {186, "gettid", "", 1, 0},          {187, "readahead", "fil", 2, 0},
    {188, "setxattr", "pgblF", 3, 0},   {189, "lsetxattr", "pgblF", 2, 0},
    {190, "fsetxattr", "fgblF", 2, 0},  {191, "getxattr", "pgBl", 3, 0},
    {192, "lgetxattr", "pgBl", 2, 0},   {193, "fgetxattr", "fgBl", 2, 0},
    {194, "listxattr", "pBl", 2, 0},    {195, "llistxattr", "pBl", 2, 0},
    {196, "flistxattr", "fBl", 2, 0},   {197, "removexattr", "pg", 2, 0},
    {198, "lremovexattr", "pg", 1, 0},  {199, "fremovexattr", "fg", 1, 0},
    {200, "tkill", "Ps", 3, 0},         {201, "time", "X", 2, 0},
    {202, "futex", "xUiti", 6, 0},      {203, "sched_setaffinity", "Plx", 2, 0},
    {204, "sched_getaffinity", "wlX", 2, 0}, {205, "set_thread_area", "x", 1, 0},
    {206, "io_setup", "iX", 2, 0},      {207, "io_destroy", "i", 1, 0},
    {208, "io_getevents", "iiiXt", 2, 0}, {209, "io_submit", "inx", 2, 0},
    {210, "io_cancel", "ixX", 1, 0},    {211, "get_thread_area", "X", 1, 0},
    {212, "lookup_dcookie", "iXl", 1, 0}, {213, "epoll_create", "i", 2, 0},
    {214, "epoll_ctl_old", "xxxx", 1, 0}, {215, "epoll_wait_old", "xxxx", 1, 0},
    {216, "remap_file_pages", "aLiiF", 2, MM}, {217, "getdents64", "fBl", 4, 0},
    {218, "set_tid_address", "x", 2, 0}, {219, "restart_syscall", "", 1, 0},
    {220, "semtimedop", "ixnt", 1, NS}, {221, "fadvise64", "fiiW", 2, 0},
    {222, "timer_create", "ixX", 3, 0}, {223, "timer_settime", "nFTX", 3, 0},
    {224, "timer_gettime", "nX", 2, 0}, {225, "timer_getoverrun", "n", 1, 0},
    {226, "timer_delete", "n", 2, 0},   {227, "clock_settime", "ix", 0, SKIP},
    {228, "clock_gettime", "iX", 2, 0}, {229, "clock_getres", "iX", 2, 0},
    {230, "clock_nanosleep", "iFtX", 2, 0}, {231, "exit_group", "i", 0, SKIP},
    {232, "epoll_wait", "fXni", 3, 0},  {233, "epoll_ctl", "fWfE", 4, 0},
    {234, "tgkill", "PPs", 3, 0},       {235, "utimes", "px", 2, 0},
    {236, "vserver", "xxxxx", 1, 0},    {237, "mbind", "aLWxiF", 2, MM},
    {238, "set_mempolicy", "Wxi", 2, 0}, {239, "get_mempolicy", "XXiaF", 2, 0},
    {240, "mq_open", "pomx", 2, NS},    {241, "mq_unlink", "p", 1, NS},
    {242, "mq_timedsend", "fblit", 1, NS}, {243, "mq_timedreceive", "fBlXt", 1, NS},
    {244, "mq_notify", "fx", 1, NS},    {245, "mq_getsetattr", "fxX", 1, NS},
    {246, "kexec_load", "iixF", 0, SKIP}, {247, "waitid", "WwXFX", 3, 0},
    {248, "add_key", "ppblf", 0, SKIP}, {249, "request_key", "pppf", 0, SKIP},
    {250, "keyctl", "iiiii", 0, SKIP},  {251, "ioprio_set", "WPi", 1, 0},
    {252, "ioprio_get", "Ww", 1, 0},    {253, "inotify_init", "", 2, 0},
    {254, "inotify_add_watch", "fpF", 3, 0}, {255, "inotify_rm_watch", "fi", 2, 0},
    {256, "migrate_pages", "Pixx", 1, 0}, {257, "openat", "dpom", 8, 0},
    {258, "mkdirat", "dpm", 3, 0},      {259, "mknodat", "dpmi", 2, 0},
    {260, "fchownat", "dpUUF", 2, 0},   {261, "futimesat", "dpx", 2, 0},
    {262, "newfstatat", "dpXF", 4, 0},  {263, "unlinkat", "dpF", 3, 0},
    {264, "renameat", "dpdp", 3, 0},    {265, "linkat", "dpdpF", 3, 0},
    {266, "symlinkat", "pdp", 3, 0},    {267, "readlinkat", "dpBl", 3, 0},
    {268, "fchmodat", "dpmF", 2, 0},    {269, "faccessat", "dpiF", 2, 0},
    {270, "pselect6", "nZZZtx", 3, 0},  {271, "ppoll", "yctSz", 3, 0},
    {272, "unshare", "F", 1, 0},        {273, "set_robust_list", "xl", 2, 0},
    {274, "get_robust_list", "wXX", 2, 0}, {275, "splice", "fxfxlF", 3, 0},
    {276, "tee", "fflF", 2, 0},         {277, "sync_file_range", "fiiF", 2, 0},
    {278, "vmsplice", "fvcF", 2, 0},    {279, "move_pages", "PnxxXF", 1, 0},
    {280, "utimensat", "dpxF", 3, 0},   {281, "epoll_pwait", "fXniSz", 3, 0},
    {282, "signalfd", "fSz", 2, 0},     {283, "timerfd_create", "iF", 2, 0},
    {284, "eventfd", "i", 2, 0},        {285, "fallocate", "fFii", 3, 0},
    {286, "timerfd_settime", "fFTX", 2, 0}, {287, "timerfd_gettime", "fX", 2, 0},
    {288, "accept4", "fqQF", 3, 0},     {289, "signalfd4", "fSzF", 2, 0},
    {290, "eventfd2", "iF", 2, 0},      {291, "epoll_create1", "F", 2, 0},
    {292, "dup3", "ffF", 3, 0},         {293, "pipe2", "XF", 3, 0},
    {294, "inotify_init1", "F", 2, 0},  {295, "preadv", "fVcii", 3, 0},
    {296, "pwritev", "fvcii", 3, 0},    {297, "rt_tgsigqueueinfo", "PPsx", 2, 0},
    {298, "perf_event_open", "xPiiF", 1, 0}, {299, "recvmmsg", "f7cFt", 3, 0},
    {300, "fanotify_init", "FF", 0, SKIP}, {301, "fanotify_mark", "fFidp", 0, SKIP},
    {302, "prlimit64", "PRGX", 3, 0},   {303, "name_to_handle_at", "dpxXF", 2, 0},
    {304, "open_by_handle_at", "fxo", 1, 0}, {305, "clock_adjtime", "ix", 1, 0},
    {306, "syncfs", "f", 1, 0},         {307, "sendmmsg", "f6cF", 3, 0},
    {308, "setns", "fF", 0, SKIP},      {309, "getcpu", "XXx", 2, 0},
    {310, "process_vm_readv", "PVcvcF", 2, 0}, {311, "process_vm_writev", "PvcvcF", 1, NS},
    {312, "kcmp", "wwWii", 1, 0},       {313, "finit_module", "fpF", 0, SKIP},
    {314, "sched_setattr", "PxF", 1, 0}, {315, "sched_getattr", "wXlF", 1, 0},
    {316, "renameat2", "dpdpF", 3, 0},  {317, "seccomp", "WFx", 1, 0},
    {318, "getrandom", "BlF", 2, 0},    {319, "memfd_create", "pF", 3, 0},
    {320, "kexec_file_load", "ffipF", 0, SKIP}, {321, "bpf", "ixl", 0, SKIP},
    {322, "execveat", "dpjjF", 2, 0},   {323, "userfaultfd", "F", 0, SKIP},
    {324, "membarrier", "WFi", 1, 0},   {325, "mlock2", "aLF", 2, 0},
    {326, "copy_file_range", "fxfxlF", 3, 0}, {327, "preadv2", "fVciiF", 3, 0},
    {328, "pwritev2", "fvciiF", 3, 0},  {329, "pkey_mprotect", "aLri", 2, MM},
    {330, "pkey_alloc", "Fi", 1, 0},    {331, "pkey_free", "i", 1, 0},
    {332, "statx", "dpFiX", 4, 0},      {333, "io_pgetevents", "iiiXtx", 1, 0},
    {334, "rseq", "xlFi", 1, 0},        {424, "pidfd_send_signal", "fsxF", 2, 0},
    {425, "io_uring_setup", "ix", 0, SKIP}, {426, "io_uring_enter", "fiiFxl", 0, SKIP},
    {427, "io_uring_register", "fixi", 0, SKIP}, {428, "open_tree", "dpF", 1, NS},
    {429, "move_mount", "dpdpF", 1, NS}, {430, "fsopen", "pF", 1, NS},
    {431, "fsconfig", "fWppi", 1, NS},  {432, "fsmount", "fFF", 1, NS},
    {433, "fspick", "dpF", 1, NS},      {434, "pidfd_open", "PF", 2, 0},
    {435, "clone3", "xl", 2, FORKISH},  {436, "close_range", "iiF", 2, 0},
    {437, "openat2", "dpJl", 5, 0},     {438, "pidfd_getfd", "fiF", 2, 0},
    {439, "faccessat2", "dpiF", 2, 0},  {440, "process_madvise", "fvcWF", 1, 0},
    {441, "epoll_pwait2", "fXntSz", 2, 0}, {442, "mount_setattr", "dpFxl", 1, NS},
    {443, "quotactl_fd", "fiix", 0, SKIP}, {444, "landlock_create_ruleset", "xlF", 1, 0},
    {445, "landlock_add_rule", "fWxF", 1, 0}, {446, "landlock_restrict_self", "fF", 1, 0},
    {447, "memfd_secret", "F", 1, 0},   {448, "process_mrelease", "fF", 1, 0},
    {449, "futex_waitv", "xnFti", 2, 0}, {450, "set_mempolicy_home_node", "aLiF", 1, MM},
    {451, "cachestat", "fxXF", 1, 0},   {452, "fchmodat2", "dpmF", 2, 0},
    {453, "map_shadow_stack", "aLF", 1, MM}, {454, "futex_wake", "xiiF", 2, 0},
    {455, "futex_wait", "xiiFti", 2, 0}, {456, "futex_requeue", "xFii", 1, 0},
    {457, "statmount", "xBlF", 1, 0},   {458, "listmount", "xBnF", 1, 0},
    {459, "lsm_get_self_attr", "WXxF", 1, 0}, {460, "lsm_set_self_attr", "WxlF", 1, 0},
    {461, "lsm_list_modules", "XxF", 1, 0}, {462, "mseal", "aLF", 1, MM},
};
#define TABLE_LEN (sizeof TABLE / sizeof TABLE[0])

static const struct syscall_def *by_nr[512];
static unsigned total_weight;

static const struct syscall_def *lookup(u64 nr)
{
    return nr < 512 ? by_nr[nr] : NULL;
}

static const struct syscall_def *pick_syscall(void)
{
    for (;;) {
        unsigned w = (unsigned)below(total_weight);
        for (size_t i = 0; i < TABLE_LEN; i++) {
            const struct syscall_def *d = &TABLE[i];
            if ((d->flags & SKIP) || ((d->flags & NS) && !nsmode))
                continue;
            if (w < d->weight)
                return d;
            w -= d->weight;
        }
    }
}

/* ---------------------------------------------------------------------------------------
 * One call: generate, neuter, make, repair. */

struct call {
    u64 nr;   /* what goes in rax (may carry junk in its high bits) */
    u64 base; /* the syscall it means */
    u64 a[6];
    const struct syscall_def *def;
    int skip;  /* made harmless by replacing it with getpid */
    int touch; /* not a syscall: read (a[1] == 0) or write byte a[2] at a[0] */
};

static void gen_args(struct call *c)
{
    struct gen_ctx ctx = {0, 0, -1};
    const char *sig = c->def ? c->def->sig : "";
    for (int i = 0; i < 6; i++)
        c->a[i] = next(); /* unused registers: garbage, which must be ignored */
    for (int i = 0; sig[i] && i < 6; i++) {
        u64 v;
        switch (sig[i]) {
        case 'a': v = gen_mm_addr(); break;
        case 'L': v = gen_mm_len(); break;
        case 'r': v = gen_prot(); break;
        case 'M': v = gen_mmap_flags(); break;
        case 'i': v = gen_int(); break;
        case 'n': v = gen_small(); break;
        case 'W': v = chance(85) ? below(17) : PICK(EDGE); break;
        case 'F': v = gen_flags(); break;
        case 'f': v = gen_fd_arg(); break;
        case 'd': v = chance(60) ? (u64)AT_FDCWD_ : gen_fd_arg(); break;
        case 'p': v = gen_path(); break;
        case 'g': { /* xattr name */
            static const char *const xn[] = {"user.a", "user.", "trusted.a", "security.a",
                                             "system.posix_acl_access", "security.capability",
                                             "a", "", "user.aaaaaaaaaaaaaaaaaaaaaaaaaaaaaa"};
            const char *s = PICK(xn);
            size_t n = strlen(s) + 1;
            unsigned char *p = alloc(n);
            if (p + n <= scratch_end())
                memcpy(p, s, n);
            v = chance(5) ? bad_pointer() : (u64)p;
            break;
        }
        case 'o': v = gen_open_flags(); break;
        case 'm': v = gen_mode(); break;
        case 'b': ctx.last_size = gen_buf_size(); v = in_target(ctx.last_size); break;
        case 'B': ctx.last_size = gen_buf_size(); v = out_target(ctx.last_size); break;
        case 'l': v = gen_len(&ctx); break;
        case 'x': ctx.last_size = gen_struct_size(); v = gen_struct_in(ctx.last_size); break;
        case 'X': ctx.last_size = gen_struct_size(); v = out_target(ctx.last_size); break;
        case 'v': v = gen_iovec(&ctx, 0); break;
        case 'V': v = gen_iovec(&ctx, 1); break;
        case 'c': v = gen_count(&ctx); break;
        case 'h': v = gen_msghdr(&ctx, 0); break;
        case 'H': v = gen_msghdr(&ctx, 1); break;
        case '6': v = gen_mmsghdr(&ctx, 0); break;
        case '7': v = gen_mmsghdr(&ctx, 1); break;
        case 'j': v = gen_ptr_array(); break;
        case 'k': v = gen_sockaddr(&ctx); break;
        case 'K': v = chance(80) ? ctx.last_size : PICK(EDGE); break;
        case 'q': v = out_target(128); break;
        case 'Q': v = gen_socklen_ptr(); break;
        case 'e': {
            static const u64 domains[] = {1, 1, 2, 2, 10, 10, 16, 17, 38, 40, 0, 44, 255};
            v = chance(90) ? PICK(domains) : gen_int();
            if (!nsmode && (v == 15 || v == 16 || v == 17))
                v = 1;
            break;
        }
        case 'D': v = (chance(80) ? 1 + below(5) : gen_int()) | (chance(30) ? 04000 : 0) |
                      (chance(30) ? 02000000 : 0);
                  if (!nsmode && (v & 0xf) == 3) /* raw sockets: only in a netns */
                      v = 2;
                  break;
        case 'O': { static const u64 levels[] = {1, 0, 6, 17, 41, 263, 0xffff, 270};
                    v = chance(85) ? PICK(levels) : gen_int(); break; }
        case 'N': v = chance(85) ? below(70) : gen_int(); break;
        case 'E': v = gen_epoll_event(); break;
        case 't': v = gen_timespec(0); break;
        case 'u': v = gen_timespec(1); break;
        case 'T': v = gen_itimer(0); break;
        case 'Y': v = gen_itimer(1); break;
        case 's': v = gen_signal(); break;
        case 'S': v = gen_sigset(); break;
        case 'z': v = chance(85) ? 8 : PICK(EDGE); break;
        case 'A': v = gen_sigaction(); break;
        case 'P': v = gen_target_pid(); break;
        case 'w': v = chance(50) ? (u64)self_pid : gen_int(); break;
        case 'U': v = gen_uid(); break;
        case 'I': v = gen_ioctl_request(); break;
        case 'R': ctx.resource = (int)(chance(90) ? below(16) : gen_int());
                  v = (u64)(i64)ctx.resource; break;
        case 'G': v = gen_rlimit(&ctx); break;
        case 'J': v = gen_open_how(&ctx); break;
        case 'Z': v = gen_fdset(); break;
        case 'y': v = gen_pollfds(&ctx); break;
        default: v = c->a[i]; break;
        }
        c->a[i] = v;
    }
}

static u64 gen_clone_flags(void)
{
    static const u64 fork_bits[] = {0x100000 /* PARENT_SETTID */, 0x1000000 /* CHILD_SETTID */,
                                    0x200000 /* CHILD_CLEARTID */, 0x80000 /* SETTLS */,
                                    0x1000 /* PIDFD */, 0x4000 /* VFORK */, 0x8000 /* PARENT */,
                                    0x200 /* FS */, 0x400 /* FILES */, 0x40000 /* SYSVSEM */,
                                    0x20000 /* NEWNS */, 0x4000000 /* NEWUTS */};
    switch (below(10)) {
    case 0: case 1: case 2: case 3: case 4: { /* fork-like */
        u64 f = chance(80) ? 17 : (u64)PICK(SAFE_SIGNALS);
        for (int i = (int)below(3); i > 0; i--)
            f |= PICK(fork_bits);
        return f;
    }
    case 5: case 6: case 7: /* a thread */
        return 0x100 | 0x200 | 0x400 | 0x800 | 0x10000 | 0x40000 |
               (chance(50) ? 0x80000 : 0) | (chance(50) ? 0x300000 : 0);
    default: { /* anything, but the low byte is the signal the parent gets */
        u64 f = chance(50) ? (uint32_t)next() : next();
        return (f & ~0xffUL) | (u64)PICK(SAFE_SIGNALS);
    }
    }
}

/* Make the dangerous harmless. Returns nonzero to skip the call entirely. */
static int neuter(struct call *c, int lethal)
{
    u64 *a = c->a;
    switch (c->base) {
    case NR_mmap:
        if ((a[3] & (MAP_FIXED_ | MAP_FIXED_NOREPLACE_)) && !lethal && keep_off(&a[0], &a[1]))
            return 1;
        if (a[1] > (256UL << 20) && a[1] < (1UL << 46) && (a[3] & 0x8000 /* POPULATE */))
            a[3] &= ~0x8000UL; /* km's guest memory is bounded, but keep runs quick */
        break;
    case NR_madvise:
        if (a[2] == 100 || a[2] == 101) /* MADV_HWPOISON, MADV_SOFT_OFFLINE: host pages */
            a[2] = 4;
        /* fall through */
    case NR_mprotect: case NR_munmap: case 216 /* remap_file_pages */: case 237 /* mbind */:
    case 329 /* pkey_mprotect */: case 453 /* map_shadow_stack */: case 462 /* mseal */:
    case 450 /* set_mempolicy_home_node */:
        if (!lethal && keep_off(&a[0], &a[1]))
            return 1;
        break;
    case 30: { /* shmat(id, addr, flags) maps up to the segment's size */
        u64 len = 1UL << 24;
        if (keep_off(&a[1], &len))
            return 1;
        break;
    }
    case 67: { /* shmdt(addr) */
        u64 len = 1UL << 24;
        if (keep_off(&a[0], &len))
            return 1;
        break;
    }
    case NR_mremap:
        if (!lethal && keep_off(&a[0], &a[1]))
            return 1;
        if (!lethal && (a[3] & 2 /* MREMAP_FIXED */) && keep_off(&a[4], &a[2]))
            return 1;
        break;
    case NR_brk: /* below the break: glibc's TLS; libc's own heap is not ours to shrink */
        if (a[0] < initial_brk && a[0] >= initial_brk - (1UL << 24) && !lethal)
            a[0] = 0;
        break;
    case NR_rt_sigaction:
        if ((int)a[0] == SIGALRM_)
            a[0] = 10;
        break;
    case NR_kill: case 200 /* tkill */: case 129 /* rt_sigqueueinfo */:
        if ((int)a[0] <= 0 && (int)a[0] != (int)0x80000000)
            a[0] = (u64)self_pid;
        break;
    case 141: case 251: /* setpriority, ioprio_set: PRIO_USER/IOPRIO_WHO_USER is everyone */
        if (!nsmode && a[0] == (c->base == 141 ? 2u : 3u))
            a[1] = 4000000;
        if (!nsmode && a[0] == (c->base == 141 ? 1u : 2u))
            a[1] = 0x3ffffff0; /* a process group that does not exist */
        break;
    case 144: /* sched_setscheduler: no real-time policies (they can starve the host) */
        if ((a[1] & 0xff) == 1 || (a[1] & 0xff) == 2 || (a[1] & 0xff) == 6)
            a[1] = chance(50) ? 0 : 3;
        break;
    case 314: { /* sched_setattr: the same, in the structure */
        uint32_t *attr = (uint32_t *)a[1];
        if (in_scratch(a[1], 8)) {
            if (attr[1] == 1 || attr[1] == 2 || attr[1] == 6)
                attr[1] = 0;
        } else if (a[1] >= (u64)scratch && a[1] < (u64)scratch_end()) {
            return 1;
        }
        break;
    }
    case NR_fcntl:
        if (chance(80)) {
            static const u64 cmds[] = {0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 15, 16, 36, 37,
                                       38, 1024, 1025, 1026, 1030, 1031, 1032, 1033, 1034,
                                       1035, 1036, 1037, 1038};
            a[1] = PICK(cmds);
        }
        if ((uint32_t)a[1] == 8 /* F_SETOWN */ && (int)a[2] != 0)
            a[2] = chance(50) ? (u64)self_pid : 0x3ffffff0;
        if ((uint32_t)a[1] == 10 /* F_SETSIG */)
            a[2] = (u64)PICK(SAFE_SIGNALS);
        if ((uint32_t)a[1] == 15 /* F_SETOWN_EX */) {
            uint32_t *own = (uint32_t *)alloc(8);
            if ((unsigned char *)(own + 2) > scratch_end())
                return 1;
            own[0] = (uint32_t)below(4);
            own[1] = chance(50) ? (uint32_t)self_pid : (uint32_t)self_tid;
            a[2] = (u64)own;
        }
        if ((uint32_t)a[1] == 5 || (uint32_t)a[1] == 6 || (uint32_t)a[1] == 7 ||
            ((uint32_t)a[1] >= 36 && (uint32_t)a[1] <= 38))
            a[2] = gen_struct_in(32); /* struct flock */
        break;
    case 101: /* ptrace: only ourselves or nobody; never TRACEME (our parent is no tracer:
               * every signal would stop us for good) */
        if (a[0] == 0)
            a[0] = 3;
        if (a[0] == 16 || a[0] == 0x4206) /* ATTACH, SEIZE */
            a[1] = chance(50) ? (u64)self_pid : 0x3ffffff0;
        break;
    case 103: /* syslog: only the reading actions that consume nothing */
        if (a[0] != 3 && a[0] != 9 && a[0] != 10 && a[0] < 64)
            a[0] = 3;
        break;
    case NR_prctl:
        if (chance(70)) {
            static const u64 options[] = {1, 2, 3, 4, 8, 15, 16, 23, 24, 29, 36, 37, 38, 39,
                                          40, 41, 42, 43, 47, 52, 53, 57, 58, 64, 65, 66,
                                          67, 68, 0x53564d41, 35, 22, 26, 62};
            a[0] = PICK(options);
        }
        if (chance(40)) /* the PR_GET_* options write through arg2 */
            a[1] = out_target(64);
        if ((int)a[0] == 22 && a[1] == 1) /* PR_SET_SECCOMP strict: the next call is fatal */
            a[1] = 2;
        if ((int)a[0] == 59) /* PR_SET_SYSCALL_USER_DISPATCH: every call a SIGSYS */
            return 1;
        if ((int)a[0] == 62) /* PR_SCHED_CORE: other processes' cookies */
            a[2] = 0;
        break;
    case NR_arch_prctl:
        if (chance(70)) {
            static const u64 codes[] = {0x1001, 0x1002, 0x1003, 0x1004, 0x1011, 0x1012,
                                        0x1021, 0x1022, 0x1023, 0x1024, 0x1025, 0x1026,
                                        0x2001, 0x2002, 0x2003, 0x3001, 0x4001, 0x4002,
                                        0x4003, 0x5002, 0x5004, 0x5005};
            a[0] = PICK(codes);
        }
        if (a[0] == 0x5001 || a[0] == 0x5003) /* enabling/locking a shadow stack */
            return 1;
        if ((a[0] & ~0xfUL) == 0x2000 && overlaps_protected(a[1], 16 * PAGE))
            a[1] = (u64)arena;
        if (a[0] == 0x1003 || a[0] == 0x1004 || a[0] == 0x1011 || a[0] == 0x3001 ||
            a[0] == 0x4001 || a[0] == 0x1022 || a[0] == 0x1024 || a[0] == 0x5002)
            a[1] = out_target(8);
        break;
    case 159: case 305: { /* adjtimex, clock_adjtime: read, never set (modes = 0) */
        u64 *t = (u64 *)a[c->base == 159 ? 0 : 1];
        if ((u64)t >= (u64)scratch && (u64)t < (u64)scratch_end()) {
            if ((u64)(t + 26) > (u64)scratch_end())
                return 1;
            ((uint32_t *)t)[0] = 0;
        } else if (!((u64)t < 0x10000 || (u64)t >= KERNEL_BASE)) {
            return 1; /* somewhere readable that we cannot vet */
        }
        break;
    }
    case NR_setrlimit:
        if (a[0] == RLIMIT_CPU_ && a[1] >= (u64)scratch && a[1] < (u64)scratch_end()) {
            struct gen_ctx cpu = {0, 0, RLIMIT_CPU_};
            a[1] = gen_rlimit(&cpu);
        } else if (a[0] == RLIMIT_CPU_) {
            return 1;
        }
        break;
    case NR_prlimit64:
        if ((int)a[0] < 0 || (a[0] && a[0] != (u64)self_pid))
            a[0] = chance(50) ? 0 : 0x3ffffff0;
        if (a[1] == RLIMIT_CPU_ && a[2]) {
            struct gen_ctx cpu = {0, 0, RLIMIT_CPU_};
            a[2] = gen_rlimit(&cpu);
        }
        break;
    case 133: case 259: { /* mknod(at): no real device numbers */
        u64 *mode = &a[c->base == 133 ? 1 : 2], *dev = &a[c->base == 133 ? 2 : 3];
        if ((*mode & 0170000) == 0020000 || (*mode & 0170000) == 0060000)
            *dev = 0;
        break;
    }
    case 59: case 322: /* execve(at): a path can only name what we created (not us) */
        break;
    case 298: /* perf_event_open: our own process only */
        if ((int)a[1] < 0)
            a[1] = 0;
        break;
    case 317: /* seccomp: never strict mode, never a listener (it could wait on itself) */
        if (a[0] == 0)
            return 1;
        a[1] &= ~8UL;
        break;
    case 222: { /* timer_create: signals from SAFE_SIGNALS to us or our thread */
        if (in_scratch(a[1], 24)) {
            int32_t *sev = (int32_t *)a[1];
            sev[2] = (int32_t)PICK(SAFE_SIGNALS);
            static const int32_t notify[] = {0, 1, 1, 1, 2, 4, 5};
            sev[3] = PICK(notify);
            sev[4] = chance(80) ? (int32_t)self_tid : 0x3ffffff0;
        } else if (a[1]) { /* a sigevent we cannot vet could ask for SIGSEGV */
            a[1] = 0xdead0000;
        }
        break;
    }
    case 424: /* pidfd_send_signal: a pidfd of ours */
        a[1] = (u64)PICK(SAFE_SIGNALS);
        break;
    case 434: /* pidfd_open */
        break;
    case 202: case 455: /* futex, futex_wait */
        if (c->base == 202 && chance(70)) {
            static const u64 ops[] = {0, 1, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 128, 129,
                                      137, 256, 393};
            a[1] = PICK(ops);
        }
        if (c->base == 202 && ((a[1] & 0x7f) == 6 || (a[1] & 0x7f) == 11 ||
                               (a[1] & 0x7f) == 13)) {
            /* LOCK_PI, WAIT_REQUEUE_PI, LOCK_PI2 restart after a signal: only a timeout
             * ends them. Theirs is absolute, so {0, 1} has passed long ago. */
            u64 *ts = (u64 *)alloc(16);
            if (!in_scratch((u64)ts, 16))
                return 1;
            ts[0] = 0;
            ts[1] = 1;
            a[3] = (u64)ts;
        }
        break;
    case NR_setitimer:
        if (a[1] && a[1] >= (u64)scratch && a[1] < (u64)scratch_end() &&
            a[1] + 32 > (u64)scratch_end())
            return 1; /* an interval we could not vet */
        if (a[1] && !(a[1] >= (u64)scratch && a[1] < (u64)scratch_end()) &&
            !((u64)a[1] < 0x10000 || a[1] >= KERNEL_BASE))
            a[1] = 0;
        break;
    case NR_timer_settime: case 286:
        if (a[2] >= (u64)scratch && a[2] < (u64)scratch_end() && a[2] + 32 > (u64)scratch_end())
            return 1;
        if (a[2] && !(a[2] >= (u64)scratch && a[2] < (u64)scratch_end()) &&
            !(a[2] < 0x10000 || a[2] >= KERNEL_BASE))
            a[2] = 0;
        break;
    case 270: { /* pselect6: its sixth argument is {sigset *, size}, a temporary mask */
        u64 *arg = (u64 *)alloc(16);
        if (!in_scratch((u64)arg, 16))
            return 1;
        arg[0] = gen_sigset();
        arg[1] = chance(85) ? 8 : PICK(EDGE);
        a[5] = chance(10) ? 0 : (u64)arg;
        break;
    }
    case NR_close_range:
        if ((uint32_t)a[0] < 3)
            a[0] = 3 + below(20);
        break;
    case NR_clone: {
        a[0] = gen_clone_flags();
        if (a[0] & CLONE_VM_) /* a thread or a CLONE_VM child: a stack of its own */
            a[1] = (u64)tstack + TSTACK_LEN - 256;
        else if (chance(70))
            a[1] = 0;
        a[2] = out_target(8);
        a[3] = out_target(8);
        return forks >= MAX_FORKS; /* decided last: generation must not depend on it */
    }
    case NR_clone3: {
        u64 *args = (u64 *)alloc(88);
        if ((unsigned char *)(args + 11) > scratch_end())
            return 1;
        args[0] = gen_clone_flags() & ~0xffUL;
        args[1] = out_target(4);                        /* pidfd */
        args[2] = out_target(8);                        /* child_tid */
        args[3] = out_target(8);                        /* parent_tid */
        args[4] = chance(80) ? 17 : (u64)PICK(SAFE_SIGNALS); /* exit_signal */
        args[5] = (args[0] & CLONE_VM_) ? (u64)tstack : (chance(50) ? 0 : (u64)tstack);
        args[6] = (args[0] & CLONE_VM_) ? TSTACK_LEN - 256 : (chance(50) ? 0 : PICK(EDGE));
        args[7] = gen_word();                           /* tls */
        args[8] = chance(80) ? 0 : gen_struct_in(16);   /* set_tid */
        args[9] = chance(80) ? 0 : gen_small();         /* set_tid_size */
        args[10] = chance(90) ? 0 : (u64)(i64)gen_fd(); /* cgroup */
        if (chance(10))
            args[0] |= 1UL << 32 | 1UL << 33; /* CLEAR_SIGHAND, INTO_CGROUP */
        a[0] = chance(5) ? bad_pointer() : (u64)args;
        static const u64 sizes[] = {88, 88, 88, 64, 80, 0, 8, 96, 4096, 1UL << 32};
        a[1] = PICK(sizes);
        return forks >= MAX_FORKS;
    }
    case NR_fork: case NR_vfork:
        if (forks >= MAX_FORKS)
            return 1;
        break;
    case NR_rseq: /* the kernel checks a registered area on every return to user mode,
                   * and a bad rseq_cs or a read-only area is a SIGSEGV */
        if (in_scratch(a[0], 32))
            memset((unsigned char *)a[0] + 8, 0, 8);
        else if (a[0] >= 0x10000 && a[0] < KERNEL_BASE)
            a[0] = 0xdead0000;
        break;
    }
    return 0;
}

/* Keep the process runnable after a call changed its own set-up. */
static void repair(const struct call *c, long ret)
{
    u64 base = c->base;
    switch (base) {
    case NR_rt_sigaction:
        set_disposition((int)c->a[0]);
        break;
    case NR_rt_sigprocmask: case NR_alarm: case NR_setitimer: case 130: case 128:
        arm_watchdog();
        break;
    case NR_arch_prctl:
        raw2(NR_arch_prctl, ARCH_SET_FS, fs_base);
        raw2(NR_arch_prctl, ARCH_SET_GS, 0);
        housekeeping += 2;
        break;
    case NR_setrlimit: case NR_prlimit64: {
        u64 fsize[2] = {kept_max[RLIMIT_FSIZE_], kept_max[RLIMIT_FSIZE_]};
        u64 nofile[2] = {nofile_limit.cur, kept_max[RLIMIT_NOFILE_]};
        u64 cpu[2] = {cpu_limit.cur, kept_max[RLIMIT_CPU_]};
        u64 as[2] = {kept_max[9], kept_max[9]}, data[2] = {kept_max[2], kept_max[2]};
        raw4(NR_prlimit64, 0, RLIMIT_FSIZE_, fsize, 0);
        raw4(NR_prlimit64, 0, RLIMIT_NOFILE_, nofile, 0);
        raw4(NR_prlimit64, 0, RLIMIT_CPU_, cpu, 0);
        raw4(NR_prlimit64, 0, 9 /* AS */, as, 0);
        raw4(NR_prlimit64, 0, 2 /* DATA */, data, 0);
        housekeeping += 5;
        break;
    }
    case NR_timer_create:
        timers += ret == 0;
        break;
    case NR_rseq:
        if (ret == 0) /* unregister at once: the kernel would write there forever */
            raw4(NR_rseq, c->a[0], c->a[1], 1, c->a[3]);
        housekeeping++;
        break;
    case NR_clone: case NR_fork: case NR_vfork: case NR_clone3:
        if (!c->skip && (ret > 0 || ret == -11 /* EAGAIN */)) {
            forks++;
            if (base == NR_clone && (c->a[0] & CLONE_THREAD_))
                threads++;
        }
        break;
    }
    /* New descriptors join the pool. */
    if (ret > 2 && ret < 65536 && c->def) {
        static const short creates_fd[] = {2, 32, 33, 41, 43, 72, 85, 213, 253, 257, 282,
                                           283, 284, 288, 289, 290, 291, 292, 294, 298, 304,
                                           319, 434, 437, 438, 444, 447};
        for (size_t i = 0; i < sizeof creates_fd / sizeof creates_fd[0]; i++)
            if ((short)base == creates_fd[i] && npool < POOL_MAX) {
                pool[npool++] = (int)ret;
                break;
            }
    }
    if ((base == NR_pipe || base == NR_pipe2 || base == NR_socketpair) && ret == 0) {
        u64 p = c->a[base == NR_socketpair ? 3 : 0];
        if (in_scratch(p, 8))
            for (int i = 0; i < 2 && npool < POOL_MAX; i++)
                pool[npool++] = ((int *)p)[i];
    }
}

static void check_ro(const struct call *c, long index)
{
    for (int i = 0; i < nro_checks; i++) {
        if (memcmp((void *)ro_checks[i].at, ro_checks[i].saved, 64) != 0) {
            put("syscall_fuzz: FAILURE: call #");
            put_dec(index);
            put(" ");
            put(c->def ? c->def->name : "?");
            put(" (nr ");
            put_dec((i64)c->base);
            put(") wrote into read-only memory at ");
            put_hex(ro_checks[i].at);
            flush_line();
            raw1(NR_exit_group, 3);
        }
    }
}

static void log_call(const struct call *c, long index)
{
    put("#");
    put_dec(index);
    put(" ");
    put(c->touch ? (c->a[1] ? "touch-write" : "touch-read") : c->def ? c->def->name : "nr");
    if (!c->def || c->nr != c->base) {
        put("[");
        put_hex(c->nr);
        put("]");
    }
    put("(");
    for (int i = 0; i < 6; i++) {
        if (i)
            put(", ");
        put_hex(c->a[i]);
    }
    put(")");
    if (c->skip)
        put(" skipped");
    flush_line();
    if (only_call < 0)
        return;
    /* A one-call reproducer: also what the pointer arguments point at. */
    for (int i = 0; i < 6; i++) {
        if (!in_scratch(c->a[i], 1))
            continue;
        u64 n = (u64)scratch_end() - c->a[i];
        put("    arg");
        put_dec(i);
        put(" -> ");
        for (u64 k = 0; k < n && k < 48; k++) {
            unsigned char byte = ((unsigned char *)c->a[i])[k];
            char hex[3] = {"0123456789abcdef"[byte >> 4], "0123456789abcdef"[byte & 15], 0};
            put(hex);
            if (k % 8 == 7)
                put(" ");
        }
        flush_line();
    }
}

/* The lethal calls of -l: each ends the program one way or another. */
static void make_lethal(struct call *c)
{
    static const u64 fatal[] = {4, 5, 6, 7, 8, 11, 31, 9};
    c->def = NULL;
    c->skip = 0;
    switch (below(7)) {
    case 0: c->nr = c->base = NR_exit_group; c->a[0] = below(256); break;
    case 1: c->nr = c->base = NR_kill; c->a[0] = (u64)self_pid; c->a[1] = PICK(fatal); break;
    case 2: c->nr = c->base = NR_munmap; c->a[0] = text_lo; c->a[1] = text_hi - text_lo; break;
    case 3: c->nr = c->base = NR_rt_sigreturn; break;
    case 4: c->nr = c->base = NR_mprotect; c->a[0] = (u64)mystack;
            c->a[1] = MYSTACK_LEN; c->a[2] = PROT_NONE_; break;
    case 5: c->nr = c->base = NR_exit; c->a[0] = below(256); break;
    default: c->nr = c->base = NR_munmap; c->a[0] = 0; c->a[1] = 1UL << 47; break;
    }
}

static void generate(struct call *c)
{
    memset(c, 0, sizeof *c);
    nro_checks = 0;
    scratch_off = below(256);
    int lethal = lethal_one_in && below((u64)lethal_one_in) == 0;
    u64 roll = below(100);
    if (roll < 3) { /* a plain load or store at a random address (page faults, vvar...) */
        c->touch = 1;
        switch (below(4)) {
        case 0: c->a[0] = in_target(1); break;
        case 1: c->a[0] = out_target(1); break;
        case 2: c->a[0] = gen_mm_addr() + below(PAGE); break;
        default: c->a[0] = bad_pointer(); break;
        }
        c->a[1] = below(2);
        c->a[2] = below(256);
        if (c->a[1] && !lethal && overlaps_protected(c->a[0], 1))
            c->a[0] = (u64)arena + below(ARENA_LEN);
        /* vvar pages the host cannot back are a SIGBUS (which km does not let us catch
         * today): only as a lethal step, so that ordinary runs go the distance */
        if (vdso && !lethal && c->a[0] >= vdso - 8 * PAGE && c->a[0] < vdso)
            c->a[0] = (u64)arena + below(ARENA_LEN);
        return;
    }
    if (roll < 92) {
        c->def = pick_syscall();
        c->base = c->nr = (u64)c->def->nr;
    } else if (roll < 97) { /* any number below 512: unknown ones must be ENOSYS */
        c->base = c->nr = below(512);
        c->def = lookup(c->base);
        /* 335 and 336 are uretprobe and uprobe since Linux 6.11/6.16: SIGILL unless
         * called from a probe trampoline */
        if ((c->def && ((c->def->flags & SKIP) || ((c->def->flags & NS) && !nsmode))) ||
            c->base == 335 || c->base == 336) {
            c->def = NULL;
            c->base = c->nr = 337 + below(87); /* the gap: nothing there */
        }
    } else { /* high bits in rax: Linux reads only the low 32 (and -1 is ENOSYS) */
        c->def = pick_syscall();
        c->base = (u64)c->def->nr;
        static const u64 junk[] = {1UL << 32, 0xffffffff00000000UL, 1UL << 63,
                                   0x4000000000000000UL, 0x0000800000000000UL};
        c->nr = c->base | PICK(junk);
        if (chance(20)) {
            static const u64 odd[] = {(u64)-1, 0xffffffff, 0x7fffffff, 0x80000000, 512, 547,
                                      1000, 1UL << 31 | 39};
            c->def = NULL;
            c->base = c->nr = PICK(odd);
        }
    }
    gen_args(c);
    if (c->def && neuter(c, lethal))
        c->skip = 1;
    if (lethal)
        make_lethal(c);
}

static long execute(struct call *c)
{
    if (c->touch) {
        int (*touch)(u64, int, int) = (int (*)(u64, int, int))(void *)fuzz_touch;
        long faulted = touch(c->a[0], (int)c->a[2], (int)c->a[1]);
        touches++;
        touch_faults += faulted;
        return faulted;
    }
    if (c->skip)
        return raw0(NR_getpid);
    int forkish = c->base == NR_clone || c->base == NR_fork || c->base == NR_vfork ||
                  c->base == NR_clone3;
    if (forkish)
        return raw_fork6((long)c->nr, (long)c->a[0], (long)c->a[1], (long)c->a[2],
                         (long)c->a[3], (long)c->a[4], (long)c->a[5]);
    return raw6((long)c->nr, (long)c->a[0], (long)c->a[1], (long)c->a[2], (long)c->a[3],
                (long)c->a[4], (long)c->a[5]);
}

/* ---------------------------------------------------------------------------------------
 * Set-up, and the periodic reset that keeps a long run from running out of fds. */

static void *map_at(u64 at, size_t len, int prot)
{
    long p = raw6(NR_mmap, (long)at, (long)len, prot,
                  MAP_PRIVATE_ | MAP_ANON_ | MAP_FIXED_NOREPLACE_, -1, 0);
    if (p < 0 && p > -4096)
        p = raw6(NR_mmap, 0, (long)len, prot, MAP_PRIVATE_ | MAP_ANON_, -1, 0);
    if (p < 0 && p > -4096) {
        out("syscall_fuzz: cannot map memory\n", 32);
        raw1(NR_exit_group, 2);
    }
    return (void *)p;
}

static void add_protect(u64 lo, u64 hi)
{
    protect[nprotect].lo = lo & ~(PAGE - 1);
    protect[nprotect].hi = (hi + PAGE - 1) & ~(PAGE - 1);
    nprotect++;
}

/* The arena: pages read-write, read-only, inaccessible, and holes. */
static void reset_arena(void)
{
    int (*touch)(u64, int, int) = (int (*)(u64, int, int))(void *)fuzz_touch;
    /* (mseal may have made parts of it permanent: then those stay as they are) */
    raw6(NR_mmap, (long)arena, ARENA_LEN, PROT_READ_ | PROT_WRITE_,
         MAP_PRIVATE_ | MAP_ANON_ | MAP_FIXED_, -1, 0);
    for (u64 off = 0; off < ARENA_LEN; off += 16 * PAGE)
        touch((u64)arena + off, (int)(off >> 12), 1);
    raw3(NR_mprotect, arena + 64 * PAGE, 16 * PAGE, PROT_READ_);
    raw3(NR_mprotect, arena + 128 * PAGE, 4 * PAGE, PROT_NONE_);
    raw2(NR_munmap, arena + 192 * PAGE, 8 * PAGE);
    housekeeping += 4;
}

static void open_pool(void)
{
    long fd;
    int pair[2];
    npool = 0;
#define KEEP(expr)                                                                         \
    do {                                                                                   \
        fd = (expr);                                                                       \
        housekeeping++;                                                                    \
        if (fd > 2 && npool < POOL_MAX)                                                    \
            pool[npool++] = (int)fd;                                                       \
    } while (0)
    KEEP(raw4(NR_openat, AT_FDCWD_, "a", O_RDWR_ | O_CREAT_, 0644));
    KEEP(raw4(NR_openat, AT_FDCWD_, ".", O_RDONLY_ | O_DIRECTORY_, 0));
    KEEP(raw4(NR_openat, AT_FDCWD_, "d", O_PATH_, 0));
    /* Mostly non-blocking: a blocking read costs a watchdog period (one blocking pipe and
     * socket pair stay, for the EINTR paths). */
    if (raw2(NR_pipe2, pair, 0) == 0 && npool + 2 <= POOL_MAX) {
        pool[npool++] = pair[0];
        pool[npool++] = pair[1];
    }
    if (raw2(NR_pipe2, pair, O_NONBLOCK_) == 0 && npool + 2 <= POOL_MAX) {
        pool[npool++] = pair[0];
        pool[npool++] = pair[1];
    }
    if (raw4(NR_socketpair, 1, 1 | O_NONBLOCK_, 0, pair) == 0 && npool + 2 <= POOL_MAX) {
        pool[npool++] = pair[0];
        pool[npool++] = pair[1];
    }
    if (raw4(NR_socketpair, 1, 1, 0, pair) == 0 && npool + 2 <= POOL_MAX) {
        pool[npool++] = pair[0];
        pool[npool++] = pair[1];
    }
    if (raw4(NR_socketpair, 1, 2 | O_NONBLOCK_, 0, pair) == 0 && npool + 2 <= POOL_MAX) {
        pool[npool++] = pair[0];
        pool[npool++] = pair[1];
    }
    housekeeping += 5;
    KEEP(raw3(NR_socket, 2, 1 | O_NONBLOCK_, 0));
    if (fd > 2) {
        unsigned char sin[16] = {2, 0, 0x1e, 0x61, 127, 0, 0, 1};
        raw3(NR_bind, fd, sin, 16);
        raw2(NR_listen, fd, 4);
        housekeeping += 2;
    }
    KEEP(raw3(NR_socket, 10, 2 | O_NONBLOCK_, 0));
    KEEP(raw2(NR_eventfd2, 0, O_NONBLOCK_));
    KEEP(raw1(NR_epoll_create1, 0));
    KEEP(raw2(NR_timerfd_create, 1, O_NONBLOCK_));
    KEEP(raw2(NR_memfd_create, "m", 0));
    KEEP(raw1(NR_inotify_init1, O_NONBLOCK_));
    u64 usr2 = 1UL << 11;
    KEEP(raw4(NR_signalfd4, -1, &usr2, 8, O_NONBLOCK_));
    KEEP(raw2(NR_pidfd_open, self_pid, 0));
#undef KEEP
}

static void reap_children(void)
{
    for (int i = 0; i < 64; i++) {
        housekeeping++;
        if (raw4(NR_wait4, -1, 0, 1 /* WNOHANG */ | 0x40000000 /* __WALL */, 0) <= 0)
            break;
    }
}

static void reset(void)
{
    if (raw3(NR_close_range, 3, ~0U, 0) < 0) /* then close what we know of */
        for (int i = 0; i < npool; i++)
            raw1(NR_close, pool[i]);
    raw1(80 /* chdir */, start_dir); /* a random chdir must not move our files away */
    housekeeping += 2;
    /* POSIX timers are per process and outlive fds: too many periodic ones would keep
     * km busy delivering signals. Their ids are small and allocated from 0. */
    for (long id = 0; id < timers + 4; id++)
        raw1(226 /* timer_delete */, id);
    housekeeping += timers + 4;
    timers = 0;
    open_pool();
    reset_arena();
    reap_children();
    u64 none = 0;
    raw4(NR_rt_sigprocmask, 2 /* SIG_SETMASK */, &none, 0, 8);
    arm_watchdog();
    raw2(NR_arch_prctl, ARCH_SET_FS, fs_base);
    housekeeping += 2;
}

static void make_files(void)
{
    raw2(NR_mkdir, "d", 0755);
    raw2(NR_mkdir, "d/e", 0755);
    long fd = raw4(NR_openat, AT_FDCWD_, "a", O_RDWR_ | O_CREAT_, 0644);
    if (fd >= 0) {
        raw3(NR_write, fd, "some content\nfor the fuzzer\n", 28);
        raw1(NR_close, fd);
    }
    raw3(NR_close, raw4(NR_openat, AT_FDCWD_, "b", O_RDWR_ | O_CREAT_, 0600), 0, 0);
    raw3(NR_mknod, "p", 0010644, 0); /* a FIFO */
    raw2(NR_symlink, "a", "l");
    raw2(NR_symlink, "nonexistent", "x");
    raw2(NR_symlink, "d", "y");
    raw2(NR_symlink, "z", "z");
    raw2(NR_link, "a", "h");
    housekeeping += 12;
}

static void init(void)
{
    self_pid = raw0(NR_getpid);
    self_tid = raw0(NR_gettid);
    raw2(NR_arch_prctl, ARCH_GET_FS, &fs_base);
    u64 lim[2];
    if (raw2(NR_getrlimit, RLIMIT_NOFILE_, lim) == 0) {
        nofile_limit.cur = lim[0];
        nofile_limit.max = lim[1];
    } else {
        nofile_limit.cur = nofile_limit.max = 1024;
    }
    if (raw2(NR_getrlimit, RLIMIT_CPU_, lim) == 0) {
        cpu_limit.cur = lim[0];
        cpu_limit.max = lim[1];
    } else {
        cpu_limit.cur = cpu_limit.max = RLIM_INF;
    }
    u64 fsize[2] = {FSIZE_LIMIT, FSIZE_LIMIT}, core[2] = {0, 0};
    if (raw2(NR_getrlimit, RLIMIT_FSIZE_, lim) == 0 && lim[1] < FSIZE_LIMIT)
        fsize[0] = fsize[1] = lim[1];
    raw2(NR_setrlimit, RLIMIT_FSIZE_, fsize);
    static const int kept[] = {RLIMIT_CPU_, RLIMIT_FSIZE_, 2 /* DATA */, RLIMIT_NOFILE_,
                               9 /* AS */};
    for (size_t i = 0; i < sizeof kept / sizeof kept[0]; i++)
        kept_max[kept[i]] = raw2(NR_getrlimit, kept[i], lim) == 0 ? lim[1] : RLIM_INF;
    raw2(NR_setrlimit, 4 /* CORE */, core);

    /* stdin: the read end of a pipe nobody writes to, so a read of fd 0 sees EOF */
    int pair[2];
    if (raw2(NR_pipe2, pair, 0) == 0) {
        raw2(NR_dup2, pair[0], 0);
        raw1(NR_close, pair[0]);
        raw1(NR_close, pair[1]);
    }

    scratch = map_at(SCRATCH_AT, SCRATCH_LEN + PAGE, PROT_READ_ | PROT_WRITE_);
    raw3(NR_mprotect, scratch + SCRATCH_LEN, PAGE, PROT_NONE_);
    arena = map_at(ARENA_AT, ARENA_LEN, PROT_READ_ | PROT_WRITE_);
    tstack = map_at(TSTACK_AT, TSTACK_LEN, PROT_READ_ | PROT_WRITE_);
    mystack = map_at(MYSTACK_AT, MYSTACK_LEN, PROT_READ_ | PROT_WRITE_);
    initial_brk = (u64)raw1(NR_brk, 0);
    heap = initial_brk;
    if ((u64)raw1(NR_brk, heap + 65536) < heap + 65536)
        heap = (u64)arena; /* no brk: point "heap" pointers at the arena */

    extern char __ehdr_start[] __attribute__((weak));
    extern char _end[];
    extern char etext[];
    text_lo = __ehdr_start ? (u64)__ehdr_start : (u64)init & ~(PAGE - 1);
    text_hi = (u64)etext;
    vdso = getauxval(AT_SYSINFO_EHDR);
    add_protect(text_lo, (u64)_end);
    add_protect((u64)scratch, (u64)scratch_end() + PAGE);
    add_protect((u64)mystack, (u64)mystack + MYSTACK_LEN);
    add_protect((u64)tstack, (u64)tstack + TSTACK_LEN);
    add_protect(initial_brk - (1UL << 20), initial_brk);

    for (size_t i = 0; i < TABLE_LEN; i++) {
        const struct syscall_def *d = &TABLE[i];
        by_nr[d->nr] = d;
        if (!(d->flags & SKIP) && (!(d->flags & NS) || nsmode))
            total_weight += d->weight;
    }
    for (int sig = 1; sig <= 64; sig++)
        set_disposition(sig);
    if (raw2(79 /* getcwd */, start_dir, sizeof start_dir) < 0)
        start_dir[0] = '.';
    make_files();
}

/* glibc registers an rseq area in its TLS at start-up; the kernel writes it on every
 * preemption, so it must go before a random brk or munmap can take the TLS away. */
extern const ptrdiff_t __rseq_offset __attribute__((weak));
extern const unsigned int __rseq_size __attribute__((weak));

static void drop_libc_rseq(void)
{
    if (&__rseq_size && __rseq_size) {
        u64 area = fs_base + (u64)__rseq_offset;
        raw4(NR_rseq, area, __rseq_size < 32 ? 32 : __rseq_size, 1, 0x53053053);
    }
}

static void summary(void)
{
    put("syscall_fuzz: seed ");
    put_dec(seed);
    put(": ");
    put_dec(made);
    put(" calls made (");
    put_dec(skipped);
    put(" neutered, ");
    put_dec(forks);
    put(" forks/clones, ");
    put_dec(threads);
    put(" threads, ");
    put_dec(touches);
    put(" touches (");
    put_dec(touch_faults);
    put(" faulted), ");
    put_dec(housekeeping);
    put(" housekeeping calls)");
    flush_line();
}

static void fuzz_main(void)
{
    struct call c;
    for (long i = 0; i < ncalls; i++) {
        generate(&c);
        if (only_call >= 0 && i != only_call)
            continue;
        if (i && i % RESET_EVERY == 0 && only_call < 0)
            reset();
        if (verbose || only_call >= 0)
            log_call(&c, i);
        long ret = execute(&c);
        made += !c.touch;
        skipped += c.skip;
        if (verbose || only_call >= 0) {
            put("  = ");
            put_hex((u64)ret);
            flush_line();
        }
        check_ro(&c, i);
        if (!c.touch)
            repair(&c, ret);
        if ((i + 1) % 1024 == 0) {
            put("syscall_fuzz: progress ");
            put_dec(i + 1);
            flush_line();
        }
    }
    summary();
    raw1(NR_exit_group, 0);
    __builtin_unreachable();
}

static long parse_long(const char *s, int *ok)
{
    char *end;
    long v = strtol(s, &end, 0);
    *ok = *s && !*end;
    return v;
}

static void usage(void)
{
    static const char text[] =
        "usage: syscall_fuzz [-v] [-n] [-l N] [-w MS] [-k K] SEED CALLS [DIR]\n";
    out(text, sizeof text - 1);
    raw1(NR_exit_group, 2);
}

int main(int argc, char **argv)
{
    int i = 1, ok = 1;
    for (; i < argc && argv[i][0] == '-' && argv[i][1]; i++) {
        if (!strcmp(argv[i], "-v"))
            verbose = 1;
        else if (!strcmp(argv[i], "-n"))
            nsmode = 1;
        else if (!strcmp(argv[i], "-l") && i + 1 < argc)
            lethal_one_in = (int)parse_long(argv[++i], &ok);
        else if (!strcmp(argv[i], "-w") && i + 1 < argc)
            watchdog_ms = (int)parse_long(argv[++i], &ok);
        else if (!strcmp(argv[i], "-k") && i + 1 < argc)
            only_call = (int)parse_long(argv[++i], &ok);
        else
            usage();
        if (!ok)
            usage();
    }
    if (argc - i < 2 || argc - i > 3)
        usage();
    seed = parse_long(argv[i], &ok);
    if (!ok)
        usage();
    ncalls = parse_long(argv[i + 1], &ok);
    if (!ok || ncalls < 0 || watchdog_ms <= 0)
        usage();
    dir_arg = argc - i == 3 ? argv[i + 2] : NULL;
    if (dir_arg && raw1(80 /* chdir */, dir_arg) < 0) {
        out("syscall_fuzz: cannot chdir to DIR\n", 34);
        raw1(NR_exit_group, 2);
    }
    rng_state = (u64)seed * 0x2545f4914f6cdd1dUL + 1;
    ostack = (u64)__builtin_frame_address(0);
    init();
    drop_libc_rseq();
    reset();
    housekeeping = 0;
    /* From here on: our own stack, so random writes to the original one hurt nobody. */
    u64 top = ((u64)mystack + MYSTACK_LEN - 64) & ~15UL;
    __asm__ volatile("mov %0, %%rsp\n\t"
                     "call *%1\n\t"
                     "ud2"
                     :
                     : "r"(top), "r"(fuzz_main)
                     : "memory");
    return 0;
}
