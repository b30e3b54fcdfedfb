"""km --stats-fd N: what happened, as JSON lines on descriptor N (for kontain.api).

Two lines at most. As soon as the payload is loaded, or has failed to be:

    {"started": true, "pid": 1234}
    {"error": "prog: command not found", "errno": 2, "status": 127}

(errno is what an execve of the payload would have failed with), and when the first
process of the payload ends, its summary:

    {"exit": {"status": 0, "signal": 0}, "wall_time": 0.05, "cpu_time": 0.04,
     "user_time": ..., "system_time": ..., "peak_rss": ..., "guest_memory": ...,
     "syscalls": {"write": 2, ...}, "hypercalls": 41, "denied": {"socket": 1},
     "denials": [{"call": "socket", "verdict": "EAFNOSUPPORT"}], "internal_errors": 0}

Times are seconds; cpu_time is km's own (all its threads: the guest's time in its VM and
km's work for it) plus its waited-for children's; peak_rss is km's peak resident memory
(the guest's memory it touched and km's own); guest_memory is the guest memory in use at
the end. hypercalls counts the system calls (each is one VM exit); vm_exits is every VM
exit of every vCPU of the process, as KVM counts them (its binary statistics, "exits"),
null where KVM has no statistics. The
descriptor is kept above the payload's range; processes the payload forks inherit it
but write nothing: the summary is the first process's.
"""

from __future__ import annotations

import os
import resource
import time

TYPE_CHECKING = False  # no typing import at run time: km start-up is timed
if TYPE_CHECKING:
    from kontain.monitor.enforce import Enforcement
    from kontain.monitor.fdspace import FdSpace
    from kontain.monitor.launch import LaunchError
    from kontain.monitor.process import Outcome, Process


class StatsReport:
    def __init__(self, fd: int) -> None:
        os.fstat(fd)  # (EBADF now, as a usage error, not at the end)
        self.fd = fd
        self.pid = os.getpid()
        self.started = time.monotonic()
        self.enforcement: Enforcement | None = None

    def adopt_fds(self, fds: FdSpace) -> None:
        self.fd = fds.move_high(self.fd)

    def _write(self, record: dict) -> None:
        data = (dumps(record) + "\n").encode()
        try:
            while data:
                data = data[os.write(self.fd, data):]
        except OSError:
            pass  # (nobody reads it any more: the payload's own outcome is unaffected)

    def launched(self, pid: int) -> None:
        self._write({"started": True, "pid": pid})

    def failed(self, error: LaunchError) -> None:
        self._write({"error": str(error), "errno": error.errno, "status": error.status})

    def finished(self, proc: Process, outcome: Outcome) -> None:
        if os.getpid() != self.pid:
            return  # a forked process of the payload: the summary is the first one's
        own = resource.getrusage(resource.RUSAGE_SELF)
        children = resource.getrusage(resource.RUSAGE_CHILDREN)
        user = own.ru_utime + children.ru_utime
        system = own.ru_stime + children.ru_stime
        syscalls = {name: count for name, (count, _ns) in proc.syscalls.stats.items()
                    if count}
        record = {
            "exit": {"status": outcome.status, "signal": outcome.signal},
            "wall_time": round(time.monotonic() - self.started, 6),
            "cpu_time": round(user + system, 6),
            "user_time": round(user, 6), "system_time": round(system, 6),
            "peak_rss": own.ru_maxrss * 1024,
            "guest_memory": proc.machine.phys.size - proc.machine.phys.free_bytes(),
            "syscalls": syscalls, "hypercalls": sum(syscalls.values()),
            "vm_exits": vm_exits(),
            "internal_errors": proc.syscalls.internal_errors,
            "denied": {}, "denials": [],
        }
        if self.enforcement is not None:
            record["denied"] = dict(self.enforcement.denials.counts)
            record["denials"] = list(self.enforcement.denials.log or [])
        self._write(record)


KVM_GET_STATS_FD = 0xAECE  # _IO(KVMIO, 0xce)
_STATS_HEADER = "<6I"  # flags, name_size, num_desc, id_offset, desc_offset, data_offset


def vm_exits() -> int | None:
    """Every VM exit of this km's vCPUs so far: KVM's "exits" statistic of each vCPU
    descriptor km holds (Documentation/virt/kvm/api.rst, KVM_GET_STATS_FD)."""
    import fcntl
    import struct
    total, found = 0, False
    try:
        names = os.listdir("/proc/self/fd")
    except OSError:
        return None
    for name in names:
        try:
            if not os.readlink(f"/proc/self/fd/{name}").startswith("anon_inode:kvm-vcpu"):
                continue
            stats = fcntl.ioctl(int(name), KVM_GET_STATS_FD, 0)
        except OSError:
            continue
        try:
            header = os.pread(stats, 24, 0)
            _flags, name_size, count, _id, desc_offset, data_offset = struct.unpack(
                _STATS_HEADER, header)
            size = 16 + name_size
            descriptors = os.pread(stats, size * count, desc_offset)
            for i in range(count):
                at = i * size
                offset = struct.unpack_from("<I", descriptors, at + 8)[0]
                label = descriptors[at + 16:at + size].split(b"\0", 1)[0]
                if label == b"exits":
                    total += struct.unpack("<Q", os.pread(stats, 8, data_offset + offset))[0]
                    found = True
                    break
        except (OSError, struct.error):
            pass
        finally:
            os.close(stats)
    return total if found else None


def dumps(value: object) -> str:
    """JSON for the summary's few types (no json import: km start-up is timed)."""
    if isinstance(value, dict):
        return "{" + ",".join(f"{dumps(str(k))}:{dumps(v)}" for k, v in value.items()) + "}"
    if isinstance(value, (list, tuple)):
        return "[" + ",".join(dumps(v) for v in value) + "]"
    if value is True or value is False:
        return "true" if value else "false"
    if value is None:
        return "null"
    if isinstance(value, (int, float)):
        return repr(value)
    text = str(value)
    out = []
    for ch in text:
        code = ord(ch)
        if ch in "\\\"":
            out.append("\\" + ch)
        elif code < 0x20 or 0xD800 <= code < 0xE000:
            out.append(f"\\u{code:04x}")
        else:
            out.append(ch)
    return '"' + "".join(out) + '"'
