/* A payload that drops root, then execs and dies of a signal: km must go on serving it
 * with nothing of its own to read (its exec loads the new program inside the same km).
 *   setuid_exec drop PROGRAM ARGS...   drop to nobody (65534), then exec PROGRAM
 *   setuid_exec kill                   drop to nobody, then die of SIGTERM */
#define _GNU_SOURCE
#include <grp.h>
#include <signal.h>
#include <stdio.h>
#include <string.h>
#include <unistd.h>

static int drop(void)
{
    if (setgroups(0, NULL) || setresgid(65534, 65534, 65534) || setresuid(65534, 65534, 65534)) {
        perror("dropping root");
        return 1;
    }
    uid_t r, e, s;
    getresuid(&r, &e, &s);
    printf("uids now %u %u %u\n", r, e, s);
    fflush(stdout);
    return 0;
}

int main(int argc, char **argv)
{
    if (argc > 2 && !strcmp(argv[1], "drop")) {
        if (drop())
            return 1;
        execv(argv[2], argv + 2);
        perror("execv");
        return 127;
    }
    if (argc > 1 && !strcmp(argv[1], "kill")) {
        if (drop())
            return 1;
        raise(SIGTERM);
        return 3;
    }
    fprintf(stderr, "usage: setuid_exec drop PROGRAM ARGS... | kill\n");
    return 2;
}
