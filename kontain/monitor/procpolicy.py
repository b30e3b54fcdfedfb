"""km --policy's max_processes and max_threads: fork and clone past them fail with EAGAIN,
as Linux fails them at RLIMIT_NPROC.

Threads are counted per process, at clone: a clone(CLONE_THREAD) of a process that has
max_threads threads fails. (clone3 reads its flags from guest memory: a process at its
thread limit gets EAGAIN from any clone3, which also counts as RLIMIT_NPROC does, threads
and processes alike.)

Processes are counted over the payload's whole tree, which is one km process per guest
process: a pipe holds a token per process that may still be made. A fork takes one
(none left: EAGAIN) and the child keeps it; a process gives its token back when it ends
(exit, a fatal signal km delivers). A km killed from outside by SIGKILL cannot give its
token back: the tree then has one process less to make, never more.
"""

from __future__ import annotations

import errno
import os

TYPE_CHECKING = False  # no typing import at run time: km start-up is timed
if TYPE_CHECKING:
    from collections.abc import Callable

    from kontain.monitor.enforce import Denials
    from kontain.monitor.fdspace import FdSpace
    from kontain.monitor.thread import GuestThread

CLONE_THREAD = 0x10000
TOKEN = b"p"


class Limits:
    def __init__(self, max_processes: int | None, max_threads: int | None,
                 denials: Denials) -> None:
        self.max_processes, self.max_threads = max_processes, max_threads
        self.denials = denials
        self._read = self._write = -1
        if max_processes is not None:
            self._read, self._write = os.pipe2(os.O_NONBLOCK | os.O_CLOEXEC)
            os.write(self._write, TOKEN * (max_processes - 1))  # the first holds one

    def adopt_fds(self, fds: FdSpace) -> None:
        """The token pipe leaves the payload's descriptor range."""
        if self._read >= 0:
            self._read, self._write = fds.move_high(self._read), fds.move_high(self._write)

    def acquire(self) -> None:
        """Before a fork: take a token, or fail the fork with EAGAIN."""
        if self._read < 0:
            return
        try:
            if os.read(self._read, 1):
                return
        except BlockingIOError:
            pass
        self.denials.record("fork", "EAGAIN")
        raise OSError(errno.EAGAIN, "max_processes reached")

    def release(self) -> None:
        """A process ends (or its fork failed): its token goes back."""
        if self._write >= 0:
            try:
                os.write(self._write, TOKEN)
            except OSError:
                pass

    def wrap(self, handlers: dict[str, Callable[..., int]]) -> dict[str, Callable[..., int]]:
        """clone and clone3 with the thread limit in front (forks: kontain.monitor.fork)."""
        if self.max_threads is None:
            return handlers
        out = dict(handlers)
        limit, denials = self.max_threads, self.denials

        def full(t: GuestThread, name: str) -> None:
            if len(t.proc.group.threads) >= limit:
                denials.record(name, "EAGAIN")
                raise OSError(errno.EAGAIN, "max_threads reached")

        clone, clone3 = out.get("clone"), out.get("clone3")
        if clone is not None:
            def checked_clone(t: GuestThread, flags: int, *rest: int) -> int:
                if flags & CLONE_THREAD:
                    full(t, "clone")
                return clone(t, flags, *rest)
            out["clone"] = checked_clone
        if clone3 is not None:
            def checked_clone3(t: GuestThread, *args: int) -> int:
                full(t, "clone3")
                return clone3(t, *args)
            out["clone3"] = checked_clone3
        return out
