"""System call dispatch: handlers by number, with -S statistics and -V tracing layered on.

The handlers come from the floor above (kontain.syscalls.registry gathers the families:
fs, io, mm, ...): the monitor never imports them, it is given them.

The handler contract. A handler reads like the man page: it takes the thread and the
six argument registers and returns the call's result, an int >= 0. It reports an error
in one way only: it raises OSError with the errno (SyscallError, from
kontain.linux.hostcall, which host.call raises for the host's errors; GuestFault for a
bad guest pointer is one with EFAULT; the kernel's restart codes, ERESTART*, are errnos
like the others). A handler that sets the whole user context itself (rt_sigreturn)
returns CONTEXT_SET. The control flow that ends a thread, a process or an image
(kontain.monitor.exits) is not an error and passes through. Numbers without a handler
are ENOSYS, traced once under -V.
"""
from __future__ import annotations

import errno
import struct
import time

from kontain.linux.hostcall import SyscallError
from kontain.linux.numbers import NAMES, NUMBERS
from kontain.monitor.exits import ExitProcess, KillProcess, ThreadExit
from kontain.monitor.signals import SIGINFO_SIZE

SIGSYS = 31
#: km's snapshot hypercall (kontain.monitor.snapshot.HYPERCALL): a number Linux never uses.
KM_SNAPSHOT = 0x4B4D0001
#: siginfo_t of a seccomp SIGSYS: signo, errno, code, then _sigsys (call_addr, syscall,
#: arch).
SIGSYS_INFO = struct.Struct("<iii4xQiI")

TYPE_CHECKING = False  # no typing import at run time: km start-up is timed
if TYPE_CHECKING:
    from kontain.monitor.process import Process
    from kontain.monitor.syscall_filter import SeccompPolicy
    from kontain.monitor.thread import GuestThread

Handler = "Callable[..., int]"


class _ContextSet:
    """What a handler returns when it has set the whole user context (rt_sigreturn)."""

    def __repr__(self) -> str:
        return "CONTEXT_SET"


CONTEXT_SET = _ContextSet()
TABLE_SIZE = 512


class SyscallTable:
    """The per-process dispatch table and its counters."""

    def __init__(self, proc: Process, handlers: dict[str, Handler]) -> None:
        self._proc = proc
        self._trace = proc.trace
        self._unknown_seen: set[int] = set()
        self.stats: dict[str, list[int]] = {}
        #: System calls that failed with EIO because of a km bug (shown by -S).
        self.internal_errors = 0
        table: list[Handler | None] = [None] * TABLE_SIZE
        for name, handler in handlers.items():
            number = NUMBERS[name]
            if proc.options.stats:
                handler = self._counted(name, handler)
            if self._trace.enabled("syscall"):
                handler = self._traced(name, handler)
            table[number] = handler
        policy = proc.options.syscall_filter
        if policy is not None:
            for number in range(TABLE_SIZE):
                if number not in policy.always_allowed:
                    table[number] = self._filtered(number, table[number], policy)
        self.table = table

    def unknown(self, thread: GuestThread, nr: int) -> int:
        if nr == KM_SNAPSHOT:  # km's own hypercall (kontain.monitor.snapshot)
            return self._snapshot(thread)
        if self._proc.options.stats:
            self.stats.setdefault(NAMES.get(nr, f"#{nr}"), [0, 0])[0] += 1
        if nr not in self._unknown_seen:
            self._unknown_seen.add(nr)
            self._trace.log("syscall", f"unsupported syscall {NAMES.get(nr, nr)} ({nr}): ENOSYS")
        return -errno.ENOSYS  # (the dispatcher's own answer, as the run loop takes it)

    def _snapshot(self, thread: GuestThread) -> int:
        try:
            from kontain.monitor import snapshot  # (only when a payload asks for one)
        except ImportError:  # under --root, km's jail hides km's files: not preloaded
            self._proc.trace.write("km: snapshot: under --root, start km with --snapshot "
                                   "FILE (its snapshot code is loaded before its jail)\n")
            return -errno.EOPNOTSUPP
        regs = thread.regs
        try:
            return snapshot.hypercall(thread, regs.rdi, regs.rsi, regs.rdx)
        except OSError as e:
            return -(e.errno or errno.EIO)
        except (ExitProcess, KillProcess, ThreadExit):
            raise
        except Exception as e:  # a km bug: the payload's call fails, km lives on
            return thread._handler_failed(nr=KM_SNAPSHOT, error=e)

    def _filtered(self, nr: int, handler: Handler | None, policy: SeccompPolicy) -> Handler:
        """The call as the payload's seccomp profile lets it through (kontain.monitor.
        syscall_filter): calls it always allows are left unwrapped, at no cost."""
        from kontain.monitor import syscall_filter as sf  # (loaded: it made the policy)
        decide, log, unknown = policy.decide, self._trace.log, self.unknown
        name = NAMES.get(nr, f"#{nr}")

        def filtered(t: GuestThread, *args: int) -> int:
            verdict = decide(nr, args)
            kind = verdict.kind
            if kind == sf.ALLOW or kind == sf.LOG:
                if kind == sf.LOG or policy.log:
                    log("syscall", f"[{t.tid}] seccomp: {name} logged")
                return handler(t, *args) if handler is not None else unknown(t, nr)
            if policy.log:
                log("syscall", f"[{t.tid}] seccomp: {name} -> {verdict!r}")
            if policy.on_deny is not None:  # (km --policy: denials go to the stats)
                policy.on_deny(name, repr(verdict))
            if kind == sf.ERRNO or kind == sf.TRACE:
                if verdict.errno:
                    raise SyscallError(verdict.errno)
                return 0
            if kind == sf.TRAP:
                info = verdict.sigsys(nr, t.user_context()[0])
                t.force_signal(SIGSYS, SIGSYS_INFO.pack(
                    SIGSYS, info.errno, info.code, info.call_addr, info.syscall, info.arch
                    ).ljust(SIGINFO_SIZE, b"\0"), deliver=False)
                return nr  # (the call rolled back: rax as the payload loaded it)
            if kind == sf.KILL_THREAD and len(self._proc.group.threads) > 1:
                raise ThreadExit(0)  # (Linux ends the thread as if by SIGSYS)
            raise KillProcess(SIGSYS, f"seccomp: {name}")
        filtered.__name__ = f"seccomp_{name}"
        return filtered

    def _counted(self, name: str, handler: Handler) -> Handler:
        counter = self.stats.setdefault(name, [0, 0])
        clock = time.perf_counter_ns

        def counted(t: GuestThread, *args: int) -> int:
            start = clock()
            try:
                return handler(t, *args)
            finally:
                counter[0] += 1
                counter[1] += clock() - start
        return counted

    def _traced(self, name: str, handler: Handler) -> Handler:
        log = self._trace.log

        def traced(t: GuestThread, *args: int) -> int:
            shown = ", ".join(hex(a) for a in args)
            try:
                result = handler(t, *args)
            except OSError as e:
                code = errno.errorcode.get(e.errno or 0, e.errno)
                log("syscall", f"[{t.tid}] {name}({shown}) = -{code}")
                raise
            except Exception as e:
                log("syscall", f"[{t.tid}] {name}({shown}) raised {type(e).__name__}")
                raise
            if result is CONTEXT_SET:
                log("syscall", f"[{t.tid}] {name}({shown}) -> context restored")
                return result
            if -4096 < result < 0:
                text = f"-{errno.errorcode.get(-result, -result)}"
            else:
                text = hex(result)
            log("syscall", f"[{t.tid}] {name}({shown}) = {text}")
            return result
        return traced

    def report(self, exits: int, elapsed_ns: int) -> str:
        """The -S table: calls and time per syscall, busiest first."""
        lines = [f"km: {'syscall':<20} {'calls':>10} {'total ms':>10} {'us/call':>9}"]
        total_calls = 0
        for name, (count, ns) in sorted(self.stats.items(), key=lambda kv: -kv[1][0]):
            if count:
                total_calls += count
                lines.append(f"km: {name:<20} {count:>10} {ns / 1e6:>10.3f} "
                             f"{ns / count / 1e3:>9.2f}")
        lines.append(f"km: {'total hypercalls':<20} {total_calls:>10}")
        if self.internal_errors:
            lines.append(f"km: {'internal errors':<20} {self.internal_errors:>10}")
        return "\n".join(lines) + "\n"
