/* A process title set by writing over the argument strings (as nginx and
 * setproctitle(3) do): /proc/self/cmdline read after each step, one line each, NULs
 * shown as '|'. Then "ready", and it waits for its stdin to close, so that a test can
 * read /proc/PID/cmdline from outside (what ps shows). */
#include <fcntl.h>
#include <stdio.h>
#include <string.h>
#include <unistd.h>

static void show(const char *what)
{
    char buf[4096];
    int fd = open("/proc/self/cmdline", O_RDONLY);
    int n = read(fd, buf, sizeof buf);
    close(fd);
    printf("%s: ", what);
    for (int i = 0; i < n && i < 120; i++)
        putchar(buf[i] ? buf[i] : '|');
    putchar('\n');
}

int main(int argc, char **argv)
{
    show("as started");
    size_t room = strlen(argv[argc - 1]) + (size_t)(argv[argc - 1] - argv[0]);
    memset(argv[0], 0, room);
    strcpy(argv[0], "worker one");
    show("rewritten");
    memset(argv[0], 'x', room + 1);  /* over the last NUL: into the environment */
    strcpy(argv[0] + room - 3, "title-over-env");
    show("past the arguments");
    memset(argv[0], 0, room + 20);
    strcpy(argv[0], "nginx: worker process");
    show("final");
    printf("ready\n");
    fflush(stdout);
    char c;
    while (read(0, &c, 1) > 0)
        ;
    return 0;
}
