/* Where things are: the stack, an anonymous mapping, the heap (brk), the program's own
 * code, the vDSO, one address per line.
 *   aslr               print them
 *   aslr norandom      personality(ADDR_NO_RANDOMIZE), then exec itself to print them */
#include <stdint.h>
#include <stdio.h>
#include <string.h>
#include <sys/auxv.h>
#include <sys/mman.h>
#include <sys/personality.h>
#include <unistd.h>

int main(int argc, char **argv)
{
    if (argc > 1 && !strcmp(argv[1], "norandom")) {
        personality(ADDR_NO_RANDOMIZE);
        execl("/proc/self/exe", argv[0], (char *)NULL);
        return 127;
    }
    int local;
    void *anon = mmap(NULL, 4096, PROT_READ, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
    printf("stack %#lx\n", (unsigned long)(uintptr_t)&local & ~0xffful);
    printf("mmap %#lx\n", (unsigned long)(uintptr_t)anon);
    printf("brk %#lx\n", (unsigned long)(uintptr_t)sbrk(0) & ~0xffful);
    printf("code %#lx\n", (unsigned long)(uintptr_t)&main & ~0xffful);
    printf("vdso %#lx\n", getauxval(AT_SYSINFO_EHDR));
    printf("personality %#x\n", personality(0xffffffff));
    return 0;
}
