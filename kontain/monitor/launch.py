"""A launch spec: one description of what to run in a VM, and the start that carries it out.

The km command line builds one, and so will krun (from an OCI process) and the Python
API, the way runc hands its initConfig to `runc init`: what to run (payload, argv, env),
where (root, cwd), what it inherits (descriptors, ignored signals, the signal mask,
limits) and how km watches it (memory size, -S, -V, --strict). `launch()` does, in
order: take the descriptors km keeps, open /dev/kvm, build km's walls
(kontain.monitor.jail), find the payload inside its root, make the process and load the
program. Everything that can fail fails there, before the payload's first instruction,
as a LaunchError with the status km's command line exits with.
"""

from __future__ import annotations

import os

from kontain.kvm.api import Kvm
from kontain.linux import hostcall as host
from kontain.linux.numbers import NUMBERS as NR
from kontain.loader.elf import ExecError
from kontain.monitor import signals as sig
from kontain.monitor.exec import prepare
from kontain.monitor.fdspace import FdSpace
from kontain.monitor.jail import Jail
from kontain.monitor.process import Options, Outcome, Process
from kontain.monitor.root import host_path_in_root
from kontain.monitor.thread import GuestThread
from kontain.monitor.trace import Tracer

TYPE_CHECKING = False  # no typing import at run time: km start-up is timed
if TYPE_CHECKING:
    from collections.abc import Callable

    from kontain.monitor.devices import DeviceRules
    from kontain.monitor.syscall_filter import SeccompPolicy

EXIT_NOT_FOUND = 127
EXIT_CANNOT_EXECUTE = 126
EXIT_KM_ERROR = 1
GiB = 1 << 30
PR_GET_NO_NEW_PRIVS = 39
ENOENT, EACCES, ENOEXEC = 2, 13, 8


class LaunchSpec:
    """What to run, and how (every field has the default `km PAYLOAD` uses)."""

    def __init__(self, payload: str, args: list[bytes] | None = None,
                 argv0: bytes | None = None, env: list[bytes] | None = None,
                 root: str = "/", cwd: str | None = None, mem_size: int = 64 * GiB,
                 ignored_signals: frozenset[int] = frozenset(), signal_mask: int = 0,
                 rlimits: dict[int, tuple[int, int]] | None = None, personality: int = 0,
                 stats: bool = False, verbose: str | None = None, strict: bool = False,
                 diagnostics_fd: int = 2, kvm: Kvm | None = None,
                 keep_capabilities: bool = False,
                 syscall_filter: SeccompPolicy | None = None,
                 no_new_privs: bool | None = None,
                 device_rules: DeviceRules | None = None,
                 coredump: str | None = None, snapshot: str | None = None,
                 listen_on_resume: bool = False) -> None:
        #: The program, as named: looked up in PATH (inside the root) when it has no slash.
        self.payload = payload
        self.args = list(args or [])
        self.argv0 = os.fsencode(payload) if argv0 is None else argv0
        #: The environment; None: km's own, exactly as km was started.
        self.env = env
        #: The payload's / on the host; its working directory (a path inside it).
        self.root, self.cwd = root, cwd
        self.mem_size = mem_size
        #: What execve would carry over: signals left ignored, the blocked mask.
        self.ignored_signals, self.signal_mask = ignored_signals, signal_mask
        #: Limits to set for the payload (resource -> (soft, hard)); others inherited.
        self.rlimits = dict(rlimits or {})
        #: The execution domain and its flags (personality(2)), e.g. ADDR_NO_RANDOMIZE
        #: from `setarch -R`: kept across execve, as Linux keeps it.
        self.personality = personality
        self.stats, self.verbose, self.strict = stats, verbose, strict
        #: Where km writes its own messages (kept above the guest's descriptors).
        self.diagnostics_fd = diagnostics_fd
        #: /dev/kvm already open (krun opens it before the container's root hides it).
        self.kvm = kvm
        #: The capabilities km holds were set by whoever started it (krun, from the
        #: container's config): the jail keeps them instead of a container's default.
        self.keep_capabilities = keep_capabilities
        #: A seccomp profile for the payload's own calls (kontain.monitor.syscall_filter).
        self.syscall_filter = syscall_filter
        #: The payload's no_new_privs flag (km's own is always set, by its jail); None:
        #: as km was started.
        self.no_new_privs = no_new_privs
        #: A container's device rules, checked on each open of a device node
        #: (kontain.monitor.devices); None: no such check.
        self.device_rules = device_rules
        #: Where a core dump goes (a guest path template; None: core.PROGRAM.PID in the
        #: payload's working directory): kontain.monitor.coredump.
        self.coredump = coredump
        #: Where a snapshot the payload asks for goes (kontain.monitor.snapshot).
        self.snapshot = snapshot
        #: Resuming a snapshot: make its listening sockets first, and the rest only
        #: once a connection comes (kontain.monitor.resume.listen_first).
        self.listen_on_resume = listen_on_resume
        # ---- km --policy (kontain.monitor.enforce) --------------------------------------
        #: Builds the payload's view of its root (a mount namespace of km's own) before
        #: km's jail; returns the root to use.
        self.prepare_root: Callable[[str], str] | None = None
        #: Whether execve may run a program (the process, its real host path); None: any.
        self.exec_allowed: Callable[[Process, str], bool] | None = None
        #: The process tree's fork and clone limits (kontain.monitor.procpolicy).
        self.process_limits: object | None = None
        #: Called with km's FdSpace as soon as it exists: descriptors km was handed for
        #: itself (--stats-fd) leave the payload's range there.
        self.adopt_fds: Callable[[FdSpace], None] | None = None

    @property
    def argv(self) -> list[bytes]:
        return [self.argv0] + self.args


class LaunchError(Exception):
    """The payload cannot be started; status is what km's command line exits with."""

    def __init__(self, message: str, status: int, errno: int = 0) -> None:
        super().__init__(message)
        self.status = status
        #: What execve of the payload would have failed with (0: not an exec error).
        self.errno = errno


class Launched:
    """A process loaded and ready: run() hands it its first thread."""

    def __init__(self, proc: Process, thread: GuestThread) -> None:
        self.proc, self.thread = proc, thread

    def run(self) -> None:
        """Run the payload on this thread; returns only through on_exit's own exit."""
        self.proc.run(self.thread)


def inherited_environment() -> list[bytes]:
    """km's environment as it was exec'd, before Python's start-up changed it.

    Python sets LC_CTYPE when it coerces the C locale (PEP 538); the payload must see
    exactly what km was given, which /proc/self/environ still holds.
    """
    try:
        with open("/proc/self/environ", "rb") as f:
            return [entry for entry in f.read().split(b"\0") if entry]
    except OSError:
        return [k + b"=" + v for k, v in os.environb.items()]


def find_payload(name: str, search_path: str | None) -> str:
    """The file to run: name itself if it has a slash, else the first match in PATH."""
    if "/" in name:
        return name
    for directory in (search_path or "/usr/local/bin:/usr/bin:/bin").split(":"):
        candidate = os.path.join(directory or ".", name)
        if os.path.isfile(candidate) and os.access(candidate, os.X_OK):
            return candidate
    raise FileNotFoundError(name)


def launch(spec: LaunchSpec, handlers: dict[str, Callable[..., int]],
           on_exit: Callable[[Outcome], None]) -> Launched:
    """Make the process spec describes, ready to run; LaunchError if it cannot be."""
    if spec.root != "/" and not os.path.isdir(spec.root):
        raise LaunchError(f"--root {spec.root}: not a directory", EXIT_KM_ERROR)
    fds = FdSpace()
    if spec.adopt_fds is not None:
        spec.adopt_fds(fds)
    try:
        diagnostics = fds.move_high(os.dup(spec.diagnostics_fd))
    except OSError:  # started with stderr closed: km's own messages go nowhere
        diagnostics = fds.move_high(os.open(os.devnull, os.O_WRONLY | os.O_CLOEXEC))
    env = spec.env if spec.env is not None else inherited_environment()
    try:
        kvm = spec.kvm or Kvm()  # before the jail: km keeps /dev/kvm, and needs nothing else
        kvm.fd = fds.move_high(kvm.fd)
    except OSError as e:
        raise LaunchError(f"cannot open /dev/kvm: {e.strerror or e} (KVM is needed to run "
                          "payloads)", EXIT_KM_ERROR) from None
    trace = Tracer(spec.verbose, diagnostics)
    no_new_privs = spec.no_new_privs
    if no_new_privs is None:  # (before the jail sets km's)
        no_new_privs = host.syscall(NR["prctl"], PR_GET_NO_NEW_PRIVS, 0, 0, 0, 0) == 1
    root = spec.root
    if spec.prepare_root is not None:
        try:
            root = spec.prepare_root(root)
        except OSError as e:
            raise LaunchError(f"policy: {e}", EXIT_KM_ERROR) from None
    if root != "/" and (spec.snapshot or spec.listen_on_resume or _snapshot(
            os.path.join(root, spec.payload.lstrip("/")))):
        preload_snapshots()  # (under --root, km's own files are out of reach after this)
    root = Jail(trace, drop_capabilities=not spec.keep_capabilities).enter(root)
    if spec.cwd is not None:
        try:
            os.chdir(spec.cwd if root == "/" else host_path_in_root(root, spec.cwd, None))
        except OSError as e:
            raise LaunchError(f"cwd {spec.cwd}: {e.strerror}", EXIT_KM_ERROR) from None
    path = _payload_path(spec, root)
    options = Options(mem_size=spec.mem_size, stats=spec.stats, verbose=spec.verbose,
                      root=root, strict=spec.strict, syscall_filter=spec.syscall_filter,
                      device_rules=spec.device_rules, coredump=spec.coredump)
    options.snapshot = spec.snapshot
    try:
        proc = Process(options, fds, diagnostics, handlers, on_exit, kvm)
    except OSError as e:
        raise LaunchError(f"cannot create a VM: {e.strerror or e}", EXIT_KM_ERROR) from None
    execfn = os.fsencode(path)
    if proc.root.confined:  # the payload knows its file by its path inside the root
        execfn = proc.root.guest_path_of_host(os.fsencode(os.path.realpath(path))) or execfn
    proc.no_new_privs = no_new_privs
    try:
        proc.personality = spec.personality
        thread = proc.load(prepare(proc, execfn, spec.argv, env))
    except ExecError as e:
        if e.errno in (ENOEXEC, EACCES) and _snapshot(path):
            return _resume(proc, path, spec.listen_on_resume)
        raise LaunchError(f"{path}: {e}", EXIT_NOT_FOUND if e.errno == 2
                          else EXIT_CANNOT_EXECUTE, e.errno) from None
    except OSError as e:
        raise LaunchError(f"{path}: {e.strerror}", EXIT_NOT_FOUND if e.errno == 2
                          else EXIT_CANNOT_EXECUTE, e.errno or 0) from None
    _inherit(proc, thread, spec)
    # (after the first program is loaded: allow_exec is about what the payload execs)
    options.exec_allowed, options.process_limits = spec.exec_allowed, spec.process_limits
    return Launched(proc, thread)


def _payload_path(spec: LaunchSpec, root: str) -> str:
    try:
        if root != "/":
            path = host_path_in_root(root, spec.payload, os.environ.get("PATH"))
        else:
            path = find_payload(spec.payload, os.environ.get("PATH"))
    except FileNotFoundError:
        raise LaunchError(f"{spec.payload}: command not found", EXIT_NOT_FOUND,
                          ENOENT) from None
    if not os.path.exists(path):
        raise LaunchError(f"{path}: No such file or directory", EXIT_NOT_FOUND, ENOENT)
    if os.path.isdir(path) or not os.access(path, os.X_OK) and not _snapshot(path):
        raise LaunchError(f"{path}: Permission denied", EXIT_CANNOT_EXECUTE, EACCES)
    return path


def preload_snapshots() -> None:
    """Import what snapshots and resumes run before km's jail hides km's own files
    (only then: a cold start imports none of it)."""
    import select  # noqa: F401
    import socket  # noqa: F401

    from kontain.monitor import resume, snapshot  # noqa: F401


def _snapshot(path: str) -> bool:
    """Whether path is an ELF core: a snapshot to resume (asked only of what cannot be
    exec'd, and under --root before the jail; kontain.monitor.resume checks the rest)."""
    try:
        with open(path, "rb") as f:
            head = f.read(18)
    except OSError:
        return False
    return len(head) == 18 and head[:4] == b"\x7fELF" and head[16:18] == b"\x04\x00"


class _Resumed(Launched):
    """A process resumed from a snapshot: its other threads start with the first."""

    def __init__(self, proc: Process, thread: GuestThread, starters: list) -> None:
        super().__init__(proc, thread)
        self.starters = starters

    def run(self) -> None:
        for start in self.starters:
            start()
        self.proc.run(self.thread)


def _resume(proc: Process, path: str, listen_first: bool) -> Launched:
    """km FILE, FILE a snapshot (kontain.monitor.resume)."""
    from kontain.monitor import resume as r
    try:
        ready = r.listen_first(proc, path) if listen_first else frozenset()
        thread, starters = r.resume(proc, path, ready)
    except r.ResumeError as e:
        raise LaunchError(f"{path}: cannot resume: {e}", EXIT_KM_ERROR) from None
    return _Resumed(proc, thread, starters)


def _inherit(proc: Process, thread: GuestThread, spec: LaunchSpec) -> None:
    """What a program inherits from whoever started it: ignored signals, the mask,
    limits (as execve keeps them)."""
    for signo in spec.ignored_signals:
        if 1 <= signo <= sig.NSIG and signo not in (sig.SIGKILL, sig.SIGSTOP):
            proc.signals.actions[signo] = sig.Disposition(sig.SIG_IGN)
            proc.host_signals.disposition_changed(signo)
    thread.signal_mask = spec.signal_mask & ~sig.UNBLOCKABLE
    for resource_id, limit in spec.rlimits.items():
        proc.rlimits[resource_id] = limit
