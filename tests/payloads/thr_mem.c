/* Memory that grows while other threads use it: brk (sbrk) and mremap growth must never
 * lose a write, fault, or strand a futex waiter, however the monitor places the pages.
 *
 *   thr_mem counter   threads count in sbrk memory while main grows the heap
 *   thr_mem condvar   a condition variable in sbrk memory, broadcast after 256 sbrks
 *   thr_mem mremap    threads write into a region main keeps growing with mremap
 *   thr_mem churn     brk growth racing with mmap/munmap in other threads
 */
#define _GNU_SOURCE
#include <pthread.h>
#include <sched.h>
#include <stdatomic.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/syscall.h>
#include <unistd.h>

#define THREADS 4
#define ROUNDS 20000

static atomic_int stop;

/* The brk system call itself: musl's sbrk refuses to move the break. */
static void *grow_break(long increment)
{
    unsigned long current = syscall(SYS_brk, 0);
    if (syscall(SYS_brk, current + increment) != (long)(current + increment))
        return (void *)-1;
    return (void *)current;
}
#define sbrk grow_break

/* ---- counter: increments in sbrk memory race with the heap growing ------------------- */

static volatile long *counters;

static void *count(void *arg)
{
    long id = (long)arg;
    for (int i = 0; i < ROUNDS; i++)
        counters[id]++;
    return NULL;
}

static int counter(void)
{
    counters = sbrk(4096);
    memset((void *)counters, 0, 4096);
    pthread_t t[THREADS];
    for (long i = 0; i < THREADS; i++)
        pthread_create(&t[i], NULL, count, (void *)i);
    for (int i = 0; i < 256; i++) {
        char *more = sbrk(0x21000);
        more[0] = 1; /* touch the new memory */
    }
    long total = 0;
    for (int i = 0; i < THREADS; i++) {
        pthread_join(t[i], NULL);
        total += counters[i];
    }
    printf("counter: %ld (expected %d)\n", total, THREADS * ROUNDS);
    return total != THREADS * ROUNDS;
}

/* ---- condvar: waiters on a futex in sbrk memory must be woken after growth ------------ */

struct shared {
    pthread_mutex_t lock;
    pthread_cond_t cond;
    int go, waiting;
};

static struct shared *sh;

static void *waiter(void *arg)
{
    (void)arg;
    pthread_mutex_lock(&sh->lock);
    sh->waiting++;
    while (!sh->go)
        pthread_cond_wait(&sh->cond, &sh->lock);
    pthread_mutex_unlock(&sh->lock);
    return NULL;
}

static int condvar(void)
{
    sh = sbrk(sizeof *sh);
    memset(sh, 0, sizeof *sh);
    pthread_mutex_init(&sh->lock, NULL);
    pthread_cond_init(&sh->cond, NULL);
    pthread_t t[THREADS];
    for (int i = 0; i < THREADS; i++)
        pthread_create(&t[i], NULL, waiter, NULL);
    for (;;) { /* all waiting before the heap moves under them */
        pthread_mutex_lock(&sh->lock);
        int n = sh->waiting;
        pthread_mutex_unlock(&sh->lock);
        if (n == THREADS)
            break;
        sched_yield();
    }
    for (int i = 0; i < 256; i++)
        ((char *)sbrk(0x21000))[0] = 1;
    pthread_mutex_lock(&sh->lock);
    sh->go = 1;
    pthread_cond_broadcast(&sh->cond);
    pthread_mutex_unlock(&sh->lock);
    for (int i = 0; i < THREADS; i++)
        pthread_join(t[i], NULL);
    printf("condvar: %d waiters woke after 256 sbrks\n", THREADS);
    return 0;
}

/* ---- mremap: writers into a region that keeps growing --------------------------------- */

static volatile long *region;

static atomic_int started;

static void *scribble(void *arg)
{
    long id = (long)arg;
    region[id]++; /* at least once, whatever the scheduler does */
    atomic_fetch_add(&started, 1);
    while (!atomic_load(&stop))
        region[id]++;
    return NULL;
}

static int grow_by_mremap(void)
{
    /* A region with 64 MiB of free address space after it, so that it can grow in place
     * (natively and under km alike); the monitor may still have to give the new part
     * other physical pages, which is what this tests. */
    size_t room = 64 << 20, size = 4096;
    char *big = mmap(NULL, room, PROT_NONE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
    munmap(big + size, room - size);
    mprotect(big, size, PROT_READ | PROT_WRITE);
    region = (volatile long *)big;
    pthread_t t[THREADS];
    for (long i = 0; i < THREADS; i++)
        pthread_create(&t[i], NULL, scribble, (void *)i);
    while (atomic_load(&started) < THREADS) /* all writing while the region grows */
        sched_yield();
    int grown = 0;
    for (int i = 0; i < 64; i++) {
        char *other = mmap(NULL, 4096, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS,
                           -1, 0);
        other[0] = 1; /* takes memory: the region's next pages may be someone else's */
        if (mremap(big, size, size + 0x10000, 0) == big) {
            size += 0x10000;
            big[size - 1] = 1;
            grown++;
        }
    }
    atomic_store(&stop, 1);
    long total = 0;
    for (int i = 0; i < THREADS; i++) {
        pthread_join(t[i], NULL);
        total += region[i];
    }
    printf("mremap: grew in place %d times, writers ran: %s\n", grown, total > 0 ? "yes" : "no");
    return 0;
}

/* ---- churn: brk growth racing with mmap/munmap elsewhere ------------------------------ */

static void *mapper(void *arg)
{
    (void)arg;
    for (int i = 0; i < 2000; i++) {
        char *p = mmap(NULL, 3 * 4096, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS,
                       -1, 0);
        if (p == MAP_FAILED)
            return (void *)1;
        p[0] = p[8191] = 7;
        if (p[0] + p[8191] != 14)
            return (void *)1;
        munmap(p, 3 * 4096);
    }
    return NULL;
}

static int churn(void)
{
    unsigned char *base = sbrk(0);
    pthread_t t[THREADS];
    for (int i = 0; i < THREADS; i++)
        pthread_create(&t[i], NULL, mapper, NULL);
    size_t used = 0;
    for (int i = 0; i < 512; i++) {
        unsigned char *p = sbrk(0x9000);
        if (p == (void *)-1)
            break;
        memset(p, i & 0xff, 0x9000);
        used += 0x9000;
    }
    int bad = 0;
    for (int i = 0; i < THREADS; i++) {
        void *r;
        pthread_join(t[i], &r);
        bad |= r != NULL;
    }
    for (size_t off = 0; off < used; off++)
        if (base[off] != ((off / 0x9000) & 0xff)) {
            bad = 1;
            break;
        }
    printf("churn: heap intact %s, mappers ok %s\n", bad ? "no" : "yes", bad ? "no" : "yes");
    return bad;
}

int main(int argc, char **argv)
{
    const char *what = argc > 1 ? argv[1] : "counter";
    setvbuf(stdout, NULL, _IONBF, 0);
    if (!strcmp(what, "counter"))
        return counter();
    if (!strcmp(what, "condvar"))
        return condvar();
    if (!strcmp(what, "mremap"))
        return grow_by_mremap();
    if (!strcmp(what, "churn"))
        return churn();
    fprintf(stderr, "unknown test %s\n", what);
    return 2;
}
