/* malloc 512 MiB, write one byte in every 4 KiB page, read them all back, free. */
#include <stdint.h>

#include "payload.h"

#define SIZE (512UL << 20)
#define PAGE 4096UL

static unsigned char pattern(unsigned long page)
{
    return (unsigned char)(page * 31 + 7);
}

int main(void)
{
    unsigned char *p = malloc(SIZE);
    if (!p)
        die("malloc");
    printf("malloc(512 MiB): ok\n");
    uint64_t written = 0;
    for (unsigned long off = 0; off < SIZE; off += PAGE) {
        p[off] = pattern(off / PAGE);
        written += p[off];
    }
    p[SIZE - 1] = 0x5a;  /* the very last byte too */
    uint64_t read_back = 0;
    unsigned long bad = 0;
    for (unsigned long off = 0; off < SIZE; off += PAGE) {
        read_back += p[off];
        bad += p[off] != pattern(off / PAGE);
    }
    printf("pages touched: %lu\n", SIZE / PAGE);
    printf("checksum: %llu\n", (unsigned long long)read_back);
    printf("checksum matches: %s\n", read_back == written ? "yes" : "no");
    printf("wrong pages: %lu, last byte ok: %s\n", bad, p[SIZE - 1] == 0x5a ? "yes" : "no");
    free(p);
    /* and the allocator still works afterwards */
    char *q = malloc(100);
    strcpy(q, "small allocation after free");
    printf("%s\n", q);
    free(q);
    return 0;
}
