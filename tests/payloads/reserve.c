/* Reservations cost no memory, as on Linux: 64 GiB of PROT_NONE, then a 5 GiB PROT_NONE
 * MAP_SHARED reservation; a 1 TiB MAP_NORESERVE read-write mapping touched at a few far
 * apart pages (by the payload, by read(2) into it, by a futex on it); an 8 GiB ordinary
 * mapping written at both ends; parts of a reservation committed with MAP_FIXED. */
#define _GNU_SOURCE
#include <fcntl.h>
#define FUTEX_WAIT 0
#include <stdint.h>
#include <time.h>
#include <sys/mman.h>
#include <sys/syscall.h>
#include <unistd.h>
#include "payload.h"

#define GiB (1ul << 30)

int main(void)
{
    int ok = 1;
    for (int i = 0; i < 64; i++)
        ok &= mmap(NULL, GiB, PROT_NONE, MAP_PRIVATE | MAP_ANONYMOUS | MAP_NORESERVE, -1, 0)
              != MAP_FAILED;
    printf("64 x 1 GiB PROT_NONE: %s\n", ok ? "ok" : errno_name(errno));
    char *shared = mmap(NULL, 5 * GiB, PROT_NONE, MAP_SHARED | MAP_ANONYMOUS, -1, 0);
    printf("5 GiB PROT_NONE MAP_SHARED: %s\n", shared != MAP_FAILED ? "ok" : errno_name(errno));

    char *huge = mmap(NULL, 1024 * GiB, PROT_READ | PROT_WRITE,
                      MAP_PRIVATE | MAP_ANONYMOUS | MAP_NORESERVE, -1, 0);
    printf("1 TiB MAP_NORESERVE: %s\n", huge != MAP_FAILED ? "ok" : errno_name(errno));
    if (huge != MAP_FAILED) {
        uint64_t sum = 0;
        for (uint64_t off = 0; off < 1024 * GiB; off += 97 * GiB + 12345) {
            huge[off] = (char)(off >> 30);
            sum += huge[off] + huge[off + 4096];
        }
        printf("  touched, sum %lu\n", (unsigned long)sum);
        int fd = open("/proc/self/cmdline", O_RDONLY);
        long n = read(fd, huge + 700 * GiB, 4096);
        printf("  read(2) into it: %s\n", n > 0 ? "ok" : errno_name(errno));
        close(fd);
        int *word = (int *)(huge + 900 * GiB);
        struct timespec zero = {0, 0};
        long r = syscall(SYS_futex, word, FUTEX_WAIT, 1, &zero, NULL, 0);
        printf("  futex on an untouched word: %ld %s\n", r, r < 0 ? errno_name(errno) : "");
        printf("  munmap: %d\n", munmap(huge, 1024 * GiB));
    }

    char *big = mmap(NULL, 8 * GiB, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
    if (big != MAP_FAILED) {
        big[0] = 1;
        big[8 * GiB - 1] = 2;
        printf("8 GiB: ends %d %d, middle %d\n", big[0], big[8 * GiB - 1], big[4 * GiB]);
    }

    char *arena = mmap(NULL, 4 * GiB, PROT_NONE, MAP_PRIVATE | MAP_ANONYMOUS | MAP_NORESERVE,
                       -1, 0);
    char *part = mmap(arena + GiB, 64 << 20, PROT_READ | PROT_WRITE,
                      MAP_PRIVATE | MAP_ANONYMOUS | MAP_FIXED, -1, 0);
    part[0] = 7;
    printf("committed part of a reservation: %s, %d\n", part == arena + GiB ? "in place" : "moved",
           part[0]);
    int r = mprotect(arena + 2 * GiB, GiB, PROT_READ | PROT_WRITE);
    arena[2 * GiB + 12345] = 9;
    printf("mprotect 1 GiB of it: %d, %d\n", r, arena[2 * GiB + 12345]);
    return 0;
}
