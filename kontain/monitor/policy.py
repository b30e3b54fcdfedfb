"""kontain.Policy (re-exported by kontain.policy): what a payload may do, beyond running
in its own VM.

A Policy is an immutable value. Every field defaults to None ("not set": the VM alone
decides), so that policies compose with `|`: `a | b` takes each field b sets, else a's;
fields holding collections are merged instead (paths and names: union; `mounts` and
`deny`: b's entries win per key). `Policy.strict()` and `Policy.default()` are presets.

The same fields, by the same names, make a TOML file for `km --policy FILE`
(`Policy.from_toml`; `extends = "strict"` starts from a preset). km enforces what it
carries out (kontain.monitor.enforce maps each field onto the monitor); the Python API
(kontain.api) adds `wall_time` and `max_output`, which concern the caller's side.
"""

from __future__ import annotations

import dataclasses
import errno as _errno
import math
from collections.abc import Iterable, Mapping
from typing import Any, Literal

NETWORKS = ("none", "loopback", "host")
#: What Policy.strict() hides: the host's secrets, when the payload's root is the host's.
SECRETS = ("/etc/shadow", "/etc/gshadow", "/etc/shadow-", "/etc/gshadow-", "/etc/sudoers",
           "/etc/ssh", "/root", "/home", "/run", "/var/log", "/var/spool", "/var/mail")
_UNITS = {"k": 1 << 10, "m": 1 << 20, "g": 1 << 30, "t": 1 << 40}


def parse_size(value: int | str | None) -> int | None:
    """Bytes, from an int or a string such as "256M", "1G", "512k", "4096"."""
    if value is None or isinstance(value, int) and not isinstance(value, bool):
        if value is not None and value < 0:
            raise ValueError(f"size must not be negative: {value}")
        return value
    if not isinstance(value, str):
        raise TypeError(f"a size is an int or a string like '256M', not {value!r}")
    text = value.strip().lower().removesuffix("b").removesuffix("i")
    scale = 1
    if text and text[-1] in _UNITS:
        scale, text = _UNITS[text[-1]], text[:-1]
    try:
        number = float(text)
    except ValueError:
        raise ValueError(f"bad size {value!r}") from None
    if number < 0 or math.isnan(number) or math.isinf(number):
        raise ValueError(f"bad size {value!r}")
    return int(number * scale)


def _paths(value: bool | str | Iterable[str] | None, name: str) -> tuple[str, ...] | None:
    if value is None:
        return None
    if isinstance(value, str):
        value = (value,)
    paths = tuple(dict.fromkeys(str(p) for p in value))
    for path in paths:
        if not path.startswith("/"):
            raise ValueError(f"{name}: {path!r} is not an absolute path")
    return paths


def _errno_value(value: int | str, call: str) -> int | str:
    """A deny verdict: an errno (number or name, e.g. "EPERM") or "kill"."""
    if isinstance(value, str):
        if value.lower() == "kill":
            return "kill"
        number = getattr(_errno, value.upper(), None)
        if not isinstance(number, int):
            raise ValueError(f"deny[{call!r}]: {value!r} is neither an errno name nor 'kill'")
        return number
    if isinstance(value, bool) or not isinstance(value, int) or not 0 <= value < 4096:
        raise ValueError(f"deny[{call!r}]: {value!r} is not an errno (0-4095) or 'kill'")
    return value


@dataclasses.dataclass(frozen=True)
class Policy:
    """What the payload may do (None: not restricted by this policy). Sizes take ints
    (bytes) or strings ("256M"); times are seconds."""

    # ---- files --------------------------------------------------------------------
    #: A host directory that becomes the payload's / (paths cannot leave it).
    root: str | None = None
    #: True: the whole root is read-only (EROFS); paths: only those are.
    read_only: bool | tuple[str, ...] | None = None
    #: Paths left writable inside a read-only root.
    writable: tuple[str, ...] | None = None
    #: Paths the payload cannot read: a directory appears empty, a file empty, both
    #: read-only.
    hidden: tuple[str, ...] | None = None
    #: Bind mounts: guest path -> (host path, "ro" | "rw"); the guest path must exist.
    mounts: Mapping[str, tuple[str, str]] | None = None
    #: Paths that get a private, empty, writable tmpfs (Policy.strict(): /tmp).
    tmpfs: tuple[str, ...] | None = None
    #: Size of each such tmpfs (writes past it fail with ENOSPC).
    tmpfs_size: int | str | None = None
    # ---- network --------------------------------------------------------------------
    #: "none": only AF_UNIX sockets; "loopback": IPv4/IPv6 to loopback addresses only;
    #: "host": the host's network.
    network: Literal["none", "loopback", "host"] | None = None
    #: Addresses "HOST:PORT" (PORT may be "*") connect/sendto may reach besides what
    #: `network` allows ("host" with a list: only those, and loopback).
    allow_connect: tuple[str, ...] | None = None
    # ---- processes ----------------------------------------------------------------
    #: Processes alive at once in the payload's tree (fork fails with EAGAIN past it).
    max_processes: int | None = None
    #: Threads of one process (clone fails with EAGAIN past it).
    max_threads: int | None = None
    #: True: any program in the root; False: no execve at all; paths: only those.
    allow_exec: bool | tuple[str, ...] | None = None
    # ---- resources ----------------------------------------------------------------
    #: Guest memory (at least 64M): allocations past it fail with ENOMEM.
    memory: int | str | None = None
    #: CPU seconds (RLIMIT_CPU): SIGXCPU at the limit, SIGKILL a second later.
    cpu_time: float | None = None
    #: Seconds from the start: then the payload and all its processes are killed.
    wall_time: float | None = None
    #: RLIMIT_NOFILE: open past it fails with EMFILE.
    max_open_files: int | None = None
    #: RLIMIT_FSIZE: a write past it fails with EFBIG (and SIGXFSZ).
    max_file_size: int | str | None = None
    #: Bytes of stdout + stderr the API collects; past it the payload is killed.
    max_output: int | str | None = None
    # ---- system calls -------------------------------------------------------------
    #: Only these calls are allowed (others fail with EPERM), as an OCI seccomp
    #: profile whose default action is SCMP_ACT_ERRNO.
    allow: frozenset[str] | None = None
    #: These calls are denied: name -> errno (number or "EPERM") or "kill".
    deny: Mapping[str, int | str] | None = None
    #: Record every denied call in the stats (name, verdict).
    deny_log: bool | None = None

    def __post_init__(self) -> None:
        put = object.__setattr__
        if self.root is not None:
            put(self, "root", str(self.root))
        if self.read_only is not None and not isinstance(self.read_only, bool):
            put(self, "read_only", _paths(self.read_only, "read_only"))
        for name in ("writable", "hidden", "tmpfs"):
            put(self, name, _paths(getattr(self, name), name))
        if self.mounts is not None:
            mounts = {}
            for target, source in dict(self.mounts).items():
                if isinstance(source, str):
                    source = (source, "rw")
                host, mode = source
                if mode not in ("ro", "rw") or not str(target).startswith("/"):
                    raise ValueError(f"mounts[{target!r}]: want (host path, 'ro' or 'rw')")
                mounts[str(target)] = (str(host), mode)
            put(self, "mounts", mounts)
        if self.network is not None and self.network not in NETWORKS:
            raise ValueError(f"network must be one of {NETWORKS}, not {self.network!r}")
        if self.allow_connect is not None:
            entries = (self.allow_connect,) if isinstance(self.allow_connect, str) \
                else self.allow_connect
            for entry in entries:
                host, _, port = str(entry).rpartition(":")
                if not host or not (port == "*" or port.isdigit()):
                    raise ValueError(f"allow_connect: {entry!r} is not HOST:PORT")
            put(self, "allow_connect", tuple(dict.fromkeys(str(e) for e in entries)))
        if self.allow_exec is not None and not isinstance(self.allow_exec, bool):
            put(self, "allow_exec", _paths(self.allow_exec, "allow_exec"))
        for name in ("memory", "max_file_size", "max_output", "tmpfs_size"):
            put(self, name, parse_size(getattr(self, name)))
        if self.memory is not None and self.memory < (64 << 20):
            raise ValueError("memory must be at least 64M")
        for name in ("max_processes", "max_threads", "max_open_files"):
            value = getattr(self, name)
            if value is not None and (isinstance(value, bool) or not isinstance(value, int)
                                      or value < 1):
                raise ValueError(f"{name} must be a positive int, not {value!r}")
        for name in ("cpu_time", "wall_time"):
            value = getattr(self, name)
            if value is not None:
                if isinstance(value, bool) or not isinstance(value, (int, float)) \
                        or not value > 0 or math.isinf(value):
                    raise ValueError(f"{name} must be a positive number of seconds")
                put(self, name, float(value))
        if self.allow is not None:
            put(self, "allow", frozenset(str(n) for n in self.allow))
        if self.deny is not None:
            put(self, "deny", {str(k): _errno_value(v, str(k)) for k, v in
                               dict(self.deny).items()})
        from kontain.linux.numbers import NUMBERS
        for name in set(self.allow or ()) | set(self.deny or ()):
            if name not in NUMBERS:
                raise ValueError(f"unknown system call {name!r}")

    # ---- composition -----------------------------------------------------------------

    def __or__(self, other: Policy) -> Policy:
        """Right side wins per field it sets; paths and names are merged (union), and
        `mounts` and `deny` merged per key (right side's entry wins). read_only and
        allow_exec merge when both sides give paths; a bool on either side is taken
        as a scalar (right side wins)."""
        if not isinstance(other, Policy):
            return NotImplemented
        merged: dict[str, Any] = {}
        for field in dataclasses.fields(self):
            left, right = getattr(self, field.name), getattr(other, field.name)
            if right is None:
                merged[field.name] = left
            elif left is None:
                merged[field.name] = right
            elif isinstance(left, tuple) and isinstance(right, tuple):
                merged[field.name] = tuple(dict.fromkeys(left + right))
            elif isinstance(left, frozenset):
                merged[field.name] = left | right
            elif isinstance(left, dict):
                merged[field.name] = {**left, **right}
            else:
                merged[field.name] = right
        return Policy(**merged)

    # ---- presets ---------------------------------------------------------------------

    @classmethod
    def strict(cls) -> Policy:
        """For code nobody checked: no network, a read-only root with a private
        writable /tmp (64 MiB), the host's secrets hidden, no execve, 256 MiB of
        memory, 10 s of CPU and of wall time, 16 processes, 64 threads, 256 open files,
        files up to 64 MiB, 1 MiB of output, denials logged."""
        return cls(network="none", read_only=True, tmpfs=("/tmp",), tmpfs_size="64M",
                   hidden=SECRETS, allow_exec=False, memory="256M", cpu_time=10.0,
                   wall_time=10.0, max_processes=16, max_threads=64, max_open_files=256,
                   max_file_size="64M", max_output="1M", deny_log=True)

    @classmethod
    def default(cls) -> Policy:
        """The VM alone: what `km PAYLOAD` gives (the payload's own VM, km's walls,
        the host's files and network as the calling user has them)."""
        return cls()

    # ---- files -------------------------------------------------------------------------

    def is_empty(self) -> bool:
        return all(getattr(self, f.name) is None for f in dataclasses.fields(self))

    def km_fields(self) -> dict[str, Any]:
        """The fields km enforces (all but wall_time and max_output), as TOML-able
        values."""
        out: dict[str, Any] = {}
        for field in dataclasses.fields(self):
            value = getattr(self, field.name)
            if value is None or field.name in ("wall_time", "max_output"):
                continue
            if isinstance(value, frozenset):
                value = sorted(value)
            elif isinstance(value, tuple):
                value = list(value)
            elif field.name == "mounts":
                value = {k: list(v) for k, v in value.items()}
            out[field.name] = value
        return out

    def to_toml(self, km_only: bool = False) -> str:
        """This policy as a TOML file `Policy.from_toml` (and km --policy) reads."""
        fields = self.km_fields() if km_only else {
            **self.km_fields(), **{n: getattr(self, n) for n in ("wall_time", "max_output")
                                   if getattr(self, n) is not None}}
        lines, tables = [], []
        for name, value in fields.items():
            if isinstance(value, dict):
                tables.append(f"\n[{name}]")
                tables += [f"{_toml(k)} = {_toml(v)}" for k, v in value.items()]
            else:
                lines.append(f"{name} = {_toml(value)}")
        return "\n".join(lines + tables) + "\n"

    @classmethod
    def from_toml(cls, text: str) -> Policy:
        """A policy from TOML text: the fields by name, `[mounts]` and `[deny]` as
        tables; `extends = "strict"` (or "default") starts from that preset."""
        import tomllib
        data = tomllib.loads(text)
        base = cls()
        preset = data.pop("extends", None)
        if preset is not None:
            if preset not in ("strict", "default"):
                raise ValueError(f"extends: unknown preset {preset!r}")
            base = getattr(cls, preset)()
        known = {f.name for f in dataclasses.fields(cls)}
        unknown = set(data) - known
        if unknown:
            raise ValueError(f"unknown policy field(s): {', '.join(sorted(unknown))}")
        if "mounts" in data:
            data["mounts"] = {k: tuple(v) if isinstance(v, list) else v
                              for k, v in data["mounts"].items()}
        return base | cls(**data)

    @classmethod
    def load(cls, path: str) -> Policy:
        with open(path, encoding="utf-8") as f:
            return cls.from_toml(f.read())


def _toml(value: Any) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, (int, float)):
        return repr(value)
    if isinstance(value, str):
        import json
        return json.dumps(value)  # (JSON's string escapes are TOML's basic-string ones)
    if isinstance(value, (list, tuple)):
        return "[" + ", ".join(_toml(v) for v in value) + "]"
    raise TypeError(f"cannot write {value!r} as TOML")
