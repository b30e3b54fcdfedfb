/* Signals: sig_basic MODE, one scenario per mode. Output goes out one write(2) per line
 * (safe in handlers, and ordered as it happened), and says only deterministic things:
 * signal names (relative to SIGRTMIN, which differs between libcs), si_code names,
 * yes/no checks on pids, values and elapsed times.
 *
 * modes: info queueinfo_self mask wait alarm restart rt rt_nesting nodefer resethand
 *        resethand_flags fp itimer itimer_virtual timer timer_overrun timer_thread term
 *        abort abort_handled kill_thread threads sigwait_thread ucmask sigpipe
 *        stdout_closed */
#define _GNU_SOURCE
#include <poll.h>
#include <pthread.h>
#include <sys/resource.h>
#include <sys/time.h>
#include <ucontext.h>

#include <signal.h>
#include <stdarg.h>
#include <stdint.h>
#include <sys/syscall.h>
#include <time.h>
#include <unistd.h>

#include "sig_common.h"


/* ================================================================ info */

static volatile int got;
static siginfo_t last_info;
static int last_blocked_self, last_blocked_extra, last_uc_mask_usr2;

static void info_handler(int sig, siginfo_t *si, void *ucv)
{
    ucontext_t *uc = ucv;
    last_info = *si;
    last_blocked_self = is_blocked(sig);
    last_blocked_extra = is_blocked(SIGINT);
    last_uc_mask_usr2 = uc && sigismember(&uc->uc_sigmask, SIGUSR2);
    got++;
    say("  handler: %s code=%s pid_is_ours=%s uid_is_ours=%s value=%d\n", sig_name(sig),
        code_name(sig, si->si_code), yes_no(si->si_pid == getpid()), yes_no(si->si_uid == getuid()),
        si->si_code == SI_QUEUE ? si->si_value.sival_int : -1);
}

static int mode_info(void)
{
    struct sigaction sa, old;
    memset(&sa, 0, sizeof sa);
    sa.sa_sigaction = info_handler;
    sa.sa_flags = SA_SIGINFO;
    sigemptyset(&sa.sa_mask);
    sigaddset(&sa.sa_mask, SIGINT);
    sigaction(SIGUSR1, &sa, NULL);
    sigaction(SIGUSR2, &sa, NULL);

    say("kill(getpid(), SIGUSR1): %d\n", kill(getpid(), SIGUSR1));
    say("  ran: %d, own signal blocked in handler: %s, sa_mask signal blocked: %s\n", got,
        yes_no(last_blocked_self), yes_no(last_blocked_extra));
    say("  after the handler: SIGUSR1 blocked: %s, SIGINT blocked: %s\n",
        yes_no(is_blocked(SIGUSR1)), yes_no(is_blocked(SIGINT)));
    say("raise(SIGUSR1): %d\n", raise(SIGUSR1));
    say("tgkill(getpid(), gettid(), SIGUSR2): %ld\n",
        syscall(SYS_tgkill, getpid(), gettid_(), SIGUSR2));
    union sigval v = {.sival_int = 1234};
    say("sigqueue(getpid(), SIGUSR1, 1234): %d\n", sigqueue(getpid(), SIGUSR1, v));

    block(SIGUSR2, SIG_BLOCK);
    say("with SIGUSR2 blocked, kill(SIGUSR1)\n");
    kill(getpid(), SIGUSR1);
    say("  uc_sigmask (the mask to restore) has SIGUSR2: %s\n", yes_no(last_uc_mask_usr2));
    block(SIGUSR2, SIG_UNBLOCK);

    siginfo_t si;
    memset(&si, 0, sizeof si);
    si.si_signo = SIGUSR1;
    si.si_code = SI_QUEUE;
    si.si_pid = getpid();
    si.si_uid = getuid();
    si.si_value.sival_int = 77;
    say("rt_sigqueueinfo(SI_QUEUE, 77): %ld\n",
        syscall(SYS_rt_sigqueueinfo, getpid(), SIGUSR1, &si));
    long r = syscall(SYS_rt_tgsigqueueinfo, getpid(), gettid_(), SIGUSR2, &si);
    say("rt_tgsigqueueinfo(SI_QUEUE, 77): %ld\n", r);

    say("kill(getpid(), 0): %d\n", kill(getpid(), 0));
    r = kill(getpid(), 65);
    say("kill(getpid(), 65): %ld %s\n", r, r ? ename(errno) : "");
    r = sigaction(SIGKILL, &sa, NULL);
    say("sigaction(SIGKILL): %ld %s\n", r, r ? ename(errno) : "");
    r = sigaction(SIGSTOP, &sa, NULL);
    say("sigaction(SIGSTOP): %ld %s\n", r, r ? ename(errno) : "");
    r = sigaction(0, &sa, NULL);
    say("sigaction(0): %ld %s\n", r, r ? ename(errno) : "");
    sigaction(SIGUSR1, NULL, &old);
    say("old action: handler is ours: %s, SA_SIGINFO: %s, sa_mask has SIGINT: %s\n",
        yes_no(old.sa_sigaction == info_handler), yes_no(old.sa_flags & SA_SIGINFO),
        yes_no(sigismember(&old.sa_mask, SIGINT)));
    sigaction(SIGUSR2, NULL, &old);
    signal(SIGUSR2, SIG_IGN);
    say("SIG_IGN'd SIGUSR2: kill -> %d, handler calls so far %d\n", kill(getpid(), SIGUSR2),
        got);
    signal(SIGUSR2, SIG_DFL);
    signal(SIGCHLD, SIG_DFL);
    say("default-ignored SIGCHLD/SIGWINCH: %d %d\n", kill(getpid(), SIGCHLD),
        kill(getpid(), SIGWINCH));
    say("handler calls: %d\n", got);
    return 0;
}

/* Linux lets a process queue any si_code to itself (only other processes are refused
 * codes >= 0 and SI_TKILL, with EPERM) */
static int mode_queueinfo_self(void)
{
    install(SIGUSR1, info_handler, 0);
    siginfo_t si;
    memset(&si, 0, sizeof si);
    si.si_signo = SIGUSR1;
    si.si_pid = getpid();
    si.si_uid = getuid();
    int codes[] = {SI_KERNEL, SI_USER, SI_TKILL, SI_QUEUE};
    for (int i = 0; i < 4; i++) {
        si.si_code = codes[i];
        long r = syscall(SYS_rt_sigqueueinfo, getpid(), SIGUSR1, &si);
        say("rt_sigqueueinfo to itself with %s: %ld %s\n", code_name(SIGUSR1, codes[i]), r,
            r ? ename(errno) : "");
    }
    return 0;
}

/* ================================================================ mask */

static int counts[65];

static void count_handler(int sig, siginfo_t *si, void *uc)
{
    (void)si; (void)uc;
    counts[sig]++;
}

static void show_pending(const char *when)
{
    sigset_t p;
    sigpending(&p);
    say("%s: pending SIGUSR1=%s SIGUSR2=%s SIGTERM=%s\n", when, yes_no(sigismember(&p, SIGUSR1)),
        yes_no(sigismember(&p, SIGUSR2)), yes_no(sigismember(&p, SIGTERM)));
}

static int mode_mask(void)
{
    install(SIGUSR1, count_handler, 0);
    install(SIGUSR2, count_handler, 0);
    install(SIGTERM, count_handler, 0);
    sigset_t s, old;
    sigemptyset(&s);
    sigaddset(&s, SIGUSR1);
    sigaddset(&s, SIGUSR2);
    sigprocmask(SIG_BLOCK, &s, &old);
    say("old mask had SIGUSR1: %s\n", yes_no(sigismember(&old, SIGUSR1)));
    show_pending("nothing sent");
    kill(getpid(), SIGUSR1);
    kill(getpid(), SIGUSR1);
    kill(getpid(), SIGUSR1);
    raise(SIGUSR2);
    say("sent SIGUSR1 x3, SIGUSR2 while blocked: handled %d %d\n", counts[SIGUSR1],
        counts[SIGUSR2]);
    show_pending("blocked");
    block(SIGUSR2, SIG_UNBLOCK);
    say("unblocked SIGUSR2: handled %d %d\n", counts[SIGUSR1], counts[SIGUSR2]);
    show_pending("after");
    block(SIGUSR1, SIG_UNBLOCK);
    say("unblocked SIGUSR1: handled %d (standard signals do not queue)\n", counts[SIGUSR1]);
    show_pending("after");

    /* a pending signal whose disposition becomes SIG_IGN is discarded */
    block(SIGTERM, SIG_BLOCK);
    kill(getpid(), SIGTERM);
    show_pending("SIGTERM blocked and sent");
    signal(SIGTERM, SIG_IGN);
    show_pending("SIGTERM set to SIG_IGN");
    install(SIGTERM, count_handler, 0);
    block(SIGTERM, SIG_UNBLOCK);
    say("SIGTERM unblocked: handled %d\n", counts[SIGTERM]);

    /* SIGKILL and SIGSTOP cannot be blocked; bad 'how' */
    sigfillset(&s);
    sigprocmask(SIG_SETMASK, &s, NULL);
    sigprocmask(SIG_SETMASK, NULL, &old);
    say("after blocking everything: SIGKILL blocked %s, SIGSTOP blocked %s, SIGUSR1 %s\n",
        yes_no(sigismember(&old, SIGKILL)), yes_no(sigismember(&old, SIGSTOP)),
        yes_no(sigismember(&old, SIGUSR1)));
    sigemptyset(&s);
    sigprocmask(SIG_SETMASK, &s, NULL);
    long r = sigprocmask(42, &s, NULL);
    say("sigprocmask(how=42): %ld %s\n", r, r ? ename(errno) : "");
    /* the raw syscall with a wrong sigset size */
    r = syscall(SYS_rt_sigprocmask, SIG_BLOCK, &s, NULL, 4);
    say("rt_sigprocmask(sigsetsize=4): %ld %s\n", r, r ? ename(errno) : "");
    r = syscall(SYS_rt_sigprocmask, SIG_BLOCK, (void *)16, NULL, 8);
    say("rt_sigprocmask(bad pointer): %ld %s\n", r, r ? ename(errno) : "");
    /* pthread_sigmask is per thread */
    block(SIGUSR1, SIG_BLOCK);
    kill(getpid(), SIGUSR1);
    say("pthread_sigmask view: SIGUSR1 blocked %s, handled %d\n",
        yes_no(is_blocked(SIGUSR1)), counts[SIGUSR1]);
    sigemptyset(&s);
    sigaddset(&s, SIGUSR1);
    pthread_sigmask(SIG_UNBLOCK, &s, NULL);
    say("pthread_sigmask(SIG_UNBLOCK): handled %d\n", counts[SIGUSR1]);
    return 0;
}

/* ================================================================ wait */

static int mode_wait(void)
{
    sigset_t s;
    sigemptyset(&s);
    sigaddset(&s, SIGUSR1);
    sigaddset(&s, SIGUSR2);
    sigaddset(&s, SIGRTMIN + 1);
    sigprocmask(SIG_BLOCK, &s, NULL);

    kill(getpid(), SIGUSR2);
    int sig = 0;
    int r = sigwait(&s, &sig);
    say("sigwait: %d, signal %s\n", r, sig_name(sig));

    union sigval v = {.sival_int = 42};
    sigqueue(getpid(), SIGRTMIN + 1, v);
    siginfo_t si;
    memset(&si, 0, sizeof si);
    r = sigwaitinfo(&s, &si);
    say("sigwaitinfo: %s, code %s, value %d, pid ours %s\n", sig_name(r),
        code_name(r, si.si_code), si.si_value.sival_int, yes_no(si.si_pid == getpid()));

    struct timespec ts = {0, 50 * 1000000L};
    double t0 = mono();
    r = sigtimedwait(&s, &si, &ts);
    double dt = mono() - t0;
    say("sigtimedwait(50 ms), nothing pending: %d %s, waited >= 50 ms %s, < 2 s %s\n", r,
        ename(errno), yes_no(dt >= 0.049), yes_no(dt < 2));
    struct timespec zero = {0, 0};
    r = sigtimedwait(&s, &si, &zero);
    say("sigtimedwait(0), nothing pending: %d %s\n", r, ename(errno));
    raise(SIGUSR1);
    r = sigtimedwait(&s, &si, &zero);
    say("sigtimedwait(0), SIGUSR1 pending: %s code %s\n", sig_name(r), code_name(r, si.si_code));
    struct timespec bad = {0, -5};
    r = sigtimedwait(&s, &si, &bad);
    say("sigtimedwait(bad timeout): %d %s\n", r, ename(errno));

    /* an unblocked signal with a handler interrupts sigtimedwait */
    install(SIGALRM, count_handler, 0);
    struct itimerval it = {{0, 0}, {0, 30000}};
    setitimer(ITIMER_REAL, &it, NULL);
    struct timespec longer = {3, 0};
    t0 = mono();
    /* the raw call: musl's sigtimedwait() retries after EINTR */
    r = syscall(SYS_rt_sigtimedwait, &s, &si, &longer, 8);
    say("sigtimedwait interrupted by SIGALRM's handler: %d %s, handled %d, early %s\n", r,
        ename(errno), counts[SIGALRM], yes_no(mono() - t0 < 2));

    /* sigsuspend: atomically unblock and wait */
    install(SIGUSR1, count_handler, 0);
    kill(getpid(), SIGUSR1);
    say("SIGUSR1 pending while blocked, handled %d\n", counts[SIGUSR1]);
    sigset_t none;
    sigemptyset(&none);
    r = sigsuspend(&none);
    say("sigsuspend: %d %s, handled %d, SIGUSR1 blocked again %s\n", r, ename(errno),
        counts[SIGUSR1], yes_no(is_blocked(SIGUSR1)));
    return 0;
}

/* ================================================================ alarm + pause */

static int mode_alarm(void)
{
    install(SIGALRM, count_handler, 0);
    say("alarm(5) with none set: %u\n", alarm(5));
    say("alarm(0) cancels, returns the seconds left: %u\n", alarm(0));
    say("alarm(1): %u\n", alarm(1));
    double t0 = mono();
    int r = pause();
    double dt = mono() - t0;
    say("pause: %d %s, SIGALRM handled %d, after >= 0.9 s %s, < 3 s %s\n", r, ename(errno),
        counts[SIGALRM], yes_no(dt >= 0.9), yes_no(dt < 3));
    say("alarm(0) after it fired: %u\n", alarm(0));
    return 0;
}

/* ================================================================ restart */

static int rpipe[2];

static void alarm_writes(int sig, siginfo_t *si, void *uc)
{
    (void)si; (void)uc;
    counts[sig]++;
    write(rpipe[1], "x", 1);
}

static void restart_case(int flags, const char *label)
{
    install(SIGALRM, alarm_writes, flags);
    struct itimerval it = {{0, 0}, {0, 30000}};
    setitimer(ITIMER_REAL, &it, NULL);
    char c = 0;
    long r = read(rpipe[0], &c, 1);
    say("%s: read on an empty pipe: %ld %s, got '%c', handler ran %d\n", label, r,
        r < 0 ? ename(errno) : "", r == 1 ? c : '-', counts[SIGALRM]);
    if (r < 0) {
        r = read(rpipe[0], &c, 1);
        say("%s: read again: %ld '%c'\n", label, r, c);
    }
    counts[SIGALRM] = 0;
}

static int mode_restart(void)
{
    if (pipe(rpipe))
        die("pipe");
    restart_case(SA_RESTART, "SA_RESTART");
    restart_case(0, "no SA_RESTART");

    /* nanosleep is never restarted: EINTR with the time left */
    install(SIGALRM, count_handler, SA_RESTART);
    struct itimerval it = {{0, 0}, {0, 30000}};
    setitimer(ITIMER_REAL, &it, NULL);
    struct timespec ts = {2, 0}, rem = {0, 0};
    long r = nanosleep(&ts, &rem);
    say("nanosleep(2 s) with SA_RESTART: %ld %s, remaining 1..2 s %s\n", r, ename(errno),
        yes_no(rem.tv_sec == 1));
    /* poll is not restarted either */
    setitimer(ITIMER_REAL, &it, NULL);
    struct pollfd pfd = {rpipe[0], POLLIN, 0};
    r = poll(&pfd, 1, 2000);
    say("poll(2 s) with SA_RESTART: %ld %s\n", r, ename(errno));
    /* a blocking write to a full pipe resumes with SA_RESTART */
    return 0;
}

/* ================================================================ rt queueing */

static int order_sig[64], order_val[64], norder;

static void record_handler(int sig, siginfo_t *si, void *uc)
{
    (void)uc;
    order_sig[norder] = sig;
    order_val[norder] = si->si_code == SI_QUEUE ? si->si_value.sival_int : -1;
    norder++;
}

static void rt_round(int mask_all, const char *label)
{
    int sigs[] = {SIGRTMIN + 2, SIGRTMIN, SIGRTMIN + 2, SIGUSR1, SIGRTMIN + 5, SIGRTMIN,
                  SIGRTMIN + 2, SIGUSR2, SIGUSR1, SIGRTMIN};
    int n = sizeof sigs / sizeof sigs[0];
    sigset_t s;
    sigemptyset(&s);
    for (int i = 0; i < n; i++)
        sigaddset(&s, sigs[i]);
    for (int i = 0; i < n; i++) {
        struct sigaction sa;
        memset(&sa, 0, sizeof sa);
        sa.sa_sigaction = record_handler;
        sa.sa_flags = SA_SIGINFO;
        if (mask_all)
            sa.sa_mask = s;
        else
            sigemptyset(&sa.sa_mask);
        sigaction(sigs[i], &sa, NULL);
    }
    sigprocmask(SIG_BLOCK, &s, NULL);
    norder = 0;
    for (int i = 0; i < n; i++) {
        union sigval v = {.sival_int = 100 + i};
        if (sigqueue(getpid(), sigs[i], v))
            die("sigqueue");
    }
    sigset_t p;
    sigpending(&p);
    say("%s: queued %d signals while blocked; pending: RTMIN %s RTMIN+2 %s RTMIN+5 %s "
        "USR1 %s, delivered so far %d\n", label, n, yes_no(sigismember(&p, SIGRTMIN)),
        yes_no(sigismember(&p, SIGRTMIN + 2)), yes_no(sigismember(&p, SIGRTMIN + 5)),
        yes_no(sigismember(&p, SIGUSR1)), norder);
    sigprocmask(SIG_UNBLOCK, &s, NULL);
    say("%s: delivered %d:", label, norder);
    char line[1024];
    int len = 0;
    for (int i = 0; i < norder; i++)
        len += snprintf(line + len, sizeof line - len, " %s=%d", sig_name(order_sig[i]),
                        order_val[i]);
    say("%s\n", line);
}

/* With handlers that do not mask each other, Linux sets up one frame per deliverable
 * pending signal before returning to user mode, so the highest-numbered handler runs
 * first, and each signal's own later instances after its handler's sigreturn. */
static int mode_rt_nesting(void)
{
    rt_round(0, "handlers nesting");
    return 0;
}

static int mode_rt(void)
{
    say("SIGRTMAX - SIGRTMIN: %d\n", SIGRTMAX - SIGRTMIN);
    rt_round(1, "handlers masking each other");
    /* the queue of one real-time signal keeps its values in order via sigwaitinfo */
    sigset_t s;
    sigemptyset(&s);
    sigaddset(&s, SIGRTMIN + 3);
    sigprocmask(SIG_BLOCK, &s, NULL);
    for (int i = 0; i < 20; i++) {
        union sigval v = {.sival_int = i * i};
        sigqueue(getpid(), SIGRTMIN + 3, v);
    }
    char line[512];
    int len = 0;
    siginfo_t si;
    struct timespec zero = {0, 0};
    while (sigtimedwait(&s, &si, &zero) > 0)
        len += snprintf(line + len, sizeof line - len, " %d", si.si_value.sival_int);
    say("sigtimedwait drained RTMIN+3 values:%s\n", line);
    return 0;
}

/* ================================================================ resethand / nodefer */

static int depth, max_depth, entered;

static void nest_handler(int sig, siginfo_t *si, void *uc)
{
    (void)si; (void)uc;
    int me = ++entered;
    depth++;
    if (depth > max_depth)
        max_depth = depth;
    say("  enter #%d depth %d, own signal blocked %s\n", me, depth, yes_no(is_blocked(sig)));
    if (me == 1) {
        raise(sig);
        say("  #%d: raised again inside the handler\n", me);
    }
    say("  leave #%d\n", me);
    depth--;
}

static int mode_nodefer(void)
{
    say("without SA_NODEFER:\n");
    install(SIGUSR1, nest_handler, 0);
    raise(SIGUSR1);
    say("  entered %d, max depth %d\n", entered, max_depth);
    entered = max_depth = 0;
    say("with SA_NODEFER:\n");
    install(SIGUSR1, nest_handler, SA_NODEFER);
    raise(SIGUSR1);
    say("  entered %d, max depth %d\n", entered, max_depth);
    return 0;
}

static void reset_handler(int sig, siginfo_t *si, void *uc)
{
    (void)si; (void)uc;
    struct sigaction cur;
    sigaction(sig, NULL, &cur);
    say("  handler: disposition now SIG_DFL %s, own signal blocked %s\n",
        yes_no(cur.sa_handler == SIG_DFL), yes_no(is_blocked(sig)));
}

/* the kernel resets only the handler of an SA_RESETHAND action: the flags and the mask
 * that sigaction reports afterwards are the ones installed */
static int mode_resethand_flags(void)
{
    struct sigaction sa, cur;
    memset(&sa, 0, sizeof sa);
    sa.sa_sigaction = reset_handler;
    sa.sa_flags = SA_SIGINFO | SA_RESETHAND | SA_RESTART;
    sigemptyset(&sa.sa_mask);
    sigaddset(&sa.sa_mask, SIGINT);
    sigaction(SIGUSR2, &sa, NULL);
    raise(SIGUSR2);
    sigaction(SIGUSR2, NULL, &cur);
    say("after: SIG_DFL %s, SA_SIGINFO %s, SA_RESETHAND %s, SA_RESTART %s, mask has SIGINT %s\n",
        yes_no(cur.sa_handler == SIG_DFL), yes_no(cur.sa_flags & SA_SIGINFO),
        yes_no(cur.sa_flags & SA_RESETHAND), yes_no(cur.sa_flags & SA_RESTART),
        yes_no(sigismember(&cur.sa_mask, SIGINT)));
    return 0;
}

static int mode_resethand(void)
{
    install(SIGUSR2, reset_handler, SA_RESETHAND);
    say("first SIGUSR2 (SA_RESETHAND):\n");
    raise(SIGUSR2);
    struct sigaction cur;
    sigaction(SIGUSR2, NULL, &cur);
    say("after: disposition SIG_DFL %s\n", yes_no(cur.sa_handler == SIG_DFL));
    say("second SIGUSR2 takes the default action (terminate)\n");
    raise(SIGUSR2);
    say("still alive (wrong)\n");
    return 0;
}

/* ================================================================ fp */

static volatile double handler_sink;
static int avx_usable;

static void trash_fp(void)
{
    /* heavy floating point in the handler, and every xmm register overwritten */
    double x = 1.0;
    for (int i = 1; i < 200; i++)
        x = x * 1.0001 + 1.0 / i;
    handler_sink = x;
    static const double junk[2] = {-12345.5, 999.25};
    __asm__ volatile(
        "movupd %0, %%xmm0\n movupd %0, %%xmm1\n movupd %0, %%xmm2\n movupd %0, %%xmm3\n"
        "movupd %0, %%xmm4\n movupd %0, %%xmm5\n movupd %0, %%xmm6\n movupd %0, %%xmm7\n"
        "movupd %0, %%xmm8\n movupd %0, %%xmm9\n movupd %0, %%xmm10\n movupd %0, %%xmm11\n"
        "movupd %0, %%xmm12\n movupd %0, %%xmm13\n movupd %0, %%xmm14\n movupd %0, %%xmm15\n"
        :: "m"(junk)
        : "xmm0", "xmm1", "xmm2", "xmm3", "xmm4", "xmm5", "xmm6", "xmm7", "xmm8", "xmm9",
          "xmm10", "xmm11", "xmm12", "xmm13", "xmm14", "xmm15");
    if (avx_usable)
        __asm__ volatile("vzeroall" ::: "xmm0", "xmm1", "xmm2", "xmm3", "xmm4", "xmm5",
                         "xmm6", "xmm7", "xmm8", "xmm9", "xmm10", "xmm11", "xmm12", "xmm13",
                         "xmm14", "xmm15");
    /* x87: change the control word, push values; MXCSR: change rounding */
    unsigned short cw = 0x0c7f; /* round toward zero, all masked */
    unsigned int mx = 0x7f80;   /* round toward zero (RZ) + FZ... masked */
    __asm__ volatile("fldcw %0\n fldpi\n fldpi\n fldpi\n ldmxcsr %1" :: "m"(cw), "m"(mx));
}

static int fp_handled;

static void fp_handler(int sig, siginfo_t *si, void *uc)
{
    (void)sig; (void)si; (void)uc;
    fp_handled++;
    trash_fp();
}

static int has_avx(void)
{
    unsigned a, b, c, d;
    __asm__ volatile("cpuid" : "=a"(a), "=b"(b), "=c"(c), "=d"(d) : "a"(1), "c"(0));
    if (!(c & (1u << 27)) || !(c & (1u << 28)))
        return 0;
    unsigned lo, hi;
    __asm__ volatile("xgetbv" : "=a"(lo), "=d"(hi) : "c"(0));
    return (lo & 6) == 6;
}

static volatile int async_signals;

static void async_handler(int sig, siginfo_t *si, void *uc)
{
    (void)sig; (void)si; (void)uc;
    async_signals++;
    trash_fp();
}

__attribute__((noinline)) static double fp_loop(long n, long *ints)
{
    /* values stay in xmm registers and general registers across the whole loop */
    double a = 1.0, b = 0.5, c = 0.25, d = 2.0;
    long i1 = 1, i2 = 2, i3 = 3;
    for (long i = 0; i < n; i++) {
        a = a * 0.999999 + b;
        b = b * 1.000001 - c * 1e-9;
        c = c + d * 1e-12;
        d = d * 0.9999999 + 1e-7;
        i1 = i1 * 6364136223846793005L + 1442695040888963407L;
        i2 ^= i1 >> 7;
        i3 += i2 & 0xff;
    }
    ints[0] = i1;
    ints[1] = i2;
    ints[2] = i3;
    return a + b + c + d;
}

static int mode_fp(void)
{
    /* 1: xmm0-15 loaded, then a signal at a syscall; registers compared afterwards */
    install(SIGUSR1, fp_handler, 0);
    double in[32], out[32];
    for (int i = 0; i < 32; i++)
        in[i] = i * 1.5 + 0.125, out[i] = 0;
    long pid = getpid(), ret;
    __asm__ volatile(
        "movupd 0(%[in]), %%xmm0\n movupd 16(%[in]), %%xmm1\n movupd 32(%[in]), %%xmm2\n"
        "movupd 48(%[in]), %%xmm3\n movupd 64(%[in]), %%xmm4\n movupd 80(%[in]), %%xmm5\n"
        "movupd 96(%[in]), %%xmm6\n movupd 112(%[in]), %%xmm7\n movupd 128(%[in]), %%xmm8\n"
        "movupd 144(%[in]), %%xmm9\n movupd 160(%[in]), %%xmm10\n movupd 176(%[in]), %%xmm11\n"
        "movupd 192(%[in]), %%xmm12\n movupd 208(%[in]), %%xmm13\n"
        "movupd 224(%[in]), %%xmm14\n movupd 240(%[in]), %%xmm15\n"
        "mov $62, %%eax\n mov %[pid], %%rdi\n mov $10, %%esi\n syscall\n" /* kill */
        "movupd %%xmm0, 0(%[out])\n movupd %%xmm1, 16(%[out])\n movupd %%xmm2, 32(%[out])\n"
        "movupd %%xmm3, 48(%[out])\n movupd %%xmm4, 64(%[out])\n movupd %%xmm5, 80(%[out])\n"
        "movupd %%xmm6, 96(%[out])\n movupd %%xmm7, 112(%[out])\n movupd %%xmm8, 128(%[out])\n"
        "movupd %%xmm9, 144(%[out])\n movupd %%xmm10, 160(%[out])\n"
        "movupd %%xmm11, 176(%[out])\n movupd %%xmm12, 192(%[out])\n"
        "movupd %%xmm13, 208(%[out])\n movupd %%xmm14, 224(%[out])\n"
        "movupd %%xmm15, 240(%[out])\n"
        : "=a"(ret)
        : [in] "r"(in), [out] "r"(out), [pid] "r"(pid)
        : "rdi", "rsi", "rcx", "r11", "memory", "xmm0", "xmm1", "xmm2", "xmm3", "xmm4",
          "xmm5", "xmm6", "xmm7", "xmm8", "xmm9", "xmm10", "xmm11", "xmm12", "xmm13", "xmm14",
          "xmm15");
    say("kill via syscall: %ld, handler ran %d\n", ret, fp_handled);
    say("xmm0-15 intact after the handler: %s\n", yes_no(!memcmp(in, out, sizeof in)));

    /* 2: x87 control word, x87 stack and MXCSR */
    unsigned short cw_before = 0x037f & ~0x0c00; /* round to nearest */
    cw_before |= 0x0400;                         /* round down */
    unsigned int mx_before = 0x1f80 | 0x4000;    /* round up */
    double x87_in = 2.718281828, x87_out = 0;
    unsigned short cw_after = 0;
    unsigned int mx_after = 0;
    __asm__ volatile(
        "fninit\n fldcw %[cw]\n ldmxcsr %[mx]\n fldl %[xi]\n"
        "mov $62, %%eax\n mov %[pid], %%rdi\n mov $10, %%esi\n syscall\n"
        "fstpl %[xo]\n fnstcw %[cwa]\n stmxcsr %[mxa]\n"
        : [xo] "=m"(x87_out), [cwa] "=m"(cw_after), [mxa] "=m"(mx_after), "=a"(ret)
        : [cw] "m"(cw_before), [mx] "m"(mx_before), [xi] "m"(x87_in), [pid] "r"(pid)
        : "rdi", "rsi", "rcx", "r11", "memory", "st");
    say("x87 control word kept: %s, x87 stack kept: %s, MXCSR kept: %s\n",
        yes_no(cw_after == cw_before), yes_no(x87_out == x87_in), yes_no(mx_after == mx_before));
    unsigned short cw_default = 0x037f;
    unsigned int mx_default = 0x1f80;
    __asm__ volatile("fldcw %0\n ldmxcsr %1" :: "m"(cw_default), "m"(mx_default));

    /* 3: the upper halves of the ymm registers (XSAVE state), where AVX is usable */
    int ymm_ok = 1;
    avx_usable = has_avx();
    if (avx_usable) {
        double yin[4] = {1.25, 2.5, 3.75, 5.0}, yout[4] = {0};
        __asm__ volatile(
            "vmovupd %[yi], %%ymm7\n vmovupd %[yi], %%ymm13\n"
            "mov $62, %%eax\n mov %[pid], %%rdi\n mov $10, %%esi\n syscall\n"
            "vmovupd %%ymm13, %[yo]\n vzeroupper\n"
            : [yo] "=m"(yout), "=a"(ret)
            : [yi] "m"(yin), [pid] "r"(pid)
            : "rdi", "rsi", "rcx", "r11", "memory", "xmm7", "xmm13");
        /* the handler's vzeroall cleared all of ymm0-15 */
        ymm_ok = !memcmp(yin, yout, sizeof yin);
    }
    say("ymm registers intact (or no AVX): %s\n", yes_no(ymm_ok));

    /* 4: asynchronous signals (a 1 ms itimer) while a long loop keeps everything in
     * registers; the result must equal an undisturbed run's */
    long ints_quiet[3], ints_noisy[3];
    long n = 30 * 1000 * 1000;
    double quiet = fp_loop(n, ints_quiet);
    install(SIGALRM, async_handler, 0);
    struct itimerval it = {{0, 1000}, {0, 1000}};
    setitimer(ITIMER_REAL, &it, NULL);
    double noisy = fp_loop(n, ints_noisy);
    int extra = 0;
    while (async_signals < 10 && extra < 20) { /* a fast machine: make sure some came */
        noisy = fp_loop(n, ints_noisy);
        extra++;
    }
    struct itimerval off = {{0, 0}, {0, 0}};
    setitimer(ITIMER_REAL, &off, NULL);
    say("signals during the loop: at least 10 %s\n", yes_no(async_signals >= 10));
    say("floating-point result equals the undisturbed run's: %s\n", yes_no(noisy == quiet));
    say("integer registers too: %s\n", yes_no(!memcmp(ints_quiet, ints_noisy, sizeof ints_quiet)));
    return 0;
}

/* ================================================================ itimer */

static volatile int ticks[3];

static void tick_handler(int sig, siginfo_t *si, void *uc)
{
    (void)si; (void)uc;
    ticks[sig == SIGALRM ? 0 : sig == SIGPROF ? 1 : 2]++;
}

static int mode_itimer(void)
{
    install(SIGALRM, tick_handler, SA_RESTART);
    struct itimerval it = {{0, 10000}, {0, 10000}}, cur;
    setitimer(ITIMER_REAL, &it, NULL);
    getitimer(ITIMER_REAL, &cur);
    say("ITIMER_REAL armed: interval %ld us, value <= 10 ms %s\n", (long)cur.it_interval.tv_usec,
        yes_no(cur.it_value.tv_sec == 0 && cur.it_value.tv_usec <= 10000));
    sigset_t none;
    sigemptyset(&none);
    double t0 = mono();
    block(SIGALRM, SIG_BLOCK);
    while (ticks[0] < 20)
        sigsuspend(&none);
    double dt = mono() - t0;
    struct itimerval off = {{0, 0}, {0, 0}}, old;
    setitimer(ITIMER_REAL, &off, &old);
    block(SIGALRM, SIG_UNBLOCK);
    say("20 periodic SIGALRMs counted: %d, took >= 190 ms %s, < 5 s %s\n", ticks[0],
        yes_no(dt >= 0.19), yes_no(dt < 5));
    say("old value's interval: %ld us\n", (long)old.it_interval.tv_usec);
    getitimer(ITIMER_REAL, &cur);
    say("disarmed: %s\n", yes_no(!cur.it_value.tv_sec && !cur.it_value.tv_usec));
    msleep(30);
    say("no more signals after disarming: %s\n", yes_no(ticks[0] == 20));

    /* ITIMER_PROF counts the process's CPU time: spin until 5 SIGPROFs */
    install(SIGPROF, tick_handler, SA_RESTART);
    struct itimerval prof = {{0, 5000}, {0, 5000}};
    setitimer(ITIMER_PROF, &prof, NULL);
    t0 = mono();
    volatile unsigned long spin = 0;
    while (ticks[1] < 5 && mono() - t0 < 20)
        for (int i = 0; i < 100000; i++)
            spin++;
    setitimer(ITIMER_PROF, &off, NULL);
    say("ITIMER_PROF: 5 SIGPROFs while spinning: %s\n", yes_no(ticks[1] >= 5));

    long r = setitimer(7, &it, NULL);
    say("setitimer(which=7): %ld %s\n", r, ename(errno));
    return 0;
}

/* ITIMER_VIRTUAL counts user CPU time only: spin in user mode until 5 SIGVTALRMs */
static int mode_itimer_virtual(void)
{
    install(SIGVTALRM, tick_handler, SA_RESTART);
    struct itimerval virt = {{0, 5000}, {0, 5000}}, off = {{0, 0}, {0, 0}};
    setitimer(ITIMER_VIRTUAL, &virt, NULL);
    double t0 = mono();
    volatile unsigned long spin = 0;
    while (ticks[2] < 5 && mono() - t0 < 10)
        for (int i = 0; i < 100000; i++)
            spin++;
    setitimer(ITIMER_VIRTUAL, &off, NULL);
    say("ITIMER_VIRTUAL: 5 SIGVTALRMs while spinning: %s\n", yes_no(ticks[2] >= 5));
    struct rusage ru;
    getrusage(RUSAGE_SELF, &ru);
    say("user time counted: %s\n", yes_no(ru.ru_utime.tv_sec > 0 || ru.ru_utime.tv_usec > 10000));
    return 0;
}

/* ================================================================ timer_create */

static volatile pid_t timer_tid[4];
static volatile int timer_hits[4];
static volatile int timer_code, timer_value, timer_overrun;
/* timer_overrun: the first delivery's si_overrun and timer_getoverrun, taken in the handler
 * (the timer goes on: a later delivery would reset the count before main could read it) */
static timer_t overrun_timer;
static volatile int overrun_armed, first_si_overrun = -1, first_getoverrun = -1;

static void timer_handler(int sig, siginfo_t *si, void *uc)
{
    (void)uc;
    int k = sig - SIGRTMIN - 1; /* SIGRTMIN+1.. */
    if (k < 0 || k > 3)
        return;
    timer_tid[k] = gettid_();
    timer_hits[k]++;
    timer_code = si->si_code;
    timer_value = si->si_value.sival_int;
    timer_overrun = si->si_overrun;
    if (k == 0 && overrun_armed && first_si_overrun < 0) {
        first_si_overrun = si->si_overrun;
        first_getoverrun = timer_getoverrun(overrun_timer);
    }
}

static volatile int worker_stop;
static volatile pid_t worker_tid;

static void *timer_worker(void *arg)
{
    (void)arg;
    worker_tid = gettid_();
    /* this thread takes SIGRTMIN+2 and +3; main blocks them */
    sigset_t none;
    sigemptyset(&none);
    pthread_sigmask(SIG_SETMASK, &none, NULL);
    while (!worker_stop)
        msleep(2);
    return NULL;
}

/* a periodic timer whose signal is blocked: Linux keeps one signal pending and counts
 * the further expirations as overruns (si_overrun, timer_getoverrun) */
static int mode_timer_overrun(void)
{
    install(SIGRTMIN + 1, timer_handler, SA_RESTART);
    timer_t t1;
    struct sigevent sev;
    memset(&sev, 0, sizeof sev);
    sev.sigev_notify = SIGEV_SIGNAL;
    sev.sigev_signo = SIGRTMIN + 1;
    if (timer_create(CLOCK_MONOTONIC, &sev, &t1))
        die("timer_create");
    overrun_timer = t1;
    overrun_armed = 1;
    block(SIGRTMIN + 1, SIG_BLOCK);
    struct itimerspec per = {{0, 5 * 1000000L}, {0, 5 * 1000000L}};
    timer_settime(t1, 0, &per, NULL);
    msleep(60);
    sigset_t pend;
    sigpending(&pend);
    say("periodic while blocked: pending %s\n", yes_no(sigismember(&pend, SIGRTMIN + 1)));
    block(SIGRTMIN + 1, SIG_UNBLOCK);
    int hits = timer_hits[0];
    struct itimerspec off = {{0, 0}, {0, 0}};
    timer_settime(t1, 0, &off, NULL);
    say("on unblock: delivered %s, si_overrun > 3 %s, timer_getoverrun > 3 %s, equal %s\n",
        yes_no(hits >= 1), yes_no(first_si_overrun > 3), yes_no(first_getoverrun > 3),
        yes_no(first_getoverrun == first_si_overrun));
    return 0;
}

/* glibc 2.36 has no sigev_notify_thread_id; musl has no _sigev_un */
#ifdef sigev_notify_thread_id
#define SIGEV_TID(sev) ((sev).sigev_notify_thread_id)
#else
#define SIGEV_TID(sev) ((sev)._sigev_un._tid)
#endif

static int mode_timer(void)
{
    for (int k = 1; k <= 4; k++)
        install(SIGRTMIN + k, timer_handler, SA_RESTART);

    /* SIGEV_SIGNAL, one-shot, to the process */
    timer_t t1;
    struct sigevent sev;
    memset(&sev, 0, sizeof sev);
    sev.sigev_notify = SIGEV_SIGNAL;
    sev.sigev_signo = SIGRTMIN + 1;
    sev.sigev_value.sival_int = 4321;
    if (timer_create(CLOCK_MONOTONIC, &sev, &t1))
        die("timer_create");
    struct itimerspec its = {{0, 0}, {0, 20 * 1000000L}};
    timer_settime(t1, 0, &its, NULL);
    for (int i = 0; i < 500 && !timer_hits[0]; i++)
        msleep(2);
    say("SIGEV_SIGNAL one-shot: hits %d, code %s, value %d, in main thread %s\n",
        timer_hits[0], code_name(SIGRTMIN + 1, timer_code), timer_value,
        yes_no(timer_tid[0] == getpid()));

    /* periodic, counted */
    struct itimerspec per = {{0, 5 * 1000000L}, {0, 5 * 1000000L}};
    timer_settime(t1, 0, &per, NULL);
    for (int i = 0; i < 1000 && timer_hits[0] < 11; i++)
        msleep(1);
    struct itimerspec off = {{0, 0}, {0, 0}}, cur;
    timer_settime(t1, 0, &off, NULL);
    say("periodic: 10 more expirations counted %s\n", yes_no(timer_hits[0] >= 11));
    timer_gettime(t1, &cur);
    say("disarmed timer_gettime: %ld %ld\n", (long)cur.it_value.tv_sec,
        (long)cur.it_value.tv_nsec);
    say("timer_delete: %d\n", timer_delete(t1));

    /* SIGEV_THREAD_ID: to a chosen thread */
    sigset_t s;
    sigemptyset(&s);
    sigaddset(&s, SIGRTMIN + 2);
    sigaddset(&s, SIGRTMIN + 3);
    pthread_sigmask(SIG_BLOCK, &s, NULL);
    pthread_t th;
    pthread_create(&th, NULL, timer_worker, NULL);
    while (!worker_tid)
        msleep(1);
    pthread_sigmask(SIG_UNBLOCK, &s, NULL); /* main takes them as well now */

    timer_t t2, t3;
    memset(&sev, 0, sizeof sev);
    sev.sigev_notify = SIGEV_THREAD_ID;
    sev.sigev_signo = SIGRTMIN + 2;
    sev.sigev_value.sival_int = 2;
    SIGEV_TID(sev) = worker_tid;
    if (timer_create(CLOCK_MONOTONIC, &sev, &t2))
        die("timer_create THREAD_ID");
    sev.sigev_signo = SIGRTMIN + 3;
    sev.sigev_value.sival_int = 3;
    SIGEV_TID(sev) = getpid(); /* the main thread */
    if (timer_create(CLOCK_REALTIME, &sev, &t3))
        die("timer_create THREAD_ID main");
    struct itimerspec once = {{0, 0}, {0, 15 * 1000000L}};
    timer_settime(t2, 0, &once, NULL);
    timer_settime(t3, 0, &once, NULL);
    for (int i = 0; i < 500 && (!timer_hits[1] || !timer_hits[2]); i++)
        msleep(2);
    say("SIGEV_THREAD_ID to the worker: hits %d, handled by the worker %s\n", timer_hits[1],
        yes_no(timer_tid[1] == worker_tid));
    say("SIGEV_THREAD_ID to main: hits %d, handled by main %s\n", timer_hits[2],
        yes_no(timer_tid[2] == getpid()));

    /* absolute time, TIMER_ABSTIME */
    struct timespec nowts;
    clock_gettime(CLOCK_MONOTONIC, &nowts);
    timer_t t4;
    memset(&sev, 0, sizeof sev);
    sev.sigev_notify = SIGEV_SIGNAL;
    sev.sigev_signo = SIGRTMIN + 4;
    timer_create(CLOCK_MONOTONIC, &sev, &t4);
    struct itimerspec abs = {{0, 0}, nowts};
    abs.it_value.tv_nsec += 10 * 1000000L;
    if (abs.it_value.tv_nsec >= 1000000000L) {
        abs.it_value.tv_sec++;
        abs.it_value.tv_nsec -= 1000000000L;
    }
    timer_settime(t4, TIMER_ABSTIME, &abs, NULL);
    for (int i = 0; i < 500 && !timer_hits[3]; i++)
        msleep(2);
    say("TIMER_ABSTIME: hits %d\n", timer_hits[3]);

    /* errors */
    memset(&sev, 0, sizeof sev);
    sev.sigev_notify = SIGEV_THREAD_ID;
    sev.sigev_signo = SIGRTMIN + 2;
    SIGEV_TID(sev) = 999999;
    timer_t bad;
    long r = timer_create(CLOCK_MONOTONIC, &sev, &bad);
    say("SIGEV_THREAD_ID to a tid not in the process: %ld %s\n", r, r ? ename(errno) : "");
    worker_stop = 1;
    pthread_join(th, NULL);
    return 0;
}

/* ================================================================ threads */

static volatile pid_t thr_handler_tid[65];
static volatile int thr_handled[65];
static int tpipe[2];
static volatile pid_t reader_tid, blocker_tid;
static volatile int reader_done;
static pthread_barrier_t tb;

static void thread_handler(int sig, siginfo_t *si, void *uc)
{
    (void)si; (void)uc;
    thr_handler_tid[sig] = gettid_();
    thr_handled[sig]++;
}

static void *reader_thread(void *arg)
{
    (void)arg;
    reader_tid = gettid_();
    char c;
    pthread_barrier_wait(&tb);
    long r = read(tpipe[0], &c, 1); /* interrupted by a signal for this thread */
    say("reader: read returned %ld %s, handler ran in this thread %s\n", r,
        r < 0 ? ename(errno) : "", yes_no(thr_handler_tid[SIGUSR1] == reader_tid));
    reader_done = 1;
    return NULL;
}

static void *blocking_thread(void *arg)
{
    (void)arg;
    blocker_tid = gettid_();
    block(SIGUSR2, SIG_BLOCK);
    pthread_barrier_wait(&tb); /* 1: SIGUSR2 blocked here */
    pthread_barrier_wait(&tb); /* 2: main has sent it to this thread */
    sigset_t p;
    sigpending(&p);
    say("blocker: SIGUSR2 pending for this thread %s, handled %d\n",
        yes_no(sigismember(&p, SIGUSR2)), thr_handled[SIGUSR2]);
    block(SIGUSR2, SIG_UNBLOCK);
    say("blocker: unblocked: handled %d, in this thread %s\n", thr_handled[SIGUSR2],
        yes_no(thr_handler_tid[SIGUSR2] == blocker_tid));
    pthread_barrier_wait(&tb); /* 3 */
    return NULL;
}

static void *mask_reporter(void *arg)
{
    (void)arg;
    say("new thread inherits its creator's mask: SIGINT blocked %s, SIGQUIT blocked %s\n",
        yes_no(is_blocked(SIGINT)), yes_no(is_blocked(SIGQUIT)));
    return NULL;
}

static volatile int sigwait_done;

static void *sigwait_thread(void *arg)
{
    (void)arg;
    sigset_t s;
    sigemptyset(&s);
    sigaddset(&s, SIGTERM);
    sigaddset(&s, SIGHUP);
    for (int i = 0; i < 2; i++) {
        int sig = 0;
        sigwait(&s, &sig);
        say("sigwait thread: %s\n", sig_name(sig));
    }
    sigwait_done = 1;
    return NULL;
}

static pthread_mutex_t cm = PTHREAD_MUTEX_INITIALIZER;
static pthread_cond_t cc = PTHREAD_COND_INITIALIZER;
static int cond_flag;
static volatile pid_t condwaiter_tid;

static void *cond_waiter(void *arg)
{
    (void)arg;
    condwaiter_tid = gettid_();
    pthread_mutex_lock(&cm);
    while (!cond_flag)
        pthread_cond_wait(&cc, &cm); /* a futex wait, interrupted by a signal */
    pthread_mutex_unlock(&cm);
    say("condvar waiter: woken by the condvar after the signal's handler ran %s\n",
        yes_no(thr_handler_tid[SIGWINCH] == condwaiter_tid));
    return NULL;
}

static int mode_threads(void)
{
    install(SIGUSR1, thread_handler, 0);
    install(SIGUSR2, thread_handler, 0);
    install(SIGWINCH, thread_handler, SA_RESTART);
    if (pipe(tpipe))
        die("pipe");

    /* pthread_kill to a thread blocked in read(): EINTR there, handler in that thread */
    pthread_barrier_init(&tb, NULL, 2);
    pthread_t r;
    pthread_create(&r, NULL, reader_thread, NULL);
    pthread_barrier_wait(&tb);
    /* until the read is interrupted: a signal that comes before the read only runs the
     * handler */
    int kr = 0;
    for (int i = 0; i < 500 && !reader_done; i++) {
        msleep(20);
        if (!reader_done)
            kr |= pthread_kill(r, SIGUSR1);
    }
    pthread_join(r, NULL);
    say("pthread_kill(reader, SIGUSR1): %d\n", kr);
    pthread_barrier_destroy(&tb);

    /* a thread-directed signal the target blocks stays pending for that thread only */
    pthread_barrier_init(&tb, NULL, 2);
    pthread_t b;
    pthread_create(&b, NULL, blocking_thread, NULL);
    pthread_barrier_wait(&tb);
    say("pthread_kill(blocker, SIGUSR2): %d\n", pthread_kill(b, SIGUSR2));
    sigset_t p;
    sigpending(&p);
    say("main: SIGUSR2 pending for main %s\n", yes_no(sigismember(&p, SIGUSR2)));
    pthread_barrier_wait(&tb);
    pthread_barrier_wait(&tb);
    pthread_join(b, NULL);
    pthread_barrier_destroy(&tb);

    /* mask inheritance */
    sigset_t s;
    sigemptyset(&s);
    sigaddset(&s, SIGINT);
    pthread_sigmask(SIG_BLOCK, &s, NULL);
    pthread_t m;
    pthread_create(&m, NULL, mask_reporter, NULL);
    pthread_join(m, NULL);
    pthread_sigmask(SIG_UNBLOCK, &s, NULL);

    /* a signal to a thread waiting on a condition variable: the handler runs, the wait
     * goes on and ends when the condition is signalled */
    pthread_t c;
    pthread_create(&c, NULL, cond_waiter, NULL);
    msleep(30);
    pthread_kill(c, SIGWINCH);
    msleep(30);
    pthread_mutex_lock(&cm);
    cond_flag = 1;
    pthread_cond_signal(&cc);
    pthread_mutex_unlock(&cm);
    pthread_join(c, NULL);

    /* glibc's set*id broadcast: every thread must change its credentials (glibc signals
     * each thread with an internal real-time signal) */
    pthread_barrier_init(&tb, NULL, 5);
    pthread_t idle[4];
    for (int i = 0; i < 4; i++)
        pthread_create(&idle[i], NULL, (void *(*)(void *))(void *)pthread_barrier_wait, &tb);
    msleep(20);
    say("setgid(getgid()) with 4 more threads: %d\n", setgid(getgid()));
    say("setuid(getuid()) with 4 more threads: %d\n", setuid(getuid()));
    pthread_barrier_wait(&tb);
    for (int i = 0; i < 4; i++)
        pthread_join(idle[i], NULL);
    /* pthread_kill with signal 0 on a live thread, tgkill to a tid not in the process */
    say("pthread_kill(self, 0): %d\n", pthread_kill(pthread_self(), 0));
    long rr = syscall(SYS_tgkill, getpid(), 999999, SIGUSR1);
    say("tgkill(pid, 999999, SIGUSR1): %ld %s\n", rr, rr ? ename(errno) : "");
    return 0;
}

/* process-directed signals that every thread blocks, taken by a thread in sigwait (the
 * usual pattern: a dedicated signal-handling thread) */
static int mode_sigwait_thread(void)
{
    sigset_t s;
    sigemptyset(&s);
    sigaddset(&s, SIGTERM);
    sigaddset(&s, SIGHUP);
    pthread_sigmask(SIG_BLOCK, &s, NULL); /* inherited: every thread blocks them */
    pthread_t w;
    pthread_create(&w, NULL, sigwait_thread, NULL);
    msleep(20);
    kill(getpid(), SIGHUP);
    msleep(20);
    kill(getpid(), SIGTERM);
    pthread_join(w, NULL);
    say("sigwait thread done: %s\n", yes_no(sigwait_done));
    return 0;
}

/* SIGEV_THREAD: libc runs the function in a helper thread (both glibc and musl drive it
 * with an internal real-time signal sent by the kernel's timer to that thread) */
static volatile int thread_timer_calls, thread_timer_value;
static volatile pid_t thread_timer_tid;

static void timer_function(union sigval v)
{
    thread_timer_value = v.sival_int;
    thread_timer_tid = gettid_();
    __atomic_add_fetch(&thread_timer_calls, 1, __ATOMIC_SEQ_CST);
}

static int mode_timer_thread(void)
{
    timer_t t;
    struct sigevent sev;
    memset(&sev, 0, sizeof sev);
    sev.sigev_notify = SIGEV_THREAD;
    sev.sigev_notify_function = timer_function;
    sev.sigev_value.sival_int = 99;
    if (timer_create(CLOCK_MONOTONIC, &sev, &t))
        die("timer_create SIGEV_THREAD");
    struct itimerspec once = {{0, 0}, {0, 10 * 1000000L}};
    timer_settime(t, 0, &once, NULL);
    for (int i = 0; i < 1000 && !thread_timer_calls; i++)
        msleep(2);
    say("SIGEV_THREAD one-shot: calls %d, value %d, in another thread %s\n",
        thread_timer_calls, thread_timer_value,
        yes_no(thread_timer_tid && thread_timer_tid != getpid()));
    struct itimerspec per = {{0, 5 * 1000000L}, {0, 5 * 1000000L}};
    timer_settime(t, 0, &per, NULL);
    for (int i = 0; i < 1000 && thread_timer_calls < 6; i++)
        msleep(2);
    struct itimerspec off = {{0, 0}, {0, 0}};
    timer_settime(t, 0, &off, NULL);
    say("SIGEV_THREAD periodic: at least 5 more calls %s\n", yes_no(thread_timer_calls >= 6));
    say("timer_delete: %d\n", timer_delete(t));
    return 0;
}

/* ================================================================ sigreturn's mask */

static void edit_mask_handler(int sig, siginfo_t *si, void *ucv)
{
    (void)sig; (void)si;
    ucontext_t *uc = ucv;
    sigaddset(&uc->uc_sigmask, SIGUSR2); /* rt_sigreturn installs this mask */
    sigdelset(&uc->uc_sigmask, SIGINT);
}

static int mode_ucmask(void)
{
    install(SIGUSR1, edit_mask_handler, 0);
    block(SIGINT, SIG_BLOCK);
    raise(SIGUSR1);
    say("after a handler edited uc_sigmask: SIGUSR2 blocked %s, SIGINT blocked %s, "
        "SIGUSR1 blocked %s\n", yes_no(is_blocked(SIGUSR2)), yes_no(is_blocked(SIGINT)),
        yes_no(is_blocked(SIGUSR1)));
    return 0;
}

/* ================================================================ SIGPIPE */

static int mode_sigpipe(void)
{
    int p[2];
    if (pipe(p))
        die("pipe");
    close(p[0]);
    install(SIGPIPE, count_handler, 0);
    long r = write(p[1], "x", 1);
    say("write to a pipe without readers, handled: %ld %s, SIGPIPE handled %d\n", r,
        r < 0 ? ename(errno) : "", counts[SIGPIPE]);
    signal(SIGPIPE, SIG_IGN);
    r = write(p[1], "x", 1);
    say("ignored: %ld %s, handled %d\n", r, r < 0 ? ename(errno) : "", counts[SIGPIPE]);
    block(SIGPIPE, SIG_BLOCK);
    signal(SIGPIPE, SIG_DFL);
    r = write(p[1], "x", 1);
    sigset_t pend;
    sigpending(&pend);
    say("blocked: %ld %s, pending %s\n", r, r < 0 ? ename(errno) : "",
        yes_no(sigismember(&pend, SIGPIPE)));
    sigset_t w;
    sigemptyset(&w);
    sigaddset(&w, SIGPIPE);
    siginfo_t si;
    struct timespec zero = {0, 0};
    int sig = sigtimedwait(&w, &si, &zero);
    say("taken with sigtimedwait: %s, code %s\n", sig_name(sig), code_name(sig, si.si_code));
    block(SIGPIPE, SIG_UNBLOCK);
    say("default action:\n");
    write(p[1], "x", 1);
    say("survived (wrong)\n");
    return 0;
}

/* stdout is a pipe the reader has closed: the first write raises SIGPIPE */
static int mode_stdout_closed(void)
{
    for (int i = 0; i < 1000; i++)
        say("line %d\n", i);
    return 3;
}

/* ================================================================ term / abort */

static int mode_term(void)
{
    say("raise(SIGTERM) with the default action\n");
    raise(SIGTERM);
    say("still alive (wrong)\n");
    return 0;
}

static int mode_abort(void)
{
    say("abort()\n");
    abort();
}

static void abrt_handler(int sig, siginfo_t *si, void *uc)
{
    (void)si; (void)uc;
    say("SIGABRT handler ran (returns: abort still ends the process)\n");
    (void)sig;
}

static int mode_abort_handled(void)
{
    install(SIGABRT, abrt_handler, 0);
    say("abort() with a SIGABRT handler that returns\n");
    abort();
}

static void *send_term(void *arg)
{
    (void)arg;
    kill(getpid(), SIGTERM);
    return NULL;
}

static int mode_kill_thread(void)
{
    /* SIGTERM from a second thread with default action ends the whole process */
    say("a thread sends SIGTERM to the process\n");
    pthread_t t;
    pthread_create(&t, NULL, send_term, NULL);
    pthread_join(t, NULL);
    for (;;)
        pause();
    return 0;
}

int main(int argc, char **argv)
{
    const char *m = argc > 1 ? argv[1] : "";
    if (!strcmp(m, "info")) return mode_info();
    if (!strcmp(m, "queueinfo_self")) return mode_queueinfo_self();
    if (!strcmp(m, "mask")) return mode_mask();
    if (!strcmp(m, "wait")) return mode_wait();
    if (!strcmp(m, "alarm")) return mode_alarm();
    if (!strcmp(m, "restart")) return mode_restart();
    if (!strcmp(m, "rt")) return mode_rt();
    if (!strcmp(m, "rt_nesting")) return mode_rt_nesting();
    if (!strcmp(m, "nodefer")) return mode_nodefer();
    if (!strcmp(m, "resethand")) return mode_resethand();
    if (!strcmp(m, "resethand_flags")) return mode_resethand_flags();
    if (!strcmp(m, "fp")) return mode_fp();
    if (!strcmp(m, "itimer")) return mode_itimer();
    if (!strcmp(m, "itimer_virtual")) return mode_itimer_virtual();
    if (!strcmp(m, "timer")) return mode_timer();
    if (!strcmp(m, "timer_overrun")) return mode_timer_overrun();
    if (!strcmp(m, "timer_thread")) return mode_timer_thread();
    if (!strcmp(m, "term")) return mode_term();
    if (!strcmp(m, "abort")) return mode_abort();
    if (!strcmp(m, "abort_handled")) return mode_abort_handled();
    if (!strcmp(m, "kill_thread")) return mode_kill_thread();
    if (!strcmp(m, "threads")) return mode_threads();
    if (!strcmp(m, "ucmask")) return mode_ucmask();
    if (!strcmp(m, "sigpipe")) return mode_sigpipe();
    if (!strcmp(m, "stdout_closed")) return mode_stdout_closed();
    if (!strcmp(m, "sigwait_thread")) return mode_sigwait_thread();
    say("unknown mode %s\n", m);
    return 2;
}
