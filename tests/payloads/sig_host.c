/* Signals from outside the process: sig_host MODE SENDER_PID (see below). */
#define _GNU_SOURCE
#include <pthread.h>

#include <signal.h>
#include <stdarg.h>
#include <stdint.h>
#include <sys/syscall.h>
#include <time.h>
#include <unistd.h>

#include "sig_common.h"


/* Signals sent from outside (the test sends them to the payload's process, which is km
 * under km): sig_host MODE SENDER_PID. The payload says "ready" when its handlers are
 * in place, and one line per signal handled. The test drives it by reading those lines.
 *
 * modes: sigsuspend pause spin threads join default default_threads ignore read stop */

static pid_t sender;
static volatile sig_atomic_t got_usr1, got_int, got_term, got_cont;
static volatile pid_t handler_tid;

static void host_handler(int sig, siginfo_t *si, void *uc)
{
    (void)uc;
    handler_tid = gettid_();
    say("got %s, code %s, sent by the test %s\n", sig_name(sig), code_name(sig, si->si_code),
        yes_no(si->si_pid == sender));
    if (sig == SIGUSR1) got_usr1++;
    if (sig == SIGINT) got_int++;
    if (sig == SIGCONT) got_cont++;
    if (sig == SIGTERM) got_term++;
}

static void install_all(int flags)
{
    install(SIGUSR1, host_handler, flags);
    install(SIGINT, host_handler, flags);
    install(SIGTERM, host_handler, flags);
}

static int mode_sigsuspend(void)
{
    install_all(0);
    sigset_t s, none;
    sigemptyset(&s);
    sigaddset(&s, SIGUSR1);
    sigaddset(&s, SIGINT);
    sigaddset(&s, SIGTERM);
    sigprocmask(SIG_BLOCK, &s, NULL);
    sigemptyset(&none);
    say("ready\n");
    while (!got_term) {
        int r = sigsuspend(&none);
        say("sigsuspend returned %d %s\n", r, ename(errno));
    }
    say("exiting with 3 after SIGTERM (USR1 %d, INT %d)\n", got_usr1, got_int);
    return 3;
}

static int mode_pause(void)
{
    install_all(0);
    say("ready\n");
    while (!got_term) {
        int r = pause();
        say("pause returned %d %s\n", r, ename(errno));
    }
    say("exiting with 4 after SIGTERM (USR1 %d, INT %d)\n", got_usr1, got_int);
    return 4;
}

static int mode_spin(void)
{
    install_all(0);
    say("ready\n");
    int seen = 0;
    /* no system calls in the loop: only an interrupted vCPU notices the signal */
    while (!got_term) {
        if (got_usr1 + got_int != seen) {
            seen = got_usr1 + got_int;
            say("the spinning loop saw %d signal(s)\n", seen);
        }
    }
    say("exiting with 5 after SIGTERM\n");
    return 5;
}

static volatile pid_t worker_tid;
static volatile int stop_spinner;

static void *worker(void *arg)
{
    (void)arg;
    sigset_t s;
    sigemptyset(&s);
    pthread_sigmask(SIG_SETMASK, &s, NULL); /* the only thread taking the signals */
    worker_tid = gettid_();
    while (!got_term)
        pause();
    say("worker: handled in this thread %s\n", yes_no(handler_tid == worker_tid));
    return NULL;
}

static void *spinner(void *arg)
{
    (void)arg;
    while (!stop_spinner) {}
    return NULL;
}

static int mode_threads(void)
{
    install_all(0);
    sigset_t s;
    sigfillset(&s);
    pthread_sigmask(SIG_BLOCK, &s, NULL); /* inherited by the spinner */
    pthread_t w, sp;
    pthread_create(&sp, NULL, spinner, NULL);
    pthread_create(&w, NULL, worker, NULL);
    while (!worker_tid)
        msleep(1);
    say("ready\n");
    pthread_join(w, NULL);
    stop_spinner = 1;
    pthread_join(sp, NULL);
    say("exiting with 6 (USR1 %d, INT %d, TERM %d)\n", got_usr1, got_int, got_term);
    return 6;
}

static void *polling_worker(void *arg)
{
    (void)arg;
    sigset_t s;
    sigfillset(&s);
    pthread_sigmask(SIG_BLOCK, &s, NULL); /* only main can take the signals */
    while (!got_term)
        msleep(5);
    return NULL;
}

static int mode_join(void)
{
    install_all(0);
    pthread_t w;
    pthread_create(&w, NULL, polling_worker, NULL);
    say("ready\n");
    int r = pthread_join(w, NULL); /* a futex wait in main, interrupted by each handler */
    say("pthread_join returned %d after the handlers ran in main %s (USR1 %d, INT %d)\n", r,
        yes_no(handler_tid == getpid()), got_usr1, got_int);
    return 8;
}

static void *idle_thread(void *arg)
{
    (void)arg;
    for (;;)
        pause();
    return NULL;
}

static int mode_default(int threads)
{
    for (int i = 0; i < threads; i++) {
        pthread_t t;
        pthread_create(&t, NULL, idle_thread, NULL);
    }
    say("ready\n");
    for (;;)
        pause();
    return 0;
}

static int mode_ignore(void)
{
    signal(SIGINT, SIG_IGN);
    signal(SIGUSR1, SIG_IGN);
    say("ready\n");
    for (;;) {
        int r = pause();
        say("pause returned %d (wrong: ignored signals do not interrupt)\n", r);
    }
    return 0;
}

static int mode_read(void)
{
    install(SIGUSR1, host_handler, 0);
    say("ready\n");
    char buf[64];
    long n = read(0, buf, sizeof buf);
    say("read without SA_RESTART: %ld %s\n", n, n < 0 ? ename(errno) : "");
    install(SIGUSR1, host_handler, SA_RESTART);
    say("reading again, with SA_RESTART\n");
    n = read(0, buf, sizeof buf);
    say("read with SA_RESTART: %ld", n);
    if (n > 0)
        say(" \"%.*s\"", (int)(n && buf[n - 1] == '\n' ? n - 1 : n), buf);
    say("\n");
    return 0;
}

static int mode_stop(void)
{
    install(SIGCONT, host_handler, 0);
    install(SIGTERM, host_handler, 0);
    say("ready\n");
    while (!got_term)
        pause();
    say("exiting with 7 (CONT %d)\n", got_cont);
    return 7;
}

int main(int argc, char **argv)
{
    const char *m = argc > 1 ? argv[1] : "";
    sender = argc > 2 ? atoi(argv[2]) : 0;
    if (!strcmp(m, "sigsuspend")) return mode_sigsuspend();
    if (!strcmp(m, "pause")) return mode_pause();
    if (!strcmp(m, "spin")) return mode_spin();
    if (!strcmp(m, "threads")) return mode_threads();
    if (!strcmp(m, "join")) return mode_join();
    if (!strcmp(m, "default")) return mode_default(0);
    if (!strcmp(m, "default_threads")) return mode_default(3);
    if (!strcmp(m, "ignore")) return mode_ignore();
    if (!strcmp(m, "read")) return mode_read();
    if (!strcmp(m, "stop")) return mode_stop();
    say("unknown mode %s\n", m);
    return 2;
}
