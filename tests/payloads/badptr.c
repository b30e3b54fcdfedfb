/* System calls given bad pointers must fail with EFAULT, not crash the process (or km).
 * Raw syscall() keeps libc from checking or touching the pointers first. */
#define _GNU_SOURCE
#include <fcntl.h>
#include <stdint.h>
#include <sys/syscall.h>
#include <sys/uio.h>
#include <unistd.h>

#include "payload.h"

#define KERNEL_HALF ((void *)0xffff800000000000UL)
#define KERNEL_TEXT ((void *)0xffffffff81000000UL)
#define UNMAPPED ((void *)0xdead0000UL)

static int failures;

static void expect_efault(const char *what, long ret)
{
    if (ret == -1 && errno == EFAULT) {
        printf("%s: EFAULT\n", what);
    } else {
        printf("%s: returned %ld, %s (expected EFAULT)\n", what, ret,
               ret == -1 ? errno_name(errno) : "no error");
        failures++;
    }
    errno = 0;
}

int main(void)
{
    setvbuf(stdout, NULL, _IOLBF, 0);
    int p[2];
    if (pipe(p) < 0)
        die("pipe");
    char buf[64];
    struct iovec good = {buf, sizeof buf};

    expect_efault("write(1, NULL, 5)", syscall(SYS_write, 1, NULL, 5));
    expect_efault("write(1, 0x10, 5)", syscall(SYS_write, 1, (void *)0x10, 5));
    write(p[1], "abcdefgh", 8);  /* so that read has something to copy */
    expect_efault("read(pipe, 0xffff800000000000, 5)",
                  syscall(SYS_read, p[0], KERNEL_HALF, 5));
    expect_efault("read(pipe, 0xdead0000, 5)", syscall(SYS_read, p[0], UNMAPPED, 5));
    expect_efault("openat(AT_FDCWD, (char *)1, O_RDONLY)",
                  syscall(SYS_openat, AT_FDCWD, (char *)1, O_RDONLY));
    expect_efault("open(0xffff800000000000, O_RDONLY)",
                  syscall(SYS_open, KERNEL_HALF, O_RDONLY));
    expect_efault("fstat(0, 0xdead0000)", syscall(SYS_fstat, 0, UNMAPPED));
    expect_efault("stat(0xffffffff81000000, buf)", syscall(SYS_stat, KERNEL_TEXT, buf));
    expect_efault("stat(\".\", 0xffff800000000000)", syscall(SYS_stat, ".", KERNEL_HALF));
    expect_efault("readv(pipe, iov=0xdead0000, 1)", syscall(SYS_readv, p[0], UNMAPPED, 1));
    struct iovec bad_base = {KERNEL_HALF, 4};
    expect_efault("writev(1, [{0xffff800000000000, 4}], 1)",
                  syscall(SYS_writev, 1, &bad_base, 1));
    expect_efault("pipe(0xdead0000)", syscall(SYS_pipe, UNMAPPED));
    expect_efault("clock_gettime(CLOCK_REALTIME, 0x10)",
                  syscall(SYS_clock_gettime, 0, (void *)0x10));
    expect_efault("uname(0xffff800000000000)", syscall(SYS_uname, KERNEL_HALF));
    expect_efault("getcwd(0xdead0000, 4096)", syscall(SYS_getcwd, UNMAPPED, 4096));
    expect_efault("nanosleep(0xdead0000, NULL)", syscall(SYS_nanosleep, UNMAPPED, NULL));
    expect_efault("getrandom(0xdead0000, 16, 0)", syscall(SYS_getrandom, UNMAPPED, 16, 0));
    expect_efault("gettimeofday(0xffff800000000000, NULL)",
                  syscall(SYS_gettimeofday, KERNEL_HALF, NULL));
    expect_efault("rt_sigaction(SIGUSR1, 0xdead0000, NULL, 8)",
                  syscall(SYS_rt_sigaction, 10, UNMAPPED, NULL, 8));

    /* the process carries on normally */
    long n = syscall(SYS_readv, p[0], &good, 1);
    printf("pipe still readable: %s\n", n > 0 ? "yes" : "no");
    printf("done, %d unexpected results\n", failures);
    return 0;
}
