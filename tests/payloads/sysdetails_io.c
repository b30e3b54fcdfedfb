/* The details of vmsplice, splice, tee, Linux AIO (io_setup, io_submit, io_getevents,
 * io_pgetevents, io_cancel, io_destroy) and pidfds (pidfd_open, pidfd_send_signal,
 * pidfd_getfd, waitid(P_PIDFD)): results, errno names and the order Linux checks things
 * in, for tests/integration/test_syscall_details_io.py. argv[1] picks the group; files
 * are made in the working directory. Prints no addresses, pids or descriptor numbers
 * that could differ between a native run and a run under km. */
#define _GNU_SOURCE
#include <fcntl.h>
#include <limits.h>
#include <poll.h>
#include <pthread.h>
#include <signal.h>
#include <stdint.h>
#include <sys/eventfd.h>
#include <sys/mman.h>
#include <sys/resource.h>
#include <sys/sendfile.h>
#include <sys/syscall.h>
#include <sys/time.h>
#include <sys/uio.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "payload.h"

#ifndef SYS_pidfd_open
#define SYS_pidfd_open 434
#endif
#ifndef SYS_pidfd_send_signal
#define SYS_pidfd_send_signal 424
#endif
#ifndef SYS_pidfd_getfd
#define SYS_pidfd_getfd 438
#endif
#ifndef SYS_io_pgetevents
#define SYS_io_pgetevents 333
#endif
#ifndef P_PIDFD
#define P_PIDFD 3
#endif
#define PIDFD_THREAD O_EXCL
#define PIDFD_SIGNAL_THREAD 1
#define PIDFD_SIGNAL_THREAD_GROUP 2
#define PIDFD_SIGNAL_PROCESS_GROUP 4
#ifndef SPLICE_F_MOVE
#define SPLICE_F_MOVE 1
#define SPLICE_F_NONBLOCK 2
#define SPLICE_F_MORE 4
#define SPLICE_F_GIFT 8
#endif

static long page;

/* What errno_name does not know, by name (the rest go to payload.h). */
static const char *ename(int e)
{
    switch (e) {
    case ESRCH: return "ESRCH";
    case ECHILD: return "ECHILD";
    case EINPROGRESS: return "EINPROGRESS";
    case ECANCELED: return "ECANCELED";
    default: return errno_name(e);
    }
}

static long show(const char *what, long ret)
{
    if (ret < 0)
        printf("%s: -1 %s\n", what, ename(errno));
    else
        printf("%s: %ld\n", what, ret);
    return ret;
}

/* A page-aligned anonymous mapping of n pages, filled with c. */
static char *pages(int n, int c)
{
    char *p = mmap(NULL, n * page, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
    if (p == MAP_FAILED)
        die("mmap");
    memset(p, c, n * page);
    return p;
}

/* An address where nothing is ever mapped (below where static programs are loaded,
 * above mmap_min_addr), natively and under km: a freed mapping could be reused by the
 * next mmap (an aio ring, a thread's stack). */
#define HOLE ((char *)0x200000)

/* Pages mapped just below HOLE: a buffer there runs off the end of its mapping. */
static char *below_hole(int n, int c)
{
    char *p = mmap(HOLE - n * page, n * page, PROT_READ | PROT_WRITE,
                   MAP_PRIVATE | MAP_ANONYMOUS | MAP_FIXED, -1, 0);
    if (p == MAP_FAILED)
        die("mmap below the hole");
    memset(p, c, n * page);
    return p;
}

/* Drain a pipe (non-blocking) and print what it held. */
static void drain(const char *label, int fd)
{
    static char buf[1 << 17];
    int flags = fcntl(fd, F_GETFL);
    fcntl(fd, F_SETFL, flags | O_NONBLOCK);
    long total = 0, n;
    while ((n = read(fd, buf + total, sizeof buf - total)) > 0)
        total += n;
    fcntl(fd, F_SETFL, flags);
    if (total <= 64) {
        print_escaped(label, buf, total);
    } else {
        unsigned long sum = 0;
        for (long i = 0; i < total; i++)
            sum = sum * 31 + (unsigned char)buf[i];
        printf("%s: %ld bytes, checksum %lx\n", label, total, sum);
    }
}

static volatile sig_atomic_t sigpipes, usr1, usr1_code, usr1_from_self, usr1_value, usr2_tid;

static void on_sigpipe(int s)
{
    (void)s;
    sigpipes++;
}

static void on_usr1(int s, siginfo_t *si, void *ctx)
{
    (void)s, (void)ctx;
    usr1++;
    usr1_code = si->si_code;
    usr1_from_self = si->si_pid == getpid();
    usr1_value = si->si_value.sival_int;
}

static void on_usr2(int s)
{
    (void)s;
    usr2_tid = (sig_atomic_t)syscall(SYS_gettid);
}

static void on_alarm(int s)
{
    (void)s;
}

static void handle(int signo, void (*fn)(int), int flags)
{
    struct sigaction sa = {0};
    sa.sa_handler = fn;
    sa.sa_flags = flags;
    sigaction(signo, &sa, NULL);
}

/* The descriptor number one past the guest's hard limit: not a descriptor natively,
 * and inside km's own reserved range under km. */
static int beyond_limit(void)
{
    struct rlimit rl;
    getrlimit(RLIMIT_NOFILE, &rl);
    return rl.rlim_max > INT_MAX - 8 ? INT_MAX - 8 : (int)rl.rlim_max + 3;
}

/* ---- vmsplice ----------------------------------------------------------------------- */

static void test_vmsplice(void)
{
    int p[2];
    char *buf = pages(4, 'a');
    struct iovec iov[3];
    static const char rodata[] = "read-only bytes";

    if (pipe(p) < 0)
        die("pipe");
    memcpy(buf, "hello ", 6);
    memcpy(buf + page, "world", 5);
    iov[0] = (struct iovec){buf, 6};
    iov[1] = (struct iovec){buf + page, 5};
    show("vmsplice two buffers", vmsplice(p[1], iov, 2, 0));
    drain("pipe holds", p[0]);

    /* The pipe holds the pages themselves: a change made after vmsplice is what the
     * reader sees. */
    memcpy(buf, "before", 6);
    iov[0] = (struct iovec){buf, 6};
    show("vmsplice then change", vmsplice(p[1], iov, 1, 0));
    memcpy(buf, "AFTER!", 6);
    drain("reader sees", p[0]);

    /* Gifted pages, then unmapped: the pipe keeps them. */
    char *gift = pages(2, 'g');
    memcpy(gift, "gifted page", 11);
    iov[0] = (struct iovec){gift, 2 * page};
    show("vmsplice gift", vmsplice(p[1], iov, 1, SPLICE_F_GIFT));
    munmap(gift, 2 * page);
    drain("after munmap", p[0]);

    /* From read-only memory. */
    iov[0] = (struct iovec){(void *)rodata, sizeof rodata - 1};
    show("vmsplice rodata", vmsplice(p[1], iov, 1, 0));
    drain("pipe holds", p[0]);

    /* The read end: vmsplice copies the pipe into the buffers. */
    write(p[1], "0123456789", 10);
    char *out = pages(2, '.');
    iov[0] = (struct iovec){out, 3};
    iov[1] = (struct iovec){out + page, 4};
    show("vmsplice to user", vmsplice(p[0], iov, 2, 0));
    print_escaped("first", out, 3);
    print_escaped("second", out + page, 4);
    drain("left in pipe", p[0]);

    /* Into read-only memory (the read end writes user memory). */
    write(p[1], "xyz", 3);
    iov[0] = (struct iovec){(void *)rodata, 3};
    show("vmsplice to rodata", vmsplice(p[0], iov, 1, 0));
    drain("left in pipe", p[0]);

    /* Bad memory. */
    char *gap = HOLE;
    iov[0] = (struct iovec){gap, 10};
    show("vmsplice unmapped base", vmsplice(p[1], iov, 1, 0));
    show("vmsplice unmapped iovec array", vmsplice(p[1], (struct iovec *)gap, 1, 0));
    show("vmsplice NULL iovec array", vmsplice(p[1], NULL, 1, 0));
    iov[0] = (struct iovec){buf, 6};
    iov[1] = (struct iovec){gap, 6};
    show("vmsplice good then unmapped", vmsplice(p[1], iov, 2, 0));
    drain("pipe holds", p[0]);
    /* A buffer running off the end of its mapping. */
    char *edge = below_hole(2, 'e');
    iov[0] = (struct iovec){edge + page, 2 * page};
    show("vmsplice partly mapped", vmsplice(p[1], iov, 1, 0));
    drain("pipe holds", p[0]);
    write(p[1], "0123456789", 10);
    iov[0] = (struct iovec){edge + 2 * page - 4, 8};
    show("vmsplice to partly mapped", vmsplice(p[0], iov, 1, 0));
    print_escaped("landed", edge + 2 * page - 4, 4);
    drain("left in pipe", p[0]);
    char *none = pages(1, 'n');
    mprotect(none, page, PROT_NONE);
    iov[0] = (struct iovec){none, 10};
    show("vmsplice PROT_NONE", vmsplice(p[1], iov, 1, 0));
    show("vmsplice to PROT_NONE", vmsplice(p[0], iov, 1, SPLICE_F_NONBLOCK));

    /* Two mappings side by side, made separately. */
    char *two = pages(2, 0);
    munmap(two + page, page);
    if (mmap(two + page, page, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS | MAP_FIXED,
             -1, 0) == MAP_FAILED)
        die("mmap fixed");
    memset(two, '1', page);
    memset(two + page, '2', page);
    iov[0] = (struct iovec){two + page - 3, 6};
    show("vmsplice across mappings", vmsplice(p[1], iov, 1, 0));
    drain("pipe holds", p[0]);

    /* Lengths. */
    iov[0] = (struct iovec){HOLE - page, (size_t)1 << 62};
    show("vmsplice len 2^62", vmsplice(p[1], iov, 1, SPLICE_F_NONBLOCK));
    drain("pipe holds", p[0]);
    iov[0] = (struct iovec){buf, (size_t)-1};
    show("vmsplice len -1", vmsplice(p[1], iov, 1, 0));
    iov[0] = (struct iovec){buf, 3};
    iov[1] = (struct iovec){gap, (size_t)-1};
    show("vmsplice second len -1", vmsplice(p[1], iov, 2, 0));
    iov[0] = (struct iovec){(void *)0x7ffffffff000, 16};
    show("vmsplice at TASK_SIZE", vmsplice(p[1], iov, 1, 0));
    iov[0] = (struct iovec){(void *)0xffff800000000000, 16};
    show("vmsplice kernel address", vmsplice(p[1], iov, 1, 0));
    iov[0] = (struct iovec){buf, 0};
    show("vmsplice zero length", vmsplice(p[1], iov, 1, 0));
    show("vmsplice zero segments", vmsplice(p[1], iov, 0, 0));
    show("vmsplice 1025 segments", vmsplice(p[1], iov, 1025, 0));
    show("vmsplice 2^40 segments", vmsplice(p[1], iov, (size_t)1 << 40, 0));
    /* Many segments: more than fit in the pipe. */
    struct iovec many[64];
    char *big = pages(64, 'm');
    for (int i = 0; i < 64; i++)
        many[i] = (struct iovec){big + i * page, page};
    show("vmsplice 64 pages nonblock", vmsplice(p[1], many, 64, SPLICE_F_NONBLOCK));
    show("vmsplice full pipe nonblock", vmsplice(p[1], many, 1, SPLICE_F_NONBLOCK));
    drain("pipe holds", p[0]);

    /* Flags and descriptors, in Linux's order. */
    iov[0] = (struct iovec){buf, 6};
    show("vmsplice bad flags", vmsplice(p[1], iov, 1, 0x10));
    show("vmsplice bad flags bad fd", vmsplice(-1, iov, 1, 0x10));
    show("vmsplice fd -1", vmsplice(-1, iov, 1, 0));
    show("vmsplice fd beyond limit", vmsplice(beyond_limit(), iov, 1, 0));
    show("vmsplice bad fd bad iovec", vmsplice(-1, (struct iovec *)gap, 1, 0));
    int file = open("vmsplice.txt", O_CREAT | O_RDWR | O_TRUNC, 0644);
    show("vmsplice regular file", vmsplice(file, iov, 1, 0));
    int path = open(".", O_PATH);
    show("vmsplice O_PATH", vmsplice(path, iov, 1, 0));
    show("vmsplice O_PATH bad iovec", vmsplice(path, (struct iovec *)gap, 1, 0));
    close(path);
    close(file);
    unlink("vmsplice.txt");

    /* No reader: EPIPE and SIGPIPE. */
    handle(SIGPIPE, on_sigpipe, 0);
    close(p[0]);
    show("vmsplice no reader", vmsplice(p[1], iov, 1, 0));
    printf("SIGPIPEs: %d\n", (int)sigpipes);
    close(p[1]);
}

/* ---- splice and tee ------------------------------------------------------------------ */

static void test_splice(void)
{
    int p[2], q[2];
    loff_t off;
    static const loff_t ro_off = 2;
    char *gap = HOLE;

    if (pipe(p) < 0 || pipe(q) < 0)
        die("pipe");
    int file = open("splice.txt", O_CREAT | O_RDWR | O_TRUNC, 0644);
    write(file, "0123456789abcdef", 16);

    off = 4;
    show("splice file->pipe off 4", splice(file, &off, p[1], NULL, 5, 0));
    printf("off now %lld, file pos %lld\n", (long long)off, (long long)lseek(file, 0, SEEK_CUR));
    drain("pipe holds", p[0]);
    lseek(file, 10, SEEK_SET);
    show("splice file->pipe at pos", splice(file, NULL, p[1], NULL, 3, 0));
    printf("file pos %lld\n", (long long)lseek(file, 0, SEEK_CUR));
    drain("pipe holds", p[0]);

    write(p[1], "XYZ", 3);
    off = 1;
    show("splice pipe->file off 1", splice(p[0], NULL, file, &off, 3, 0));
    printf("off now %lld\n", (long long)off);
    char got[17] = {0};
    pread(file, got, 16, 0);
    print_escaped("file", got, 16);

    /* Offsets: ESPIPE for a pipe whatever the pointer; EFAULT for a bad one; read-only:
     * the data moves, then EFAULT writing the offset back. */
    show("splice off_in on pipe", splice(p[0], &off, file, NULL, 3, 0));
    show("splice bad off_in on pipe", splice(p[0], (loff_t *)gap, file, NULL, 3, 0));
    show("splice off_out on pipe", splice(file, NULL, p[1], &off, 3, 0));
    show("splice bad off_in on file", splice(file, (loff_t *)gap, p[1], NULL, 3, 0));
    show("splice bad off_out on file", splice(p[0], NULL, file, (loff_t *)gap, 3, 0));
    show("splice read-only off_in", splice(file, (loff_t *)&ro_off, p[1], NULL, 3, 0));
    printf("ro_off still %lld\n", (long long)ro_off);
    drain("pipe holds", p[0]);
    off = -1;
    show("splice negative offset", splice(file, &off, p[1], NULL, 3, 0));
    off = LLONG_MAX;
    show("splice offset LLONG_MAX", splice(file, &off, p[1], NULL, 3, 0));

    /* Order: len 0 first, then flags, then descriptors. */
    show("splice len 0 bad fds", splice(-1, NULL, -1, NULL, 0, 0));
    show("splice len 0 bad flags", splice(p[0], NULL, p[1], NULL, 0, 0x100));
    show("splice bad flags bad fds", splice(-1, NULL, -1, NULL, 1, 0x100));
    show("splice bad fd_in", splice(-1, NULL, p[1], NULL, 1, 0));
    show("splice bad fd_out", splice(p[0], NULL, -1, NULL, 1, 0));
    show("splice fd beyond limit", splice(beyond_limit(), NULL, p[1], NULL, 1, 0));
    show("splice out beyond limit", splice(p[0], NULL, beyond_limit(), NULL, 1, 0));
    show("splice bad fds bad off", splice(-1, (loff_t *)gap, -1, NULL, 1, 0));
    int file2 = open("splice2.txt", O_CREAT | O_RDWR | O_TRUNC, 0644);
    show("splice file->file", splice(file, NULL, file2, NULL, 3, 0));
    int wronly = open("splice.txt", O_WRONLY);
    show("splice from write-only", splice(wronly, NULL, p[1], NULL, 3, 0));
    show("splice to read-only pipe end", splice(file, NULL, p[0], NULL, 3, 0));
    show("splice pipe to itself", splice(p[0], NULL, p[1], NULL, 3, SPLICE_F_NONBLOCK));
    show("splice empty pipe nonblock", splice(p[0], NULL, q[1], NULL, 3, SPLICE_F_NONBLOCK));
    write(p[1], "pipe to pipe", 12);
    show("splice pipe->pipe", splice(p[0], NULL, q[1], NULL, 100, SPLICE_F_MOVE | SPLICE_F_MORE));
    drain("second pipe", q[0]);
    show("splice huge len", splice(file, &(loff_t){0}, p[1], NULL, (size_t)-1, 0));
    drain("pipe holds", p[0]);

    /* sendfile reads *offset before the descriptors and writes it back even after an
     * error; copy_file_range reads the offsets after the descriptors, writes them back
     * only when it copied something. */
    show("sendfile read-only offset", sendfile(p[1], file, (off_t *)&ro_off, 3));
    drain("pipe holds", p[0]);
    show("sendfile bad fd, read-only offset", sendfile(-1, file, (off_t *)&ro_off, 3));
    show("sendfile bad fd, bad offset", sendfile(-1, file, (off_t *)gap, 3));
    show("sendfile fd beyond limit", sendfile(beyond_limit(), file, NULL, 3));
    off = 3;
    show("sendfile offset 3", sendfile(p[1], file, (off_t *)&off, 4));
    printf("off now %lld\n", (long long)off);
    drain("pipe holds", p[0]);
    show("copy_file_range read-only off_in", copy_file_range(file, (loff_t *)&ro_off, file2,
                                                             NULL, 3, 0));
    show("copy_file_range bad off_in", copy_file_range(file, (loff_t *)gap, file2, NULL, 3, 0));
    show("copy_file_range bad off_in, bad flags", copy_file_range(file, (loff_t *)gap, file2,
                                                                  NULL, 3, 1));
    show("copy_file_range bad fd, bad off_in", copy_file_range(-1, (loff_t *)gap, file2,
                                                               NULL, 3, 0));
    off = 100;
    show("copy_file_range at EOF, read-only off_out", copy_file_range(file, &off, file2,
                                                                      (loff_t *)&ro_off, 3, 0));
    lseek(file2, 0, SEEK_SET);
    memset(got, 0, sizeof got);
    read(file2, got, 16);
    print_escaped("second file", got, strlen(got));

    /* tee: flags first, then len 0, then descriptors. */
    write(p[1], "teed data", 9);
    show("tee", tee(p[0], q[1], 100, 0));
    drain("copy", q[0]);
    drain("original", p[0]);
    show("tee bad flags", tee(p[0], q[1], 1, 0x100));
    show("tee len 0 bad flags", tee(p[0], q[1], 0, 0x100));
    show("tee len 0 bad fds", tee(-1, -1, 0, 0));
    show("tee bad fd_in", tee(-1, q[1], 1, 0));
    show("tee bad fd_out", tee(p[0], -1, 1, 0));
    show("tee fd beyond limit", tee(beyond_limit(), q[1], 1, 0));
    show("tee out beyond limit", tee(p[0], beyond_limit(), 1, 0));
    show("tee file", tee(file, q[1], 1, 0));
    show("tee same pipe", tee(p[0], p[1], 1, 0));
    show("tee wrong ends", tee(p[1], q[0], 1, 0));
    show("tee empty nonblock", tee(p[0], q[1], 1, SPLICE_F_NONBLOCK));

    /* No reader: EPIPE and SIGPIPE, for splice and tee. */
    handle(SIGPIPE, on_sigpipe, 0);
    close(q[0]);
    write(p[1], "abc", 3);
    show("tee no reader", tee(p[0], q[1], 3, 0));
    printf("SIGPIPEs: %d\n", (int)sigpipes);
    show("splice no reader", splice(p[0], NULL, q[1], NULL, 3, 0));
    printf("SIGPIPEs: %d\n", (int)sigpipes);
    show("splice file no reader", splice(file, &(loff_t){0}, q[1], NULL, 3, 0));
    printf("SIGPIPEs: %d\n", (int)sigpipes);
    close(q[1]);
    close(p[0]);
    close(p[1]);
    close(file);
    close(file2);
    close(wronly);
    unlink("splice.txt");
    unlink("splice2.txt");
}

/* ---- AIO ----------------------------------------------------------------------------- */

typedef unsigned long aio_context_t;
enum { CMD_PREAD = 0, CMD_PWRITE = 1, CMD_FSYNC = 2, CMD_FDSYNC = 3, CMD_POLL = 5,
       CMD_NOOP = 6, CMD_PREADV = 7, CMD_PWRITEV = 8 };
#define FLAG_RESFD 1

struct iocb {
    uint64_t aio_data;
    uint32_t aio_key;
    int32_t aio_rw_flags;
    uint16_t aio_lio_opcode;
    int16_t aio_reqprio;
    uint32_t aio_fildes;
    uint64_t aio_buf;
    uint64_t aio_nbytes;
    int64_t aio_offset;
    uint64_t aio_reserved2;
    uint32_t aio_flags;
    uint32_t aio_resfd;
};

struct io_event {
    uint64_t data;
    uint64_t obj;
    int64_t res;
    int64_t res2;
};

struct aio_ring {
    unsigned id, nr, head, tail, magic, compat_features, incompat_features, header_length;
};
#define AIO_RING_MAGIC 0xa10a10a1

static long io_setup(unsigned nr, aio_context_t *ctx)
{
    return syscall(SYS_io_setup, nr, ctx);
}

static long io_destroy(aio_context_t ctx)
{
    return syscall(SYS_io_destroy, ctx);
}

static long io_submit(aio_context_t ctx, long nr, struct iocb **iocbs)
{
    return syscall(SYS_io_submit, ctx, nr, iocbs);
}

static long io_cancel(aio_context_t ctx, struct iocb *iocb, struct io_event *result)
{
    return syscall(SYS_io_cancel, ctx, iocb, result);
}

static long io_getevents(aio_context_t ctx, long min_nr, long nr, struct io_event *events,
                         struct timespec *timeout)
{
    return syscall(SYS_io_getevents, ctx, min_nr, nr, events, timeout);
}

/* libaio's io_getevents: it reads the ring in user space when the context points at one
 * (a zero timeout with head == tail returns 0 at once), and makes the call otherwise. */
static long libaio_getevents(aio_context_t ctx, long min_nr, long nr, struct io_event *events,
                             struct timespec *timeout)
{
    struct aio_ring *ring = (struct aio_ring *)ctx;
    if (ring == NULL || ring->magic != AIO_RING_MAGIC)
        goto do_syscall;
    if (timeout != NULL && timeout->tv_sec == 0 && timeout->tv_nsec == 0) {
        if (ring->head == ring->tail)
            return 0;
    }
do_syscall:
    return io_getevents(ctx, min_nr, nr, events, timeout);
}

static struct iocb make_iocb(int op, int fd, void *buf, uint64_t n, int64_t offset,
                             uint64_t data)
{
    struct iocb cb;
    memset(&cb, 0, sizeof cb);
    cb.aio_lio_opcode = op;
    cb.aio_fildes = fd;
    cb.aio_buf = (uint64_t)(uintptr_t)buf;
    cb.aio_nbytes = n;
    cb.aio_offset = offset;
    cb.aio_data = data;
    return cb;
}

/* Print events in the order of their aio_data, and which of cbs each one names. */
static void show_events(const char *label, long n, struct io_event *ev, struct iocb **cbs,
                        int ncbs)
{
    if (n < 0) {
        printf("%s: -1 %s\n", label, ename(errno));
        return;
    }
    printf("%s: %ld\n", label, n);
    for (long i = 1; i < n; i++)  /* insertion sort by data */
        for (long j = i; j > 0 && ev[j - 1].data > ev[j].data; j--) {
            struct io_event t = ev[j];
            ev[j] = ev[j - 1];
            ev[j - 1] = t;
        }
    for (long i = 0; i < n; i++) {
        int which = -1;
        for (int k = 0; k < ncbs; k++)
            if (ev[i].obj == (uint64_t)(uintptr_t)cbs[k])
                which = k;
        if (ev[i].res < 0)
            printf("  data %llu iocb #%d res %s res2 %lld\n", (unsigned long long)ev[i].data,
                   which, ename((int)-ev[i].res), (long long)ev[i].res2);
        else
            printf("  data %llu iocb #%d res %lld res2 %lld\n", (unsigned long long)ev[i].data,
                   which, (long long)ev[i].res, (long long)ev[i].res2);
    }
}

/* Reap exactly n events (waiting up to 5 s). */
static long reap(aio_context_t ctx, long n, struct io_event *ev)
{
    struct timespec ts = {5, 0};
    long got = 0;
    while (got < n) {
        long r = io_getevents(ctx, n - got, n - got, ev + got, &ts);
        if (r <= 0)
            return got ? got : r;
        got += r;
    }
    return got;
}

static void test_aio(void)
{
    aio_context_t ctx = 0;
    struct io_event ev[16];
    struct iocb cb[8], *cbs[8];
    for (int i = 0; i < 8; i++)
        cbs[i] = &cb[i];

    show("io_setup", io_setup(8, &ctx));
    printf("context set: %s\n", ctx ? "yes" : "no");
    show("io_setup again, context not 0", io_setup(8, &ctx));

    int fd = open("aio.txt", O_CREAT | O_RDWR | O_TRUNC, 0644);
    char *wbuf = pages(2, 0), *rbuf = pages(2, '.');
    memcpy(wbuf, "asynchronous hello", 18);

    cb[0] = make_iocb(CMD_PWRITE, fd, wbuf, 18, 0, 100);
    show("io_submit pwrite", io_submit(ctx, 1, cbs));
    printf("aio_key after submit: %u\n", cb[0].aio_key);
    show_events("reaped", reap(ctx, 1, ev), ev, cbs, 1);

    cb[0] = make_iocb(CMD_PREAD, fd, rbuf, 5, 0, 7);
    cb[1] = make_iocb(CMD_PREAD, fd, rbuf + 100, 100, 6, 8);
    cb[2] = make_iocb(CMD_FSYNC, fd, NULL, 0, 0, 9);
    cb[3] = make_iocb(CMD_FDSYNC, fd, NULL, 0, 0, 10);
    show("io_submit 4", io_submit(ctx, 4, cbs));
    show_events("reaped", reap(ctx, 4, ev), ev, cbs, 4);
    print_escaped("read 1", rbuf, 5);
    print_escaped("read 2", rbuf + 100, 12);

    /* libaio's user-space peek, then the system call. */
    struct timespec zero = {0, 0};
    show("libaio getevents, nothing pending", libaio_getevents(ctx, 0, 8, ev, &zero));
    cb[0] = make_iocb(CMD_PREAD, fd, rbuf, 4, 13, 11);
    io_submit(ctx, 1, cbs);
    struct timespec five = {5, 0};
    show_events("libaio getevents", libaio_getevents(ctx, 1, 8, ev, &five), ev, cbs, 1);

    /* Vectored, across pages and mappings. */
    struct iovec wv[3] = {{wbuf, 5}, {wbuf + page, 3}, {wbuf + 6, 5}};
    memcpy(wbuf + page, "---", 3);
    cb[0] = make_iocb(CMD_PWRITEV, fd, wv, 3, 20, 12);
    show("io_submit pwritev", io_submit(ctx, 1, cbs));
    show_events("reaped", reap(ctx, 1, ev), ev, cbs, 1);
    char *two = pages(2, 0);
    munmap(two + page, page);
    mmap(two + page, page, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS | MAP_FIXED,
         -1, 0);
    struct iovec rv[2] = {{two + page - 4, 8}, {rbuf, 5}};
    cb[0] = make_iocb(CMD_PREADV, fd, rv, 2, 20, 13);
    show("io_submit preadv across mappings", io_submit(ctx, 1, cbs));
    show_events("reaped", reap(ctx, 1, ev), ev, cbs, 1);
    print_escaped("first", two + page - 4, 8);
    print_escaped("second", rbuf, 5);
    cb[0] = make_iocb(CMD_PREAD, fd, two + page - 4, 8, 0, 14);
    show("io_submit pread across mappings", io_submit(ctx, 1, cbs));
    show_events("reaped", reap(ctx, 1, ev), ev, cbs, 1);
    print_escaped("read", two + page - 4, 8);

    /* Completion through an eventfd. */
    int efd = eventfd(0, 0);
    for (int i = 0; i < 3; i++) {
        cb[i] = make_iocb(CMD_PREAD, fd, rbuf + 10 * i, 3, i, 20 + i);
        cb[i].aio_flags = FLAG_RESFD;
        cb[i].aio_resfd = efd;
    }
    show("io_submit 3 with resfd", io_submit(ctx, 3, cbs));
    uint64_t count = 0, total = 0;
    while (total < 3 && read(efd, &count, 8) == 8)
        total += count;
    printf("eventfd counted %llu\n", (unsigned long long)total);
    show_events("reaped", reap(ctx, 3, ev), ev, cbs, 3);

    /* An operation that stays in flight: poll on an empty pipe. */
    int p[2];
    pipe(p);
    cb[0] = make_iocb(CMD_POLL, p[0], (void *)(uintptr_t)POLLIN, 0, 0, 30);
    show("io_submit poll", io_submit(ctx, 1, cbs));
    show("getevents, poll pending", io_getevents(ctx, 0, 8, ev, &zero));
    show("libaio getevents, poll pending", libaio_getevents(ctx, 0, 8, ev, &zero));
    struct timespec short_wait = {0, 20 * 1000 * 1000};
    show("getevents min 1, times out", io_getevents(ctx, 1, 8, ev, &short_wait));
    write(p[1], "x", 1);
    show_events("poll reaped", reap(ctx, 1, ev), ev, cbs, 1);

    /* A signal while waiting: EINTR, even with SA_RESTART. */
    cb[0] = make_iocb(CMD_POLL, p[1], (void *)(uintptr_t)POLLERR, 0, 0, 31);
    io_submit(ctx, 1, cbs);
    handle(SIGALRM, on_alarm, SA_RESTART);
    struct itimerval it = {{0, 0}, {0, 50 * 1000}};
    setitimer(ITIMER_REAL, &it, NULL);
    show("getevents interrupted", io_getevents(ctx, 1, 8, ev, NULL));

    /* io_cancel: the poll is cancelled, its event comes through the ring. */
    struct io_event result;
    show("io_cancel poll", io_cancel(ctx, cbs[0], &result));
    show_events("cancelled", reap(ctx, 1, ev), ev, cbs, 1);
    show("io_cancel again", io_cancel(ctx, cbs[0], &result));
    cb[1] = make_iocb(CMD_PREAD, fd, rbuf, 1, 0, 32);
    show("io_cancel never submitted", io_cancel(ctx, &cb[1], &result));
    cb[1].aio_key = 5;
    show("io_cancel bad key", io_cancel(ctx, &cb[1], &result));
    show("io_cancel bad iocb", io_cancel(ctx, (struct iocb *)HOLE, &result));
    show("io_cancel bad context", io_cancel(12345, &cb[0], &result));

    /* io_pgetevents. */
    cb[0] = make_iocb(CMD_PREAD, fd, rbuf, 2, 0, 40);
    io_submit(ctx, 1, cbs);
    sigset_t mask;
    sigemptyset(&mask);
    struct { const sigset_t *set; size_t size; } usig = {&mask, 8};
    long n = syscall(SYS_io_pgetevents, ctx, 1, 8, ev, &five, &usig);
    show_events("io_pgetevents", n, ev, cbs, 1);
    show("io_pgetevents no sigset", syscall(SYS_io_pgetevents, ctx, 0, 8, ev, &zero, NULL));
    usig.size = 4;
    show("io_pgetevents bad sigsetsize", syscall(SYS_io_pgetevents, ctx, 0, 8, ev, &zero, &usig));
    show("io_pgetevents bad usig", syscall(SYS_io_pgetevents, ctx, 0, 8, ev, &zero, HOLE));

    /* A forked child has no contexts. */
    fflush(stdout);
    pid_t child = fork();
    if (child == 0) {
        cb[0] = make_iocb(CMD_PREAD, fd, rbuf, 2, 0, 50);
        show("child: io_submit on the parent's context", io_submit(ctx, 1, cbs));
        show("child: io_destroy of the parent's context", io_destroy(ctx));
        aio_context_t mine = 0;
        show("child: io_setup", io_setup(4, &mine));
        show("child: io_submit", io_submit(mine, 1, cbs));
        show_events("child: reaped", reap(mine, 1, ev), ev, cbs, 1);
        fflush(stdout);
        _exit(0);
    }
    waitpid(child, NULL, 0);
    cb[0] = make_iocb(CMD_PREAD, fd, rbuf, 2, 0, 51);
    show("parent: io_submit after the child", io_submit(ctx, 1, cbs));
    show_events("parent: reaped", reap(ctx, 1, ev), ev, cbs, 1);

    /* io_destroy waits for what is in flight, then the context is gone. */
    cb[0] = make_iocb(CMD_POLL, p[0], (void *)(uintptr_t)POLLIN, 0, 0, 60);
    read(p[0], rbuf, 1);
    io_submit(ctx, 1, cbs);
    show("io_destroy", io_destroy(ctx));
    show("io_destroy again", io_destroy(ctx));
    show("io_submit after destroy", io_submit(ctx, 1, cbs));
    show("io_getevents after destroy", io_getevents(ctx, 0, 1, ev, &zero));

    /* Many contexts, each with its own events. */
    aio_context_t c1 = 0, c2 = 0;
    io_setup(1, &c1);
    io_setup(100, &c2);
    cb[0] = make_iocb(CMD_PREAD, fd, rbuf, 1, 0, 70);
    cb[1] = make_iocb(CMD_PREAD, fd, rbuf + 1, 1, 1, 71);
    show("submit to first", io_submit(c1, 1, &cbs[0]));
    show("submit to second", io_submit(c2, 1, &cbs[1]));
    show_events("from second", reap(c2, 1, ev), ev, cbs, 2);
    show_events("from first", reap(c1, 1, ev), ev, cbs, 2);
    io_destroy(c1);
    io_destroy(c2);
    close(p[0]);
    close(p[1]);
    close(efd);
    close(fd);
    unlink("aio.txt");
}

static void test_aio_errors(void)
{
    aio_context_t ctx = 0;
    static const aio_context_t ro_ctx = 0;
    struct io_event ev[8];
    struct iocb cb[4], *cbs[4];
    char *gap = HOLE;
    struct timespec zero = {0, 0};
    for (int i = 0; i < 4; i++)
        cbs[i] = &cb[i];

    show("io_setup 0 events", io_setup(0, &ctx));
    show("io_setup NULL", io_setup(8, NULL));
    show("io_setup unmapped", io_setup(8, (aio_context_t *)gap));
    show("io_setup read-only", io_setup(8, (aio_context_t *)&ro_ctx));
    show("io_setup huge", io_setup(0x7fffffff, &ctx));
    show("io_setup", io_setup(4, &ctx));

    int fd = open("aio_errors.txt", O_CREAT | O_RDWR | O_TRUNC, 0644);
    write(fd, "0123456789abcdefghij", 20);
    char *buf = pages(4, '.');

    show("io_submit nr -1", io_submit(ctx, -1, cbs));
    show("io_submit nr 0", io_submit(ctx, 0, cbs));
    show("io_submit bad context", io_submit(12345, 1, cbs));
    show("io_submit context 0", io_submit(0, 1, cbs));
    show("io_submit nr -1 bad context", io_submit(12345, -1, cbs));
    show("io_submit NULL array", io_submit(ctx, 1, NULL));
    struct iocb *nulls[1] = {NULL};
    show("io_submit NULL iocb", io_submit(ctx, 1, nulls));
    struct iocb *bad[1] = {(struct iocb *)gap};
    show("io_submit unmapped iocb", io_submit(ctx, 1, bad));

    cb[0] = make_iocb(CMD_PREAD, fd, buf, 4, 0, 1);
    cb[0].aio_reserved2 = 1;
    show("reserved2 set", io_submit(ctx, 1, cbs));
    cb[0] = make_iocb(CMD_PREAD, fd, buf, (uint64_t)-1, 0, 1);
    show("nbytes -1", io_submit(ctx, 1, cbs));
    cb[0] = make_iocb(CMD_NOOP, fd, buf, 4, 0, 1);
    show("opcode NOOP", io_submit(ctx, 1, cbs));
    cb[0] = make_iocb(99, fd, buf, 4, 0, 1);
    show("opcode 99", io_submit(ctx, 1, cbs));
    cb[0] = make_iocb(99, -1, buf, 4, 0, 1);
    show("opcode 99 bad fd", io_submit(ctx, 1, cbs));
    cb[0] = make_iocb(CMD_PREAD, -1, buf, 4, 0, 1);
    show("bad fd", io_submit(ctx, 1, cbs));
    cb[0] = make_iocb(CMD_PREAD, beyond_limit(), buf, 4, 0, 1);
    show("fd beyond limit", io_submit(ctx, 1, cbs));
    cb[0] = make_iocb(CMD_PREAD, fd, buf, 4, 0, 1);
    cb[0].aio_flags = FLAG_RESFD;
    cb[0].aio_resfd = fd;
    show("resfd not an eventfd", io_submit(ctx, 1, cbs));
    cb[0].aio_resfd = -1;
    show("resfd -1", io_submit(ctx, 1, cbs));
    cb[0].aio_resfd = beyond_limit();
    show("resfd beyond limit", io_submit(ctx, 1, cbs));
    cb[0] = make_iocb(CMD_PREAD, fd, buf, 4, 0, 1);
    cb[0].aio_flags = 0x80;
    show("unknown aio_flags", io_submit(ctx, 1, cbs));
    show_events("reaped", reap(ctx, 1, ev), ev, cbs, 1);
    cb[0] = make_iocb(CMD_PREAD, fd, buf, 4, 0, 1);
    cb[0].aio_rw_flags = 0x4000;
    show("unknown rw_flags", io_submit(ctx, 1, cbs));
    cb[0] = make_iocb(CMD_FSYNC, fd, buf, 0, 0, 1);
    show("fsync with a buffer", io_submit(ctx, 1, cbs));
    cb[0] = make_iocb(CMD_POLL, fd, (void *)1, 4, 0, 1);
    show("poll with nbytes", io_submit(ctx, 1, cbs));
    int wronly = open("aio_errors.txt", O_WRONLY);
    cb[0] = make_iocb(CMD_PREAD, wronly, buf, 4, 0, 1);
    show("pread on write-only", io_submit(ctx, 1, cbs));
    cb[0] = make_iocb(CMD_PWRITE, fd, buf, 4, -1, 1);
    show("negative offset", io_submit(ctx, 1, cbs));

    /* A read-only iocb: the kernel writes aio_key, so EFAULT, after the descriptor checks. */
    static const struct iocb ro_good = {.aio_lio_opcode = CMD_FSYNC, .aio_fildes = 0};
    struct iocb *ro[1] = {(struct iocb *)&ro_good};
    show("read-only iocb", io_submit(ctx, 1, ro));
    static const struct iocb ro_badfd = {.aio_lio_opcode = CMD_FSYNC, .aio_fildes = 1 << 30};
    ro[0] = (struct iocb *)&ro_badfd;
    show("read-only iocb, bad fd", io_submit(ctx, 1, ro));

    /* Batches stop at the first failure. */
    cb[0] = make_iocb(CMD_PREAD, fd, buf, 2, 0, 1);
    cb[1] = make_iocb(CMD_PREAD, fd, buf + 2, 2, 2, 2);
    cb[2] = make_iocb(99, fd, buf, 4, 0, 3);
    cb[3] = make_iocb(CMD_PREAD, fd, buf + 4, 2, 4, 4);
    show("batch, third bad", io_submit(ctx, 4, cbs));
    show_events("reaped", reap(ctx, 2, ev), ev, cbs, 4);
    struct iocb *mixed[3] = {&cb[0], (struct iocb *)gap, &cb[1]};
    show("batch, second unmapped", io_submit(ctx, 3, mixed));
    show_events("reaped", reap(ctx, 1, ev), ev, cbs, 4);
    /* More than the context holds: as many as its ring has room for. */
    struct iocb *many[1024];
    for (int i = 0; i < 1024; i++)
        many[i] = &cb[0];
    int pp[2];
    pipe(pp);
    cb[0] = make_iocb(CMD_POLL, pp[0], (void *)(uintptr_t)POLLIN, 0, 0, 5);
    long n = show("1024 polls submitted to a context of 4", io_submit(ctx, 1024, many));
    show("one more", io_submit(ctx, 1, many));
    write(pp[1], "x", 1);
    static struct io_event lots[1024];
    printf("reaped them all: %s\n", reap(ctx, n, lots) == n ? "yes" : "no");
    show("getevents empty", io_getevents(ctx, 0, 8, ev, &zero));
    close(pp[0]);
    close(pp[1]);

    /* Buffers that are not (all) mapped: the submission succeeds, the event says EFAULT
     * or how much was moved. */
    cb[0] = make_iocb(CMD_PREAD, fd, gap, 4, 0, 1);
    show("pread into unmapped", io_submit(ctx, 1, cbs));
    show_events("reaped", reap(ctx, 1, ev), ev, cbs, 1);
    cb[0] = make_iocb(CMD_PWRITE, fd, gap, 4, 0, 2);
    show("pwrite from unmapped", io_submit(ctx, 1, cbs));
    show_events("reaped", reap(ctx, 1, ev), ev, cbs, 1);
    char *edge = below_hole(1, 'e');
    cb[0] = make_iocb(CMD_PREAD, fd, edge + page - 6, 10, 0, 3);
    show("pread partly mapped", io_submit(ctx, 1, cbs));
    show_events("reaped", reap(ctx, 1, ev), ev, cbs, 1);
    print_escaped("landed", edge + page - 6, 6);
    static const char rodata[] = "rodata";
    cb[0] = make_iocb(CMD_PREAD, fd, (void *)rodata, 4, 0, 4);
    show("pread into read-only", io_submit(ctx, 1, cbs));
    show_events("reaped", reap(ctx, 1, ev), ev, cbs, 1);
    cb[0] = make_iocb(CMD_PREAD, fd, (void *)0xffff800000000000, 4, 0, 5);
    show("pread into kernel address", io_submit(ctx, 1, cbs));
    cb[0] = make_iocb(CMD_PREAD, fd, (void *)0x7ffffffff000, 4, 0, 5);
    show("pread at TASK_SIZE", io_submit(ctx, 1, cbs));
    cb[0] = make_iocb(CMD_PREAD, fd, edge + page - 6, (uint64_t)1 << 62, 0, 6);
    show("pread 2^62 bytes", io_submit(ctx, 1, cbs));
    show_events("reaped", reap(ctx, 1, ev), ev, cbs, 1);
    cb[0] = make_iocb(CMD_PREAD, fd, gap, (uint64_t)1 << 62, 0, 7);
    show("pread 2^62 bytes unmapped", io_submit(ctx, 1, cbs));
    show_events("reaped", reap(ctx, 1, ev), ev, cbs, 1);

    /* Vectored: the iovec array is checked at submission. */
    cb[0] = make_iocb(CMD_PREADV, fd, gap, 1, 0, 8);
    show("preadv unmapped iovec array", io_submit(ctx, 1, cbs));
    struct iovec iov[2] = {{buf, 4}, {gap, (size_t)-1}};
    cb[0] = make_iocb(CMD_PREADV, fd, iov, 2, 0, 9);
    show("preadv len -1", io_submit(ctx, 1, cbs));
    iov[1] = (struct iovec){(void *)0xffff800000000000, 4};
    show("preadv kernel address", io_submit(ctx, 1, cbs));
    cb[0] = make_iocb(CMD_PREADV, fd, iov, 1025, 0, 10);
    show("preadv 1025 segments", io_submit(ctx, 1, cbs));
    cb[0] = make_iocb(CMD_PREADV, fd, iov, 0, 0, 11);
    show("preadv 0 segments", io_submit(ctx, 1, cbs));
    show_events("reaped", reap(ctx, 1, ev), ev, cbs, 1);
    iov[1] = (struct iovec){gap, 4};
    cb[0] = make_iocb(CMD_PREADV, fd, iov, 2, 0, 12);
    show("preadv second unmapped", io_submit(ctx, 1, cbs));
    show_events("reaped", reap(ctx, 1, ev), ev, cbs, 1);
    cb[0] = make_iocb(CMD_PWRITEV, fd, iov, 2, 100, 13);
    show("pwritev second unmapped", io_submit(ctx, 1, cbs));
    show_events("reaped", reap(ctx, 1, ev), ev, cbs, 1);

    /* io_getevents arguments. */
    cb[0] = make_iocb(CMD_PREAD, fd, buf, 3, 0, 14);
    io_submit(ctx, 1, cbs);
    show("getevents min > nr", io_getevents(ctx, 2, 1, ev, &zero));
    show("getevents min < 0", io_getevents(ctx, -1, 1, ev, &zero));
    show("getevents bad context", io_getevents(12345, 0, 1, ev, &zero));
    show("getevents bad timeout", io_getevents(ctx, 0, 1, ev, (struct timespec *)gap));
    show("getevents bad timeout, bad context", io_getevents(12345, 0, 1, ev,
                                                            (struct timespec *)gap));
    show("getevents unmapped events", io_getevents(ctx, 1, 1, (struct io_event *)gap, &zero));
    show("getevents read-only events", io_getevents(ctx, 1, 1, (struct io_event *)rodata, &zero));
    show("getevents nr 0", io_getevents(ctx, 0, 0, ev, &zero));
    show_events("still there", io_getevents(ctx, 1, LONG_MAX, ev, &zero), ev, cbs, 1);
    show("getevents unmapped events, none ready", io_getevents(ctx, 0, 1,
                                                               (struct io_event *)gap, &zero));
    show("getevents nr huge, none ready", io_getevents(ctx, 0, LONG_MAX, ev, &zero));

    show("io_destroy bad context", io_destroy(12345));
    show("io_destroy 0", io_destroy(0));
    show("io_destroy", io_destroy(ctx));
    close(fd);
    close(wronly);
    unlink("aio_errors.txt");
}

/* ---- pidfd --------------------------------------------------------------------------- */

static long pidfd_open(pid_t pid, unsigned flags)
{
    return syscall(SYS_pidfd_open, pid, flags);
}

static long pidfd_send_signal(int pidfd, int sig, siginfo_t *info, unsigned flags)
{
    return syscall(SYS_pidfd_send_signal, pidfd, sig, info, flags);
}

static long pidfd_getfd(int pidfd, int fd, unsigned flags)
{
    return syscall(SYS_pidfd_getfd, pidfd, fd, flags);
}

static const char *code_name(int code)
{
    switch (code) {
    case SI_USER: return "SI_USER";
    case SI_QUEUE: return "SI_QUEUE";
    case SI_TKILL: return "SI_TKILL";
    default: return "other";
    }
}

static void report_usr1(const char *label)
{
    printf("%s: SIGUSR1 x%d, %s, from self: %s, value %d\n", label, (int)usr1,
           code_name(usr1_code), usr1_from_self ? "yes" : "no", (int)usr1_value);
    usr1 = 0;
    usr1_value = 0;
}

static volatile int thread_ready, thread_stop;
static volatile pid_t thread_tid;

static void *sleeper(void *arg)
{
    (void)arg;
    thread_tid = (pid_t)syscall(SYS_gettid);
    thread_ready = 1;
    while (!thread_stop)
        usleep(1000);
    return NULL;
}

/* Is fd the lowest free descriptor number? (what a new descriptor gets) */
static int lowest(int fd)
{
    for (int i = 0; i < fd; i++)
        if (fcntl(i, F_GETFD) < 0)
            return 0;
    return 1;
}

static void test_pidfd(void)
{
    struct sigaction sa = {0};
    sa.sa_sigaction = on_usr1;
    sa.sa_flags = SA_SIGINFO;
    sigaction(SIGUSR1, &sa, NULL);
    handle(SIGPIPE, on_sigpipe, 0);
    char *gap = HOLE;

    int pfd = (int)pidfd_open(getpid(), 0);
    printf("pidfd_open self: %s, close-on-exec: %s, lowest free: %s\n",
           pfd >= 0 ? "ok" : ename(errno), fcntl(pfd, F_GETFD) & FD_CLOEXEC ? "yes" : "no",
           lowest(pfd) ? "yes" : "no");
    show("pidfd_open bad flags", pidfd_open(getpid(), 1));
    show("pidfd_open pid 0", pidfd_open(0, 0));
    show("pidfd_open pid -1", pidfd_open(-1, 0));
    show("pidfd_open no such pid", pidfd_open(0x3ffffff0, 0));
    int nb = (int)pidfd_open(getpid(), O_NONBLOCK);
    printf("nonblock pidfd: O_NONBLOCK %s\n", fcntl(nb, F_GETFL) & O_NONBLOCK ? "set" : "clear");
    close(nb);

    /* Signals to self: delivered before the call returns, as kill(getpid()). */
    show("send SIGUSR1 to self", pidfd_send_signal(pfd, SIGUSR1, NULL, 0));
    report_usr1("after send");
    siginfo_t si;
    memset(&si, 0, sizeof si);
    si.si_signo = SIGUSR1;
    si.si_code = SI_QUEUE;
    si.si_pid = getpid();
    si.si_uid = getuid();
    si.si_value.sival_int = 42;
    show("send with siginfo to self", pidfd_send_signal(pfd, SIGUSR1, &si, 0));
    report_usr1("after send");
    show("send, signal mismatch", pidfd_send_signal(pfd, SIGUSR2, &si, 0));
    show("send, bad siginfo", pidfd_send_signal(pfd, SIGUSR1, (siginfo_t *)gap, 0));
    show("send, bad flags", pidfd_send_signal(pfd, SIGUSR1, NULL, 8));
    show("send, two flags", pidfd_send_signal(pfd, SIGUSR1, NULL, 3));
    show("send, bad fd", pidfd_send_signal(-1, SIGUSR1, NULL, 0));
    show("send, bad fd, bad flags", pidfd_send_signal(-1, SIGUSR1, NULL, 8));
    show("send, fd beyond limit", pidfd_send_signal(beyond_limit(), SIGUSR1, NULL, 0));
    show("send, not a pidfd", pidfd_send_signal(1, SIGUSR1, NULL, 0));
    show("send, signal 0", pidfd_send_signal(pfd, 0, NULL, 0));
    show("send, signal 99", pidfd_send_signal(pfd, 99, NULL, 0));
    show("send, signal -1", pidfd_send_signal(pfd, -1, NULL, 0));
    show("send SIGUSR1 thread scope", pidfd_send_signal(pfd, SIGUSR1, NULL, PIDFD_SIGNAL_THREAD));
    report_usr1("after send");
    show("send SIGUSR1 group scope", pidfd_send_signal(pfd, SIGUSR1, NULL,
                                                       PIDFD_SIGNAL_THREAD_GROUP));
    report_usr1("after send");
    si.si_code = SI_USER;
    show("send SI_USER siginfo thread scope", pidfd_send_signal(pfd, SIGUSR1, &si,
                                                                PIDFD_SIGNAL_THREAD));
    report_usr1("after send");
    sigset_t block, old;
    sigemptyset(&block);
    sigaddset(&block, SIGUSR1);
    sigprocmask(SIG_BLOCK, &block, &old);
    show("send blocked SIGUSR1", pidfd_send_signal(pfd, SIGUSR1, NULL, 0));
    report_usr1("while blocked");
    sigprocmask(SIG_SETMASK, &old, NULL);
    report_usr1("after unblocking");

    /* Process-group scope: the payload's own group (made its own first, so that no
     * other process gets the signal). */
    setpgid(0, 0);
    show("send SIGUSR1 to the process group", pidfd_send_signal(pfd, SIGUSR1, NULL,
                                                                PIDFD_SIGNAL_PROCESS_GROUP));
    report_usr1("after send");
    si.si_code = SI_QUEUE;
    si.si_value.sival_int = 7;
    show("send SI_QUEUE to the process group", pidfd_send_signal(pfd, SIGUSR1, &si,
                                                                 PIDFD_SIGNAL_PROCESS_GROUP));
    report_usr1("after send");
    si.si_code = SI_USER;
    show("send SI_USER to the process group", pidfd_send_signal(pfd, SIGUSR1, &si,
                                                                PIDFD_SIGNAL_PROCESS_GROUP));
    report_usr1("after send");
    show("send SIGPIPE to the process group", pidfd_send_signal(pfd, SIGPIPE, NULL,
                                                                PIDFD_SIGNAL_PROCESS_GROUP));

    /* A thread's pidfd: the signal goes to that thread. */
    handle(SIGUSR2, on_usr2, 0);
    pthread_t th;
    pthread_create(&th, NULL, sleeper, NULL);
    while (!thread_ready)
        usleep(1000);
    show("pidfd_open thread without PIDFD_THREAD", pidfd_open(thread_tid, 0));
    int tfd = (int)pidfd_open(thread_tid, PIDFD_THREAD);
    printf("pidfd_open thread: %s\n", tfd >= 0 ? "ok" : ename(errno));
    printf("thread pidfd PIDFD_THREAD flag: %s\n",
           fcntl(tfd, F_GETFL) & PIDFD_THREAD ? "set" : "clear");
    show("send SIGUSR2 to the thread", pidfd_send_signal(tfd, SIGUSR2, NULL, 0));
    for (int i = 0; i < 2000 && !usr2_tid; i++)
        usleep(1000);
    printf("handled by that thread: %s\n", usr2_tid == thread_tid ? "yes" : "no");
    thread_stop = 1;
    pthread_join(th, NULL);
    close(tfd);

    /* pidfd_getfd on self: a new close-on-exec descriptor for the same file. */
    int p[2];
    pipe(p);
    int got = (int)pidfd_getfd(pfd, p[1], 0);
    printf("pidfd_getfd self: %s, close-on-exec: %s, lowest free: %s\n",
           got >= 0 ? "ok" : ename(errno), fcntl(got, F_GETFD) & FD_CLOEXEC ? "yes" : "no",
           lowest(got) ? "yes" : "no");
    write(got, "through the copy", 16);
    close(got);
    drain("pipe holds", p[0]);
    show("pidfd_getfd bad flags", pidfd_getfd(pfd, p[1], 1));
    show("pidfd_getfd bad flags, bad pidfd", pidfd_getfd(-1, p[1], 1));
    show("pidfd_getfd bad pidfd", pidfd_getfd(-1, p[1], 0));
    show("pidfd_getfd not a pidfd", pidfd_getfd(p[0], p[1], 0));
    show("pidfd_getfd target -1", pidfd_getfd(pfd, -1, 0));
    show("pidfd_getfd target closed", pidfd_getfd(pfd, 1000, 0));
    show("pidfd_getfd target beyond limit", pidfd_getfd(pfd, beyond_limit(), 0));
    show("pidfd_getfd pidfd beyond limit", pidfd_getfd(beyond_limit(), 0, 0));
    for (int i = 1; i <= 8; i++) {
        char label[64];
        snprintf(label, sizeof label, "pidfd_getfd target limit+%d", i);
        show(label, pidfd_getfd(pfd, beyond_limit() - 3 + i, 0));
    }

    /* A child: signal it through its pidfd, wait for it through waitid(P_PIDFD). */
    fflush(stdout);
    pid_t child = fork();
    if (child == 0) {
        for (;;)
            pause();
    }
    int cfd = (int)pidfd_open(child, 0);
    printf("child pidfd: %s\n", cfd >= 0 ? "ok" : ename(errno));
    siginfo_t wi;
    memset(&wi, 0, sizeof wi);
    show("waitid WNOHANG, running", waitid(P_PIDFD, cfd, &wi, WEXITED | WNOHANG));
    int cnb = (int)pidfd_open(child, O_NONBLOCK);
    show("waitid nonblocking pidfd, running", waitid(P_PIDFD, cnb, &wi, WEXITED));
    close(cnb);
    struct pollfd pf = {cfd, POLLIN, 0};
    show("poll pidfd, running", poll(&pf, 1, 0));
    show("send signal 0 to the child", pidfd_send_signal(cfd, 0, NULL, 0));
    memset(&si, 0, sizeof si);
    si.si_signo = SIGTERM;
    si.si_code = SI_USER;
    show("send SI_USER siginfo to the child", pidfd_send_signal(cfd, SIGTERM, &si, 0));
    si.si_code = SI_QUEUE;
    show("send SI_QUEUE SIGTERM to the child", pidfd_send_signal(cfd, SIGTERM, &si, 0));
    show("poll pidfd, after", poll(&pf, 1, 5000));
    memset(&wi, 0, sizeof wi);
    show("waitid P_PIDFD", waitid(P_PIDFD, cfd, &wi, WEXITED));
    printf("child: code %s, status %d, pid matches: %s\n",
           wi.si_code == CLD_KILLED ? "CLD_KILLED" : wi.si_code == CLD_EXITED ? "CLD_EXITED"
           : "other", wi.si_status, wi.si_pid == child ? "yes" : "no");
    show("waitid P_PIDFD again", waitid(P_PIDFD, cfd, &wi, WEXITED));
    show("send to the reaped child", pidfd_send_signal(cfd, SIGTERM, NULL, 0));
    show("pidfd_getfd reaped child", pidfd_getfd(cfd, 0, 0));
    show("waitid P_PIDFD bad fd", waitid(P_PIDFD, -1, &wi, WEXITED));
    show("waitid P_PIDFD beyond limit", waitid(P_PIDFD, beyond_limit(), &wi, WEXITED));
    show("waitid P_PIDFD not a pidfd", waitid(P_PIDFD, p[0], &wi, WEXITED));
    show("waitid P_PIDFD self", waitid(P_PIDFD, pfd, &wi, WEXITED | WNOHANG));
    close(cfd);
    show("pidfd_open reaped child", pidfd_open(child, 0));

    /* A child that exits by itself; its pidfd opened before. */
    fflush(stdout);
    child = fork();
    if (child == 0)
        _exit(7);
    cfd = (int)pidfd_open(child, 0);
    memset(&wi, 0, sizeof wi);
    show("waitid exited child", waitid(P_PIDFD, cfd, &wi, WEXITED));
    printf("child: code %s, status %d\n", wi.si_code == CLD_EXITED ? "CLD_EXITED" : "other",
           wi.si_status);
    close(cfd);

    printf("SIGPIPEs: %d\n", (int)sigpipes);

    /* Last: SIGTERM to self through the pidfd, default action. */
    fflush(stdout);
    pidfd_send_signal(pfd, SIGTERM, NULL, 0);
    printf("not reached\n");
}

/* pidfd_getfd from a child. Natively a process may take its (dumpable) child's
 * descriptors; every km is non-dumpable, so under km the host refuses (EPERM). */
static void test_pidfd_getfd_child(void)
{
    int ready[2];
    pipe(ready);
    fflush(stdout);
    pid_t child = fork();
    if (child == 0) {
        int q[2];
        pipe(q);
        write(q[1], "from the child", 14);
        dup2(q[0], 100);  /* for the parent to take */
        write(ready[1], "r", 1);
        for (;;)
            pause();
    }
    char c;
    read(ready[0], &c, 1);
    int cfd = (int)pidfd_open(child, 0);
    int taken = (int)pidfd_getfd(cfd, 100, 0);
    char text[32] = {0};
    if (taken >= 0) {
        fcntl(taken, F_SETFL, O_NONBLOCK);
        long r = read(taken, text, sizeof text - 1);
        printf("pidfd_getfd child fd 100: read %ld \"%s\"\n", r, r > 0 ? text : "");
        printf("close-on-exec: %s, lowest free: %s\n",
               fcntl(taken, F_GETFD) & FD_CLOEXEC ? "yes" : "no", lowest(taken) ? "yes" : "no");
        close(taken);
    } else {
        printf("pidfd_getfd child fd 100: %s\n", ename(errno));
    }
    show("pidfd_getfd child, beyond limit", pidfd_getfd(cfd, beyond_limit(), 0));
    for (int i = 1; i <= 8; i++) {
        char label[64];
        snprintf(label, sizeof label, "pidfd_getfd child, limit+%d", i);
        show(label, pidfd_getfd(cfd, beyond_limit() - 3 + i, 0));
    }
    show("pidfd_getfd child, closed", pidfd_getfd(cfd, 1000, 0));
    kill(child, SIGKILL);
    siginfo_t wi;
    show("waitid P_PIDFD", waitid(P_PIDFD, cfd, &wi, WEXITED));
    show("pidfd_getfd reaped child", pidfd_getfd(cfd, 100, 0));
}

/* Contexts do not survive execve: the old id names nothing in the new program. */
static void test_aio_exec(int argc, char **argv)
{
    struct io_event ev[4];
    struct iocb cb, *cbs[1] = {&cb};
    if (argc < 3) {
        aio_context_t ctx = 0;
        int p[2];
        pipe(p);
        show("io_setup", io_setup(4, &ctx));
        cb = make_iocb(CMD_POLL, p[0], (void *)(uintptr_t)POLLIN, 0, 0, 1);
        show("io_submit poll, left in flight", io_submit(ctx, 1, cbs));
        char id[32];
        snprintf(id, sizeof id, "%lx", ctx);
        fflush(stdout);
        execl("/proc/self/exe", "sysdetails_io", "aio_exec", id, (char *)NULL);
        die("execl");
    }
    aio_context_t old = strtoul(argv[2], NULL, 16);
    int fd = open("/proc/self/exe", O_RDONLY);
    cb = make_iocb(CMD_PREAD, fd, ev, 4, 0, 2);
    show("after exec: io_submit on the old context", io_submit(old, 1, cbs));
    show("after exec: io_getevents on the old context", io_getevents(old, 0, 1, ev, NULL));
    show("after exec: io_destroy of the old context", io_destroy(old));
    aio_context_t ctx = 0;
    show("after exec: io_setup", io_setup(4, &ctx));
    char magic[4];
    cb = make_iocb(CMD_PREAD, fd, magic, 4, 0, 3);
    show("after exec: io_submit", io_submit(ctx, 1, cbs));
    show_events("after exec: reaped", reap(ctx, 1, ev), ev, cbs, 1);
    print_escaped("read", magic, 4);
    show("after exec: io_destroy", io_destroy(ctx));
}

/* The context id points at memory the program can read (libaio does), and never at
 * km's ring: natively it is the kernel's ring, under km a mapping of zeros. */
static void test_aio_ring(void)
{
    aio_context_t ctx = 0;
    io_setup(4, &ctx);
    struct aio_ring *ring = (struct aio_ring *)ctx;
    printf("ring magic: %s\n", ring->magic == AIO_RING_MAGIC ? "AIO_RING_MAGIC" : "not a ring");
    char line[512];
    FILE *maps = fopen("/proc/self/maps", "r");
    int found = 0;
    while (maps && fgets(line, sizeof line, maps)) {
        unsigned long start, end;
        if (sscanf(line, "%lx-%lx", &start, &end) == 2 && start == ctx) {
            found = 1;
            printf("mapped: %s, %lu pages, name: %s", end > start ? "yes" : "no",
                   (end - start) / page, strchr(line, '/') ? strchr(line, '/') : "none\n");
        }
    }
    if (!found)
        printf("mapped: no\n");
    if (maps)
        fclose(maps);
    io_destroy(ctx);
    found = 0;
    maps = fopen("/proc/self/maps", "r");
    while (maps && fgets(line, sizeof line, maps))
        found += strstr(line, "[aio]") != NULL;
    printf("aio rings mapped after io_destroy: %d\n", found);
}

/* Threads: one waits in io_getevents while another destroys the context; submissions
 * from one thread reaped by another. */
static aio_context_t shared_ctx;
static long waiter_result;
static int waiter_errno;

static void *waiter(void *arg)
{
    struct io_event ev[1];
    (void)arg;
    waiter_result = io_getevents(shared_ctx, 1, 1, ev, NULL);
    waiter_errno = errno;
    return NULL;
}

static struct iocb many_cbs[200];

static void *submitter(void *arg)
{
    int fd = *(int *)arg;
    static char bufs[200][8];
    for (int i = 0; i < 200; i++) {
        many_cbs[i] = make_iocb(CMD_PREAD, fd, bufs[i], 4, i % 16, 1000 + i);
        struct iocb *one[1] = {&many_cbs[i]};
        long r;
        while ((r = io_submit(shared_ctx, 1, one)) != 1 && errno == EAGAIN)
            usleep(100);  /* the ring is full: the other thread is reaping */
        if (r != 1)
            return NULL;
    }
    return NULL;
}

static void test_aio_threads(void)
{
    pthread_t th;
    show("io_setup", io_setup(4, &shared_ctx));
    pthread_create(&th, NULL, waiter, NULL);
    usleep(100 * 1000);
    show("io_destroy while a thread waits", io_destroy(shared_ctx));
    pthread_join(th, NULL);
    printf("waiter: %ld %s\n", waiter_result, waiter_result < 0 ? ename(waiter_errno) : "");

    int fd = open("aio_threads.txt", O_CREAT | O_RDWR | O_TRUNC, 0644);
    write(fd, "0123456789abcdefghijklmnopqrstuvwxyz", 36);
    shared_ctx = 0;
    io_setup(64, &shared_ctx);
    pthread_create(&th, NULL, submitter, &fd);
    static struct io_event ev[200];
    long got = 0, wrong = 0;
    struct timespec ts = {5, 0};
    while (got < 200) {
        long n = io_getevents(shared_ctx, 1, 200 - got, ev + got, &ts);
        if (n <= 0)
            break;
        got += n;
    }
    pthread_join(th, NULL);
    for (long i = 0; i < got; i++) {
        long k = (long)ev[i].data - 1000;
        if (k < 0 || k >= 200 || ev[i].obj != (uint64_t)(uintptr_t)&many_cbs[k] || ev[i].res != 4)
            wrong++;
    }
    printf("reaped %ld events from another thread's submissions, %ld wrong\n", got, wrong);
    io_destroy(shared_ctx);
    close(fd);
    unlink("aio_threads.txt");
}

int main(int argc, char **argv)
{
    setvbuf(stdout, NULL, _IOLBF, 0);
    page = sysconf(_SC_PAGESIZE);
    if (argc < 2) {
        fprintf(stderr, "usage: %s vmsplice|splice|aio|aio_errors|aio_exec|aio_ring|aio_threads|"
                "pidfd|pidfd_getfd_child\n", argv[0]);
        return 2;
    }
    if (!strcmp(argv[1], "vmsplice"))
        test_vmsplice();
    else if (!strcmp(argv[1], "splice"))
        test_splice();
    else if (!strcmp(argv[1], "aio"))
        test_aio();
    else if (!strcmp(argv[1], "aio_errors"))
        test_aio_errors();
    else if (!strcmp(argv[1], "pidfd"))
        test_pidfd();
    else if (!strcmp(argv[1], "pidfd_getfd_child"))
        test_pidfd_getfd_child();
    else if (!strcmp(argv[1], "aio_exec"))
        test_aio_exec(argc, argv);
    else if (!strcmp(argv[1], "aio_ring"))
        test_aio_ring();
    else if (!strcmp(argv[1], "aio_threads"))
        test_aio_threads();
    else
        return 2;
    printf("done\n");
    return 0;
}
