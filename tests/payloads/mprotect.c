/* mprotect: read-only pages can be read; writing one is fatal (SIGSEGV) in the "write"
 * mode; PROT_NONE and back to read-write keeps the contents. */
#include <signal.h>
#include <stdint.h>
#include <sys/mman.h>
#include <sys/syscall.h>
#include <unistd.h>

#include "payload.h"

#define PAGE 4096UL

int main(int argc, char **argv)
{
    const char *mode = argc > 1 ? argv[1] : "read";
    setvbuf(stdout, NULL, _IONBF, 0);  /* everything printed before a crash must show */
    volatile unsigned char *p = mmap(NULL, 4 * PAGE, PROT_READ | PROT_WRITE,
                                     MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
    if (p == MAP_FAILED)
        die("mmap");
    for (unsigned long i = 0; i < 4 * PAGE; i++)
        p[i] = (unsigned char)(i * 7);
    printf("mprotect page 1 PROT_READ: %d\n", mprotect((void *)(p + PAGE), PAGE, PROT_READ));
    unsigned sum = 0;
    for (unsigned long i = PAGE; i < 2 * PAGE; i++)
        sum += p[i];
    printf("read-only page reads back: %s (sum %u)\n", p[PAGE + 3] == (unsigned char)((PAGE + 3) * 7)
           ? "yes" : "no", sum);
    p[0] = 1;  /* the neighbours stay writable */
    p[2 * PAGE] = 2;
    printf("neighbour pages still writable: yes\n");

    /* a read-only page is EFAULT for a system call that writes into it */
    int fds[2];
    pipe(fds);
    write(fds[1], "abc", 3);
    errno = 0;
    long n = read(fds[0], (void *)(p + PAGE), 3);
    printf("read() into the read-only page: %ld %s\n", n, errno_name(errno));
    n = write(fds[1], (const void *)(p + PAGE), 3);  /* reading from it is fine */
    printf("write() from the read-only page: %ld\n", n);

    if (strcmp(mode, "write") == 0) {
        printf("writing to the read-only page...\n");
        p[PAGE + 5] = 0xff;
        printf("the write did not fault!\n");
        return 1;
    }
    if (strcmp(mode, "prot-none-read") == 0) {
        mprotect((void *)(p + PAGE), PAGE, PROT_NONE);
        printf("reading a PROT_NONE page...\n");
        sum = p[PAGE];
        printf("the read did not fault! (%u)\n", sum);
        return 1;
    }

    printf("mprotect pages 0-3 PROT_NONE: %d\n", mprotect((void *)p, 4 * PAGE, PROT_NONE));
    errno = 0;
    n = write(fds[1], (const void *)p, 3);
    printf("write() from a PROT_NONE page: %ld %s\n", n, errno_name(errno));
    printf("mprotect back to PROT_READ|PROT_WRITE: %d\n",
           mprotect((void *)p, 4 * PAGE, PROT_READ | PROT_WRITE));
    int ok = p[0] == 1 && p[2 * PAGE] == 2;
    for (unsigned long i = 1; i < 4 * PAGE; i++)
        if (i != 2 * PAGE && p[i] != (unsigned char)(i * 7))
            ok = 0;
    printf("contents kept across PROT_NONE: %s\n", ok ? "yes" : "no");
    p[PAGE + 5] = 0xff;
    printf("formerly read-only page writable again: %s\n", p[PAGE + 5] == 0xff ? "yes" : "no");

    /* errors (the call first, then errno: argument order is unspecified) */
    int r = syscall(SYS_mprotect, (void *)(p + 1), PAGE, PROT_READ);  /* musl would align */
    printf("mprotect unaligned: %d %s\n", r, errno_name(r ? errno : 0));
    munmap((void *)(p + 3 * PAGE), PAGE);
    r = mprotect((void *)(p + 2 * PAGE), 2 * PAGE, PROT_READ);
    printf("mprotect range with a hole: %d %s\n", r, errno_name(r ? errno : 0));
    r = mprotect((void *)p, PAGE, 0x100);
    printf("mprotect bad flags: %d %s\n", r, errno_name(r ? errno : 0));
    r = mprotect((void *)p, 0, PROT_READ);
    printf("mprotect length 0: %d %s\n", r, errno_name(r ? errno : 0));
    return 0;
}
