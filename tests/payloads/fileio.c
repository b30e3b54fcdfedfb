/* File-system and file-descriptor system calls, run inside the directory argv[1]
 * (fresh and empty). Prints return values, errno names, sizes, modes and contents, never
 * inode numbers, device numbers or times other than the ones it sets itself. */
#define _GNU_SOURCE
#include <dirent.h>
#include <fcntl.h>
#include <signal.h>
#include <stdint.h>
#include <sys/sendfile.h>
#include <sys/stat.h>
#include <sys/statfs.h>
#include <sys/syscall.h>
#include <sys/uio.h>
#include <unistd.h>

#include "payload.h"

static void show_stat(const char *label, int ret, const struct stat *st)
{
    if (ret < 0) {
        printf("%s: -1 %s\n", label, errno_name(errno));
        return;
    }
    const char *type = S_ISREG(st->st_mode) ? "file" : S_ISDIR(st->st_mode) ? "dir"
                     : S_ISLNK(st->st_mode) ? "symlink" : S_ISFIFO(st->st_mode) ? "fifo"
                     : "other";
    printf("%s: %s mode %04o size %lld nlink %ld\n", label, type,
           (unsigned)(st->st_mode & 07777), (long long)st->st_size,
           (long)(S_ISDIR(st->st_mode) ? -1 : (long)st->st_nlink));
}

static int cmp(const void *a, const void *b)
{
    return strcmp(*(char *const *)a, *(char *const *)b);
}

static void list_dir(const char *path)
{
    DIR *d = opendir(path);
    if (!d) {
        printf("opendir %s: %s\n", path, errno_name(errno));
        return;
    }
    char *names[64];
    int n = 0;
    struct dirent *e;
    while ((e = readdir(d)) && n < 64)
        names[n++] = strdup(e->d_name);
    closedir(d);
    qsort(names, n, sizeof *names, cmp);
    printf("ls %s:", path);
    for (int i = 0; i < n; i++) {
        printf(" %s", names[i]);
        free(names[i]);
    }
    printf("\n");
}

static void cat(const char *label, const char *path)
{
    char buf[512];
    int fd = open(path, O_RDONLY);
    if (fd < 0) {
        printf("%s: open %s\n", label, errno_name(errno));
        return;
    }
    long n = read(fd, buf, sizeof buf);
    close(fd);
    if (n < 0)
        printf("%s: read %s\n", label, errno_name(errno));
    else
        print_escaped(label, buf, n);
}

int main(int argc, char **argv)
{
    struct stat st;
    char buf[256];
    setvbuf(stdout, NULL, _IOLBF, 0);
    if (argc < 2) {
        fprintf(stderr, "usage: fileio DIR\n");
        return 2;
    }
    umask(022);
    report("chdir(argv[1])", chdir(argv[1]));
    char *cwd = getcwd(buf, sizeof buf);
    printf("getcwd equals argv[1]: %s\n", cwd && strcmp(cwd, argv[1]) == 0 ? "yes" : "no");
    report("getcwd(buf, 2) (too small)", getcwd(buf, 2) ? 0 : -1);

    /* directories */
    report("mkdir sub", mkdir("sub", 0755));
    report("mkdir sub again", mkdir("sub", 0755));
    report("mkdir missing/x", mkdir("missing/x", 0755));
    show_stat("stat sub", stat("sub", &st), &st);

    /* create and write */
    int fd = report("open sub/a.txt O_CREAT|O_WRONLY|O_TRUNC", open("sub/a.txt",
                    O_CREAT | O_WRONLY | O_TRUNC, 0666));
    report("write", write(fd, "hello world\n", 12));
    struct iovec wv[3] = {{"one ", 4}, {"two ", 4}, {"three\n", 6}};
    report("writev 3 iovecs", writev(fd, wv, 3));
    report("lseek SEEK_CUR 0", lseek(fd, 0, SEEK_CUR));
    report("pwrite at 100", pwrite(fd, "tail", 4, 100));
    report("lseek SEEK_CUR 0 after pwrite", lseek(fd, 0, SEEK_CUR));
    show_stat("fstat", fstat(fd, &st), &st);
    report("read from O_WRONLY fd", read(fd, buf, 4));
    report("fsync", fsync(fd));
    report("fdatasync", fdatasync(fd));
    report("close", close(fd));
    report("close again", close(fd));

    /* read it back */
    fd = report("open sub/a.txt O_RDONLY", open("sub/a.txt", O_RDONLY));
    long n = report("read 64", read(fd, buf, 64));
    if (n > 0)
        print_escaped("read data", buf, n);
    report("lseek SEEK_END 0", lseek(fd, 0, SEEK_END));
    report("lseek SEEK_SET 6", lseek(fd, 6, SEEK_SET));
    char a[5] = {0}, b[8] = {0};
    struct iovec rv[2] = {{a, 5}, {b, 8}};
    n = report("readv 5+8", readv(fd, rv, 2));
    print_escaped("readv iov[0]", a, 5);
    print_escaped("readv iov[1]", b, 8);
    n = report("pread 10 at 98", pread(fd, buf, 10, 98));
    if (n > 0)
        print_escaped("pread data", buf, n);
    report("lseek SEEK_CUR 0 after pread", lseek(fd, 0, SEEK_CUR));
    report("lseek SEEK_SET -1", lseek(fd, -1, SEEK_SET));
    report("write to O_RDONLY fd", write(fd, "x", 1));
    report("close", close(fd));

    /* O_APPEND, O_EXCL, creat */
    fd = report("open O_WRONLY|O_APPEND", open("sub/a.txt", O_WRONLY | O_APPEND));
    report("lseek SEEK_SET 0", lseek(fd, 0, SEEK_SET));
    report("write appends", write(fd, "!", 1));
    report("lseek SEEK_CUR 0", lseek(fd, 0, SEEK_CUR));
    close(fd);
    report("open O_CREAT|O_EXCL existing", open("sub/a.txt", O_CREAT | O_EXCL | O_WRONLY, 0644));
    report("open missing file", open("sub/nope", O_RDONLY));
    report("open a directory O_WRONLY", open("sub", O_WRONLY));
    report("open a file as O_DIRECTORY", open("sub/a.txt", O_RDONLY | O_DIRECTORY));
    fd = report("creat sub/c0", creat("sub/c0", 0640));
    report("write", write(fd, "0123456789", 10));
    show_stat("fstat sub/c0", fstat(fd, &st), &st);

    /* ftruncate */
    report("ftruncate 4", ftruncate(fd, 4));
    show_stat("fstat after ftruncate", fstat(fd, &st), &st);
    report("ftruncate 8192", ftruncate(fd, 8192));
    show_stat("fstat after growing", fstat(fd, &st), &st);
    report("ftruncate 4", ftruncate(fd, 4));
    report("truncate path 3", truncate("sub/c0", 3));
    close(fd);
    cat("sub/c0", "sub/c0");

    /* rename, link, symlink, readlink, unlink */
    report("rename a.txt b.txt", rename("sub/a.txt", "sub/b.txt"));
    show_stat("stat sub/a.txt", stat("sub/a.txt", &st), &st);
    report("rename missing", rename("sub/a.txt", "sub/z"));
    report("link b.txt c.txt", link("sub/b.txt", "sub/c.txt"));
    show_stat("stat sub/b.txt", stat("sub/b.txt", &st), &st);
    report("link onto existing", link("sub/b.txt", "sub/c.txt"));
    report("symlink b.txt d.lnk", symlink("b.txt", "sub/d.lnk"));
    n = report("readlink d.lnk", readlink("sub/d.lnk", buf, sizeof buf));
    if (n > 0)
        print_escaped("readlink data", buf, n);
    report("readlink b.txt (not a link)", readlink("sub/b.txt", buf, sizeof buf));
    n = report("readlink into 3 bytes", readlink("sub/d.lnk", buf, 3));
    show_stat("lstat d.lnk", lstat("sub/d.lnk", &st), &st);
    show_stat("stat d.lnk", stat("sub/d.lnk", &st), &st);
    report("symlink dangling", symlink("nowhere", "sub/dangling"));
    show_stat("stat dangling", stat("sub/dangling", &st), &st);
    cat("cat through symlink", "sub/d.lnk");
    list_dir("sub");
    list_dir(".");
    report("unlink c.txt", unlink("sub/c.txt"));
    show_stat("stat b.txt after unlink of c.txt", stat("sub/b.txt", &st), &st);
    report("unlink c.txt again", unlink("sub/c.txt"));
    report("unlink a directory", unlink("sub"));
    report("unlink dangling", unlink("sub/dangling"));

    /* chmod, access */
    report("chmod b.txt 0600", chmod("sub/b.txt", 0600));
    show_stat("stat b.txt", stat("sub/b.txt", &st), &st);
    report("access F_OK", access("sub/b.txt", F_OK));
    report("access R_OK|W_OK", access("sub/b.txt", R_OK | W_OK));
    report("access X_OK (0600)", access("sub/b.txt", X_OK));
    report("access missing", access("sub/nope", F_OK));
    report("chmod b.txt 0751", chmod("sub/b.txt", 0751));
    report("access X_OK (0751)", access("sub/b.txt", X_OK));
    fd = open("sub/b.txt", O_RDONLY);
    report("fchmod 0644", fchmod(fd, 0644));
    show_stat("fstat", fstat(fd, &st), &st);

    /* dup, dup2, fcntl */
    int d1 = report("dup", dup(fd));
    int d2 = report("dup2 -> 10", dup2(fd, 10));
    report("dup2 same fd", dup2(10, 10));
    report("dup bad fd", dup(77));
    report("lseek 6 on dup", lseek(d1, 6, SEEK_SET));
    report("offset shared with dup2 copy", lseek(d2, 0, SEEK_CUR));
    n = read(10, buf, 5);
    print_escaped("read via fd 10", buf, n > 0 ? n : 0);
    report("fcntl F_GETFD", fcntl(fd, F_GETFD));
    report("fcntl F_SETFD FD_CLOEXEC", fcntl(fd, F_SETFD, FD_CLOEXEC));
    report("fcntl F_GETFD", fcntl(fd, F_GETFD));
    report("fcntl F_GETFL & O_ACCMODE", fcntl(fd, F_GETFL) & O_ACCMODE);
    report("fcntl F_DUPFD 20", fcntl(fd, F_DUPFD, 20));
    report("fcntl F_DUPFD_CLOEXEC 20", fcntl(fd, F_DUPFD_CLOEXEC, 20));
    report("fcntl F_GETFD on 21", fcntl(21, F_GETFD));
    report("fcntl F_SETFL O_NONBLOCK", fcntl(fd, F_SETFL, O_NONBLOCK));
    report("fcntl F_GETFL & O_NONBLOCK", fcntl(fd, F_GETFL) & O_NONBLOCK);
    report("fcntl bad fd", fcntl(55, F_GETFD));
    report("close 10", close(10));
    report("close 20", close(20));
    report("close 21", close(21));
    report("close dup", close(d1));
    report("next free fd (dup)", d1 = dup(fd));
    close(d1);

    /* pipe */
    int p[2];
    report("pipe", pipe(p));
    printf("pipe fds: %d %d\n", p[0], p[1]);
    report("write pipe", write(p[1], "ping", 4));
    n = report("read pipe", read(p[0], buf, sizeof buf));
    print_escaped("pipe data", buf, n > 0 ? n : 0);
    report("lseek on pipe", lseek(p[0], 0, SEEK_CUR));
    show_stat("fstat pipe", fstat(p[0], &st), &st);
    report("close write end", close(p[1]));
    report("read at EOF", read(p[0], buf, sizeof buf));
    close(p[0]);
    report("pipe2 O_CLOEXEC", pipe2(p, O_CLOEXEC));
    report("F_GETFD pipe2 end", fcntl(p[0], F_GETFD));
    report("close", close(p[0]));
    report("write to pipe without reader (SIGPIPE ignored)",
           (signal(SIGPIPE, SIG_IGN), write(p[1], "x", 1)));
    close(p[1]);

    /* sendfile, copy_file_range */
    int out = report("open sub/copy O_CREAT|O_RDWR", open("sub/copy", O_CREAT | O_RDWR, 0644));
    off_t off = 2;
    report("sendfile 8 from offset 2", sendfile(out, fd, &off, 8));
    printf("sendfile offset after: %lld\n", (long long)off);
    report("lseek of source unchanged", lseek(fd, 0, SEEK_CUR));
    loff_t in_off = 0, out_off = 100;
    report("copy_file_range 12 -> offset 100",
           syscall(SYS_copy_file_range, fd, &in_off, out, &out_off, (size_t)12, 0));
    printf("copy_file_range offsets after: %lld %lld\n", (long long)in_off, (long long)out_off);
    show_stat("fstat copy", fstat(out, &st), &st);
    n = pread(out, buf, 112, 0);
    print_escaped("copy data", buf, n > 0 ? n : 0);
    close(out);
    close(fd);

    /* statfs */
    struct statfs sfs, sfs2;
    report("statfs .", statfs(".", &sfs));
    fd = open(".", O_RDONLY | O_DIRECTORY);
    report("fstatfs .", fstatfs(fd, &sfs2));
    close(fd);
    printf("f_type %#lx, f_namelen %ld, f_bsize > 0: %s, same as fstatfs: %s\n",
           (unsigned long)sfs.f_type, (long)sfs.f_namelen, sfs.f_bsize > 0 ? "yes" : "no",
           sfs.f_type == sfs2.f_type && sfs.f_bsize == sfs2.f_bsize ? "yes" : "no");
    report("statfs missing", statfs("sub/nope", &sfs));

    /* utimensat */
    struct timespec times[2] = {{1000000000, 5}, {1234567890, 123456789}};
    report("utimensat", utimensat(AT_FDCWD, "sub/b.txt", times, 0));
    stat("sub/b.txt", &st);
    printf("atime %lld.%09ld mtime %lld.%09ld\n", (long long)st.st_atim.tv_sec,
           st.st_atim.tv_nsec, (long long)st.st_mtim.tv_sec, st.st_mtim.tv_nsec);
    struct timespec omit[2] = {{0, UTIME_OMIT}, {42, 0}};
    report("utimensat UTIME_OMIT atime", utimensat(AT_FDCWD, "sub/b.txt", omit, 0));
    stat("sub/b.txt", &st);
    printf("atime %lld mtime %lld\n", (long long)st.st_atim.tv_sec, (long long)st.st_mtim.tv_sec);
    report("utimensat missing", utimensat(AT_FDCWD, "sub/nope", times, 0));

    /* *at() calls relative to a directory fd */
    int dfd = report("open sub O_DIRECTORY", open("sub", O_RDONLY | O_DIRECTORY));
    fd = report("openat(dfd, new.txt)", openat(dfd, "new.txt", O_CREAT | O_WRONLY, 0600));
    report("write", write(fd, "at", 2));
    close(fd);
    show_stat("fstatat(dfd, new.txt)", fstatat(dfd, "new.txt", &st, 0), &st);
    report("mkdirat(dfd, inner)", mkdirat(dfd, "inner", 0700));
    report("renameat new.txt -> inner/moved", renameat(dfd, "new.txt", dfd, "inner/moved"));
    report("unlinkat inner/moved", unlinkat(dfd, "inner/moved", 0));
    report("unlinkat inner AT_REMOVEDIR", unlinkat(dfd, "inner", AT_REMOVEDIR));
    report("faccessat b.txt R_OK", faccessat(dfd, "b.txt", R_OK, 0));
    close(dfd);

    /* chdir, getcwd */
    report("chdir sub", chdir("sub"));
    cwd = getcwd(buf, sizeof buf);
    size_t base = strlen(argv[1]);
    printf("getcwd after chdir: argv[1] + \"%s\"\n",
           cwd && strncmp(cwd, argv[1], base) == 0 ? cwd + base : "(mismatch)");
    report("chdir b.txt (not a dir)", chdir("b.txt"));
    report("chdir missing", chdir("nope"));
    list_dir(".");
    report("chdir ..", chdir(".."));
    cwd = getcwd(buf, sizeof buf);
    printf("getcwd back at argv[1]: %s\n", cwd && strcmp(cwd, argv[1]) == 0 ? "yes" : "no");

    /* rmdir */
    report("rmdir sub (not empty)", rmdir("sub"));
    report("mkdir empty", mkdir("empty", 0700));
    report("rmdir empty", rmdir("empty"));
    report("rmdir empty again", rmdir("empty"));
    report("rmdir a file", rmdir("sub/b.txt"));

    /* bad file descriptors */
    report("read bad fd", read(99, buf, 1));
    report("write bad fd", write(99, buf, 1));
    report("fstat bad fd", fstat(99, &st));
    report("close bad fd", close(99));
    report("lseek bad whence", lseek(0, 0, 42));

    /* the final layout (the test compares it with the native run's) */
    list_dir(".");
    list_dir("sub");
    cat("sub/b.txt", "sub/b.txt");
    cat("sub/c0", "sub/c0");
    return 0;
}
