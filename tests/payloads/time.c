/* Clocks and sleeping. Times differ run to run, so only the checks are printed. */
#include <stdint.h>
#include <sys/syscall.h>
#include <sys/time.h>
#include <time.h>
#include <unistd.h>

#include "payload.h"

static int64_t ns(struct timespec t)
{
    return (int64_t)t.tv_sec * 1000000000 + t.tv_nsec;
}

int main(void)
{
    struct timespec m1, m2, r1, res;
    CHECK(clock_gettime(CLOCK_MONOTONIC, &m1) == 0);
    CHECK(clock_gettime(CLOCK_REALTIME, &r1) == 0);
    CHECK(clock_gettime(CLOCK_MONOTONIC, &m2) == 0);
    CHECK(ns(m2) >= ns(m1));
    CHECK(m1.tv_nsec >= 0 && m1.tv_nsec < 1000000000);
    CHECK(r1.tv_sec > 1600000000);  /* after September 2020 */
    CHECK(r1.tv_nsec >= 0 && r1.tv_nsec < 1000000000);
    CHECK(clock_getres(CLOCK_MONOTONIC, &res) == 0 && ns(res) > 0 && ns(res) <= 1000000);
    struct timespec b, c;
    CHECK(clock_gettime(CLOCK_BOOTTIME, &b) == 0 && ns(b) >= ns(m1));
    CHECK(clock_gettime(CLOCK_MONOTONIC_COARSE, &c) == 0);
    CHECK(clock_gettime(CLOCK_PROCESS_CPUTIME_ID, &c) == 0);
    CHECK(clock_gettime(CLOCK_THREAD_CPUTIME_ID, &c) == 0);
    CHECK(clock_gettime(12345, &c) == -1 && errno == EINVAL);

    /* nanosleep 50 ms really sleeps at least 50 ms (but not seconds) */
    struct timespec req = {0, 50 * 1000000}, before, after;
    clock_gettime(CLOCK_MONOTONIC, &before);
    int r = nanosleep(&req, NULL);
    clock_gettime(CLOCK_MONOTONIC, &after);
    int64_t slept = ns(after) - ns(before);
    CHECK(r == 0);
    CHECK(slept >= 50 * 1000000);
    CHECK(slept < 2000 * 1000000LL);

    /* clock_nanosleep, relative and absolute */
    req.tv_nsec = 20 * 1000000;
    clock_gettime(CLOCK_MONOTONIC, &before);
    r = clock_nanosleep(CLOCK_MONOTONIC, 0, &req, NULL);
    clock_gettime(CLOCK_MONOTONIC, &after);
    CHECK(r == 0 && ns(after) - ns(before) >= 20 * 1000000);
    struct timespec until = after;
    until.tv_nsec += 30 * 1000000;
    if (until.tv_nsec >= 1000000000) {
        until.tv_sec++;
        until.tv_nsec -= 1000000000;
    }
    r = clock_nanosleep(CLOCK_MONOTONIC, TIMER_ABSTIME, &until, NULL);
    clock_gettime(CLOCK_MONOTONIC, &after);
    CHECK(r == 0 && ns(after) >= ns(until));
    struct timespec bad = {0, 1000000000};
    CHECK(nanosleep(&bad, NULL) == -1 && errno == EINVAL);

    /* gettimeofday, time() and CLOCK_REALTIME agree */
    struct timeval tv;
    CHECK(gettimeofday(&tv, NULL) == 0);
    time_t t = time(NULL);
    long long diff = (long long)t - (long long)tv.tv_sec;
    CHECK(diff >= -2 && diff <= 2);
    CHECK(tv.tv_usec >= 0 && tv.tv_usec < 1000000);
    time_t t2;
    CHECK(time(&t2) == t2);
    clock_gettime(CLOCK_REALTIME, &r1);
    diff = (long long)r1.tv_sec - (long long)tv.tv_sec;
    CHECK(diff >= -2 && diff <= 2);
    /* the raw system calls too (libc may use the vDSO) */
    struct timespec raw;
    CHECK(syscall(SYS_clock_gettime, CLOCK_REALTIME, &raw) == 0 && raw.tv_sec - r1.tv_sec <= 2);
    CHECK(syscall(SYS_time, NULL) - r1.tv_sec <= 2);
    struct timeval raw_tv;
    CHECK(syscall(SYS_gettimeofday, &raw_tv, NULL) == 0 && raw_tv.tv_sec - r1.tv_sec <= 2);
    return 0;
}
