/* Threads that keep busy, in the guest and in system calls, for the paused-state test:
 *   thr_spin SECONDS   3 threads spin (computing, and calling getppid/nanosleep) until
 *                      SECONDS have passed, then all report how much they did */
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <time.h>
#include <unistd.h>

static double seconds;

static double now(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return ts.tv_sec + ts.tv_nsec / 1e9;
}

static void *spin(void *arg)
{
    long id = (long)arg, rounds = 0;
    volatile unsigned long x = id;
    double end = now() + seconds;
    while (now() < end) {
        for (int i = 0; i < 10000; i++)
            x = x * 6364136223846793005UL + 1;
        if (id == 1)
            getppid();
        if (id == 2) {
            struct timespec pause = {0, 1000000};
            nanosleep(&pause, NULL);
        }
        rounds++;
    }
    return (void *)(rounds > 0);
}

int main(int argc, char **argv)
{
    seconds = argc > 1 ? atof(argv[1]) : 1.0;
    pthread_t t[3];
    for (long i = 0; i < 3; i++)
        pthread_create(&t[i], NULL, spin, (void *)i);
    int ok = 1;
    for (int i = 0; i < 3; i++) {
        void *r;
        pthread_join(t[i], &r);
        ok &= r != NULL;
    }
    printf("threads done: %s\n", ok ? "yes" : "no");
    return 0;
}
