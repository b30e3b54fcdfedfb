/* execve from inside the root: exec MODE ...
 *
 *   exec run TARGET HOSTDIR   fork, execve the path TARGET names (see below), report how
 *                             the child ended; the child, if it runs, prints what it is
 *   exec hello HOSTDIR        what a child prints: "ran ARGV0" (HOSTDIR in it replaced)
 *   exec interp ...           run as a #! interpreter: "interpreter ARGV0 ran ARGV2"
 *
 * The test put copies of this program at /bin/inside and /inside-only/interp inside the
 * root, and at HOSTDIR/hostprog and HOSTDIR/host-interp on the host (outside the root);
 * and scripts /bin/script-inside (#!/inside-only/interp), /bin/script-outside
 * (#!HOSTDIR/host-interp), /bin/script-climbing (#!../../..HOSTDIR/host-interp).
 */
#include "escape.h"  /* first: it defines _GNU_SOURCE */

#include <sys/wait.h>

extern char **environ;

/* s with every occurrence of h replaced by "HOSTDIR" (printed lines must not depend on
 * where the test's directory is). */
static const char *masked(const char *s, const char *h)
{
    static char out[8192];
    size_t n = strlen(h), o = 0;
    while (*s && o < sizeof out - 8) {
        if (n && !strncmp(s, h, n)) {
            o += snprintf(out + o, sizeof out - o, "HOSTDIR");
            s += n;
        } else {
            out[o++] = *s++;
        }
    }
    out[o] = 0;
    return out;
}

static const char *target_path(const char *name, const char *H)
{
    if (!strcmp(name, "inside")) return "/bin/inside";
    if (!strcmp(name, "host-absolute")) return fmt("%s/hostprog", H);
    if (!strcmp(name, "host-climbing")) return fmt("%s%s/hostprog", UP, H);
    if (!strcmp(name, "host-link")) return "/w/exe-link";       /* -> HOSTDIR/hostprog */
    if (!strcmp(name, "host-link-top")) return "/exe-top";     /* -> ../host/hostprog */
    if (!strcmp(name, "host-via-dir-link")) return "/w/absdir/hostprog";  /* absdir -> H */
    if (!strcmp(name, "proc-root")) return fmt("/proc/self/root%s/hostprog", H);
    if (!strcmp(name, "script-inside")) return "/bin/script-inside";
    if (!strcmp(name, "script-outside")) return "/bin/script-outside";
    if (!strcmp(name, "script-climbing")) return "/bin/script-climbing";
    return NULL;
}

int main(int argc, char **argv)
{
    line_buffered();
    if (argc >= 3 && !strcmp(argv[1], "hello")) {
        printf("ran %s\n", masked(argv[0], argv[2]));
        return 0;
    }
    if (argc >= 3 && !strcmp(argv[1], "interp")) {
        /* #!INTERP interp -> argv: INTERP interp SCRIPT [the script's arguments] */
        const char *h = argc > 4 ? argv[4] : "";
        printf("interpreter %s", masked(argv[0], h));
        printf(" ran %s\n", masked(argv[2], h));
        return 0;
    }
    if (argc != 4 || strcmp(argv[1], "run")) {
        printf("usage: exec run TARGET HOSTDIR\n");
        return 2;
    }
    const char *H = argv[3];
    const char *path = target_path(argv[2], H);
    if (!path) {
        printf("unknown target %s\n", argv[2]);
        return 2;
    }
    if (mkdir("/w", 0755) < 0)
        die("mkdir /w");
    make_link(fmt("%s/hostprog", H), "/w/exe-link");
    make_link("../host/hostprog", "/exe-top");
    make_link(H, "/w/absdir");

    char *child_argv[] = {(char *)path, "hello", (char *)H, NULL};
    fflush(stdout);
    pid_t pid = fork();
    if (pid < 0)
        die("fork");
    if (pid == 0) {
        execve(path, child_argv, environ);
        printf("execve %s: %s\n", argv[2], ename(errno));
        fflush(stdout);
        _exit(127);
    }
    int status;
    if (waitpid(pid, &status, 0) < 0)
        die("waitpid");
    if (WIFEXITED(status))
        printf("child exited %d\n", WEXITSTATUS(status));
    else
        printf("child killed by signal %d\n", WTERMSIG(status));
    /* execveat from a descriptor on the decoy directory inside the root */
    if (!strcmp(argv[2], "host-via-dir-link")) {
        int dir = open("/w/absdir", O_RDONLY | O_DIRECTORY);
        fflush(stdout);
        pid = fork();
        if (pid == 0) {
            syscall(SYS_execveat, dir, "hostprog", child_argv, environ, 0);
            printf("execveat decoy hostprog: %s\n", ename(errno));
            fflush(stdout);
            _exit(127);
        }
        waitpid(pid, &status, 0);
        printf("child exited %d\n", WEXITSTATUS(status));
    }
    return 0;
}
