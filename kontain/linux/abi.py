"""Numbers of the Linux x86-64 ABI that more than one of km's floors use.

One place for each: the kernel's uapi headers are the source (linux/fcntl.h,
asm-generic/fcntl.h, linux/openat2.h, linux/sched.h, asm-generic/mman-common.h,
linux/futex.h, include/linux/errno.h for the restart codes). Python's os, errno and
stat modules have most of these too, but not all, and not on every platform; these are
the guest's numbers, whatever the host's Python knows.
"""

# ---- open(2), *at(2), openat2(2) ------------------------------------------------------------
O_ACCMODE, O_RDONLY, O_WRONLY, O_RDWR = 0o3, 0o0, 0o1, 0o2
O_CREAT, O_EXCL, O_NOCTTY, O_TRUNC, O_APPEND = 0o100, 0o200, 0o400, 0o1000, 0o2000
O_NONBLOCK, O_DSYNC, O_DIRECT, O_LARGEFILE = 0o4000, 0o10000, 0o40000, 0o100000
O_DIRECTORY, O_NOFOLLOW, O_NOATIME, O_CLOEXEC = 0o200000, 0o400000, 0o1000000, 0o2000000
O_PATH, O_TMPFILE = 0o10000000, 0o20200000
#: The flags open(2) accepts (openat2(2) refuses any other bit).
VALID_OPEN_FLAGS = 0o37777703

AT_FDCWD = -100
AT_SYMLINK_NOFOLLOW, AT_REMOVEDIR, AT_SYMLINK_FOLLOW = 0x100, 0x200, 0x400
AT_NO_AUTOMOUNT, AT_EMPTY_PATH = 0x800, 0x1000

RESOLVE_NO_XDEV, RESOLVE_NO_MAGICLINKS, RESOLVE_NO_SYMLINKS = 0x01, 0x02, 0x04
RESOLVE_BENEATH, RESOLVE_IN_ROOT, RESOLVE_CACHED = 0x08, 0x10, 0x20
RESOLVE_ALL = 0x3F

S_IFMT, S_IFSOCK, S_IFLNK, S_IFREG = 0o170000, 0o140000, 0o120000, 0o100000
S_IFBLK, S_IFDIR, S_IFCHR, S_IFIFO = 0o060000, 0o040000, 0o020000, 0o010000

# ---- clone(2) --------------------------------------------------------------------------------
CSIGNAL = 0xFF
CLONE_VM, CLONE_FS, CLONE_FILES, CLONE_SIGHAND = 0x100, 0x200, 0x400, 0x800
CLONE_PIDFD, CLONE_PTRACE, CLONE_VFORK, CLONE_PARENT = 0x1000, 0x2000, 0x4000, 0x8000
CLONE_THREAD, CLONE_NEWNS, CLONE_SYSVSEM, CLONE_SETTLS = 0x10000, 0x20000, 0x40000, 0x80000
CLONE_PARENT_SETTID, CLONE_CHILD_CLEARTID = 0x100000, 0x200000
CLONE_DETACHED, CLONE_UNTRACED, CLONE_CHILD_SETTID = 0x400000, 0x800000, 0x1000000
CLONE_NEWCGROUP, CLONE_NEWUTS, CLONE_NEWIPC, CLONE_NEWUSER = 0x2000000, 0x4000000, 0x8000000, \
    0x10000000
CLONE_NEWPID, CLONE_NEWNET, CLONE_IO = 0x20000000, 0x40000000, 0x80000000
CLONE_NEWTIME = 0x80  # (shares its bit with CSIGNAL's range: clone3 and unshare only)

# ---- mmap(2) and friends ---------------------------------------------------------------------
PROT_NONE, PROT_READ, PROT_WRITE, PROT_EXEC = 0, 1, 2, 4
PROT_MASK = PROT_READ | PROT_WRITE | PROT_EXEC
PROT_GROWSDOWN, PROT_GROWSUP = 0x01000000, 0x02000000
PROT_SEM = 0x8  # accepted and meaningless on x86
MAP_SHARED, MAP_PRIVATE, MAP_SHARED_VALIDATE = 0x01, 0x02, 0x03
MAP_TYPE = 0x0F
MAP_FIXED, MAP_ANONYMOUS, MAP_32BIT = 0x10, 0x20, 0x40
MAP_GROWSDOWN, MAP_DENYWRITE, MAP_EXECUTABLE, MAP_LOCKED = 0x100, 0x800, 0x1000, 0x2000
MAP_NORESERVE, MAP_POPULATE, MAP_NONBLOCK, MAP_STACK = 0x4000, 0x8000, 0x10000, 0x20000
MAP_HUGETLB, MAP_SYNC, MAP_FIXED_NOREPLACE = 0x40000, 0x80000, 0x100000
MREMAP_MAYMOVE, MREMAP_FIXED, MREMAP_DONTUNMAP = 1, 2, 4

# ---- futex(2) --------------------------------------------------------------------------------
FUTEX_WAIT, FUTEX_WAKE, FUTEX_FD, FUTEX_REQUEUE, FUTEX_CMP_REQUEUE = 0, 1, 2, 3, 4
FUTEX_WAKE_OP, FUTEX_LOCK_PI, FUTEX_UNLOCK_PI, FUTEX_TRYLOCK_PI = 5, 6, 7, 8
FUTEX_WAIT_BITSET, FUTEX_WAKE_BITSET, FUTEX_WAIT_REQUEUE_PI = 9, 10, 11
FUTEX_CMP_REQUEUE_PI, FUTEX_LOCK_PI2 = 12, 13
FUTEX_PRIVATE_FLAG, FUTEX_CMD_MASK = 128, 0x7F
FUTEX_WAITERS, FUTEX_OWNER_DIED, FUTEX_TID_MASK = 0x80000000, 0x40000000, 0x3FFFFFFF
#: Robust futex lists are walked this far at most (ROBUST_LIST_LIMIT).
ROBUST_LIST_LIMIT = 2048

# ---- restart codes (kernel-internal errnos, include/linux/errno.h) ---------------------------
#: A system call interrupted by a signal returns one of these; the signal delivery code
#: turns it into EINTR or into a restart of the call.
ERESTARTSYS, ERESTARTNOINTR, ERESTARTNOHAND = 512, 513, 514
ERESTART_RESTARTBLOCK = 516
