/* exec_loop N: execve itself N more times (through /proc/self/exe), then say done. */
#include <stdio.h>
#include <stdlib.h>
#include <unistd.h>
int main(int argc, char **argv) {
	long n = argc > 1 ? atol(argv[1]) : 0;
	if (n > 0) {
		char buf[32];
		snprintf(buf, sizeof buf, "%ld", n - 1);
		execl("/proc/self/exe", argv[0], buf, (char *)NULL);
		perror("execl");
		return 1;
	}
	printf("done\n");
	return 0;
}
