/* Grow the program break in 1 MiB steps up to 64 MiB, writing to every page, then shrink
 * it back. Uses the raw brk system call (musl's sbrk() refuses non-zero increments), and
 * prints only offsets from the initial break, which ASLR moves. */
#include <stdint.h>
#include <sys/syscall.h>
#include <unistd.h>

#include "payload.h"

#define STEP (1UL << 20)
#define TOTAL (64UL << 20)
#define PAGE 4096UL

static uintptr_t brk_now(void)
{
    return (uintptr_t)syscall(SYS_brk, 0);
}

/* sbrk() on top of the raw system call: returns the old break or -1. */
static intptr_t my_sbrk(intptr_t inc)
{
    uintptr_t old = brk_now();
    uintptr_t got = (uintptr_t)syscall(SYS_brk, old + inc);
    return got == old + inc ? (intptr_t)old : -1;
}

int main(void)
{
    /* stdout gets its buffer now, before the break moves under libc's feet */
    printf("brk test (%s)\n", PAYLOAD_FLAVOUR);
    fflush(stdout);
    uintptr_t start = brk_now();
    printf("initial break is page-aligned: %s\n", start % PAGE == 0 ? "yes" : "no");
    int steps = 0, failed = 0;
    unsigned long bad = 0;
    for (uintptr_t size = 0; size < TOTAL; size += STEP) {
        intptr_t old = my_sbrk(STEP);
        if (old == -1 || (uintptr_t)old != start + size) {
            failed++;
            break;
        }
        unsigned char *p = (unsigned char *)old;
        for (unsigned long off = 0; off < STEP; off += PAGE)
            p[off] = (unsigned char)((size + off) / PAGE);
        steps++;
    }
    unsigned char *base = (unsigned char *)start;
    for (unsigned long off = 0; off < (unsigned long)steps * STEP; off += PAGE)
        bad += base[off] != (unsigned char)(off / PAGE);
    printf("grew in %d steps of 1 MiB, failures %d, wrong pages %lu\n", steps, failed, bad);
    printf("break - initial = %lu MiB\n", (unsigned long)((brk_now() - start) >> 20));

    /* an unaligned break is allowed and reported back as asked */
    uintptr_t odd = start + TOTAL + 123;
    printf("brk(unaligned) returns it: %s\n",
           (uintptr_t)syscall(SYS_brk, odd) == odd ? "yes" : "no");
    base[TOTAL + 100] = 1;  /* the page holding the unaligned break is usable */

    /* shrink by half, then back to the start */
    intptr_t r = my_sbrk(-(intptr_t)(TOTAL / 2 + 123));
    printf("shrink to 32 MiB: %s, break - initial = %lu MiB\n", r == -1 ? "failed" : "ok",
           (unsigned long)((brk_now() - start) >> 20));
    printf("lower half intact: %s\n", base[0] == 0 && base[PAGE * 255] == 255 ? "yes" : "no");
    /* growing again gives zeroed memory where the old pages were released */
    my_sbrk(STEP);
    printf("regrown page reads zero: %s\n", base[TOTAL / 2 + PAGE] == 0 ? "yes" : "no");
    r = my_sbrk(-(intptr_t)(TOTAL / 2 + STEP));
    printf("shrink to start: %s, break == initial: %s\n", r == -1 ? "failed" : "ok",
           brk_now() == start ? "yes" : "no");
    /* a break below the initial one is refused: brk returns the current break */
    printf("brk(below start) refused: %s\n",
           (uintptr_t)syscall(SYS_brk, start - 16 * PAGE) == start ? "yes" : "no");
    /* an absurd break is refused too */
    printf("brk(huge) refused: %s\n",
           (uintptr_t)syscall(SYS_brk, start + (1UL << 46)) == start ? "yes" : "no");
    return 0;
}
