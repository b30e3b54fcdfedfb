/* Helpers shared by the signal payloads (sig_basic, sig_fault, sig_host): output one
 * write(2) per line, and names for signals, si_codes and errnos. */
#ifndef SIG_COMMON_H
#define SIG_COMMON_H

#include "payload.h"

static void say(const char *fmt, ...) __attribute__((format(printf, 1, 2)));
static void say(const char *fmt, ...)
{
    char buf[512];
    int saved = errno;
    va_list ap;
    va_start(ap, fmt);
    int n = vsnprintf(buf, sizeof buf, fmt, ap);
    va_end(ap);
    if (n > (int)sizeof buf - 1)
        n = sizeof buf - 1;
    write(1, buf, n);
    errno = saved;
}

__attribute__((unused)) static const char *ename(int e)
{
    if (e == ESRCH)
        return "ESRCH";
    return e == ETIMEDOUT ? "ETIMEDOUT" : errno_name(e);
}

__attribute__((unused)) static const char *yes_no(int b) { return b ? "yes" : "no"; }

__attribute__((unused)) static const char *code_name(int signo, int code)
{
    static char buf[32];
    switch (code) {
    case SI_USER: return "SI_USER";
    case SI_KERNEL: return "SI_KERNEL";
    case SI_QUEUE: return "SI_QUEUE";
    case SI_TIMER: return "SI_TIMER";
    case SI_TKILL: return "SI_TKILL";
    case SI_MESGQ: return "SI_MESGQ";
    case SI_ASYNCIO: return "SI_ASYNCIO";
    }
    if (signo == SIGSEGV && code == SEGV_MAPERR) return "SEGV_MAPERR";
    if (signo == SIGSEGV && code == SEGV_ACCERR) return "SEGV_ACCERR";
    if (signo == SIGFPE && code == FPE_INTDIV) return "FPE_INTDIV";
    if (signo == SIGFPE && code == FPE_INTOVF) return "FPE_INTOVF";
    if (signo == SIGFPE && code == FPE_FLTDIV) return "FPE_FLTDIV";
    if (signo == SIGILL && code == ILL_ILLOPN) return "ILL_ILLOPN";
    if (signo == SIGILL && code == ILL_ILLOPC) return "ILL_ILLOPC";
    if (signo == SIGTRAP && code == TRAP_BRKPT) return "TRAP_BRKPT";
    if (signo == SIGTRAP && code == TRAP_TRACE) return "TRAP_TRACE";
    if (signo == SIGBUS && code == BUS_ADRERR) return "BUS_ADRERR";
    if (signo == SIGBUS && code == BUS_ADRALN) return "BUS_ADRALN";
    snprintf(buf, sizeof buf, "code %d", code);
    return buf;
}

/* signal names relative to SIGRTMIN, whose value differs between musl and glibc */
__attribute__((unused)) static const char *sig_name(int sig)
{
    static char buf[8][24];
    static int next;
    char *b = buf[next++ % 8];
    switch (sig) {
    case SIGHUP: return "SIGHUP";
    case SIGINT: return "SIGINT";
    case SIGQUIT: return "SIGQUIT";
    case SIGILL: return "SIGILL";
    case SIGTRAP: return "SIGTRAP";
    case SIGABRT: return "SIGABRT";
    case SIGBUS: return "SIGBUS";
    case SIGFPE: return "SIGFPE";
    case SIGKILL: return "SIGKILL";
    case SIGUSR1: return "SIGUSR1";
    case SIGSEGV: return "SIGSEGV";
    case SIGUSR2: return "SIGUSR2";
    case SIGPIPE: return "SIGPIPE";
    case SIGALRM: return "SIGALRM";
    case SIGTERM: return "SIGTERM";
    case SIGCHLD: return "SIGCHLD";
    case SIGCONT: return "SIGCONT";
    case SIGSTOP: return "SIGSTOP";
    case SIGPROF: return "SIGPROF";
    case SIGVTALRM: return "SIGVTALRM";
    case SIGWINCH: return "SIGWINCH";
    }
    if (sig >= SIGRTMIN && sig <= SIGRTMAX)
        snprintf(b, 24, "SIGRTMIN+%d", sig - SIGRTMIN);
    else
        snprintf(b, 24, "signal %d", sig);
    return b;
}

__attribute__((unused)) static pid_t gettid_(void) { return (pid_t)syscall(SYS_gettid); }

__attribute__((unused)) static void msleep(long ms)
{
    struct timespec ts = {ms / 1000, (ms % 1000) * 1000000L};
    while (nanosleep(&ts, &ts) == -1 && errno == EINTR) {}
}

__attribute__((unused)) static double mono(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return ts.tv_sec + ts.tv_nsec / 1e9;
}

__attribute__((unused)) static void install(int sig, void (*fn)(int, siginfo_t *, void *), int flags)
{
    struct sigaction sa;
    memset(&sa, 0, sizeof sa);
    sa.sa_sigaction = fn;
    sa.sa_flags = SA_SIGINFO | flags;
    sigemptyset(&sa.sa_mask);
    if (sigaction(sig, &sa, NULL))
        die("sigaction");
}

__attribute__((unused)) static void block(int sig, int how)
{
    sigset_t s;
    sigemptyset(&s);
    sigaddset(&s, sig);
    if (sigprocmask(how, &s, NULL))
        die("sigprocmask");
}

__attribute__((unused)) static int is_blocked(int sig)
{
    sigset_t s;
    sigprocmask(SIG_BLOCK, NULL, &s);
    return sigismember(&s, sig);
}

#endif
