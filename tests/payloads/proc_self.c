/* /proc/self as the payload sees it: proc_self MODE [ARGS]. Each check prints "yes"/"no";
 * values are printed only where they are the same natively and under km (and, on a
 * mismatch, what was found, to make the difference readable).
 *
 * modes:
 *   exe EXPECTED   /proc/self/exe, /proc/PID/exe, /proc/thread-self/exe name EXPECTED
 *                  (the payload's real path), by readlink, readlinkat, stat and open
 *   exe_at EXPECTED  the same link reached relative to a directory fd, or the cwd
 *   cmdline        /proc/self/cmdline holds argv
 *   environ        /proc/self/environ holds the environment
 *   fd             /proc/self/fd lists exactly 0, 1, 2 and what the payload opened
 *   maps           /proc/self/maps covers the payload's text, data, heap, stack, mmap
 *   status         /proc/self/status Name/Pid/Tgid/PPid/Threads, /proc/self/stat, comm
 */
#define _GNU_SOURCE
#include <dirent.h>
#include <fcntl.h>
#include <pthread.h>
#include <stdint.h>
#include <sys/mman.h>
#include <sys/prctl.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <unistd.h>

#include "payload.h"

extern char **environ;

static const char *yes_no(int b) { return b ? "yes" : "no"; }

static long read_file(const char *path, char *buf, long size)
{
    int fd = open(path, O_RDONLY | O_CLOEXEC);
    if (fd < 0)
        return -1;
    long n = 0, r;
    while (n < size - 1 && (r = read(fd, buf + n, size - 1 - n)) > 0)
        n += r;
    close(fd);
    buf[n] = 0;
    return n;
}

static void check_link(const char *what, long n, const char *buf, const char *expected)
{
    if (n < 0) {
        printf("%s: %s\n", what, errno_name(errno));
        return;
    }
    int same = n == (long)strlen(expected) && !memcmp(buf, expected, n);
    printf("%s == expected: %s", what, yes_no(same));
    if (!same)
        printf(" (got \"%.*s\")", (int)n, buf);
    printf("\n");
}

static int mode_exe(const char *expected)
{
    char buf[4096], path[64];
    long n = readlink("/proc/self/exe", buf, sizeof buf);
    check_link("readlink /proc/self/exe", n, buf, expected);
    snprintf(path, sizeof path, "/proc/%d/exe", (int)getpid());
    n = readlink(path, buf, sizeof buf);
    check_link("readlink /proc/<getpid()>/exe", n, buf, expected);
    n = readlink("/proc/thread-self/exe", buf, sizeof buf);
    check_link("readlink /proc/thread-self/exe", n, buf, expected);
    n = syscall(SYS_readlinkat, AT_FDCWD, "/proc/self/exe", buf, sizeof buf);
    check_link("readlinkat(AT_FDCWD, /proc/self/exe)", n, buf, expected);
    /* A short buffer: readlink truncates silently and returns the bytes stored. */
    n = readlink("/proc/self/exe", buf, 5);
    printf("readlink with a 5-byte buffer: %ld bytes, a prefix of the path: %s\n", n,
           yes_no(n == 5 && !memcmp(buf, expected, 5)));

    struct stat want, st;
    if (stat(expected, &want) < 0)
        die("stat expected");
    printf("stat /proc/self/exe is the payload file: %s\n",
           yes_no(stat("/proc/self/exe", &st) == 0 && st.st_ino == want.st_ino &&
                  st.st_dev == want.st_dev));
    int fd = open("/proc/self/exe", O_RDONLY | O_CLOEXEC);
    char head[4] = {0};
    printf("open /proc/self/exe: %s, reads an ELF header: %s, is the payload file: %s\n",
           fd >= 0 ? "ok" : errno_name(errno),
           yes_no(fd >= 0 && read(fd, head, 4) == 4 && !memcmp(head, "\177ELF", 4)),
           yes_no(fd >= 0 && fstat(fd, &st) == 0 && st.st_ino == want.st_ino));
    if (fd >= 0)
        close(fd);
    char *real = realpath("/proc/self/exe", NULL);
    printf("realpath(/proc/self/exe) == expected: %s\n",
           yes_no(real && !strcmp(real, expected)));
    free(real);
    return 0;
}

/* The same link reached relative to a directory descriptor. */
static int mode_exe_at(const char *expected)
{
    char buf[4096], path[64];
    int dir = open("/proc/self", O_RDONLY | O_DIRECTORY | O_CLOEXEC);
    long n = dir < 0 ? -1 : syscall(SYS_readlinkat, dir, "exe", buf, sizeof buf);
    check_link("readlinkat(open(\"/proc/self\"), \"exe\")", n, buf, expected);
    if (dir >= 0)
        close(dir);
    dir = open("/proc", O_RDONLY | O_DIRECTORY | O_CLOEXEC);
    n = dir < 0 ? -1 : syscall(SYS_readlinkat, dir, "self/exe", buf, sizeof buf);
    check_link("readlinkat(open(\"/proc\"), \"self/exe\")", n, buf, expected);
    snprintf(path, sizeof path, "%d/exe", (int)getpid());
    n = dir < 0 ? -1 : syscall(SYS_readlinkat, dir, path, buf, sizeof buf);
    check_link("readlinkat(open(\"/proc\"), \"<getpid()>/exe\")", n, buf, expected);
    if (dir >= 0)
        close(dir);
    if (chdir("/proc/self") == 0) {
        n = readlink("exe", buf, sizeof buf);
        check_link("readlink(\"exe\") in /proc/self", n, buf, expected);
    }
    return 0;
}

static int mode_cmdline(int argc, char **argv)
{
    char buf[65536];
    long n = read_file("/proc/self/cmdline", buf, sizeof buf);
    if (n < 0)
        die("open /proc/self/cmdline");
    int count = 0, same = 1;
    for (long i = 0; i < n; i += strlen(buf + i) + 1, count++) {
        printf("cmdline[%d] = \"%s\"\n", count, buf + i);
        if (count >= argc || strcmp(buf + i, argv[count]))
            same = 0;
    }
    printf("%d strings, argc %d, /proc/self/cmdline == argv: %s\n", count, argc,
           yes_no(same && count == argc));
    return 0;
}

static int mode_environ(void)
{
    char buf[65536];
    long n = read_file("/proc/self/environ", buf, sizeof buf);
    if (n < 0)
        die("open /proc/self/environ");
    int count = 0, same = 1;
    for (long i = 0; i < n; i += strlen(buf + i) + 1, count++)
        if (!environ[count] || strcmp(buf + i, environ[count]))
            same = 0;
    int envc = 0;
    while (environ[envc])
        envc++;
    printf("%d strings, %d environment entries, /proc/self/environ == environ: %s\n", count,
           envc, yes_no(same && count == envc));
    return 0;
}

static int cmp_int(const void *a, const void *b)
{
    return *(const int *)a - *(const int *)b;
}

static int mode_fd(void)
{
    int null = open("/dev/null", O_RDONLY);
    int dup = fcntl(1, F_DUPFD, 10);
    printf("opened /dev/null as fd %d, dup'd stdout to fd %d\n", null, dup);
    fflush(stdout);
    DIR *d = opendir("/proc/self/fd");
    if (!d)
        die("opendir /proc/self/fd");
    int fds[4096], n = 0;
    struct dirent *e;
    while ((e = readdir(d)) && n < 4096)
        if (e->d_name[0] != '.')
            fds[n++] = atoi(e->d_name);
    int listing = dirfd(d);
    closedir(d);
    qsort(fds, n, sizeof *fds, cmp_int);
    printf("/proc/self/fd lists %d descriptors:", n);
    for (int i = 0; i < n && i < 64; i++)
        printf(fds[i] == listing ? " %d(the listing)" : " %d", fds[i]);
    printf("\n");
    int expected[] = {0, 1, 2, null, dup, listing};
    int found_all = 1;
    for (unsigned k = 0; k < sizeof expected / sizeof *expected; k++) {
        int found = 0;
        for (int i = 0; i < n; i++)
            found |= fds[i] == expected[k];
        found_all &= found;
    }
    printf("exactly 0, 1, 2, the two opened and the listing's own: %s\n",
           yes_no(found_all && n == 6));
    char path[64], buf[4096];
    snprintf(path, sizeof path, "/proc/self/fd/%d", null);
    long len = readlink(path, buf, sizeof buf - 1);
    buf[len < 0 ? 0 : len] = 0;
    printf("readlink /proc/self/fd/%d: %s\n", null, len < 0 ? errno_name(errno) : buf);
    /* Reopening through /proc/self/fd works like dup of the file. */
    int again = open(path, O_RDONLY | O_CLOEXEC);
    printf("open /proc/self/fd/%d: %s\n", null, again >= 0 ? "ok" : errno_name(errno));
    return 0;
}

struct mapping {
    uintptr_t start, end;
    char perms[5];
    char name[512];
};

static struct mapping maps[1024];
static int nmaps;

static void load_maps(void)
{
    static char buf[1 << 20];
    if (read_file("/proc/self/maps", buf, sizeof buf) < 0)
        die("open /proc/self/maps");
    char *line = buf;
    while (*line && nmaps < 1024) {
        char *nl = strchr(line, '\n');
        if (nl)
            *nl = 0;
        struct mapping *m = &maps[nmaps];
        unsigned long start, end, offset, inode;
        char perms[5], dev[16];
        int consumed = 0;
        if (sscanf(line, "%lx-%lx %4s %lx %15s %lu %n", &start, &end, perms, &offset, dev,
                   &inode, &consumed) >= 6) {
            m->start = start;
            m->end = end;
            memcpy(m->perms, perms, 5);
            snprintf(m->name, sizeof m->name, "%s", consumed ? line + consumed : "");
            nmaps++;
        }
        if (!nl)
            break;
        line = nl + 1;
    }
}

static const struct mapping *find(const void *p)
{
    uintptr_t a = (uintptr_t)p;
    for (int i = 0; i < nmaps; i++)
        if (maps[i].start <= a && a < maps[i].end)
            return &maps[i];
    return NULL;
}

static void where(const char *what, const void *p, char perm, const char *name)
{
    const struct mapping *m = find(p);
    printf("%s: in a listed mapping: %s", what, yes_no(m != NULL));
    if (m) {
        const char *at = perm == 'r' ? &m->perms[0] : perm == 'w' ? &m->perms[1]
                                                                  : &m->perms[2];
        printf(", '%c' permission: %s", perm, yes_no(*at == perm));
        if (name)
            printf(", named %s: %s", name, yes_no(!strcmp(m->name, name)));
    }
    printf("\n");
}

static int initialized_data = 42;

static int mode_maps(void)
{
    int local = 1;
    void *heap = malloc(64);
    void *anon = mmap(NULL, 8192, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
    if (anon == MAP_FAILED)
        die("mmap");
    char exe[4096];
    long n = readlink("/proc/self/exe", exe, sizeof exe - 1);
    exe[n < 0 ? 0 : n] = 0;
    load_maps();
    printf("/proc/self/maps has mappings: %s\n", yes_no(nmaps > 0));
    where("text (main)", (void *)mode_maps, 'x', exe);
    where("data (an initialized global)", &initialized_data, 'w', NULL);
    where("heap (malloc(64))", heap, 'w', NULL);
    where("stack (a local variable)", &local, 'w', "[stack]");
    where("anonymous mmap", anon, 'w', NULL);
    munmap(anon, 8192);
    nmaps = 0;
    load_maps();
    printf("after munmap, the page is no longer listed: %s\n", yes_no(find(anon) == NULL));
    return 0;
}

static void *idle_thread(void *arg)
{
    char c;
    read(*(int *)arg, &c, 1);
    return NULL;
}

static const char *field(const char *status, const char *name, char *out, int size)
{
    out[0] = 0;
    int len = strlen(name);
    for (const char *line = status; line && *line;) {
        if (!strncmp(line, name, len) && line[len] == ':') {
            const char *v = line + len + 1;
            while (*v == ' ' || *v == '\t')
                v++;
            int n = strcspn(v, "\n");
            snprintf(out, size, "%.*s", n, v);
            return out;
        }
        line = strchr(line, '\n');
        if (line)
            line++;
    }
    return NULL;
}

static int mode_status(const char *argv0)
{
    /* The kernel names a process after the file it executed, in at most 15 bytes. */
    const char *base = strrchr(argv0, '/') ? strrchr(argv0, '/') + 1 : argv0;
    char comm[16];
    snprintf(comm, sizeof comm, "%s", base);

    char status[16384], v[256];
    if (read_file("/proc/self/status", status, sizeof status) < 0)
        die("open /proc/self/status");
    field(status, "Name", v, sizeof v);
    printf("Name is the executable's name (15 bytes at most): %s\n", yes_no(!strcmp(v, comm)));
    field(status, "Pid", v, sizeof v);
    printf("Pid == getpid(): %s\n", yes_no(atoi(v) == getpid()));
    field(status, "Tgid", v, sizeof v);
    printf("Tgid == getpid(): %s\n", yes_no(atoi(v) == getpid()));
    field(status, "PPid", v, sizeof v);
    printf("PPid == getppid(): %s\n", yes_no(atoi(v) == getppid()));
    field(status, "Threads", v, sizeof v);
    printf("Threads: %s\n", v);

    int p[2];
    if (pipe(p) < 0)
        die("pipe");
    pthread_t t;
    if (pthread_create(&t, NULL, idle_thread, &p[0]) != 0)
        die("pthread_create");
    read_file("/proc/self/status", status, sizeof status);
    printf("with a second thread, Threads: %s\n", field(status, "Threads", v, sizeof v));
    write(p[1], "x", 1);
    pthread_join(t, NULL);

    char stat[4096];
    if (read_file("/proc/self/stat", stat, sizeof stat) < 0)
        die("open /proc/self/stat");
    char *open_paren = strchr(stat, '('), *close_paren = strrchr(stat, ')');
    int pid = atoi(stat);
    printf("/proc/self/stat: pid == getpid(): %s, comm in parentheses: %s\n",
           yes_no(pid == getpid()),
           yes_no(open_paren && close_paren && close_paren - open_paren - 1 == (long)strlen(comm) &&
                  !memcmp(open_paren + 1, comm, strlen(comm))));
    if (close_paren) {
        char state;
        int ppid;
        if (sscanf(close_paren + 2, "%c %d", &state, &ppid) == 2)
            printf("/proc/self/stat: state %c, ppid == getppid(): %s\n", state,
                   yes_no(ppid == getppid()));
    }

    char c[64];
    read_file("/proc/self/comm", c, sizeof c);
    c[strcspn(c, "\n")] = 0;
    printf("/proc/self/comm is the name: %s\n", yes_no(!strcmp(c, comm)));
    prctl(PR_SET_NAME, "renamed-payload");
    read_file("/proc/self/comm", c, sizeof c);
    c[strcspn(c, "\n")] = 0;
    printf("after prctl(PR_SET_NAME), /proc/self/comm: %s\n", c);
    read_file("/proc/self/status", status, sizeof status);
    printf("after prctl(PR_SET_NAME), Name: %s\n", field(status, "Name", v, sizeof v));
    return 0;
}

int main(int argc, char **argv)
{
    const char *mode = argc > 1 ? argv[1] : "";
    if (!strcmp(mode, "exe") && argc > 2) return mode_exe(argv[2]);
    if (!strcmp(mode, "exe_at") && argc > 2) return mode_exe_at(argv[2]);
    if (!strcmp(mode, "cmdline")) return mode_cmdline(argc, argv);
    if (!strcmp(mode, "environ")) return mode_environ();
    if (!strcmp(mode, "fd")) return mode_fd();
    if (!strcmp(mode, "maps")) return mode_maps();
    if (!strcmp(mode, "status")) return mode_status(argv[0]);
    printf("usage: proc_self exe PATH | exe_at PATH | cmdline | environ | fd | maps | status\n");
    return 2;
}
