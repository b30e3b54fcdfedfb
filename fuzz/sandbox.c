/* sandbox: run one command where a fuzzed payload cannot touch the host.
 *
 *   sandbox [-s MIB] [-c SRC:DEST]... DIR -- COMMAND [ARGS...]
 *   sandbox --check
 *
 * The fuzzers run km with random system calls and mangled executables; km is supposed to
 * confine them to --root DIR, but km is what is being tested, so this is the wall that
 * does not depend on km. In new mount, pid, network, IPC and UTS namespaces:
 *
 *   - every mount is made private and read-only (recursively): a path-handling bug in km
 *     can at worst read a host file, never change one;
 *   - DIR gets a fresh tmpfs of MIB megabytes (default 64), nodev and nosuid, so device
 *     nodes the payload manages to create cannot be opened; the files named with -c are
 *     copied into it (DEST relative to DIR, parent directories created);
 *   - /proc is the new pid namespace's, and the loopback interface is up;
 *   - COMMAND runs in DIR with RLIMIT_FSIZE = MIB and no core dumps, as pid 2; pid 1 only
 *     reaps. When pid 1 goes (COMMAND ended, or this process was killed: pid 1 has
 *     PR_SET_PDEATHSIG), the kernel kills whatever the payload left behind.
 *
 * This process ends exactly as COMMAND did: the same exit status, or the same signal, so
 * that a caller sees what km did. Set-up failures print "sandbox: ..." and exit 125.
 * `--check` tells whether namespaces work here (exit 0) or not (125).
 */
#define _GNU_SOURCE
#include <errno.h>
#include <fcntl.h>
#include <net/if.h>
#include <sched.h>
#include <signal.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/ioctl.h>
#include <sys/mount.h>
#include <sys/prctl.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <sys/wait.h>
#include <unistd.h>

#define SETUP_FAILED 125
#define MAX_COPIES 32

#ifndef SYS_mount_setattr
#define SYS_mount_setattr 442
#endif
#define MOUNT_ATTR_RDONLY_ 0x1
#define AT_RECURSIVE_ 0x8000

struct mount_attr_ {
    uint64_t attr_set, attr_clr, propagation, userns_fd;
};

static void die(const char *what)
{
    fprintf(stderr, "sandbox: %s: %s\n", what, strerror(errno));
    _exit(SETUP_FAILED);
}

static void usage(void)
{
    fprintf(stderr, "usage: sandbox [-s MIB] [-c SRC:DEST]... DIR -- COMMAND [ARGS...]\n"
                    "       sandbox --check\n");
    exit(SETUP_FAILED);
}

static void make_parents(char *path)
{
    for (char *slash = strchr(path + 1, '/'); slash; slash = strchr(slash + 1, '/')) {
        *slash = 0;
        if (mkdir(path, 0755) < 0 && errno != EEXIST)
            die(path);
        *slash = '/';
    }
}

static void copy_file(const char *src, const char *dir, const char *dest)
{
    char target[4096];
    if (snprintf(target, sizeof target, "%s/%s", dir, dest) >= (int)sizeof target)
        die("copy destination too long");
    make_parents(target);
    int in = open(src, O_RDONLY | O_CLOEXEC);
    if (in < 0)
        die(src);
    struct stat st;
    if (fstat(in, &st) < 0)
        die(src);
    int out = open(target, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, st.st_mode & 07777);
    if (out < 0)
        die(target);
    char buf[1 << 16];
    for (;;) {
        ssize_t n = read(in, buf, sizeof buf);
        if (n < 0)
            die(src);
        if (n == 0)
            break;
        for (ssize_t done = 0; done < n;) {
            ssize_t w = write(out, buf + done, n - done);
            if (w < 0)
                die(target);
            done += w;
        }
    }
    close(in);
    close(out);
}

static void loopback_up(void)
{
    int s = socket(AF_INET, SOCK_DGRAM | SOCK_CLOEXEC, 0);
    if (s < 0)
        return; /* no IPv4: the payload's sockets will just fail */
    struct ifreq ifr;
    memset(&ifr, 0, sizeof ifr);
    strcpy(ifr.ifr_name, "lo");
    if (ioctl(s, SIOCGIFFLAGS, &ifr) == 0) {
        ifr.ifr_flags |= IFF_UP;
        ioctl(s, SIOCSIFFLAGS, &ifr);
    }
    close(s);
}

/* pid 1 of the new pid namespace: build the view, start COMMAND, reap, report. */
static void run_init(int report, const char *dir, long mib, char **copies,
                     int ncopies, char **command)
{
    if (prctl(PR_SET_PDEATHSIG, SIGKILL) < 0)
        die("prctl");
    if (mount(NULL, "/", NULL, MS_REC | MS_PRIVATE, NULL) < 0)
        die("make / private");
    struct mount_attr_ ro = {.attr_set = MOUNT_ATTR_RDONLY_};
    if (syscall(SYS_mount_setattr, AT_FDCWD, "/", AT_RECURSIVE_, &ro, sizeof ro) < 0)
        die("make / read-only");
    char options[64];
    snprintf(options, sizeof options, "size=%ldm,mode=0755", mib);
    if (mount("fuzz", dir, "tmpfs", MS_NODEV | MS_NOSUID, options) < 0)
        die("mount a tmpfs on DIR");
    if (mount("proc", "/proc", "proc", MS_NOSUID | MS_NODEV | MS_NOEXEC, NULL) < 0)
        die("mount /proc");
    loopback_up();
    for (int i = 0; i < ncopies; i++) {
        char *colon = strchr(copies[i], ':');
        *colon = 0;
        copy_file(copies[i], dir, colon + 1);
    }

    pid_t child = fork();
    if (child < 0)
        die("fork");
    if (child == 0) {
        struct rlimit fsize = {(rlim_t)mib << 20, (rlim_t)mib << 20}, core = {0, 0};
        setrlimit(RLIMIT_FSIZE, &fsize);
        setrlimit(RLIMIT_CORE, &core);
        if (chdir(dir) < 0)
            die(dir);
        execvp(command[0], command);
        fprintf(stderr, "sandbox: %s: %s\n", command[0], strerror(errno));
        _exit(127);
    }
    for (;;) {
        int status;
        pid_t pid = wait(&status);
        if (pid < 0 && errno == EINTR)
            continue;
        if (pid < 0)
            die("wait");
        if (pid == child) {
            if (write(report, &status, sizeof status) != sizeof status)
                die("report");
            _exit(0);
        }
    }
}

/* End this process the way COMMAND ended. */
static void relay(int status)
{
    if (WIFEXITED(status))
        exit(WEXITSTATUS(status));
    int sig = WTERMSIG(status);
    struct rlimit core = {0, 0};
    setrlimit(RLIMIT_CORE, &core);
    signal(sig, SIG_DFL);
    sigset_t set;
    sigemptyset(&set);
    sigaddset(&set, sig);
    sigprocmask(SIG_UNBLOCK, &set, NULL);
    raise(sig);
    exit(128 + sig);
}

int main(int argc, char **argv)
{
    static char check_dir[] = "/tmp/sandbox-check-XXXXXX";
    char *check_command[] = {"true", NULL};
    char *copies[MAX_COPIES];
    int ncopies = 0;
    long mib = 64;
    const char *dir = NULL;
    char **command = NULL;

    if (argc == 2 && strcmp(argv[1], "--check") == 0) {
        if (!mkdtemp(check_dir))
            die("mkdtemp");
        dir = check_dir;
        command = check_command;
    } else {
        int i = 1;
        for (; i < argc && argv[i][0] == '-' && strcmp(argv[i], "--") != 0; i++) {
            if (strcmp(argv[i], "-s") == 0 && i + 1 < argc)
                mib = atol(argv[++i]);
            else if (strcmp(argv[i], "-c") == 0 && i + 1 < argc && ncopies < MAX_COPIES &&
                     strchr(argv[i + 1], ':'))
                copies[ncopies++] = argv[++i];
            else
                usage();
        }
        if (i + 2 >= argc || strcmp(argv[i + 1], "--") != 0 || mib <= 0)
            usage();
        dir = argv[i];
        command = argv + i + 2;
    }

    int pipefd[2];
    if (pipe2(pipefd, O_CLOEXEC) < 0)
        die("pipe");
    if (unshare(CLONE_NEWNS | CLONE_NEWPID | CLONE_NEWNET | CLONE_NEWIPC | CLONE_NEWUTS) < 0)
        die("unshare");
    pid_t init = fork();
    if (init < 0)
        die("fork");
    if (init == 0) {
        close(pipefd[0]);
        run_init(pipefd[1], dir, mib, copies, ncopies, command);
    }
    close(pipefd[1]);
    int status = 0, init_status;
    ssize_t got = read(pipefd[0], &status, sizeof status);
    while (waitpid(init, &init_status, 0) < 0 && errno == EINTR)
        ;
    if (dir == check_dir)
        rmdir(check_dir);
    if (got != sizeof status) {
        if (WIFEXITED(init_status))
            exit(WEXITSTATUS(init_status) ? WEXITSTATUS(init_status) : SETUP_FAILED);
        fprintf(stderr, "sandbox: the namespace's init died (status %#x)\n", init_status);
        exit(SETUP_FAILED);
    }
    relay(status);
    return SETUP_FAILED;
}
