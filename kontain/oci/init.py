"""The container's first process: from `krun create` to km running process.args.

`create` (kontain.cli.krun) forks; the child here enters the container's namespaces
(joined by path or new), forks again when there is a new pid namespace (so the
container's first process is its pid 1), builds the root file system, applies the
process's settings, tells `create` it is ready, and waits on the state directory's
exec.fifo until `krun start` opens it. Then it *becomes km*: km's modules were all
imported before the root changed, /dev/kvm was opened before it did, and km's own walls
(no_new_privs, Landlock, seccomp on km) go up around the container's.

Messages to `create` go through a pipe, one JSON object a line:
    {"pid": N}      the container's first process, as the host numbers it
    {"ready": 1}    set up and waiting for start
    {"error": "..."}  what failed (create reports it and cleans up)
"""

from __future__ import annotations

import ctypes
import errno
import os
import resource
import sys

from kontain.kvm.api import Kvm
from kontain.linux import hostcall as host
from kontain.linux.numbers import NUMBERS as NR
from kontain.oci import hooks, jsonio, rootfs
from kontain.oci.cgroups import Cgroup
from kontain.oci.spec import CAPABILITIES, NAMESPACE_FLAGS, has_namespace

TYPE_CHECKING = False  # no typing import at run time: krun's start-up is timed
if TYPE_CHECKING:
    import socket

_libc = ctypes.CDLL(None, use_errno=True)
PR_SET_KEEPCAPS, PR_CAP_AMBIENT, PR_CAP_AMBIENT_RAISE, PR_CAPBSET_DROP = 8, 47, 2, 24
TIOCSCTTY = 0x540E
PR_SET_DUMPABLE = 4
CAPABILITY_VERSION_3 = 0x20080522



class Reporter:
    """The pipe back to `krun create`."""

    def __init__(self, fd: int) -> None:
        self.fd = fd

    def send(self, **message: object) -> None:
        try:
            os.write(self.fd, jsonio.dumps(message).encode() + b"\n")
        except OSError:
            pass  # create is gone: nobody to tell


# ---- namespaces ---------------------------------------------------------------------------

def enter_namespaces(config: dict, report: Reporter, go_fd: int) -> bool:
    """Join the namespaces given by path and make the new ones, the user namespace
    first (it owns the others; its id maps are written by create, which has the
    privilege to); True if there is a pid namespace to fork into."""
    wanted = (config.get("linux") or {}).get("namespaces") or []
    by_type = {ns["type"]: ns for ns in wanted}
    user = by_type.pop("user", None)
    if user is not None:
        if user.get("path"):
            _setns(user["path"], NAMESPACE_FLAGS["user"])
        else:
            unshare(NAMESPACE_FLAGS["user"])
            report.send(userns=os.getpid())
            if os.read(go_fd, 1) != b"1":
                os._exit(1)  # create could not map the ids: it says why
        try:  # root of the namespace, where its maps have a root
            os.setresgid(0, 0, 0)
            os.setresuid(0, 0, 0)
        except OSError:
            pass
    new = 0
    for kind, namespace in by_type.items():
        if namespace.get("path"):
            _setns(namespace["path"], NAMESPACE_FLAGS[kind])
        else:
            new |= NAMESPACE_FLAGS[kind]
    unshare(new)  # (a new pid namespace is for the children made from now on)
    return "pid" in by_type


def _setns(path: str, flag: int) -> None:
    fd = os.open(path, os.O_RDONLY | os.O_CLOEXEC)
    try:
        host.call(NR["setns"], fd, flag)
    finally:
        os.close(fd)


def write_id_maps(pid: int, config: dict) -> None:
    """linux.uidMappings and gidMappings of a process that made a user namespace."""
    linux = config.get("linux") or {}
    for name, key in (("uid_map", "uidMappings"), ("gid_map", "gidMappings")):
        lines = "".join(f"{m['containerID']} {m['hostID']} {m['size']}\n"
                        for m in linux.get(key) or [])
        if lines:
            with open(f"/proc/{pid}/{name}", "w") as f:
                f.write(lines)


def unshare(flags: int) -> None:
    if flags:
        host.call(NR["unshare"], flags)


# ---- the process's settings ---------------------------------------------------------------

def set_names(config: dict) -> None:
    for key, call in (("hostname", _libc.sethostname), ("domainname", _libc.setdomainname)):
        name = config.get(key)
        if name is not None:
            value = name.encode()
            if call(value, len(value)) != 0:
                raise OSError(ctypes.get_errno(), f"set {key} {name!r}")


def write_sysctls(config: dict) -> None:
    for key, value in ((config.get("linux") or {}).get("sysctl") or {}).items():
        with open("/proc/sys/" + key.replace(".", "/"), "w") as f:
            f.write(str(value))


def set_rlimits(process: dict) -> None:
    for limit in process.get("rlimits") or []:
        which = getattr(resource, limit["type"], None)
        if which is None:
            raise OSError(22, f"unknown rlimit {limit['type']}")
        try:
            resource.setrlimit(which, (limit["soft"], limit["hard"]))
        except ValueError:  # Python's word for EINVAL (soft above hard) or EPERM
            if limit["soft"] > limit["hard"]:
                raise OSError(errno.EINVAL, f"setrlimit {limit['type']}: soft limit above "
                              "hard limit") from None
            raise OSError(errno.EPERM, f"setrlimit {limit['type']}: operation not permitted "
                          "(raising a hard limit needs CAP_SYS_RESOURCE)") from None


def set_oom_score_adj(process: dict) -> None:
    if process.get("oomScoreAdj") is not None:
        try:
            with open("/proc/self/oom_score_adj", "w") as f:
                f.write(str(process["oomScoreAdj"]))
        except OSError as e:
            raise OSError(e.errno, "failed to update /proc/self/oom_score_adj: "
                          f"{os.strerror(e.errno or errno.EIO)}") from None


def describe(error: BaseException) -> str:
    """An error as the one line create prints: "what: why", as runc words its own, not
    Python's "[Errno N] ..." form."""
    if not isinstance(error, OSError):
        return f"{type(error).__name__}: {error}"
    if error.filename is not None:  # from os.* and open(): the path, then the reason
        paths = os.fsdecode(error.filename)
        if error.filename2 is not None:
            paths += f" -> {os.fsdecode(error.filename2)}"
        return f"{paths}: {error.strerror or os.strerror(error.errno or errno.EIO)}"
    if error.strerror:  # krun's own: OSError(errno, "mount X on Y: reason")
        return error.strerror
    return str(error) or type(error).__name__


def _cap_bits(names: list[str] | None) -> int:
    bits = 0
    for name in names or []:
        if name in CAPABILITIES:
            bits |= 1 << CAPABILITIES[name]
    return bits


def set_user_and_capabilities(process: dict) -> None:
    """process.user and process.capabilities, in the order that keeps the capabilities
    a non-root user is granted: bounding set, keep-caps, ids, then the other sets."""
    user = process.get("user") or {}
    caps = process.get("capabilities")
    if caps is not None:
        bounding = _cap_bits(caps.get("bounding"))
        for number in range(64):
            if not bounding >> number & 1:
                result = host.syscall(NR["prctl"], PR_CAPBSET_DROP, number, 0, 0, 0)
                if result == -22:  # past the kernel's last capability
                    break
        host.call(NR["prctl"], PR_SET_KEEPCAPS, 1, 0, 0, 0)
    os.setgroups([int(g) for g in user.get("additionalGids") or []])
    gid, uid = int(user.get("gid", 0)), int(user.get("uid", 0))
    os.setresgid(gid, gid, gid)
    os.setresuid(uid, uid, uid)
    if "umask" in user:
        os.umask(int(user["umask"]))
    if caps is not None:
        effective, permitted = _cap_bits(caps.get("effective")), _cap_bits(caps.get("permitted"))
        inheritable = _cap_bits(caps.get("inheritable"))
        words = [effective & 0xFFFFFFFF, permitted & 0xFFFFFFFF, inheritable & 0xFFFFFFFF,
                 effective >> 32, permitted >> 32, inheritable >> 32]
        header = ctypes.create_string_buffer(CAPABILITY_VERSION_3.to_bytes(4, "little")
                                             + bytes(4))
        data = ctypes.create_string_buffer(b"".join(w.to_bytes(4, "little") for w in words))
        host.call(NR["capset"], ctypes.addressof(header), ctypes.addressof(data))
        for name in caps.get("ambient") or []:
            if name in CAPABILITIES:
                host.syscall(NR["prctl"], PR_CAP_AMBIENT, PR_CAP_AMBIENT_RAISE,
                             CAPABILITIES[name], 0, 0)


# ---- the terminal -------------------------------------------------------------------------

def connect_console(socket_path: str | None) -> socket.socket | None:
    """The --console-socket, connected by krun before the container's root hides it."""
    import socket  # only with a terminal: krun's start-up is timed

    if not socket_path:
        return None
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    sock.connect(socket_path)
    return sock


def console(sock: socket.socket) -> None:
    """process.terminal: a new pty of the container's devpts; its master goes to the
    console socket (SCM_RIGHTS), its slave becomes the process's controlling terminal
    and stdio."""
    import socket

    master, slave = os.openpty()
    with sock:
        socket.send_fds(sock, [b"/dev/ptmx"], [master])
    os.close(master)
    os.setsid()
    host.call(NR["ioctl"], slave, TIOCSCTTY, 0)
    for fd in (0, 1, 2):
        os.dup2(slave, fd)
    if slave > 2:
        os.close(slave)


def close_inherited(keep: set[int]) -> None:
    """Descriptors beyond stdio and --preserve-fds do not reach the container (km's
    guest descriptors are its host descriptors: what stays open, the payload sees)."""
    first = 3
    for fd in sorted(k for k in keep if k >= 3):
        if fd > first:
            host.call(NR["close_range"], first, fd - 1, 0)
        first = max(first, fd + 1)
    host.call(NR["close_range"], first, 0xFFFFFFFF, 0)


# ---- waiting for start, then km -----------------------------------------------------------

def wait_for_start(fifo_fd: int, own_fds: int) -> None:
    """Blocks until `krun start` opens the fifo for reading. The fifo was opened O_PATH
    and the host's /proc/self/fd (own_fds) before the root changed: neither the state
    directory nor a /proc need be in the container."""
    # A process whose ids changed (a user namespace's root) is not dumpable, and then
    # its own /proc/self/fd belongs to the host's root: dumpable again for the reopen.
    host.call(NR["prctl"], PR_SET_DUMPABLE, 1, 0, 0, 0)
    fd = os.open(str(fifo_fd), os.O_WRONLY | os.O_CLOEXEC, dir_fd=own_fds)
    os.write(fd, b"0")
    os.close(fd)
    os.close(fifo_fd)
    os.close(own_fds)


def device_rules_of(config: dict) -> object:
    """linux.resources.devices for km to check as well (kontain.monitor.devices), with
    the devices every container may use after them, as the cgroup gets them; None when
    the config has none."""
    rules = ((config.get("linux") or {}).get("resources") or {}).get("devices")
    if not rules:
        return None
    from kontain.monitor.devices import DeviceRules
    from kontain.oci.cgroups import DEFAULT_ALLOWED_DEVICES

    return DeviceRules([*rules, *DEFAULT_ALLOWED_DEVICES])


def run_km(config: dict, kvm: Kvm, strict: bool, syscall_filter: object = None,
           device_rules: object = None) -> None:
    """Become km running process.args, with the container's root as /; never returns."""
    from kontain.monitor.exits import end_monitor
    from kontain.monitor.launch import LaunchError, LaunchSpec, launch
    from kontain.monitor.process import Outcome
    from kontain.syscalls.registry import all_handlers

    process = config["process"]
    env = [os.fsencode(e) for e in process.get("env") or []]
    os.environ.clear()
    for entry in process.get("env") or []:
        name, _, value = entry.partition("=")
        os.environ[name] = value
    args = process["args"]
    spec = LaunchSpec(args[0], [os.fsencode(a) for a in args[1:]], env=env, root="/",
                      cwd=process.get("cwd", "/"), kvm=kvm, keep_capabilities=True,
                      strict=strict, syscall_filter=syscall_filter, device_rules=device_rules,
                      no_new_privs=bool(process.get("noNewPrivileges")))

    def finish(outcome: Outcome) -> None:
        end_monitor(outcome, launched.proc.trace.write, "krun")

    try:
        launched = launch(spec, all_handlers(), finish)
    except LaunchError as e:
        os.write(2, f"krun: {e}\n".encode())
        os._exit(e.status)
    launched.run()
    os._exit(1)


def preload(kvm: Kvm | None = None) -> Kvm:
    """Import everything km will run, while the host's files are still reachable, and
    open /dev/kvm (unless kvm is given); returns the Kvm."""
    import kontain.monitor.devices  # noqa: F401
    import kontain.monitor.exits  # noqa: F401
    import kontain.monitor.launch  # noqa: F401
    import kontain.monitor.vdso  # noqa: F401
    import kontain.syscalls.registry  # noqa: F401
    return kvm or Kvm()


def _hooks_before_pivot(config: dict, report: Reporter, go_fd: int) -> dict | None:
    """The hooks of create that need the container's namespaces: createRuntime (and
    prestart) are create's to run, in krun's namespaces, while we wait; then
    createContainer, ours. Returns the state the hooks get (None without hooks)."""
    kinds = (config.get("hooks") or {}).keys()
    if not kinds & {"prestart", "createRuntime", "createContainer", "startContainer"}:
        return None
    report.send(hooks=1)
    line = b""
    while not line.endswith(b"\n"):
        chunk = os.read(go_fd, 4096)
        if not chunk:
            os._exit(1)  # a hook of create's failed: create says so and cleans up
        line += chunk
    state = jsonio.loads(line)
    hooks.run(config, "createContainer", state)
    return state


def container_init(config: dict, bundle: str, report: Reporter, fifo_fd: int,
                   console_socket: socket.socket | None, preserve_fds: int, kvm: Kvm,
                   go_fd: int, cgroup: Cgroup, syscall_filter: object = None,
                   strict: bool = False, no_pivot: bool = False) -> None:
    """The child of `krun create`: never returns."""
    try:
        # All of km, while create makes the cgroup and puts us in it. (Its pages are
        # charged to krun's cgroup; everything the payload makes, to the container's.)
        preload(kvm)
        os.read(go_fd, 1)  # create has put us in the cgroup
        if enter_namespaces(config, report, go_fd):
            child = os.fork()  # the container's pid 1 (or a process of the joined one)
            if child:
                report.send(pid=child)
                os._exit(0)
        else:
            report.send(pid=os.getpid())
        process = config.get("process") or {}
        state = _hooks_before_pivot(config, report, go_fd)
        os.close(go_fd)
        mount = next((ns for ns in (config.get("linux") or {}).get("namespaces") or []
                      if ns["type"] == "mount"), None)
        own_fds = os.open("/proc/self/fd", os.O_PATH | os.O_DIRECTORY | os.O_CLOEXEC)
        if mount is not None and not mount.get("path"):
            rootfs.build(config, bundle, cgroup, lambda: write_sysctls(config), no_pivot)
        else:
            if not has_namespace(config, "mount"):  # the host's mounts: only chroot
                os.chroot(config["root"]["path"])
                os.chdir("/")
            write_sysctls(config)
        set_names(config)
        set_rlimits(process)
        set_oom_score_adj(process)
        if process.get("terminal") and console_socket:
            console(console_socket)
        elif console_socket:
            console_socket.close()
        close_inherited(set(range(3, 3 + preserve_fds))
                        | {report.fd, fifo_fd, own_fds, kvm.fd})
        report.send(ready=1)
        os.close(report.fd)
    except BaseException as e:  # noqa: BLE001 - everything goes back to create as one line
        report.send(error=describe(e))
        os._exit(1)
    try:
        # Still root while waiting: the fifo is reopened through /proc/self/fd, which
        # a process that changed its uid (no longer dumpable) may not do.
        wait_for_start(fifo_fd, own_fds)
        if state is not None:
            hooks.run(config, "startContainer", state)
        set_user_and_capabilities(process)
    except (OSError, hooks.HookFailed) as e:
        os.write(2, f"krun: {e}\n".encode())
        os._exit(1)
    sys.stdout.flush()
    run_km(config, kvm, strict, syscall_filter, device_rules_of(config))
