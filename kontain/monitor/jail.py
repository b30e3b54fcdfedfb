"""km's own confinement: the second wall, built before the payload's first instruction.

Path resolution (kontain.monitor.root) is the first wall between a payload and the host.
Like Firecracker's jailer, km does not rely on it alone. Before it loads the payload it
confines itself, so that even a bug in km, or a payload that subverts km, finds little:

1. A mount namespace (km --root DIR, as root): km pivots into a fresh tmpfs that holds
   DIR (at ROOT_IN_JAIL), a fresh /proc, /dev/kvm and /dev/null, and what km itself needs
   to run and to re-exec itself, read-only at the same paths as on the host: its Python,
   the shared libraries it has loaded, the standard library, the kontain package. No
   other host file can be named at all, whatever a path looks like.
2. PR_SET_NO_NEW_PRIVS, and km is not dumpable: no setuid gain on exec, and no other
   process of the same user (another km) may open /proc/<km>/mem.
3. Capabilities a monitor has no use for are dropped for good (the bounding set):
   CAP_SYS_ADMIN, CAP_SYS_PTRACE, CAP_SYS_MODULE, CAP_MKNOD, CAP_DAC_READ_SEARCH
   (open_by_handle_at), CAP_SYS_RAWIO, ... A root payload keeps what a container keeps.
4. Landlock (no privileges needed, so this wall stands for non-root users too): km may
   only read and execute its runtime, use /dev/kvm, and change files inside DIR (where it
   may not make device nodes or execute anything itself); abstract unix sockets and
   signals are scoped to km and its own children (Landlock ABI 6).
5. A seccomp filter on km's host calls (kontain.monitor.seccomp).

Without --root the payload's / is the host's: then 2, 3 (as far as km's privileges go),
the scoping of 4 and 5 still apply. Each wall that cannot be built on this host (no
Landlock, not root) is left out and named under `km -V=jail`. Forks and execs of km
inherit every wall (an exec'd km is told so and adds no layer).
"""

from __future__ import annotations

import ctypes
import errno
import os
import struct
import sys
import time

from kontain.linux import hostcall as host
from kontain.linux.numbers import NUMBERS as NR
from kontain.monitor import seccomp

TYPE_CHECKING = False  # no typing import at run time: km start-up is timed
if TYPE_CHECKING:
    from kontain.monitor.trace import Tracer

#: Where the payload's root appears inside km's jail (a name km's runtime never uses).
ROOT_IN_JAIL = "/.kontain/root"

CLONE_NEWNS = 0x00020000
MS_RDONLY, MS_NOSUID, MS_NODEV, MS_NOEXEC = 0x1, 0x2, 0x4, 0x8
MS_REMOUNT, MS_BIND, MS_REC, MS_PRIVATE = 0x20, 0x1000, 0x4000, 0x40000
MNT_DETACH = 2
O_PATH, O_CLOEXEC, O_DIRECTORY = 0o10000000, 0o2000000, 0o200000
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
READ_ONLY = FS_READ_FILE | FS_READ_DIR | FS_EXECUTE
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

    def __init__(self, trace: Tracer) -> None:
        self._trace = trace
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
        if os.geteuid() == 0:
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
        plan = Plan()
        for path in runtime_paths():
            plan.expose(path, writable=False)
        plan.expose("/dev/kvm", writable=True)
        plan.expose("/dev/null", writable=True)
        cwd = os.getcwd()
        _check(host.syscall(NR["unshare"], CLONE_NEWNS), "unshare")
        _mount(None, b"/", None, MS_REC | MS_PRIVATE)
        # Descriptors on what the jail shows, opened in the new namespace (a mount of
        # another namespace cannot be bound) and before the host's tree is covered.
        plan.open_sources()
        root_fd = os.open(root, O_PATH | O_CLOEXEC)
        top = next(p for p in (b"/tmp", b"/mnt", b"/run", b"/var/tmp", b"/dev")
                   if os.path.isdir(p))
        _mount(b"tmpfs", top, b"tmpfs", MS_NOSUID)
        try:
            plan.build(top)
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
            plan.close()
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
                if result < 0 and result != -errno.EINVAL:  # EINVAL: no such capability
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
                                       | FS_TRUNCATE),
                     ("/dev/kvm", FS_READ_FILE | FS_WRITE_FILE | FS_IOCTL_DEV),
                     ("/dev/null", FS_READ_FILE | FS_WRITE_FILE)]
            runtime = runtime_paths()
            rules += [(path, READ_ONLY) for path in runtime]
            # Python lists the directories on its path when it imports (the kontain
            # package may be a link in site-packages): they must be readable as lists.
            rules += [(os.path.dirname(path), FS_READ_DIR) for path in runtime]
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


def runtime_paths() -> list[str]:
    """What km needs to run and to start again (exec): absolute host paths, as km
    names them (symlinks included), files or directories."""
    import kontain

    paths = [sys.executable, os.path.dirname(os.__file__),
             os.path.dirname(os.path.dirname(kontain.__file__)) + "/kontain",
             "/etc/ld.so.cache"]
    config = os.path.join(os.path.dirname(os.path.dirname(sys.executable)), "pyvenv.cfg")
    if os.path.exists(config):
        paths.append(config)
    # The shared libraries km has loaded, by the directories they are in: the loader
    # finds them by their sonames, links beside the files themselves.
    paths += [os.path.dirname(path) if ".so" in os.path.basename(path) else path
              for path in _mapped_files()]
    interpreter = _elf_interpreter(os.path.realpath(sys.executable))
    if interpreter:
        paths.append(interpreter)
    seen: list[str] = []
    for path in paths:
        if path not in seen and os.path.exists(path):
            seen.append(path)
    return seen


def _mapped_files() -> list[str]:
    """The files km has mapped (its interpreter and shared libraries)."""
    found = []
    with open("/proc/self/maps", "rb") as maps:
        for line in maps:
            fields = line.split(None, 5)
            if len(fields) == 6 and fields[5].startswith(b"/"):
                name = os.fsdecode(fields[5].rstrip(b"\n"))
                if not name.endswith(" (deleted)") and name not in found:
                    found.append(name)
    return found


def _elf_interpreter(path: str) -> str | None:
    """PT_INTERP of an ELF file (the dynamic loader km's Python needs to start)."""
    try:
        with open(path, "rb") as f:
            head = f.read(64)
            phoff, = struct.unpack_from("<Q", head, 32)
            phentsize, phnum = struct.unpack_from("<HH", head, 54)
            f.seek(phoff)
            table = f.read(phentsize * phnum)
            for i in range(phnum):
                kind, _flags, offset, _va, _pa, size = struct.unpack_from(
                    "<IIQQQQ", table, i * phentsize)
                if kind == 3:  # PT_INTERP
                    f.seek(offset)
                    return os.fsdecode(f.read(size).rstrip(b"\0"))
    except (OSError, struct.error):
        return None
    return None


class Plan:
    """The jail's tree: symlinks as on the host, bind mounts of the real files."""

    def __init__(self) -> None:
        self.links: dict[str, str] = {}  # jail path -> symlink contents
        self.binds: dict[str, tuple[bool, bool]] = {}  # path -> (is a directory, writable)
        self._fds: dict[str, int] = {}

    def expose(self, path: str, writable: bool, depth: int = 0) -> None:
        """Make path (absolute) lead where it leads on the host: the symlinks along it
        are recreated, and what it finally names is bind-mounted."""
        if depth > 40:
            return
        parts = [p for p in path.split("/") if p]
        current = ""
        for i, part in enumerate(parts):
            current += "/" + part
            if any(current == b or current.startswith(b + "/") for b in self.binds):
                return  # inside something already shown
            if os.path.islink(current):
                target = os.readlink(current)
                self.links[current] = target
                rest = "/".join(parts[i + 1:])
                resolved = os.path.normpath(os.path.join(os.path.dirname(current), target))
                self.expose(resolved + ("/" + rest if rest else ""), writable, depth + 1)
                return
        if path in self.binds or not os.path.exists(path):
            return
        for below in [b for b in self.binds if b.startswith(path + "/")]:
            del self.binds[below]  # a directory covers what is under it
        self.binds[path] = (os.path.isdir(path), writable)

    def open_sources(self) -> None:
        for path in self.binds:
            self._fds[path] = os.open(path, O_PATH | O_CLOEXEC)

    def close(self) -> None:
        for fd in self._fds.values():
            os.close(fd)
        self._fds.clear()

    def build(self, top: bytes) -> None:
        """Create the tree under top (a fresh tmpfs) and mount what it shows."""
        for path, target in self.links.items():
            where = top + os.fsencode(path)
            os.makedirs(os.path.dirname(where), exist_ok=True)
            if not os.path.lexists(where):
                os.symlink(target, where)
        for path in sorted(self.binds):  # parents before what is below them
            is_dir, writable = self.binds[path]
            where = top + os.fsencode(path)
            os.makedirs(where if is_dir else os.path.dirname(where), exist_ok=True)
            if not is_dir:
                os.close(os.open(where, os.O_CREAT | os.O_WRONLY | O_CLOEXEC, 0o600))
            _mount(b"/proc/self/fd/%d" % self._fds[path], where, None, MS_BIND | MS_REC)
            flags = MS_REMOUNT | MS_BIND | MS_NOSUID | (0 if writable else MS_RDONLY | MS_NODEV)
            _mount(None, where, None, flags)
