/* Helpers shared by the test payloads: print results in a form that is identical natively
 * and under km (errno names rather than libc-specific strerror texts, no addresses). */
#ifndef PAYLOAD_H
#define PAYLOAD_H

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#ifndef PAYLOAD_FLAVOUR
#define PAYLOAD_FLAVOUR "unknown"
#endif
#ifndef PAYLOAD_PIE
#define PAYLOAD_PIE 0
#endif

static inline const char *errno_name(int e)
{
    switch (e) {
    case 0: return "OK";
    case EPERM: return "EPERM";
    case ENOENT: return "ENOENT";
    case EINTR: return "EINTR";
    case EIO: return "EIO";
    case EBADF: return "EBADF";
    case EAGAIN: return "EAGAIN";
    case ENOMEM: return "ENOMEM";
    case EACCES: return "EACCES";
    case EFAULT: return "EFAULT";
    case EBUSY: return "EBUSY";
    case EEXIST: return "EEXIST";
    case EXDEV: return "EXDEV";
    case ENOTDIR: return "ENOTDIR";
    case EISDIR: return "EISDIR";
    case EINVAL: return "EINVAL";
    case EMFILE: return "EMFILE";
    case ENOTTY: return "ENOTTY";
    case EFBIG: return "EFBIG";
    case ENOSPC: return "ENOSPC";
    case ESPIPE: return "ESPIPE";
    case EROFS: return "EROFS";
    case EPIPE: return "EPIPE";
    case ERANGE: return "ERANGE";
    case ENAMETOOLONG: return "ENAMETOOLONG";
    case ENOSYS: return "ENOSYS";
    case ENOTEMPTY: return "ENOTEMPTY";
    case ELOOP: return "ELOOP";
    case ENOEXEC: return "ENOEXEC";
    case E2BIG: return "E2BIG";
    case EOPNOTSUPP: return "EOPNOTSUPP";
    case ENOTSOCK: return "ENOTSOCK";
    case EADDRINUSE: return "EADDRINUSE";
    case ECONNREFUSED: return "ECONNREFUSED";
    case ENOTCONN: return "ENOTCONN";
    default: {
        static char buf[32];
        snprintf(buf, sizeof buf, "errno %d", e);
        return buf;
    }
    }
}

/* "what: 12" or "what: -1 ENOENT" */
static inline long report(const char *what, long ret)
{
    if (ret < 0)
        printf("%s: %ld %s\n", what, ret, errno_name(errno));
    else
        printf("%s: %ld\n", what, ret);
    return ret;
}

/* Print bytes with C escapes, so the output stays one readable line. */
static inline void print_escaped(const char *label, const void *data, long n)
{
    const unsigned char *p = data;
    printf("%s: \"", label);
    for (long i = 0; i < n; i++) {
        if (p[i] == '\n') printf("\\n");
        else if (p[i] == '\\' || p[i] == '"') printf("\\%c", p[i]);
        else if (p[i] >= 32 && p[i] < 127) putchar(p[i]);
        else printf("\\x%02x", p[i]);
    }
    printf("\" (%ld bytes)\n", n);
}

#define CHECK(cond) printf("%s: %s\n", #cond, (cond) ? "yes" : "no")

static inline void die(const char *what)
{
    printf("FATAL %s: %s\n", what, errno_name(errno));
    exit(99);
}

#endif
