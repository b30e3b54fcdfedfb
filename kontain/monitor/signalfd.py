"""signalfd: signals read from a descriptor instead of delivered to a handler.

As on Linux, a signalfd does not take signals away from the process: a signal in its
mask is queued like any other (sigpending shows it, an unblocked one is delivered), and
a read dequeues the reading thread's signals, then the process's, in the order
delivery would take them (kontain.monitor.signals.PendingQueue.take).

What the host sees of a guest signalfd is the read end of a pipe, so that poll, select
and epoll on it, in this process or across exec, are the host's own. km keeps the pipe
*readable exactly while a signal in the mask is pending* (one byte in it or none):
`refresh` runs whenever what is pending changes, under the signal lock. km writes
through its own write end and empties the pipe through its own, non-blocking, open of
the read end (the guest's may be blocking). Reads and writes of the guest's number are
answered here (kontain.syscalls.io), never by the pipe.

A descriptor is known by its number, checked against the pipe's inode before use: a
number closed behind km's back (close_range, a dup2 over it) is forgotten rather than
misread. dup, dup2, dup3 and F_DUPFD name the same signalfd (`duplicated`). A forked
child gets pipes of its own (`after_fork`): its pending signals are not its parent's.

Linux: fs/signalfd.c.
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
    # ssi_int is the low 32 bits of sival (a signed int), ssi_ptr all 64.
    return SIGNALFD_SIGINFO.pack(signo, error, code, pid & 0xFFFFFFFF, uid, 0,
                                 timer_id & 0xFFFFFFFF, 0, overrun & 0xFFFFFFFF, 0, status,
                                 struct.unpack("<i", struct.pack("<I", value & 0xFFFFFFFF))[0],
                                 value, 0, 0, 0
                                 ).ljust(SIGNALFD_SIGINFO_SIZE, b"\0")


class SignalFile:
    """One signalfd (however many numbers name it): its mask and km's ends of its pipe."""

    __slots__ = ("mask", "inode", "write_end", "drain_end", "ready")

    def __init__(self, mask: int, inode: int, write_end: int, drain_end: int) -> None:
        self.mask = mask
        self.inode = inode
        self.write_end = write_end
        self.drain_end = drain_end
        self.ready = False

    def show(self, ready: bool) -> None:
        """Make the pipe readable, or not."""
        if ready == self.ready:
            return
        try:
            if ready:
                os.write(self.write_end, b"\1")
            else:
                while os.read(self.drain_end, 64):
                    pass
        except BlockingIOError:
            pass
        except OSError:
            return
        self.ready = ready

    def close(self) -> None:
        for fd in (self.write_end, self.drain_end):
            try:
                os.close(fd)
            except OSError:
                pass


class SignalFds:
    """The process's signalfds, by guest descriptor number."""

    def __init__(self, proc: Process) -> None:
        self._proc = proc
        self._lock = _thread.allocate_lock()
        #: Guest number -> its signalfd. Looked at on every read and write: keep it a
        #: plain dict (empty for nearly every payload).
        self.fds: dict[int, SignalFile] = {}

    # ---- descriptors ----------------------------------------------------------------

    def _pipe(self, nonblocking: bool, cloexec: bool) -> tuple[int, int, int, int]:
        """(guest read end, km's write end, km's drain end, inode) of a new pipe."""
        read_end, write_end = os.pipe2(os.O_CLOEXEC)
        try:
            os.set_blocking(write_end, False)
            # A second open file description of the read end, for km alone: O_NONBLOCK
            # belongs to a description, and the guest's is the guest's to set.
            drain_end = os.open(f"/proc/self/fd/{read_end}", os.O_RDONLY | os.O_NONBLOCK
                                | os.O_CLOEXEC)
        except OSError:
            os.close(read_end)
            os.close(write_end)
            raise
        fds = self._proc.fds
        write_end = fds.move_high(write_end)
        drain_end = fds.move_high(drain_end)
        os.set_blocking(read_end, not nonblocking)
        os.set_inheritable(read_end, not cloexec)
        return read_end, write_end, drain_end, os.fstat(read_end).st_ino

    def create(self, mask: int, flags: int) -> int:
        read_end, write_end, drain_end, inode = self._pipe(
            bool(flags & os.O_NONBLOCK), bool(flags & os.O_CLOEXEC))
        file = SignalFile(mask, inode, write_end, drain_end)
        try:
            read_end = self._proc.fds.adopt(read_end)
        except OSError:
            file.close()
            raise
        with self._lock:
            self._forget(read_end)
            self.fds[read_end] = file
        self.refresh()
        return read_end

    def lookup(self, fd: int) -> SignalFile | None:
        """The signalfd this guest number names, if it does (still)."""
        file = self.fds.get(fd)
        if file is None:
            return None
        try:
            same = os.fstat(fd).st_ino == file.inode
        except OSError:
            same = False
        if not same:
            self.closed(fd)
            return None
        return file

    def update(self, fd: int, mask: int) -> bool:
        file = self.lookup(fd)
        if file is None:
            return False
        file.mask = mask
        self.refresh()
        return True

    def duplicated(self, old: int, new: int) -> None:
        """Guest number `new` now names what `old` does (dup, dup2, dup3, F_DUPFD)."""
        if not self.fds:
            return
        with self._lock:
            self._forget(new)
            file = self.fds.get(old)
            if file is not None:
                self.fds[new] = file

    def closed(self, fd: int) -> None:
        if fd not in self.fds:
            return
        with self._lock:
            self._forget(fd)

    def _forget(self, fd: int) -> None:
        """Drop a number (the lock held); km's ends go with the last number of a file."""
        file = self.fds.pop(fd, None)
        if file is not None and file not in self.fds.values():
            file.close()

    def after_fork(self) -> None:
        """In a forked child: new pipes in place of the parent's, for the same numbers,
        with the same flags (nothing is pending in a new process)."""
        if not self.fds:
            return
        renewed: dict[int, SignalFile] = {}
        fresh: dict[int, tuple[SignalFile, int]] = {}  # by the parent's file
        for fd, old in list(self.fds.items()):
            try:
                cloexec = not os.get_inheritable(fd)
                if id(old) not in fresh:
                    read_end, write_end, drain_end, inode = self._pipe(
                        not os.get_blocking(fd), cloexec)
                    fresh[id(old)] = SignalFile(old.mask, inode, write_end, drain_end), read_end
                file, read_end = fresh[id(old)]
                os.dup2(read_end, fd, inheritable=not cloexec)
                renewed[fd] = file
            except OSError:
                continue
        for old in set(self.fds.values()):
            old.close()
        for _file, read_end in fresh.values():
            os.close(read_end)
        self.fds = renewed

    # ---- readiness ------------------------------------------------------------------

    def refresh(self) -> None:
        """Make each signalfd readable exactly while a signal in its mask is pending
        (call with the signal lock held, or where nothing else changes what is pending).
        A thread's own signals count for every reader: the host pipe cannot tell who
        polls it (Linux looks at the polling thread's)."""
        if not self.fds:
            return
        proc = self._proc
        pending = proc.signals.shared.bits
        for thread in proc.group.all():
            pending |= thread.pending.bits
        for file in set(self.fds.values()):
            file.show(bool(pending & file.mask))


def read_records(proc: Process, file: SignalFile, thread_pending: sig.PendingQueue,
                 count: int) -> list[bytes]:
    """Dequeue up to `count` signals in the file's mask (the thread's own first, then the
    process's) as signalfd_siginfo records; with the signal lock held."""
    records = []
    state = proc.signals
    while len(records) < count:
        taken = thread_pending.take(file.mask) or state.shared.take(file.mask)
        if taken is None:
            break
        records.append(signalfd_record(*taken))
    if records:
        proc.signalfds.refresh()
    return records

