/* Path escapes: paths OP HOSTDIR.
 *
 * HOSTDIR is the host directory (outside the root) that holds the canary file "canary"
 * and the canary directory "canarydir". Inside the root, the test made two empty decoy
 * directories, /host and /HOSTDIR, so that a path climbing out of the root, resolved as a
 * chroot resolves it, lands in a directory that exists (and is empty) inside the root.
 *
 * The payload first plants links that point out of the root:
 *   /w/abs     -> HOSTDIR/canary             (absolute; dangling inside the root)
 *   /w/rel     -> ../../..(many)/HOSTDIR/canary  (relative; dangling inside the root)
 *   /reltop    -> ../host/canary             (one level above the root's top)
 *   /w/absdir  -> HOSTDIR                    (a directory: the decoy inside the root)
 *   /w/reldir  -> ../../..(many)/HOSTDIR
 * then makes the attempts of OP, one line each.
 */
#include "escape.h"  /* first: it defines _GNU_SOURCE */

#include <dirent.h>
#include <sys/statfs.h>
#include <sys/time.h>
#include <sys/xattr.h>

#ifndef RESOLVE_NO_SYMLINKS
#define RESOLVE_NO_XDEV 0x01
#define RESOLVE_NO_MAGICLINKS 0x02
#define RESOLVE_NO_SYMLINKS 0x04
#define RESOLVE_BENEATH 0x08
#define RESOLVE_IN_ROOT 0x10
#endif
#ifndef RENAME_EXCHANGE
#define RENAME_EXCHANGE 2
#endif
#ifndef AT_EACCESS
#define AT_EACCESS 0x200
#endif

struct how { uint64_t flags, mode, resolve; };

static long openat2_(int dirfd, const char *path, uint64_t flags, uint64_t mode,
                     uint64_t resolve)
{
    struct how how = {flags, mode, resolve};
    return syscall(437, dirfd, path, &how, sizeof how);
}

static const char *H;  /* the host directory */

/* The followed paths every "follow" attempt is made on. */
static const char *targets[] = {
    "/w/abs", "/w/rel", "/reltop", "/w/absdir/canary", "/w/reldir/canary",
    "/w/absdir/canarydir/file", NULL,
};

static const char *ftype(mode_t m)
{
    return S_ISREG(m) ? "reg" : S_ISDIR(m) ? "dir" : S_ISLNK(m) ? "lnk" : S_ISFIFO(m) ? "fifo"
         : S_ISCHR(m) ? "chr" : S_ISBLK(m) ? "blk" : S_ISSOCK(m) ? "sock" : "?";
}

static void say_stat(const char *what, int ret, const struct stat *st)
{
    if (ret < 0)
        printf("%s: %s\n", what, ename(errno));
    else if (S_ISDIR(st->st_mode))
        printf("%s: OK dir\n", what);
    else
        printf("%s: OK %s size=%lld\n", what, ftype(st->st_mode), (long long)st->st_size);
}

/* Whether a descriptor is the root directory (compared by device and inode). */
static void say_is_root(const char *what, int fd)
{
    struct stat a, b;
    if (fd < 0) {
        printf("%s: %s\n", what, ename(errno));
        return;
    }
    if (fstat(fd, &a) < 0 || stat("/", &b) < 0)
        die("fstat");
    printf("%s: OK %s\n", what,
           a.st_dev == b.st_dev && a.st_ino == b.st_ino ? "is the root" : "NOT the root");
    close(fd);
}

static void say_cwd(const char *what)
{
    char buf[4096];
    if (getcwd(buf, sizeof buf))
        printf("%s: OK %s\n", what, buf);
    else
        printf("%s: %s\n", what, ename(errno));
}

/* A directory descriptor for the *at() calls (not O_PATH: the fd attempts try that). */
static int dir_fd(const char *path)
{
    int fd = open(path, O_RDONLY | O_DIRECTORY);
    if (fd < 0)
        die(fmt("open %s", path));
    return fd;
}

/* ---- attempts that follow a link out of the root ------------------------------------ */

static void follow(const char *op)
{
    for (int i = 0; targets[i]; i++) {
        const char *t = targets[i];
        const char *what = fmt("%s %s", op, t);
        struct stat st;
        if (!strcmp(op, "stat")) {
            say_stat(what, stat(t, &st), &st);
        } else if (!strcmp(op, "lstat")) {
            say_stat(what, lstat(t, &st), &st);
        } else if (!strcmp(op, "statx")) {
            /* struct statx by offsets: musl's headers may not have it */
            unsigned char sx[256];
            long r = syscall(SYS_statx, AT_FDCWD, t, 0, 0x7ff, sx);
            uint16_t mode;
            uint64_t size;
            memcpy(&mode, sx + 28, sizeof mode);
            memcpy(&size, sx + 40, sizeof size);
            if (r < 0)
                printf("%s: %s\n", what, ename(errno));
            else if (S_ISDIR(mode))
                printf("%s: OK dir\n", what);
            else
                printf("%s: OK %s size=%llu\n", what, ftype(mode), (unsigned long long)size);
        } else if (!strcmp(op, "access")) {
            say(what, access(t, F_OK));
        } else if (!strcmp(op, "faccessat2")) {
            say(what, syscall(439, AT_FDCWD, t, R_OK, AT_EACCESS));
        } else if (!strcmp(op, "statfs")) {
            struct statfs sf;
            say(what, statfs(t, &sf));
        } else if (!strcmp(op, "chmod")) {
            say(what, chmod(t, 0600));
        } else if (!strcmp(op, "chown")) {
            say(what, chown(t, 4321, 4321));
        } else if (!strcmp(op, "lchown")) {
            say(what, lchown(t, 4321, 4321));
        } else if (!strcmp(op, "utimensat")) {
            struct timespec ts[2] = {{1, 0}, {1, 0}};
            say(what, utimensat(AT_FDCWD, t, ts, 0));
        } else if (!strcmp(op, "utimes")) {
            struct timeval tv[2] = {{1, 0}, {1, 0}};
            say(what, syscall(SYS_utimes, t, tv));
        } else if (!strcmp(op, "truncate")) {
            say(what, truncate(t, 0));
        } else if (!strcmp(op, "open")) {
            say_contents(what, open(t, O_RDONLY));
        } else if (!strcmp(op, "openat")) {
            int dir = dir_fd(strncmp(t, "/w/", 3) ? "/" : "/w");
            say_contents(what, openat(dir, t + (strncmp(t, "/w/", 3) ? 1 : 3), O_RDONLY));
            close(dir);
        } else if (!strcmp(op, "openat2")) {
            say_contents(what, openat2_(AT_FDCWD, t, O_RDONLY, 0, 0));
        } else if (!strcmp(op, "open-write")) {
            int fd = open(t, O_WRONLY | O_APPEND);
            if (say(what, fd) >= 0) {
                say(fmt("write %s", t), write(fd, "PWNED\n", 6));
                close(fd);
            }
        } else if (!strcmp(op, "open-trunc")) {
            int fd = open(t, O_WRONLY | O_TRUNC);
            if (say(what, fd) >= 0)
                close(fd);
        } else if (!strcmp(op, "linkat-follow")) {
            const char *hard = fmt("/w/hard%d", i);
            if (say(what, linkat(AT_FDCWD, t, AT_FDCWD, hard, AT_SYMLINK_FOLLOW)) >= 0)
                say_contents(fmt("read %s", hard), open(hard, O_RDONLY));
        } else if (!strcmp(op, "setxattr")) {
            say(what, setxattr(t, "user.escape", "x", 1, 0));
        } else if (!strcmp(op, "getxattr")) {
            char buf[64];
            say(what, getxattr(t, "user.escape", buf, sizeof buf));
        } else if (!strcmp(op, "chdir")) {
            if (say(what, chdir(t)) >= 0) {
                say_cwd(fmt("getcwd after chdir %s", t));
                if (chdir("/") < 0)
                    die("chdir /");
            }
        } else {
            printf("unknown op %s\n", op);
            exit(2);
        }
    }
}

/* ---- creating through a link that points out of the root ----------------------------- */

/* One new link per way of creating, so that no attempt sees another's file. The
 * targets do not exist anywhere; their parent exists both on the host and, as a decoy,
 * inside the root, so a chroot creates the file inside the root. */
static void create(const char *op)
{
    const char *kinds[] = {"abs", "rel", "top"};
    for (int k = 0; k < 3; k++) {
        char name[256], link[512];
        snprintf(name, sizeof name, "new-%s-%s", op, kinds[k]);
        snprintf(link, sizeof link, k == 2 ? "/%s" : "/w/%s", name);
        if (k == 0)
            make_link(fmt("%s/%s", H, name), link);
        else if (k == 1)
            make_link(fmt("%s%s/%s", UP, H, name), link);
        else
            make_link(fmt("../host/%s", name), link);
        const char *what = fmt("%s %s", op, link);
        int fd = -1;
        if (!strcmp(op, "create-open")) {
            fd = open(link, O_WRONLY | O_CREAT, 0644);
        } else if (!strcmp(op, "create-openat")) {
            int dir = dir_fd(k == 2 ? "/" : "/w");
            fd = openat(dir, name, O_WRONLY | O_CREAT, 0644);
            close(dir);
        } else if (!strcmp(op, "create-openat2")) {
            fd = openat2_(AT_FDCWD, link, O_WRONLY | O_CREAT, 0644, 0);
        } else if (!strcmp(op, "create-creat")) {
            fd = creat(link, 0644);
        } else if (!strcmp(op, "create-excl")) {
            fd = open(link, O_WRONLY | O_CREAT | O_EXCL, 0644);
        } else if (!strcmp(op, "create-mkdir")) {
            say(what, mkdir(link, 0755));
            continue;
        } else if (!strcmp(op, "create-mknod")) {
            say(what, mknod(link, S_IFIFO | 0644, 0));
            continue;
        } else {
            printf("unknown op %s\n", op);
            exit(2);
        }
        if (say(what, fd) < 0)
            continue;
        say(fmt("write %s", link), write(fd, "planted\n", 8));
        close(fd);
        say_contents(fmt("read back %s", link), open(link, O_RDONLY));
    }
}

/* ---- renames, links, directories and nodes across the boundary ------------------------ */

static void namespace_op(const char *op)
{
    int decoy = dir_fd("/w/absdir");  /* the decoy directory inside the root */
    int w = dir_fd("/w");
    struct stat st;
    for (int i = 1; i <= 4; i++)
        make_file(fmt("/w/mine%d", i), "mine\n");
    if (!strcmp(op, "mkdir")) {
        say("mkdir /w/abs", mkdir("/w/abs", 0755));
        say("mkdir /w/absdir/newdir", mkdir("/w/absdir/newdir", 0755));
        say("mkdir /w/reldir/newdir2", mkdir("/w/reldir/newdir2", 0755));
        say("mkdir /reltop/x", mkdir("/reltop/x", 0755));
        say("mkdirat decoy newdir3", mkdirat(decoy, "newdir3", 0755));
        say("mkdir /w/absdir/canarydir", mkdir("/w/absdir/canarydir", 0755));
    } else if (!strcmp(op, "mknod")) {
        say("mknod fifo /w/abs", mknod("/w/abs", S_IFIFO | 0644, 0));
        say("mknod fifo /w/absdir/fifo", mknod("/w/absdir/fifo", S_IFIFO | 0644, 0));
        say("mknod reg /w/absdir/reg", mknod("/w/absdir/reg", S_IFREG | 0644, 0));
        say("mknod fifo /w/reldir/fifo2", mknod("/w/reldir/fifo2", S_IFIFO | 0644, 0));
        say("mknodat decoy fifo3", mknodat(decoy, "fifo3", S_IFIFO | 0644, 0));
    } else if (!strcmp(op, "symlink")) {
        say("symlink /w/absdir/sl", symlink("x", "/w/absdir/sl"));
        say("symlink /w/reldir/sl2", symlink("x", "/w/reldir/sl2"));
        say("symlinkat decoy sl3", symlinkat("x", decoy, "sl3"));
        say("symlink onto /w/abs", symlink("x", "/w/abs"));
    } else if (!strcmp(op, "rename-out")) {
        say("rename /w/absdir/canary", rename("/w/absdir/canary", "/w/stolen1"));
        say("rename /w/reldir/canary", rename("/w/reldir/canary", "/w/stolen2"));
        say("rename /w/absdir/canarydir", rename("/w/absdir/canarydir", "/w/stolen3"));
        say("renameat decoy canary", renameat(decoy, "canary", w, "stolen4"));
        say("rename /reltop (the link itself)", rename("/reltop", "/w/stolen5"));
        say_stat("lstat /w/stolen5", lstat("/w/stolen5", &st), &st);
    } else if (!strcmp(op, "rename-in")) {
        say("rename to /w/absdir/planted1", rename("/w/mine1", "/w/absdir/planted1"));
        say("rename to /w/reldir/planted2", rename("/w/mine2", "/w/reldir/planted2"));
        say("rename onto /w/abs", rename("/w/mine3", "/w/abs"));
        say_stat("lstat /w/abs", lstat("/w/abs", &st), &st);
        say("rename to /w/absdir/canary", rename("/w/mine4", "/w/absdir/canary"));
    } else if (!strcmp(op, "exchange")) {
        say("exchange with /w/absdir/canary",
            syscall(SYS_renameat2, AT_FDCWD, "/w/mine1", AT_FDCWD, "/w/absdir/canary",
                    RENAME_EXCHANGE));
        say("exchange with /w/reldir/canary",
            syscall(SYS_renameat2, AT_FDCWD, "/w/mine2", AT_FDCWD, "/w/reldir/canary",
                    RENAME_EXCHANGE));
        say("exchange with /w/rel (the link)",
            syscall(SYS_renameat2, AT_FDCWD, "/w/mine3", AT_FDCWD, "/w/rel",
                    RENAME_EXCHANGE));
        say_stat("lstat /w/rel", lstat("/w/rel", &st), &st);
        say_stat("lstat /w/mine3", lstat("/w/mine3", &st), &st);
    } else if (!strcmp(op, "link-out")) {
        say("link /w/absdir/canary", link("/w/absdir/canary", "/w/hl1"));
        say("link /w/reldir/canary", link("/w/reldir/canary", "/w/hl2"));
        say("linkat decoy canary", linkat(decoy, "canary", w, "hl3", 0));
        say("link /w/abs (not followed)", link("/w/abs", "/w/hl4"));
        say_stat("lstat /w/hl4", lstat("/w/hl4", &st), &st);
        say("linkat follow /w/abs", linkat(AT_FDCWD, "/w/abs", AT_FDCWD, "/w/hl5",
                                           AT_SYMLINK_FOLLOW));
    } else if (!strcmp(op, "link-in")) {
        say("link to /w/absdir/hl1", link("/w/mine1", "/w/absdir/hl1"));
        say("link to /w/reldir/hl2", link("/w/mine2", "/w/reldir/hl2"));
        say("linkat to decoy hl3", linkat(w, "mine3", decoy, "hl3", 0));
        say("link onto /w/abs", link("/w/mine4", "/w/abs"));
    } else if (!strcmp(op, "unlink")) {
        say("unlink /w/absdir/canary", unlink("/w/absdir/canary"));
        say("unlink /w/reldir/canary", unlink("/w/reldir/canary"));
        say("unlinkat decoy canary", unlinkat(decoy, "canary", 0));
        say("rmdir /w/absdir/canarydir", rmdir("/w/absdir/canarydir"));
        say("unlink /w/absdir/canarydir/file", unlink("/w/absdir/canarydir/file"));
        say("unlink /w/abs (the link)", unlink("/w/abs"));
        say("rmdir /w/absdir (a link)", rmdir("/w/absdir"));
    } else {
        printf("unknown op %s\n", op);
        exit(2);
    }
    close(decoy);
    close(w);
}

/* ---- climbing: .., absolute paths, descriptors and the working directory -------------- */

static void climb(const char *op)
{
    struct stat st;
    if (!strcmp(op, "dotdot")) {
        say_contents("open /..HOSTDIR/canary", open(fmt("/..%s/canary", H), O_RDONLY));
        say_contents("open /../../../..HOSTDIR/canary",
                     open(fmt("/../../../..%s/canary", H), O_RDONLY));
        say_contents("open /../host/canary", open("/../host/canary", O_RDONLY));
        say_contents("open UP/HOSTDIR/canary", open(fmt("%s%s/canary", UP, H), O_RDONLY));
        say_contents("open /w/UP/HOSTDIR/canary",
                     open(fmt("/w/%s%s/canary", UP, H), O_RDONLY));
        say_is_root("open /..", open("/..", O_RDONLY | O_DIRECTORY));
        say_is_root("open /../../..", open("/../../..", O_RDONLY | O_DIRECTORY));
        say_is_root("open /w/../..", open("/w/../..", O_RDONLY | O_DIRECTORY));
        say_stat("stat /../host", stat("/../host", &st), &st);
        say_stat("stat /../host/canarydir", stat("/../host/canarydir", &st), &st);
    } else if (!strcmp(op, "absolute")) {
        say_contents("open HOSTDIR/canary", open(fmt("%s/canary", H), O_RDONLY));
        say_stat("stat HOSTDIR/canary", stat(fmt("%s/canary", H), &st), &st);
        say_stat("stat HOSTDIR/canarydir", stat(fmt("%s/canarydir", H), &st), &st);
        say("access HOSTDIR/canary", access(fmt("%s/canary", H), F_OK));
        say("chmod HOSTDIR/canary", chmod(fmt("%s/canary", H), 0600));
        say("truncate HOSTDIR/canary", truncate(fmt("%s/canary", H), 0));
        say_contents("open /etc/passwd", open("/etc/passwd", O_RDONLY));
    } else if (!strcmp(op, "cwd")) {
        if (chdir("/w") < 0)
            die("chdir /w");
        say_contents("open UP/HOSTDIR/canary from /w", open(fmt("%s%s/canary", UP, H), O_RDONLY));
        for (int i = 0; i < 30; i++)
            if (chdir("..") < 0)
                die("chdir ..");
        say_cwd("getcwd after 30 chdir ..");
        say_is_root("open . after 30 chdir ..", open(".", O_RDONLY | O_DIRECTORY));
        say_contents("open host/canary", open("host/canary", O_RDONLY));
        if (chdir("/w/absdir") < 0)
            die("chdir /w/absdir");
        say_cwd("getcwd in /w/absdir");
        say_contents("open ../host/canary from /w/absdir", open("../host/canary", O_RDONLY));
        say_contents("open canary from /w/absdir", open("canary", O_RDONLY));
        say("chdir .. from /w/absdir", chdir(".."));
        say_cwd("getcwd after chdir ..");
        say_contents("open host/canary", open("host/canary", O_RDONLY));
    } else if (!strcmp(op, "fd")) {
        int root = open("/", O_PATH | O_DIRECTORY);
        if (say("open / O_PATH", root) < 0)
            root = dir_fd("/");
        say_is_root("openat / .. O_PATH", openat(root, "..", O_PATH));
        say_is_root("openat / ..", openat(root, "..", O_RDONLY | O_DIRECTORY));
        say_contents("openat / ../host/canary", openat(root, "../host/canary", O_RDONLY));
        say_contents("openat / UP/HOSTDIR/canary",
                     openat(root, fmt("%s%s/canary", UP, H), O_RDONLY));
        say("openat2 / .. RESOLVE_BENEATH",
            openat2_(root, "../host/canary", O_RDONLY, 0, RESOLVE_BENEATH));
        say_is_root("openat2 / .. RESOLVE_IN_ROOT", openat2_(root, "..", O_RDONLY | O_DIRECTORY, 0,
                                                             RESOLVE_IN_ROOT));
        int w = open("/w", O_RDONLY | O_DIRECTORY);
        if (w < 0)
            die("open /w");
        say_contents("openat /w ../../host/canary", openat(w, "../../host/canary", O_RDONLY));
        say_is_root("openat /w ../..", openat(w, "../..", O_RDONLY | O_DIRECTORY));
        int decoy = open("/w/absdir", O_PATH | O_DIRECTORY);
        if (say("open /w/absdir O_PATH", decoy) < 0)
            decoy = dir_fd("/w/absdir");
        say_contents("openat absdir canary", openat(decoy, "canary", O_RDONLY));
        say_contents("openat absdir ../host/canary", openat(decoy, "../host/canary", O_RDONLY));
        say_stat("fstatat absdir ../host", fstatat(decoy, "../host", &st, 0), &st);
        say_contents("openat absdir UP/HOSTDIR/canary",
                     openat(decoy, fmt("%s%s/canary", UP, H), O_RDONLY));
    } else if (!strcmp(op, "fchdir")) {
        int root = dir_fd("/");
        int decoy = dir_fd("/w/absdir");
        say("fchdir /", fchdir(root));
        say("chdir ..", chdir(".."));
        say_cwd("getcwd");
        say_contents("open host/canary", open("host/canary", O_RDONLY));
        say("fchdir absdir", fchdir(decoy));
        say_cwd("getcwd in absdir");
        say("chdir ..", chdir(".."));
        say_cwd("getcwd after chdir ..");
        say_contents("open host/canary", open("host/canary", O_RDONLY));
        say("fchdir absdir", fchdir(decoy));
        say_contents("open UP/HOSTDIR/canary", open(fmt("%s%s/canary", UP, H), O_RDONLY));
    } else {
        printf("unknown op %s\n", op);
        exit(2);
    }
}

/* ---- symlink loops ------------------------------------------------------------------- */

static void loops(void)
{
    struct stat st;
    make_link("/w/loop2", "/w/loop1");
    make_link("loop1", "/w/loop2");
    make_link("/w/self", "/w/self");
    make_file("/w/target", "target\n");
    make_link("/w/target", "/w/c0");
    for (int i = 1; i <= 40; i++)  /* /w/cN reaches the target through N+1 links */
        make_link(fmt("c%d", i - 1), fmt("/w/c%d", i));
    say_contents("open /w/loop1", open("/w/loop1", O_RDONLY));
    say_stat("stat /w/loop2", stat("/w/loop2", &st), &st);
    say_contents("open /w/self", open("/w/self", O_RDONLY));
    say("open O_CREAT /w/self", open("/w/self", O_WRONLY | O_CREAT, 0644));
    say_contents("open /w/c39 (40 links)", open("/w/c39", O_RDONLY));
    say_contents("open /w/c40 (41 links)", open("/w/c40", O_RDONLY));
    say_stat("stat /w/c40", stat("/w/c40", &st), &st);
    say("open O_NOFOLLOW /w/abs", open("/w/abs", O_RDONLY | O_NOFOLLOW));
    say("openat2 RESOLVE_NO_SYMLINKS /w/rel",
        openat2_(AT_FDCWD, "/w/rel", O_RDONLY, 0, RESOLVE_NO_SYMLINKS));
    say("openat2 RESOLVE_NO_SYMLINKS /w/absdir/canary",
        openat2_(AT_FDCWD, "/w/absdir/canary", O_RDONLY, 0, RESOLVE_NO_SYMLINKS));
}

int main(int argc, char **argv)
{
    line_buffered();
    if (argc != 3) {
        printf("usage: paths OP HOSTDIR\n");
        return 2;
    }
    const char *op = argv[1];
    H = argv[2];
    if (mkdir("/w", 0755) < 0)
        die("mkdir /w");
    make_link(fmt("%s/canary", H), "/w/abs");
    make_link(fmt("%s%s/canary", UP, H), "/w/rel");
    make_link("../host/canary", "/reltop");
    make_link(H, "/w/absdir");
    make_link(fmt("%s%s", UP, H), "/w/reldir");

    if (!strncmp(op, "create-", 7))
        create(op);
    else if (!strcmp(op, "dotdot") || !strcmp(op, "absolute") || !strcmp(op, "cwd")
             || !strcmp(op, "fd") || !strcmp(op, "fchdir"))
        climb(op);
    else if (!strcmp(op, "loops"))
        loops();
    else if (!strcmp(op, "mkdir") || !strcmp(op, "mknod") || !strcmp(op, "symlink")
             || !strncmp(op, "rename-", 7) || !strcmp(op, "exchange")
             || !strncmp(op, "link-", 5) || !strcmp(op, "unlink"))
        namespace_op(op);
    else
        follow(op);
    return 0;
}
