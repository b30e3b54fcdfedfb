/* touch_pages MIB: map MIB MiB of private anonymous memory, write one byte in each 4 KiB
 * page, and print the nanoseconds per page of that loop (timed inside, through the vDSO,
 * so start-up and exit are not counted). */
#include <stdio.h>
#include <stdlib.h>
#include <sys/mman.h>
#include <time.h>

static long long now_ns(void) {
	struct timespec t;
	clock_gettime(CLOCK_MONOTONIC, &t);
	return t.tv_sec * 1000000000LL + t.tv_nsec;
}

int main(int argc, char **argv) {
	long pages = (argc > 1 ? atol(argv[1]) : 10) * 256;
	char *p = mmap(NULL, pages * 4096, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
	if (p == MAP_FAILED) {
		perror("mmap");
		return 1;
	}
	long long start = now_ns();
	for (long i = 0; i < pages; i++) p[i * 4096] = 1;
	printf("%.1f\n", (double)(now_ns() - start) / pages);
	return 0;
}
