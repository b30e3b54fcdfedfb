"""A guest process: its VM, address space, descriptors, limits, and how it ends."""

from __future__ import annotations

import os
import resource
import stat
import time

from kontain.loader import stack
from kontain.loader.elf import ExecError, read_elf
from kontain.loader.load import load_image
from kontain.machine.layout import INTERP_BASE, PIE_BASE, STACK_SIZE, STACK_TOP
from kontain.machine.vm import Machine
from kontain.monitor.exits import ExitProcess, KillProcess
from kontain.monitor.fdspace import FdSpace
from kontain.monitor.mm import MAP_ANONYMOUS, MAP_FIXED, MAP_PRIVATE, AddressSpace
from kontain.monitor.signals import SIGPIPE, SignalState
from kontain.monitor.trace import Tracer
from kontain.monitor.vcpu import GuestThread

GiB = 1 << 30


class Options:
    """What km was asked to do (the command line, parsed)."""

    def __init__(self, mem_size: int = 64 * GiB, stats: bool = False,
                 verbose: str | None = None) -> None:
        self.mem_size = mem_size
        self.stats = stats
        #: None: no tracing; "": every category; else a regex selecting categories.
        self.verbose = verbose


class Outcome:
    """How the payload ended: an exit status or a terminating signal."""

    def __init__(self, status: int = 0, signal: int = 0, reason: str = "",
                 internal: bool = False) -> None:
        self.status, self.signal, self.reason, self.internal = status, signal, reason, internal


class Process:
    """One payload process: one VM, one address space, its threads."""

    def __init__(self, options: Options, fds: FdSpace, diagnostics_fd: int) -> None:
        self.options = options
        self.trace = Tracer(options.verbose, diagnostics_fd)
        self.fds = fds
        self.machine = Machine(options.mem_size, self.fds.move_high)
        self.mm = AddressSpace(self.machine.phys, self.machine.page_tables)
        self.signals = SignalState()
        self.pid = os.getpid()
        self.exe = ""
        self.argv: list[bytes] = []
        self.rlimits = {r: resource.getrlimit(r) for r in range(16)}
        from kontain.syscalls.table import SyscallTable  # syscalls sit above monitor
        self.syscalls = SyscallTable(self)
        self.threads: dict[int, GuestThread] = {}
        self.personality = 0
        self._started = time.monotonic_ns()

    # ---- exec -----------------------------------------------------------------------

    def load(self, path: str, argv: list[bytes], envp: list[bytes], execfn: bytes) -> GuestThread:
        """Map the executable (and its interpreter), build the stack, create thread 1."""
        fd = _open_executable(path)
        try:
            image = read_elf(path, fd)
            loaded = load_image(self.mm, image, fd, PIE_BASE)
        finally:
            os.close(fd)
        entry, interp_base = loaded.entry, 0
        if image.interpreter:
            ifd = _open_executable(image.interpreter)
            try:
                interp = load_image(self.mm, read_elf(image.interpreter, ifd), ifd, INTERP_BASE)
            finally:
                os.close(ifd)
            entry, interp_base = interp.entry, interp.bias
        self.mm.set_brk_start(loaded.end)
        self.trace.log("load", f"{path}: entry {entry:#x} bias {loaded.bias:#x} "
                               f"brk {loaded.end:#x}")
        self.mm.mmap(STACK_TOP - STACK_SIZE, STACK_SIZE, 3, MAP_PRIVATE | MAP_ANONYMOUS | MAP_FIXED,
                     name="[stack]")
        host = stack.host_auxv()
        auxv = [
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
        rsp, contents = stack.build_initial_stack(STACK_TOP, argv, envp, execfn, auxv,
                                                  os.urandom(16))
        if STACK_TOP - rsp > STACK_SIZE // 4:
            raise ExecError(7, "argument list too long")  # E2BIG
        self.mm.write(rsp, contents)
        self.exe = os.path.abspath(path)
        self.argv = argv
        thread = GuestThread(self, self.machine.create_vcpu(0), self.pid)
        thread.set_user_entry(entry, rsp)
        self.threads[thread.tid] = thread
        return thread

    # ---- run --------------------------------------------------------------------------

    def run(self, thread: GuestThread) -> Outcome:
        try:
            thread.run()
        except ExitProcess as e:
            return Outcome(status=e.status)
        except KillProcess as e:
            self.trace.log("exit", f"killed by signal {e.signo}: {e.reason}")
            return Outcome(signal=e.signo, reason=e.reason, internal=e.internal)
        raise AssertionError("the run loop returned")  # pragma: no cover

    # ---- services for syscall handlers -------------------------------------------------

    def host_path(self, path: bytes) -> bytes:
        """The host path for a guest path (the payload's root is the host's /)."""
        return path

    def guest_cwd(self) -> bytes:
        return os.getcwdb()

    def special_link(self, dirfd: int, path: bytes) -> bytes | None:
        """Contents of /proc links that must describe the payload rather than km."""
        if dirfd == -100 and path in (b"/proc/self/exe", b"/proc/%d/exe" % self.pid,
                                       b"/proc/thread-self/exe"):
            return os.fsencode(self.exe)
        return None

    def path_of_fd(self, fd: int) -> str:
        try:
            return os.readlink(f"/proc/self/fd/{fd}")
        except OSError:
            return ""

    def broken_pipe(self, thread: GuestThread) -> None:
        """A write hit a pipe with no reader: SIGPIPE, unless the payload handles it."""
        from kontain.syscalls.signal import raise_in_self
        if not self.signals.ignored(SIGPIPE) and not thread.signal_mask & (1 << (SIGPIPE - 1)):
            raise_in_self(thread, SIGPIPE)

    def stats_report(self) -> str:
        return self.syscalls.report(0, time.monotonic_ns() - self._started)


def _open_executable(path: str) -> int:
    try:
        fd = os.open(path, os.O_RDONLY | os.O_CLOEXEC)
    except FileNotFoundError:
        raise ExecError(2, f"{path}: No such file or directory") from None
    except PermissionError:
        raise ExecError(13, f"{path}: Permission denied") from None
    except OSError as e:
        raise ExecError(e.errno or 8, f"{path}: {e.strerror}") from None
    st = os.fstat(fd)
    if not stat.S_ISREG(st.st_mode):
        os.close(fd)
        raise ExecError(13, f"{path}: not a regular file")
    return fd
