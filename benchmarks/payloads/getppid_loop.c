/*
 * getppid_loop N: N raw getppid system calls and nothing else, so that under km
 * (time(N) - time(0)) / N is the cost of one system call round trip.
 */
#include <stdio.h>
#include <stdlib.h>
#include <sys/syscall.h>
#include <unistd.h>

int main(int argc, char **argv)
{
	if (argc != 2) {
		fprintf(stderr, "usage: %s N\n", argv[0]);
		return 2;
	}
	long n = strtol(argv[1], NULL, 0);
	for (long i = 0; i < n; i++)
		syscall(SYS_getppid);
	return 0;
}
