"""km's own confinement: the second wall, built before the payload's first instruction.

Path resolution (kontain.monitor.root) is the first wall between a payload and the host.
Like Firecracker's jailer, km does not rely on it alone. Before it loads the payload it
confines itself, so that even a bug in km, or a payload that subverts km, finds little:

1. A mount namespace (km --root DIR, as root): km pivots into a fresh read-only tmpfs
   that holds DIR (at ROOT_IN_JAIL) and a /proc, nothing else: km has imported all it
   will ever run, holds /dev/kvm open, and loads the payload's programs itself (execve
   included), so no host file of km's own need be visible either. No other host file
   can be named at all, whatever a path looks like.
2. PR_SET_NO_NEW_PRIVS, and km is not dumpable: no setuid gain on exec, and no other
   process of the same user (another km) may open /proc/<km>/mem.
3. Capabilities a monitor has no use for are dropped for good (the bounding set):
   CAP_SYS_ADMIN, CAP_SYS_PTRACE, CAP_SYS_MODULE, CAP_MKNOD, CAP_DAC_READ_SEARCH
   (open_by_handle_at), CAP_SYS_RAWIO, ... A root payload keeps what a container keeps.
4. Landlock (no privileges needed, so this wall stands for non-root users too): km may
   only change files inside DIR (where it may not make device nodes or execute anything
   itself) and use /proc; abstract unix sockets and signals are scoped to km and its own
   children (Landlock ABI 6).
5. A seccomp filter on km's host calls (kontain.monitor.seccomp).

Without --root the payload's / is the host's: then 2, 3 (as far as km's privileges go),
the scoping of 4 and 5 still apply. Each wall that cannot be built on this host (no
Landlock, not root) is left out and named under `km -V=jail`. A forked km inherits
every wall.
"""

from __future__ import annotations

import ctypes
import errno
import os
import struct
import time

from kontain.linux import hostcall as host
from kontain.linux.abi import CLONE_NEWNS, O_CLOEXEC, O_PATH
from kontain.linux.numbers import NUMBERS as NR
from kontain.monitor import seccomp

TYPE_CHECKING = False  # no typing import at run time: km start-up is timed
if TYPE_CHECKING:
    from kontain.monitor.trace import Tracer

#: Where the payload's root appears inside km's jail (a name km's runtime never uses).
ROOT_IN_JAIL = "/.kontain/root"

MS_RDONLY, MS_NOSUID, MS_NODEV, MS_NOEXEC = 0x1, 0x2, 0x4, 0x8
MS_REMOUNT, MS_BIND, MS_REC, MS_PRIVATE = 0x20, 0x1000, 0x4000, 0x40000
MNT_DETACH = 2
PR_SET_DUMPABLE, PR_CAPBSET_DROP, PR_SET_NO_NEW_PRIVS, PR_CAP_AMBIENT = 4, 24, 38, 47
PR_CAP_AMBIENT_CLEAR_ALL = 4

# Landlock (include/uapi/linux/landlock.h).
LANDLOCK_CREATE_RULESET_VERSION = 1
LANDLOCK_RULE_PATH_BENEATH = 1
FS_EXECUTE, FS_WRITE_FILE, FS_READ_FILE, FS_READ_DIR = 1 << 0, 1 << 1, 1 << 2, 1 << 3
FS_REMOVE_DIR, FS_REMOVE_FILE, FS_MAKE_CHAR, FS_MAKE_DIR = 1 << 4, 1 << 5, 1 << 6, 1 << 7
FS_MAKE_REG, FS_MAKE_SOCK, FS_MAKE_FIFO, FS_MAKE_BLOCK = 1 << 8, 1 << 9, 1 << 10, 1 << 11
FS_MAKE_SYM, FS_REFER, FS_TRUNCATE, FS_IOCTL_DEV = 1 << 12, 1 << 13, 1 << 14, 1 << 15
SCOPE_ABSTRACT_UNIX_SOCKET, SCOPE_SIGNAL = 1 << 0, 1 << 1
#: Rights each Landlock ABI version knows.
FS_RIGHTS_BY_ABI = {1: (1 << 13) - 1, 2: (1 << 14) - 1, 3: (1 << 15) - 1, 4: (1 << 15) - 1,
                    5: (1 << 16) - 1}
FILE_RIGHTS = FS_EXECUTE | FS_WRITE_FILE | FS_READ_FILE | FS_TRUNCATE | FS_IOCTL_DEV
#: Inside the payload's root km may do anything a payload asks but make device nodes,
#: and execute nothing itself (it maps the payload's files; the host never runs them).
IN_ROOT = ((1 << 16) - 1) & ~(FS_MAKE_CHAR | FS_MAKE_BLOCK | FS_EXECUTE)

#: Capabilities km keeps (those a container's root keeps); the others leave the
#: bounding set. capability.h numbers.
KEPT_CAPABILITIES = frozenset({
    0,   # CAP_CHOWN
    1,   # CAP_DAC_OVERRIDE
    3,   # CAP_FOWNER
    4,   # CAP_FSETID
    5,   # CAP_KILL
    6,   # CAP_SETGID
    7,   # CAP_SETUID
    10,  # CAP_NET_BIND_SERVICE
    11,  # CAP_NET_BROADCAST
    12,  # CAP_NET_ADMIN
    13,  # CAP_NET_RAW
    14,  # CAP_IPC_LOCK
    15,  # CAP_IPC_OWNER
    23,  # CAP_SYS_NICE
    24,  # CAP_SYS_RESOURCE
    28,  # CAP_LEASE
    29,  # CAP_AUDIT_WRITE
})
CAP_SETPCAP, CAP_LAST = 8, 63
_LINUX_CAPABILITY_VERSION_3 = 0x20080522

_libc = ctypes.CDLL(None, use_errno=True)
_libc.mount.argtypes = [ctypes.c_char_p, ctypes.c_char_p, ctypes.c_char_p, ctypes.c_ulong,
                        ctypes.c_void_p]


def _mount(source: bytes | None, target: bytes, fstype: bytes | None, flags: int) -> None:
    if _libc.mount(source, target, fstype, flags, None) != 0:
        err = ctypes.get_errno()
        raise OSError(err, f"mount {target.decode(errors='replace')}: {os.strerror(err)}")


def _check(result: int, what: str) -> int:
    if result < 0:
        raise OSError(-result, f"{what}: {os.strerror(-result)}")
    return result


class Jail:
    """Builds km's walls (see the module docstring); what it built goes to -V=jail."""

    def __init__(self, trace: Tracer, drop_capabilities: bool = True) -> None:
        self._trace = trace
        self._drop_caps = drop_capabilities
        self.walls: list[str] = []

    def enter(self, root: str) -> str:
        """Confine km; returns the payload's root as km names it from now on."""
        started = time.monotonic()
        host.syscall(NR["prctl"], PR_SET_DUMPABLE, 0, 0, 0, 0)
        confined = root != "/"
        jailed_root = root
        if confined and os.geteuid() == 0:
            jailed_root = self._try("mount namespace", lambda: self._mount_namespace(root),
                                    root)
        _check(host.syscall(NR["prctl"], PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0), "no_new_privs")
        self.walls.append("no_new_privs")
        if os.geteuid() == 0 and self._drop_caps:
            self._try("capabilities", self._drop_capabilities)
        self._try("landlock", lambda: self._landlock(jailed_root if confined else None))
        self._try("seccomp", seccomp.install)
        self._trace.log("jail", f"walls: {', '.join(self.walls) or 'none'} "
                                f"({(time.monotonic() - started) * 1e3:.2f} ms)")
        return jailed_root

    def _try(self, name: str, build, default: object = None) -> object:
        try:
            result = build()
        except OSError as e:
            self._trace.log("jail", f"no {name}: {e}")
            return default
        self.walls.append(name)
        return result

    # ---- 1. the mount namespace -------------------------------------------------------

    def _mount_namespace(self, root: str) -> str:
        # km needs no file of its own once the jail is built: it has imported all it
        # will run, holds /dev/kvm open, and execs the payload's programs itself. Its
        # jail holds the payload's root and a /proc, nothing else.
        cwd = os.getcwd()
        _check(host.syscall(NR["unshare"], CLONE_NEWNS), "unshare")
        _mount(None, b"/", None, MS_REC | MS_PRIVATE)
        # A descriptor on the root, opened in the new namespace (a mount of another
        # namespace cannot be bound) and before the host's tree is covered.
        root_fd = os.open(root, O_PATH | O_CLOEXEC)
        top = next(p for p in (b"/tmp", b"/mnt", b"/run", b"/var/tmp", b"/dev")
                   if os.path.isdir(p))
        _mount(b"tmpfs", top, b"tmpfs", MS_NOSUID)
        try:
            inside = top + os.fsencode(ROOT_IN_JAIL)
            os.makedirs(inside, exist_ok=True)
            _mount(b"/proc/self/fd/%d" % root_fd, inside, None, MS_BIND | MS_REC)
            os.makedirs(top + b"/proc", exist_ok=True)
            try:
                _mount(b"proc", top + b"/proc", b"proc", MS_NOSUID | MS_NODEV | MS_NOEXEC)
            except OSError:  # a /proc partly hidden by the host refuses new instances
                _mount(b"/proc", top + b"/proc", None, MS_BIND | MS_REC)
            os.chdir(top)
            _check(host.syscall(NR["pivot_root"], host.address_of(b"."),
                                host.address_of(b".")), "pivot_root")
        except OSError:
            # Leave the namespace as it was (the host's tree visible again), wall-less.
            os.chdir(cwd)
            _libc.umount2(top, MNT_DETACH)
            raise
        finally:
            os.close(root_fd)
        if _libc.umount2(b".", MNT_DETACH) != 0:
            raise OSError(ctypes.get_errno(), "umount the host's root")
        _mount(None, b"/", None, MS_REMOUNT | MS_BIND | MS_RDONLY | MS_NOSUID)
        real_root = os.path.realpath(root)
        if cwd == real_root or cwd.startswith(real_root + "/"):  # keep a cwd inside the root
            os.chdir(ROOT_IN_JAIL + cwd[len(real_root):])
        else:
            os.chdir("/")
        return ROOT_IN_JAIL

    # ---- 3. capabilities --------------------------------------------------------------

    def _drop_capabilities(self) -> None:
        for cap in range(CAP_LAST + 1):
            if cap not in KEPT_CAPABILITIES and cap != CAP_SETPCAP:
                result = host.syscall(NR["prctl"], PR_CAPBSET_DROP, cap, 0, 0, 0)
                if result == -errno.EINVAL:  # past the last capability this kernel has
                    break
                if result < 0:
                    raise OSError(-result, "dropping a capability")
        host.syscall(NR["prctl"], PR_CAP_AMBIENT, PR_CAP_AMBIENT_CLEAR_ALL, 0, 0, 0)
        _check(host.syscall(NR["prctl"], PR_CAPBSET_DROP, CAP_SETPCAP, 0, 0, 0), "capbset")
        header = struct.pack("<Ii", _LINUX_CAPABILITY_VERSION_3, 0)
        data = ctypes.create_string_buffer(24)
        head = ctypes.create_string_buffer(header)
        _check(host.syscall(NR["capget"], ctypes.addressof(head), ctypes.addressof(data)),
               "capget")
        kept = sum(1 << cap for cap in KEPT_CAPABILITIES)
        words = list(struct.unpack("<6I", data.raw))
        for i in range(3):  # (effective, permitted, inheritable) for caps 0-31, then 32-63
            words[i] &= kept & 0xFFFFFFFF
            words[3 + i] &= kept >> 32
        data = ctypes.create_string_buffer(struct.pack("<6I", *words))
        head = ctypes.create_string_buffer(header)
        _check(host.syscall(NR["capset"], ctypes.addressof(head), ctypes.addressof(data)),
               "capset")

    # ---- 4. Landlock ------------------------------------------------------------------

    def _landlock(self, root: str | None) -> None:
        abi = host.syscall(NR["landlock_create_ruleset"], 0, 0, LANDLOCK_CREATE_RULESET_VERSION)
        if abi < 2:
            # (ABI 1 cannot grant REFER: it would forbid renames across directories.)
            raise OSError(errno.EOPNOTSUPP, "Landlock (ABI 2 or later) is not available")
        known = FS_RIGHTS_BY_ABI[min(abi, 5)]
        scoped = SCOPE_ABSTRACT_UNIX_SOCKET | SCOPE_SIGNAL if abi >= 6 else 0
        if root is None:
            # The host's / is the payload's: only device nodes are kept from it. (A
            # ruleset that handles any file access denies moving files between
            # directories unless it grants REFER: granted everywhere.)
            handled = FS_MAKE_CHAR | FS_MAKE_BLOCK | FS_REFER
            rules: list[tuple[str, int]] = [("/", FS_REFER)]
        else:
            handled = known
            rules = [(root, IN_ROOT), ("/proc", FS_READ_FILE | FS_READ_DIR | FS_WRITE_FILE
                                       | FS_TRUNCATE)]
        attr = struct.pack("<QQQ", handled, 0, scoped)
        size = 24 if abi >= 6 else 16
        buffer = ctypes.create_string_buffer(attr[:size], size)
        ruleset = _check(host.syscall(NR["landlock_create_ruleset"], ctypes.addressof(buffer),
                                      size, 0), "landlock_create_ruleset")
        try:
            for path, rights in rules:
                self._landlock_rule(ruleset, path, rights & known)
            _check(host.syscall(NR["landlock_restrict_self"], ruleset, 0),
                   "landlock_restrict_self")
        finally:
            os.close(ruleset)

    @staticmethod
    def _landlock_rule(ruleset: int, path: str, rights: int) -> None:
        try:
            fd = os.open(path, O_PATH | O_CLOEXEC)
        except OSError:
            return  # not on this host (e.g. no pyvenv.cfg): nothing to allow
        try:
            if not os.path.isdir(f"/proc/self/fd/{fd}"):
                rights &= FILE_RIGHTS
            rule = ctypes.create_string_buffer(struct.pack("<Qi", rights, fd), 12)
            _check(host.syscall(NR["landlock_add_rule"], ruleset, LANDLOCK_RULE_PATH_BENEATH,
                                ctypes.addressof(rule), 0), f"landlock rule for {path}")
        finally:
            os.close(fd)
