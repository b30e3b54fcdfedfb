"""Signal dispositions of a process (delivery comes with threads and signals, issue 3)."""

from __future__ import annotations

import struct

NSIG = 64
SIG_DFL, SIG_IGN = 0, 1
SIGKILL, SIGSTOP, SIGPIPE = 9, 19, 13
#: struct kernel_sigaction for x86-64: handler, flags, restorer, mask (8-byte sigset).
KERNEL_SIGACTION = struct.Struct("<QQQQ")


class Disposition:
    """One signal's action (struct sigaction)."""

    __slots__ = ("handler", "flags", "restorer", "mask")

    def __init__(self, handler: int = SIG_DFL, flags: int = 0, restorer: int = 0,
                 mask: int = 0) -> None:
        self.handler, self.flags, self.restorer, self.mask = handler, flags, restorer, mask

    def pack(self) -> bytes:
        return KERNEL_SIGACTION.pack(self.handler, self.flags, self.restorer, self.mask)


class SignalState:
    """The process-wide part of signal state: one disposition per signal."""

    def __init__(self) -> None:
        self.actions = [Disposition() for _ in range(NSIG + 1)]

    def action(self, signo: int) -> Disposition:
        return self.actions[signo]

    def ignored(self, signo: int) -> bool:
        return self.actions[signo].handler == SIG_IGN
