/* A payload for the gdb stub tests (tests/integration/test_gdb.py): a function to
 * break in, a global to print and watch, a local, and with an argument 8 threads
 * waiting while main stops in add(); "spin" loops until interrupted; "signals" raises
 * SIGUSR1 (a handler) then dies of SIGSEGV; "exec" runs itself again without arguments;
 * "syscall" makes a system call from labelled instructions (stepi over it); "fork" forks
 * a child that calls add() too and exits 3 (the parent prints its status); "maps" prints
 * its libc lines of /proc/self/maps first. */
#include <pthread.h>
#include <signal.h>
#include <stdio.h>
#include <string.h>
#include <sys/wait.h>
#include <unistd.h>

int counter;
volatile int spin_stop;
volatile unsigned long spins;

int add(int a, int b)
{
    int s = a + b;
    counter += s;
    return s;
}

static void on_usr1(int signo)
{
    (void)signo;
    write(1, "handler\n", 8);
}

static void *worker(void *arg)
{
    while (!spin_stop)
        usleep(1000);
    return arg;
}

int main(int argc, char **argv)
{
    int total = 0;
    pthread_t t[8];
    if (argc > 1 && strcmp(argv[1], "spin") == 0) {
        printf("spinning\n");
        fflush(stdout);
        for (;;)
            spins++;
    }
    if (argc > 1 && strcmp(argv[1], "syscall") == 0) {
        long pid;
        __asm__ volatile(".globl at_syscall\nat_syscall: syscall\n"
                         ".globl after_syscall\nafter_syscall: nop\nnop\n"
                         : "=a"(pid) : "a"(39L) : "rcx", "r11", "memory");
        printf("pid %s\n", pid == getpid() ? "ok" : "wrong");
        return 0;
    }
    if (argc > 1 && strcmp(argv[1], "exec") == 0) {
        char *again[] = {argv[0], 0};
        execv(argv[0], again);
        return 99;
    }
    if (argc > 1 && strcmp(argv[1], "fork") == 0) {
        int status = -1;
        pid_t child = fork();
        if (child == 0) {
            printf("child add %d\n", add(5, 6));
            fflush(stdout);
            _exit(3);
        }
        waitpid(child, &status, 0);
        printf("child status %d\n", WIFEXITED(status) ? WEXITSTATUS(status) : -1);
        fflush(stdout);
        counter = 0;
    }
    if (argc > 1 && strcmp(argv[1], "maps") == 0) {
        char line[512];
        FILE *maps = fopen("/proc/self/maps", "r");
        while (maps && fgets(line, sizeof line, maps))
            if (strstr(line, "libc.so"))
                fputs(line, stdout);
        if (maps)
            fclose(maps);
        fflush(stdout);
    }
    if (argc > 1 && strcmp(argv[1], "signals") == 0) {
        signal(SIGUSR1, on_usr1);
        raise(SIGUSR1);
        write(1, "after raise\n", 12);
        *(volatile int *)8 = 1;
    }
    if (argc > 1 && strcmp(argv[1], "threads") == 0) {
        for (long i = 0; i < 8; i++)
            pthread_create(&t[i], 0, worker, (void *)i);
        usleep(20000);
        add(1, 2);
        spin_stop = 1;
        for (int i = 0; i < 8; i++)
            pthread_join(t[i], 0);
        counter = 0;
    }
    for (int i = 0; i < 3; i++)
        total += add(i, 10);
    printf("total %d\n", total);
    return total & 7;
}
