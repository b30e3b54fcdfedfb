"""km's gdb stub: the debug state of one process, and the thread that serves gdb.

`km -g[PORT]` and `km --gdb-listen[=PORT]` (kontain.cli.km) make a Debugger. A thread of
its own accepts one client at a time on 127.0.0.1 (or a unix socket) and speaks the
remote protocol through kontain.monitor.gdbstub.Session; this module is the Target.

All-stop: while gdb looks at the process, every thread is parked at the paused point
(ThreadGroup.pause / GuestThread.park_if_paused), its user context in hand, so
registers are read and written there and take effect when it runs again. The run loop
reaches this module in three places only, all off the fast path, and only while a
debugger exists (proc.debugger):

- GuestThread._exception: trap() sees #BP (vector 3) from a breakpoint km inserted
  (rip is put back on the int3, the thread stops: SIGTRAP) and #DB (vector 1) from a
  step km asked for with RFLAGS.TF. Anything else goes on to become a signal.
- GuestThread.deliver_signals: signal_stop() reports each signal as a stop of its
  thread before it is acted on (as ptrace's signal-delivery-stop); gdb's resume says
  whether it is delivered (vCont;C) or dropped (vCont;c). QPassSignals skips the stop.
- GuestThread.park_if_paused: after_park() holds the threads a resume left stopped
  (vCont;s:TID alone steps one thread, the others stay).

Breakpoints are `int3` bytes km pokes into guest memory (text is read-only to the
payload: km writes as a debugger would, never outside the guest's mappings, never into
shared file mappings). Debug registers do nothing under PVM (DR0-7 through
KVM_SET_DEBUGREGS and KVM_SET_GUEST_DEBUG's USE_HW_BP were both probed: no trap), so
Z1 (hardware breakpoints) and Z3/Z4 (read/access watchpoints) are refused as not
supported, and Z2 (write watchpoints) is done by km itself: while one is set, every
running thread single-steps inside km and the watched bytes are compared after each
instruction; a change stops the thread with `watch:ADDR` as a debug register would.
"""

from __future__ import annotations

import _socket
import os
import select
import stat
import sys
import threading

from kontain.machine.cpu import MSR_FS_BASE, MSR_GS_BASE, RFLAGS_TF
from kontain.mm.access import GuestFault
from kontain.monitor import signals as sig
from kontain.monitor.exits import ThreadVanish
from kontain.monitor.gdbstub import (
    DEFAULT_PORT,
    SIGINT,
    SIGKILL,
    SIGTRAP,
    PacketReader,
    Session,
    StopEvent,
    Target,
)

TYPE_CHECKING = False
if TYPE_CHECKING:
    from collections.abc import Callable

    from kontain.monitor.process import Outcome, Process
    from kontain.monitor.thread import GuestThread

BREAKPOINT, DEBUG = 3, 1
INT3 = b"\xcc"
SYSCALL_INSTRUCTION = b"\x0f\x05"
#: How long a held thread sleeps between looks at whether a pause began (it is also
#: notified; this bounds a missed notification).
HOLD_POLL_SECONDS = 0.05
_GPRS = ("rax", "rbx", "rcx", "rdx", "rsi", "rdi", "rbp", "r8", "r9", "r10", "r11", "r12",
         "r13", "r14", "r15")
_XSAVE_AVX = 576  # offset of the AVX state (YMM upper halves) in the standard XSAVE layout
_XSAVE_HEADER = 512  # XSTATE_BV: which components the image holds


def listen(address: tuple[str, int] | str) -> _socket.socket:
    """The stub's listening socket (made before km's jail, which forbids new ones)."""
    if isinstance(address, str):
        try:
            if stat.S_ISSOCK(os.lstat(address).st_mode):  # a stale one: only a socket
                os.unlink(address)
        except OSError:
            pass
        sock = _socket.socket(_socket.AF_UNIX, _socket.SOCK_STREAM)
        sock.bind(address)
    else:
        sock = _socket.socket(_socket.AF_INET, _socket.SOCK_STREAM)
        sock.setsockopt(_socket.SOL_SOCKET, _socket.SO_REUSEADDR, 1)
        sock.bind(address)
    sock.listen(1)
    return sock


def describe(sock: _socket.socket) -> str:
    name = sock.getsockname()
    return name if isinstance(name, str) else f"{name[0]}:{name[1]}"


class Debugger(Target):
    """The debug state of one process and its gdb server thread."""

    def __init__(self, proc: Process, sock: _socket.socket, root: str) -> None:
        self.proc = proc
        self.group = proc.group
        self.pid = proc.pid
        self._root = root
        fd = proc.fds.move_high(sock.detach())
        self._listener = _socket.socket(sock.family, sock.type, 0, fd)
        self.avx = bool(proc.machine.xcr0 & 4)
        self._cond = threading.Condition()
        #: Whether a client is attached (the hooks do nothing otherwise).
        self.attached = False
        #: Address -> the byte an int3 replaced.
        self.breakpoints: dict[int, bytes] = {}
        #: Address -> (length, bytes last seen): write watchpoints (see the docstring).
        self.watchpoints: dict[int, tuple[int, bytes]] = {}
        #: Stops not reported yet, oldest first.
        self._events: list[StopEvent] = []
        #: Threads gdb asked to step, and threads km steps for watchpoints.
        self._gdb_step: set[int] = set()
        self._km_step: set[int] = set()
        #: Threads stepping over a `syscall` instruction: tid -> the address after it.
        #: TF would trap one instruction late there (PVM: the flags km returns to the
        #: payload with carry TF past the call), so km puts a temporary int3 after it.
        self._syscall_steps: dict[int, int] = {}
        #: Temporary int3s: address -> the byte each replaced.
        self._temporary: dict[int, bytes] = {}
        #: Threads a resume left stopped (after_park holds them).
        self._held: set[int] = set()
        #: Threads stopped in signal_stop: tid -> the signal gdb says to deliver.
        self._awaiting: set[int] = set()
        self._decisions: dict[int, int] = {}
        self._passed: set[int] = set()
        self._wakeup = proc.fds.move_high(os.eventfd(0, os.EFD_CLOEXEC | os.EFD_NONBLOCK))
        self._send_lock = threading.Lock()
        self._conn: _socket.socket | None = None
        self._session: Session | None = None
        self._first_stop = StopEvent(proc.pid, SIGTRAP)
        #: Fork children reported to gdb and not yet detached (D;PID).
        self._forks: set[int] = set()

    # ---- start -----------------------------------------------------------------------------

    def start(self, thread: GuestThread | None) -> None:
        """Serve gdb from a thread of km's own. thread: the first thread, held before its
        first instruction until a client connects and resumes it (km -g); None: the
        payload runs, and a client may attach later (--gdb-listen)."""
        if thread is not None:
            self.group.pause(timeout=0)  # (the thread is not in the group yet)
            thread.run_struct.immediate_exit = 1  # out before its first instruction
        else:
            self._first_stop = StopEvent(self.proc.pid, 0)
        threading.Thread(target=self._serve, name="km-gdb", daemon=True).start()

    # ---- hooks called by the payload's threads ---------------------------------------------

    def trap(self, thread: GuestThread, vector: int) -> bool:
        """#BP or #DB in the payload: True if it was the debugger's (the thread stopped and
        was resumed), False to let it become the payload's SIGTRAP."""
        if self.proc.pid != self.pid:
            return self._trap_in_child(thread, vector)
        if not self.attached:
            return False
        rip, rsp, rflags = thread.user_context()
        tid = thread.tid
        if vector == BREAKPOINT:
            at = rip - 1
            if self._syscall_steps.get(tid) == at or at in self._temporary:
                return self._after_syscall(thread, at, rsp, rflags)
            if rip - 1 not in self.breakpoints or self._read(rip - 1, 1) != INT3:
                return False  # the payload's own int3 (or one of an image since exec'd)
            thread.resume_at(rip - 1, rsp, rflags)
            self._stop(thread, StopEvent(tid, SIGTRAP, "swbreak"))
            return True
        if vector != DEBUG:
            return False
        if tid not in self._gdb_step and tid not in self._km_step:
            if not (self._gdb_step or self._km_step) or not rflags & RFLAGS_TF:
                return False  # the payload's own TF
            # A thread created by a stepping one inherited its TF (Linux clears it in a
            # traced child): it steps for the watchpoints, or goes on.
            if not self.watchpoints:
                thread.resume_at(rip, rsp, rflags & ~RFLAGS_TF)
                thread.park_if_paused()
                return True
            self._km_step.add(tid)
        changed = self._watch_hit()
        if tid in self._gdb_step or changed is not None:
            self._gdb_step.discard(tid)
            self._km_step.discard(tid)
            thread.resume_at(rip, rsp, rflags & ~RFLAGS_TF)
            event = StopEvent(tid, SIGTRAP)
            if changed is not None:
                event.reason, event.address = "watch", changed
            self._stop(thread, event)
            return True
        # A step km takes for a watchpoint: TF stays, the thread goes on. A thread that
        # only steps never reaches the run loop's paused point (a kick finds it in the
        # stub): it parks here when the process is being paused.
        thread.park_if_paused()
        return True

    def _after_syscall(self, thread: GuestThread, at: int, rsp: int, rflags: int) -> bool:
        """An int3 at `at`, where a thread's step over a syscall ends: that thread's
        step is done; another thread waits there until the int3 is gone."""
        tid = thread.tid
        if self._read(at, 1) != INT3:
            return False
        thread.resume_at(at, rsp, rflags)
        if self._syscall_steps.get(tid) == at:
            with self._cond:
                del self._syscall_steps[tid]
                self._drop_temporary(at)
            self._stop(thread, StopEvent(tid, SIGTRAP))
            return True
        while True:
            with self._cond:
                owners = [t for t, a in self._syscall_steps.items() if a == at]
                if at not in self._temporary or not self.attached:
                    return True
                if thread.must_leave:  # another thread's execve: this one vanishes now
                    raise ThreadVanish()
                if not any(t in self.group.threads for t in owners):  # the stepper is gone
                    for t in owners:
                        del self._syscall_steps[t]
                    self._drop_temporary(at)
                    return True
                if not self.group.paused:
                    self._cond.wait(HOLD_POLL_SECONDS)
                    continue
            thread.park_if_paused()

    def _drop_temporary(self, at: int) -> None:
        """Take out a temporary int3 no step needs any more (under self._cond)."""
        if at in self._temporary and at not in self._syscall_steps.values():
            original = self._temporary.pop(at)
            if self._read(at, 1) == INT3:
                self._poke(at, original)
            self._cond.notify_all()

    def _clear_temporary(self) -> None:
        self._syscall_steps.clear()
        for at in list(self._temporary):
            self._drop_temporary(at)

    def signal_stop(self, thread: GuestThread, signo: int) -> bool:
        """A signal about to be acted on in thread: report it, and return whether gdb
        lets it through (if gdb gives another signal, that one is queued instead)."""
        if not self.attached or self.proc.pid != self.pid or signo == SIGKILL \
                or signo in self._passed:
            return True
        tid = thread.tid
        with self._cond:
            self._awaiting.add(tid)
        self._stop(thread, StopEvent(tid, signo, "signal"))
        with self._cond:
            self._awaiting.discard(tid)
            decision = self._decisions.pop(tid, signo)
        if decision == signo:
            return True
        if decision:
            with self.proc.signals.lock:
                thread.pending.add(decision, sig.siginfo(decision, sig.SI_USER))
        return False

    def after_park(self, thread: GuestThread) -> None:
        """A thread leaves the paused state: if the last resume left it stopped, it
        stays here, and parks again when the next stop comes."""
        tid = thread.tid
        while True:
            with self._cond:
                while tid in self._held and not self.group.paused and not thread.must_leave:
                    self._cond.wait(HOLD_POLL_SECONDS)
                if tid not in self._held or thread.must_leave:
                    return  # (must_leave: another thread's execve, it vanishes)
            self.group.park(thread)

    def exited(self, outcome: Outcome) -> None:
        """The process is over: tell gdb (W or X) before km leaves."""
        if self.proc.pid != self.pid:
            return
        session = self._session
        if session is None or session.closed or not self.attached:
            return
        if outcome.signal:
            event = StopEvent(killed_by=outcome.signal)
        else:
            event = StopEvent(exit_status=outcome.status)
        self._send_packet(session.stop_reply(event))

    def exec_done(self, thread: GuestThread) -> None:
        """execve replaced the program: its breakpoints went with the old memory. A
        client that takes exec events stops at the new program's first instruction (an
        `exec:` stop: gdb loads its symbols, sets its breakpoints again, goes on)."""
        if self.proc.pid != self.pid:
            return
        with self._cond:
            self.breakpoints.clear()
            self.watchpoints.clear()
            self._temporary.clear()
            self._syscall_steps.clear()
            self._gdb_step.clear()
            self._km_step.clear()
            self._held.clear()
            session = self._session
            if not self.attached or session is None \
                    or b"exec-events" not in session.client_features:
                return
            self._events.append(StopEvent(thread.tid, SIGTRAP, "exec"))
        self.group.pause(timeout=0)
        thread.run_struct.immediate_exit = 1  # parks before its first instruction
        self._wake_server()

    def fork_event(self, thread: GuestThread, child: int) -> None:
        """The parent's side of a fork, once the child's VM is ready: a client that
        took fork events (with multiprocess ids) gets a `fork:` stop of the forking
        thread, right after its fork returns. gdb then detaches the child (D;PID): the
        child has already taken every breakpoint out of its memory (child_started),
        so it runs free either way."""
        if self.proc.pid != self.pid:
            return
        with self._cond:
            session = self._session
            if not self.attached or session is None or not session.multiprocess \
                    or b"fork-events" not in session.client_features:
                return
            self._forks.add(child)
            self._events.append(StopEvent(thread.tid, SIGTRAP, "fork", child))
        self.group.pause(timeout=0)
        thread.run_struct.immediate_exit = 1  # parks before the next instruction
        self._wake_server()

    def child_started(self) -> None:
        """In a fork child's km, before its first instruction: the child is not
        debugged (km never follows a fork child), so what the parent's debugger put in
        the memory it inherited comes out: breakpoints and temporary int3s (as gdb's
        detach-on-fork does), watchpoints and steps (its thread's TF: _trap_in_child)."""
        for address, original in [*self.breakpoints.items(), *self._temporary.items()]:
            if self._read(address, 1) == INT3:
                self._poke(address, original)
        self.attached = False
        self.breakpoints, self._temporary, self._syscall_steps = {}, {}, {}
        self._forks = set()
        self._events = []
        self.watchpoints = {}
        self._held = set()

    def forked_child(self, pid: int) -> bool:
        return pid in self._forks

    def detach_child(self, pid: int) -> bool:
        """D;PID after a fork stop: the child already runs free (child_started)."""
        if pid not in self._forks:
            return False
        self._forks.discard(pid)
        return True

    def libraries_svr4(self) -> bytes | None:
        """gdbserver's <library-list-svr4> from the guest's r_debug: found through the
        program's PT_DYNAMIC (AT_PHDR/AT_PHNUM of the auxv km gave it) and its DT_DEBUG
        entry, which the dynamic linker fills in; then each namespace's link_map list.
        Everything here is the payload's memory, and the payload may have written
        anything there: reads are km's checked ones, every walk is bounded, a pointer
        that does not read ends it."""
        return svr4_library_list(self._read, bytes(self.proc.procfs.auxv or b""))

    def _trap_in_child(self, thread: GuestThread, vector: int) -> bool:
        """A forked child runs without the debugger: child_started took the inherited
        breakpoints out of its memory before its first instruction (as gdb detaching
        from a fork child does); what is left is a TF its thread inherited from a step."""
        rip, rsp, rflags = thread.user_context()
        if vector == BREAKPOINT and (rip - 1 in self.breakpoints or rip - 1 in self._temporary):
            for address, original in [*self.breakpoints.items(), *self._temporary.items()]:
                self._poke(address, original)
            thread.resume_at(rip - 1, rsp, rflags)
            return True
        if vector == DEBUG and rflags & RFLAGS_TF:
            thread.resume_at(rip, rsp, rflags & ~RFLAGS_TF)
            return True
        return False

    def _stop(self, thread: GuestThread, event: StopEvent) -> None:
        """This thread stops for gdb: every other thread pauses, and it parks until a
        resume lets it go."""
        with self._cond:
            self._events.append(event)
        self.group.pause(timeout=0)  # (from a thread of the process: do not wait)
        self._wake_server()
        thread.park_if_paused()

    def _wake_server(self) -> None:
        with self._cond:
            self._cond.notify_all()
        try:
            os.eventfd_write(self._wakeup, 1)
        except OSError:
            pass

    def _watch_hit(self) -> int | None:
        for address, (length, seen) in list(self.watchpoints.items()):
            now = self._read(address, length)
            if now != seen:
                self.watchpoints[address] = (length, now)
                return address
        return None

    # ---- the server thread -----------------------------------------------------------------

    def _serve(self) -> None:
        while True:
            try:
                fd, _ = self._listener._accept()
            except OSError:
                return
            try:
                fd = self.proc.fds.move_high(fd)
                conn = _socket.socket(self._listener.family, _socket.SOCK_STREAM, 0, fd)
                if self._listener.family == _socket.AF_INET:
                    conn.setsockopt(_socket.IPPROTO_TCP, _socket.TCP_NODELAY, 1)
                self._converse(conn)
            except Exception as e:  # km goes on without its debugger
                self.proc.trace.write(f"km: gdb stub: {type(e).__name__}: {e}\n")
                self._release_all()
            finally:
                self._conn = self._session = None
                try:
                    conn.close()
                except (OSError, UnboundLocalError):
                    pass

    def _converse(self, conn: _socket.socket) -> None:
        self._conn = conn
        self._pause_all()
        with self._cond:
            self.attached = True
            self._events.clear()
        session = self._session = Session(self, self._send_raw)
        first = self._first_stop
        threads = self.threads()
        if first.tid not in threads and threads:  # (the main thread has ended)
            first = StopEvent(threads[0], first.signo)
        session.last_stop = first
        session.current = first.tid
        reader = PacketReader()
        poller = select.poll()
        poller.register(conn.fileno(), select.POLLIN)
        poller.register(self._wakeup, select.POLLIN)
        while not session.closed:
            ready = {fd for fd, _ in poller.poll()}
            if self._wakeup in ready:
                try:
                    os.eventfd_read(self._wakeup)
                except OSError:
                    pass
                if session.running and self._events:
                    self._report(session, None)
            if conn.fileno() not in ready:
                continue
            data = conn.recv(65536)
            if not data:  # gdb went away: the payload goes on
                self._release_all()
                return
            for event in reader.feed(data):
                if event[0] == "interrupt":
                    if session.running:
                        self._report(session, StopEvent(0, SIGINT))
                    continue
                if session.running and event[0] == "packet":
                    continue  # (all-stop: nothing but ^C while running)
                session.deliver(event)
                if session.closed:
                    break
        if not self.attached:
            return
        self._release_all()

    def _report(self, session: Session, fallback: StopEvent | None) -> None:
        """The target stops: every thread paused, then one stop reply."""
        self._pause_all()
        with self._cond:
            event = self._pick_event()
        if event is None:
            if fallback is None:
                return  # (an event already reported)
            event = fallback
            if event.tid not in self.threads():
                event.tid = session.current if session.current in self.threads() \
                    else (self.threads() or [0])[0]
        self._send_packet(session.stop_reply(event))

    def _pick_event(self) -> StopEvent | None:
        """The stop to report: a step's first (gdb waits for it), then the oldest. The
        other breakpoint hits are dropped: those threads' rip is back on the int3, so
        they hit it again when they run, if it is still there."""
        events = self._events
        if not events:
            return None
        chosen = next((e for e in events if e.reason == "" and e.signo == SIGTRAP), events[0])
        self._events = [e for e in events if e is not chosen and e.reason != "swbreak"]
        return chosen

    def _pause_all(self) -> None:
        self.group.pause(timeout=0)
        with self._cond:
            self._cond.notify_all()  # held threads park
        # (again every second: a thread that began meanwhile was not kicked; and none
        # at all for a moment, before the first thread runs or while an exec replaces it)
        while not (self.group.pause(timeout=1.0) and self.group.all()):
            if not self.group.all():
                with self._cond:
                    self._cond.wait(0.001)

    def _release_all(self) -> None:
        """The client is gone (D, or its connection closed): breakpoints out, steps off,
        every thread goes on."""
        if self._gdb_step or self._km_step or self.group.paused:
            # Stopped first (the steps still the debugger's meanwhile): TF comes off.
            self._pause_all()
        with self._cond:
            self.attached = False
            for address, original in self.breakpoints.items():
                self._poke(address, original)
            self.breakpoints.clear()
            self._clear_temporary()
            self.watchpoints.clear()
            self._held.clear()
            self._events.clear()
            self._forks.clear()
            self._decisions.clear()
            self._passed.clear()
            if self.group.paused:
                for thread in self.group.all():
                    if thread.tid in self._gdb_step or thread.tid in self._km_step:
                        rip, rsp, rflags = thread.user_context()
                        thread.resume_at(rip, rsp, rflags & ~RFLAGS_TF)
            self._gdb_step.clear()
            self._km_step.clear()
        self.group.resume()
        with self._cond:
            self._cond.notify_all()

    def _send_raw(self, data: bytes) -> None:
        conn = self._conn
        if conn is None:
            return
        with self._send_lock:
            try:
                conn.sendall(data)
            except OSError:
                pass

    def _send_packet(self, payload: bytes) -> None:
        from kontain.monitor.gdbstub import frame
        self._send_raw(frame(payload))

    # ---- Target: threads and registers -------------------------------------------------------

    def _thread(self, tid: int) -> GuestThread | None:
        return self.group.threads.get(tid)

    def threads(self) -> list[int]:
        return sorted(t.tid for t in self.group.all())

    def thread_name(self, tid: int) -> str:
        thread = self._thread(tid)
        return thread.name.decode(errors="replace") if thread is not None else ""

    def read_registers(self, tid: int) -> dict[str, bytes]:
        thread = self._thread(tid)
        if thread is None:
            return {}
        regs = thread.regs
        rip, rsp, rflags = thread.user_context()
        out = {name: (getattr(regs, name) & (1 << 64) - 1).to_bytes(8, "little")
               for name in _GPRS}
        out["rsp"] = rsp.to_bytes(8, "little")
        out["rip"] = rip.to_bytes(8, "little")
        out["eflags"] = (rflags & 0xFFFFFFFF).to_bytes(4, "little")
        for name, value in (("cs", 0x33), ("ss", 0x2B), ("ds", 0), ("es", 0), ("fs", 0),
                            ("gs", 0)):
            out[name] = value.to_bytes(4, "little")
        out["orig_rax"] = b"\xff" * 8
        msrs = thread.vcpu.get_msrs([MSR_FS_BASE, MSR_GS_BASE])
        out["fs_base"] = msrs[MSR_FS_BASE].to_bytes(8, "little")
        out["gs_base"] = msrs[MSR_GS_BASE].to_bytes(8, "little")
        xsave = bytes(thread.vcpu.get_xsave())
        out["fctrl"] = xsave[0:2] + b"\0\0"
        out["fstat"] = xsave[2:4] + b"\0\0"
        out["ftag"] = _full_tag_word(xsave[4]).to_bytes(4, "little")
        out["fop"] = xsave[6:8] + b"\0\0"
        out["fioff"] = xsave[8:12]
        out["fiseg"] = xsave[12:14] + b"\0\0"
        out["fooff"] = xsave[16:20]
        out["foseg"] = xsave[20:22] + b"\0\0"
        out["mxcsr"] = xsave[24:28]
        for i in range(8):
            out[f"st{i}"] = xsave[32 + 16 * i:42 + 16 * i]
        for i in range(16):
            out[f"xmm{i}"] = xsave[160 + 16 * i:176 + 16 * i]
            if self.avx:
                out[f"ymm{i}h"] = xsave[_XSAVE_AVX + 16 * i:_XSAVE_AVX + 16 + 16 * i]
        return out

    def write_registers(self, tid: int, values: dict[str, bytes]) -> bool:
        thread = self._thread(tid)
        if thread is None:
            return False
        regs = thread.regs
        for name in _GPRS:
            if name in values:
                setattr(regs, name, int.from_bytes(values[name], "little"))
        thread.run_struct.kvm_dirty_regs = 1  # KVM_SYNC_X86_REGS
        rip, rsp, rflags = thread.user_context()
        if "rip" in values or "rsp" in values or "eflags" in values:
            rip = int.from_bytes(values.get("rip", rip.to_bytes(8, "little")), "little")
            rsp = int.from_bytes(values.get("rsp", rsp.to_bytes(8, "little")), "little")
            flags = int.from_bytes(values.get("eflags", b""), "little") \
                if "eflags" in values else rflags
            thread.resume_at(rip, rsp, flags)
        msrs = [(msr, int.from_bytes(values[name], "little"))
                for msr, name in ((MSR_FS_BASE, "fs_base"), (MSR_GS_BASE, "gs_base"))
                if name in values]
        if msrs:
            thread.vcpu.set_msrs(msrs)
        fp = {"fctrl": (0, 2), "fstat": (2, 2), "fop": (6, 2), "mxcsr": (24, 4)}
        fp.update({f"st{i}": (32 + 16 * i, 10) for i in range(8)})
        fp.update({f"xmm{i}": (160 + 16 * i, 16) for i in range(16)})
        if self.avx:
            fp.update({f"ymm{i}h": (_XSAVE_AVX + 16 * i, 16) for i in range(16)})
        changes = [(fp[name], values[name]) for name in fp if name in values]
        if changes:
            xsave = thread.vcpu.get_xsave()
            image = bytearray(bytes(xsave))
            for (offset, size), value in changes:
                image[offset:offset + size] = value[:size]
            # XSTATE_BV (the XSAVE header's first word) says which components hold
            # state: one left "in its initial state" would ignore what was written.
            features = 0
            for name in values:
                if name in fp:
                    features |= 4 if name.startswith("ymm") else 2 \
                        if name.startswith("xmm") or name == "mxcsr" else 1
            bv = int.from_bytes(image[_XSAVE_HEADER:_XSAVE_HEADER + 8], "little") | features
            image[_XSAVE_HEADER:_XSAVE_HEADER + 8] = bv.to_bytes(8, "little")
            import ctypes
            ctypes.memmove(ctypes.addressof(xsave), bytes(image), len(image))
            try:
                thread.vcpu.set_xsave(xsave)
            except OSError:
                return False
        return True

    # ---- Target: memory and breakpoints ----------------------------------------------------

    def _read(self, address: int, length: int) -> bytes:
        try:
            return self.proc.mm.read(address, length)
        except (GuestFault, OverflowError, ValueError):
            return b""

    def read_memory(self, address: int, length: int) -> bytes:
        data = self._read(address, length)
        if not data:  # a range partly readable: as far as it goes, page by page
            out = bytearray()
            at, end = address, address + length
            while at < end:
                step = min(end, (at | 0xFFF) + 1) - at
                piece = self._read(at, step)
                if not piece:
                    break
                out += piece
                at += step
            data = bytes(out)
        if (self.breakpoints or self._temporary) and data:  # the bytes int3s replaced
            image = bytearray(data)
            for bp, original in [*self.breakpoints.items(), *self._temporary.items()]:
                if address <= bp < address + len(image):
                    image[bp - address] = original[0]
            data = bytes(image)
        return data

    def write_memory(self, address: int, data: bytes) -> bool:
        if not 0 <= address < address + len(data) <= 1 << 47:
            return False
        data = bytearray(data)
        for bp in self.breakpoints:  # a write over a breakpoint changes what it hides
            if address <= bp < address + len(data):
                self.breakpoints[bp] = bytes((data[bp - address],))
                data[bp - address] = INT3[0]
        try:
            self.proc.mm.write(address, bytes(data))
            return True
        except (GuestFault, OverflowError, ValueError):
            pass
        return self._poke(address, bytes(data))

    def _poke(self, address: int, data: bytes) -> bool:
        """Write where the payload may not (text): as ptrace's POKETEXT, into the
        process's private pages only, never into a shared file mapping."""
        mm = self.proc.mm
        end = address + len(data)
        at = address
        while at < end:
            vma = mm.find(at)
            if vma is None or vma.kernel_copy or vma.foreign:
                return False
            at = vma.end
        mm.poke(address, data)
        return self._read(address, len(data)) == data

    def set_breakpoint(self, kind: int, address: int, length: int, insert: bool) -> bool | None:
        if kind == 0:
            if insert:
                if address in self.breakpoints:
                    return True
                original = self._read(address, 1)
                if not original or not self._poke(address, INT3):
                    return False
                self.breakpoints[address] = original
                return True
            original = self.breakpoints.pop(address, None)
            if original is not None and self._read(address, 1) == INT3:
                self._poke(address, original)
            return True
        if kind == 2:
            if insert:
                if not 1 <= length <= 8:
                    return False
                seen = self._read(address, length)
                if len(seen) != length:
                    return False
                self.watchpoints[address] = (length, seen)
            else:
                self.watchpoints.pop(address, None)
            return True
        return None  # no debug registers on PVM: see the module docstring

    # ---- Target: running ------------------------------------------------------------------

    def resume(self, actions: dict[int, tuple[str, int]], default: tuple[str, int] | None
               ) -> None:
        with self._cond:
            for tid, (_op, signo) in list(actions.items()) + [
                    (t, default) for t in self._awaiting if t not in actions and default]:
                if tid in self._awaiting:
                    self._decisions[tid] = signo
            if self._events:  # a stop gdb has not heard of yet: report it, run nothing
                self._wake_server()
                return
            self._held = set()
            self._clear_temporary()
            for thread in self.group.all():
                tid = thread.tid
                action = actions.get(tid, default)
                if action is None:
                    self._held.add(tid)
                    continue
                op, signo = action
                if signo and tid not in self._awaiting:
                    with self.proc.signals.lock:
                        thread.pending.add(signo, sig.siginfo(signo, sig.SI_USER))
                rip, rsp, rflags = thread.user_context()
                was_stepping = tid in self._gdb_step or tid in self._km_step
                self._gdb_step.discard(tid)
                self._km_step.discard(tid)
                if op == "s" and self._read(rip, 2) == SYSCALL_INSTRUCTION \
                        and self._step_over_syscall(tid, rip + 2):
                    pass  # (no TF: the int3 after it ends the step)
                elif op == "s":
                    self._gdb_step.add(tid)
                elif self.watchpoints:
                    self._km_step.add(tid)
                if tid in self._gdb_step or tid in self._km_step:
                    thread.resume_at(rip, rsp, rflags | RFLAGS_TF)
                elif was_stepping:
                    thread.resume_at(rip, rsp, rflags & ~RFLAGS_TF)
        self.group.resume()
        with self._cond:
            self._cond.notify_all()

    def _step_over_syscall(self, tid: int, after: int) -> bool:
        """Step a thread over the `syscall` before `after` with an int3 there (gdb's own
        breakpoint, if it has one there); False if km cannot put one there."""
        if after not in self.breakpoints and after not in self._temporary:
            original = self._read(after, 1)
            if not original or not self._poke(after, INT3):
                return False
            self._temporary[after] = original
        self._syscall_steps[tid] = after
        return True

    def pass_signals(self, signals: set[int]) -> None:
        self._passed = set(signals)

    def auxv(self) -> bytes:
        return bytes(self.proc.procfs.auxv or b"")

    def exec_file(self) -> bytes:
        """The payload's executable as gdb on the host can open it."""
        proc = self.proc
        if self._root == "/":
            return os.fsencode(proc.exe)
        return os.fsencode(os.path.join(self._root, proc.guest_exe.lstrip("/")))

    def kill(self) -> None:
        with self._cond:
            self.attached = False
        self.proc.trace.log("exit", "killed by the debugger")
        try:
            self.proc.end(self.proc.outcome(signal=SIGKILL, reason="killed by gdb"))
        except SystemExit:
            os._exit(128 + SIGKILL)

    def detach(self) -> None:
        """D: reply first (the session does), then let everything go (_converse)."""


AT_PHDR, AT_PHNUM = 3, 5
PT_DYNAMIC, PT_PHDR = 2, 6
DT_NULL, DT_DEBUG = 0, 21
#: Bounds on what a hostile payload can make km walk.
MAX_PHNUM = 256
MAX_DYNAMIC = 4096
MAX_LIBRARIES = 1024
MAX_NAMESPACES = 16
MAX_NAME = 4096


def svr4_library_list(read: Callable[[int, int], bytes], auxv: bytes) -> bytes | None:
    """The <library-list-svr4> document for a process whose memory read() reads (b""
    where it cannot) and whose auxv is given; None if the program is not dynamic. As
    gdbserver: the first link_map of the first namespace is the program (main-lm), not
    listed; every other one is a <library> with lm, l_addr, l_ld and lmid (the address
    of its namespace's r_debug). Before the dynamic linker has filled DT_DEBUG in (the
    first instruction), the list is empty."""
    def word(address: int) -> int | None:
        data = read(address, 8) if 0 < address < 1 << 47 else b""
        return int.from_bytes(data, "little") if len(data) == 8 else None

    entries = {}
    for at in range(0, len(auxv) - 15, 16):
        key = int.from_bytes(auxv[at:at + 8], "little")
        if key in (AT_PHDR, AT_PHNUM):
            entries[key] = int.from_bytes(auxv[at + 8:at + 16], "little")
    phdr, phnum = entries.get(AT_PHDR, 0), min(entries.get(AT_PHNUM, 0), MAX_PHNUM)
    table = read(phdr, phnum * 56) if phdr and phnum else b""
    bias, dynamic = None, None
    for at in range(0, len(table) - 55, 56):
        kind = int.from_bytes(table[at:at + 4], "little")
        vaddr = int.from_bytes(table[at + 16:at + 24], "little")
        if kind == PT_PHDR:
            bias = phdr - vaddr
        elif kind == PT_DYNAMIC:
            dynamic = vaddr
    if dynamic is None:
        return None  # a static program: no r_debug
    if bias is None:  # (no PT_PHDR: the headers follow the ELF header at the image start)
        bias = 0
    r_debug = 0
    at = (dynamic + bias) & (1 << 64) - 1
    for _ in range(MAX_DYNAMIC):
        tag, value = word(at), word(at + 8)
        if tag is None or value is None or tag == DT_NULL:
            break
        if tag == DT_DEBUG:
            r_debug = value
            break
        at += 16
    rows: list[str] = []
    main_lm = 0
    seen: set[int] = set()
    for _ in range(MAX_NAMESPACES):
        # struct r_debug: int r_version; link_map *r_map (8); ...; r_version >= 2 adds
        # r_debug_extended's r_next (40): the next namespace's.
        version, lm = word(r_debug), word(r_debug + 8)
        if version is None or lm is None or r_debug in seen:
            break
        seen.add(r_debug)
        first = not main_lm and not rows
        for _ in range(MAX_LIBRARIES):
            if not lm or lm in seen:
                break
            seen.add(lm)
            # struct link_map: l_addr, l_name, l_ld, l_next (8 bytes each).
            fields = read(lm, 32)
            if len(fields) != 32:
                break
            l_addr, l_name, l_ld, l_next = (int.from_bytes(fields[i:i + 8], "little")
                                            for i in range(0, 32, 8))
            if first:
                main_lm, first = lm, False
            else:
                name = _c_string(read, l_name)
                rows.append(f'<library name="{_xml_escape(name)}" lm="0x{lm:x}" '
                            f'l_addr="0x{l_addr:x}" l_ld="0x{l_ld:x}" '
                            f'lmid="0x{r_debug:x}"/>')
            lm = l_next
        following = word(r_debug + 40) if (version & 0xFFFFFFFF) >= 2 else None
        if not following:
            break
        r_debug = following
    head = '<library-list-svr4 version="1.0"'
    if main_lm:
        head += f' main-lm="0x{main_lm:x}"'
    return (head + ">" + "".join(rows) + "</library-list-svr4>").encode()


def _c_string(read: Callable[[int, int], bytes], address: int) -> str:
    """A NUL-terminated name from guest memory (at most MAX_NAME bytes; "" if none)."""
    if not 0 < address < 1 << 47:
        return ""
    out = bytearray()
    while len(out) < MAX_NAME:
        step = min(256, ((address + len(out)) | 0xFFF) + 1 - (address + len(out)))
        chunk = read(address + len(out), step)
        if not chunk:
            break
        end = chunk.find(b"\0")
        if end >= 0:
            out += chunk[:end]
            break
        out += chunk
    return out.decode(errors="replace")


def _xml_escape(text: str) -> str:
    text = "".join(c if c.isprintable() else "?" for c in text)
    return (text.replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;")
            .replace('"', "&quot;").replace("'", "&apos;"))


def _full_tag_word(abridged: int) -> int:
    """FXSAVE's abridged tag (1 bit per register: valid) as the x87 tag word gdb shows
    (2 bits each: 0 valid, 3 empty; km does not classify zeros and specials)."""
    word = 0
    for i in range(8):
        word |= (0 if abridged >> i & 1 else 3) << (2 * i)
    return word


def port_argument(text: str) -> tuple[str, int] | str:
    """The address -g / --gdb-listen name: nothing (port 2159), a port, or a path."""
    from kontain.monitor.gdbstub import parse_listen_address
    return ("127.0.0.1", DEFAULT_PORT) if not text else parse_listen_address(text)


def announce(sock: _socket.socket, waiting: bool) -> None:
    """km's one line on stderr saying where it listens (tests wait for it)."""
    mode = "waiting for gdb" if waiting else "gdb may attach"
    os.write(2, f"km: gdb stub listening on {describe(sock)} ({mode})\n".encode())
    sys.stderr.flush()
