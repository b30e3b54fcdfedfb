/* What a process in an unprivileged container may not do: priv MODE HOSTDIR [VICTIM].
 *
 *   devices   mknod of character and block devices (fifos, sockets, files are fine)
 *   mounts    mount, umount2, chroot (and the classic chroot escape if it worked),
 *             pivot_root, unshare, setns
 *   handles   name_to_handle_at, open_by_handle_at (the "shocker" escape: a handle made
 *             up for inode 2, the root directory of the file system holding the root)
 *   io_uring  io_uring_setup; if allowed, an IORING_OP_OPENAT of the host canary
 *   ptrace    PTRACE_ATTACH/SEIZE, process_vm_readv, kcmp, pidfd_open of VICTIM, a host
 *             process outside the payload
 *   signals   kill(VICTIM, 0) and kill(VICTIM, SIGTERM)
 *   pivot     pivot_root (run in a mount namespace of its own, in case it works)
 *   tiocsti   TIOCSTI on the terminal on stdin: push "echo INJECTED" into its input
 */
#include "escape.h"  /* first: it defines _GNU_SOURCE */

#include <sched.h>
#include <signal.h>
#include <sys/ioctl.h>
#include <sys/mman.h>
#include <sys/mount.h>
#include <sys/sysmacros.h>
#include <sys/uio.h>

#ifndef CLONE_NEWCGROUP
#define CLONE_NEWCGROUP 0x02000000
#endif

static const char *H;

static void devices(void)
{
    if (mkdir("/w", 0755) < 0)
        die("mkdir /w");
    say("mknod chr 1:3 (null)", mknod("/w/null", S_IFCHR | 0666, makedev(1, 3)));
    say("mknod chr 1:1 (mem)", mknod("/w/mem", S_IFCHR | 0600, makedev(1, 1)));
    say("mknod blk 7:0 (loop0)", mknod("/w/loop0", S_IFBLK | 0600, makedev(7, 0)));
    say("mknodat chr 1:2 (kmem)", mknodat(AT_FDCWD, "/w/kmem", S_IFCHR | 0600, makedev(1, 2)));
    say("open /w/mem", open("/w/mem", O_RDWR));
    say("mknod fifo", mknod("/w/fifo", S_IFIFO | 0644, 0));
    say("mknod reg", mknod("/w/reg", S_IFREG | 0644, 0));
    say("mknod sock", mknod("/w/sock", S_IFSOCK | 0644, 0));
}

static void mounts(void)
{
    if (mkdir("/mnt", 0755) < 0 || mkdir("/jail", 0755) < 0)
        die("mkdir");
    say("mount tmpfs /mnt", mount("none", "/mnt", "tmpfs", 0, NULL));
    say("mount bind / /mnt", mount("/", "/mnt", NULL, MS_BIND | MS_REC, NULL));
    say("umount2 /mnt", umount2("/mnt", 0));
    say("unshare CLONE_NEWNS", unshare(CLONE_NEWNS));
    say("unshare CLONE_NEWUSER", unshare(CLONE_NEWUSER));
    say("unshare CLONE_NEWNET", unshare(CLONE_NEWNET));
    say("unshare CLONE_NEWCGROUP", unshare(CLONE_NEWCGROUP));
    int fd = open("/", O_RDONLY | O_DIRECTORY);
    say("setns on a directory fd", setns(fd, 0));
    say("setns on a directory fd, CLONE_NEWNS", setns(fd, CLONE_NEWNS));
    if (say("chroot /jail", chroot("/jail")) == 0) {
        /* The classic escape: a root process whose root is now below its cwd climbs. */
        for (int i = 0; i < 64; i++)
            if (chdir("..") < 0)
                break;
        say("chroot . after climbing", chroot("."));
        say_contents("open HOSTDIR/canary after the chroot escape",
                     open(fmt("%s/canary", H), O_RDONLY));
    }
}

static void pivot(void)
{
    if (mkdir("/mnt", 0755) < 0)
        die("mkdir");
    say("pivot_root /mnt /mnt", syscall(SYS_pivot_root, "/mnt", "/mnt"));
    say("pivot_root / /", syscall(SYS_pivot_root, "/", "/"));
}

struct handle { uint32_t bytes; int32_t type; unsigned char f[128]; };

static void handles(void)
{
    struct handle fh = {.bytes = sizeof fh.f};
    int mount_id;
    say("name_to_handle_at /", syscall(SYS_name_to_handle_at, AT_FDCWD, "/", &fh,
                                       &mount_id, 0));
    int root = open("/", O_RDONLY | O_DIRECTORY);
    if (root < 0)
        die("open /");
    long fd = syscall(SYS_open_by_handle_at, root, &fh, O_RDONLY | O_DIRECTORY);
    say("open_by_handle_at (the handle of /)", fd);
    /* FILEID_INO32_GEN for inode 2, generation 0: the file system's root directory. */
    struct handle shocker = {.bytes = 8, .type = 1};
    uint32_t ino = 2, gen = 0;
    memcpy(shocker.f, &ino, 4);
    memcpy(shocker.f + 4, &gen, 4);
    fd = syscall(SYS_open_by_handle_at, root, &shocker, O_RDONLY | O_DIRECTORY);
    say("open_by_handle_at (inode 2: the file system's root)", fd);
    if (fd >= 0) {
        const char *inside = fmt("%s/canary", H + 1);  /* relative to the host's root */
        say_contents("openat that HOSTDIR/canary", openat(fd, inside, O_RDONLY));
    }
}

/* io_uring by hand (musl's headers have no linux/io_uring.h): offsets from the ABI. */
struct sqring_offsets { uint32_t head, tail, ring_mask, ring_entries, flags, dropped, array,
                        resv1; uint64_t user_addr; };
struct cqring_offsets { uint32_t head, tail, ring_mask, ring_entries, overflow, cqes, flags,
                        resv1; uint64_t user_addr; };
struct uring_params { uint32_t sq_entries, cq_entries, flags, sq_thread_cpu, sq_thread_idle,
                      features, wq_fd, resv[3]; struct sqring_offsets sq_off;
                      struct cqring_offsets cq_off; };

static void io_uring(void)
{
    struct uring_params p;
    memset(&p, 0, sizeof p);
    long ring = syscall(425 /* io_uring_setup */, 4, &p);
    if (say("io_uring_setup", ring) < 0)
        return;
    size_t sq_size = p.sq_off.array + p.sq_entries * 4;
    size_t cq_size = p.cq_off.cqes + p.cq_entries * 16;
    unsigned char *sq = mmap(NULL, sq_size, PROT_READ | PROT_WRITE, MAP_SHARED, ring, 0);
    unsigned char *cq = mmap(NULL, cq_size, PROT_READ | PROT_WRITE, MAP_SHARED, ring,
                             0x8000000);
    unsigned char *sqes = mmap(NULL, p.sq_entries * 64, PROT_READ | PROT_WRITE, MAP_SHARED,
                               ring, 0x10000000);
    if (sq == MAP_FAILED || cq == MAP_FAILED || sqes == MAP_FAILED) {
        printf("io_uring mmap: %s\n", ename(errno));
        return;
    }
    const char *path = fmt("%s/canary", H);
    memset(sqes, 0, 64);
    sqes[0] = 18;                                   /* IORING_OP_OPENAT */
    int32_t dirfd = AT_FDCWD;
    uint64_t addr = (uintptr_t)path, user = 1;
    memcpy(sqes + 4, &dirfd, 4);
    memcpy(sqes + 16, &addr, 8);
    memcpy(sqes + 32, &user, 8);                    /* len (mode) and open_flags stay 0 */
    uint32_t *tail = (uint32_t *)(sq + p.sq_off.tail);
    uint32_t mask = *(uint32_t *)(sq + p.sq_off.ring_mask);
    ((uint32_t *)(sq + p.sq_off.array))[*tail & mask] = 0;
    __atomic_store_n(tail, *tail + 1, __ATOMIC_RELEASE);
    say("io_uring_enter", syscall(426, ring, 1, 1, 1 /* GETEVENTS */, NULL, 0));
    uint32_t head = __atomic_load_n((uint32_t *)(cq + p.cq_off.head), __ATOMIC_ACQUIRE);
    uint32_t cmask = *(uint32_t *)(cq + p.cq_off.ring_mask);
    int32_t res;
    memcpy(&res, cq + p.cq_off.cqes + (head & cmask) * 16 + 8, 4);
    if (res < 0) {
        printf("io_uring openat HOSTDIR/canary: %s\n", ename(-res));
    } else {
        say_contents("io_uring openat HOSTDIR/canary", res);
    }
}

/* No PTRACE_TRACEME: km's parent is the test runner, which must not become a tracer. */
static void ptrace_(pid_t victim)
{
    say("ptrace PTRACE_ATTACH victim", syscall(SYS_ptrace, 16 /* ATTACH */, victim, 0, 0));
    say("ptrace PTRACE_SEIZE victim", syscall(SYS_ptrace, 0x4206 /* SEIZE */, victim, 0, 0));
    char buf[16];
    struct iovec local = {buf, sizeof buf}, remote = {(void *)0x400000, sizeof buf};
    say("process_vm_readv victim", syscall(SYS_process_vm_readv, victim, &local, 1, &remote,
                                           1, 0));
    say("kcmp victim", syscall(SYS_kcmp, getpid(), victim, 0 /* KCMP_FILE */, 0, 0));
    say("pidfd_open victim", syscall(434, victim, 0));
}

static void signals(pid_t victim)
{
    say("kill victim 0", kill(victim, 0));
    say("kill victim SIGTERM", kill(victim, SIGTERM));
}

static void tiocsti(void)
{
    const char *text = "echo INJECTED\n";
    long ok = 0, first = 0;
    for (const char *c = text; *c; c++) {
        long r = ioctl(0, TIOCSTI, c);
        if (c == text)
            first = r < 0 ? -errno : 0;
        if (r == 0)
            ok++;
    }
    if (first < 0)
        printf("TIOCSTI: %s\n", ename(-first));
    else
        printf("TIOCSTI: OK (%ld characters pushed)\n", ok);
}

int main(int argc, char **argv)
{
    line_buffered();
    if (argc < 3) {
        printf("usage: priv MODE HOSTDIR [VICTIM]\n");
        return 2;
    }
    H = argv[2];
    pid_t victim = argc > 3 ? atoi(argv[3]) : 0;
    const char *mode = argv[1];
    if (!strcmp(mode, "devices")) devices();
    else if (!strcmp(mode, "mounts")) mounts();
    else if (!strcmp(mode, "handles")) handles();
    else if (!strcmp(mode, "io_uring")) io_uring();
    else if (!strcmp(mode, "ptrace") && victim) ptrace_(victim);
    else if (!strcmp(mode, "signals") && victim) signals(victim);
    else if (!strcmp(mode, "tiocsti")) tiocsti();
    else if (!strcmp(mode, "pivot")) pivot();
    else return 2;
    return 0;
}
