"""A seccomp filter on km's own system calls: the allow-list of what a monitor needs.

The filter is classic BPF, built here (it is small and on km's timed start-up path, so
no library): check the architecture, then the system call number by binary search over
the allowed ones. A few calls are allowed only with safe arguments: clone without
namespace flags, ioctl only for KVM and the terminal requests km forwards (TIOCSTI, which
injects terminal input, never). Calls known to be dangerous kill km outright (a monitor
that makes one has been subverted); any other call not listed fails with ENOSYS.

Linux: Documentation/userspace-api/seccomp_filter.rst; include/uapi/linux/filter.h.
"""

from __future__ import annotations

import ctypes
import struct

from kontain.linux import hostcall as host
from kontain.linux.abi import (
    CLONE_NEWCGROUP,
    CLONE_NEWIPC,
    CLONE_NEWNET,
    CLONE_NEWNS,
    CLONE_NEWPID,
    CLONE_NEWTIME,
    CLONE_NEWUSER,
    CLONE_NEWUTS,
)
from kontain.linux.numbers import NUMBERS as NR
from kontain.monitor.seccomp_program import PROGRAM

AUDIT_ARCH_X86_64 = 0xC000003E
X32_SYSCALL_BIT = 0x40000000
SECCOMP_SET_MODE_FILTER = 1
SECCOMP_FILTER_FLAG_TSYNC = 1
SECCOMP_RET_KILL_PROCESS = 0x80000000
SECCOMP_RET_ERRNO = 0x00050000
SECCOMP_RET_ALLOW = 0x7FFF0000
ENOSYS, EPERM = 38, 1

# struct seccomp_data: nr (u32), arch (u32), instruction_pointer (u64), args[6] (u64)
DATA_NR, DATA_ARCH, DATA_ARGS = 0, 4, 16

# BPF opcodes (the few this filter uses).
BPF_LD_W_ABS = 0x20
BPF_JA = 0x05
BPF_JEQ_K, BPF_JGE_K, BPF_JSET_K = 0x15, 0x35, 0x45
BPF_AND_K = 0x54
BPF_RET_K = 0x06

#: What km calls on the host: the calls its handlers make on the payload's behalf, and
#: what its own Python runtime needs.
ALLOWED = (
    # files and descriptors
    "read", "write", "readv", "writev", "pread64", "pwrite64", "preadv", "pwritev", "preadv2",
    "pwritev2", "lseek", "open", "openat", "openat2", "close", "close_range", "dup", "dup2",
    "dup3", "fcntl", "flock", "fstat", "newfstatat", "statx", "lstat", "stat", "fstatfs",
    "statfs", "getdents", "getdents64", "access", "faccessat", "faccessat2", "readlink",
    "readlinkat", "mkdirat", "unlinkat", "renameat2", "linkat", "symlinkat", "fchmod",
    "fchmodat", "fchown", "fchownat", "truncate", "ftruncate", "fsync", "fdatasync", "syncfs",
    "sync", "sync_file_range", "fallocate", "fadvise64", "readahead", "utime", "utimes",
    "utimensat", "futimesat", "mknodat", "chdir", "fchdir", "getcwd", "umask", "pipe2",
    "sendfile", "copy_file_range", "splice", "tee", "vmsplice", "memfd_create", "eventfd2",
    # Linux AIO on the payload's behalf (kontain.syscalls.aio)
    "io_setup", "io_destroy", "io_submit", "io_cancel", "io_getevents", "io_pgetevents",
    "getxattr", "lgetxattr", "fgetxattr", "setxattr", "lsetxattr", "fsetxattr", "listxattr",
    "llistxattr", "flistxattr", "removexattr", "lremovexattr", "fremovexattr",
    # waiting
    "poll", "ppoll", "select", "pselect6", "epoll_create1", "epoll_ctl", "epoll_wait",
    "epoll_pwait", "epoll_pwait2",
    # memory (km's own and guest memory's host side)
    "mmap", "munmap", "mprotect", "mremap", "madvise", "msync", "mincore", "mlock", "mlock2",
    "munlock", "brk",
    # sockets
    "socket", "socketpair", "bind", "connect", "listen", "accept", "accept4", "getsockname",
    "getpeername", "sendto", "recvfrom", "sendmsg", "recvmsg", "sendmmsg", "recvmmsg",
    "setsockopt", "getsockopt", "shutdown",
    # processes, threads, signals, time
    "clone", "execve", "exit", "exit_group", "wait4", "waitid", "kill", "tgkill", "tkill",
    "getpid", "gettid", "getppid", "getuid", "geteuid", "getgid", "getegid", "getresuid",
    "getresgid", "getgroups", "setgroups", "setuid", "setgid", "setreuid", "setregid",
    "setresuid", "setresgid", "setfsuid", "setfsgid", "getpgrp", "getpgid", "getsid", "setsid",
    "setpgid", "getrlimit", "setrlimit", "prlimit64", "getrusage", "times", "sysinfo",
    "uname", "getrandom", "prctl", "arch_prctl", "set_tid_address", "set_robust_list",
    "get_robust_list", "rseq", "futex", "sched_yield", "sched_getaffinity",
    "sched_setaffinity", "sched_getscheduler", "sched_setscheduler", "sched_getparam",
    "sched_setparam", "sched_get_priority_max", "sched_get_priority_min",
    "sched_rr_get_interval", "getpriority", "setpriority", "getcpu", "rt_sigaction",
    "rt_sigprocmask", "rt_sigreturn", "rt_sigpending", "rt_sigtimedwait", "rt_sigsuspend",
    "rt_sigqueueinfo", "rt_tgsigqueueinfo", "pidfd_open", "pidfd_send_signal", "sigaltstack",
    "signalfd4", "alarm", "getitimer",
    "setitimer", "timer_create", "timer_settime", "timer_gettime", "timer_getoverrun",
    "timer_delete", "timerfd_create", "timerfd_settime", "timerfd_gettime", "clock_gettime",
    "clock_getres", "clock_settime", "clock_nanosleep", "nanosleep", "gettimeofday", "time",
    "pause", "restart_syscall", "membarrier", "capget",
)

#: Calls that a subverted monitor would use to reach past its VM: they kill km.
FORBIDDEN = (
    "ptrace", "process_vm_readv", "process_vm_writev", "kexec_load", "kexec_file_load",
    "init_module", "finit_module", "delete_module", "bpf", "perf_event_open", "userfaultfd",
    "open_by_handle_at", "name_to_handle_at", "mount", "umount2", "pivot_root", "chroot",
    "unshare", "setns", "mount_setattr", "open_tree", "move_mount", "fsopen", "fsconfig",
    "fsmount", "fspick", "keyctl", "add_key", "request_key", "io_uring_setup",
    "io_uring_enter", "io_uring_register", "iopl", "ioperm", "reboot", "swapon", "swapoff",
    "acct", "quotactl", "quotactl_fd", "lookup_dcookie", "vhangup", "syslog",
    "landlock_create_ruleset", "landlock_add_rule", "landlock_restrict_self", "seccomp",
    "process_madvise", "pidfd_getfd", "kcmp", "uselib", "personality", "modify_ldt",
    "capset",
)

#: clone flags that make namespaces are refused.
CLONE_NAMESPACES = (CLONE_NEWNS | CLONE_NEWCGROUP | CLONE_NEWUTS | CLONE_NEWIPC | CLONE_NEWUSER
                    | CLONE_NEWPID | CLONE_NEWNET | CLONE_NEWTIME)
#: ioctl requests allowed besides KVM's (type 0xAE): terminal and descriptor requests.
TERMINAL_IOCTLS = (0x5401, 0x5402, 0x5403, 0x5404, 0x5405, 0x5406, 0x5407, 0x5408, 0x5409,
                   0x540A, 0x540B, 0x540C, 0x540D, 0x540E, 0x540F, 0x5410, 0x5411, 0x5413,
                   0x5414, 0x5415, 0x5416, 0x5417, 0x5418, 0x541B, 0x5421, 0x5422, 0x5423,
                   0x5424, 0x5425, 0x5427, 0x5428, 0x5429, 0x802C542A, 0x402C542B,
                   0x402C542C, 0x402C542D, 0x80045430, 0x40045431, 0x80045432, 0x5450,
                   0x5451, 0x5452, 0x5460, 0x80081272)
#: PAGEMAP_SCAN on km's own /proc/self/pagemap: whether guest RAM is held by huge pages
#: (kontain.machine.hostmem.huge_mapped). It only reads km's page tables.
PAGEMAP_SCAN = 0xC0606610
KVMIO = 0xAE


class _Program:
    """A BPF program under construction, with forward jumps to labels."""

    def __init__(self) -> None:
        self.code: list[list[int]] = []  # [code, jt, jf, k], jt/jf may be label names
        self.labels: dict[str, int] = {}

    def op(self, code: int, k: int | str = 0, jt: int | str = 0, jf: int | str = 0) -> None:
        """One instruction; jump targets (and BPF_JA's k) may be label names."""
        self.code.append([code, jt, jf, k])

    def label(self, name: str) -> None:
        self.labels[name] = len(self.code)

    def assemble(self) -> bytes:
        fields: list[int] = []
        labels = self.labels
        for index, (code, jt, jf, k) in enumerate(self.code):
            if jt.__class__ is str:
                jt = labels[jt] - index - 1
            if jf.__class__ is str:
                jf = labels[jf] - index - 1
            if k.__class__ is str:
                k = labels[k] - index - 1
            if not (0 <= jt < 256 and 0 <= jf < 256):
                raise ValueError("BPF jump out of range")
            fields += (code, jt, jf, k & 0xFFFFFFFF)
        return struct.pack("<" + "HBBI" * len(self.code), *fields)


def build_filter() -> bytes:
    """The filter program, as struct sock_filter[]."""
    allowed = sorted({NR[name] for name in ALLOWED if name in NR})
    forbidden = sorted({NR[name] for name in FORBIDDEN if name in NR} - set(allowed))
    special = {NR["clone"]: "clone", NR["ioctl"]: "ioctl"}
    p = _Program()
    # Conditional jumps reach 255 instructions at most: far targets go through BPF_JA
    # (`JEQ k, 0, 1` then `JA label`), returns are placed where they are needed.
    p.op(BPF_LD_W_ABS, DATA_ARCH)
    p.op(BPF_JEQ_K, AUDIT_ARCH_X86_64, 1, 0)
    p.op(BPF_RET_K, SECCOMP_RET_KILL_PROCESS)
    p.op(BPF_LD_W_ABS, DATA_NR)
    p.op(BPF_JGE_K, X32_SYSCALL_BIT, 0, 1)
    p.op(BPF_RET_K, SECCOMP_RET_KILL_PROCESS)
    verdicts: dict[int, int | str] = {nr: SECCOMP_RET_ALLOW for nr in allowed}
    verdicts.update({nr: SECCOMP_RET_KILL_PROCESS for nr in forbidden})
    verdicts.update(special)
    p.code += _search(_ranges(verdicts))
    p.label("clone")  # flags are the low 32 bits of the first argument
    p.op(BPF_LD_W_ABS, DATA_ARGS)
    p.op(BPF_JSET_K, CLONE_NAMESPACES, 0, 1)
    p.op(BPF_RET_K, SECCOMP_RET_ERRNO | EPERM)
    p.op(BPF_RET_K, SECCOMP_RET_ALLOW)
    p.label("ioctl")  # the request is the low 32 bits of the second argument
    p.op(BPF_LD_W_ABS, DATA_ARGS + 8)
    for request in (*TERMINAL_IOCTLS, PAGEMAP_SCAN):
        p.op(BPF_JEQ_K, request, 0, 1)
        p.op(BPF_RET_K, SECCOMP_RET_ALLOW)
    p.op(BPF_AND_K, 0xFF00)
    p.op(BPF_JEQ_K, KVMIO << 8, 0, 1)
    p.op(BPF_RET_K, SECCOMP_RET_ALLOW)
    p.op(BPF_RET_K, SECCOMP_RET_ERRNO | EPERM)
    return p.assemble()


def _ranges(verdicts: dict[int, int | str]) -> list[tuple[int, int | str]]:
    """[(first number, verdict)]: runs of consecutive numbers with one verdict, from 0
    up (numbers not listed: ENOSYS). Neighbouring calls are often allowed alike, so
    there are far fewer runs than numbers: a short program the kernel checks quickly."""
    runs: list[tuple[int, int | str]] = []
    for nr in range(max(verdicts) + 2):
        verdict = verdicts.get(nr, SECCOMP_RET_ERRNO | ENOSYS)
        if not runs or runs[-1][1] != verdict:
            runs.append((nr, verdict))
    return runs


def _search(runs: list[tuple[int, int | str]]) -> list[list]:
    """Instructions returning the verdict of the run the loaded number falls in: a
    binary search over the runs' first numbers (the last run goes on to the end)."""
    if len(runs) == 1:
        verdict = runs[0][1]
        if isinstance(verdict, str):
            return [[BPF_JA, 0, 0, verdict]]  # on to the argument checks
        return [[BPF_RET_K, 0, 0, verdict]]
    middle = len(runs) // 2
    lower, upper = _search(runs[:middle]), _search(runs[middle:])
    if len(lower) < 256:
        return [[BPF_JGE_K, len(lower), 0, runs[middle][0]]] + lower + upper
    return [[BPF_JGE_K, 0, 1, runs[middle][0]], [BPF_JA, 0, 0, len(lower)]] + lower + upper


def install() -> None:
    """Apply the filter to every thread of km (it is inherited by forks and execs).

    The program is built ahead of time (kontain/monitor/seccomp_program.py; a test
    checks it is build_filter()'s): building it costs more than km's whole jail."""
    program = PROGRAM
    count = len(program) // 8
    buffer = ctypes.create_string_buffer(program, len(program))
    fprog = struct.pack("<H6xQ", count, ctypes.addressof(buffer))
    fprog_buffer = ctypes.create_string_buffer(fprog, len(fprog))
    result = host.syscall(NR["seccomp"], SECCOMP_SET_MODE_FILTER, SECCOMP_FILTER_FLAG_TSYNC,
                          ctypes.addressof(fprog_buffer))
    if result != 0:
        raise OSError(-result if result < 0 else 1, "seccomp")


def _generate() -> str:
    """The text of seccomp_program.py."""
    program = build_filter().hex()
    lines = [program[i:i + 88] for i in range(0, len(program), 88)]
    body = "\n".join(f'    "{line}"' for line in lines)
    return ('"""km\'s seccomp filter, assembled: generated by `python -m '
            'kontain.monitor.seccomp`\n(tests/unit/test_seccomp.py checks it is current)."""'
            f"\n\nPROGRAM = bytes.fromhex(\n{body}\n)\n")


if __name__ == "__main__":
    with open(__file__.replace("seccomp.py", "seccomp_program.py"), "w") as out:
        out.write(_generate())
