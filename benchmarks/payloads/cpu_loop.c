/*
 * cpu_loop N: N rounds of xorshift64, a pure integer loop with no memory traffic and
 * no system calls, then prints the final state (so the loop cannot be optimized away,
 * and so km's result can be checked against the native one).
 */
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>

int main(int argc, char **argv)
{
	if (argc != 2) {
		fprintf(stderr, "usage: %s N\n", argv[0]);
		return 2;
	}
	unsigned long long n = strtoull(argv[1], NULL, 0);
	uint64_t x = 88172645463325252ULL;
	for (unsigned long long i = 0; i < n; i++) {
		x ^= x << 13;
		x ^= x >> 7;
		x ^= x << 17;
	}
	printf("%llu\n", (unsigned long long)x);
	return 0;
}
