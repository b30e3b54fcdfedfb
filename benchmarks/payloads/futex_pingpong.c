/* futex_pingpong N: two threads hand a token back and forth N times through a futex. */
#define FUTEX_WAIT_PRIVATE 128
#define FUTEX_WAKE_PRIVATE 129
#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <sys/syscall.h>
#include <unistd.h>

static atomic_int turn;
static long rounds;

static void wait_for(int value) {
	while (atomic_load(&turn) != value)
		syscall(SYS_futex, &turn, FUTEX_WAIT_PRIVATE, !value, NULL, NULL, 0);
}

static void hand_to(int value) {
	atomic_store(&turn, value);
	syscall(SYS_futex, &turn, FUTEX_WAKE_PRIVATE, 1, NULL, NULL, 0);
}

static void *partner(void *arg) {
	for (long i = 0; i < rounds; i++) {
		wait_for(1);
		hand_to(0);
	}
	return arg;
}

int main(int argc, char **argv) {
	rounds = argc > 1 ? atol(argv[1]) : 1000;
	pthread_t t;
	pthread_create(&t, NULL, partner, NULL);
	for (long i = 0; i < rounds; i++) {
		hand_to(1);
		wait_for(0);
	}
	pthread_join(t, NULL);
	printf("%ld round trips\n", rounds);
	return 0;
}
