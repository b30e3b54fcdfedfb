/* Snapshot of a threaded program: 4 threads blocked on a condition variable and a
   pipe with bytes in it. After the snapshot (taken live or not, per argv[1]) the main
   thread wakes them; each reports, and the bytes come out of the pipe. The output of
   the resumed instance must be the original's (a live original prints it too). */
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>
#include <kontain/snapshot.h> /* km tree: include/ */

static pthread_mutex_t lock = PTHREAD_MUTEX_INITIALIZER;
static pthread_cond_t cond = PTHREAD_COND_INITIALIZER;
static int go, waiting;
static long computed[4];

static void *worker(void *arg)
{
    long i = (long)arg;
    computed[i] = (i + 1) * 1000 + 7;
    pthread_mutex_lock(&lock);
    waiting++;
    pthread_cond_broadcast(&cond);
    while (!go)
        pthread_cond_wait(&cond, &lock);
    pthread_mutex_unlock(&lock);
    return (void *)(computed[i] * 2);
}

int main(int argc, char **argv)
{
    long flags = argc > 1 && strcmp(argv[1], "live") == 0 ? KM_SNAPSHOT_LIVE : 0;
    const char *path = argc > 2 ? argv[2] : 0;
    int fds[2];
    pthread_t threads[4];
    if (pipe(fds) != 0 || write(fds[1], "pipe-bytes", 10) != 10)
        return 2;
    for (long i = 0; i < 4; i++)
        pthread_create(&threads[i], 0, worker, (void *)i);
    pthread_mutex_lock(&lock);
    while (waiting < 4)
        pthread_cond_wait(&cond, &lock);
    pthread_mutex_unlock(&lock);
    long r = km_snapshot(flags, "threads", path);
    if (r < 0) {
        printf("snapshot failed: %ld\n", r);
        return 3;
    }
    printf("resumed=%ld\n", r);
    pthread_mutex_lock(&lock);
    go = 1;
    pthread_cond_broadcast(&cond);
    pthread_mutex_unlock(&lock);
    long sum = 0;
    for (int i = 0; i < 4; i++) {
        void *ret;
        pthread_join(threads[i], &ret);
        sum += (long)ret;
    }
    char buf[32] = {0};
    close(fds[1]);
    ssize_t n = read(fds[0], buf, sizeof buf - 1);
    printf("sum=%ld pipe=%.*s\n", sum, (int)n, buf);
    return 0;
}
