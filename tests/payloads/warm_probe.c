/* What a program inherits from whoever starts it, for the warm server's tests
 * (tests/integration/test_server.py): warm_probe MODE [ARGS...]
 *
 *   exit N        exit with status N
 *   raise N       die of signal N
 *   cat           copy stdin to stdout
 *   info          cwd, umask, credentials, $WARM_VAR, open descriptors 0-63, ignored
 *                 signals, blocked mask (all deterministic: the same natively)
 *   ids           uid, euid, gid, egid only
 *   parent        getppid()
 *   wait          handlers for HUP INT QUIT USR1 USR2 TERM WINCH; says "ready", one line per
 *                 signal, exits 0 after TERM
 *   hang          says its pid, then sleeps until killed
 *   line          says "ready", reads one line from stdin, prints it, exits 3
 */
#define _GNU_SOURCE
#include <fcntl.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

static volatile sig_atomic_t last;

static void handler(int sig) { last = sig; }

static void say(const char *text)
{
    write(1, text, strlen(text));
}

int main(int argc, char **argv)
{
    const char *mode = argc > 1 ? argv[1] : "";
    char buf[4096];
    if (!strcmp(mode, "exit") && argc > 2)
        return atoi(argv[2]);
    if (!strcmp(mode, "raise") && argc > 2) {
        signal(atoi(argv[2]), SIG_DFL);
        raise(atoi(argv[2]));
        return 99;
    }
    if (!strcmp(mode, "cat")) {
        ssize_t n;
        while ((n = read(0, buf, sizeof buf)) > 0)
            write(1, buf, n);
        return 0;
    }
    if (!strcmp(mode, "info")) {
        mode_t mask = umask(0);
        const char *var = getenv("WARM_VAR");
        printf("cwd %s\numask %03o\nuid %d euid %d gid %d egid %d\nWARM_VAR %s\nargs",
               getcwd(buf, sizeof buf) ? buf : "?", mask, getuid(), geteuid(), getgid(),
               getegid(), var ? var : "(unset)");
        for (int i = 2; i < argc; i++)
            printf(" [%s]", argv[i]);
        printf("\nopen fds:");
        for (int fd = 0; fd < 64; fd++)
            if (fcntl(fd, F_GETFD) >= 0)
                printf(" %d", fd);
        printf("\nignored:");
        for (int sig = 1; sig < 32; sig++) {
            struct sigaction sa;
            if (sigaction(sig, NULL, &sa) == 0 && sa.sa_handler == SIG_IGN)
                printf(" %d", sig);
        }
        sigset_t set;
        sigprocmask(SIG_BLOCK, NULL, &set);
        printf("\nblocked:");
        for (int sig = 1; sig < 32; sig++)
            if (sigismember(&set, sig))
                printf(" %d", sig);
        printf("\n");
        return 0;
    }
    if (!strcmp(mode, "ids")) {
        printf("uid %d euid %d gid %d egid %d\n", getuid(), geteuid(), getgid(), getegid());
        return 0;
    }
    if (!strcmp(mode, "parent")) {
        printf("%d\n", getppid());
        return 0;
    }
    if (!strcmp(mode, "wait")) {
        int sigs[] = {SIGHUP, SIGINT, SIGQUIT, SIGUSR1, SIGUSR2, SIGTERM, SIGWINCH};
        sigset_t all, none;
        sigfillset(&all);
        sigemptyset(&none);
        sigprocmask(SIG_BLOCK, &all, NULL);
        for (unsigned i = 0; i < sizeof sigs / sizeof *sigs; i++)
            signal(sigs[i], handler);
        say("ready\n");
        for (;;) {
            last = 0;
            sigsuspend(&none);
            snprintf(buf, sizeof buf, "got %d\n", (int)last);
            say(buf);
            if (last == SIGTERM)
                return 0;
        }
    }
    if (!strcmp(mode, "hang")) {
        snprintf(buf, sizeof buf, "%d\n", getpid());
        say(buf);
        for (;;)
            pause();
    }
    if (!strcmp(mode, "line")) {
        say("ready\n");
        ssize_t n = read(0, buf, sizeof buf);
        if (n > 0)
            write(1, buf, n);
        return 3;
    }
    fprintf(stderr, "warm_probe: unknown mode %s\n", mode);
    return 2;
}
