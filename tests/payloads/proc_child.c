/* The program the process payloads exec (and spawn): it reports what it was given.
 *
 *   proc_child [WORD | OPTION]...
 *
 * It first prints its argc and every argv[i] (argv[0] included: execve passes it through
 * unchanged), then acts on the options among its arguments, in order:
 *
 *   --env            print every environment entry (for callers that pass an explicit envp)
 *   --getenv NAME    print NAME=value or "NAME unset"
 *   --pid N          say whether getpid() == N (execve keeps the pid)
 *   --ppid N         say whether getppid() == N
 *   --write-fd N MSG write MSG and a newline to inherited descriptor N
 *   --closed N       say whether descriptor N is closed (it was close-on-exec)
 *   --open N         say whether descriptor N is open
 *   --exe PATH       say whether readlink("/proc/self/exe") == PATH
 *   --sigign SIG     say whether signal SIG is ignored (execve keeps SIG_IGN)
 *   --sigmask SIG    say whether signal SIG is blocked (execve keeps the mask)
 *   --sigpending SIG say whether signal SIG is pending (execve keeps pending signals)
 *   --unblock SIG    unblock signal SIG (a pending one is delivered then)
 *   --exit N         exit with status N (default 0) after everything else
 *
 * Output goes out with write(2), one line at a time, so nothing sits in a stdio buffer.
 */
#define _GNU_SOURCE
#include <fcntl.h>
#include <signal.h>
#include <stdarg.h>
#include <unistd.h>

#include "payload.h"

extern char **environ;

static void say(const char *fmt, ...) __attribute__((format(printf, 1, 2)));
static void say(const char *fmt, ...)
{
    char buf[1024];
    va_list ap;
    va_start(ap, fmt);
    int n = vsnprintf(buf, sizeof buf, fmt, ap);
    va_end(ap);
    if (n > (int)sizeof buf - 1)
        n = sizeof buf - 1;
    write(1, buf, n);
}

static const char *yes_no(int b) { return b ? "yes" : "no"; }

int main(int argc, char **argv)
{
    int status = 0;
    say("child: argc=%d\n", argc);
    for (int i = 0; i < argc; i++) {
        /* pids differ from run to run: only their checks are printed */
        int masked = i > 0 && (!strcmp(argv[i - 1], "--pid") || !strcmp(argv[i - 1], "--ppid"));
        say("child: argv[%d]=\"%s\"\n", i, masked ? "<pid>" : argv[i]);
    }
    for (int i = 1; i < argc; i++) {
        const char *a = argv[i];
        const char *next = i + 1 < argc ? argv[i + 1] : "";
        if (!strcmp(a, "--env")) {
            int n = 0;
            for (char **e = environ; *e; e++, n++)
                say("child: env \"%s\"\n", *e);
            say("child: %d environment entries\n", n);
        } else if (!strcmp(a, "--getenv")) {
            const char *v = getenv(next);
            if (v)
                say("child: %s=%s\n", next, v);
            else
                say("child: %s unset\n", next);
            i++;
        } else if (!strcmp(a, "--pid")) {
            say("child: getpid() == pid before exec: %s\n", yes_no(getpid() == atoi(next)));
            i++;
        } else if (!strcmp(a, "--ppid")) {
            say("child: getppid() == parent: %s\n", yes_no(getppid() == atoi(next)));
            i++;
        } else if (!strcmp(a, "--write-fd") && i + 2 < argc) {
            int fd = atoi(next);
            char line[512];
            int n = snprintf(line, sizeof line, "%s\n", argv[i + 2]);
            long w = write(fd, line, n);
            if (w < 0)
                say("child: write to fd %d: %s\n", fd, errno_name(errno));
            else
                say("child: wrote %ld bytes to fd %d\n", w, fd);
            i += 2;
        } else if (!strcmp(a, "--closed") || !strcmp(a, "--open")) {
            int fd = atoi(next);
            int r = fcntl(fd, F_GETFD);
            if (!strcmp(a, "--closed"))
                say("child: fd %d closed: %s\n", fd, yes_no(r < 0 && errno == EBADF));
            else
                say("child: fd %d open: %s\n", fd, yes_no(r >= 0));
            i++;
        } else if (!strcmp(a, "--exe")) {
            char buf[4096];
            long n = readlink("/proc/self/exe", buf, sizeof buf - 1);
            buf[n < 0 ? 0 : n] = 0;
            say("child: /proc/self/exe == %s: %s\n", next, yes_no(n > 0 && !strcmp(buf, next)));
            i++;
        } else if (!strcmp(a, "--sigign") || !strcmp(a, "--sigmask")) {
            int signo = atoi(next);
            if (!strcmp(a, "--sigign")) {
                struct sigaction sa;
                sigaction(signo, NULL, &sa);
                say("child: signal %d ignored: %s\n", signo, yes_no(sa.sa_handler == SIG_IGN));
            } else {
                sigset_t set;
                sigprocmask(SIG_BLOCK, NULL, &set);
                say("child: signal %d blocked: %s\n", signo, yes_no(sigismember(&set, signo)));
            }
            i++;
        } else if (!strcmp(a, "--sigpending")) {
            int signo = atoi(next);
            sigset_t set;
            sigpending(&set);
            say("child: signal %d pending: %s\n", signo, yes_no(sigismember(&set, signo)));
            i++;
        } else if (!strcmp(a, "--unblock")) {
            sigset_t set;
            sigemptyset(&set);
            sigaddset(&set, atoi(next));
            say("child: unblocking signal %d\n", atoi(next));
            sigprocmask(SIG_UNBLOCK, &set, NULL);
            i++;
        } else if (!strcmp(a, "--exit")) {
            status = atoi(next);
            i++;
        }
    }
    say("child: exiting with %d\n", status);
    return status;
}
