/* Fixed mappings at the bottom of the address space, as a process without
 * CAP_SYS_RAWIO makes them: below vm.mmap_min_addr EPERM, above it allowed; a hint
 * there is not honoured. The payload drops root first (setuid nobody).
 *   mmap_low MIN   (MIN: the host's vm.mmap_min_addr) */
#define _GNU_SOURCE
#include <stdlib.h>
#include <sys/mman.h>
#include <unistd.h>
#include "payload.h"

int main(int argc, char **argv)
{
    unsigned long min = argc > 1 ? strtoul(argv[1], NULL, 0) : 65536;
    if (getuid() == 0 && setuid(65534) != 0)
        return 1;
    unsigned long addrs[] = {0, min > 4096 ? min - 4096 : 0, min, min + 4096, 0x10000};
    for (int i = 0; i < 5; i++) {
        void *p = mmap((void *)addrs[i], 4096, PROT_READ | PROT_WRITE,
                       MAP_PRIVATE | MAP_ANONYMOUS | MAP_FIXED, -1, 0);
        printf("MAP_FIXED at min%+ld: %s\n", (long)(addrs[i] - min),
               p == MAP_FAILED ? errno_name(errno) : "mapped");
        if (p != MAP_FAILED)
            munmap(p, 4096);
        p = mmap((void *)addrs[i], 4096, PROT_READ, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
        printf("  as a hint: %s\n", p == MAP_FAILED ? errno_name(errno)
               : p == (void *)addrs[i] ? "at the hint" : "elsewhere");
    }
    void *p = mmap(NULL, 8192, PROT_READ, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
    void *q = mremap(p, 4096, 4096, MREMAP_MAYMOVE | MREMAP_FIXED, (void *)0);
    printf("mremap to 0: %s\n", q == MAP_FAILED ? errno_name(errno) : "moved");
    return 0;
}
