"""A guest process: its VM, address space, descriptors, limits, and how it ends."""

from __future__ import annotations

import _thread
import errno
import fcntl
import os
import resource
import struct
import time

from kontain.linux import hostcall as host
from kontain.linux.abi import MAP_ANONYMOUS, MAP_FIXED, MAP_GROWSDOWN, MAP_PRIVATE
from kontain.linux.numbers import NUMBERS as NR
from kontain.loader import stack
from kontain.loader.elf import ET_DYN, ExecError, read_elf
from kontain.loader.load import load_image
from kontain.machine.layout import PAGE_SIZE, PIE_BASE, STACK_SIZE, USER_END
from kontain.machine.vm import Machine
from kontain.mm.space import AddressSpace
from kontain.monitor import aslr, coredump
from kontain.monitor import signals as sig
from kontain.monitor.dispatch import SyscallTable
from kontain.monitor.errors import where
from kontain.monitor.exits import KillProcess
from kontain.monitor.fdspace import FdSpace
from kontain.monitor.group import ThreadGroup
from kontain.monitor.hostsignals import HostSignals
from kontain.monitor.procfs import ProcFs
from kontain.monitor.root import PayloadRoot
from kontain.monitor.signalfd import SignalFds
from kontain.monitor.signals import SIGPIPE, SignalState
from kontain.monitor.thread import GuestThread
from kontain.monitor.trace import Tracer

TYPE_CHECKING = False  # no typing import at run time: km start-up is timed
if TYPE_CHECKING:
    from collections.abc import Callable

    from kontain.kvm.api import Kvm
    from kontain.monitor.debugger import Debugger
    from kontain.monitor.devices import DeviceRules
    from kontain.monitor.exec import ExecRequest
    from kontain.monitor.syscall_filter import SeccompPolicy

GiB = 1 << 30
RLIMIT_NOFILE = 7
RLIM_INFINITY = (1 << 64) - 1


class Options:
    """What km was asked to do (the command line, parsed)."""

    def __init__(self, mem_size: int = 64 * GiB, stats: bool = False,
                 verbose: str | None = None, root: str = "/", strict: bool = False,
                 syscall_filter: SeccompPolicy | None = None,
                 device_rules: DeviceRules | None = None,
                 coredump: str | None = None) -> None:
        self.mem_size = mem_size
        #: Where a payload killed by a core-dumping signal writes its core (km
        #: --coredump, a guest path template: kontain.monitor.coredump.core_path).
        self.coredump = coredump
        #: Where a snapshot the payload asks for goes (km --snapshot, a guest path;
        #: None: kontain.monitor.snapshot.DEFAULT_PATH).
        self.snapshot: str | None = None
        #: A container's device rules, checked as the payload opens a device node.
        self.device_rules = device_rules
        #: The payload's seccomp profile, enforced by dispatch on its every call (a
        #: container's linux.seccomp); kept across fork and execve, as Linux keeps it.
        self.syscall_filter = syscall_filter
        self.stats = stats
        #: A km bug in a system call ends the process instead of returning EIO.
        self.strict = strict
        #: The payload's / on the host (km --root).
        self.root = root
        #: None: no tracing; "": every category; else a regex selecting categories.
        self.verbose = verbose
        #: km --policy's allow_exec: whether execve may run a program (its real path).
        self.exec_allowed: Callable[[Process, str], bool] | None = None
        #: km --policy's process and thread limits (kontain.monitor.procpolicy).
        self.process_limits: object | None = None


class Outcome:
    """How the payload ended: an exit status or a terminating signal."""

    def __init__(self, status: int = 0, signal: int = 0, reason: str = "",
                 internal: bool = False) -> None:
        self.status, self.signal, self.reason, self.internal = status, signal, reason, internal
        #: The guest path of the core the payload dumped (None: none).
        self.core: bytes | None = None
        #: The siginfo of the fatal signal as delivered (None: not known).
        self.info: bytes | None = None


class Process:
    """One payload process: one VM, one address space, its threads."""

    def __init__(self, options: Options, fds: FdSpace, diagnostics_fd: int,
                 handlers: dict[str, Callable[..., int]],
                 on_exit: Callable[[Outcome], None] | None = None,
                 kvm: Kvm | None = None, machine: Machine | None = None) -> None:
        self.options = options
        self._on_exit = on_exit
        self.trace = Tracer(options.verbose, diagnostics_fd)
        self.fds = fds
        #: The VM (tests give a machine without KVM: tests/unit/harness.py).
        self.machine = machine or Machine(options.mem_size, self.fds.move_high, kvm)
        self.mm = AddressSpace(self.machine.phys, self.machine.page_tables)
        self.mm.relocate_fd = self.fds.move_high
        self.signals = SignalState()
        self.pid = os.getpid()
        #: The payload's executable: its host path, and its path as the guest names it.
        self.exe = ""
        self.guest_exe = ""
        self.argv: list[bytes] = []
        #: The payload's resource limits, as 64-bit values (RLIM_INFINITY = 2**64 - 1).
        self.rlimits = {r: tuple(RLIM_INFINITY if v == resource.RLIM_INFINITY else v
                                 for v in resource.getrlimit(r)) for r in range(16)}
        #: The system call table (the handlers come from the floor above).
        self.syscalls = SyscallTable(self, handlers)
        self.group = ThreadGroup(self)
        self.procfs = ProcFs(self)
        self.root = PayloadRoot(options.root, fds)
        self.root.procfs = self.procfs
        self.host_signals = HostSignals(self)
        self.signalfds = SignalFds(self)
        #: The payload's no_new_privs (prctl; kept across fork and execve).
        self.no_new_privs = False
        #: The payload's dumpable flag (prctl; 0 after its credentials change, 1 again
        #: after an execve): whether it leaves a core. km itself never is.
        self.dumpable = 1
        #: The guest's POSIX timers (host timer ids): exec deletes them.
        self.timers: set[int] = set()
        #: Host timer id -> the guest thread its signal goes to (SIGEV_THREAD_ID timers).
        self.timer_threads: dict[int, GuestThread] = {}
        #: Host timer id -> the guest's signal, when the host timer uses a proxy signal.
        self.timer_signals: dict[int, int] = {}
        self.personality = 0
        #: The host name and NIS domain name the payload set (None: the host's). They
        #: are the process tree's own, as if in a UTS namespace of its own: kept by
        #: fork and exec, never written to the host.
        self.uts_names: dict[str, bytes] = {}
        #: Set in a vfork child: called when it execs or exits (kontain.monitor.fork).
        self.vfork_release: Callable[[], None] | None = None
        #: Held by the thread ending the process: one that ends it meanwhile (a
        #: second fatal signal, exit_group) waits while a core is being written.
        self._ending = _thread.RLock()
        self._started = time.monotonic_ns()
        #: Each listening socket's backlog, by inode (listen; for a snapshot).
        self.backlogs: dict[int, int] = {}
        #: The gdb stub's debug state (kontain.monitor.debugger), with km -g.
        self.debugger: Debugger | None = None

    # ---- exec -----------------------------------------------------------------------

    def load(self, request: ExecRequest) -> GuestThread:
        """Map the executable (and its interpreter), build the stack, create thread 1."""
        fd, argv, envp, execfn = request.fd, request.argv, request.envp, request.execfn
        try:
            # The file itself, links resolved.
            self.exe = request.host_path or os.readlink(f"/proc/self/fd/{fd}")
            #: The payload's path as the guest names it (differs from exe under --root).
            self.guest_exe = request.name
            image = request.image or read_elf(self.guest_exe, fd)
            image.path = self.guest_exe  # (what its mappings are named)
            layout = aslr.choose(self.personality)
            self.mm.mmap_top = layout.mmap_top
            # A PIE goes at its randomised base; an ET_DYN run without an interpreter (a
            # static PIE, ld.so run directly) goes in the mmap area, as a library would,
            # and its heap starts at the PIE base instead (binfmt_elf does both).
            static_pie = image.type == ET_DYN and not image.interpreter
            loaded = load_image(self.mm, image, fd, 0 if static_pie else layout.pie_base)
        finally:
            request.close()
        entry, interp_base = loaded.entry, 0
        if image.interpreter:
            try:
                ifd = os.open(self.host_path(os.fsencode(image.interpreter)),
                              os.O_RDONLY | os.O_CLOEXEC)
            except OSError as e:
                raise ExecError(e.errno or errno.ENOENT,
                                f"{image.interpreter}: {e.strerror}") from None
            try:
                # In the mmap area, top down, as Linux maps an interpreter.
                interp = load_image(self.mm, read_elf(image.interpreter, ifd), ifd, 0)
            finally:
                os.close(ifd)
            entry, interp_base = interp.entry, interp.bias
        if not 0 <= entry < USER_END:  # binfmt_elf's BAD_ADDR(elf_entry)
            raise ExecError(errno.EINVAL, f"entry point {entry:#x} outside user space")
        heap = PIE_BASE + PAGE_SIZE if static_pie else loaded.end  # page_up(ELF_ET_DYN_BASE)
        self.mm.set_brk_start(heap + layout.brk_offset)
        self.trace.log("load", f"{self.guest_exe}: entry {entry:#x} bias {loaded.bias:#x} "
                               f"brk {loaded.end:#x}")
        stack_top = layout.stack_top
        # (MAP_GROWSDOWN: as Linux's stack, it takes mprotect(PROT_GROWSDOWN), which
        # glibc uses to make the stack executable for a library that asks for it.)
        self.mm.mmap(stack_top - STACK_SIZE, STACK_SIZE, 3,
                     MAP_PRIVATE | MAP_ANONYMOUS | MAP_FIXED | MAP_GROWSDOWN, name="[stack]")
        host = _host_auxv()
        from kontain.monitor import vdso
        vdso_address = vdso.install(self, layout.vdso_base)
        auxv = [(stack.AT_SYSINFO_EHDR, vdso_address)] if vdso_address else []
        auxv += [
            (stack.AT_MINSIGSTKSZ, host.get(stack.AT_MINSIGSTKSZ, 2048)),
            (stack.AT_HWCAP, host.get(stack.AT_HWCAP, 0)),
            (stack.AT_PAGESZ, 4096), (stack.AT_CLKTCK, host.get(stack.AT_CLKTCK, 100)),
            (stack.AT_PHDR, loaded.phdr), (stack.AT_PHENT, loaded.phent),
            (stack.AT_PHNUM, loaded.phnum), (stack.AT_BASE, interp_base),
            (stack.AT_FLAGS, 0), (stack.AT_ENTRY, loaded.entry),
            (stack.AT_UID, os.getuid()), (stack.AT_EUID, os.geteuid()),
            (stack.AT_GID, os.getgid()), (stack.AT_EGID, os.getegid()),
            (stack.AT_SECURE, 0), (stack.AT_HWCAP2, host.get(stack.AT_HWCAP2, 0)),
        ]
        rsp, contents = stack.build_initial_stack(stack_top, argv, envp, execfn, auxv,
                                                  os.urandom(16), layout.stack_pad)
        if stack_top - rsp > STACK_SIZE // 4:
            raise ExecError(errno.E2BIG, "argument list too long")
        self.mm.write(rsp, contents)
        self.argv = argv
        self.procfs.auxv = _auxv_of(contents, 8 * (len(argv) + len(envp) + 3))
        self.procfs.argv_range, self.procfs.environ_range = _string_ranges(
            rsp, contents, len(argv), len(envp))
        self.procfs.rename_km(argv)
        thread = GuestThread(self, self.group.new_vcpu(), self.pid)
        thread.set_user_entry(entry, rsp)
        return thread

    # ---- run --------------------------------------------------------------------------

    def run(self, thread: GuestThread) -> None:
        """Run the payload from its first thread, on this (the main) host thread.

        Does not return: the process ends through end(), from whichever thread ends it.
        """
        import _thread
        thread.host_ident = _thread.get_ident()
        self.host_signals.start()
        self.group.add(thread)
        self.group.run(thread)

    def internal_error(self, place: str, error: BaseException) -> None:
        """A km bug that km survives: counted (-S) and said on its diagnostics stream."""
        self.syscalls.internal_errors += 1
        self.trace.write(f"km: internal error in {place}: {where(error)}\n")

    def outcome(self, status: int = 0, signal: int = 0, reason: str = "",
                internal: bool = False) -> Outcome:
        return Outcome(status, signal, reason, internal)

    def end(self, outcome: Outcome) -> None:
        """The process is over (exit_group, last thread's exit, or a fatal signal)."""
        with self._ending:
            self._end(outcome)

    def _end(self, outcome: Outcome) -> None:
        if self.vfork_release is not None:
            self.vfork_release()
        if outcome.signal:
            if outcome.signal in sig.DEFAULT_CORE and not outcome.internal:
                self._dump_core(outcome)
            self.trace.log("exit", f"killed by signal {outcome.signal}: {outcome.reason}"
                           + (" (core dumped)" if outcome.core else ""))
        else:
            self.trace.log("exit", f"exit status {outcome.status}")
        if self._on_exit is not None:
            self._on_exit(outcome)
        raise SystemExit(outcome.status or 128 + outcome.signal)

    def _dump_core(self, outcome: Outcome) -> None:
        """The default action of a core-dumping signal (kontain.monitor.coredump). A
        core that cannot be written is no core, as on Linux: the process dies all the
        same, and -V=exit says why."""
        try:
            outcome.core = coredump.dump(self, outcome.signal, self.options.coredump,
                                         outcome.info)
        except (OSError, coredump.CoreError) as e:
            self.trace.log("exit", f"no core: {e}")
        except Exception as e:  # a km bug must not keep the process from dying
            self.internal_error("core dump", e)
        if outcome.core is not None:
            self.trace.log("exit", f"core dumped to {os.fsdecode(outcome.core)}")

    # ---- signals and threads --------------------------------------------------------------

    def post_signal(self, signo: int, info: bytes, thread: GuestThread | None = None,
                    sender: GuestThread | None = None) -> None:
        """Generate a signal for the whole process, or for one thread of it."""
        state = self.signals
        with state.lock:
            if self.pid == 1 and state.action(signo).handler == sig.SIG_DFL:
                # A pid namespace's init (a container's first process) never takes a
                # default action it did not ask for; SIGKILL and SIGSTOP from outside
                # never reach km to be posted. Faults are not posted here.
                return
            if state.ignored(signo):  # ignored (SIG_IGN or by default): dropped unless
                # blocked, since the disposition may change before it is unblocked
                targets = [thread] if thread is not None else self.group.all()
                if not any(t.signal_mask & sig.bit(signo) for t in targets):
                    return
            if signo == sig.SIGCONT:
                for queue in [state.shared] + [t.pending for t in self.group.all()]:
                    for stop in sig.DEFAULT_STOP:
                        queue.discard(stop)
            if thread is not None:
                thread.pending.add(signo, info)
                receiver = thread
            else:
                state.shared.add(signo, info)
                receiver = self.group.pick_receiver(sig.bit(signo), sender)
            self.signalfds.refresh()
        if receiver is not None and receiver is not sender:
            receiver.kick()
        elif receiver is None:
            # Blocked everywhere: only a thread waiting for it (sigtimedwait) can take
            # it; wake the waiters so they look.
            for waiter in self.group.all():
                self.group.wake(waiter)

    def wake(self, thread: GuestThread) -> None:
        self.group.wake(thread)

    def futex_wake(self, address: int, count: int) -> None:
        self.group.futex_wake(address, count)

    def replace_image(self, thread: GuestThread, request: ExecRequest) -> GuestThread:
        """execve past its point of no return (kontain.monitor.exec), in the host thread
        of the guest thread that called it: returns the new program's first thread."""
        try:
            self.group.stop_others(thread)
            self.trace.log("process", f"exec {request.name}: same VM, reset")
            kept_mask, kept_pending = thread.signal_mask, thread.pending
            # The VM, its memslots and its vCPUs stay (KVM cannot destroy a vCPU); the
            # first thread gets vCPU 0 again, the caller's own when it was thread 1.
            self.machine.reset(self.group.reset(), thread.vcpu)
            self.mm.close()
            self.mm = AddressSpace(self.machine.phys, self.machine.page_tables)
            self.mm.relocate_fd = self.fds.move_high
            self._exec_signals()
            self._close_on_exec()
            self.dumpable = 1  # (no set-id execs under km: its jail sets no_new_privs)
            new = self.load(request)
        except (OSError, ExecError) as e:
            # Past the point of no return Linux kills the process (force_fatal_sig).
            raise KillProcess(sig.SIGSEGV, f"exec failed after the point of no return: {e}",
                              internal=True) from None
        finally:
            request.close()
        new.signal_mask, new.pending = kept_mask, kept_pending
        new.host_ident = thread.host_ident
        new.name = b""
        thread.exited = True  # the old program's thread object: nothing kicks it now
        self.group.add(new)
        if self.debugger is not None:
            self.debugger.exec_done(new)  # gdb hears of the new program
        return new

    def _exec_signals(self) -> None:
        """What exec does to signals: handled ones go back to SIG_DFL, ignored ones stay
        ignored, every action loses its flags and mask; POSIX timers are deleted
        (alarm and setitimer timers stay)."""
        state = self.signals
        with state.lock:
            actions = state.actions
            for signo in range(1, sig.NSIG + 1):
                action = actions[signo]
                # (Dispositions are replaced, never changed in place: one that already
                # is a bare SIG_DFL or SIG_IGN stays as it is.)
                if action.handler not in (sig.SIG_DFL, sig.SIG_IGN) or action.flags \
                        or action.mask or action.restorer:
                    actions[signo] = sig.Disposition(
                        sig.SIG_IGN if action.handler == sig.SIG_IGN else sig.SIG_DFL)
            state.timer_overruns.clear()
        self.host_signals.disposition_changed(sig.SIGCHLD)
        for timer in list(self.timers):
            host.syscall(NR["timer_delete"], timer)
        self.timers.clear()
        self.timer_threads.clear()
        self.timer_signals.clear()

    def _close_on_exec(self) -> None:
        """Close the guest's descriptors marked close-on-exec (km's own stay)."""
        for name in os.listdir("/proc/self/fd"):
            fd = int(name)
            if fd >= self.fds.km_base:
                continue
            try:
                if fcntl.fcntl(fd, fcntl.F_GETFD) & fcntl.FD_CLOEXEC:
                    os.close(fd)
                    self.signalfds.closed(fd)
                    self.procfs.closed(fd)
            except OSError:
                pass

    def stop_self(self) -> None:
        """Default action of a stop signal: the whole km process stops until SIGCONT."""
        os.kill(os.getpid(), sig.SIGSTOP)

    # ---- services for syscall handlers -------------------------------------------------

    def host_path(self, path: bytes, follow: bool = True) -> bytes:
        """The host path for a guest path, for km's own use (the loader, exec): resolved
        inside the payload's root, /proc/self/exe naming the payload."""
        return self.root.resolve(path, follow)

    def path_of_fd(self, fd: int) -> str:
        """A descriptor's path as the payload would see it (mapping names)."""
        try:
            target = os.readlink(f"/proc/self/fd/{fd}")
        except OSError:
            return ""
        guest = self.root.guest_path_of_host(os.fsencode(target))
        return os.fsdecode(guest) if guest is not None else target

    def guest_rlimit(self, resource_id: int) -> tuple[int, int]:
        """A resource limit as the payload sees it (RLIM_INFINITY as 2**64 - 1)."""
        if resource_id == RLIMIT_NOFILE:
            return self.fds.guest_soft, self.fds.guest_hard
        return self.rlimits[resource_id]

    def broken_pipe(self, thread: GuestThread) -> None:
        """A write hit a pipe with no reader: SIGPIPE, unless the payload handles it."""
        self.post_signal(SIGPIPE, sig.siginfo(SIGPIPE, sig.SI_USER, pid=self.pid,
                                              uid=os.getuid()), thread, sender=thread)

    def stats_report(self) -> str:
        return self.syscalls.report(0, time.monotonic_ns() - self._started)


_host_auxv_cache: list[dict[int, int]] = []


def _host_auxv() -> dict[int, int]:
    """km's own auxiliary vector, read once: it is the same for every program km runs
    (an exec is in the same km process, a fork's child has its parent's)."""
    if not _host_auxv_cache:
        _host_auxv_cache.append(stack.host_auxv())
    return _host_auxv_cache[0]


def _string_ranges(rsp: int, stack_image: bytes, argc: int,
                   envc: int) -> tuple[tuple[int, int], tuple[int, int]]:
    """Guest address ranges of the argument and environment strings of an initial stack
    (what /proc/<pid>/cmdline and environ read, as arg_start..arg_end on Linux)."""
    pointers = struct.unpack_from(f"<{argc + envc + 2}Q", stack_image, 8)
    argv, envp = pointers[:argc], pointers[argc + 1:argc + 1 + envc]

    def span(strings: tuple[int, ...]) -> tuple[int, int]:
        if not strings:
            return (0, 0)
        last = strings[-1] - rsp
        return strings[0], strings[-1] + stack_image.index(b"\0", last) - last + 1
    return span(argv), span(envp)


def _auxv_of(stack_image: bytes, start: int) -> bytes:
    """The auxiliary vector (through AT_NULL) inside an initial stack image."""
    end = start
    while stack_image[end:end + 8] != bytes(8):
        end += 16
    return stack_image[start:end + 16]
