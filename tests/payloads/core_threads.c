/* A thread dies of SIGSEGV while the others wait in a condition variable, a read of a
 * pipe, a nanosleep, a busy loop and a join: a core shows all six, each in its function. */
#include <pthread.h>
#include <sched.h>
#include <time.h>
#include <unistd.h>

static pthread_mutex_t mutex = PTHREAD_MUTEX_INITIALIZER;
static pthread_cond_t cond = PTHREAD_COND_INITIALIZER;
static int fds[2];
static int ready;

static void started(void)
{
    __atomic_add_fetch(&ready, 1, __ATOMIC_SEQ_CST);
}

__attribute__((noinline)) void *in_condwait(void *arg)
{
    pthread_mutex_lock(&mutex);
    started();
    for (;;)
        pthread_cond_wait(&cond, &mutex);
    return arg;
}

__attribute__((noinline)) void *in_read(void *arg)
{
    char byte;
    started();
    read(fds[0], &byte, 1);
    return arg;
}

__attribute__((noinline)) void *in_nanosleep(void *arg)
{
    struct timespec long_time = {1000, 0};
    started();
    nanosleep(&long_time, NULL);
    return arg;
}

__attribute__((noinline)) void *in_busy_loop(void *arg)
{
    started();
    for (;;)
        __asm__ volatile("" ::: "memory");
    return arg;
}

__attribute__((noinline)) void *crashes(void *arg)
{
    while (__atomic_load_n(&ready, __ATOMIC_SEQ_CST) < 4)
        sched_yield();
    *(volatile int *)arg = 1;
    return arg;
}

int main(void)
{
    pthread_t thread;
    void *(*bodies[])(void *) = {in_condwait, in_read, in_nanosleep, in_busy_loop};
    if (pipe(fds) != 0)
        return 1;
    for (int i = 0; i < 4; i++)
        pthread_create(&thread, NULL, bodies[i], NULL);
    pthread_create(&thread, NULL, crashes, NULL);
    pthread_join(thread, NULL);
    return 0;
}
