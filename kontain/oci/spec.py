"""The OCI runtime-spec config.json, read and checked once, as krun uses it.

The container is built from the parsed JSON itself (plain dicts and lists, as the
runtime-spec names them): this module only loads it, refuses what krun cannot honour
with one clear message, and fills in the defaults runc applies. `default_config` is
what `krun spec` writes.

Runtime spec: config.md, config-linux.md (v1.x).
"""

from __future__ import annotations

import os

from kontain.oci import jsonio

OCI_VERSION = "1.2.0"

#: Namespace type -> clone flag (config-linux.md "Namespaces").
NAMESPACE_FLAGS = {
    "pid": 0x20000000,      # CLONE_NEWPID
    "network": 0x40000000,  # CLONE_NEWNET
    "mount": 0x00020000,    # CLONE_NEWNS
    "ipc": 0x08000000,      # CLONE_NEWIPC
    "uts": 0x04000000,      # CLONE_NEWUTS
    "user": 0x10000000,     # CLONE_NEWUSER
    "cgroup": 0x02000000,   # CLONE_NEWCGROUP
    "time": 0x00000080,     # CLONE_NEWTIME
}

#: Capability names (capability.h numbers, in order).
CAPABILITIES = {name: number for number, name in enumerate((
    "CAP_CHOWN", "CAP_DAC_OVERRIDE", "CAP_DAC_READ_SEARCH", "CAP_FOWNER", "CAP_FSETID",
    "CAP_KILL", "CAP_SETGID", "CAP_SETUID", "CAP_SETPCAP", "CAP_LINUX_IMMUTABLE",
    "CAP_NET_BIND_SERVICE", "CAP_NET_BROADCAST", "CAP_NET_ADMIN", "CAP_NET_RAW",
    "CAP_IPC_LOCK", "CAP_IPC_OWNER", "CAP_SYS_MODULE", "CAP_SYS_RAWIO", "CAP_SYS_CHROOT",
    "CAP_SYS_PTRACE", "CAP_SYS_PACCT", "CAP_SYS_ADMIN", "CAP_SYS_BOOT", "CAP_SYS_NICE",
    "CAP_SYS_RESOURCE", "CAP_SYS_TIME", "CAP_SYS_TTY_CONFIG", "CAP_MKNOD", "CAP_LEASE",
    "CAP_AUDIT_WRITE", "CAP_AUDIT_CONTROL", "CAP_SETFCAP", "CAP_MAC_OVERRIDE",
    "CAP_MAC_ADMIN", "CAP_SYSLOG", "CAP_WAKE_ALARM", "CAP_BLOCK_SUSPEND", "CAP_AUDIT_READ",
    "CAP_PERFMON", "CAP_BPF", "CAP_CHECKPOINT_RESTORE"))}


class ConfigError(Exception):
    """config.json cannot be used: krun says why and does not create the container."""


def load(bundle: str) -> dict:
    """The bundle's config.json, checked, with runc's defaults filled in."""
    path = os.path.join(bundle, "config.json")
    try:
        with open(path, "rb") as f:
            config = jsonio.load(f)
    except FileNotFoundError:
        raise ConfigError(f"{path}: no such file (is {bundle} a bundle?)") from None
    except (OSError, ValueError) as e:
        raise ConfigError(f"{path}: {e}") from None
    check(config)
    root = config["root"]
    if not os.path.isabs(root["path"]):
        root["path"] = os.path.join(os.path.abspath(bundle), root["path"])
    return config


def check(config: dict) -> None:
    """Refuse a config krun cannot run, before anything is made."""
    if not isinstance(config, dict):
        raise ConfigError("config.json is not a JSON object")
    version = config.get("ociVersion")
    if not isinstance(version, str) or not version.startswith("1."):
        raise ConfigError(f"unsupported ociVersion {version!r} (krun implements 1.x)")
    root = config.get("root")
    if not isinstance(root, dict) or not isinstance(root.get("path"), str):
        raise ConfigError("root.path is required")
    process = config.get("process")
    if process is not None:
        args = process.get("args")
        if not isinstance(args, list) or not args or not all(isinstance(a, str) for a in args):
            raise ConfigError("process.args must be a non-empty list of strings")
        cwd = process.get("cwd", "/")
        if not isinstance(cwd, str) or not cwd.startswith("/"):
            raise ConfigError(f"process.cwd {cwd!r} must be an absolute path")
    linux = config.get("linux") or {}
    seen = set()
    for namespace in linux.get("namespaces") or []:
        kind = namespace.get("type")
        if kind not in NAMESPACE_FLAGS:
            raise ConfigError(f"unknown namespace type {kind!r}")
        if kind in seen:
            raise ConfigError(f"namespace {kind} given twice")
        seen.add(kind)
    if process is not None:
        for kind, names in (process.get("capabilities") or {}).items():
            unknown = [n for n in names or [] if n not in CAPABILITIES]
            if unknown:
                raise ConfigError(f"process.capabilities.{kind}: unknown capability "
                                  f"{unknown[0]}")
    for mount in config.get("mounts") or []:
        destination = mount.get("destination")
        if not isinstance(destination, str) or not destination.startswith("/"):
            raise ConfigError(f"mount destination {destination!r} must be absolute")


def namespaces(config: dict) -> list[dict]:
    return list((config.get("linux") or {}).get("namespaces") or [])


def has_namespace(config: dict, kind: str) -> bool:
    return any(ns.get("type") == kind for ns in namespaces(config))


def default_config(rootless: bool = False) -> dict:
    """The template `krun spec` writes: runc's, running `sh` in a busybox-like rootfs."""
    caps = ["CAP_AUDIT_WRITE", "CAP_KILL", "CAP_NET_BIND_SERVICE"]
    config = {
        "ociVersion": OCI_VERSION,
        "process": {
            "terminal": True,
            "user": {"uid": 0, "gid": 0},
            "args": ["sh"],
            "env": ["PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin",
                    "TERM=xterm"],
            "cwd": "/",
            "capabilities": {"bounding": caps, "effective": caps, "permitted": caps,
                             "ambient": caps},
            "rlimits": [{"type": "RLIMIT_NOFILE", "hard": 1024, "soft": 1024}],
            "noNewPrivileges": True,
        },
        "root": {"path": "rootfs", "readonly": True},
        "hostname": "krun",
        "mounts": [
            {"destination": "/proc", "type": "proc", "source": "proc"},
            {"destination": "/dev", "type": "tmpfs", "source": "tmpfs",
             "options": ["nosuid", "strictatime", "mode=755", "size=65536k"]},
            {"destination": "/dev/pts", "type": "devpts", "source": "devpts",
             "options": ["nosuid", "noexec", "newinstance", "ptmxmode=0666", "mode=0620",
                         "gid=5"]},
            {"destination": "/dev/shm", "type": "tmpfs", "source": "shm",
             "options": ["nosuid", "noexec", "nodev", "mode=1777", "size=65536k"]},
            {"destination": "/dev/mqueue", "type": "mqueue", "source": "mqueue",
             "options": ["nosuid", "noexec", "nodev"]},
            {"destination": "/sys", "type": "sysfs", "source": "sysfs",
             "options": ["nosuid", "noexec", "nodev", "ro"]},
            {"destination": "/sys/fs/cgroup", "type": "cgroup", "source": "cgroup",
             "options": ["nosuid", "noexec", "nodev", "relatime", "ro"]},
        ],
        "linux": {
            "resources": {"devices": [{"allow": False, "access": "rwm"}]},
            "namespaces": [{"type": t} for t in ("pid", "network", "ipc", "uts", "mount",
                                                  "cgroup")],
            "maskedPaths": ["/proc/acpi", "/proc/asound", "/proc/kcore", "/proc/keys",
                            "/proc/latency_stats", "/proc/timer_list", "/proc/timer_stats",
                            "/proc/sched_debug", "/sys/firmware", "/proc/scsi"],
            "readonlyPaths": ["/proc/bus", "/proc/fs", "/proc/irq", "/proc/sys",
                              "/proc/sysrq-trigger"],
        },
    }
    if rootless:
        config["linux"]["namespaces"].append({"type": "user"})
        config["linux"]["uidMappings"] = [{"containerID": 0, "hostID": os.getuid(), "size": 1}]
        config["linux"]["gidMappings"] = [{"containerID": 0, "hostID": os.getgid(), "size": 1}]
    return config
