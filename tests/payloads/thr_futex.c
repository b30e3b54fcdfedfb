/* futex(2) used directly through syscall(): waits with relative and absolute timeouts,
 * wake counts, REQUEUE/CMP_REQUEUE, WAKE_OP, private and shared words. Only deterministic
 * results are printed (return values, errno names, yes/no checks on elapsed times).
 *
 * Knowing that N threads are asleep on a word is done without racing: FUTEX_CMP_REQUEUE
 * with nr_wake 0 moves the waiters that are asleep to a second word and says how many it
 * moved, so main polls it until all N have moved, and then owns exactly N sleepers. */
#define _GNU_SOURCE
#include <limits.h>
#include <pthread.h>
#include <stdint.h>
#include <sys/mman.h>
#include <sys/syscall.h>
#include <time.h>
#include <unistd.h>

#include "payload.h"

/* <linux/futex.h> is not on musl-gcc's include path: the ABI's values */
#define FUTEX_WAIT 0
#define FUTEX_WAKE 1
#define FUTEX_REQUEUE 3
#define FUTEX_CMP_REQUEUE 4
#define FUTEX_WAKE_OP 5
#define FUTEX_WAIT_BITSET 9
#define FUTEX_WAKE_BITSET 10
#define FUTEX_PRIVATE_FLAG 128
#define FUTEX_CLOCK_REALTIME 256
#define FUTEX_BITSET_MATCH_ANY 0xffffffffu
#define FUTEX_OP_SET 0
#define FUTEX_OP_ADD 1
#define FUTEX_OP_OR 2
#define FUTEX_OP_CMP_EQ 0
#define FUTEX_OP_CMP_NE 1
#define FUTEX_OP_CMP_GT 4
#define FUTEX_OP(op, oparg, cmp, cmparg) \
    ((((op) & 0xf) << 28) | (((cmp) & 0xf) << 24) | (((oparg) & 0xfff) << 12) | ((cmparg) & 0xfff))

static const char *ename(int e)
{
    return e == ETIMEDOUT ? "ETIMEDOUT" : errno_name(e);
}

static long futex(uint32_t *uaddr, int op, uint32_t val, const void *timeout_or_val2,
                  uint32_t *uaddr2, uint32_t val3)
{
    return syscall(SYS_futex, uaddr, op, val, timeout_or_val2, uaddr2, val3);
}

/* "what: 3" or "what: -1 ETIMEDOUT" */
static long show(const char *what, long ret)
{
    if (ret < 0)
        printf("%s: %ld %s\n", what, ret, ename(errno));
    else
        printf("%s: %ld\n", what, ret);
    return ret;
}

static double now(clockid_t clock)
{
    struct timespec ts;
    clock_gettime(clock, &ts);
    return ts.tv_sec + ts.tv_nsec / 1e9;
}

static void msleep(long ms)
{
    struct timespec ts = {ms / 1000, (ms % 1000) * 1000000L};
    nanosleep(&ts, NULL);
}

static int priv; /* FUTEX_PRIVATE_FLAG or 0 */

/* ---- waiter threads: each sleeps once on a word (whose value stays 0) and counts */

struct waiter {
    pthread_t thread;
    uint32_t *word;
    uint32_t bitset; /* 0: FUTEX_WAIT, else FUTEX_WAIT_BITSET with it */
    long ret;
    int err;
};
static int woken;

static void *waiter_main(void *arg)
{
    struct waiter *w = arg;
    do {
        if (w->bitset)
            w->ret = futex(w->word, FUTEX_WAIT_BITSET | priv, 0, NULL, NULL, w->bitset);
        else
            w->ret = futex(w->word, FUTEX_WAIT | priv, 0, NULL, NULL, 0);
        w->err = w->ret < 0 ? errno : 0;
    } while (w->ret < 0 && w->err == EINTR);
    __atomic_add_fetch(&woken, 1, __ATOMIC_SEQ_CST);
    return NULL;
}

static void start_waiters(struct waiter *w, int n, uint32_t *word)
{
    for (int i = 0; i < n; i++) {
        w[i].word = word;
        if (pthread_create(&w[i].thread, NULL, waiter_main, &w[i]))
            die("pthread_create");
    }
}

/* move every sleeper on `from` to `to` until `n` have moved (they are then asleep) */
static int gather(uint32_t *from, uint32_t *to, int n)
{
    int moved = 0;
    for (int tries = 0; moved < n && tries < 2000; tries++) {
        long r = futex(from, FUTEX_CMP_REQUEUE | priv, 0, (void *)(uintptr_t)INT_MAX, to, *from);
        if (r < 0) {
            printf("gather: %s\n", ename(errno));
            return moved;
        }
        moved += r;
        if (moved < n)
            msleep(2);
    }
    return moved;
}

static void join_waiters(struct waiter *w, int n, const char *what)
{
    int ok = 0;
    for (int i = 0; i < n; i++) {
        pthread_join(w[i].thread, NULL);
        ok += w[i].ret == 0;
    }
    printf("%s: %d waiters returned 0 from FUTEX_WAIT\n", what, ok);
}

static int expect_woken(int n)
{
    for (int i = 0; i < 2000 && __atomic_load_n(&woken, __ATOMIC_SEQ_CST) < n; i++)
        msleep(1);
    return __atomic_load_n(&woken, __ATOMIC_SEQ_CST);
}

static void run_suite(uint32_t *words, const char *label)
{
    uint32_t *a = &words[0], *b = &words[1], *c = &words[2];
    struct timespec rel = {0, 50 * 1000000L};
    char what[128];
#define SHOW(text, expr) (snprintf(what, sizeof what, "%s %s", label, text), show(what, expr))

    printf("== %s futexes\n", label);
    *a = *b = *c = 0;

    /* value mismatch, no waiters, bad arguments */
    SHOW("WAIT with a stale value", futex(a, FUTEX_WAIT | priv, 1, NULL, NULL, 0));
    SHOW("WAKE with nobody waiting", futex(a, FUTEX_WAKE | priv, 5, NULL, NULL, 0));
    SHOW("WAIT on an unaligned word",
         futex((uint32_t *)((char *)a + 1), FUTEX_WAIT | priv, 0, &rel, NULL, 0));
    SHOW("WAIT_BITSET with bitset 0", futex(a, FUTEX_WAIT_BITSET | priv, 0, NULL, NULL, 0));
    struct timespec bad = {0, 2000000000L};
    SHOW("WAIT with tv_nsec out of range", futex(a, FUTEX_WAIT | priv, 0, &bad, NULL, 0));
    SHOW("unknown op 99", futex(a, 99 | priv, 0, NULL, NULL, 0));

    /* timeouts */
    double t0 = now(CLOCK_MONOTONIC);
    SHOW("WAIT with a 50 ms relative timeout", futex(a, FUTEX_WAIT | priv, 0, &rel, NULL, 0));
    double dt = now(CLOCK_MONOTONIC) - t0;
    printf("%s   waited >= 50 ms: %s, < 2 s: %s\n", label, dt >= 0.049 ? "yes" : "no",
           dt < 2 ? "yes" : "no");

    struct timespec abs;
    clock_gettime(CLOCK_MONOTONIC, &abs);
    abs.tv_nsec += 40 * 1000000L;
    if (abs.tv_nsec >= 1000000000L) { abs.tv_sec++; abs.tv_nsec -= 1000000000L; }
    t0 = now(CLOCK_MONOTONIC);
    SHOW("WAIT_BITSET, absolute CLOCK_MONOTONIC +40 ms",
         futex(a, FUTEX_WAIT_BITSET | priv, 0, &abs, NULL, FUTEX_BITSET_MATCH_ANY));
    printf("%s   reached the deadline: %s\n", label,
           now(CLOCK_MONOTONIC) >= abs.tv_sec + abs.tv_nsec / 1e9 - 1e-4 ? "yes" : "no");

    clock_gettime(CLOCK_REALTIME, &abs);
    abs.tv_nsec += 40 * 1000000L;
    if (abs.tv_nsec >= 1000000000L) { abs.tv_sec++; abs.tv_nsec -= 1000000000L; }
    SHOW("WAIT_BITSET|CLOCK_REALTIME, absolute +40 ms",
         futex(a, FUTEX_WAIT_BITSET | FUTEX_CLOCK_REALTIME | priv, 0, &abs, NULL,
               FUTEX_BITSET_MATCH_ANY));
    printf("%s   reached the deadline: %s\n", label,
           now(CLOCK_REALTIME) >= abs.tv_sec + abs.tv_nsec / 1e9 - 1e-4 ? "yes" : "no");

    struct timespec past = {1, 0};
    SHOW("WAIT_BITSET, absolute deadline in the past",
         futex(a, FUTEX_WAIT_BITSET | priv, 0, &past, NULL, FUTEX_BITSET_MATCH_ANY));

    /* wake counts: 4 sleepers gathered on b, woken 1, 2, then the rest */
    struct waiter w[6] = {0};
    woken = 0;
    start_waiters(w, 4, a);
    printf("%s gathered 4 sleepers: %d\n", label, gather(a, b, 4));
    SHOW("WAKE 1 of 4", futex(b, FUTEX_WAKE | priv, 1, NULL, NULL, 0));
    SHOW("WAKE 2 of 3", futex(b, FUTEX_WAKE | priv, 2, NULL, NULL, 0));
    SHOW("WAKE 10 of 1", futex(b, FUTEX_WAKE | priv, 10, NULL, NULL, 0));
    SHOW("WAKE with nobody left", futex(b, FUTEX_WAKE | priv, 10, NULL, NULL, 0));
    printf("%s woken threads: %d\n", label, expect_woken(4));
    join_waiters(w, 4, label);

    /* WAIT_BITSET / WAKE_BITSET: only waiters whose bits match are woken */
    woken = 0;
    SHOW("WAKE_BITSET with nobody waiting",
         futex(a, FUTEX_WAKE_BITSET | priv, 1, NULL, NULL, 0x1));
    w[0].bitset = 0x2;
    w[1].bitset = 0x6;
    start_waiters(w, 2, c);
    printf("%s gathered 2 bitset sleepers: %d\n", label, gather(c, a, 2));
    SHOW("WAKE_BITSET 0x1 (no match)", futex(a, FUTEX_WAKE_BITSET | priv, 5, NULL, NULL, 0x1));
    SHOW("WAKE_BITSET 0x4 (matches one)",
         futex(a, FUTEX_WAKE_BITSET | priv, 5, NULL, NULL, 0x4));
    printf("%s woken threads: %d\n", label, expect_woken(1));
    SHOW("WAKE_BITSET 0x3 (matches the other)",
         futex(a, FUTEX_WAKE_BITSET | priv, 5, NULL, NULL, 0x3));
    printf("%s woken threads: %d\n", label, expect_woken(2));
    join_waiters(w, 2, label);
    w[0].bitset = w[1].bitset = 0;

    /* REQUEUE: 4 sleepers on b; wake 1 and move 2 to c; 1 stays on b */
    woken = 0;
    start_waiters(w, 4, a);
    printf("%s gathered 4 sleepers: %d\n", label, gather(a, b, 4));
    SHOW("CMP_REQUEUE with a wrong expected value",
         futex(b, FUTEX_CMP_REQUEUE | priv, 1, (void *)(uintptr_t)2, c, 123));
    SHOW("REQUEUE wake 1, move 2", futex(b, FUTEX_REQUEUE | priv, 1, (void *)(uintptr_t)2,
                                         c, 0));
    printf("%s woken after REQUEUE: %d\n", label, expect_woken(1));
    SHOW("WAKE all on the requeue target", futex(c, FUTEX_WAKE | priv, INT_MAX, NULL, NULL, 0));
    SHOW("CMP_REQUEUE wake 0, move all back",
         futex(b, FUTEX_CMP_REQUEUE | priv, 0, (void *)(uintptr_t)INT_MAX, c, *b));
    SHOW("WAKE all on the requeue target", futex(c, FUTEX_WAKE | priv, INT_MAX, NULL, NULL, 0));
    printf("%s woken threads: %d\n", label, expect_woken(4));
    join_waiters(w, 4, label);

    /* WAKE_OP: 2 sleepers on a and 2 on b (gathered via c) */
    woken = 0;
    start_waiters(w, 2, c);
    printf("%s gathered 2 sleepers on A: %d\n", label, gather(c, a, 2));
    start_waiters(w + 2, 2, c);
    printf("%s gathered 2 sleepers on B: %d\n", label, gather(c, b, 2));
    SHOW("WAKE_OP wake 1 on A, B=1, wake 1 on B if old B==0",
         futex(a, FUTEX_WAKE_OP | priv, 1, (void *)(uintptr_t)1, b,
               FUTEX_OP(FUTEX_OP_SET, 1, FUTEX_OP_CMP_EQ, 0)));
    printf("%s   B is now %u\n", label, *b);
    SHOW("WAKE_OP wake 1 on A, B+=5, wake 1 on B if old B>10",
         futex(a, FUTEX_WAKE_OP | priv, 1, (void *)(uintptr_t)1, b,
               FUTEX_OP(FUTEX_OP_ADD, 5, FUTEX_OP_CMP_GT, 10)));
    printf("%s   B is now %u\n", label, *b);
    SHOW("WAKE_OP wake 0 on A, B|=8, wake 1 on B if old B!=0",
         futex(a, FUTEX_WAKE_OP | priv, 0, (void *)(uintptr_t)1, b,
               FUTEX_OP(FUTEX_OP_OR, 8, FUTEX_OP_CMP_NE, 0)));
    printf("%s   B is now %u\n", label, *b);
    printf("%s woken threads: %d\n", label, expect_woken(4));
    join_waiters(w, 4, label);
    *b = 0;

    /* a waiter with a long timeout woken before it */
    woken = 0;
    SHOW("WAKE before anyone waits", futex(a, FUTEX_WAKE | priv, 1, NULL, NULL, 0));
    start_waiters(w, 1, c);
    printf("%s gathered 1 sleeper: %d\n", label, gather(c, a, 1));
    SHOW("WAKE the sleeper", futex(a, FUTEX_WAKE | priv, 1, NULL, NULL, 0));
    printf("%s woken threads: %d\n", label, expect_woken(1));
    join_waiters(w, 1, label);

    /* EFAULT */
    SHOW("WAIT on an unmapped address",
         futex((uint32_t *)(uintptr_t)0x10000, FUTEX_WAIT | priv, 0, &rel, NULL, 0));
    SHOW("WAKE_OP with an unmapped second word",
         futex(a, FUTEX_WAKE_OP | priv, 1, (void *)(uintptr_t)1, (uint32_t *)(uintptr_t)0x10000,
               FUTEX_OP(FUTEX_OP_SET, 1, FUTEX_OP_CMP_EQ, 0)));
#undef SHOW
}

static uint32_t private_words[16] __attribute__((aligned(64)));

int main(void)
{
    priv = FUTEX_PRIVATE_FLAG;
    run_suite(private_words, "private");

    uint32_t *shared = mmap(NULL, 4096, PROT_READ | PROT_WRITE, MAP_SHARED | MAP_ANONYMOUS,
                            -1, 0);
    if (shared == MAP_FAILED)
        die("mmap");
    priv = 0;
    run_suite(shared, "shared");

    /* a shared word reached at two addresses: wake through one mapping, wait on another */
    FILE *f = tmpfile();
    if (!f || ftruncate(fileno(f), 4096))
        die("tmpfile");
    uint32_t *m1 = mmap(NULL, 4096, PROT_READ | PROT_WRITE, MAP_SHARED, fileno(f), 0);
    uint32_t *m2 = mmap(NULL, 4096, PROT_READ | PROT_WRITE, MAP_SHARED, fileno(f), 0);
    if (m1 == MAP_FAILED || m2 == MAP_FAILED)
        die("mmap file");
    *m1 = 0;
    struct waiter w = {0};
    woken = 0;
    start_waiters(&w, 1, m1);
    uint32_t *spare = shared + 8;
    printf("file mapping: gathered 1 sleeper: %d\n", gather(m1, spare, 1));
    show("file mapping: requeue it back to the second mapping",
         futex(spare, FUTEX_CMP_REQUEUE, 0, (void *)(uintptr_t)1, m2, *spare));
    show("file mapping: WAKE through the first mapping",
         futex(m1, FUTEX_WAKE, 1, NULL, NULL, 0));
    printf("file mapping: woken: %d\n", expect_woken(1));
    join_waiters(&w, 1, "file mapping");
    return 0;
}
