"""Every system call km serves, by name: the handler families gathered for the monitor.

Each family module (fs, io, mm, ...) exports HANDLERS, a map from syscall name to
handler; kontain.monitor.dispatch builds each process's table from them.
"""

from __future__ import annotations

from kontain.syscalls import (
    aio,
    fs,
    identity,
    io,
    lifecycle,
    misc,
    mm,
    net,
    pidfd,
    poll,
    signal,
    thread,
)
from kontain.syscalls import time as time_

TYPE_CHECKING = False  # no typing import at run time: km start-up is timed
if TYPE_CHECKING:
    from collections.abc import Callable


def all_handlers() -> dict[str, Callable[..., int]]:
    handlers: dict[str, Callable[..., int]] = {}
    for family in (fs, identity, io, lifecycle, misc, mm, net, poll, signal, thread, time_,
                   aio, pidfd):
        handlers.update(family.HANDLERS)
    return handlers
