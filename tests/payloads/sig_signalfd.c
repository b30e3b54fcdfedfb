/* signalfd as Linux has it: signals stay pending until read, reads take whole records
 * in delivery order, poll/epoll readiness follows what is pending, a fork's signalfd
 * sees the child's signals, and the descriptor looks like Linux's.
 *   sig_signalfd pending | order | descriptor | blocking | restart | delivered | fork |
 *                epoll | sigwait */
#define _GNU_SOURCE
#include <errno.h>
#include <stdarg.h>
#include <fcntl.h>
#include <poll.h>
#include <pthread.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/signalfd.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <sys/uio.h>
#include <sys/wait.h>
#include <unistd.h>
#include "sig_common.h"

static int watch(int first, ...)
{
    sigset_t set;
    sigemptyset(&set);
    sigaddset(&set, first);
    va_list list;
    va_start(list, first);
    for (int s = va_arg(list, int); s; s = va_arg(list, int))
        sigaddset(&set, s);
    va_end(list);
    sigprocmask(SIG_BLOCK, &set, NULL);
    return signalfd(-1, &set, SFD_NONBLOCK | SFD_CLOEXEC);
}

static int readable(int fd)
{
    struct pollfd p = {fd, POLLIN, 0};
    return poll(&p, 1, 0) == 1 && (p.revents & POLLIN);
}

static int is_pending(int signo)
{
    sigset_t set;
    sigpending(&set);
    return sigismember(&set, signo);
}

static void show_read(int fd, size_t size)
{
    struct signalfd_siginfo records[8];
    ssize_t r = read(fd, records, size);
    if (r < 0) {
        say("read %zu: -1 %s\n", size, ename(errno));
        return;
    }
    say("read %zu: %zd bytes\n", size, r);
    for (ssize_t i = 0; i < r / (ssize_t)sizeof records[0]; i++)
        say("  signo %u code %d pid is mine %d int %d ptr %llx\n", records[i].ssi_signo,
            records[i].ssi_code, records[i].ssi_pid == (uint32_t)getpid(),
            records[i].ssi_int, (unsigned long long)records[i].ssi_ptr);
}

static void queue(int signo, long value)
{
    union sigval v;
    v.sival_ptr = (void *)value;
    sigqueue(getpid(), signo, v);
}

static void mode_pending(void)
{
    int fd = watch(SIGUSR1, 0);
    say("readable before: %d\n", readable(fd));
    kill(getpid(), SIGUSR1);
    say("pending after kill: %d, readable: %d\n", is_pending(SIGUSR1), readable(fd));
    show_read(fd, 127);
    show_read(fd, 0);
    say("still pending after refused reads: %d\n", is_pending(SIGUSR1));
    show_read(fd, 128);
    say("pending after read: %d, readable: %d\n", is_pending(SIGUSR1), readable(fd));
    show_read(fd, 128);
}

static void mode_order(void)
{
    int rt = SIGRTMIN + 2;
    int fd = watch(SIGUSR2, SIGUSR1, SIGRTMIN + 2, SIGTERM, 0);
    queue(rt, 0x80000001L);
    kill(getpid(), SIGUSR2);
    kill(getpid(), SIGTERM);
    kill(getpid(), SIGUSR1);
    kill(getpid(), SIGUSR1);  /* a standard signal is pending once */
    queue(rt, -5L);
    /* Two records fit in 300 bytes; the rest stay. */
    show_read(fd, 300);
    say("pending: USR1 %d USR2 %d TERM %d RT %d\n", is_pending(SIGUSR1), is_pending(SIGUSR2),
        is_pending(SIGTERM), is_pending(rt));
    show_read(fd, sizeof(struct signalfd_siginfo) * 8);
    say("readable at the end: %d\n", readable(fd));
}

static void mode_descriptor(void)
{
    int fd = watch(SIGUSR1, 0);
    char buffer[256] = {0};
    ssize_t r = write(fd, buffer, 128);
    say("write: %zd %s\n", r, ename(errno));
    struct iovec out = {buffer, 128};
    r = writev(fd, &out, 1);
    say("writev: %zd %s\n", r, ename(errno));
    r = pread(fd, buffer, 128, 0);
    say("pread: %zd %s\n", r, ename(errno));
    say("lseek: %ld\n", (long)lseek(fd, 0, SEEK_SET));
    say("F_GETFL: %o\n", fcntl(fd, F_GETFL));
    struct stat st;
    fstat(fd, &st);
    say("fstat mode: %o\n", st.st_mode);
    char path[64], link[64];
    snprintf(path, sizeof path, "/proc/self/fd/%d", fd);
    ssize_t n = readlink(path, link, sizeof link - 1);
    link[n < 0 ? 0 : n] = 0;
    say("link: %s\n", link);
    sigset_t set;
    sigemptyset(&set);
    int n2 = signalfd(200, &set, 0);
    say("signalfd on a closed descriptor: %d %s\n", n2, ename(errno));
    n2 = signalfd(1, &set, 0);
    say("signalfd on a pipe: %d %s\n", n2, ename(errno));
    /* A duplicate reads the same signalfd; the mask can change through either. */
    int copy = dup(fd);
    int high = fcntl(fd, F_DUPFD_CLOEXEC, 50);
    kill(getpid(), SIGUSR1);
    say("dup readable: %d, F_DUPFD readable: %d\n", readable(copy), readable(high));
    show_read(high, 128);
    sigaddset(&set, SIGUSR2);
    sigprocmask(SIG_BLOCK, &set, NULL);
    say("mask changed through the dup: %d\n", signalfd(copy, &set, 0) == copy);
    raise(SIGUSR2);
    say("original sees USR2: %d\n", readable(fd));
    close(fd);
    struct iovec in[2] = {{buffer, 100}, {buffer + 100, 100}};
    r = readv(copy, in, 2);
    say("readv of the dup: %zd, signo %u\n", r, ((struct signalfd_siginfo *)buffer)->ssi_signo);
    /* A number closed behind its back and used again is an ordinary descriptor. */
    int pipes[2];
    pipe(pipes);
    syscall(SYS_close_range, copy, copy, 0);
    dup2(pipes[0], copy);
    write(pipes[1], "xyz", 3);
    r = read(copy, buffer, 128);
    say("a reused number reads: %zd\n", r);
}

static void *send_later(void *arg)
{
    (void)arg;
    kill(getpid(), SIGUSR1);
    return NULL;
}

static void mode_blocking(void)
{
    sigset_t set;
    sigemptyset(&set);
    sigaddset(&set, SIGUSR1);
    sigprocmask(SIG_BLOCK, &set, NULL);
    int fd = signalfd(-1, &set, 0);
    pthread_t thread;
    pthread_create(&thread, NULL, send_later, NULL);
    struct signalfd_siginfo info;
    ssize_t r = read(fd, &info, sizeof info);
    say("blocking read: %zd, signo %u\n", r, info.ssi_signo);
    pthread_join(thread, NULL);
}

static volatile sig_atomic_t interrupted, reading_done, restarting;

static void on_winch(int signo) { (void)signo; interrupted++; }

static void *interrupt_loop(void *arg)
{
    pthread_t main_thread = *(pthread_t *)arg;
    while (!reading_done) {
        pthread_kill(main_thread, SIGWINCH);
        usleep(2000);
        if (restarting && interrupted > 3)
            kill(getpid(), SIGUSR1);  /* (the restarting read's way out) */
    }
    return NULL;
}

static void interrupted_read(int restart)
{
    struct sigaction sa;
    memset(&sa, 0, sizeof sa);
    sa.sa_handler = on_winch;
    sa.sa_flags = restart ? SA_RESTART : 0;
    sigaction(SIGWINCH, &sa, NULL);
    sigset_t set;
    sigemptyset(&set);
    sigaddset(&set, SIGUSR1);
    sigprocmask(SIG_BLOCK, &set, NULL);
    int fd = signalfd(-1, &set, 0);
    interrupted = reading_done = 0;
    restarting = restart;
    pthread_t self = pthread_self(), thread;
    pthread_create(&thread, NULL, interrupt_loop, &self);
    struct signalfd_siginfo info;
    ssize_t r = read(fd, &info, sizeof info);
    reading_done = 1;
    pthread_join(thread, NULL);
    say("%s: read %zd %s, handler ran: %d\n", restart ? "SA_RESTART" : "no SA_RESTART", r,
        r < 0 ? ename(errno) : "", interrupted > 0);
    close(fd);
}

static void mode_restart(void)
{
    interrupted_read(0);
    interrupted_read(1);
}

static volatile sig_atomic_t usr1_handled;

static void on_usr1(int signo) { (void)signo; usr1_handled++; }

static void mode_delivered(void)
{
    /* Not blocked: delivered to the handler, not kept for the signalfd. */
    signal(SIGUSR1, on_usr1);
    sigset_t set;
    sigemptyset(&set);
    sigaddset(&set, SIGUSR1);
    int fd = signalfd(-1, &set, SFD_NONBLOCK);
    kill(getpid(), SIGUSR1);
    say("handled: %d, readable: %d\n", usr1_handled, readable(fd));
    show_read(fd, 128);
    /* Ignored but blocked: queued all the same (the disposition may change). */
    signal(SIGUSR2, SIG_IGN);
    int fd2 = watch(SIGUSR2, 0);
    kill(getpid(), SIGUSR2);
    say("ignored and blocked: pending %d\n", is_pending(SIGUSR2));
    show_read(fd2, 128);
}

static void mode_fork(void)
{
    int fd = watch(SIGUSR1, SIGUSR2, 0);
    kill(getpid(), SIGUSR1);
    fflush(stdout);
    pid_t child = fork();
    if (child == 0) {
        say("child: readable %d, pending USR1 %d\n", readable(fd), is_pending(SIGUSR1));
        kill(getpid(), SIGUSR2);
        say("child: readable after its own kill %d\n", readable(fd));
        show_read(fd, 256);
        fflush(stdout);
        _exit(0);
    }
    int status;
    waitpid(child, &status, 0);
    say("parent: readable %d\n", readable(fd));
    show_read(fd, 256);
}

static void mode_epoll(void)
{
    int fd = watch(SIGUSR1, 0);
    int ep = epoll_create1(0);
    struct epoll_event event = {.events = EPOLLIN, .data.u32 = 7};
    epoll_ctl(ep, EPOLL_CTL_ADD, fd, &event);
    struct epoll_event got;
    say("epoll before: %d\n", epoll_wait(ep, &got, 1, 0));
    pthread_t thread;
    pthread_create(&thread, NULL, send_later, NULL);
    int n = epoll_wait(ep, &got, 1, -1);
    say("epoll after: %d, data %u\n", n, got.data.u32);
    pthread_join(thread, NULL);
    show_read(fd, 128);
    say("epoll after the read: %d\n", epoll_wait(ep, &got, 1, 0));
}

static void mode_sigwait(void)
{
    int fd = watch(SIGUSR1, SIGUSR2, 0);
    kill(getpid(), SIGUSR1);
    kill(getpid(), SIGUSR2);
    sigset_t set;
    sigemptyset(&set);
    sigaddset(&set, SIGUSR1);
    int signo = 0;
    sigwait(&set, &signo);
    say("sigwait took %d; readable %d\n", signo, readable(fd));
    sigaddset(&set, SIGUSR2);
    sigwait(&set, &signo);
    say("sigwait took %d; readable %d\n", signo, readable(fd));
}

int main(int argc, char **argv)
{
    setvbuf(stdout, NULL, _IONBF, 0);
    const char *mode = argc > 1 ? argv[1] : "";
    if (!strcmp(mode, "pending"))
        mode_pending();
    else if (!strcmp(mode, "order"))
        mode_order();
    else if (!strcmp(mode, "descriptor"))
        mode_descriptor();
    else if (!strcmp(mode, "blocking"))
        mode_blocking();
    else if (!strcmp(mode, "restart"))
        mode_restart();
    else if (!strcmp(mode, "delivered"))
        mode_delivered();
    else if (!strcmp(mode, "fork"))
        mode_fork();
    else if (!strcmp(mode, "epoll"))
        mode_epoll();
    else if (!strcmp(mode, "sigwait"))
        mode_sigwait();
    else
        return 2;
    return 0;
}
