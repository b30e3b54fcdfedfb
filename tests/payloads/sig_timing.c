/* When a signal a payload makes for itself is delivered: Linux delivers it before the
 * call that generated it (or met it) returns to user space. Each mode prints whether the
 * handler had run when the call returned.
 *   sig_timing kill0 | killpg | kill-self-thread | tgkill | unblock-pending |
 *              sigpending-timer | timer-disarm N | posix-timer-disarm N | alarm-disarm N |
 *              {ppoll,pselect,epoll}-{pending,timer} */
#define _GNU_SOURCE
#include <fcntl.h>
#include <pthread.h>
#include <signal.h>
#include <stdarg.h>
#include <stdint.h>
#include <stdio.h>
#include <string.h>
#include <poll.h>
#include <sys/epoll.h>
#include <sys/select.h>
#include <sys/syscall.h>
#include <sys/time.h>
#include <time.h>
#include <unistd.h>
#include "sig_common.h"

static volatile sig_atomic_t handled;

static void on_signal(int signo) { (void)signo; handled++; }

static void catch(int signo)
{
    struct sigaction sa;
    memset(&sa, 0, sizeof sa);
    sa.sa_handler = on_signal;
    sigaction(signo, &sa, NULL);
}

static uint64_t now_ns(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return ts.tv_sec * 1000000000ull + ts.tv_nsec;
}

static void spin_ns(uint64_t ns)
{
    uint64_t end = now_ns() + ns;
    while (now_ns() < end)
        ;
}

static void *kill_process(void *arg)
{
    (void)arg;
    /* Every thread but this one blocks SIGUSR1: the process-directed signal can only be
     * delivered here, and must be before kill returns. */
    sigset_t set;
    sigemptyset(&set);
    sigaddset(&set, SIGUSR1);
    pthread_sigmask(SIG_UNBLOCK, &set, NULL);
    handled = 0;
    kill(getpid(), SIGUSR1);
    say("kill(getpid()) from a thread: handled before return: %s\n", yes_no(handled == 1));
    return NULL;
}

/* A periodic timer raced against its own disarm: an expiry that happened before the
 * disarm must reach the handler, never the SIG_DFL set right after (which kills). */
static void disarm_race(const char *mode, int rounds)
{
    timer_t timer;
    struct sigevent ev;
    memset(&ev, 0, sizeof ev);
    ev.sigev_notify = SIGEV_SIGNAL;
    ev.sigev_signo = SIGALRM;
    if (!strcmp(mode, "posix-timer-disarm") && timer_create(CLOCK_MONOTONIC, &ev, &timer))
        return;
    for (int i = 0; i < rounds; i++) {
        catch(SIGALRM);
        if (!strcmp(mode, "timer-disarm")) {
            struct itimerval on = {{0, 50}, {0, 50}}, off = {{0, 0}, {0, 0}};
            setitimer(ITIMER_REAL, &on, NULL);
            spin_ns(200000 + (i % 7) * 37000);
            setitimer(ITIMER_REAL, &off, NULL);
        } else if (!strcmp(mode, "posix-timer-disarm")) {
            struct itimerspec on = {{0, 50000}, {0, 50000}}, off;
            memset(&off, 0, sizeof off);
            timer_settime(timer, 0, &on, NULL);
            spin_ns(200000 + (i % 7) * 37000);
            timer_settime(timer, 0, &off, NULL);
        } else {
            struct itimerval on = {{0, 0}, {0, 100}};
            setitimer(ITIMER_REAL, &on, NULL);
            spin_ns(300000);
            alarm(0);
        }
        signal(SIGALRM, SIG_DFL);
    }
    say("%s: %d rounds survived\n", mode, rounds);
}

/* ppoll/pselect/epoll_pwait with a mask that unblocks SIGALRM (blocked otherwise):
 * pending before the call ("pending") or raised by a timer during it ("timer"), the
 * signal ends the wait with EINTR after its handler ran, and the mask is back after. */
static void masked_wait(const char *call, const char *when)
{
    catch(SIGALRM);
    sigset_t alrm, during, after;
    sigemptyset(&alrm);
    sigaddset(&alrm, SIGALRM);
    sigprocmask(SIG_BLOCK, &alrm, NULL);
    sigprocmask(SIG_BLOCK, NULL, &during);
    sigdelset(&during, SIGALRM);
    handled = 0;
    if (!strcmp(when, "pending")) {
        raise(SIGALRM);
    } else {
        struct itimerval once = {{0, 0}, {0, 20000}};
        setitimer(ITIMER_REAL, &once, NULL);
    }
    struct timespec limit = {5, 0};
    int r;
    if (!strcmp(call, "ppoll")) {
        r = ppoll(NULL, 0, &limit, &during);
    } else if (!strcmp(call, "pselect")) {
        r = pselect(0, NULL, NULL, NULL, &limit, &during);
    } else {
        int ep = epoll_create1(0);
        struct epoll_event ev;
        r = epoll_pwait(ep, &ev, 1, 5000, &during);
    }
    int e = errno;
    sigprocmask(SIG_BLOCK, NULL, &after);
    say("%s-%s: %d %s, handled %d, SIGALRM blocked after: %s\n", call, when, r,
        r < 0 ? ename(e) : "", handled, yes_no(sigismember(&after, SIGALRM)));
}

int main(int argc, char **argv)
{
    const char *mode = argc > 1 ? argv[1] : "";
    catch(SIGUSR1);
    if (!strcmp(mode, "kill0") || !strcmp(mode, "killpg"))
        setpgid(0, 0);  /* a group of its own: the signal is for this process only */
    if (!strcmp(mode, "kill0") || !strcmp(mode, "killpg")) {
        int late = 0;
        for (int i = 0; i < 500; i++) {
            handled = 0;
            if (!strcmp(mode, "kill0"))
                kill(0, SIGUSR1);
            else
                killpg(getpgrp(), SIGUSR1);
            late += handled != 1;
        }
        say("%s: handled after return: %d of 500\n", mode, late);
    } else if (!strcmp(mode, "kill-self-thread")) {
        sigset_t set;
        sigemptyset(&set);
        sigaddset(&set, SIGUSR1);
        pthread_sigmask(SIG_BLOCK, &set, NULL);
        pthread_t thread;
        pthread_create(&thread, NULL, kill_process, NULL);
        pthread_join(thread, NULL);
    } else if (!strcmp(mode, "pidfd-self")) {
        /* A pidfd of itself (a pidfd_open one, and a /proc/PID directory, which is
         * one too): the signal is handled before pidfd_send_signal returns. */
        char path[64];
        snprintf(path, sizeof path, "/proc/%d", (int)getpid());
        int fds[2] = {(int)syscall(SYS_pidfd_open, getpid(), 0),
                      open(path, O_RDONLY | O_DIRECTORY)};
        int late = 0;
        for (int i = 0; i < 200; i++) {
            handled = 0;
            syscall(SYS_pidfd_send_signal, fds[i % 2], SIGUSR1, NULL, 0);
            late += handled != 1;
        }
        say("pidfd-self: handled after return: %d of 200\n", late);
    } else if (!strcmp(mode, "tgkill")) {
        syscall(SYS_tgkill, getpid(), (pid_t)syscall(SYS_gettid), SIGUSR1);
        say("tgkill(self): handled before return: %s\n", yes_no(handled == 1));
    } else if (!strcmp(mode, "unblock-pending")) {
        /* A timer fires while its signal is blocked; once sigpending shows it,
         * unblocking delivers it before sigprocmask returns. */
        catch(SIGALRM);
        sigset_t set, pending;
        sigemptyset(&set);
        sigaddset(&set, SIGALRM);
        sigprocmask(SIG_BLOCK, &set, NULL);
        struct itimerval once = {{0, 0}, {0, 1000}};
        setitimer(ITIMER_REAL, &once, NULL);
        do {
            sigpending(&pending);
        } while (!sigismember(&pending, SIGALRM));
        handled = 0;
        sigprocmask(SIG_UNBLOCK, &set, NULL);
        say("unblocked pending timer signal: handled before return: %s\n",
            yes_no(handled == 1));
    } else if (!strcmp(mode, "sigpending-timer")) {
        /* An expired one-shot timer's signal is pending on the process by the time
         * getitimer says the timer has run out. */
        sigset_t set, pending;
        sigemptyset(&set);
        sigaddset(&set, SIGALRM);
        sigprocmask(SIG_BLOCK, &set, NULL);
        struct itimerval once = {{0, 0}, {0, 1000}}, left;
        setitimer(ITIMER_REAL, &once, NULL);
        do {
            getitimer(ITIMER_REAL, &left);
        } while (left.it_value.tv_sec || left.it_value.tv_usec);
        spin_ns(1000000);
        sigpending(&pending);
        say("expired timer pending: %s\n", yes_no(sigismember(&pending, SIGALRM)));
    } else if (strchr(mode, '-') && (!strncmp(mode, "ppoll", 5) || !strncmp(mode, "pselect", 7)
                                       || !strncmp(mode, "epoll", 5))) {
        char call[16];
        snprintf(call, sizeof call, "%.*s", (int)(strchr(mode, '-') - mode), mode);
        masked_wait(call, strchr(mode, '-') + 1);
    } else if (strstr(mode, "disarm")) {
        disarm_race(mode, argc > 2 ? atoi(argv[2]) : 200);
    } else {
        say("unknown mode %s\n", mode);
        return 2;
    }
    return 0;
}
