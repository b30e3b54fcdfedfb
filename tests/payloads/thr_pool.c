/*
 * thr_pool MODE: threads created one after another, many times, while others end, and
 * around fork and execve. Under km a vCPU of a thread that ended runs the next thread
 * created, on a spare host thread started ahead: nothing of the old thread may show in
 * the new one, and no tid comes back. Prints only deterministic facts.
 *
 *   cycles   300 create/join; every other thread dirties what a thread owns (signal
 *            mask, a pending signal, alternate stack, SSE rounding, GS base, name,
 *            nice value, timer slack, CPU affinity) and the next one checks it starts
 *            clean, with its own tid and TLS; then threads inherit a creator's name
 *   churn    4 threads each create and join 100 threads while detached ones come and go
 *   signals  a signal sent to a thread that runs on a reused host thread reaches it
 *   fork     fork (with spare host threads) and threads in the child and the parent after
 *   exec     execve with spare host threads and one blocked; from main, and from a thread
 */
#define _GNU_SOURCE
#include <errno.h>
#include <pthread.h>
#include <signal.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sched.h>
#include <sys/prctl.h>
#include <sys/resource.h>
#include <sys/syscall.h>
#include <sys/wait.h>
#include <unistd.h>

#define ARCH_SET_GS 0x1001 /* <asm/prctl.h>, which musl-gcc does not see */
#define ARCH_GET_GS 0x1004

static const char *self;

static void must(int err, const char *what)
{
	if (err) {
		fprintf(stderr, "%s: %s\n", what, strerror(err));
		exit(3);
	}
}

static pid_t tid(void) { return (pid_t)syscall(SYS_gettid); }

static unsigned mxcsr(void)
{
	unsigned value;
	__asm__ volatile("stmxcsr %0" : "=m"(value));
	return value;
}

static void set_mxcsr(unsigned value) { __asm__ volatile("ldmxcsr %0" : : "m"(value)); }

static unsigned long gs_base(void)
{
	unsigned long base = 0;
	syscall(SYS_arch_prctl, ARCH_GET_GS, &base);
	return base;
}

static void run_threads(int n, void *(*fn)(void *))
{
	for (int i = 0; i < n; i++) {
		pthread_t t;
		must(pthread_create(&t, NULL, fn, NULL), "pthread_create");
		must(pthread_join(t, NULL), "pthread_join");
	}
}

static void *nothing(void *arg) { return arg; }

/* ---- cycles ---------------------------------------------------------------------- */

static atomic_int usr1_count;
static void on_usr1(int sig) { (void)sig; atomic_fetch_add(&usr1_count, 1); }

static __thread int tls_value = 7;
static int *main_tls;
static char main_name[16];
static unsigned long main_gs;
static char altstack[65536];
static int main_nice;
static long main_slack;
static int main_cpus;
#define CHECKS 11
static int bad[CHECKS];
static pid_t seen[400];
static int nseen, seen_again;

static void saw(pid_t me)
{
	for (int i = 0; i < nseen; i++)
		seen_again += seen[i] == me;
	if (nseen < 400)
		seen[nseen++] = me;
}
static const char *bad_names[CHECKS] = {"mask", "pending", "altstack", "rounding", "gs base",
					"name", "tid", "tls", "nice", "timer slack", "affinity"};

static int cpus(void)
{
	cpu_set_t set;
	sched_getaffinity(0, sizeof set, &set);
	return CPU_COUNT(&set);
}

/* What km keeps per guest thread or per vCPU: the next thread on the vCPU starts clean. */
static void *dirty_thread_state(void *arg)
{
	saw(tid());
	sigset_t set;
	sigemptyset(&set);
	sigaddset(&set, SIGUSR1);
	pthread_sigmask(SIG_BLOCK, &set, NULL);
	pthread_kill(pthread_self(), SIGUSR1); /* stays pending: blocked */
	stack_t ss = {.ss_sp = altstack, .ss_size = sizeof altstack};
	sigaltstack(&ss, NULL);
	set_mxcsr(mxcsr() | 2 << 13); /* SSE rounding: up */
	syscall(SYS_arch_prctl, ARCH_SET_GS, 0x12345000UL);
	tls_value = 99;
	return arg;
}

/* What the host keeps per host thread: the next thread must not inherit it. */
static void *dirty_host_thread(void *arg)
{
	saw(tid());
	prctl(PR_SET_NAME, "dirty-thread");
	setpriority(PRIO_PROCESS, tid(), main_nice + 3);
	prctl(PR_SET_TIMERSLACK, 123456UL);
	cpu_set_t one;
	CPU_ZERO(&one);
	CPU_SET(sched_getcpu(), &one);
	sched_setaffinity(0, sizeof one, &one);
	tls_value = 99;
	return arg;
}

static void *check(void *arg)
{
	saw(tid());
	sigset_t set, pending;
	pthread_sigmask(SIG_BLOCK, NULL, &set);
	bad[0] += sigismember(&set, SIGUSR1);
	sigpending(&pending);
	bad[1] += sigismember(&pending, SIGUSR1) || atomic_load(&usr1_count) != 0;
	stack_t ss;
	sigaltstack(NULL, &ss);
	bad[2] += !(ss.ss_flags & SS_DISABLE);
	bad[3] += (mxcsr() >> 13 & 3) != 0;
	bad[4] += gs_base() != main_gs;
	char name[16] = "";
	prctl(PR_GET_NAME, name);
	bad[5] += strcmp(name, main_name) != 0;
	bad[6] += tid() == getpid() || syscall(SYS_tgkill, getpid(), tid(), 0) != 0;
	bad[7] += tls_value != 7 || &tls_value == main_tls;
	bad[8] += getpriority(PRIO_PROCESS, tid()) != main_nice;
	bad[9] += prctl(PR_GET_TIMERSLACK) != main_slack;
	bad[10] += cpus() != main_cpus;
	return arg;
}

/* A thread that changed its name and timer slack creates threads: they inherit both. */
static int inherited;

static void *check_inherited(void *arg)
{
	char name[16] = "";
	prctl(PR_GET_NAME, name);
	inherited += !strcmp(name, "creator") && prctl(PR_GET_TIMERSLACK) == 654321;
	return arg;
}

static void *creator_thread(void *arg)
{
	prctl(PR_SET_NAME, "creator");
	prctl(PR_SET_TIMERSLACK, 654321UL);
	run_threads(5, check_inherited);
	return arg;
}

static int mode_cycles(void)
{
	signal(SIGUSR1, on_usr1);
	main_tls = &tls_value;
	prctl(PR_GET_NAME, main_name);
	main_gs = gs_base();
	main_nice = getpriority(PRIO_PROCESS, 0);
	main_slack = prctl(PR_GET_TIMERSLACK);
	main_cpus = cpus();
	for (int i = 0; i < 75; i++) {
		run_threads(1, dirty_thread_state);
		run_threads(1, check);
		run_threads(1, dirty_host_thread);
		run_threads(1, check);
	}
	int all = 1;
	for (int i = 0; i < CHECKS; i++) {
		if (bad[i])
			printf("%s left over in %d threads\n", bad_names[i], bad[i]);
		all &= !bad[i];
	}
	printf("cycles: 300, every checked thread started clean: %s\n", all ? "yes" : "no");
	printf("SIGUSR1 handled: %d\n", atomic_load(&usr1_count));
	printf("threads with the tid of one before them: %d\n", seen_again);
	run_threads(1, creator_thread);
	printf("threads inheriting their creator's name and timer slack: %d/5\n", inherited);
	return 0;
}

/* ---- churn ----------------------------------------------------------------------- */

#define LIVE_MAX 64
static pthread_mutex_t live_lock = PTHREAD_MUTEX_INITIALIZER;
static pid_t live[LIVE_MAX];
static int duplicates;
static atomic_int worked, detached_done;

static void *worker(void *arg)
{
	pid_t me = tid();
	int slot = -1;
	pthread_mutex_lock(&live_lock);
	for (int i = 0; i < LIVE_MAX; i++) {
		if (live[i] == me)
			duplicates++;
		if (live[i] == 0 && slot < 0)
			slot = i;
	}
	if (slot >= 0)
		live[slot] = me;
	pthread_mutex_unlock(&live_lock);
	atomic_fetch_add(&worked, 1);
	sched_yield();
	pthread_mutex_lock(&live_lock);
	if (slot >= 0)
		live[slot] = 0;
	pthread_mutex_unlock(&live_lock);
	return arg;
}

static void *detached(void *arg)
{
	worker(NULL);
	atomic_fetch_add(&detached_done, 1);
	return arg;
}

static void *creator(void *arg)
{
	run_threads(100, worker);
	return arg;
}

static int mode_churn(void)
{
	pthread_t creators[4];
	pthread_attr_t attr;
	pthread_attr_init(&attr);
	pthread_attr_setdetachstate(&attr, PTHREAD_CREATE_DETACHED);
	for (int i = 0; i < 4; i++)
		must(pthread_create(&creators[i], NULL, creator, NULL), "pthread_create");
	for (int i = 0; i < 40; i++) {
		pthread_t t;
		must(pthread_create(&t, &attr, detached, NULL), "pthread_create detached");
	}
	for (int i = 0; i < 4; i++)
		pthread_join(creators[i], NULL);
	while (atomic_load(&detached_done) < 40)
		sched_yield();
	printf("workers: %d (expected 440), tids shared by two live threads: %d\n",
	       atomic_load(&worked), duplicates);
	return 0;
}

/* ---- signals --------------------------------------------------------------------- */

static atomic_int handled_by;
static atomic_int ready;

static void on_usr2(int sig) { (void)sig; atomic_store(&handled_by, tid()); }

static void *waiter(void *arg)
{
	sigset_t none;
	sigemptyset(&none);
	*(pid_t *)arg = tid();
	atomic_store(&ready, 1);
	while (atomic_load(&handled_by) == 0)
		sigsuspend(&none);
	return arg;
}

static int mode_signals(void)
{
	sigset_t set;
	sigemptyset(&set);
	sigaddset(&set, SIGUSR2);
	signal(SIGUSR2, on_usr2);
	pthread_sigmask(SIG_BLOCK, &set, NULL); /* only the waiter takes it */
	int right = 0;
	for (int i = 0; i < 20; i++) {
		run_threads(3, nothing);
		pid_t waiter_tid = 0;
		atomic_store(&ready, 0);
		atomic_store(&handled_by, 0);
		pthread_t t;
		sigset_t open;
		sigemptyset(&open);
		pthread_sigmask(SIG_SETMASK, &open, NULL);
		must(pthread_create(&t, NULL, waiter, &waiter_tid), "pthread_create");
		pthread_sigmask(SIG_BLOCK, &set, NULL);
		while (!atomic_load(&ready))
			sched_yield();
		pthread_kill(t, SIGUSR2);
		pthread_join(t, NULL);
		right += atomic_load(&handled_by) == waiter_tid;
	}
	printf("signals taken by the thread they were sent to: %d/20\n", right);
	return 0;
}

/* ---- fork ------------------------------------------------------------------------ */

static int mode_fork(void)
{
	for (int round = 0; round < 3; round++) {
		run_threads(10, nothing);
		fflush(stdout);
		pid_t pid = fork();
		if (pid == 0) {
			run_threads(30, worker);
			printf("child %d: 30 threads\n", round);
			fflush(stdout);
			_exit(round);
		}
		int status;
		waitpid(pid, &status, 0);
		printf("parent %d: child exited %d\n", round,
		       WIFEXITED(status) ? WEXITSTATUS(status) : -1);
		run_threads(10, worker);
	}
	printf("threads in the parent: %d\n", atomic_load(&worked));
	return 0;
}

/* ---- exec ------------------------------------------------------------------------ */

static pthread_mutex_t hold = PTHREAD_MUTEX_INITIALIZER;

static void *blocked(void *arg)
{
	pthread_mutex_lock(&hold); /* never returns: main holds it until the exec */
	return arg;
}

static void *exec_from_thread(void *arg)
{
	fflush(stdout);
	execl(self, self, "after-exec", "thread", (char *)NULL);
	perror("execl");
	exit(4);
	return arg;
}

static int mode_exec(int from_thread)
{
	run_threads(10, nothing);
	pthread_mutex_lock(&hold);
	pthread_t t;
	must(pthread_create(&t, NULL, blocked, NULL), "pthread_create");
	printf("before exec: threads ran and one is blocked\n");
	fflush(stdout);
	if (from_thread) {
		must(pthread_create(&t, NULL, exec_from_thread, NULL), "pthread_create");
		pthread_join(t, NULL);
		return 5;
	}
	execl(self, self, "after-exec", "main", (char *)NULL);
	perror("execl");
	return 4;
}

static int mode_after_exec(const char *from)
{
	run_threads(40, worker);
	printf("after exec from %s: pid is the tid: %s, threads: %d\n", from,
	       getpid() == tid() ? "yes" : "no", atomic_load(&worked));
	return 0;
}

int main(int argc, char **argv)
{
	self = argv[0];
	setvbuf(stdout, NULL, _IOLBF, 0);
	const char *mode = argc > 1 ? argv[1] : "";
	if (!strcmp(mode, "cycles"))
		return mode_cycles();
	if (!strcmp(mode, "churn"))
		return mode_churn();
	if (!strcmp(mode, "signals"))
		return mode_signals();
	if (!strcmp(mode, "fork"))
		return mode_fork();
	if (!strcmp(mode, "exec"))
		return mode_exec(argc > 2 && !strcmp(argv[2], "thread"));
	if (!strcmp(mode, "after-exec"))
		return mode_after_exec(argc > 2 ? argv[2] : "?");
	fprintf(stderr, "usage: %s cycles|churn|signals|fork|exec [thread]\n", argv[0]);
	return 2;
}
