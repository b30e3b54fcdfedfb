"""The container's root file system, built in its own mount namespace: the mounts of
config.json in order, device nodes, /dev's links, pivot_root into the root, then masked
and read-only paths and a read-only root, in the order runc applies them.

Every path from the config is resolved *inside* the root (`resolve_in_root`): a symlink
in the image that points at / or climbs with .. stays within the root, as the runtime
spec requires, so an image cannot make krun mount over a host path.
"""

from __future__ import annotations

import ctypes
import errno
import os
import stat

from kontain.linux import hostcall as host
from kontain.linux.numbers import NUMBERS as NR

TYPE_CHECKING = False
if TYPE_CHECKING:
    from collections.abc import Callable

    from kontain.oci.cgroups import Cgroup

MS_RDONLY, MS_NOSUID, MS_NODEV, MS_NOEXEC = 0x1, 0x2, 0x4, 0x8
MS_SYNCHRONOUS, MS_REMOUNT, MS_MANDLOCK, MS_DIRSYNC = 0x10, 0x20, 0x40, 0x80
MS_NOSYMFOLLOW, MS_NOATIME, MS_NODIRATIME, MS_BIND = 0x100, 0x400, 0x800, 0x1000
MS_MOVE, MS_REC, MS_SILENT = 0x2000, 0x4000, 0x8000
MS_UNBINDABLE, MS_PRIVATE, MS_SLAVE, MS_SHARED = 1 << 17, 1 << 18, 1 << 19, 1 << 20
MS_RELATIME, MS_STRICTATIME, MS_LAZYTIME = 1 << 21, 1 << 24, 1 << 25
MNT_DETACH = 2

#: mount(8) options: name -> (clear it?, flag).
FLAGS = {
    "async": (True, MS_SYNCHRONOUS), "atime": (True, MS_NOATIME), "bind": (False, MS_BIND),
    "defaults": (False, 0), "dev": (True, MS_NODEV), "diratime": (True, MS_NODIRATIME),
    "dirsync": (False, MS_DIRSYNC), "exec": (True, MS_NOEXEC), "mand": (False, MS_MANDLOCK),
    "noatime": (False, MS_NOATIME), "nodev": (False, MS_NODEV),
    "nodiratime": (False, MS_NODIRATIME), "noexec": (False, MS_NOEXEC),
    "nomand": (True, MS_MANDLOCK), "norelatime": (True, MS_RELATIME),
    "nostrictatime": (True, MS_STRICTATIME), "nosuid": (False, MS_NOSUID),
    "nosymfollow": (False, MS_NOSYMFOLLOW), "rbind": (False, MS_BIND | MS_REC),
    "relatime": (False, MS_RELATIME), "remount": (False, MS_REMOUNT),
    "ro": (False, MS_RDONLY), "rw": (True, MS_RDONLY), "silent": (False, MS_SILENT),
    "strictatime": (False, MS_STRICTATIME), "suid": (True, MS_NOSUID),
    "sync": (False, MS_SYNCHRONOUS), "lazytime": (False, MS_LAZYTIME),
}
PROPAGATION = {
    "private": MS_PRIVATE, "rprivate": MS_PRIVATE | MS_REC, "shared": MS_SHARED,
    "rshared": MS_SHARED | MS_REC, "slave": MS_SLAVE, "rslave": MS_SLAVE | MS_REC,
    "unbindable": MS_UNBINDABLE, "runbindable": MS_UNBINDABLE | MS_REC,
}
#: runc's recursive options (mount_setattr(2) with AT_RECURSIVE on the whole tree): name ->
#: (clear it?, MOUNT_ATTR_* bits). The atime ones set a value of the 0x70 field.
RECURSIVE = {
    "rro": (False, 0x1), "rrw": (True, 0x1), "rnosuid": (False, 0x2), "rsuid": (True, 0x2),
    "rnodev": (False, 0x4), "rdev": (True, 0x4), "rnoexec": (False, 0x8),
    "rexec": (True, 0x8), "rnodiratime": (False, 0x80), "rdiratime": (True, 0x80),
    "rnosymfollow": (False, 0x200000), "rsymfollow": (True, 0x200000),
    "rrelatime": (False, 0x0), "rnorelatime": (True, 0x0), "rnoatime": (False, 0x10),
    "ratime": (True, 0x10), "rstrictatime": (False, 0x20), "rnostrictatime": (True, 0x20),
}
_MOUNT_ATTR_ATIME = 0x70
#: The recursive options that set the atime field's value (one of relatime, noatime,
#: strictatime) rather than a bit.
_ATIME_VALUES = frozenset(("rrelatime", "rnorelatime", "rnoatime", "ratime", "rstrictatime",
                           "rnostrictatime"))
AT_RECURSIVE = 0x8000
#: Flags a bind mount takes only through a remount.
_REMOUNT_FLAGS = (MS_RDONLY | MS_NOSUID | MS_NODEV | MS_NOEXEC | MS_NOATIME | MS_NODIRATIME
                  | MS_RELATIME | MS_STRICTATIME | MS_NOSYMFOLLOW)

#: The devices every container has (config-linux.md "Default Devices"): name, major, minor.
DEFAULT_DEVICES = (("null", 1, 3), ("zero", 1, 5), ("full", 1, 7), ("random", 1, 8),
                   ("urandom", 1, 9), ("tty", 5, 0))
DEV_LINKS = (("fd", "/proc/self/fd"), ("stdin", "/proc/self/fd/0"),
             ("stdout", "/proc/self/fd/1"), ("stderr", "/proc/self/fd/2"))

_libc = ctypes.CDLL(None, use_errno=True)
_libc.mount.argtypes = [ctypes.c_char_p, ctypes.c_char_p, ctypes.c_char_p, ctypes.c_ulong,
                        ctypes.c_char_p]


def mount(source: str | None, target: str, fstype: str | None, flags: int,
          data: str | None = None) -> None:
    def b(text: str | None) -> bytes | None:
        return None if text is None else os.fsencode(text)
    if _libc.mount(b(source), b(target), b(fstype), flags, b(data)) != 0:
        e = ctypes.get_errno()
        raise OSError(e, f"mount {source or ''} on {target}: {os.strerror(e)}")


class MountOptions:
    """A config mount's options, sorted out: mount(2) flags, propagation flags, the
    recursive attributes (set, clear), runc's tmpcopyup, and the file system's own."""

    def __init__(self, options: list[str]) -> None:
        self.flags = self.propagation = self.attr_set = self.attr_clear = 0
        self.copy_up = False
        data = []
        for option in options:
            if option in FLAGS:
                clear, flag = FLAGS[option]
                self.flags = self.flags & ~flag if clear else self.flags | flag
            elif option in PROPAGATION:
                self.propagation |= PROPAGATION[option]
            elif option in RECURSIVE:
                clear, attr = RECURSIVE[option]
                if option in _ATIME_VALUES:
                    self.attr_clear |= _MOUNT_ATTR_ATIME  # a value, not a bit
                    self.attr_set = self.attr_set & ~_MOUNT_ATTR_ATIME | (0 if clear else attr)
                elif clear:
                    self.attr_clear, self.attr_set = self.attr_clear | attr, self.attr_set & ~attr
                else:
                    self.attr_set, self.attr_clear = self.attr_set | attr, self.attr_clear & ~attr
            elif option == "tmpcopyup":
                self.copy_up = True
            else:
                data.append(option)
        self.data = ",".join(data)


def set_recursive(target: str, attr_set: int, attr_clear: int) -> None:
    """mount_setattr(2) on the whole tree at target (runc's rro, rnosuid...)."""
    attr = (ctypes.c_uint64 * 4)(attr_set, attr_clear, 0, 0)
    path = ctypes.create_string_buffer(os.fsencode(target))
    result = host.syscall(NR["mount_setattr"], -100, ctypes.addressof(path), AT_RECURSIVE,
                          ctypes.addressof(attr), ctypes.sizeof(attr))
    if result < 0:
        raise OSError(-result, f"mount_setattr on {target}: {os.strerror(-result)}")


def _copy_up(target: str, mount_it) -> None:
    """runc's tmpcopyup: the new file system (a tmpfs) starts with what the image has
    at target. It is mounted aside, filled, then moved over target."""
    import shutil  # only for tmpcopyup: krun's start-up is timed
    import tempfile

    aside = tempfile.mkdtemp(prefix="krun-copyup-")
    try:
        mount_it(aside)
        try:
            for name in os.listdir(target):
                source, copy = os.path.join(target, name), os.path.join(aside, name)
                if os.path.isdir(source) and not os.path.islink(source):
                    shutil.copytree(source, copy, symlinks=True)
                else:
                    shutil.copy2(source, copy, follow_symlinks=False)
            shutil.copystat(target, aside)
            mount(aside, target, None, MS_MOVE)
        except BaseException:
            _libc.umount2(os.fsencode(aside), MNT_DETACH)
            raise
    finally:
        os.rmdir(aside)


def resolve_in_root(root: str, path: str) -> str:
    """The host path of `path` inside `root`, following the symlinks it meets as if
    root were / (an absolute target restarts at root, .. stops there); the parts that
    do not exist yet are kept as written."""
    parts = [p for p in path.split("/") if p]
    resolved: list[str] = []
    links = 0
    while parts:
        part = parts.pop(0)
        if part == ".":
            continue
        if part == "..":
            if resolved:
                resolved.pop()
            continue
        candidate = os.path.join(root, *resolved, part)
        try:
            target = os.readlink(candidate)
        except OSError:  # not a link, or not there (yet)
            resolved.append(part)
            continue
        links += 1
        if links > 255:
            raise OSError(errno.ELOOP, f"too many links in {path}")
        if target.startswith("/"):
            resolved = []
        parts = [p for p in target.split("/") if p] + parts
    return os.path.join(root, *resolved)


def _make_mount_point(target: str, like_file: bool) -> None:
    if os.path.lexists(target):
        return
    os.makedirs(os.path.dirname(target), exist_ok=True)
    if like_file:
        os.close(os.open(target, os.O_CREAT | os.O_WRONLY | os.O_CLOEXEC, 0o644))
    else:
        os.mkdir(target, 0o755)


def mount_one(root: str, entry: dict, cgroup: Cgroup) -> None:
    """One entry of config.json's mounts, under root (before pivot_root)."""
    kind = entry.get("type") or ""
    source = entry.get("source") or kind or "none"
    options = MountOptions(list(entry.get("options") or []))
    flags, propagation, data = options.flags, options.propagation, options.data
    if kind == "bind":
        flags |= MS_BIND
    target = resolve_in_root(root, entry["destination"])
    if flags & MS_BIND:
        source_path = os.path.join(os.getcwd(), source)  # bundle-relative sources
        like_file = not os.path.isdir(source_path)
        _make_mount_point(target, like_file)
        mount(source_path, target, None, flags & (MS_BIND | MS_REC))
        if flags & _REMOUNT_FLAGS:
            mount(None, target, None, MS_REMOUNT | MS_BIND | (flags & _REMOUNT_FLAGS))
    elif kind in ("cgroup", "cgroup2"):
        _make_mount_point(target, False)
        cgroup.mount_into(target, bool(flags & MS_RDONLY), mount)
    elif options.copy_up:
        _make_mount_point(target, False)
        _copy_up(target, lambda where: mount(source, where, kind, flags, data or None))
    else:
        _make_mount_point(target, False)
        try:
            mount(source, target, kind, flags, data or None)
        except OSError as e:
            # Without their namespace sysfs and mqueue cannot be mounted anew: the
            # host's are bound instead (as runc does for sysfs without a netns).
            host_path = {"sysfs": "/sys", "mqueue": "/dev/mqueue"}.get(kind)
            if e.errno not in (errno.EPERM, errno.EBUSY) or host_path is None:
                raise
            mount(host_path, target, None, MS_BIND | MS_REC)
            if flags & _REMOUNT_FLAGS:
                mount(None, target, None, MS_REMOUNT | MS_BIND | (flags & _REMOUNT_FLAGS))
    if options.attr_set or options.attr_clear:
        set_recursive(target, options.attr_set, options.attr_clear)
    if propagation:
        mount(None, target, None, propagation)


def make_devices(root: str, devices: list[dict], dev_is_bound: bool) -> None:
    """The default devices and config.json's linux.devices, under root's /dev."""
    wanted = [{"path": f"/dev/{name}", "type": "c", "major": major, "minor": minor,
               "fileMode": 0o666, "uid": 0, "gid": 0}
              for name, major, minor in DEFAULT_DEVICES] if not dev_is_bound else []
    defaults = {d["path"] for d in wanted}
    wanted += [d for d in devices if d.get("path") not in defaults]
    wanted += [d for d in devices if d.get("path") in defaults]  # (config wins)
    for device in wanted:
        _make_device(root, device)


def _make_device(root: str, device: dict) -> None:
    kind = {"c": stat.S_IFCHR, "u": stat.S_IFCHR, "b": stat.S_IFBLK, "p": stat.S_IFIFO}.get(
        device.get("type", ""))
    if kind is None:
        raise OSError(errno.EINVAL, f"device {device.get('path')}: unknown type")
    target = resolve_in_root(root, device["path"])
    os.makedirs(os.path.dirname(target), exist_ok=True)
    if os.path.lexists(target):
        os.unlink(target)
    mode = device.get("fileMode", 0o666) & 0o7777
    try:
        os.mknod(target, kind | mode, os.makedev(device.get("major", 0), device.get("minor", 0)))
    except PermissionError:
        # No CAP_MKNOD (a user namespace): the host's node, bound onto a plain file.
        _make_mount_point(target, True)
        mount(device["path"], target, None, MS_BIND)
        return
    os.chmod(target, mode)  # (mknod applies the umask)
    os.chown(target, device.get("uid", 0), device.get("gid", 0))


def make_dev_links(root: str) -> None:
    dev = resolve_in_root(root, "/dev")
    links = list(DEV_LINKS)
    if os.path.exists(os.path.join(dev, "pts", "ptmx")):
        links.append(("ptmx", "pts/ptmx"))
    if os.path.exists("/proc/kcore"):
        links.append(("core", "/proc/kcore"))
    for name, target in links:
        path = os.path.join(dev, name)
        if name == "ptmx" and os.path.lexists(path):
            os.unlink(path)
        if not os.path.lexists(path):
            os.symlink(target, path)


def pivot(root: str) -> None:
    """Make root the mount namespace's / and let go of the old one."""
    os.chdir(root)
    host.call(NR["pivot_root"], host.address_of(b"."), host.address_of(b"."))
    # The old root is stacked under the new one at "/": detach it without its unmount
    # reaching the host (slave first).
    mount(None, ".", None, MS_SLAVE | MS_REC)
    if _libc.umount2(b".", MNT_DETACH) != 0:
        e = ctypes.get_errno()
        raise OSError(e, f"unmounting the old root: {os.strerror(e)}")
    os.chdir("/")


def move_root(root: str) -> None:
    """runc's --no-pivot, for a root pivot_root refuses (one on the initramfs): root is
    moved over / and the process chroots into it. The old root is then only hidden, not
    detached, as with runc's; km's own path resolution keeps the payload inside."""
    os.chdir(root)
    mount(root, "/", None, MS_MOVE)
    os.chroot(".")
    os.chdir("/")


def mask(paths: list[str]) -> None:
    """maskedPaths: nothing to read there (an empty read-only tmpfs on a directory,
    /dev/null on a file); paths that do not exist are left alone."""
    for path in paths:
        try:
            if os.path.isdir(path) and not os.path.islink(path):
                mount("tmpfs", path, "tmpfs", MS_RDONLY)
            elif os.path.lexists(path):
                mount("/dev/null", path, None, MS_BIND)
        except FileNotFoundError:
            continue


def make_read_only(paths: list[str]) -> None:
    for path in paths:
        if not os.path.lexists(path):
            continue
        mount(path, path, None, MS_BIND | MS_REC)
        flags = MS_REMOUNT | MS_BIND | MS_RDONLY | _kept_flags(path)
        mount(None, path, None, flags)


def _kept_flags(path: str) -> int:
    """The locked flags of the mount at path (a remount must keep nosuid, nodev and
    noexec where they are set)."""
    st = os.statvfs(path)
    kept = 0
    for bit, flag in ((os.ST_NOSUID, MS_NOSUID), (os.ST_NODEV, MS_NODEV),
                      (os.ST_NOEXEC, MS_NOEXEC)):
        if st.f_flag & bit:
            kept |= flag
    return kept


def build(config: dict, bundle: str, cgroup: Cgroup,
          before_lockdown: Callable[[], None] = lambda: None, no_pivot: bool = False) -> None:
    """Everything of config.json's root file system, in the new mount namespace; ends
    with the container's root as / and the working directory at /. before_lockdown runs
    in the new root before the read-only and masked paths go up (sysctls are written
    to /proc/sys there, which is then made read-only, as runc orders it). no_pivot:
    `create --no-pivot`, the root moved over / rather than pivoted to."""
    root = os.path.realpath(config["root"]["path"])
    linux = config.get("linux") or {}
    propagation = PROPAGATION.get(linux.get("rootfsPropagation", ""), 0)
    # Nothing done here may reach the host's mounts.
    mount(None, "/", None, MS_SLAVE | MS_REC)
    mount(root, root, None, MS_BIND | MS_REC)
    os.chdir(bundle)  # (bind sources may be relative to the bundle)
    mounts = list(config.get("mounts") or [])
    for entry in mounts:
        mount_one(root, entry, cgroup)
    dev_is_bound = any(m.get("destination") == "/dev" and (m.get("type") == "bind" or
                       "bind" in (m.get("options") or []) or "rbind" in (m.get("options") or []))
                       for m in mounts)
    make_devices(root, list(linux.get("devices") or []), dev_is_bound)
    make_dev_links(root)
    if no_pivot:
        move_root(root)
    else:
        pivot(root)
    if propagation:
        mount(None, "/", None, propagation)
    before_lockdown()
    make_read_only(list(linux.get("readonlyPaths") or []))
    mask(list(linux.get("maskedPaths") or []))
    if config["root"].get("readonly"):
        mount(None, "/", None, MS_REMOUNT | MS_BIND | MS_RDONLY | _kept_flags("/"))
