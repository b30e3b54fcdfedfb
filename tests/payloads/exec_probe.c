/* What execve does with each file named on the command line: the child's output and
 * exit status, or the errno its execve failed with.
 *   exec_probe [-fd|-fd-cloexec|-nofollow] PATH...
 * -fd: execveat(open(PATH), "", AT_EMPTY_PATH) (fexecve), the descriptor inherited;
 * -fd-cloexec: the same with a close-on-exec descriptor;
 * -nofollow: execveat(AT_FDCWD, PATH, AT_SYMLINK_NOFOLLOW). */
#define _GNU_SOURCE
#include <fcntl.h>
#include <stdio.h>
#include <string.h>
#include <sys/syscall.h>
#include <sys/wait.h>
#include <unistd.h>
#include "payload.h"

#ifndef AT_EMPTY_PATH
#define AT_EMPTY_PATH 0x1000
#endif

static int run(const char *mode, const char *path, int out)
{
    char *argv[] = {"probe-argv0", "one", NULL};
    char *envp[] = {"PROBE=1", NULL};
    dup2(out, 1);
    dup2(out, 2);
    if (!strcmp(mode, "-fd") || !strcmp(mode, "-fd-cloexec")) {
        int fd = open(path, O_RDONLY | (strcmp(mode, "-fd") ? O_CLOEXEC : 0));
        if (fd < 0)
            return errno;
        syscall(SYS_execveat, fd, "", argv, envp, AT_EMPTY_PATH);
    } else if (!strcmp(mode, "-nofollow")) {
        syscall(SYS_execveat, AT_FDCWD, path, argv, envp, AT_SYMLINK_NOFOLLOW);
    } else {
        execve(path, argv, envp);
    }
    return errno;
}

int main(int argc, char **argv)
{
    const char *mode = "";
    int first = 1;
    if (argc > 1 && argv[1][0] == '-') {
        mode = argv[1];
        first = 2;
    }
    for (int i = first; i < argc; i++) {
        int pipefd[2];
        if (pipe(pipefd) < 0)
            return 1;
        fflush(stdout);
        pid_t pid = fork();
        if (pid == 0) {
            close(pipefd[0]);
            int e = run(mode, argv[i], pipefd[1]);
            dprintf(pipefd[1], "execve: %s", errno_name(e));
            _exit(127);
        }
        close(pipefd[1]);
        char buf[4096];
        size_t used = 0;
        ssize_t n;
        while (used < sizeof buf - 1 && (n = read(pipefd[0], buf + used, sizeof buf - 1 - used)) > 0)
            used += n;
        buf[used] = 0;
        close(pipefd[0]);
        int status;
        waitpid(pid, &status, 0);
        printf("%s: status %d: %s\n", argv[i], WIFEXITED(status) ? WEXITSTATUS(status) : -1, buf);
    }
    return 0;
}
