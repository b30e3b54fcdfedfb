/* Many vforks in a row: km keeps two descriptors per vfork until the child execs or
 * exits; they must be used again, or km runs out after a thousand.
 *   vfork_many N   vfork N children that exit at once, wait for each */
#include <stdio.h>
#include <stdlib.h>
#include <sys/wait.h>
#include <unistd.h>

int main(int argc, char **argv)
{
    int n = argc > 1 ? atoi(argv[1]) : 1500, failed = 0;
    for (int i = 0; i < n; i++) {
        pid_t pid = vfork();
        if (pid == 0)
            _exit(i & 0x7f);
        int status;
        if (pid < 0 || waitpid(pid, &status, 0) != pid || WEXITSTATUS(status) != (i & 0x7f))
            failed++;
    }
    printf("%d vforks, %d failed\n", n, failed);
    return failed != 0;
}
