"""signalfd: signals read from a descriptor instead of delivered to a handler.

The payload's signals are km's to queue, so a guest signalfd is the read end of a host
pipe whose write end km keeps: a signal in a signalfd's mask is written there as a
struct signalfd_siginfo when it is generated, instead of being queued for delivery.
Reads, poll and epoll on it are then ordinary host pipe operations. (Linux leaves the
signal pending until it is read, so sigpending() would show it meanwhile; here it does
not.)
"""

from __future__ import annotations

import _thread
import os
import struct

from kontain.monitor import signals as sig

TYPE_CHECKING = False  # no typing import at run time: km start-up is timed
if TYPE_CHECKING:
    from kontain.monitor.process import Process

SIGNALFD_SIGINFO = struct.Struct("<IiiIIiIIIIiiQQQQ")
SIGNALFD_SIGINFO_SIZE = 128
_INFO_HEAD = struct.Struct("<iii4xiIQ")  # signo, errno, code, pid, uid, value (kill/rt)


def signalfd_record(signo: int, info: bytes) -> bytes:
    """struct signalfd_siginfo for a queued siginfo_t."""
    _signo, error, code, pid, uid, value = _INFO_HEAD.unpack_from(info)
    status = struct.unpack_from("<i", info, 24)[0] if signo == sig.SIGCHLD else 0
    timer_id, overrun = struct.unpack_from("<ii", info, 16) if code == sig.SI_TIMER else (0, 0)
    if code == sig.SI_TIMER:
        pid = uid = 0
        value = struct.unpack_from("<Q", info, 24)[0]
    return SIGNALFD_SIGINFO.pack(signo, error, code, pid & 0xFFFFFFFF, uid, 0,
                                 timer_id & 0xFFFFFFFF, 0, overrun & 0xFFFFFFFF, 0, status,
                                 value & 0x7FFFFFFF, value, 0, 0, 0
                                 ).ljust(SIGNALFD_SIGINFO_SIZE, b"\0")


class SignalFds:
    """The process's signalfds: guest read end -> (mask, km's write end)."""

    def __init__(self, proc: Process) -> None:
        self._proc = proc
        self._lock = _thread.allocate_lock()
        self._fds: dict[int, tuple[int, int]] = {}

    def create(self, mask: int, flags: int) -> int:
        read_end, write_end = os.pipe2(flags | os.O_CLOEXEC)
        os.set_blocking(write_end, False)
        os.set_inheritable(read_end, not flags & os.O_CLOEXEC)
        write_end = self._proc.fds.move_high(write_end)
        read_end = self._proc.fds.adopt(read_end)
        with self._lock:
            self._fds[read_end] = (mask, write_end)
        return read_end

    def update(self, fd: int, mask: int) -> bool:
        with self._lock:
            if fd not in self._fds:
                return False
            self._fds[fd] = (mask, self._fds[fd][1])
            return True

    def closed(self, fd: int) -> None:
        with self._lock:
            entry = self._fds.pop(fd, None)
        if entry is not None:
            os.close(entry[1])

    def capture(self, signo: int, info: bytes) -> bool:
        """Write the signal to a signalfd watching it; False if none does."""
        if not self._fds:
            return False
        with self._lock:
            targets = [w for mask, w in self._fds.values() if mask & sig.bit(signo)]
        for write_end in targets:
            try:
                os.write(write_end, signalfd_record(signo, info))
                return True
            except OSError:
                continue
        return False
