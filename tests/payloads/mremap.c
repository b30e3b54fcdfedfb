/* mremap: grow a mapping (moving it if need be) keeping its contents, shrink it in place,
 * move it to a chosen address with MREMAP_FIXED, and the usual error cases. */
#define _GNU_SOURCE
#include <stdint.h>
#include <sys/mman.h>
#include <unistd.h>

#include "payload.h"

#define PAGE 4096UL

static void fill(unsigned char *p, unsigned long pages, unsigned char seed)
{
    for (unsigned long i = 0; i < pages; i++)
        memset(p + i * PAGE, (unsigned char)(seed + i), PAGE);
}

static int check(const unsigned char *p, unsigned long pages, unsigned char seed)
{
    for (unsigned long i = 0; i < pages; i++)
        for (unsigned long j = 0; j < PAGE; j += 512)
            if (p[i * PAGE + j] != (unsigned char)(seed + i))
                return 0;
    return 1;
}

/* Whether [p, p+len) is mapped, without touching it: msync fails with ENOMEM on holes. */
static const char *mapped(void *p, unsigned long len)
{
    return msync(p, len, MS_ASYNC) == 0 ? "mapped" : errno == ENOMEM ? "unmapped" : "?";
}

int main(void)
{
    /* 4 pages, and right after them a 1-page obstacle, carved out of a reservation */
    unsigned char *area = mmap(NULL, 16 * PAGE, PROT_NONE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
    if (area == MAP_FAILED)
        die("mmap reservation");
    munmap(area + 5 * PAGE, 11 * PAGE);
    unsigned char *p = mmap(area, 4 * PAGE, PROT_READ | PROT_WRITE,
                            MAP_PRIVATE | MAP_ANONYMOUS | MAP_FIXED, -1, 0);
    unsigned char *obstacle = mmap(area + 4 * PAGE, PAGE, PROT_READ,
                                   MAP_PRIVATE | MAP_ANONYMOUS | MAP_FIXED, -1, 0);
    if (p != area || obstacle != area + 4 * PAGE)
        die("mmap MAP_FIXED");
    fill(p, 4, 10);

    /* grow 4 -> 256 pages: the obstacle forces a move */
    errno = 0;
    void *r = mremap(p, 4 * PAGE, 256 * PAGE, 0);
    printf("grow without MREMAP_MAYMOVE: %s\n", r == MAP_FAILED ? errno_name(errno) : "ok");
    unsigned char *q = mremap(p, 4 * PAGE, 256 * PAGE, MREMAP_MAYMOVE);
    if (q == MAP_FAILED)
        die("mremap grow");
    printf("grow with MREMAP_MAYMOVE: ok, moved: %s\n", q != p ? "yes" : "no");
    printf("old range now: %s\n", q != p ? mapped(p, 4 * PAGE) : "(same)");
    printf("contents kept: %s\n", check(q, 4, 10) ? "yes" : "no");
    unsigned long zero = 0;
    for (unsigned long off = 4 * PAGE; off < 256 * PAGE; off += PAGE)
        zero += q[off] == 0 && q[off + PAGE - 1] == 0;
    printf("new pages zero-filled: %lu of 252\n", zero);
    fill(q + 4 * PAGE, 252, 14);
    printf("whole mapping writable and consistent: %s\n", check(q, 256, 10) ? "yes" : "no");
    munmap(obstacle, PAGE);

    /* shrink 256 -> 8 pages: stays in place, the tail goes away */
    unsigned char *s = mremap(q, 256 * PAGE, 8 * PAGE, 0);
    printf("shrink in place: %s\n", s == q ? "yes" : s == MAP_FAILED ? errno_name(errno) : "moved");
    printf("contents kept: %s\n", check(q, 8, 10) ? "yes" : "no");
    printf("tail: %s\n", mapped(q + 8 * PAGE, 248 * PAGE));

    /* grow in place when the space after it is free */
    munmap(q + 8 * PAGE, 8 * PAGE);
    s = mremap(q, 8 * PAGE, 16 * PAGE, 0);
    printf("grow in place into free space: %s\n",
           s == q ? "yes" : s == MAP_FAILED ? errno_name(errno) : "moved");
    if (s == q)
        printf("grown pages zero: %s\n", q[12 * PAGE] == 0 ? "yes" : "no");

    /* MREMAP_FIXED: move to an address reserved beforehand */
    unsigned char *target = mmap(NULL, 32 * PAGE, PROT_NONE,
                                 MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
    unsigned char *f = mremap(q, 8 * PAGE, 8 * PAGE, MREMAP_MAYMOVE | MREMAP_FIXED,
                              target + 8 * PAGE);
    printf("MREMAP_FIXED lands at the target: %s\n", f == target + 8 * PAGE ? "yes" : "no");
    if (f != MAP_FAILED) {
        printf("contents kept: %s\n", check(f, 8, 10) ? "yes" : "no");
        printf("source range now: %s\n", mapped(q, 8 * PAGE));
        f[0] = 99;  /* writable: the moved pages keep their protection */
        printf("write after move: %s\n", f[0] == 99 ? "ok" : "lost");
        printf("reserved pages around it still there: %s\n", mapped(target, 8 * PAGE));
    }

    /* MREMAP_FIXED that also grows */
    unsigned char *g = mremap(f, 8 * PAGE, 12 * PAGE, MREMAP_MAYMOVE | MREMAP_FIXED,
                              target + 20 * PAGE);
    printf("MREMAP_FIXED growing: %s\n",
           g == target + 20 * PAGE ? "ok" : g == MAP_FAILED ? errno_name(errno) : "elsewhere");
    if (g != MAP_FAILED)
        printf("contents kept: %s, tail zero: %s\n", g[0] == 99 && check(g + PAGE, 7, 11)
               ? "yes" : "no", g[10 * PAGE] == 0 ? "yes" : "no");

    /* errors */
    errno = 0;
    r = mremap(g + 1, PAGE, 2 * PAGE, MREMAP_MAYMOVE);
    printf("unaligned old address: %s\n", r == MAP_FAILED ? errno_name(errno) : "ok");
    r = mremap(g, PAGE, 2 * PAGE, MREMAP_FIXED, target);
    printf("MREMAP_FIXED without MREMAP_MAYMOVE: %s\n",
           r == MAP_FAILED ? errno_name(errno) : "ok");
    r = mremap(g, 0, PAGE, MREMAP_MAYMOVE);
    printf("old size 0 of a private mapping: %s\n", r == MAP_FAILED ? errno_name(errno) : "ok");
    r = mremap(g, PAGE, 0, MREMAP_MAYMOVE);
    printf("new size 0: %s\n", r == MAP_FAILED ? errno_name(errno) : "ok");
    unsigned char *hole = mmap(NULL, PAGE, PROT_READ, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
    munmap(hole, PAGE);
    r = mremap(hole, PAGE, 2 * PAGE, MREMAP_MAYMOVE);
    printf("unmapped old address: %s\n", r == MAP_FAILED ? errno_name(errno) : "ok");
    r = mremap(g, 12 * PAGE, 6 * PAGE, MREMAP_MAYMOVE | MREMAP_FIXED, g + 3 * PAGE);
    printf("overlapping MREMAP_FIXED: %s\n", r == MAP_FAILED ? errno_name(errno) : "ok");
    printf("munmap everything: %d\n", munmap(target, 32 * PAGE));
    return 0;
}
