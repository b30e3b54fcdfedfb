/* Details of file, descriptor and socket system calls where km must answer exactly as
 * Linux does (run natively and under km; the outputs are compared):
 *
 *   sysdetails_fs at        every *at() call with dirfd -1, closed, beyond the limit (km's
 *                           own range), a file, a pipe, a directory and AT_FDCWD, each
 *                           with an absolute and a relative path; NULL and empty paths
 *   sysdetails_fs ioctl     ioctl on closed descriptors (EBADF whatever the request),
 *                           files, pipes and sockets with NULL, bad and good pointers
 *   sysdetails_fs ifaces    network interface ioctls (SIOCGIFCONF, SIOCGIF*), their
 *                           errors, and the libc functions built on them
 *   sysdetails_fs sockerr   socket calls on closed descriptors, non-sockets and sockets
 *                           with bad pointers and lengths: Linux's errors in Linux's order
 *   sysdetails_fs symlink   symlink/symlinkat store their target as text, unresolved
 *
 * Everything happens in the working directory; no address or descriptor number is
 * printed, only results and errno names. */
#define _GNU_SOURCE
#include <arpa/inet.h>
#include <fcntl.h>
#include <limits.h>
#include <net/if.h>
#include <netdb.h>
#include <netinet/in.h>
#include <stdarg.h>
#include <stdint.h>
#include <sys/ioctl.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <sys/time.h>
#include <sys/uio.h>
#include <sys/un.h>
#include <unistd.h>

#include "payload.h"

#ifndef SYS_statx
#define SYS_statx 332
#endif
#ifndef SYS_openat2
#define SYS_openat2 437
#endif
#ifndef SYS_faccessat2
#define SYS_faccessat2 439
#endif
#ifndef SYS_renameat2
#define SYS_renameat2 316
#endif

#ifndef SIOCGIFTXQLEN
#define SIOCGIFTXQLEN 0x8942
#endif
#ifndef SIOCGIFSLAVE
#define SIOCGIFSLAVE 0x8929
#endif

/* Pointers that fault: one in the user half (unmapped), one in the kernel half. */
#define BAD ((long)8)
#define KBAD ((long)0xffff800000000000UL)

static const char *en(int e)
{
    switch (e) {
    case ENODEV: return "ENODEV";
    case EADDRNOTAVAIL: return "EADDRNOTAVAIL";
    case EDESTADDRREQ: return "EDESTADDRREQ";
    case EAFNOSUPPORT: return "EAFNOSUPPORT";
    case EMSGSIZE: return "EMSGSIZE";
    case ENOPROTOOPT: return "ENOPROTOOPT";
    case EISCONN: return "EISCONN";
    case ENXIO: return "ENXIO";
    default: return errno_name(e);
    }
}

/* One result line: "what: N" or "what: -1 ENAME". */
static long say(const char *what, long ret)
{
    if (ret < 0)
        printf("%s: -1 %s\n", what, en(errno));
    else
        printf("%s: %ld\n", what, ret);
    return ret;
}

/* Like say, for calls that return a descriptor: "ok" rather than its number. */
static void say_fd(const char *what, long ret)
{
    if (ret < 0) {
        printf("%s: -1 %s\n", what, en(errno));
    } else {
        printf("%s: fd\n", what);
        close(ret);
    }
}

static char *fmt(const char *f, ...) __attribute__((format(printf, 1, 2)));
static char *fmt(const char *f, ...)
{
    static char bufs[8][PATH_MAX + 64];
    static int next;
    char *b = bufs[next++ % 8];
    va_list ap;
    va_start(ap, f);
    vsnprintf(b, PATH_MAX + 64, f, ap);
    va_end(ap);
    return b;
}

static void touch(const char *path)
{
    int fd = open(path, O_CREAT | O_WRONLY | O_TRUNC, 0644);
    if (fd < 0)
        die(path);
    write(fd, "data\n", 5);
    close(fd);
}

/* ---- *at() calls and their dirfd ------------------------------------------------------ */

static char cwd[PATH_MAX];

/* The path a call is given: absolute (dirfd ignored) or relative. */
static const char *P(int absolute, const char *name)
{
    return absolute ? fmt("%s/%s", cwd, name) : name;
}

static void at_calls(const char *label, int dfd)
{
    struct stat st;
    char stx[256], buf[64];
    struct timeval tv[2] = {{1, 0}, {2, 0}};
    for (int absolute = 0; absolute <= 1; absolute++) {
        const char *how = absolute ? "abs" : "rel";
#define W(name, call) say(fmt("%s %s %s", label, how, name), (call))
        /* what each case works on, made afresh so every case starts alike */
        touch("f");
        unlink("f2");
        unlink("g");
        unlink("sl");
        unlink("fifo");
        rmdir("newdir");
        symlink("f", "lnk");
        say_fd(fmt("%s %s openat", label, how), syscall(SYS_openat, dfd, P(absolute, "f"), O_RDONLY));
        struct { uint64_t flags, mode, resolve; } oh = {O_RDONLY, 0, 0};
        say_fd(fmt("%s %s openat2", label, how),
               syscall(SYS_openat2, dfd, P(absolute, "f"), &oh, sizeof oh));
        oh.resolve = 0x08; /* RESOLVE_BENEATH: absolute paths are EXDEV */
        say_fd(fmt("%s %s openat2 beneath", label, how),
               syscall(SYS_openat2, dfd, P(absolute, "f"), &oh, sizeof oh));
        W("newfstatat", syscall(SYS_newfstatat, dfd, P(absolute, "f"), &st, 0));
        W("newfstatat nofollow", syscall(SYS_newfstatat, dfd, P(absolute, "lnk"), &st, AT_SYMLINK_NOFOLLOW));
        W("statx", syscall(SYS_statx, dfd, P(absolute, "f"), 0, 0x7ff, stx));
        W("faccessat", syscall(SYS_faccessat, dfd, P(absolute, "f"), R_OK));
        W("faccessat2", syscall(SYS_faccessat2, dfd, P(absolute, "f"), R_OK, 0));
        W("readlinkat", syscall(SYS_readlinkat, dfd, P(absolute, "lnk"), buf, sizeof buf));
        W("mkdirat", syscall(SYS_mkdirat, dfd, P(absolute, "newdir"), 0755));
        W("unlinkat rmdir", syscall(SYS_unlinkat, dfd, P(absolute, "newdir"), AT_REMOVEDIR));
        W("linkat", syscall(SYS_linkat, dfd, P(absolute, "f"), dfd, P(absolute, "f2"), 0));
        W("linkat new", syscall(SYS_linkat, AT_FDCWD, "f", dfd, P(absolute, "g"), 0));
        W("renameat", syscall(SYS_renameat, dfd, P(absolute, "f2"), AT_FDCWD, "f3"));
        W("renameat2 new", syscall(SYS_renameat2, AT_FDCWD, "f3", dfd, P(absolute, "f2"), 0));
        W("unlinkat", syscall(SYS_unlinkat, dfd, P(absolute, "f2"), 0));
        W("symlinkat", syscall(SYS_symlinkat, "some text", dfd, P(absolute, "sl")));
        W("fchmodat", syscall(SYS_fchmodat, dfd, P(absolute, "f"), 0600));
        W("fchownat", syscall(SYS_fchownat, dfd, P(absolute, "f"), -1, -1, 0));
        W("fchownat link", syscall(SYS_fchownat, dfd, P(absolute, "lnk"), -1, -1, AT_SYMLINK_NOFOLLOW));
        W("utimensat", syscall(SYS_utimensat, dfd, P(absolute, "f"), NULL, 0));
        W("futimesat", syscall(SYS_futimesat, dfd, P(absolute, "f"), tv));
        W("mknodat", syscall(SYS_mknodat, dfd, P(absolute, "fifo"), S_IFIFO | 0600, 0));
        W("unlinkat fifo", syscall(SYS_unlinkat, dfd, P(absolute, "fifo"), 0));
#undef W
        unlink("lnk");
    }
    /* Paths Linux looks at before the descriptor. */
    say(fmt("%s NULL newfstatat", label), syscall(SYS_newfstatat, dfd, NULL, &st, 0));
    say(fmt("%s empty newfstatat", label), syscall(SYS_newfstatat, dfd, "", &st, 0));
    say(fmt("%s empty+AT_EMPTY_PATH newfstatat", label),
        syscall(SYS_newfstatat, dfd, "", &st, AT_EMPTY_PATH));
    say(fmt("%s bad openat", label), syscall(SYS_openat, dfd, BAD, O_RDONLY));
    say(fmt("%s empty openat", label), syscall(SYS_openat, dfd, "", O_RDONLY));
    say(fmt("%s empty mkdirat", label), syscall(SYS_mkdirat, dfd, "", 0755));
    say(fmt("%s NULL utimensat", label), syscall(SYS_utimensat, dfd, NULL, NULL, 0));
    say(fmt("%s dot faccessat", label), syscall(SYS_faccessat, dfd, ".", F_OK));
    say(fmt("%s readlinkat size 0", label), syscall(SYS_readlinkat, dfd, "lnk", buf, 0));
}

static int mode_at(void)
{
    if (!getcwd(cwd, sizeof cwd))
        die("getcwd");
    mkdir("sub", 0755);
    struct rlimit rl;
    getrlimit(RLIMIT_NOFILE, &rl);
    int file = open("file", O_CREAT | O_RDWR, 0644);
    int pipefd[2];
    if (file < 0 || pipe(pipefd) < 0)
        die("setup");
    int dir = open(".", O_RDONLY | O_DIRECTORY);
    int opath = open(".", O_PATH | O_DIRECTORY);
    int closed = dup(file);
    close(closed);
    at_calls("dirfd -1", -1);
    at_calls("dirfd -7", -7);
    at_calls("dirfd closed", closed);
    at_calls("dirfd above the limit", (int)(rl.rlim_max < 1000000 ? rl.rlim_max + 5 : 1000005));
    at_calls("dirfd INT_MAX", INT_MAX);
    at_calls("dirfd file", file);
    at_calls("dirfd pipe", pipefd[0]);
    at_calls("dirfd dir", dir);
    at_calls("dirfd O_PATH dir", opath);
    at_calls("AT_FDCWD", AT_FDCWD);
    return 0;
}

/* ---- ioctl ----------------------------------------------------------------------------- */

static void ioctls(const char *label, int fd)
{
    int value = 0;
    char buf[64] = {0};
    static const struct { unsigned long request; const char *name; } requests[] = {
        {0x1234, "unknown 0x1234"}, {0xc0de5401, "unknown 0xc0de5401"},
        {TCGETS, "TCGETS"}, {TIOCGWINSZ, "TIOCGWINSZ"}, {FIONREAD, "FIONREAD"},
        {TIOCSTI, "TIOCSTI"}, {SIOCGIFINDEX, "SIOCGIFINDEX"}, {SIOCGIFCONF, "SIOCGIFCONF"},
        {SIOCGIFADDR, "SIOCGIFADDR"}, {SIOCSIFFLAGS, "SIOCSIFFLAGS"},
    };
    for (unsigned i = 0; i < sizeof requests / sizeof *requests; i++) {
        unsigned long r = requests[i].request;
        say(fmt("ioctl %s %s NULL", label, requests[i].name), syscall(SYS_ioctl, fd, r, 0L));
        say(fmt("ioctl %s %s bad", label, requests[i].name), syscall(SYS_ioctl, fd, r, BAD));
        say(fmt("ioctl %s %s kernel", label, requests[i].name), syscall(SYS_ioctl, fd, r, KBAD));
        if (r == SIOCSIFFLAGS || r == TIOCSTI)
            continue;  /* never with a good pointer: they would change something */
        memset(buf, 0, sizeof buf);
        strcpy(buf, "lo");
        say(fmt("ioctl %s %s good", label, requests[i].name),
            syscall(SYS_ioctl, fd, r, r == FIONREAD ? (void *)&value : (void *)buf));
    }
    say(fmt("ioctl %s FIOCLEX", label), syscall(SYS_ioctl, fd, FIOCLEX, 0L));
    say(fmt("ioctl %s FIONCLEX", label), syscall(SYS_ioctl, fd, FIONCLEX, 0L));
}

static int mode_ioctl(void)
{
    struct rlimit rl;
    getrlimit(RLIMIT_NOFILE, &rl);
    int file = open("file", O_CREAT | O_RDWR, 0644);
    int pipefd[2];
    if (file < 0 || pipe(pipefd) < 0)
        die("setup");
    int sock = socket(AF_INET, SOCK_DGRAM, 0);
    int closed = dup(file);
    close(closed);
    ioctls("closed", closed);
    ioctls("-1", -1);
    ioctls("above the limit", (int)(rl.rlim_max < 1000000 ? rl.rlim_max + 5 : 1000005));
    ioctls("file", file);
    ioctls("pipe", pipefd[0]);
    ioctls("socket", sock);
    return 0;
}

/* ---- network interfaces ---------------------------------------------------------------- */

static void hex(const char *label, const void *data, int n)
{
    const unsigned char *p = data;
    printf("%s:", label);
    for (int i = 0; i < n; i++)
        printf(" %02x", p[i]);
    printf("\n");
}

/* One ifreq ioctl on name (or index): the result and all 40 bytes Linux leaves. */
static void ifreq_call(int s, const char *sock, const char *what, unsigned long request,
                       const char *name, int index, unsigned char fill)
{
    struct ifreq ifr;
    memset(&ifr, fill, sizeof ifr);
    if (name) {
        memset(ifr.ifr_name, 0, sizeof ifr.ifr_name);
        strncpy(ifr.ifr_name, name, sizeof ifr.ifr_name);
    }
    if (index >= 0)
        ifr.ifr_ifindex = index;
    char *label = fmt("%s %s %s", sock, what, name ? name : fmt("#%d", index));
    if (say(label, ioctl(s, request, &ifr)) == 0)
        hex(fmt("  %s ifreq", label), &ifr, sizeof ifr);
}

static void ifconf_calls(int s, const char *sock)
{
    struct ifconf ifc;
    char buf[8192];
    memset(&ifc, 0, sizeof ifc);
    say(fmt("%s SIOCGIFCONF NULL buffer", sock), ioctl(s, SIOCGIFCONF, &ifc));
    int total = ifc.ifc_len;
    printf("  length %d\n", total);
    ifc.ifc_len = -5;
    ifc.ifc_buf = NULL;
    say(fmt("%s SIOCGIFCONF NULL buffer, length -5", sock), ioctl(s, SIOCGIFCONF, &ifc));
    printf("  length %d\n", ifc.ifc_len);
    int lengths[] = {-5, 0, 39, 40, 79, total, total + 40, (int)sizeof buf};
    for (unsigned i = 0; i < sizeof lengths / sizeof *lengths; i++) {
        memset(buf, 0xa5, sizeof buf);
        ifc.ifc_len = lengths[i];
        ifc.ifc_buf = buf;
        if (say(fmt("%s SIOCGIFCONF %s", sock,
                    lengths[i] == total ? "exact" : fmt("%d", lengths[i])),
                ioctl(s, SIOCGIFCONF, &ifc)) < 0)
            continue;
        printf("  length %d\n", ifc.ifc_len);
        for (int off = 0; off + (int)sizeof(struct ifreq) <= ifc.ifc_len; off += sizeof(struct ifreq)) {
            struct ifreq *r = (struct ifreq *)(buf + off);
            struct sockaddr_in *a = (struct sockaddr_in *)&r->ifr_addr;
            printf("  %s family %d %s\n", r->ifr_name, a->sin_family, inet_ntoa(a->sin_addr));
            hex("  bytes", r, sizeof *r);
        }
        hex("  after", buf + ifc.ifc_len, 8);
    }
    ifc.ifc_len = total;
    ifc.ifc_buf = (void *)BAD;
    say(fmt("%s SIOCGIFCONF bad buffer", sock), ioctl(s, SIOCGIFCONF, &ifc));
    ifc.ifc_len = 0;
    say(fmt("%s SIOCGIFCONF bad buffer, length 0", sock), ioctl(s, SIOCGIFCONF, &ifc));
    printf("  length %d\n", ifc.ifc_len);
    /* a buffer in a read-only page */
    ifc.ifc_len = total;
    ifc.ifc_buf = (void *)en;
    say(fmt("%s SIOCGIFCONF read-only buffer", sock), ioctl(s, SIOCGIFCONF, &ifc));
    say(fmt("%s SIOCGIFCONF bad ifconf", sock), ioctl(s, SIOCGIFCONF, (void *)BAD));
    say(fmt("%s SIOCGIFCONF read-only ifconf", sock), ioctl(s, SIOCGIFCONF, (void *)en));
}

static void interface_calls(int s, const char *sock, const char *name, int index)
{
    static const struct { unsigned long request; const char *name; } getters[] = {
        {SIOCGIFINDEX, "SIOCGIFINDEX"}, {SIOCGIFFLAGS, "SIOCGIFFLAGS"},
        {SIOCGIFADDR, "SIOCGIFADDR"}, {SIOCGIFNETMASK, "SIOCGIFNETMASK"},
        {SIOCGIFBRDADDR, "SIOCGIFBRDADDR"}, {SIOCGIFDSTADDR, "SIOCGIFDSTADDR"},
        {SIOCGIFHWADDR, "SIOCGIFHWADDR"}, {SIOCGIFMTU, "SIOCGIFMTU"},
        {SIOCGIFTXQLEN, "SIOCGIFTXQLEN"}, {SIOCGIFMETRIC, "SIOCGIFMETRIC"},
        {SIOCGIFMAP, "SIOCGIFMAP"}, {SIOCGIFSLAVE, "SIOCGIFSLAVE"},
    };
    for (unsigned i = 0; i < sizeof getters / sizeof *getters; i++)
        for (int fill = 0; fill < 2; fill++)
            ifreq_call(s, sock, fmt("%s%s", getters[i].name, fill ? " (filled)" : ""),
                       getters[i].request, name, -1, fill ? 0x5a : 0);
    ifreq_call(s, sock, "SIOCGIFNAME", SIOCGIFNAME, NULL, index, 0);
    ifreq_call(s, sock, "SIOCGIFNAME (filled)", SIOCGIFNAME, NULL, index, 0x5a);
}

static int mode_ifaces(void)
{
    struct if_nameindex *list = if_nameindex();
    if (!list)
        die("if_nameindex");
    for (struct if_nameindex *i = list; i->if_index; i++)
        printf("if_nameindex: %u %s\n", i->if_index, i->if_name);
    say("if_nametoindex lo", if_nametoindex("lo"));
    say("if_nametoindex none", if_nametoindex("no-such-if0"));
    char name[IF_NAMESIZE];
    printf("if_indextoname 1: %s\n", if_indextoname(1, name) ? name : en(errno));
    printf("if_indextoname 99999: %s\n", if_indextoname(99999, name) ? name : en(errno));

    struct addrinfo hints = {.ai_family = AF_INET6, .ai_flags = AI_NUMERICHOST}, *ai;
    int gai = getaddrinfo("fe80::1%lo", NULL, &hints, &ai);
    if (gai == 0) {
        struct sockaddr_in6 *a = (struct sockaddr_in6 *)ai->ai_addr;
        printf("getaddrinfo fe80::1%%lo: scope id %u (lo is %u)\n", a->sin6_scope_id,
               if_nametoindex("lo"));
        freeaddrinfo(ai);
    } else {
        printf("getaddrinfo fe80::1%%lo: error %d\n", gai);
    }

    struct { int family, type; const char *name; } socks[] = {
        {AF_INET, SOCK_DGRAM, "inet"}, {AF_INET6, SOCK_DGRAM, "inet6"},
        {AF_UNIX, SOCK_DGRAM, "unix"},
    };
    for (unsigned k = 0; k < sizeof socks / sizeof *socks; k++) {
        int s = socket(socks[k].family, socks[k].type, 0);
        if (s < 0)
            die("socket");
        const char *sock = socks[k].name;
        ifconf_calls(s, sock);
        for (struct if_nameindex *i = list; i->if_index; i++)
            interface_calls(s, sock, i->if_name, i->if_index);
        interface_calls(s, sock, "lo:0", 0);
        interface_calls(s, sock, "no-such-if0", 99999);
        ifreq_call(s, sock, "SIOCGIFFLAGS 16 bytes", SIOCGIFFLAGS, "lo0123456789abcdef", -1, 0);
        ifreq_call(s, sock, "SIOCGIFINDEX empty", SIOCGIFINDEX, "", -1, 0);
        ifreq_call(s, sock, "SIOCGIFNAME", SIOCGIFNAME, NULL, -1, 0);
        /* an AF_INET address to match (4.4BSD style), then a wrong one */
        struct ifreq ifr;
        memset(&ifr, 0, sizeof ifr);
        strcpy(ifr.ifr_name, "lo");
        struct sockaddr_in *a = (struct sockaddr_in *)&ifr.ifr_addr;
        a->sin_family = AF_INET;
        a->sin_addr.s_addr = htonl(0x7f000001);
        if (say(fmt("%s SIOCGIFADDR lo 127.0.0.1", sock), ioctl(s, SIOCGIFADDR, &ifr)) == 0)
            hex("  ifreq", &ifr, sizeof ifr);
        a->sin_family = AF_INET;
        a->sin_addr.s_addr = htonl(0x0a0b0c0d);
        if (say(fmt("%s SIOCGIFNETMASK lo 10.11.12.13", sock), ioctl(s, SIOCGIFNETMASK, &ifr)) == 0)
            hex("  ifreq", &ifr, sizeof ifr);
        say(fmt("%s SIOCGIFINDEX bad", sock), ioctl(s, SIOCGIFINDEX, (void *)BAD));
        say(fmt("%s SIOCGIFINDEX kernel", sock), ioctl(s, SIOCGIFINDEX, (void *)KBAD));
        say(fmt("%s SIOCGIFADDR bad", sock), ioctl(s, SIOCGIFADDR, (void *)BAD));
        say(fmt("%s SIOCGIFINDEX NULL", sock), ioctl(s, SIOCGIFINDEX, NULL));
        /* in a read-only page: read, then the copy back fails */
        say(fmt("%s SIOCGIFINDEX read-only", sock), ioctl(s, SIOCGIFINDEX, (void *)en));
        close(s);
    }
    if_freenameindex(list);
    return 0;
}

/* ---- socket calls and their errors ----------------------------------------------------- */

static void socket_calls(const char *label, int fd)
{
    char buf[256];
    struct sockaddr_in sin = {.sin_family = AF_INET, .sin_port = 0,
                              .sin_addr.s_addr = htonl(0x7f000001)};
    socklen_t len;
    int value = 0;
    struct iovec iov = {buf, sizeof buf};
    struct msghdr msg = {.msg_iov = &iov, .msg_iovlen = 1};
    struct mmsghdr mm = {.msg_hdr = {.msg_iov = &iov, .msg_iovlen = 1}};
#define S(what, call) say(fmt("%s %s", label, what), (call))
    S("getsockname bad bad", syscall(SYS_getsockname, fd, BAD, BAD));
    S("getsockname NULL NULL", syscall(SYS_getsockname, fd, 0L, 0L));
    S("getsockname kernel kernel", syscall(SYS_getsockname, fd, KBAD, KBAD));
    S("getsockname buf bad", syscall(SYS_getsockname, fd, buf, BAD));
    len = 0;
    S("getsockname NULL len0", syscall(SYS_getsockname, fd, 0L, &len));
    printf("  len %u\n", (unsigned)len);
    len = 0;
    S("getsockname bad len0", syscall(SYS_getsockname, fd, BAD, &len));
    printf("  len %u\n", (unsigned)len);
    len = 4;
    S("getsockname bad len4", syscall(SYS_getsockname, fd, BAD, &len));
    len = (socklen_t)-1;
    S("getsockname buf len-1", syscall(SYS_getsockname, fd, buf, &len));
    len = sizeof buf;
    S("getsockname buf len", syscall(SYS_getsockname, fd, buf, &len));
    printf("  len %u\n", (unsigned)len);
    len = sizeof buf;
    S("getsockname buf read-only len", syscall(SYS_getsockname, fd, buf, (void *)en));
    S("getpeername bad bad", syscall(SYS_getpeername, fd, BAD, BAD));
    len = sizeof buf;
    S("getpeername buf len", syscall(SYS_getpeername, fd, buf, &len));
    S("bind bad 16", syscall(SYS_bind, fd, BAD, 16));
    S("bind bad -1", syscall(SYS_bind, fd, BAD, -1));
    S("bind bad 129", syscall(SYS_bind, fd, BAD, 129));
    S("bind kernel 16", syscall(SYS_bind, fd, KBAD, 16));
    S("bind NULL 0", syscall(SYS_bind, fd, 0L, 0));
    S("connect bad 16", syscall(SYS_connect, fd, BAD, 16));
    S("connect bad -1", syscall(SYS_connect, fd, BAD, -1));
    S("connect NULL 0", syscall(SYS_connect, fd, 0L, 0));
    struct sockaddr_un sun = {.sun_family = AF_UNIX};
    strcpy(sun.sun_path, "no-such-socket");
    S("connect unix path", syscall(SYS_connect, fd, &sun, sizeof sun));
    S("listen", syscall(SYS_listen, fd, 1));
    S("accept bad bad", syscall(SYS_accept, fd, BAD, BAD));
    S("accept4 bad flags", syscall(SYS_accept4, fd, 0L, 0L, 0x12345));
    S("getsockopt bad bad", syscall(SYS_getsockopt, fd, SOL_SOCKET, SO_TYPE, BAD, BAD));
    S("getsockopt NULL NULL", syscall(SYS_getsockopt, fd, SOL_SOCKET, SO_TYPE, 0L, 0L));
    len = (socklen_t)-1;
    S("getsockopt len -1", syscall(SYS_getsockopt, fd, SOL_SOCKET, SO_TYPE, &value, &len));
    len = sizeof value;
    S("getsockopt bad len", syscall(SYS_getsockopt, fd, SOL_SOCKET, SO_TYPE, BAD, &len));
    len = sizeof value;
    S("getsockopt SO_TYPE", syscall(SYS_getsockopt, fd, SOL_SOCKET, SO_TYPE, &value, &len));
    printf("  value %d len %u\n", value, (unsigned)len);
    len = 100000;
    S("getsockopt SO_TYPE len 100000", syscall(SYS_getsockopt, fd, SOL_SOCKET, SO_TYPE, buf, &len));
    printf("  len %u\n", (unsigned)len);
    S("setsockopt bad 4", syscall(SYS_setsockopt, fd, SOL_SOCKET, SO_RCVBUF, BAD, 4));
    S("setsockopt bad -1", syscall(SYS_setsockopt, fd, SOL_SOCKET, SO_RCVBUF, BAD, -1));
    S("setsockopt bad 100000", syscall(SYS_setsockopt, fd, SOL_SOCKET, SO_RCVBUF, BAD, 100000));
    S("setsockopt filter bad", syscall(SYS_setsockopt, fd, SOL_SOCKET, SO_ATTACH_FILTER, BAD, 16));
    S("shutdown 7", syscall(SYS_shutdown, fd, 7));
    S("shutdown 0", syscall(SYS_shutdown, fd, 0));
    S("sendto bad dest bad", syscall(SYS_sendto, fd, BAD, 10, MSG_NOSIGNAL, BAD, 16));
    S("sendto kernel", syscall(SYS_sendto, fd, KBAD, 10, MSG_NOSIGNAL, 0L, 0));
    S("sendto dest len -1", syscall(SYS_sendto, fd, 0L, 0, MSG_NOSIGNAL, BAD, -1));
    S("sendto dest len 200", syscall(SYS_sendto, fd, buf, 1, MSG_DONTWAIT | MSG_NOSIGNAL, &sin, 200));
    S("sendto NULL dest len -1", syscall(SYS_sendto, fd, buf, 0, MSG_DONTWAIT | MSG_NOSIGNAL, 0L, -1));
    S("recvfrom bad bad bad", syscall(SYS_recvfrom, fd, BAD, 10, MSG_DONTWAIT, BAD, BAD));
    S("recvfrom kernel", syscall(SYS_recvfrom, fd, KBAD, 10, MSG_DONTWAIT, 0L, 0L));
    S("recvfrom buf", syscall(SYS_recvfrom, fd, buf, 10, MSG_DONTWAIT, 0L, 0L));
    S("sendmsg bad", syscall(SYS_sendmsg, fd, BAD, MSG_NOSIGNAL));
    S("recvmsg bad", syscall(SYS_recvmsg, fd, BAD, MSG_DONTWAIT));
    iov.iov_base = (void *)BAD;
    S("sendmsg bad iov base", syscall(SYS_sendmsg, fd, &msg, MSG_DONTWAIT | MSG_NOSIGNAL));
    iov.iov_base = buf;
    msg.msg_iov = (void *)BAD;
    S("sendmsg bad iov", syscall(SYS_sendmsg, fd, &msg, MSG_DONTWAIT | MSG_NOSIGNAL));
    S("recvmsg bad iov", syscall(SYS_recvmsg, fd, &msg, MSG_DONTWAIT));
    msg.msg_iov = &iov;
    msg.msg_iovlen = 5000;
    S("sendmsg iovlen 5000", syscall(SYS_sendmsg, fd, &msg, MSG_DONTWAIT | MSG_NOSIGNAL));
    S("recvmsg iovlen 5000", syscall(SYS_recvmsg, fd, &msg, MSG_DONTWAIT));
    msg.msg_iovlen = 1;
    msg.msg_name = &sin;
    msg.msg_namelen = (socklen_t)-1;
    S("sendmsg namelen -1", syscall(SYS_sendmsg, fd, &msg, MSG_DONTWAIT | MSG_NOSIGNAL));
    msg.msg_name = NULL;
    msg.msg_namelen = 0;
    msg.msg_control = (void *)BAD;
    msg.msg_controllen = 64;
    S("sendmsg bad control", syscall(SYS_sendmsg, fd, &msg, MSG_DONTWAIT | MSG_NOSIGNAL));
    S("recvmsg", syscall(SYS_recvmsg, fd, &msg, MSG_DONTWAIT));
    S("sendmmsg bad", syscall(SYS_sendmmsg, fd, BAD, 1, MSG_NOSIGNAL));
    S("recvmmsg bad", syscall(SYS_recvmmsg, fd, BAD, 1, MSG_DONTWAIT, 0L));
    mm.msg_hdr.msg_iov = (void *)BAD;
    S("sendmmsg bad iov", syscall(SYS_sendmmsg, fd, &mm, 1, MSG_DONTWAIT | MSG_NOSIGNAL));
    S("recvmmsg bad iov", syscall(SYS_recvmmsg, fd, &mm, 1, MSG_DONTWAIT, 0L));
#undef S
}

static int mode_sockerr(void)
{
    struct rlimit rl;
    getrlimit(RLIMIT_NOFILE, &rl);
    int file = open("file", O_CREAT | O_RDWR, 0644);
    int pipefd[2];
    if (file < 0 || pipe(pipefd) < 0)
        die("setup");
    int closed = dup(file);
    close(closed);
    socket_calls("closed", closed);
    socket_calls("-1", -1);
    socket_calls("above the limit", (int)(rl.rlim_max < 1000000 ? rl.rlim_max + 5 : 1000005));
    socket_calls("file", file);
    socket_calls("pipe", pipefd[0]);
    socket_calls("udp", socket(AF_INET, SOCK_DGRAM | SOCK_NONBLOCK, 0));
    socket_calls("unix", socket(AF_UNIX, SOCK_DGRAM | SOCK_NONBLOCK, 0));
    socket_calls("tcp", socket(AF_INET, SOCK_STREAM | SOCK_NONBLOCK, 0));
    return 0;
}

/* ---- symlink --------------------------------------------------------------------------- */

static void show_link(const char *path)
{
    char buf[PATH_MAX + 1];
    long n = readlink(path, buf, sizeof buf);
    if (n < 0)
        printf("  readlink %s: %s\n", path, en(errno));
    else if (n > 60)
        printf("  readlink %s: %ld bytes\n", path, n);
    else
        printf("  readlink %s: \"%.*s\"\n", path, (int)n, buf);
}

static int mode_symlink(void)
{
    static char big[PATH_MAX + 8];
    struct { const char *target, *link; } cases[] = {
        {"/nonexistent/dir/x", "l-dangling-absolute"},
        {"../../../../../../../../etc/passwd", "l-dotdot"},
        {"missing/dir/../../x", "l-missing-dir"},
        {"/", "l-root"},
        {".", "l-dot"},
        {"a//b/./c/", "l-odd"},
        {"sub/../sub", "l-sub"},
        {"x", "sub/l-in-sub"},
        {"x", "missing/l"},
        {"x", "sub/../l-through-dotdot"},
        {"x", "l-dotdot"},  /* exists: EEXIST */
        {"x", "sub"},
        {"x", "."},
        {"x", "l-new/"},
        {"x", "l-dangling-absolute/x"},
        {"x", ""},
        {"", "l-empty"},
    };
    /* a directory of its own: the native run and km's share the working directory */
    char dir[] = "symlink.XXXXXX";
    if (!mkdtemp(dir) || chdir(dir) < 0)
        die("mkdtemp");
    mkdir("sub", 0755);
    for (unsigned i = 0; i < sizeof cases / sizeof *cases; i++) {
        say(fmt("symlink \"%s\" \"%s\"", cases[i].target, cases[i].link),
            symlink(cases[i].target, cases[i].link));
        if (*cases[i].link)
            show_link(cases[i].link);
    }
    memset(big, 'a', sizeof big);
    big[PATH_MAX - 1] = 0;
    say("symlink 4095-byte target", symlink(big, "l-long"));
    show_link("l-long");
    big[PATH_MAX - 1] = 'a';
    big[PATH_MAX] = 0;
    say("symlink 4096-byte target", symlink(big, "l-too-long"));
    say("symlink NULL target", syscall(SYS_symlink, 0L, "l-null"));
    say("symlink bad target", syscall(SYS_symlink, BAD, "l-bad"));
    say("symlink NULL link", syscall(SYS_symlink, "x", 0L));
    say("symlink bad target, bad link", syscall(SYS_symlink, BAD, BAD));
    say("symlink empty target, bad link", syscall(SYS_symlink, "", BAD));
    say("symlinkat empty target, bad dirfd", symlinkat("", -1, "l-empty2"));
    /* names that must not be directories, with a trailing slash */
    touch("file");
    say("mknod fifo-new/", mknod("fifo-new/", S_IFIFO | 0600, 0));
    say("mknod sub/", mknod("sub/", S_IFIFO | 0600, 0));
    say("link file link-new/", link("file", "link-new/"));
    say("link file sub/", link("file", "sub/"));
    say("symlink x file/", symlink("x", "file/"));
    say("mkdir dir-new/", mkdir("dir-new/", 0755));
    int sub = open("sub", O_RDONLY | O_DIRECTORY);
    say("symlinkat dir fd", symlinkat("../..", sub, "l-at"));
    show_link("sub/l-at");
    say("symlinkat -1 relative", symlinkat("x", -1, "l-minus1"));
    say("symlinkat dir fd, file fd", symlinkat("x", open("sub/l-at", O_PATH | O_NOFOLLOW), "l2"));
    struct stat st;
    say("lstat l-dotdot", lstat("l-dotdot", &st));
    printf("  is a link: %s\n", S_ISLNK(st.st_mode) ? "yes" : "no");
    say("stat l-missing-dir", stat("l-missing-dir", &st));
    say("stat l-sub", stat("l-sub", &st));
    printf("  is a directory: %s\n", S_ISDIR(st.st_mode) ? "yes" : "no");
    return 0;
}

int main(int argc, char **argv)
{
    setvbuf(stdout, NULL, _IOLBF, 0);
    if (argc < 2) {
        fprintf(stderr, "usage: sysdetails_fs at|ioctl|ifaces|sockerr|symlink\n");
        return 2;
    }
    if (argc > 2 && chdir(argv[2]) < 0)
        die("chdir");
    if (!strcmp(argv[1], "at"))
        return mode_at();
    if (!strcmp(argv[1], "ioctl"))
        return mode_ioctl();
    if (!strcmp(argv[1], "ifaces"))
        return mode_ifaces();
    if (!strcmp(argv[1], "sockerr"))
        return mode_sockerr();
    if (!strcmp(argv[1], "symlink"))
        return mode_symlink();
    fprintf(stderr, "unknown mode %s\n", argv[1]);
    return 2;
}
