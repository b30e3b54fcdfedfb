/* Dies of a core-dumping signal where gdb can name the frame, a global and a local:
 *   core_crash segv|fpe|abort|quit [threads] [rlimit0]
 * threads: three more threads wait in worker_wait first (gdb's `info threads` shows 4);
 * rlimit0: the program sets its own RLIMIT_CORE to 0 first (then no core). */
#include <pthread.h>
#include <sched.h>
#include <signal.h>
#include <stdio.h>
#include <string.h>
#include <sys/prctl.h>
#include <sys/resource.h>
#include <unistd.h>

int global_counter = 4242;
volatile int zero;
static int started;

__attribute__((noinline)) void segv_here(int *p)
{
    int local_value = 777;
    __asm__ volatile("" : : "r"(&local_value) : "memory");
    *p = local_value;
}

__attribute__((noinline)) int fpe_here(int divisor)
{
    int local_value = 888;
    __asm__ volatile("" : : "r"(&local_value) : "memory");
    return local_value / divisor;
}

__attribute__((noinline)) void abort_here(void)
{
    int local_value = 999;
    __asm__ volatile("" : : "r"(&local_value) : "memory");
    abort();
}

__attribute__((noinline)) void quit_here(void)
{
    int local_value = 555;
    __asm__ volatile("" : : "r"(&local_value) : "memory");
    kill(getpid(), SIGQUIT);
    pause();
}

__attribute__((noinline)) void *worker_wait(void *arg)
{
    __atomic_add_fetch(&started, 1, __ATOMIC_SEQ_CST);
    for (;;)
        pause();
    return arg;
}

int main(int argc, char **argv)
{
    const char *what = argc > 1 ? argv[1] : "segv";
    for (int i = 2; i < argc; i++) {
        if (!strcmp(argv[i], "threads")) {
            pthread_t t[3];
            for (int j = 0; j < 3; j++)
                pthread_create(&t[j], NULL, worker_wait, NULL);
            while (__atomic_load_n(&started, __ATOMIC_SEQ_CST) < 3)
                sched_yield();
        } else if (!strcmp(argv[i], "nodump")) {
            /* Not dumpable: no core. Setting it again must read back (prctl's own flag). */
            if (prctl(PR_SET_DUMPABLE, 0, 0, 0, 0) != 0 || prctl(PR_GET_DUMPABLE) != 0)
                perror("prctl");
        } else if (!strcmp(argv[i], "redump")) {
            prctl(PR_SET_DUMPABLE, 0, 0, 0, 0);
            if (prctl(PR_SET_DUMPABLE, 1, 0, 0, 0) != 0 || prctl(PR_GET_DUMPABLE) != 1)
                perror("prctl");
        } else if (!strcmp(argv[i], "rlimit0")) {
            struct rlimit none = {0, RLIM_INFINITY};
            if (setrlimit(RLIMIT_CORE, &none) != 0)
                perror("setrlimit");
        }
    }
    global_counter++;
    if (!strcmp(what, "segv"))
        segv_here(NULL);
    else if (!strcmp(what, "fpe"))
        printf("%d\n", fpe_here(zero));
    else if (!strcmp(what, "abort"))
        abort_here();
    else if (!strcmp(what, "quit"))
        quit_here();
    return 0;
}
