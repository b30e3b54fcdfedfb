/* mmap 1 GiB of anonymous memory, write every page, check it, munmap; eight times over.
 * Memory must be given back on munmap: the test watches km's peak RSS. */
#include <stdint.h>
#include <sys/mman.h>

#include "payload.h"

#define SIZE (1UL << 30)
#define PAGE 4096UL

int main(int argc, char **argv)
{
    int rounds = argc > 1 ? atoi(argv[1]) : 8;
    for (int round = 0; round < rounds; round++) {
        unsigned char *p = mmap(NULL, SIZE, PROT_READ | PROT_WRITE,
                                MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
        if (p == MAP_FAILED)
            die("mmap 1 GiB");
        unsigned long zero = 0;
        for (unsigned long off = 0; off < SIZE; off += PAGE) {
            p[off] = (unsigned char)(round + off / PAGE);
            /* fresh memory reads as zero, even where an earlier round wrote */
            zero += p[off + 1 + (off / PAGE) % (PAGE - 1)] == 0;
        }
        unsigned long bad = 0;
        for (unsigned long off = 0; off < SIZE; off += PAGE)
            bad += p[off] != (unsigned char)(round + off / PAGE);
        printf("round %d: %lu pages, zero-filled %s, wrong %lu, munmap %d\n", round,
               SIZE / PAGE, zero == SIZE / PAGE ? "yes" : "no", bad, munmap(p, SIZE));
        fflush(stdout);
    }
    return 0;
}
