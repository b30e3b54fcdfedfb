"""How a payload ends: the exceptions that unwind a run loop when the process is over."""

from __future__ import annotations

import os

TYPE_CHECKING = False  # no typing import at run time: km start-up is timed
if TYPE_CHECKING:
    from collections.abc import Callable

    from kontain.monitor.process import Outcome


class ExitProcess(Exception):
    """exit_group(status): the whole process ends with this status."""

    def __init__(self, status: int) -> None:
        super().__init__(status)
        self.status = status & 0xFF


class KillProcess(Exception):
    """The process dies from a signal (the default action of signal number signo)."""

    def __init__(self, signo: int, reason: str = "", internal: bool = False,
                 info: bytes | None = None) -> None:
        super().__init__(reason)
        self.signo = signo
        self.reason = reason
        #: True when km itself could not go on (a km bug or an unsupported host).
        self.internal = internal
        #: The siginfo of the signal that killed it, when one was delivered (a core's
        #: NT_SIGINFO says who sent it).
        self.info = info


class ThreadExit(Exception):
    """exit(2) from one thread: that thread ends, the process goes on if others remain."""

    def __init__(self, status: int) -> None:
        super().__init__(status)
        self.status = status & 0xFF


class ExecImage(Exception):
    """execve passed its point of no return: this thread's process runs a new image
    (kontain.monitor.exec); the thread's run loop unwinds to ThreadGroup.run, which
    replaces the image and goes on running the process in this host thread."""

    def __init__(self, request: object) -> None:
        super().__init__("exec")
        self.request = request


class RestartSyscall(Exception):
    """A handler waiting inside km gives way (the process is being paused): the system
    call is made again from the start when the thread goes on (-ERESTARTNOINTR)."""


class ThreadVanish(Exception):
    """Another thread of the process is exec'ing: this one ends at once, without the
    side effects of exit(2) (Linux's de_thread)."""


def die_by_signal(signo: int) -> None:
    """End km with the payload's fatal signal, so the parent sees the same status.

    Works from any thread: the default action is restored with libc (Python's
    signal.signal only works in the main thread) and the signal is sent to this thread.
    """
    import _signal  # (not `signal`: every module km needs was imported before the payload)
    import _thread
    import ctypes
    import resource
    try:
        # The core km would dump is km's, not the payload's: keep it off.
        resource.setrlimit(resource.RLIMIT_CORE, (0, resource.getrlimit(resource.RLIMIT_CORE)[1]))
    except (ValueError, OSError):
        pass
    ctypes.CDLL(None).signal(signo, ctypes.c_void_p(0))  # SIG_DFL
    _signal.pthread_sigmask(_signal.SIG_UNBLOCK, [signo])
    _signal.pthread_kill(_thread.get_ident(), signo)
    os._exit(128 + signo)


def end_monitor(outcome: Outcome, write: Callable[[str], object], name: str) -> None:
    """Leave km as the payload left: its exit status, or its fatal signal (an internal
    error said on km's diagnostics stream first, as `NAME: internal error: ...`)."""
    if outcome.internal:
        write(f"{name}: internal error: {outcome.reason}\n")
    if outcome.signal:
        die_by_signal(outcome.signal)
    os._exit(outcome.status)
