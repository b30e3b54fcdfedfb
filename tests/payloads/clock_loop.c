/* Time calls in a loop: with the vDSO they must not leave the VM (km -S counts exits). */
#include <stdio.h>
#include <sys/time.h>
#include <time.h>

int main(void) {
	struct timespec mono, real;
	struct timeval tv;
	long ok = 0;
	for (int i = 0; i < 20000; i++) {
		clock_gettime(CLOCK_MONOTONIC, &mono);
		clock_gettime(CLOCK_REALTIME, &real);
		gettimeofday(&tv, 0);
		ok += real.tv_sec > 1000000000 && tv.tv_sec > 1000000000 && time(0) > 1000000000;
	}
	printf("%ld time calls agreed\n", ok);
	return 0;
}
