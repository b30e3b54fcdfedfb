/* cow_children MIB N: touch MIB MiB, fork N children that sleep, report when ready. */
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <unistd.h>

int main(int argc, char **argv) {
	long mib = argc > 1 ? atol(argv[1]) : 200, n = argc > 2 ? atol(argv[2]) : 20;
	char *memory = malloc(mib << 20);
	memset(memory, 1, mib << 20);
	pid_t children[256];
	for (long i = 0; i < n; i++)
		if ((children[i] = fork()) == 0) {
			pause();
			_exit(memory[i]);
		}
	printf("ready\n");
	fflush(stdout);
	pause();
	return 0;
}
