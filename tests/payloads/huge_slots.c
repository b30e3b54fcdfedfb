/* Large anonymous mappings (which km maps with 2 MiB pages once touched) under every
 * change that splits or drops such a page: mprotect and munmap of one 4 KiB page inside,
 * MAP_FIXED over part, madvise(MADV_DONTNEED), mremap, fork, and threads touching the
 * same slots. Prints what it sees; natively and under km the output must agree. */
#define _GNU_SOURCE
#include <pthread.h>
#include <setjmp.h>
#include <signal.h>
#include <stdio.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/wait.h>
#include <unistd.h>

#define MIB (1UL << 20)
#define PAGE 4096UL

static sigjmp_buf jump;
static void on_segv(int sig) { (void)sig; siglongjmp(jump, 1); }

static int faults_on(volatile char *p, int write) {
	if (sigsetjmp(jump, 1)) return 1;
	if (write) *p = 7; else (void)*p;
	return 0;
}

static char *map(size_t size) {
	char *p = mmap(NULL, size, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
	if (p == MAP_FAILED) { perror("mmap"); _exit(1); }
	return p;
}

static void fill(char *p, size_t size, int seed) {
	for (size_t i = 0; i < size; i += PAGE) p[i] = (char)(seed + i / PAGE);
}

static long wrong(const char *p, size_t size, int seed) {
	long bad = 0;
	for (size_t i = 0; i < size; i += PAGE) bad += p[i] != (char)(seed + i / PAGE);
	return bad;
}

static void *toucher(void *arg) {
	char *p = arg;
	for (size_t i = 0; i < 8 * MIB; i += PAGE) __atomic_fetch_add(&p[i], 1, __ATOMIC_RELAXED);
	return NULL;
}

int main(void) {
	struct sigaction sa = {0};
	sa.sa_handler = on_segv;
	sigaction(SIGSEGV, &sa, NULL);
	setvbuf(stdout, NULL, _IONBF, 0);

	char *a = map(16 * MIB);
	fill(a, 16 * MIB, 1);
	printf("filled 16 MiB, wrong %ld\n", wrong(a, 16 * MIB, 1));

	char *guard = a + 3 * MIB + 5 * PAGE;
	mprotect(guard, PAGE, PROT_NONE);
	printf("guard page: read faults %d, write faults %d, neighbours wrong %ld\n",
	       faults_on(guard, 0), faults_on(guard, 1),
	       (long)(guard[-PAGE] != (char)(1 + (3 * MIB + 4 * PAGE) / PAGE))
	       + (guard[PAGE] != (char)(1 + (3 * MIB + 6 * PAGE) / PAGE)));
	mprotect(a + 4 * MIB, 2 * MIB, PROT_READ);
	printf("read-only 2 MiB: write faults %d, reads ok %d\n", faults_on(a + 5 * MIB, 1),
	       a[5 * MIB] == (char)(1 + 5 * MIB / PAGE));

	munmap(a + 7 * MIB + PAGE, PAGE);
	printf("hole: read faults %d, next page wrong %ld\n", faults_on(a + 7 * MIB + PAGE, 0),
	       (long)(a[7 * MIB + 2 * PAGE] != (char)(1 + (7 * MIB + 2 * PAGE) / PAGE)));

	char *fixed = mmap(a + 8 * MIB + 64 * PAGE, 4 * PAGE, PROT_READ | PROT_WRITE,
	                   MAP_PRIVATE | MAP_ANONYMOUS | MAP_FIXED, -1, 0);
	printf("MAP_FIXED inside: zero %d, before it wrong %ld\n", fixed[0] == 0,
	       (long)(a[8 * MIB + 63 * PAGE] != (char)(1 + (8 * MIB + 63 * PAGE) / PAGE)));

	madvise(a + 10 * MIB, 2 * MIB + 3 * PAGE, MADV_DONTNEED);
	printf("DONTNEED: zero %d %d, after it wrong %ld\n", a[10 * MIB] == 0,
	       a[12 * MIB + 2 * PAGE] == 0, wrong(a + 12 * MIB + 3 * PAGE, MIB, 1 + (12 * MIB + 3 * PAGE) / PAGE));

	char *b = map(8 * MIB);
	fill(b, 8 * MIB, 3);
	char *moved = mremap(b, 8 * MIB, 24 * MIB, MREMAP_MAYMOVE);
	printf("mremap: wrong %ld, grown part zero %d\n", wrong(moved, 8 * MIB, 3), moved[20 * MIB] == 0);
	fill(moved + 8 * MIB, 16 * MIB, 9);

	pid_t child = fork();
	if (child == 0) {
		long bad = wrong(moved + 8 * MIB, 16 * MIB, 9);
		fill(moved, 24 * MIB, 50);
		munmap(moved + 2 * MIB + PAGE, PAGE);
		printf("child: inherited wrong %ld, own writes wrong %ld, hole faults %d\n", bad,
		       wrong(moved, 2 * MIB, 50), faults_on(moved + 2 * MIB + PAGE, 0));
		_exit(0);
	}
	int status;
	waitpid(child, &status, 0);
	printf("parent after fork: wrong %ld, child exit %d\n", wrong(moved + 8 * MIB, 16 * MIB, 9),
	       WEXITSTATUS(status));
	printf("parent guard still faults %d\n", faults_on(guard, 0));
	fill(moved, 24 * MIB, 11);
	printf("parent writes after fork: wrong %ld\n", wrong(moved, 24 * MIB, 11));

	/* Changes to slots never touched: the pieces left must map when touched. */
	char *u = map(8 * MIB);
	mprotect(u + MIB, PAGE, PROT_READ);
	munmap(u + 3 * MIB, PAGE);
	mmap(u + 5 * MIB, PAGE, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS | MAP_FIXED, -1, 0);
	long cut_faults = 0;
	for (size_t i = 0; i < 8 * MIB; i += PAGE)
		if (i != MIB && i != 3 * MIB) cut_faults += faults_on(u + i, 1);
	printf("untouched slots cut first: faults %ld, read-only faults %d, hole faults %d\n",
	       cut_faults, faults_on(u + MIB, 1), faults_on(u + 3 * MIB, 0));

	char *c = map(8 * MIB);
	pthread_t t[4];
	for (int i = 0; i < 4; i++) pthread_create(&t[i], NULL, toucher, c);
	for (int i = 0; i < 4; i++) pthread_join(t[i], NULL);
	long bad = 0;
	for (size_t i = 0; i < 8 * MIB; i += PAGE) bad += c[i] != 4;
	printf("4 threads on fresh slots: wrong %ld\n", bad);
	munmap(c, 8 * MIB);
	char *d = map(8 * MIB);
	printf("fresh mapping after munmap: nonzero %ld\n", (long)(d[0] | d[3 * MIB] | d[8 * MIB - 1]));
	return 0;
}
