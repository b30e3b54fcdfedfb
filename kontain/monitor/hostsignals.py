"""Signals sent to km itself, forwarded to the payload.

Every catchable signal is blocked in all of km's threads and read from a signalfd by
one small thread, which posts it to the guest as a process-directed signal (or, for a
timer created with SIGEV_THREAD_ID, to the thread the payload named). Keeping them
blocked elsewhere means no vCPU thread is ever interrupted by a signal meant for the
guest: only the KICK signal km sends on purpose interrupts KVM_RUN.

A signal is taken from the signalfd and posted under one lock, so a vCPU thread can
drain() the signalfd itself: a system call that makes or meets a host signal for the
payload (kill of its own process group, its timers, a change of disposition or mask)
posts what is pending on km before it returns, where Linux would deliver it, instead of
leaving it to the forwarding thread's timing. (A timer expiry the payload disarms in
the same breath must still reach the handler it had, not the SIG_DFL it sets next.)

SIGPIPE stays ignored: km handles EPIPE itself (Process.broken_pipe).
"""

from __future__ import annotations

import _signal as signal  # not `signal`: it imports enum, and km start-up is timed
import _thread
import ctypes
import os
import struct

from kontain.linux import hostcall as host
from kontain.linux.numbers import NUMBERS as NR
from kontain.monitor import signals as sig
from kontain.monitor.thread import KICK_SIGNAL

TYPE_CHECKING = False  # no typing import at run time: km start-up is timed
if TYPE_CHECKING:
    from kontain.monitor.process import Process

#: struct signalfd_siginfo (the first fields; 128 bytes in all).
SIGNALFD_SIGINFO = struct.Struct("<IiiIIiIIIIiiQQQQ")
SIGNALFD_SIGINFO_SIZE = 128
SFD_CLOEXEC, SFD_NONBLOCK = 0o2000000, 0o4000
POLLIN, POLLNVAL = 0x1, 0x20
EINTR = 4
#: Every signal but the uncatchable ones, SIGPIPE, km's own KICK, and 32 and 33, which
#: glibc keeps unblocked in every thread it starts (SIGCANCEL, SIGSETXID): km cannot
#: receive those on its signalfd, so a guest timer asking for them gets TIMER_PROXY.
FORWARDED = [s for s in range(1, 65)
             if s not in (sig.SIGKILL, sig.SIGSTOP, sig.SIGPIPE, 32, 33, KICK_SIGNAL)]
TIMER_PROXY = KICK_SIGNAL - 1


def _noop(signum: int, frame: object) -> None:
    """The KICK signal only has to interrupt a system call; nothing to do here."""


class HostSignals:
    """Forwarding of host signals to the guest (start() once, from the main thread)."""

    def __init__(self, proc: Process) -> None:
        self._proc = proc
        self._fd = -1
        #: Held from reading a signal off the signalfd until it is posted.
        self._lock = _thread.allocate_lock()
        #: struct pollfd for the forwarding thread: fd, events, revents.
        self._pollfd = (ctypes.c_int32 * 2)()

    def start(self) -> None:
        signal.signal(KICK_SIGNAL, _noop)
        # No SA_RESTART: a kick must make a blocking host call (read, futex...) return
        # EINTR, so that km can deliver the guest's signal and decide on the restart.
        signal.siginterrupt(KICK_SIGNAL, True)
        mask = sum(1 << (s - 1) for s in FORWARDED)
        mask_buffer = ctypes.c_uint64(mask)
        host.syscall(NR["rt_sigprocmask"], 0, ctypes.addressof(mask_buffer), 0, 8)  # BLOCK
        signal.pthread_sigmask(signal.SIG_UNBLOCK, [KICK_SIGNAL])  # blocked across an exec
        fd = host.syscall(NR["signalfd4"], -1, ctypes.addressof(mask_buffer), 8,
                          SFD_CLOEXEC | SFD_NONBLOCK)
        if fd < 0:
            raise OSError(-fd, "signalfd4")
        self._fd = self._proc.fds.move_high(fd)
        self._pollfd[0], self._pollfd[1] = self._fd, POLLIN
        _thread.start_new_thread(self._forward, ())

    def drain(self) -> None:
        """Post to the payload every host signal pending on km now."""
        if self._fd >= 0:
            with self._lock:
                self._read_and_post()

    def disposition_changed(self, signo: int) -> None:
        """Mirror what the host must know of a guest disposition: an ignored SIGCHLD (or
        SA_NOCLDWAIT) makes the kernel reap children itself, so wait() sees none."""
        if signo != sig.SIGCHLD:
            return
        action = self._proc.signals.action(signo)
        flags = sig.SA_NOCLDWAIT if action.flags & sig.SA_NOCLDWAIT else 0
        handler = sig.SIG_IGN if action.handler == sig.SIG_IGN else sig.SIG_DFL
        kernel_action = (ctypes.c_uint64 * 4)(handler, flags, 0, 0)
        host.syscall(NR["rt_sigaction"], sig.SIGCHLD, ctypes.addressof(kernel_action), 0, 8)

    def close(self) -> None:
        """Drop the signalfd (a forked child starts its own forwarding)."""
        if self._fd >= 0:
            os.close(self._fd)
            self._fd = -1

    def _forward(self) -> None:
        pollfd = ctypes.addressof(self._pollfd)
        while True:
            ready = host.syscall(NR["poll"], pollfd, 1, -1)
            if ready < 0 and ready != -EINTR or self._pollfd[1] >> 16 & POLLNVAL:
                return  # closed
            try:
                with self._lock:
                    if not self._read_and_post():
                        return
            except Exception as e:  # noqa: BLE001 - a km bug must not end the forwarding
                self._proc.internal_error("signal forwarding", e)
                if self._proc.options.strict:
                    # --strict (the test suite): a km bug ends the process, as in a
                    # handler; there is no guest thread here to unwind, so at once.
                    os._exit(128 + sig.SIGABRT)

    def _read_and_post(self) -> bool:
        """Post what the signalfd holds (the lock held); False once it is closed."""
        while True:
            try:
                data = os.read(self._fd, SIGNALFD_SIGINFO_SIZE * 16)
            except (BlockingIOError, InterruptedError):
                return True
            except OSError:
                return False
            for offset in range(0, len(data), SIGNALFD_SIGINFO_SIZE):
                self._post(SIGNALFD_SIGINFO.unpack_from(data, offset))

    def _post(self, fields: tuple) -> None:
        (signo, _errno, code, pid, uid, _fd, timer_id, _band, overrun, _trapno, status,
         _int, value, _utime, _stime, _addr) = fields
        proc = self._proc
        target = None
        if code == sig.SI_TIMER:
            signo = proc.timer_signals.get(timer_id, signo)
            info = sig.siginfo(signo, code, timer=(timer_id, overrun), value=value)
            target = proc.timer_threads.get(timer_id)
        elif signo == sig.SIGCHLD:
            info = sig.siginfo(signo, code, pid=pid, uid=uid, status=status)
        else:
            info = sig.siginfo(signo, code, pid=pid, uid=uid, value=value)
        proc.trace.log("signal", f"host signal {signo} (code {code}) forwarded")
        proc.post_signal(signo, info, target)
