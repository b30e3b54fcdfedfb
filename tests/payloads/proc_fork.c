/* Processes: proc_fork MODE [ARGS], one scenario per mode. Output goes out with write(2),
 * one line at a time; a parent prints about a child only once it has reaped it, so the
 * order of the lines never depends on scheduling. Only deterministic facts are printed:
 * exit statuses, signal and errno names, yes/no checks on pids.
 *
 * modes:
 *   pipe                 fork, the child writes into a pipe and exits 7, waitpid
 *   stdio                a stdio buffer filled before fork is flushed by both processes
 *   bomb N [MARKER]      N children exit with 1..N, all reaped: count and sum
 *   vfork_exit           vfork, the child _exits while the parent is suspended
 *   vfork_exec PATH      vfork + execve of PATH, and of a missing path (127)
 *   exec PATH            execve PATH with an argv and envp it checks (pid kept, signals)
 *   exec_pending PATH    a blocked, pending SIGTERM survives execve of PATH and kills it
 *   exec_errors PATH     execve failures: ENOENT, EACCES, ENOEXEC, ENOTDIR...; then PATH
 *   exec_script          fork + execve of a #! script run by busybox sh
 *   exec_nested_script   the same, then a #! script whose interpreter is that script
 *   popen                popen "r" and "w" through /bin/sh, pclose statuses
 *   spawn PATH           posix_spawn of PATH: plain, with file actions, with attributes
 *   spawn_missing        posix_spawn and posix_spawnp of a missing program: ENOENT
 *   sigchld N            a SIGCHLD handler (SA_SIGINFO) sees each of N children exit
 *   sigchld_ign          SIGCHLD ignored: children are reaped automatically
 *   pgkill N             N children in their own process group killed with kill(-pgid)
 *   setsid               a child becomes a session and group leader
 *   waitid               waitid with WEXITED|WNOHANG, WNOWAIT, P_PGID, CLD_KILLED
 *   sigkill              children killed by SIGKILL, SIGSEGV, SIGABRT, seen as signaled
 *   stop                 a child stops itself, is continued, exits (WUNTRACED/WCONTINUED)
 *   kill_at_once         children signalled the moment fork returns in the parent
 *   fdinherit PATH       a pipe fd number passed across fork+exec, close-on-exec fds closed
 *   fork_threads N       N forks while two other threads keep malloc busy
 *   orphans N [MARKER]   N children outlive the parent by a few hundred milliseconds
 *   noreap N [MARKER]    N children exit and are never waited for by the parent
 */
#define _GNU_SOURCE
#include <fcntl.h>
#include <pthread.h>
#include <signal.h>
#include <spawn.h>
#include <stdarg.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "payload.h"

extern char **environ;

static void say(const char *fmt, ...) __attribute__((format(printf, 1, 2)));
static void say(const char *fmt, ...)
{
    char buf[1024];
    int saved = errno;
    va_list ap;
    va_start(ap, fmt);
    int n = vsnprintf(buf, sizeof buf, fmt, ap);
    va_end(ap);
    if (n > (int)sizeof buf - 1)
        n = sizeof buf - 1;
    write(1, buf, n);
    errno = saved;
}

static const char *yes_no(int b) { return b ? "yes" : "no"; }

static const char *ename(int e)
{
    switch (e) {
    case ESRCH: return "ESRCH";
    case ECHILD: return "ECHILD";
    case ENOEXEC: return "ENOEXEC";
    case E2BIG: return "E2BIG";
    case ETXTBSY: return "ETXTBSY";
    }
    return errno_name(e);
}

static const char *signame(int s)
{
    static char buf[32];
    switch (s) {
    case SIGHUP: return "SIGHUP";
    case SIGINT: return "SIGINT";
    case SIGQUIT: return "SIGQUIT";
    case SIGILL: return "SIGILL";
    case SIGABRT: return "SIGABRT";
    case SIGBUS: return "SIGBUS";
    case SIGFPE: return "SIGFPE";
    case SIGKILL: return "SIGKILL";
    case SIGUSR1: return "SIGUSR1";
    case SIGSEGV: return "SIGSEGV";
    case SIGUSR2: return "SIGUSR2";
    case SIGPIPE: return "SIGPIPE";
    case SIGALRM: return "SIGALRM";
    case SIGTERM: return "SIGTERM";
    case SIGCHLD: return "SIGCHLD";
    case SIGCONT: return "SIGCONT";
    case SIGSTOP: return "SIGSTOP";
    case SIGTSTP: return "SIGTSTP";
    }
    snprintf(buf, sizeof buf, "signal %d", s);
    return buf;
}

static const char *status_str(int st)
{
    static char buf[64];
    if (WIFEXITED(st))
        snprintf(buf, sizeof buf, "exited %d", WEXITSTATUS(st));
    else if (WIFSIGNALED(st))
        snprintf(buf, sizeof buf, "signaled %s", signame(WTERMSIG(st)));
    else if (WIFSTOPPED(st))
        snprintf(buf, sizeof buf, "stopped %s", signame(WSTOPSIG(st)));
    else if (WIFCONTINUED(st))
        snprintf(buf, sizeof buf, "continued");
    else
        snprintf(buf, sizeof buf, "status 0x%x", st);
    return buf;
}

static const char *code_name(int code)
{
    static char buf[32];
    switch (code) {
    case CLD_EXITED: return "CLD_EXITED";
    case CLD_KILLED: return "CLD_KILLED";
    case CLD_DUMPED: return "CLD_DUMPED";
    case CLD_STOPPED: return "CLD_STOPPED";
    case CLD_CONTINUED: return "CLD_CONTINUED";
    case CLD_TRAPPED: return "CLD_TRAPPED";
    }
    snprintf(buf, sizeof buf, "code %d", code);
    return buf;
}

/* waitpid that reports what it reaped: "LABEL: waitpid -> exited 7" */
static int reap(const char *label, pid_t pid, int options)
{
    int st = 0;
    pid_t w;
    do
        w = waitpid(pid, &st, options);
    while (w < 0 && errno == EINTR);
    if (w < 0)
        say("%s: waitpid: %s\n", label, ename(errno));
    else if (w != pid && pid > 0)
        say("%s: waitpid returned another pid\n", label);
    else
        say("%s: %s\n", label, status_str(st));
    return st;
}

static void sleep_ms(long ms)
{
    struct timespec ts = {ms / 1000, (ms % 1000) * 1000000L};
    while (nanosleep(&ts, &ts) < 0 && errno == EINTR)
        ;
}

static void must(int ok, const char *what)
{
    if (!ok) {
        say("FATAL %s: %s\n", what, ename(errno));
        _exit(99);
    }
}

/* Read everything from fd into buf (NUL-terminated); returns the length. */
static long slurp(int fd, char *buf, long size)
{
    long n = 0, r;
    while (n < size - 1 && (r = read(fd, buf + n, size - 1 - n)) != 0) {
        if (r < 0) {
            if (errno == EINTR)
                continue;
            break;
        }
        n += r;
    }
    buf[n] = 0;
    return n;
}

/* Print a block of text line by line, each with a prefix. */
static void say_lines(const char *prefix, const char *text)
{
    while (*text) {
        const char *nl = strchr(text, '\n');
        int len = nl ? (int)(nl - text) : (int)strlen(text);
        say("%s%.*s\n", prefix, len, text);
        text += len + (nl != NULL);
    }
}

static int counter = 1;

static int mode_pipe(void)
{
    int p[2];
    must(pipe(p) == 0, "pipe");
    pid_t parent = getpid();
    pid_t pid = fork();
    must(pid >= 0, "fork");
    if (pid == 0) {
        close(p[0]);
        counter = 2;
        dprintf(p[1], "hello from the child\n");
        dprintf(p[1], "child: getppid() == parent: %s\n", yes_no(getppid() == parent));
        dprintf(p[1], "child: getpid() != parent: %s\n", yes_no(getpid() != parent));
        dprintf(p[1], "child: counter now %d\n", counter);
        _exit(7);
    }
    close(p[1]);
    char buf[4096];
    slurp(p[0], buf, sizeof buf);
    close(p[0]);
    say_lines("parent read: ", buf);
    int st;
    pid_t w = waitpid(pid, &st, 0);
    say("waitpid returned the child's pid: %s\n", yes_no(w == pid));
    say("WIFEXITED: %s, WEXITSTATUS: %d\n", yes_no(WIFEXITED(st)), WEXITSTATUS(st));
    say("parent: counter still %d\n", counter);
    errno = 0;
    w = waitpid(-1, &st, 0);
    say("waitpid again: %ld %s\n", (long)w, ename(errno));
    return 0;
}

static int mode_stdio(void)
{
    printf("printed before fork (sits in the buffer)\n");
    pid_t pid = fork();
    must(pid >= 0, "fork");
    if (pid == 0) {
        printf("child\n");
        exit(0);  /* flushes the child's copy of the buffer */
    }
    int st;
    waitpid(pid, &st, 0);
    printf("parent after the child: %s\n", status_str(st));
    return 0;
}

static int mode_bomb(int n)
{
    pid_t pids[1024];
    if (n > 1024)
        n = 1024;
    for (int i = 0; i < n; i++) {
        pid_t pid = fork();
        if (pid < 0) {
            say("fork %d failed: %s\n", i, ename(errno));
            break;
        }
        if (pid == 0)
            _exit(i + 1);
        pids[i] = pid;
    }
    int count = 0, sum = 0, known = 0, signaled = 0, st;
    pid_t w;
    while ((w = waitpid(-1, &st, 0)) > 0 || (w < 0 && errno == EINTR)) {
        if (w < 0)
            continue;
        count++;
        for (int i = 0; i < n; i++)
            if (pids[i] == w) {
                known++;
                if (WIFEXITED(st) && WEXITSTATUS(st) != i + 1)
                    say("child %d exited %d\n", i, WEXITSTATUS(st));
            }
        if (WIFEXITED(st))
            sum += WEXITSTATUS(st);
        else
            signaled++;
    }
    say("after the last child, waitpid: %s\n", ename(errno));
    say("reaped %d children (%d with a pid fork returned), %d not exited\n", count, known,
        signaled);
    say("sum of exit codes: %d\n", sum);
    return 0;
}

static int mode_vfork_exit(void)
{
    pid_t parent = getpid();
    pid_t pid = vfork();
    must(pid >= 0, "vfork");
    if (pid == 0) {
        /* The parent is suspended: this line must come before the parent's. */
        struct timespec ts = {0, 150 * 1000000L};
        nanosleep(&ts, NULL);
        static const char line[] = "child: running while the parent waits\n";
        write(1, line, sizeof line - 1);
        if (getppid() != parent)
            _exit(50);
        _exit(3);
    }
    say("parent: resumed after the child\n");
    reap("vfork child", pid, 0);
    return 0;
}

static int mode_vfork_exec(const char *path)
{
    pid_t pid = vfork();
    must(pid >= 0, "vfork");
    if (pid == 0) {
        execl(path, "proc_child", "from-vfork", "--exit", "9", (char *)NULL);
        _exit(127);
    }
    reap("vfork+exec child", pid, 0);
    pid = vfork();
    must(pid >= 0, "vfork");
    if (pid == 0) {
        execl("./no-such-program-for-vfork", "x", (char *)NULL);
        _exit(errno == ENOENT ? 127 : 126);
    }
    reap("vfork+exec of a missing path", pid, 0);
    return 0;
}

static void on_int(int s) { (void)s; }

static int mode_exec(const char *path)
{
    char pid[32], sigusr1[8], sigusr2[8], sigint[8];
    snprintf(pid, sizeof pid, "%d", (int)getpid());
    snprintf(sigusr1, sizeof sigusr1, "%d", SIGUSR1);
    snprintf(sigusr2, sizeof sigusr2, "%d", SIGUSR2);
    snprintf(sigint, sizeof sigint, "%d", SIGINT);
    /* Linux keeps ignored signals and the mask across execve, resets handled ones. */
    signal(SIGUSR1, SIG_IGN);
    signal(SIGINT, on_int);
    sigset_t set;
    sigemptyset(&set);
    sigaddset(&set, SIGUSR2);
    sigprocmask(SIG_BLOCK, &set, NULL);
    char *argv[] = {"custom-argv0", "one", "two words", "", "--pid", pid, "--env",
                    "--exe", (char *)path, "--sigign", sigusr1, "--sigign", sigint,
                    "--sigmask", sigusr2, "--exit", "33", NULL};
    char *envp[] = {"FOO=bar", "EMPTY=", "MULTI=a=b=c", "SPACES=with  two spaces", NULL};
    say("parent: about to execve\n");
    execve(path, argv, envp);
    say("execve failed: %s\n", ename(errno));
    return 99;
}

/* A signal pending (blocked) at execve stays pending in the new program. */
static int mode_exec_pending(const char *path)
{
    sigset_t set;
    sigemptyset(&set);
    sigaddset(&set, SIGTERM);
    sigprocmask(SIG_BLOCK, &set, NULL);
    kill(getpid(), SIGTERM);
    sigpending(&set);
    say("parent: SIGTERM pending before execve: %s\n", yes_no(sigismember(&set, SIGTERM)));
    char term[8];
    snprintf(term, sizeof term, "%d", SIGTERM);
    char *argv[] = {"proc_child", "--sigmask", term, "--sigpending", term, "--unblock", term,
                    "--exit", "0", NULL};
    execve(path, argv, environ);
    say("execve failed: %s\n", ename(errno));
    return 99;
}

static void write_file(const char *name, const char *data, long len, mode_t mode)
{
    unlink(name);
    int fd = open(name, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, mode);
    must(fd >= 0, name);
    must(write(fd, data, len) == len, "write");
    close(fd);
    chmod(name, mode);
}

static int mode_exec_errors(const char *path)
{
    static const char junk[] = "\x01\x02\x03 this is not an executable at all\n";
    write_file("proc-not-executable", "#!/bin/sh\necho hi\n", 18, 0644);
    write_file("proc-junk", junk, sizeof junk - 1, 0755);
    write_file("proc-empty", "", 0, 0755);
    write_file("proc-bad-interp", "#!/no/such/interpreter\n", 23, 0755);
    write_file("proc-short", "#", 1, 0755);
    unlink("proc-missing");
    static const char *const cases[] = {
        "proc-missing", "./proc-missing", "proc-not-executable", "proc-junk", "proc-empty",
        "proc-short", "proc-bad-interp", ".", "/", "proc-junk/below", "",
    };
    for (unsigned i = 0; i < sizeof cases / sizeof *cases; i++) {
        char *argv[] = {(char *)cases[i], NULL};
        errno = 0;
        int r = execve(cases[i], argv, environ);
        say("execve(\"%s\"): %d %s, still running\n", cases[i], r, ename(errno));
    }
    char *argv[] = {"proc_child", "after the failures", "--exit", "21", NULL};
    execve(path, argv, environ);
    say("final execve failed: %s\n", ename(errno));
    return 99;
}

static int mode_exec_script(void)
{
    static const char script[] =
        "#!/bin/busybox sh\n"
        "echo \"script: \\$0=$0 args=$# [$*]\"\n"
        "echo \"script: pid is my parent's child: $([ $PPID -gt 1 ] && echo yes)\"\n"
        "exit 12\n";
    write_file("proc-script.sh", script, sizeof script - 1, 0755);
    static const char nested[] = "#!./proc-script.sh\n";
    write_file("proc-nested.sh", nested, sizeof nested - 1, 0755);
    pid_t pid = fork();
    must(pid >= 0, "fork");
    if (pid == 0) {
        char *argv[] = {"./proc-script.sh", "a", "b c", NULL};
        execve("./proc-script.sh", argv, environ);
        _exit(127);
    }
    reap("script", pid, 0);
    return 0;
}

static int mode_exec_nested_script(void)
{
    mode_exec_script();
    /* A #! script whose interpreter is itself a #! script: Linux follows the chain (up to
     * a few levels), so busybox ends up running proc-script.sh with proc-nested.sh as $1. */
    pid_t pid = fork();
    must(pid >= 0, "fork");
    if (pid == 0) {
        char *argv[] = {"./proc-nested.sh", "x", NULL};
        execve("./proc-nested.sh", argv, environ);
        say("nested script: execve: %s\n", ename(errno));
        _exit(127);
    }
    reap("nested script", pid, 0);
    return 0;
}

static int mode_popen(void)
{
    FILE *f = popen("echo popen-output; echo second line from $0; exit 3", "r");
    must(f != NULL, "popen r");
    char line[512];
    while (fgets(line, sizeof line, f))
        say("read from popen: %s", line);
    int st = pclose(f);
    say("pclose: %s\n", status_str(st));

    f = popen("cat", "w");
    must(f != NULL, "popen w");
    fputs("written through popen(\"cat\", \"w\")\n", f);
    fputs("a second line\n", f);
    st = pclose(f);
    say("pclose of cat: %s\n", status_str(st));

    f = popen("no-such-command-for-popen 2>/dev/null", "r");
    must(f != NULL, "popen missing");
    while (fgets(line, sizeof line, f))
        say("unexpected: %s", line);
    st = pclose(f);
    say("pclose of a missing command: %s\n", status_str(st));

    f = popen("kill -TERM $$", "r");
    must(f != NULL, "popen kill");
    while (fgets(line, sizeof line, f))
        say("unexpected: %s", line);
    st = pclose(f);
    say("pclose of a shell that killed itself: %s\n", status_str(st));
    return 0;
}

static int mode_spawn(const char *path)
{
    pid_t pid = 0;
    char *argv1[] = {"spawned", "plain", "--getenv", "LC_ALL", "--exit", "4", NULL};
    int r = posix_spawn(&pid, path, NULL, NULL, argv1, environ);
    if (r != 0)
        say("posix_spawn: %s\n", ename(r));
    else
        reap("posix_spawn child", pid, 0);

    /* stdout of the child into a pipe the parent reads. */
    int p[2];
    must(pipe(p) == 0, "pipe");
    posix_spawn_file_actions_t fa;
    posix_spawn_file_actions_init(&fa);
    posix_spawn_file_actions_addclose(&fa, p[0]);
    posix_spawn_file_actions_adddup2(&fa, p[1], 1);
    posix_spawn_file_actions_addclose(&fa, p[1]);
    char *argv2[] = {"spawned-redirected", "into a pipe", NULL};
    r = posix_spawn(&pid, path, &fa, NULL, argv2, environ);
    posix_spawn_file_actions_destroy(&fa);
    close(p[1]);
    if (r != 0) {
        say("posix_spawn with file actions: %s\n", ename(r));
    } else {
        char buf[4096];
        slurp(p[0], buf, sizeof buf);
        say_lines("through the pipe: ", buf);
        reap("posix_spawn child with file actions", pid, 0);
    }
    close(p[0]);

    /* With attributes: its own process group, SIGUSR1 reset to default. */
    posix_spawnattr_t attr;
    posix_spawnattr_init(&attr);
    posix_spawnattr_setflags(&attr, POSIX_SPAWN_SETPGROUP | POSIX_SPAWN_SETSIGMASK);
    posix_spawnattr_setpgroup(&attr, 0);
    sigset_t mask;
    sigemptyset(&mask);
    sigaddset(&mask, SIGUSR2);
    posix_spawnattr_setsigmask(&attr, &mask);
    char usr2[8];
    snprintf(usr2, sizeof usr2, "%d", SIGUSR2);
    char *argv3[] = {"spawned-attr", "--sigmask", usr2, "--exit", "0", NULL};
    r = posix_spawn(&pid, path, NULL, &attr, argv3, environ);
    posix_spawnattr_destroy(&attr);
    if (r != 0) {
        say("posix_spawn with attributes: %s\n", ename(r));
    } else {
        int st;
        /* The child is its own group leader (it may already have exited: then ESRCH). */
        pid_t g = getpgid(pid);
        waitpid(pid, &st, 0);
        say("posix_spawn child with attributes: %s, own group: %s\n", status_str(st),
            yes_no(g == pid || (g < 0 && errno == ESRCH)));
    }

    return 0;
}

/* A missing program: the error comes back from posix_spawn itself (glibc's child reports
 * it through memory it shares with the parent, CLONE_VM; musl's through a pipe). */
static int mode_spawn_missing(void)
{
    char *argv4[] = {"missing", NULL};
    pid_t pid = 0;
    int r;
    r = posix_spawn(&pid, "./no-such-program-for-spawn", NULL, NULL, argv4, environ);
    say("posix_spawn of a missing path: %s\n", r ? ename(r) : "success");
    if (r == 0)
        reap("posix_spawn child of a missing path", pid, 0);
    r = posix_spawnp(&pid, "no-such-program-in-path", NULL, NULL, argv4, environ);
    say("posix_spawnp of a missing name: %s\n", r ? ename(r) : "success");
    if (r == 0)
        reap("posix_spawnp child of a missing name", pid, 0);
    return 0;
}

static volatile sig_atomic_t chld_count, chld_pid, chld_code, chld_status, chld_signo;

static void on_chld(int s, siginfo_t *si, void *uc)
{
    (void)uc;
    chld_signo = s;
    chld_pid = si->si_pid;
    chld_code = si->si_code;
    chld_status = si->si_status;
    chld_count++;
}

static int mode_sigchld(int n)
{
    struct sigaction sa;
    memset(&sa, 0, sizeof sa);
    sa.sa_sigaction = on_chld;
    sa.sa_flags = SA_SIGINFO | SA_RESTART;
    sigemptyset(&sa.sa_mask);
    sigaction(SIGCHLD, &sa, NULL);
    sigset_t block, old;
    sigemptyset(&block);
    sigaddset(&block, SIGCHLD);
    sigprocmask(SIG_BLOCK, &block, &old);
    sigdelset(&old, SIGCHLD);
    if (n > 64)
        n = 64;
    pid_t pids[64];
    int go[64];
    for (int i = 0; i < n; i++) {
        int p[2];
        must(pipe(p) == 0, "pipe");
        pid_t pid = fork();
        must(pid >= 0, "fork");
        if (pid == 0) {
            close(p[1]);
            char c;
            read(p[0], &c, 1);
            _exit(10 + i);
        }
        close(p[0]);
        pids[i] = pid;
        go[i] = p[1];
    }
    for (int i = 0; i < n; i++) {
        write(go[i], "x", 1);
        close(go[i]);
        while (chld_count < i + 1)
            sigsuspend(&old);
        say("child %d: SIGCHLD %s, si_pid is the child: %s, %s, si_status %d\n", i,
            chld_signo == SIGCHLD ? "received" : "wrong signal", yes_no(chld_pid == pids[i]),
            code_name(chld_code), (int)chld_status);
        reap("  reaped", pids[i], 0);
    }
    say("SIGCHLD handler ran %d times for %d children\n", (int)chld_count, n);
    return 0;
}

static int mode_sigchld_ign(void)
{
    signal(SIGCHLD, SIG_IGN);
    for (int i = 0; i < 3; i++) {
        pid_t pid = fork();
        must(pid >= 0, "fork");
        if (pid == 0)
            _exit(i);
    }
    /* With SIGCHLD ignored the children never become zombies: wait blocks until they
     * have all gone, then fails with ECHILD. */
    int st;
    pid_t w = wait(&st);
    if (w < 0)
        say("wait with SIGCHLD ignored: %s\n", ename(errno));
    else
        say("wait with SIGCHLD ignored returned a zombie child: %s\n", status_str(st));
    return 0;
}

static void on_term_exit(int s)
{
    (void)s;
    _exit(40);
}

static int mode_pgkill(int n)
{
    int ready[2];
    must(pipe(ready) == 0, "pipe");
    if (n > 32)
        n = 32;
    pid_t pids[32], pgid = 0;
    for (int i = 0; i < n; i++) {
        pid_t pid = fork();
        must(pid >= 0, "fork");
        if (pid == 0) {
            close(ready[0]);
            if (setpgid(0, pgid) < 0)
                _exit(98);
            if (i == n - 1)
                signal(SIGTERM, on_term_exit);  /* this one catches it and exits 40 */
            write(ready[1], "r", 1);
            for (;;)
                pause();
        }
        if (setpgid(pid, pgid) < 0 && errno != EACCES)  /* EACCES: it already exec'd */
            say("setpgid(child %d): %s\n", i, ename(errno));
        if (i == 0)
            pgid = pid;
        pids[i] = pid;
    }
    close(ready[1]);
    char c;
    for (int i = 0; i < n; i++)
        must(read(ready[0], &c, 1) == 1, "read ready");
    for (int i = 0; i < n; i++)
        say("child %d: getpgid == the group: %s\n", i, yes_no(getpgid(pids[i]) == pgid));
    say("parent outside the group: %s\n", yes_no(getpgid(0) != pgid && getpgrp() != pgid));
    if (pgid <= 1 || pgid == getpgrp()) {  /* never signal our own group or everyone */
        say("FATAL bad process group %d\n", (int)pgid);
        return 99;
    }
    say("kill(-pgid, SIGTERM): %d\n", kill(-pgid, SIGTERM));
    for (int i = 0; i < n; i++) {
        char label[32];
        snprintf(label, sizeof label, "child %d", i);
        int st = reap(label, pids[i], 0);
        if (WIFSIGNALED(st))
            say("  WIFSIGNALED: yes, WTERMSIG: %s\n", signame(WTERMSIG(st)));
    }
    errno = 0;
    int r = kill(-pgid, SIGTERM);
    say("kill(-pgid) of the emptied group: %d %s\n", r, ename(errno));
    return 0;
}

static int mode_setsid(void)
{
    pid_t pid = fork();
    must(pid >= 0, "fork");
    if (pid == 0) {
        pid_t sid = setsid();
        int ok = sid == getpid() && getsid(0) == getpid() && getpgrp() == getpid();
        _exit(ok ? 0 : 1);
    }
    reap("child after setsid (0 when it leads a session and a group)", pid, 0);
    errno = 0;
    say("setsid in the parent (a group leader? no): %s\n",
        setsid() < 0 ? ename(errno) : "new session");
    return 0;
}

static int mode_waitid(void)
{
    int go[2];
    must(pipe(go) == 0, "pipe");
    pid_t pid = fork();
    must(pid >= 0, "fork");
    if (pid == 0) {
        close(go[1]);
        char c;
        read(go[0], &c, 1);
        _exit(5);
    }
    close(go[0]);
    siginfo_t info;
    memset(&info, 0, sizeof info);
    int r = waitid(P_PID, pid, &info, WEXITED | WNOHANG);
    say("waitid WNOHANG while the child runs: %d, si_pid 0: %s\n", r, yes_no(info.si_pid == 0));
    write(go[1], "x", 1);
    close(go[1]);
    int polls = 0;
    for (;;) {
        memset(&info, 0, sizeof info);
        r = waitid(P_PID, pid, &info, WEXITED | WNOHANG | WNOWAIT);
        if (r < 0 || info.si_pid != 0 || ++polls > 5000)
            break;
        sleep_ms(2);
    }
    say("waitid WNOHANG|WNOWAIT after it exits: %d, si_pid is the child: %s, si_signo %s, "
        "%s, si_status %d\n", r, yes_no(info.si_pid == pid), signame(info.si_signo),
        code_name(info.si_code), info.si_status);
    memset(&info, 0, sizeof info);
    r = waitid(P_ALL, 0, &info, WEXITED);
    say("waitid P_ALL (WNOWAIT left it waitable): %d, si_pid is the child: %s, %s, "
        "si_status %d\n", r, yes_no(info.si_pid == pid), code_name(info.si_code),
        info.si_status);
    errno = 0;
    r = waitid(P_ALL, 0, &info, WEXITED | WNOHANG);
    say("waitid with no children: %d %s\n", r, ename(errno));

    /* A killed child, waited for by process group. */
    int ready[2];
    must(pipe(ready) == 0, "pipe");
    pid = fork();
    must(pid >= 0, "fork");
    if (pid == 0) {
        setpgid(0, 0);
        write(ready[1], "r", 1);
        for (;;)
            pause();
    }
    setpgid(pid, pid);
    char c;
    read(ready[0], &c, 1);
    kill(pid, SIGKILL);
    memset(&info, 0, sizeof info);
    r = waitid(P_PGID, pid, &info, WEXITED);
    say("waitid P_PGID of a SIGKILLed child: %d, si_pid is the child: %s, %s, si_status %s\n",
        r, yes_no(info.si_pid == pid), code_name(info.si_code), signame(info.si_status));
    return 0;
}

static int mode_sigkill(void)
{
    int ready[2];
    must(pipe(ready) == 0, "pipe");
    pid_t pid = fork();
    must(pid >= 0, "fork");
    if (pid == 0) {
        write(ready[1], "r", 1);
        for (;;)
            pause();
    }
    char c;
    read(ready[0], &c, 1);
    say("kill(child, 0): %d\n", kill(pid, 0));
    say("kill(child, SIGKILL): %d\n", kill(pid, SIGKILL));
    int st = reap("SIGKILLed child", pid, 0);
    say("  WIFSIGNALED: %s, WTERMSIG: %s, WIFEXITED: %s, WCOREDUMP: %s\n",
        yes_no(WIFSIGNALED(st)), signame(WTERMSIG(st)), yes_no(WIFEXITED(st)), yes_no(WCOREDUMP(st)));
    errno = 0;
    int r = kill(pid, 0);
    say("kill(reaped child, 0): %d %s\n", r, ename(errno));

    pid = fork();
    must(pid >= 0, "fork");
    if (pid == 0) {
        volatile int *volatile bad = NULL;
        *bad = 1;  /* SIGSEGV */
        _exit(0);
    }
    st = reap("child that dereferenced a bad pointer", pid, 0);
    say("  WIFSIGNALED: %s, WTERMSIG: %s\n", yes_no(WIFSIGNALED(st)), signame(WTERMSIG(st)));

    pid = fork();
    must(pid >= 0, "fork");
    if (pid == 0)
        abort();
    reap("child that called abort", pid, 0);

    pid = fork();
    must(pid >= 0, "fork");
    if (pid == 0) {
        raise(SIGTERM);
        _exit(0);
    }
    reap("child that raised SIGTERM", pid, 0);

    /* The parent kills the child while it is blocked in a read. */
    int never[2];
    must(pipe(never) == 0, "pipe");
    pid = fork();
    must(pid >= 0, "fork");
    if (pid == 0) {
        close(never[1]);
        write(ready[1], "r", 1);
        read(never[0], &c, 1);
        _exit(0);
    }
    read(ready[0], &c, 1);
    kill(pid, SIGKILL);
    reap("child killed in a blocking read", pid, 0);
    return 0;
}

static int mode_stop(void)
{
    int go[2];
    must(pipe(go) == 0, "pipe");
    pid_t pid = fork();
    must(pid >= 0, "fork");
    if (pid == 0) {
        close(go[1]);
        raise(SIGSTOP);
        char c;
        read(go[0], &c, 1);  /* cannot exit before the parent saw it continue */
        _exit(6);
    }
    close(go[0]);
    reap("child that stopped itself (WUNTRACED)", pid, WUNTRACED);
    kill(pid, SIGCONT);
    reap("after SIGCONT (WCONTINUED)", pid, WCONTINUED);
    write(go[1], "x", 1);
    reap("then", pid, 0);
    return 0;
}

/* Signals sent to a child the moment fork returns, before it has run at all. */
static int mode_kill_at_once(void)
{
    static const int sigs[] = {SIGTERM, SIGKILL, SIGUSR1, SIGINT};
    for (unsigned i = 0; i < sizeof sigs / sizeof *sigs; i++) {
        pid_t pid = fork();
        must(pid >= 0, "fork");
        if (pid == 0) {
            sleep_ms(500);
            _exit(0);
        }
        kill(pid, sigs[i]);
        char label[64];
        snprintf(label, sizeof label, "child sent %s right after fork", signame(sigs[i]));
        reap(label, pid, 0);
    }
    return 0;
}

static int mode_fdinherit(const char *path)
{
    int p[2], c[2];
    must(pipe(p) == 0, "pipe");
    must(pipe2(c, O_CLOEXEC) == 0, "pipe2");
    int nul = open("/dev/null", O_RDONLY | O_CLOEXEC);
    must(nul >= 0, "open");
    must(dup2(p[1], 17) == 17, "dup2");
    close(p[1]);
    char cfd[16], nfd[16];
    snprintf(cfd, sizeof cfd, "%d", c[1]);
    snprintf(nfd, sizeof nfd, "%d", nul);
    say("parent: pipe write end at fd 17, close-on-exec fds %s and %s\n", cfd, nfd);
    pid_t pid = fork();
    must(pid >= 0, "fork");
    if (pid == 0) {
        close(p[0]);
        close(c[0]);
        execl(path, "proc_child", "--write-fd", "17", "message through inherited fd 17",
              "--open", "17", "--closed", cfd, "--closed", nfd, "--exit", "0", (char *)NULL);
        _exit(127);
    }
    close(17);
    close(c[1]);
    close(nul);
    /* The classic way to learn that exec succeeded: EOF on a close-on-exec pipe. */
    char buf[4096];
    long n = slurp(c[0], buf, sizeof buf);
    long m = slurp(p[0], buf, sizeof buf);
    int st;
    waitpid(pid, &st, 0);
    say("parent: EOF on the close-on-exec pipe (the exec succeeded): %s\n", yes_no(n == 0));
    say("parent: %ld bytes through fd 17\n", m);
    say_lines("parent read: ", buf);
    say("parent: child %s\n", status_str(st));
    return 0;
}

static volatile int stop_threads;

static void *busy_thread(void *arg)
{
    (void)arg;
    while (!stop_threads) {
        void *p = malloc(100 + (rand() & 1023));  /* keeps malloc's lock busy */
        free(p);
    }
    return NULL;
}

/* fork while other threads run (and hold malloc's lock now and then): the child has one
 * thread, the forking one, and can still allocate and print. */
static int mode_fork_threads(int n)
{
    pthread_t threads[2];
    for (int i = 0; i < 2; i++)
        must(pthread_create(&threads[i], NULL, busy_thread, NULL) == 0, "pthread_create");
    int ok = 0;
    for (int i = 0; i < n; i++) {
        int p[2];
        must(pipe(p) == 0, "pipe");
        pid_t pid = fork();
        must(pid >= 0, "fork");
        if (pid == 0) {
            close(p[0]);
            char *buf = malloc(64);
            snprintf(buf, 64, "child %d allocated", i);
            FILE *f = fdopen(p[1], "w");
            fprintf(f, "%s\n", buf);
            fclose(f);
            _exit(0);
        }
        close(p[1]);
        char buf[128];
        long len = slurp(p[0], buf, sizeof buf);
        close(p[0]);
        int st;
        waitpid(pid, &st, 0);
        char want[64];
        snprintf(want, sizeof want, "child %d allocated\n", i);
        if (WIFEXITED(st) && WEXITSTATUS(st) == 0 && len == (long)strlen(want) &&
            !strcmp(buf, want))
            ok++;
        else
            say("child %d: %s, sent \"%s\"\n", i, status_str(st), buf);
    }
    stop_threads = 1;
    for (int i = 0; i < 2; i++)
        pthread_join(threads[i], NULL);
    say("%d of %d children forked beside two busy threads worked\n", ok, n);
    return 0;
}

static int mode_orphans(int n)
{
    for (int i = 0; i < n; i++) {
        pid_t pid = fork();
        must(pid >= 0, "fork");
        if (pid == 0) {
            sleep_ms(300 + 50 * i);
            _exit(0);
        }
    }
    say("parent exits, leaving %d children running\n", n);
    return 0;
}

static int mode_noreap(int n)
{
    for (int i = 0; i < n; i++) {
        pid_t pid = fork();
        must(pid >= 0, "fork");
        if (pid == 0)
            _exit(i);
    }
    sleep_ms(100);
    say("parent exits without reaping %d children\n", n);
    return 0;
}

int main(int argc, char **argv)
{
    const char *mode = argc > 1 ? argv[1] : "";
    const char *arg = argc > 2 ? argv[2] : "";
    int n = argc > 2 ? atoi(argv[2]) : 0;
    if (!strcmp(mode, "pipe")) return mode_pipe();
    if (!strcmp(mode, "stdio")) return mode_stdio();
    if (!strcmp(mode, "bomb")) return mode_bomb(n);
    if (!strcmp(mode, "vfork_exit")) return mode_vfork_exit();
    if (!strcmp(mode, "vfork_exec")) return mode_vfork_exec(arg);
    if (!strcmp(mode, "exec")) return mode_exec(arg);
    if (!strcmp(mode, "exec_errors")) return mode_exec_errors(arg);
    if (!strcmp(mode, "exec_pending")) return mode_exec_pending(arg);
    if (!strcmp(mode, "exec_script")) return mode_exec_script();
    if (!strcmp(mode, "exec_nested_script")) return mode_exec_nested_script();
    if (!strcmp(mode, "popen")) return mode_popen();
    if (!strcmp(mode, "spawn")) return mode_spawn(arg);
    if (!strcmp(mode, "spawn_missing")) return mode_spawn_missing();
    if (!strcmp(mode, "sigchld")) return mode_sigchld(n);
    if (!strcmp(mode, "sigchld_ign")) return mode_sigchld_ign();
    if (!strcmp(mode, "pgkill")) return mode_pgkill(n);
    if (!strcmp(mode, "setsid")) return mode_setsid();
    if (!strcmp(mode, "waitid")) return mode_waitid();
    if (!strcmp(mode, "sigkill")) return mode_sigkill();
    if (!strcmp(mode, "stop")) return mode_stop();
    if (!strcmp(mode, "kill_at_once")) return mode_kill_at_once();
    if (!strcmp(mode, "fdinherit")) return mode_fdinherit(arg);
    if (!strcmp(mode, "fork_threads")) return mode_fork_threads(n);
    if (!strcmp(mode, "orphans")) return mode_orphans(n);
    if (!strcmp(mode, "noreap")) return mode_noreap(n);
    say("unknown mode %s\n", mode);
    return 2;
}
