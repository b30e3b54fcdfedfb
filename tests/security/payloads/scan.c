/* The payload's whole address space, scanned for anything that is not its own:
 * scan lower REVERSED-NEEDLE...   or   scan upper
 *
 * lower: finds every mapped range in [0, 2^47 - 4096) with two questions the kernel
 *   answers for a range at once - mincore() succeeds only if all of it is mapped, and an
 *   mmap(MAP_FIXED_NOREPLACE) of it fails EEXIST unless none of it is - splitting the range
 *   in two while the answer is "some", down to single pages (whose readability is then
 *   probed with a SIGSEGV handler). Then reads every readable page of every range looking
 *   for the needles (given reversed, so that argv does not hold them). Prints the
 *   addresses the payload knows are its own ("own WHAT ADDR"), each range found
 *   ("region LO-HI"), each needle found ("hit NEEDLE at ADDR") and its own
 *   /proc/self/maps ("maps LINE").
 * upper: probes the kernel half where a VMM might have left something readable: the
 *   pages at 0xffffff8000000000 (km's GDT, IDT, TSS and stub) and what sgdt/sidt point at
 *   (natively every one of them faults); then reads the [vvar], [vvar_vclock] and [vdso]
 *   pages one by one (some fault natively: the payload must see the same).
 */
#include "escape.h"  /* first: it defines _GNU_SOURCE */

#include <setjmp.h>
#include <signal.h>
#include <sys/mman.h>

#ifndef MAP_FIXED_NOREPLACE
#define MAP_FIXED_NOREPLACE 0x100000
#endif

#define PAGE 4096UL
#define USER_TOP 0x7ffffffff000UL
#define MAX_NEEDLES 16

struct range { uintptr_t lo, hi; };
static struct range found[8192];
static int nfound;
static unsigned long probes, odd_pages;
static unsigned char vec[1 << 20];  /* mincore's answer: ranges of up to 4 GiB */
static char needles[MAX_NEEDLES][512];
static int nneedles;
static sigjmp_buf fault_jump;
#define MAX_HITS 64
static struct hit { int needle; uintptr_t at; } hits[MAX_HITS];
static int nhits;
static char maps[1 << 16];

/* /proc/self/maps into maps[] (NUL-terminated); its length, or -1. */
static long read_maps(void)
{
    int fd = open("/proc/self/maps", O_RDONLY);
    long n = 0, r;
    if (fd < 0)
        return maps[0] = 0, -1;
    while (n < (long)sizeof maps - 1 && (r = read(fd, maps + n, sizeof maps - 1 - n)) > 0)
        n += r;
    close(fd);
    maps[n] = 0;
    return n;
}

static void on_fault(int sig)
{
    (void)sig;
    siglongjmp(fault_jump, 1);
}

/* Whether a byte can be read (a fault is caught and answered "no"). */
static int readable(uintptr_t addr)
{
    if (sigsetjmp(fault_jump, 1))
        return 0;
    (void)*(volatile unsigned char *)addr;
    return 1;
}

static void add(uintptr_t lo, uintptr_t hi)
{
    if (nfound && found[nfound - 1].hi == lo) {
        found[nfound - 1].hi = hi;
        return;
    }
    if (nfound == (int)(sizeof found / sizeof found[0])) {
        printf("FATAL too many ranges\n");
        exit(3);
    }
    found[nfound++] = (struct range){lo, hi};
}

/* 1: all of [lo, hi) mapped; 0: not (or too big to ask). */
static int all_mapped(uintptr_t lo, uintptr_t hi)
{
    if ((hi - lo) / PAGE > sizeof vec)
        return 0;
    probes++;
    return mincore((void *)lo, hi - lo, vec) == 0;
}

/* 1: nothing of [lo, hi) mapped; 0: something is, or the kernel would not say.
 *
 * A writable shared mapping of a read-only descriptor, MAP_FIXED_NOREPLACE: the kernel
 * answers EEXIST if anything overlaps the range, and only then finds the descriptor
 * cannot be written (EACCES), so no mapping is ever made, whatever the size (reserving
 * the range with PROT_NONE would prove the same, but costs a VMM time in proportion). */
static int readonly_fd = -1;

static int none_mapped(uintptr_t lo, uintptr_t hi)
{
    if (lo < 0x10000)  /* below mmap_min_addr nothing may be mapped: EPERM, not EEXIST */
        return 0;
    probes++;
    void *p = mmap((void *)lo, hi - lo, PROT_READ | PROT_WRITE,
                   MAP_SHARED | MAP_FIXED_NOREPLACE, readonly_fd, 0);
    if (p == MAP_FAILED)
        return errno != EEXIST;
    munmap(p, hi - lo);  /* mapped after all: the range was free */
    if ((uintptr_t)p != lo) {  /* the flag was taken for a hint: the scan cannot work */
        printf("FATAL MAP_FIXED_NOREPLACE placed %#lx-%#lx elsewhere\n", lo, hi);
        exit(3);
    }
    return 1;
}

static void scan(uintptr_t lo, uintptr_t hi)
{
    if (all_mapped(lo, hi)) {
        add(lo, hi);
        return;
    }
    if (none_mapped(lo, hi))
        return;
    if (hi - lo == PAGE) {
        /* Neither answer: below mmap_min_addr, or something the kernel will not map
         * over. Anything readable there counts as mapped. */
        if (readable(lo)) {
            add(lo, hi);
            if (lo >= 0x10000)
                odd_pages++;
        }
        return;
    }
    uintptr_t mid = lo + ((hi - lo) / 2 & ~(PAGE - 1));
    scan(lo, mid);
    scan(mid, hi);
}

static void find_needles(uintptr_t lo, uintptr_t hi)
{
    /* Readable runs of pages, each searched as one block (needles may cross pages). */
    for (uintptr_t run = lo; run < hi; ) {
        if (!readable(run)) {
            run += PAGE;
            continue;
        }
        uintptr_t end = run + PAGE;
        while (end < hi && readable(end))
            end += PAGE;
        for (int n = 0; n < nneedles; n++) {
            size_t len = strlen(needles[n]);
            const char *at = (const char *)run;
            while ((at = memmem(at, (const char *)end - at, needles[n], len))) {
                const char *mine = (const char *)needles;
                if (!(at >= mine && at < mine + sizeof needles)  /* not the needle itself */
                    && nhits < MAX_HITS)
                    hits[nhits++] = (struct hit){n, (uintptr_t)at};
                at++;
            }
        }
        run = end;
    }
}

static void lower(int argc, char **argv)
{
    for (int i = 2; i < argc && nneedles < MAX_NEEDLES; i++) {
        size_t len = strlen(argv[i]);
        for (size_t j = 0; j < len && j < sizeof needles[0] - 1; j++)
            needles[nneedles][j] = argv[i][len - 1 - j];
        nneedles++;
    }
    /* Things of its own the scan must find: a mapping, the heap, its data and stack. */
    static int in_bss;
    static int in_data = 1;
    int on_stack = 0;
    char *heap = malloc(100);
    void *own = mmap(NULL, 5 * PAGE, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS,
                     -1, 0);
    if (own == MAP_FAILED || !heap)
        die("mmap");
    memset(own, 'x', 5 * PAGE);

    readonly_fd = open("/prog", O_RDONLY);
    if (readonly_fd < 0)
        die("open /prog");
    scan(0, USER_TOP);

    /* The host kernel's time data ([vvar], [vvar_vclock]) is the same in every process
     * and not km's; reading some of it faults even natively. Not searched. The maps
     * text is wiped before the search and printed after it: it may name things the
     * needles match, and the search is for what km put in the payload's memory. */
    struct range skip[8];
    int nskip = 0;
    long n = read_maps();
    for (char *line = maps; n > 0 && *line; ) {
        char *end = strchr(line, '\n');
        if (!end)
            break;
        *end = 0;
        if (strstr(line, "[vvar") && nskip < 8) {
            char *dash;
            uintptr_t lo = strtoul(line, &dash, 16), hi = strtoul(dash + 1, NULL, 16);
            skip[nskip++] = (struct range){lo, hi};
        }
        line = end + 1;
    }
    memset(maps, 0, sizeof maps);
    for (int i = 0; i < nfound; i++) {
        if (found[i].hi - found[i].lo > (256UL << 20)) {
            printf("too big to read %#lx-%#lx\n", found[i].lo, found[i].hi);
            continue;
        }
        for (uintptr_t lo = found[i].lo; lo < found[i].hi; ) {
            uintptr_t hi = found[i].hi;
            for (int k = 0; k < nskip; k++) {
                if (skip[k].lo <= lo && lo < skip[k].hi)
                    lo = skip[k].hi;
                if (lo < skip[k].lo && skip[k].lo < hi)
                    hi = skip[k].lo;
            }
            if (lo < hi)
                find_needles(lo, hi);
            lo = hi;
        }
    }

    printf("own text %#lx\n", (uintptr_t)&lower);
    printf("own data %#lx\n", (uintptr_t)&in_data);
    printf("own bss %#lx\n", (uintptr_t)&in_bss);
    printf("own stack %#lx\n", (uintptr_t)&on_stack);
    printf("own heap %#lx\n", (uintptr_t)heap);
    printf("own mmap %#lx-%#lx\n", (uintptr_t)own, (uintptr_t)own + 5 * PAGE);
    printf("own brk %#lx\n", (uintptr_t)sbrk(0));  /* the heap ends here */
    for (int i = 0; i < nfound; i++)
        printf("region %#lx-%#lx\n", found[i].lo, found[i].hi);
    for (int i = 0; i < nhits; i++)
        printf("hit %d at %#lx\n", hits[i].needle, hits[i].at);
    if (read_maps() < 0)
        printf("maps: %s\n", ename(errno));
    for (char *line = strtok(maps, "\n"); line; line = strtok(NULL, "\n"))
        printf("maps %s\n", line);
    printf("summary: %d ranges, %lu questions, %lu pages neither mapped nor free\n",
           nfound, probes, odd_pages);
}

#define KERNEL_BASE 0xffffff8000000000UL

static void upper(void)
{
    struct __attribute__((packed)) { uint16_t limit; uint64_t base; } gdt = {0}, idt = {0};
    int readable_pages = 0;
    for (int i = 0; i < 64; i++)
        readable_pages += readable(KERNEL_BASE + i * PAGE);
    printf("pages readable at 0xffffff8000000000 (64 probed): %d\n", readable_pages);
    /* sgdt/sidt may themselves fault (UMIP); what they name must not be readable. */
    int have_gdt = 0, have_idt = 0;
    if (!sigsetjmp(fault_jump, 1)) {
        __asm__ volatile("sgdt %0" : "=m"(gdt));
        have_gdt = 1;
    }
    if (!sigsetjmp(fault_jump, 1)) {
        __asm__ volatile("sidt %0" : "=m"(idt));
        have_idt = 1;
    }
    printf("gdt readable: %s\n", have_gdt && gdt.base && readable(gdt.base) ? "YES" : "no");
    printf("idt readable: %s\n", have_idt && idt.base && readable(idt.base) ? "YES" : "no");
    /* The vDSO's data pages: readable, or faulting, page by page as natively. */
    if (read_maps() < 0) {
        printf("maps: %s\n", ename(errno));
        return;
    }
    for (char *line = strtok(maps, "\n"); line; line = strtok(NULL, "\n")) {
        unsigned long lo, hi;
        const char *name = strrchr(line, ' ') + 1;
        if (name[0] != '[' || strcmp(name, "[vsyscall]") == 0 || strcmp(name, "[stack]") == 0
            || strcmp(name, "[heap]") == 0 || sscanf(line, "%lx-%lx", &lo, &hi) != 2)
            continue;
        int ok = 0;
        for (unsigned long a = lo; a < hi; a += PAGE)
            ok += readable(a);
        printf("%s pages readable: %d of %lu\n", name, ok, (hi - lo) / PAGE);
    }
}

int main(int argc, char **argv)
{
    line_buffered();
    struct sigaction sa;
    memset(&sa, 0, sizeof sa);
    sa.sa_handler = on_fault;
    sigemptyset(&sa.sa_mask);
    if (sigaction(SIGSEGV, &sa, NULL) < 0 || sigaction(SIGBUS, &sa, NULL) < 0)
        die("sigaction");
    if (argc >= 2 && !strcmp(argv[1], "lower"))
        lower(argc, argv);
    else if (argc == 2 && !strcmp(argv[1], "upper"))
        upper();
    else
        return 2;
    return 0;
}
