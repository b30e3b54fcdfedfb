/* fork_wait N [PROGRAM]: N times fork a child that exits (or execs PROGRAM), and wait. */
#include <stdio.h>
#include <stdlib.h>
#include <sys/wait.h>
#include <unistd.h>

int main(int argc, char **argv) {
	long n = argc > 1 ? atol(argv[1]) : 10;
	for (long i = 0; i < n; i++) {
		pid_t pid = fork();
		if (pid == 0) {
			if (argc > 2)
				execl(argv[2], argv[2], (char *)NULL);
			_exit(0);
		}
		waitpid(pid, NULL, 0);
	}
	printf("%ld children\n", n);
	return 0;
}
