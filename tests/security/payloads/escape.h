/* Helpers shared by the escape payloads.
 *
 * Every payload prints one line per attempt, "WHAT: RESULT", where RESULT is "OK ..." or
 * an errno name, and nothing that differs between two runs of the same program (no
 * addresses, descriptor numbers or times unless a test asks for them), so that the lines
 * printed in a native chroot and under km --root can be compared one by one.
 */
#ifndef ESCAPE_H
#define ESCAPE_H

#ifndef _GNU_SOURCE
#define _GNU_SOURCE
#endif
#include <errno.h>
#include <fcntl.h>
#include <stdarg.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <unistd.h>

/* Climbs far more levels than any test directory is deep: from anywhere inside the root
 * it reaches the host's / if `..` is ever followed with host semantics. */
#define UP "../../../../../../../../../../../../../../../../../../../../../../../.."

static inline const char *ename(int e)
{
    switch (e) {
#define E(name) case name: return #name;
    E(EPERM) E(ENOENT) E(ESRCH) E(EINTR) E(EIO) E(ENXIO) E(E2BIG) E(ENOEXEC) E(EBADF)
    E(ECHILD) E(EAGAIN) E(ENOMEM) E(EACCES) E(EFAULT) E(EBUSY) E(EEXIST) E(EXDEV)
    E(ENODEV) E(ENOTDIR) E(EISDIR) E(EINVAL) E(ENFILE) E(EMFILE) E(ENOTTY) E(ETXTBSY)
    E(EFBIG) E(ENOSPC) E(ESPIPE) E(EROFS) E(EMLINK) E(EPIPE) E(ERANGE) E(ENAMETOOLONG)
    E(ENOSYS) E(ENOTEMPTY) E(ELOOP) E(ENODATA) E(EOVERFLOW) E(ENOTSOCK) E(EDESTADDRREQ)
    E(EMSGSIZE) E(EPROTOTYPE) E(ENOPROTOOPT) E(EPROTONOSUPPORT) E(EOPNOTSUPP)
    E(EAFNOSUPPORT) E(EADDRINUSE) E(EADDRNOTAVAIL) E(ENETUNREACH) E(ECONNRESET)
    E(EISCONN) E(ENOTCONN) E(ETIMEDOUT) E(ECONNREFUSED) E(EALREADY) E(EINPROGRESS)
    E(ESTALE) E(EDQUOT) E(ECANCELED) E(EOWNERDEAD) E(EBADFD)
#undef E
    default: {
        static char buf[32];
        snprintf(buf, sizeof buf, "errno%d", e);
        return buf;
    }
    }
}

/* "what: OK" for ret >= 0, else "what: ENAME". Returns ret. */
static inline long say(const char *what, long ret)
{
    if (ret < 0)
        printf("%s: %s\n", what, ename(errno));
    else
        printf("%s: OK\n", what);
    return ret;
}

/* Format into one of 8 static buffers, used round-robin (labels and short-lived paths). */
static inline const char *fmt(const char *f, ...)
{
    static char bufs[8][8192];
    static int next;
    char *buf = bufs[next++ % 8];
    va_list ap;
    va_start(ap, f);
    vsnprintf(buf, sizeof bufs[0], f, ap);
    va_end(ap);
    return buf;
}

/* Bytes as one escaped line (at most 64 of them). */
static inline void print_bytes(const char *data, long n)
{
    putchar('"');
    for (long i = 0; i < n && i < 64; i++) {
        unsigned char c = data[i];
        if (c == '\n') printf("\\n");
        else if (c == '"' || c == '\\') printf("\\%c", c);
        else if (c >= 32 && c < 127) putchar(c);
        else printf("\\x%02x", c);
    }
    putchar('"');
}

/* Read what an open descriptor holds (closing it): "what: OK "content"" or the errno. */
static inline void say_contents(const char *what, int fd)
{
    if (fd < 0) {
        printf("%s: %s\n", what, ename(errno));
        return;
    }
    char buf[256];
    long n = pread(fd, buf, sizeof buf, 0);
    if (n < 0)
        n = read(fd, buf, sizeof buf);
    printf("%s: OK ", what);
    if (n < 0)
        printf("read %s", ename(errno));
    else
        print_bytes(buf, n);
    printf("\n");
    close(fd);
}

static inline void die(const char *what)
{
    printf("FATAL %s: %s\n", what, ename(errno));
    exit(99);
}

/* Line-buffered output: a payload that km kills still shows how far it got. */
static inline void line_buffered(void)
{
    setvbuf(stdout, NULL, _IOLBF, 0);
}

/* Create a symlink the payload will then use to try to get out (exits on failure). */
static inline void make_link(const char *target, const char *link)
{
    if (symlink(target, link) < 0)
        die(fmt("symlink %s", link));
}

static inline void make_file(const char *path, const char *contents)
{
    int fd = open(path, O_WRONLY | O_CREAT | O_TRUNC, 0644);
    if (fd < 0 || write(fd, contents, strlen(contents)) < 0)
        die(fmt("create %s", path));
    close(fd);
}

#endif
