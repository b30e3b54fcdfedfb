"""The container's cgroup: made at create, with the limits of linux.resources, before the
container's first process runs, so that everything of the container — km included,
since km *is* the container's processes — is inside it.

Both layouts runc knows: the unified hierarchy (cgroup v2 at /sys/fs/cgroup), and the
legacy one (a v1 hierarchy per controller under /sys/fs/cgroup, maybe a cgroup2 at
/sys/fs/cgroup/unified beside them), where the container gets a directory of the same
name in each hierarchy.

Runtime spec: config-linux.md "Control groups"; runc's conversions of the (v1-shaped)
resources to v2 files (cpu shares to weight, swap as memory + swap).
"""

from __future__ import annotations

import _signal as signal  # not `signal`: it imports enum (krun's start-up is timed)
import errno
import os
import select
import time

CGROUP_ROOT = "/sys/fs/cgroup"
V2_CONTROLLERS = ("cpu", "io", "memory", "pids", "cpuset")


def relative_path(config: dict, container_id: str, systemd: bool) -> str:
    """Where the container's cgroup goes below each hierarchy's root:
    linux.cgroupsPath (runc's systemd form slice:prefix:name becomes
    slice/prefix-name.scope), or krun/ID."""
    cgroups_path = (config.get("linux") or {}).get("cgroupsPath") or ""
    if systemd or cgroups_path.count(":") == 2 and not cgroups_path.startswith("/"):
        slice_, prefix, name = (cgroups_path.split(":") + ["", "", ""])[:3] \
            if cgroups_path else ("system.slice", "krun", container_id)
        return os.path.join(_slice_path(slice_ or "system.slice"),
                            f"{prefix or 'krun'}-{name or container_id}.scope")
    return cgroups_path.strip("/") or os.path.join("krun", container_id)


def _slice_path(slice_: str) -> str:
    """systemd nests a-b-c.slice in a.slice/a-b.slice/a-b-c.slice."""
    if slice_ == "-.slice":
        return ""
    parts = slice_.removesuffix(".slice").split("-")
    return os.path.join(*("-".join(parts[:i + 1]) + ".slice" for i in range(len(parts))))


def hierarchies() -> dict[str, str]:
    """Hierarchy name -> its mount point: {"": /sys/fs/cgroup} on a unified host; on a
    legacy one each v1 hierarchy by its mount point's name (memory, cpu, name=systemd's
    systemd, ...) and the cgroup2 beside them as "unified"."""
    if os.path.exists(os.path.join(CGROUP_ROOT, "cgroup.controllers")):
        return {"": CGROUP_ROOT}
    found = {}
    try:
        with open("/proc/self/mounts") as f:
            for line in f:
                _source, point, kind = line.split()[:3]
                if kind in ("cgroup", "cgroup2") and point.startswith(CGROUP_ROOT + "/"):
                    found[point[len(CGROUP_ROOT) + 1:]] = point
    except OSError:
        pass
    return found


class Cgroup:
    """The container's cgroup: one directory in each hierarchy."""

    def __init__(self, relative: str) -> None:
        self.relative = relative
        self.dirs = {name: os.path.join(point, relative)
                     for name, point in hierarchies().items()}

    def _dir(self, *names: str) -> str | None:
        for name in names:
            if name in self.dirs:
                return self.dirs[name]
        return None

    @property
    def unified(self) -> bool:
        return "" in self.dirs

    def create(self) -> None:
        for name, path in self.dirs.items():
            if name == "":
                _make_v2(path)
            else:
                os.makedirs(path, exist_ok=True)
                if name == "cpuset":
                    _inherit_cpuset(path)

    def apply(self, resources: dict) -> None:
        if not resources:
            return
        if self.unified:
            _apply_v2(self.dirs[""], resources)
        else:
            _apply_v1(self, resources)

    def join(self, pid: int) -> None:
        for path in self.dirs.values():
            _write(path, "cgroup.procs", str(pid))

    def pids(self) -> list[int]:
        """Every process in the cgroup and below it."""
        path = self._dir("", "pids", "freezer", "memory")
        found: set[int] = set()
        for directory, _subdirs, files in os.walk(path) if path else ():
            if "cgroup.procs" in files:
                try:
                    with open(os.path.join(directory, "cgroup.procs")) as f:
                        found.update(int(line) for line in f if line.strip())
                except OSError:
                    continue
        return sorted(found)

    def freeze(self, frozen: bool) -> None:
        if self.unified:
            _write(self.dirs[""], "cgroup.freeze", "1" if frozen else "0")
            _wait_for(os.path.join(self.dirs[""], "cgroup.events"), f"frozen {int(frozen)}")
        elif "freezer" in self.dirs:
            _write(self.dirs["freezer"], "freezer.state", "FROZEN" if frozen else "THAWED")
        else:
            raise OSError(errno.ENOTSUP, "no freezer on this host")

    def mount_into(self, target: str, readonly: bool, mount) -> None:
        """A config mount of type cgroup: the container's own cgroups at target (a new
        cgroup2 in a cgroup namespace, whose root is this cgroup; else its directory
        bound, one per hierarchy on a legacy host)."""
        ro = 0x1 if readonly else 0
        if self.unified:
            try:
                mount("cgroup2", target, "cgroup2", 0xE)  # nosuid, nodev, noexec
            except OSError:
                mount(self.dirs[""], target, None, 0x1000 | 0x4000)  # MS_BIND | MS_REC
            if ro:
                mount(None, target, None, 0x20 | 0x1000 | 0xE | ro)  # remount, bind
            return
        mount("tmpfs", target, "tmpfs", 0xE, "mode=755")
        for name, path in self.dirs.items():
            inside = os.path.join(target, name)
            os.makedirs(inside, exist_ok=True)
            mount(path, inside, None, 0x1000 | 0x4000)
            if ro:
                mount(None, inside, None, 0x20 | 0x1000 | 0xE | ro)
        if ro:
            mount(None, target, None, 0x20 | 0xE | ro)

    def remove(self, kill: bool = False, timeout: float = 5.0) -> None:
        """Remove the container's directories once no process is left in them; with
        kill=True (a create that failed), its processes are SIGKILLed first. A killed
        process leaves its cgroup a moment after its parent saw it die: the directories
        are busy until then."""
        deadline = time.monotonic() + timeout
        while (left := self.pids()) and time.monotonic() < deadline:
            if kill:
                for pid in set(left) - {os.getpid()}:
                    try:
                        os.kill(pid, signal.SIGKILL)
                    except OSError:
                        pass
            time.sleep(0.002)
        for path in self.dirs.values():
            for directory, _subdirs, _files in sorted(os.walk(path), key=lambda e: -len(e[0])):
                try:
                    os.rmdir(directory)
                except OSError as e:
                    if e.errno not in (errno.ENOENT, errno.EBUSY):
                        raise


def _write(path: str, name: str, value: str) -> None:
    with open(os.path.join(path, name), "w") as f:
        f.write(value)


def _wait_for(events: str, line: str) -> None:
    """cgroup.events says when a freeze is complete; the kernel signals each change of
    it as POLLPRI."""
    with open(events) as f:
        poller = select.poll()
        poller.register(f, select.POLLPRI)
        for _ in range(1000):
            f.seek(0)
            if line in f.read():
                return
            poller.poll(50)


def _make_v2(path: str) -> None:
    """The cgroup and its ancestors, each ancestor delegating the controllers it has."""
    relative = os.path.relpath(path, CGROUP_ROOT).split("/")
    current = CGROUP_ROOT
    for part in relative:
        _enable_controllers(current)
        current = os.path.join(current, part)
        os.makedirs(current, exist_ok=True)


def _enable_controllers(directory: str) -> None:
    try:
        with open(os.path.join(directory, "cgroup.controllers")) as f:
            have = f.read().split()
        wanted = " ".join(f"+{c}" for c in V2_CONTROLLERS if c in have)
        if wanted:
            _write(directory, "cgroup.subtree_control", wanted)
    except OSError:
        pass  # (a cgroup with processes of its own cannot delegate: keep what there is)


def _inherit_cpuset(path: str) -> None:
    """A new v1 cpuset has no cpus or mems: it takes its parent's (as runc does)."""
    parent = os.path.dirname(path)
    if parent != CGROUP_ROOT + "/cpuset":
        _inherit_cpuset(parent)
    for name in ("cpuset.cpus", "cpuset.mems"):
        try:
            with open(os.path.join(path, name)) as f:
                if f.read().strip():
                    continue
            with open(os.path.join(parent, name)) as f:
                _write(path, name, f.read().strip())
        except OSError:
            continue


def _apply_v2(path: str, resources: dict) -> None:
    memory = resources.get("memory") or {}
    limit = memory.get("limit")
    if limit is not None:
        _write(path, "memory.max", "max" if limit < 0 else str(limit))
        swap = memory.get("swap")
        if swap is not None and os.path.exists(os.path.join(path, "memory.swap.max")):
            # v1's swap is memory + swap; v2's swap.max is the swap alone.
            _write(path, "memory.swap.max",
                   "max" if swap < 0 else str(max(swap - max(limit, 0), 0)))
    if memory.get("reservation") is not None:
        _write(path, "memory.low", str(memory["reservation"]))
    pids = (resources.get("pids") or {}).get("limit")
    if pids is not None:
        _write(path, "pids.max", "max" if pids <= 0 else str(pids))
    cpu = resources.get("cpu") or {}
    if cpu.get("shares"):
        _write(path, "cpu.weight", str(1 + ((cpu["shares"] - 2) * 9999) // 262142))
    if cpu.get("quota") is not None or cpu.get("period") is not None:
        quota = cpu.get("quota")
        _write(path, "cpu.max", f"{'max' if quota is None or quota < 0 else quota} "
                                f"{cpu.get('period') or 100000}")
    for key in ("cpus", "mems"):
        if cpu.get(key):
            _write(path, f"cpuset.{key}", cpu[key])
    for name, value in (resources.get("unified") or {}).items():
        _write(path, name, value)


def _apply_v1(cgroup: Cgroup, resources: dict) -> None:
    dirs = cgroup.dirs
    memory = resources.get("memory") or {}
    if "memory" in dirs:
        for key, name in (("limit", "memory.limit_in_bytes"),
                          ("swap", "memory.memsw.limit_in_bytes"),
                          ("reservation", "memory.soft_limit_in_bytes"),
                          ("kernelTCP", "memory.kmem.tcp.limit_in_bytes"),
                          ("swappiness", "memory.swappiness")):
            if memory.get(key) is not None and os.path.exists(
                    os.path.join(dirs["memory"], name)):
                _write(dirs["memory"], name, str(memory[key]))
        if memory.get("disableOOMKiller"):
            _write(dirs["memory"], "memory.oom_control", "1")
    pids = (resources.get("pids") or {}).get("limit")
    if pids is not None and "pids" in dirs:
        _write(dirs["pids"], "pids.max", "max" if pids <= 0 else str(pids))
    cpu = resources.get("cpu") or {}
    cpu_dir = dirs.get("cpu") or dirs.get("cpu,cpuacct")
    if cpu_dir:
        for key, name in (("shares", "cpu.shares"), ("period", "cpu.cfs_period_us"),
                          ("quota", "cpu.cfs_quota_us"), ("realtimeRuntime", "cpu.rt_runtime_us"),
                          ("realtimePeriod", "cpu.rt_period_us")):
            if cpu.get(key) is not None:
                _write(cpu_dir, name, str(cpu[key]))
    if "cpuset" in dirs:
        for key in ("cpus", "mems"):
            if cpu.get(key):
                _write(dirs["cpuset"], f"cpuset.{key}", cpu[key])
    if "devices" in dirs and resources.get("devices"):
        for rule in [*resources["devices"], *DEFAULT_ALLOWED_DEVICES]:
            name = "devices.allow" if rule.get("allow") else "devices.deny"
            _write(dirs["devices"], name, device_rule(rule))


#: What a container may always use, after the config's own rules (runc adds the same):
#: the runtime spec's default devices (null, zero, full, random, urandom, tty, console,
#: ptmx) and the terminals of its devpts, and any mknod (km refuses device nodes anyway).
DEFAULT_ALLOWED_DEVICES = [
    {"allow": True, "type": kind, "major": major, "minor": minor, "access": access}
    for kind, major, minor, access in (
        ("c", None, None, "m"), ("b", None, None, "m"), ("c", 1, 3, "rwm"), ("c", 1, 5, "rwm"),
        ("c", 1, 7, "rwm"), ("c", 1, 8, "rwm"), ("c", 1, 9, "rwm"), ("c", 5, 0, "rwm"),
        ("c", 5, 1, "rwm"), ("c", 5, 2, "rwm"), ("c", 136, None, "rwm"))
]


def device_rule(rule: dict) -> str:
    """A linux.resources.devices entry as the v1 devices controller writes it:
    "TYPE MAJOR:MINOR ACCESS" (a missing type is a, a missing number *). km holds
    /dev/kvm open from before the container joins its cgroup, so a rule set that
    leaves it out (Docker's and Podman's do) does not stop km's VMs."""
    kind = rule.get("type") or "a"
    if kind not in ("a", "b", "c"):
        raise OSError(errno.EINVAL, f"device rule type {kind!r}")
    major, minor = rule.get("major"), rule.get("minor")
    access = rule.get("access") or "rwm"
    if kind == "a":  # the whole controller: the kernel takes no numbers with "a"
        return "a"
    return (f"{kind} {'*' if major is None or major < 0 else major}:"
            f"{'*' if minor is None or minor < 0 else minor} {access}")
