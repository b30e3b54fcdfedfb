/* /proc from inside the root: proc MODE HOSTDIR.
 *
 * modes:
 *   root     paths through /proc/self/root, /proc/1/root, /proc/self/cwd, /proc/self/fd/N
 *            and /proc/thread-self towards the host canary; readlink of those links
 *   files    maps, smaps, numa_maps, task/TID/maps, environ, cmdline: each must describe
 *            this process (or be refused), never the monitor running it
 *   fds      the descriptors the payload can see or reach: /proc/self/fd, poll() over
 *            the whole RLIMIT_NOFILE range, fcntl() beyond it
 *   mem      /proc/self/mem and its aliases, process_vm_readv/writev: refused, or the
 *            payload's own memory. Prints "ready", then reads "ADDRESS PERMS" lines from
 *            stdin until EOF: addresses of the monitor's own mappings (found by the test),
 *            which must not be readable through any of them. The test made "memlink",
 *            a symlink to /proc/self/mem, in the working directory.
 */
#include "escape.h"  /* first: it defines _GNU_SOURCE */

#include <dirent.h>
#include <poll.h>
#include <sys/mman.h>
#include <sys/resource.h>
#include <sys/uio.h>

extern char **environ;
static const char *H;
static int g_argc;
static char **g_argv;

/* Words the test finds by their address: the payload's own data. */
static volatile uint64_t marker = 0x6b6d2d6d61726b31ULL;
static volatile uint64_t target = 0x1111111111111111ULL;

static long slurp(const char *path, char *buf, long size)
{
    int fd = open(path, O_RDONLY);
    if (fd < 0)
        return -1;
    long n = 0, r;
    while (n < size - 1 && (r = read(fd, buf + n, size - 1 - n)) > 0)
        n += r;
    close(fd);
    buf[n] = 0;
    return n;
}

/* ---- root ---------------------------------------------------------------------------- */

static void say_readlink(const char *path)
{
    char buf[4096];
    long n = readlink(path, buf, sizeof buf - 1);
    if (n < 0) {
        printf("readlink %s: %s\n", path, ename(errno));
        return;
    }
    buf[n] = 0;
    printf("readlink %s: OK %s\n", path, buf);
}

/* An attempt to open a path: what it read, or which directory it opened. */
static void say_opened(const char *what, int fd)
{
    struct stat st, root, decoy;
    if (fd < 0 || fstat(fd, &st) < 0 || !S_ISDIR(st.st_mode)) {
        say_contents(what, fd);
        return;
    }
    int is_root = stat("/", &root) == 0 && root.st_dev == st.st_dev && root.st_ino == st.st_ino;
    int is_decoy = stat(H, &decoy) == 0 && decoy.st_dev == st.st_dev
                   && decoy.st_ino == st.st_ino;
    printf("%s: OK a directory: %s\n", what, is_root ? "the root" : is_decoy
           ? "the decoy HOSTDIR inside the root" : "another one");
    close(fd);
}

static void mode_root(void)
{
    int root = open("/", O_RDONLY | O_DIRECTORY);
    int decoy = open(fmt("%s", H), O_RDONLY | O_DIRECTORY);  /* the decoy in the root */
    if (root < 0 || decoy < 0)
        die("open");
    if (chdir(H) < 0)
        die("chdir");
    /* Each attempt: a label (without the test's paths) and the path. */
    static char paths[12][8192];
    int pid = getpid();
    snprintf(paths[0], sizeof paths[0], "/proc/self/root/../host/canary");
    snprintf(paths[1], sizeof paths[1], "/proc/self/root%s/canary", H);
    snprintf(paths[2], sizeof paths[2], "/proc/self/root/%s%s/canary", UP, H);
    snprintf(paths[3], sizeof paths[3], "/proc/1/root%s/canary", H);
    snprintf(paths[4], sizeof paths[4], "/proc/1/cwd%s/canary", H);
    snprintf(paths[5], sizeof paths[5], "/proc/%d/root%s/canary", pid, H);
    snprintf(paths[6], sizeof paths[6], "/proc/thread-self/root%s/canary", H);
    snprintf(paths[7], sizeof paths[7], "/proc/self/cwd/canary");
    snprintf(paths[8], sizeof paths[8], "/proc/self/cwd/../host/canary");
    snprintf(paths[9], sizeof paths[9], "/proc/self/fd/%d/../host/canary", root);
    snprintf(paths[10], sizeof paths[10], "/proc/self/fd/%d/canary", decoy);
    snprintf(paths[11], sizeof paths[11], "/proc/self/fd/%d/../host/canary", decoy);
    static const char *labels[12] = {
        "/proc/self/root/../host/canary", "/proc/self/root/HOSTDIR/canary",
        "/proc/self/root/UP/HOSTDIR/canary", "/proc/1/root/HOSTDIR/canary",
        "/proc/1/cwd/HOSTDIR/canary", "/proc/PID/root/HOSTDIR/canary",
        "/proc/thread-self/root/HOSTDIR/canary", "/proc/self/cwd/canary",
        "/proc/self/cwd/../host/canary", "/proc/self/fd/ROOT/../host/canary",
        "/proc/self/fd/DECOY/canary", "/proc/self/fd/DECOY/../host/canary",
    };
    for (int i = 0; i < 12; i++)
        say_opened(fmt("open %s", labels[i]), open(paths[i], O_RDONLY));
    /* Links followed as directories, then a name that exists only on the host. */
    say_opened("open /proc/1/root/HOSTDIR/canarydir/file",
                 open(fmt("/proc/1/root%s/canarydir/file", H), O_RDONLY));
    say("opendir /proc/1/root", open("/proc/1/root", O_RDONLY | O_DIRECTORY));
    say_readlink("/proc/self/root");
    say_readlink("/proc/self/cwd");
    say_readlink("/proc/1/root");
}

/* ---- files ----------------------------------------------------------------------------- */

/* Whether a maps-like text describes this process: it has lines covering our text, data
 * and stack, and names nothing of a Python program (an interpreter, shared libraries). */
static const char *describe_maps(const char *text)
{
    uintptr_t want[3] = {(uintptr_t)&mode_root, (uintptr_t)&marker, (uintptr_t)&text};
    int found[3] = {0, 0, 0};
    for (const char *line = text; *line; ) {
        unsigned long lo, hi;
        if (sscanf(line, "%lx-%lx", &lo, &hi) == 2)
            for (int i = 0; i < 3; i++)
                if (want[i] >= lo && want[i] < hi)
                    found[i] = 1;
        const char *nl = strchr(line, '\n');
        if (!nl)
            break;
        line = nl + 1;
    }
    if (strstr(text, "python") || strstr(text, "kontain") || strstr(text, ".so"))
        return "NOT the payload's (names the monitor's files)";
    if (!found[0] || !found[1] || !found[2])
        return "NOT the payload's (misses its text, data or stack)";
    return "describes the payload";
}

static void check_maps(const char *label, const char *path)
{
    static char buf[1 << 20];
    if (slurp(path, buf, sizeof buf) < 0)
        printf("%s: refused %s\n", label, ename(errno));
    else
        printf("%s: %s\n", label, describe_maps(buf));
}

static void check_list(const char *label, const char *path, char **expected)
{
    static char buf[1 << 16];
    long n = slurp(path, buf, sizeof buf);
    if (n < 0) {
        printf("%s: refused %s\n", label, ename(errno));
        return;
    }
    long at = 0;
    int same = 1, i = 0;
    for (; expected[i] && same; i++) {
        long len = strlen(expected[i]) + 1;
        same = at + len <= n && !memcmp(buf + at, expected[i], len);
        at += len;
    }
    same = same && at == n;
    int kontain = memmem(buf, n, "kontain", 7) || memmem(buf, n, "python", 6);
    printf("%s: %s\n", label, same ? "describes the payload"
           : kontain ? "NOT the payload's (names the monitor)" : "NOT the payload's");
}

static void mode_files(void)
{
    int pid = getpid(), tid = syscall(SYS_gettid);
    check_maps("maps", "/proc/self/maps");
    check_maps("maps of PID", fmt("/proc/%d/maps", pid));
    check_maps("thread-self maps", "/proc/thread-self/maps");
    check_maps("smaps", "/proc/self/smaps");
    check_maps("task/TID/maps", fmt("/proc/self/task/%d/maps", tid));
    check_maps("task/TID/smaps", fmt("/proc/self/task/%d/smaps", tid));
    /* Every thread the task directory lists must be ours (we have one). */
    DIR *d = opendir("/proc/self/task");
    if (!d) {
        printf("task directory: refused %s\n", ename(errno));
    } else {
        int others = 0, mine = 0;
        struct dirent *e;
        while ((e = readdir(d)))
            if (e->d_name[0] != '.') {
                if (atoi(e->d_name) == tid)
                    mine++;
                else
                    others++;
                check_maps("task/* maps", fmt("/proc/self/task/%s/maps", e->d_name));
            }
        closedir(d);
        printf("task directory: %d of ours, %d others\n", mine, others);
    }
    check_list("environ", "/proc/self/environ", environ);
    check_list("task/TID/environ", fmt("/proc/self/task/%d/environ", tid), environ);
    check_list("cmdline", "/proc/self/cmdline", g_argv);
    (void)g_argc;
}

/* ---- fds ------------------------------------------------------------------------------- */

static void mode_fds(void)
{
    struct rlimit lim;
    if (getrlimit(RLIMIT_NOFILE, &lim) < 0)
        die("getrlimit");
    /* /proc/self/fd, without the directory's own descriptor */
    DIR *d = opendir("/proc/self/fd");
    if (!d) {
        printf("/proc/self/fd lists: refused %s\n", ename(errno));
    } else {
        char list[4096] = "";
        struct dirent *e;
        while ((e = readdir(d)))
            if (e->d_name[0] != '.' && atoi(e->d_name) != dirfd(d))
                snprintf(list + strlen(list), sizeof list - strlen(list), " %s", e->d_name);
        closedir(d);
        printf("/proc/self/fd lists:%s\n", list);
    }
    /* poll() says POLLNVAL for a descriptor that is not open: ask about all of them */
    static struct pollfd pfd[1024];
    char open_fds[4096] = "";
    rlim_t limit = lim.rlim_cur > (1 << 20) ? (1 << 20) : lim.rlim_cur;
    for (rlim_t base = 0; base < limit; base += 1024) {
        int n = limit - base < 1024 ? limit - base : 1024;
        for (int i = 0; i < n; i++)
            pfd[i] = (struct pollfd){.fd = base + i, .events = POLLIN};
        if (poll(pfd, n, 0) < 0)
            die("poll");
        for (int i = 0; i < n; i++)
            if (!(pfd[i].revents & POLLNVAL))
                snprintf(open_fds + strlen(open_fds), sizeof open_fds - strlen(open_fds),
                         " %d", (int)(base + i));
    }
    printf("poll finds open:%s\n", open_fds);
    /* Beyond the hard limit nothing may answer (that is where km keeps its own) */
    int answering = 0, opened = 0;
    for (long fd = lim.rlim_max; fd < (long)lim.rlim_max + 2048; fd++) {
        if (fcntl(fd, F_GETFD) >= 0)
            answering++;
        struct stat st;
        if (fstat(fd, &st) >= 0)
            answering++;
    }
    for (long fd = lim.rlim_max; fd < (long)lim.rlim_max + 64; fd++) {
        int got = open(fmt("/proc/self/fd/%ld", fd), O_RDONLY);
        if (got >= 0) {
            opened++;
            close(got);
        }
    }
    printf("descriptors beyond the hard limit answering fcntl/fstat: %d\n", answering);
    printf("descriptors beyond the hard limit opened by /proc/self/fd/N: %d\n", opened);
}

/* ---- mem ------------------------------------------------------------------------------- */

#define KERNEL_BASE 0xffffff8000000000ULL

struct hostaddr { uint64_t addr; int writable_mapping; };
static struct hostaddr km_addrs[256];
static int n_km_addrs;

/* Whether the payload itself has the page at addr mapped (mincore fails ENOMEM if not). */
static int guest_mapped(uint64_t addr)
{
    unsigned char vec;
    return mincore((void *)(uintptr_t)(addr & ~4095ULL), 4096, &vec) == 0;
}

typedef long (*rw_fn)(void *ctx, int write, void *buf, size_t n, uint64_t addr);

static long rw_fd(void *ctx, int write, void *buf, size_t n, uint64_t addr)
{
    int fd = *(int *)ctx;
    return write ? pwrite(fd, buf, n, (off_t)addr) : pread(fd, buf, n, (off_t)addr);
}

static long rw_vm(void *ctx, int write, void *buf, size_t n, uint64_t addr)
{
    (void)ctx;
    struct iovec local = {buf, n}, remote = {(void *)(uintptr_t)addr, n};
    return write ? syscall(SYS_process_vm_writev, getpid(), &local, 1, &remote, 1, 0)
                 : syscall(SYS_process_vm_readv, getpid(), &local, 1, &remote, 1, 0);
}

/* One line: what the interface gives at our own address, the kernel half and km's. */
static void check_mem(const char *label, rw_fn rw, void *ctx)
{
    uint64_t v = 0;
    long n = rw(ctx, 0, &v, 8, (uintptr_t)&marker);
    if (n < 0 && (errno == ENOSYS || errno == EPERM || errno == EACCES)) {
        printf("%s: refused %s\n", label, ename(errno));
        return;
    }
    const char *own_read = n == 8 && v == marker ? "yes" : n < 0 ? ename(errno) : "NO";
    const char *own_write = "skipped";
    if (n == 8 && v == marker) {  /* only write where we know it is our own memory */
        uint64_t nv = 0x2222222222222222ULL;
        long w = rw(ctx, 1, &nv, 8, (uintptr_t)&target);
        own_write = w == 8 && target == nv ? "yes" : w < 0 ? ename(errno) : "NO";
        target = 0x1111111111111111ULL;
    }
    unsigned char kbuf[16];
    long k = rw(ctx, 0, kbuf, sizeof kbuf, KERNEL_BASE);
    const char *kernel = k < 0 ? ename(errno) : "READABLE";
    if (k > 0 && rw(ctx, 1, kbuf, k, KERNEL_BASE) > 0)  /* the same bytes back */
        kernel = "WRITABLE";
    int tried = 0, readable = 0, writable = 0;
    for (int i = 0; i < n_km_addrs; i++) {
        if (guest_mapped(km_addrs[i].addr))
            continue;  /* the payload's own page there: that is its memory, not km's */
        tried++;
        unsigned char buf[16];
        long r = rw(ctx, 0, buf, sizeof buf, km_addrs[i].addr);
        if (r <= 0)
            continue;
        readable++;
        /* Write back what was read, and only into mappings km cannot be changing. */
        if (!km_addrs[i].writable_mapping && rw(ctx, 1, buf, r, km_addrs[i].addr) > 0)
            writable++;
    }
    printf("%s: own read %s, own write %s, kernel half %s, km's addresses %d/%d read, "
           "%d written\n", label, own_read, own_write, kernel, readable, tried, writable);
}

static void mode_mem(void)
{
    printf("ready\n");
    char line[128];
    while (fgets(line, sizeof line, stdin) && n_km_addrs < 256) {
        unsigned long long addr;
        char perms[8];
        if (sscanf(line, "%llx %7s", &addr, perms) == 2)
            km_addrs[n_km_addrs++] = (struct hostaddr){addr, perms[1] == 'w'};
    }
    int pid = getpid(), tid = syscall(SYS_gettid);
    const char *paths[][2] = {
        {"/proc/self/mem", "/proc/self/mem"},
        {fmt("/proc/%d/mem", pid), "/proc/PID/mem"},
        {"/proc/thread-self/mem", "/proc/thread-self/mem"},
        {fmt("/proc/self/task/%d/mem", tid), "/proc/self/task/TID/mem"},
        {"memlink", "memlink -> /proc/self/mem"},
        {NULL, NULL},
    };
    for (int i = 0; paths[i][0]; i++) {
        int fd = open(paths[i][0], O_RDWR);
        if (fd < 0) {
            printf("%s: refused %s\n", paths[i][1], ename(errno));
            continue;
        }
        check_mem(paths[i][1], rw_fd, &fd);
        close(fd);
    }
    check_mem("process_vm_readv/writev", rw_vm, NULL);
}

int main(int argc, char **argv)
{
    line_buffered();
    if (argc != 3) {
        printf("usage: proc MODE HOSTDIR\n");
        return 2;
    }
    g_argc = argc;
    g_argv = argv;
    H = argv[2];
    if (!strcmp(argv[1], "root"))
        mode_root();
    else if (!strcmp(argv[1], "files"))
        mode_files();
    else if (!strcmp(argv[1], "fds"))
        mode_fds();
    else if (!strcmp(argv[1], "mem"))
        mode_mem();
    else
        return 2;
    return 0;
}
