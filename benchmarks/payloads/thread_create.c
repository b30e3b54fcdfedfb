/* thread_create N: create and join N threads, one after the other. */
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>

static void *work(void *arg) { return arg; }

int main(int argc, char **argv) {
	long n = argc > 1 ? atol(argv[1]) : 100;
	for (long i = 0; i < n; i++) {
		pthread_t t;
		pthread_create(&t, NULL, work, NULL);
		pthread_join(t, NULL);
	}
	printf("%ld threads\n", n);
	return 0;
}
