/* POSIX threads: thr_basic MODE, one scenario per mode. Everything printed is
 * deterministic (counts, yes/no checks, results gathered by main after joins), so the
 * output under km must equal the native one byte for byte.
 *
 * modes: mutex tls cancel barrier detach many gettid exit mainexit */
#define _GNU_SOURCE
#include <pthread.h>
#include <semaphore.h>
#include <signal.h>
#include <stdint.h>
#include <sys/syscall.h>
#include <time.h>
#include <unistd.h>

#include "payload.h"

#define NTHREADS(a) ((int)(sizeof(a) / sizeof((a)[0])))

static void must(int err, const char *what)
{
    if (err) {
        errno = err;
        die(what);
    }
}

static pid_t tid(void) { return (pid_t)syscall(SYS_gettid); }

static void msleep(long ms)
{
    struct timespec ts = {ms / 1000, (ms % 1000) * 1000000L};
    while (nanosleep(&ts, &ts) == -1 && errno == EINTR) {}
}

/* ---------------------------------------------------------------- mutex + condvar */

#define MTX_THREADS 64
#define MTX_ITERS 200
#define PC_PRODUCERS 32
#define PC_CONSUMERS 32
#define PC_ITEMS 50
#define PC_SLOTS 8

static pthread_mutex_t mtx = PTHREAD_MUTEX_INITIALIZER;
static pthread_cond_t turn_cv = PTHREAD_COND_INITIALIZER;
static long counter;
static int turn;
static int order[MTX_THREADS];
static int norder;

static void *mutex_worker(void *arg)
{
    int id = (int)(intptr_t)arg;
    for (int i = 0; i < MTX_ITERS; i++) {
        pthread_mutex_lock(&mtx);
        counter++;
        pthread_mutex_unlock(&mtx);
    }
    /* then take turns strictly in id order: thread id waits until turn == id */
    pthread_mutex_lock(&mtx);
    while (turn != id)
        pthread_cond_wait(&turn_cv, &mtx);
    order[norder++] = id;
    turn++;
    pthread_cond_broadcast(&turn_cv);
    pthread_mutex_unlock(&mtx);
    return (void *)(intptr_t)(id * 3);
}

static pthread_cond_t not_full = PTHREAD_COND_INITIALIZER;
static pthread_cond_t not_empty = PTHREAD_COND_INITIALIZER;
static long queue[PC_SLOTS];
static int qhead, qlen;
static long consumed_sum, consumed_count;

static void put(long v)
{
    pthread_mutex_lock(&mtx);
    while (qlen == PC_SLOTS)
        pthread_cond_wait(&not_full, &mtx);
    queue[(qhead + qlen++) % PC_SLOTS] = v;
    pthread_cond_signal(&not_empty);
    pthread_mutex_unlock(&mtx);
}

static long get(void)
{
    pthread_mutex_lock(&mtx);
    while (qlen == 0)
        pthread_cond_wait(&not_empty, &mtx);
    long v = queue[qhead];
    qhead = (qhead + 1) % PC_SLOTS;
    qlen--;
    pthread_cond_signal(&not_full);
    pthread_mutex_unlock(&mtx);
    return v;
}

static void *producer(void *arg)
{
    long p = (long)(intptr_t)arg;
    for (long k = 1; k <= PC_ITEMS; k++)
        put(p * 1000 + k);
    return NULL;
}

static void *consumer(void *arg)
{
    (void)arg;
    long sum = 0, count = 0, v;
    while ((v = get()) >= 0) {
        sum += v;
        count++;
    }
    pthread_mutex_lock(&mtx);
    consumed_sum += sum;
    consumed_count += count;
    pthread_mutex_unlock(&mtx);
    return NULL;
}

static int mode_mutex(void)
{
    pthread_t t[MTX_THREADS];
    for (int i = 0; i < MTX_THREADS; i++)
        must(pthread_create(&t[i], NULL, mutex_worker, (void *)(intptr_t)i), "create");
    long retsum = 0;
    for (int i = 0; i < MTX_THREADS; i++) {
        void *ret;
        must(pthread_join(t[i], &ret), "join");
        retsum += (long)(intptr_t)ret;
    }
    int in_order = 1;
    for (int i = 0; i < MTX_THREADS; i++)
        in_order &= order[i] == i;
    printf("threads: %d\n", MTX_THREADS);
    printf("counter: %ld (expected %d)\n", counter, MTX_THREADS * MTX_ITERS);
    printf("turns taken: %d, in id order: %s\n", norder, in_order ? "yes" : "no");
    printf("sum of return values: %ld\n", retsum);

    pthread_t p[PC_PRODUCERS], c[PC_CONSUMERS];
    for (int i = 0; i < PC_CONSUMERS; i++)
        must(pthread_create(&c[i], NULL, consumer, NULL), "create consumer");
    for (int i = 0; i < PC_PRODUCERS; i++)
        must(pthread_create(&p[i], NULL, producer, (void *)(intptr_t)i), "create producer");
    for (int i = 0; i < PC_PRODUCERS; i++)
        must(pthread_join(p[i], NULL), "join producer");
    for (int i = 0; i < PC_CONSUMERS; i++)
        put(-1);
    for (int i = 0; i < PC_CONSUMERS; i++)
        must(pthread_join(c[i], NULL), "join consumer");
    long expect = 0;
    for (long pi = 0; pi < PC_PRODUCERS; pi++)
        for (long k = 1; k <= PC_ITEMS; k++)
            expect += pi * 1000 + k;
    printf("queue: consumed %ld items (expected %d), sum %ld (expected %ld), left %d\n",
           consumed_count, PC_PRODUCERS * PC_ITEMS, consumed_sum, expect, qlen);

    /* trylock and timedlock on a held mutex */
    pthread_mutex_lock(&mtx);
    printf("trylock on held mutex: %s\n", errno_name(pthread_mutex_trylock(&mtx)));
    pthread_mutex_unlock(&mtx);
    printf("trylock on free mutex: %s\n", errno_name(pthread_mutex_trylock(&mtx)));
    struct timespec ts;
    clock_gettime(CLOCK_REALTIME, &ts);
    ts.tv_nsec += 30 * 1000000L;
    if (ts.tv_nsec >= 1000000000L) { ts.tv_sec++; ts.tv_nsec -= 1000000000L; }
    printf("cond_timedwait with no signal: %s\n",
           errno_name(pthread_cond_timedwait(&turn_cv, &mtx, &ts)));
    pthread_mutex_unlock(&mtx);
    return 0;
}

/* ---------------------------------------------------------------- TLS */

static __thread int tls_int = 42;
static __thread char tls_name[32] = "initial";
static __thread long tls_zero;
static pthread_key_t key;
static int destructor_calls;
static long destructor_sum;
static pthread_barrier_t tls_barrier;

static void key_destructor(void *v)
{
    pthread_mutex_lock(&mtx);
    destructor_calls++;
    destructor_sum += (long)(intptr_t)v;
    pthread_mutex_unlock(&mtx);
}

struct tls_result {
    int initial_ok, kept_ok, errno_ok, key_ok;
    void *addr;
};

static void *tls_worker(void *arg)
{
    int id = (int)(intptr_t)arg;
    struct tls_result *r = calloc(1, sizeof *r);
    r->initial_ok = tls_int == 42 && strcmp(tls_name, "initial") == 0 && tls_zero == 0;
    tls_int = 1000 + id;
    snprintf(tls_name, sizeof tls_name, "thread-%d", id);
    tls_zero = id;
    errno = 100 + id;
    pthread_setspecific(key, (void *)(intptr_t)(id + 1));
    r->addr = &tls_int;
    pthread_barrier_wait(&tls_barrier); /* everyone has written their own copies */
    pthread_barrier_wait(&tls_barrier);
    char want[32];
    snprintf(want, sizeof want, "thread-%d", id);
    r->kept_ok = tls_int == 1000 + id && strcmp(tls_name, want) == 0 && tls_zero == id;
    r->errno_ok = errno == 100 + id;
    r->key_ok = pthread_getspecific(key) == (void *)(intptr_t)(id + 1);
    return r;
}

static int mode_tls(void)
{
    enum { N = 8 };
    pthread_t t[N];
    must(pthread_key_create(&key, key_destructor), "key_create");
    must(pthread_barrier_init(&tls_barrier, NULL, N + 1), "barrier_init");
    tls_int = 7;
    strcpy(tls_name, "main");
    for (int i = 0; i < N; i++)
        must(pthread_create(&t[i], NULL, tls_worker, (void *)(intptr_t)i), "create");
    pthread_barrier_wait(&tls_barrier);
    printf("main's copy after the threads wrote theirs: %d %s\n", tls_int, tls_name);
    pthread_barrier_wait(&tls_barrier);
    int initial = 0, kept = 0, errs = 0, keys = 0, distinct = 1;
    void *addrs[N];
    for (int i = 0; i < N; i++) {
        struct tls_result *r;
        must(pthread_join(t[i], (void **)&r), "join");
        initial += r->initial_ok;
        kept += r->kept_ok;
        errs += r->errno_ok;
        keys += r->key_ok;
        addrs[i] = r->addr;
        distinct &= r->addr != (void *)&tls_int;
        for (int j = 0; j < i; j++)
            distinct &= addrs[j] != addrs[i];
        free(r);
    }
    printf("threads seeing the initial values: %d/%d\n", initial, N);
    printf("threads keeping their own values: %d/%d\n", kept, N);
    printf("threads keeping their own errno: %d/%d\n", errs, N);
    printf("threads keeping their own key value: %d/%d\n", keys, N);
    printf("tls addresses distinct: %s\n", distinct ? "yes" : "no");
    printf("key destructor calls: %d, sum %ld\n", destructor_calls, destructor_sum);
    return 0;
}

/* ---------------------------------------------------------------- cancel */

static int cleanups[4];
static int pipefd[2];
static volatile int may_cancel;

static void cleanup(void *arg) { cleanups[(intptr_t)arg]++; }

static void *cancel_sleeper(void *arg)
{
    (void)arg;
    pthread_cleanup_push(cleanup, (void *)0);
    for (;;)
        sleep(100);
    pthread_cleanup_pop(0);
    return NULL;
}

static void *cancel_reader(void *arg)
{
    (void)arg;
    char c;
    pthread_cleanup_push(cleanup, (void *)1);
    for (;;)
        read(pipefd[0], &c, 1);
    pthread_cleanup_pop(0);
    return NULL;
}

static void *cancel_disabled(void *arg)
{
    (void)arg;
    int old;
    pthread_setcancelstate(PTHREAD_CANCEL_DISABLE, &old);
    pthread_cleanup_push(cleanup, (void *)2);
    while (!may_cancel)
        msleep(5); /* a cancellation point, but cancellation is disabled */
    pthread_setcancelstate(PTHREAD_CANCEL_ENABLE, &old);
    pthread_testcancel();
    pthread_cleanup_pop(0);
    return (void *)1; /* not reached */
}

static void *cancel_waiter(void *arg)
{
    (void)arg;
    pthread_cleanup_push(cleanup, (void *)3);
    pthread_mutex_lock(&mtx);
    pthread_cleanup_push((void (*)(void *))pthread_mutex_unlock, &mtx);
    for (;;)
        pthread_cond_wait(&turn_cv, &mtx); /* cancellation point: re-takes the mutex */
    pthread_cleanup_pop(1);
    pthread_cleanup_pop(0);
    return NULL;
}

static int mode_cancel(void)
{
    if (pipe(pipefd))
        die("pipe");
    pthread_t a, b, c, d;
    must(pthread_create(&a, NULL, cancel_sleeper, NULL), "create");
    must(pthread_create(&b, NULL, cancel_reader, NULL), "create");
    must(pthread_create(&c, NULL, cancel_disabled, NULL), "create");
    must(pthread_create(&d, NULL, cancel_waiter, NULL), "create");
    msleep(50); /* let them block (cancellation works either way) */
    void *ra, *rb, *rc, *rd;
    must(pthread_cancel(a), "cancel");
    must(pthread_join(a, &ra), "join");
    printf("sleeper: canceled=%s cleanup=%d\n", ra == PTHREAD_CANCELED ? "yes" : "no",
           cleanups[0]);
    must(pthread_cancel(b), "cancel");
    must(pthread_join(b, &rb), "join");
    printf("reader: canceled=%s cleanup=%d\n", rb == PTHREAD_CANCELED ? "yes" : "no",
           cleanups[1]);
    must(pthread_cancel(c), "cancel");
    msleep(30);
    printf("disabled: cleanup before enabling=%d\n", cleanups[2]);
    may_cancel = 1;
    must(pthread_join(c, &rc), "join");
    printf("disabled: canceled=%s cleanup=%d\n", rc == PTHREAD_CANCELED ? "yes" : "no",
           cleanups[2]);
    must(pthread_cancel(d), "cancel");
    must(pthread_join(d, &rd), "join");
    printf("condvar waiter: canceled=%s cleanup=%d\n", rd == PTHREAD_CANCELED ? "yes" : "no",
           cleanups[3]);
    printf("mutex free after the waiter's cleanup: %s\n",
           pthread_mutex_trylock(&mtx) == 0 ? "yes" : "no");
    pthread_mutex_unlock(&mtx);
    /* the pipe still works after the cancelled reader */
    write(pipefd[1], "z", 1);
    char ch = 0;
    read(pipefd[0], &ch, 1);
    printf("pipe after cancel: %c\n", ch);
    return 0;
}

/* ---------------------------------------------------------------- barrier */

#define BAR_THREADS 8
#define BAR_ROUNDS 40
static pthread_barrier_t barrier;
static int serials[BAR_ROUNDS];
static long round_sum[BAR_ROUNDS];
static int bad_rounds;

static void *barrier_worker(void *arg)
{
    int id = (int)(intptr_t)arg;
    for (int r = 0; r < BAR_ROUNDS; r++) {
        __atomic_add_fetch(&round_sum[r], id + r, __ATOMIC_SEQ_CST);
        int ret = pthread_barrier_wait(&barrier);
        if (ret == PTHREAD_BARRIER_SERIAL_THREAD)
            __atomic_add_fetch(&serials[r], 1, __ATOMIC_SEQ_CST);
        else if (ret != 0)
            __atomic_add_fetch(&bad_rounds, 1, __ATOMIC_SEQ_CST);
        /* everyone has added to this round before anyone passed the barrier */
        long want = (long)BAR_THREADS * r + BAR_THREADS * (BAR_THREADS - 1) / 2;
        if (__atomic_load_n(&round_sum[r], __ATOMIC_SEQ_CST) != want)
            __atomic_add_fetch(&bad_rounds, 1, __ATOMIC_SEQ_CST);
    }
    return NULL;
}

static int mode_barrier(void)
{
    pthread_t t[BAR_THREADS];
    must(pthread_barrier_init(&barrier, NULL, BAR_THREADS), "barrier_init");
    for (int i = 0; i < BAR_THREADS; i++)
        must(pthread_create(&t[i], NULL, barrier_worker, (void *)(intptr_t)i), "create");
    for (int i = 0; i < BAR_THREADS; i++)
        must(pthread_join(t[i], NULL), "join");
    int one_serial = 0;
    for (int r = 0; r < BAR_ROUNDS; r++)
        one_serial += serials[r] == 1;
    printf("rounds: %d, rounds with exactly one serial thread: %d, bad: %d\n", BAR_ROUNDS,
           one_serial, bad_rounds);
    printf("barrier_destroy: %s\n", errno_name(pthread_barrier_destroy(&barrier)));
    return 0;
}

/* ---------------------------------------------------------------- detach */

#define DET_THREADS 20
static sem_t det_sem;
static int det_left = DET_THREADS;
static pthread_cond_t det_cv = PTHREAD_COND_INITIALIZER;

static void *detached_self(void *arg)
{
    (void)arg;
    pthread_detach(pthread_self());
    sem_post(&det_sem);
    return NULL;
}

static void *detached_attr(void *arg)
{
    int id = (int)(intptr_t)arg;
    msleep(id % 5);
    pthread_mutex_lock(&mtx);
    if (--det_left == 0)
        pthread_cond_signal(&det_cv);
    pthread_mutex_unlock(&mtx);
    return NULL;
}

static int mode_detach(void)
{
    sem_init(&det_sem, 0, 0);
    pthread_t t;
    must(pthread_create(&t, NULL, detached_self, NULL), "create");
    sem_wait(&det_sem);
    printf("self-detached thread ran\n");

    pthread_attr_t attr;
    pthread_attr_init(&attr);
    pthread_attr_setdetachstate(&attr, PTHREAD_CREATE_DETACHED);
    int state = -1;
    pthread_attr_getdetachstate(&attr, &state);
    printf("attr detached: %s\n", state == PTHREAD_CREATE_DETACHED ? "yes" : "no");
    for (int i = 0; i < DET_THREADS; i++)
        must(pthread_create(&t, &attr, detached_attr, (void *)(intptr_t)i), "create");
    pthread_mutex_lock(&mtx);
    while (det_left)
        pthread_cond_wait(&det_cv, &mtx);
    pthread_mutex_unlock(&mtx);
    printf("detached threads finished: %d\n", DET_THREADS - det_left);
    /* a second wave reuses the exited detached threads' stacks */
    det_left = DET_THREADS;
    for (int i = 0; i < DET_THREADS; i++)
        must(pthread_create(&t, &attr, detached_attr, (void *)(intptr_t)i), "create");
    pthread_mutex_lock(&mtx);
    while (det_left)
        pthread_cond_wait(&det_cv, &mtx);
    pthread_mutex_unlock(&mtx);
    printf("second wave finished: %d\n", DET_THREADS - det_left);
    msleep(20);
    return 0;
}

/* ---------------------------------------------------------------- many */

#define MANY 256
static pthread_barrier_t many_barrier;
static pid_t many_tids[MANY];

static void *many_worker(void *arg)
{
    int id = (int)(intptr_t)arg;
    many_tids[id] = tid();
    pthread_barrier_wait(&many_barrier);
    return (void *)(intptr_t)(id * id);
}

static int cmp_pid(const void *a, const void *b)
{
    pid_t x = *(const pid_t *)a, y = *(const pid_t *)b;
    return (x > y) - (x < y);
}

static int mode_many(void)
{
    static pthread_t t[MANY];
    pthread_attr_t attr;
    pthread_attr_init(&attr);
    pthread_attr_setstacksize(&attr, 64 * 1024);
    must(pthread_barrier_init(&many_barrier, NULL, MANY + 1), "barrier_init");
    for (int i = 0; i < MANY; i++)
        must(pthread_create(&t[i], &attr, many_worker, (void *)(intptr_t)i), "create");
    int serial = pthread_barrier_wait(&many_barrier) == PTHREAD_BARRIER_SERIAL_THREAD;
    long sum = 0;
    int joined = 0;
    for (int i = 0; i < MANY; i++) {
        void *ret;
        must(pthread_join(t[i], &ret), "join");
        sum += (long)(intptr_t)ret;
        joined++;
    }
    qsort(many_tids, MANY, sizeof many_tids[0], cmp_pid);
    int distinct = 1, zero = 0;
    for (int i = 0; i < MANY; i++) {
        zero += many_tids[i] == 0;
        if (i && many_tids[i] == many_tids[i - 1])
            distinct = 0;
    }
    printf("threads created: %d, joined: %d\n", MANY, joined);
    printf("sum of id*id: %ld (expected %ld)\n", sum, (long)(MANY - 1) * MANY * (2 * MANY - 1) / 6);
    printf("tids recorded: %d, all distinct: %s\n", MANY - zero, distinct ? "yes" : "no");
    (void)serial;
    /* and again with default attributes, fewer threads */
    must(pthread_barrier_destroy(&many_barrier), "barrier_destroy");
    must(pthread_barrier_init(&many_barrier, NULL, 33), "barrier_init");
    for (int i = 0; i < 32; i++)
        must(pthread_create(&t[i], NULL, many_worker, (void *)(intptr_t)i), "create");
    pthread_barrier_wait(&many_barrier);
    sum = 0;
    for (int i = 0; i < 32; i++) {
        void *ret;
        must(pthread_join(t[i], &ret), "join");
        sum += (long)(intptr_t)ret;
    }
    printf("second round (default stacks): sum %ld\n", sum);
    return 0;
}

/* ---------------------------------------------------------------- gettid */

#define TID_THREADS 16
struct ids { pid_t tid, pid; pthread_t self; };
static struct ids ids[TID_THREADS];
static pthread_barrier_t tid_barrier;

static void *tid_worker(void *arg)
{
    int i = (int)(intptr_t)arg;
    ids[i].tid = tid();
    ids[i].pid = getpid();
    ids[i].self = pthread_self();
    pthread_barrier_wait(&tid_barrier); /* all alive at once: tids cannot be reused */
    return NULL;
}

static int mode_gettid(void)
{
    pthread_t t[TID_THREADS];
    pthread_barrier_init(&tid_barrier, NULL, TID_THREADS);
    for (int i = 0; i < TID_THREADS; i++)
        must(pthread_create(&t[i], NULL, tid_worker, (void *)(intptr_t)i), "create");
    for (int i = 0; i < TID_THREADS; i++)
        must(pthread_join(t[i], NULL), "join");
    pid_t pid = getpid();
    int distinct = 1, not_pid = 1, same_pid = 1, positive = 1, self_distinct = 1,
        self_match = 1;
    for (int i = 0; i < TID_THREADS; i++) {
        not_pid &= ids[i].tid != pid;
        same_pid &= ids[i].pid == pid;
        positive &= ids[i].tid > 0;
        self_match &= pthread_equal(ids[i].self, t[i]) != 0;
        for (int j = 0; j < i; j++) {
            distinct &= ids[i].tid != ids[j].tid;
            self_distinct &= !pthread_equal(ids[i].self, ids[j].self);
        }
    }
    printf("main: gettid == getpid: %s\n", tid() == pid ? "yes" : "no");
    printf("threads: tids positive: %s, distinct: %s, none is the pid: %s\n",
           positive ? "yes" : "no", distinct ? "yes" : "no", not_pid ? "yes" : "no");
    printf("threads: getpid same as main's: %s\n", same_pid ? "yes" : "no");
    printf("pthread_self distinct: %s, matches pthread_create's: %s\n",
           self_distinct ? "yes" : "no", self_match ? "yes" : "no");
    return 0;
}

/* ---------------------------------------------------------------- exit */

static void at_exit_handler(void) { printf("atexit handler ran in a %s thread\n",
                                           tid() == getpid() ? "main" : "non-main"); }

static void *exiter(void *arg)
{
    (void)arg;
    msleep(50);
    printf("worker calls exit(7)\n");
    exit(7);
}

static void *blocker(void *arg)
{
    (void)arg;
    char c;
    read(pipefd[0], &c, 1); /* never returns: the exit ends it */
    printf("blocker: read returned\n");
    return NULL;
}

static int mode_exit(void)
{
    atexit(at_exit_handler);
    if (pipe(pipefd))
        die("pipe");
    pthread_t a, b;
    must(pthread_create(&b, NULL, blocker, NULL), "create");
    must(pthread_create(&a, NULL, exiter, NULL), "create");
    printf("main joins the blocked thread\n");
    fflush(stdout);
    pthread_join(b, NULL);
    printf("main: join returned (wrong)\n");
    return 0;
}

/* ---------------------------------------------------------------- mainexit */

#define ME_THREADS 4
static volatile int main_gone;
static int me_turn;
static pthread_cond_t me_cv = PTHREAD_COND_INITIALIZER;
static pid_t main_tid;

static void *after_main(void *arg)
{
    int id = (int)(intptr_t)arg;
    while (!main_gone)
        msleep(5);
    msleep(20); /* main has really exited by now */
    pthread_mutex_lock(&mtx);
    while (me_turn != id)
        pthread_cond_wait(&me_cv, &mtx);
    printf("thread %d runs after main's pthread_exit\n", id);
    me_turn++;
    pthread_cond_broadcast(&me_cv);
    pthread_mutex_unlock(&mtx);
    if (id == ME_THREADS - 1) {
        /* the main thread is a zombie now: signal 0 still finds the process */
        printf("kill(getpid(), 0): %d\n", kill(getpid(), 0));
        printf("last thread exits the process with status %s\n",
               getenv("ME_STATUS") ? getenv("ME_STATUS") : "0 (by returning)");
        fflush(stdout);
        if (getenv("ME_STATUS"))
            exit(atoi(getenv("ME_STATUS")));
    }
    return NULL;
}

static int mode_mainexit(void)
{
    main_tid = tid();
    pthread_t t;
    for (int i = 0; i < ME_THREADS; i++)
        must(pthread_create(&t, NULL, after_main, (void *)(intptr_t)i), "create");
    printf("main calls pthread_exit\n");
    fflush(stdout);
    main_gone = 1;
    pthread_exit(NULL);
}

int main(int argc, char **argv)
{
    const char *mode = argc > 1 ? argv[1] : "";
    if (!strcmp(mode, "mutex")) return mode_mutex();
    if (!strcmp(mode, "tls")) return mode_tls();
    if (!strcmp(mode, "cancel")) return mode_cancel();
    if (!strcmp(mode, "barrier")) return mode_barrier();
    if (!strcmp(mode, "detach")) return mode_detach();
    if (!strcmp(mode, "many")) return mode_many();
    if (!strcmp(mode, "gettid")) return mode_gettid();
    if (!strcmp(mode, "exit")) return mode_exit();
    if (!strcmp(mode, "mainexit")) return mode_mainexit();
    printf("unknown mode %s\n", mode);
    return 2;
}
