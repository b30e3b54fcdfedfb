"""km: run a Linux x86-64 executable in its own KVM virtual machine.

    km [km options] PAYLOAD [payload arguments...]

km's options end at the payload. Exit status: the payload's, or 128+N when signal N
killed it (km ends itself with the same signal, so a shell sees exactly that); km's own
errors print one line `km: ...` and exit 127 (payload not found), 126 (cannot be
executed), or 1 (anything else, such as no /dev/kvm).
"""

from __future__ import annotations

import gc
import os
import sys

from kontain.cli.km_client import inherited_signal_state

TYPE_CHECKING = False  # no typing import at run time: km start-up is timed
if TYPE_CHECKING:
    from collections.abc import Callable

    from kontain.monitor.launch import Launched
    from kontain.monitor.process import Outcome, Process

USAGE = """\
usage: km [options] PAYLOAD [ARGS...]

Run PAYLOAD, a Linux x86-64 executable, in its own KVM virtual machine.

options:
  -V, --verbose[=REGEX]    trace km activity; REGEX selects categories
                           (syscall, mem, load, exit, signal)
  -e, --putenv NAME=VALUE  set a variable in the payload's environment, which then
                           holds only the variables given this way (repeatable)
  --copyenv                the payload inherits km's environment (the default)
  -S, --hcall-stats        print per-syscall counts and times when the payload exits
  --strict                 a km bug in a system call ends the payload (exit 134) rather
                           than failing that call with EIO (for test suites)
  --mem-size SIZE          largest guest physical memory (e.g. 512M, 4G; default 64G)
  --root DIR               make DIR the payload's / (paths cannot leave it)
  --argv0 NAME             the payload's argv[0] (default: PAYLOAD as given)
  --server SOCKET          run as a warm server on the unix socket SOCKET: a km
                           started with KM_SERVER=SOCKET in its environment asks it
                           to run its payload in a monitor forked from it (no
                           start-up cost; any other km option works as usual)
  --coredump PATH          where a payload killed by a core-dumping signal writes its
                           core when its RLIMIT_CORE allows (a path in the payload's
                           view, relative to its cwd; %p pid, %e program, %t time;
                           default core.PROGRAM.PID)
  --snapshot FILE          where a snapshot the payload asks for goes (default
                           ./kmsnap); `km FILE` resumes one (docs/ARCHITECTURE.md)
  --mgtpipe PATH           take snapshot requests on unix socket PATH (km_cli -s PATH)
  --listen-on-resume       (km SNAPSHOT) make its listening sockets, restore the rest
                           when the first connection comes
  --policy FILE            enforce the kontain.Policy in TOML file FILE
                           (docs/python-api.md)
  --stats-fd N             write JSON lines to descriptor N: the start (or why the
                           payload could not start), then a summary at its exit
  -g[PORT]                 gdb stub: wait for `target remote :PORT` (default 2159;
                           0: any free port; a path: a unix socket) before the
                           payload's first instruction (also `-g PORT`)
  --gdb-listen[=PORT]      gdb stub, but the payload runs: gdb may attach later
  -v, --version            print km's version
  -h, --help               print this help
"""

#: Guest RAM ends where the vDSO's guest physical pages start (machine.layout.VDSO_PA).
MAX_MEM_SIZE = 1 << 45
EXIT_NOT_FOUND = 127
EXIT_CANNOT_EXECUTE = 126
EXIT_KM_ERROR = 1


class UsageError(Exception):
    pass


class CommandLine:
    """km's options and the payload's command line."""

    def __init__(self) -> None:
        self.verbose: str | None = None
        self.putenv: list[str] | None = None
        self.stats = False
        self.mem_size = 64 << 30
        self.root = "/"
        self.payload: list[str] = []
        self.show_help = False
        self.show_version = False
        #: The payload's argv[0], when it is not the payload's name (--argv0).
        self.argv0: str | None = None
        self.strict = False
        #: km --server SOCKET: the warm server's socket (kontain.cli.km_server).
        self.server: str | None = None
        #: Where the payload's core dump goes (--coredump), None: the default name.
        self.coredump: str | None = None
        #: Where a snapshot goes (--snapshot), None: kmsnap in the payload's cwd.
        self.snapshot: str | None = None
        #: --mgtpipe: the unix socket km_cli asks for snapshots on.
        self.mgtpipe: str | None = None
        self.listen_on_resume = False
        #: km --policy FILE, --stats-fd N (kontain.monitor.enforce, statsfd).
        self.policy: str | None = None
        self.stats_fd: int | None = None
        #: The gdb stub's address (-g, --gdb-listen): "" the default, None no stub.
        self.gdb: str | None = None
        self.gdb_listen = False


def parse_size(text: str) -> int:
    units = {"k": 1 << 10, "m": 1 << 20, "g": 1 << 30, "t": 1 << 40}
    text = text.strip().lower().removesuffix("b").removesuffix("i")
    scale = 1
    if text and text[-1] in units:
        scale = units[text[-1]]
        text = text[:-1]
    try:
        value = int(text, 0) * scale
    except ValueError:
        raise UsageError(f"bad size {text!r}") from None
    if value < (64 << 20):
        raise UsageError("--mem-size must be at least 64M")
    if value > MAX_MEM_SIZE:
        raise UsageError(f"--mem-size must be at most {MAX_MEM_SIZE >> 40}T")
    return value


def _pattern(text: str) -> str:
    """A -V category pattern, checked now (a bad one is a usage error, not a crash)."""
    import re  # only with a pattern: km start-up is timed
    try:
        re.compile(text)
    except (re.error, OverflowError, RecursionError, ValueError) as e:
        raise UsageError(f"bad -V pattern {text!r}: {e}") from None
    return text


def parse(argv: list[str]) -> CommandLine:
    cl = CommandLine()
    i = 0
    while i < len(argv):
        arg = argv[i]
        if arg == "--":
            i += 1
            break
        if not arg.startswith("-") or arg == "-":
            break
        name, eq, value = arg.partition("=")
        if arg in ("-h", "--help"):
            cl.show_help = True
        elif arg in ("-v", "--version"):
            cl.show_version = True
        elif name in ("-V", "--verbose"):
            cl.verbose = _pattern(value) if eq else ""
        elif arg.startswith("-V") and len(arg) > 2:
            cl.verbose = _pattern(arg[2:])
        elif arg in ("-S", "--hcall-stats"):
            cl.stats = True
        elif arg == "--copyenv":
            cl.putenv = None
        elif arg.startswith("-g") and not arg.startswith("--"):
            cl.gdb = arg[2:]
            if not cl.gdb and i + 1 < len(argv) and argv[i + 1].isdigit():
                i += 1
                cl.gdb = argv[i]
        elif name == "--gdb-listen":
            cl.gdb_listen = True
            if eq or cl.gdb is None:
                cl.gdb = value
        elif arg == "--strict":
            cl.strict = True
        elif arg == "--listen-on-resume":
            cl.listen_on_resume = True
        elif name in ("-e", "--putenv", "--mem-size", "--argv0", "--root", "--server",
                      "--coredump", "--policy", "--stats-fd", "--snapshot", "--mgtpipe"):
            if not eq:
                i += 1
                if i >= len(argv):
                    raise UsageError(f"{arg} needs a value")
                value = argv[i]
            if name == "--mem-size":
                cl.mem_size = parse_size(value)
            elif name == "--argv0":
                cl.argv0 = value
            elif name == "--root":
                cl.root = value
            elif name == "--server":
                cl.server = value
            elif name in ("--coredump", "--snapshot", "--mgtpipe"):
                if not value:
                    raise UsageError(f"{name} needs a path")
                setattr(cl, name[2:], value)
            elif name == "--policy":
                cl.policy = value
            elif name == "--stats-fd":
                if not value.isdigit():
                    raise UsageError(f"--stats-fd takes a descriptor number, not {value!r}")
                cl.stats_fd = int(value)
            else:
                if "=" not in value:
                    raise UsageError(f"{arg} takes NAME=VALUE, not {value!r}")
                cl.putenv = (cl.putenv or []) + [value]
        else:
            raise UsageError(f"unknown option {arg}")
        i += 1
    cl.payload = argv[i:]
    return cl


def _error(message: str) -> None:
    os.write(2, f"km: {message}\n".encode(errors="replace"))


def inherited_personality() -> int:
    """km's own personality (setarch sets it before exec'ing km): the payload's."""
    import ctypes
    value = ctypes.CDLL(None).personality(0xFFFFFFFF)
    return value if value > 0 else 0


def command_line(argv: list[str], allow_server: bool = True) -> tuple[CommandLine | None, int]:
    """The parsed command line, or None and the status to exit with when km has nothing
    to run (a usage error, --help, --version: answered here; --server runs the server)."""
    try:
        cl = parse(argv)
    except UsageError as e:
        _error(str(e))
        return None, 2
    if cl.show_help:
        os.write(1, USAGE.encode())
        return None, 0
    if cl.show_version:
        from kontain import __version__
        os.write(1, f"km (kontain) {__version__}\n".encode())
        return None, 0
    if cl.server is not None:
        if cl.payload or not allow_server:
            _error("--server takes no payload" if allow_server else "--server: not here")
            return None, 2
        from kontain.cli.km_server import serve
        return None, serve(cl.server)
    if not cl.payload:
        _error("no payload given (km --help for usage)")
        return None, 2
    return cl, 0


def import_all() -> None:
    """Everything km will ever import, imported now: once the payload runs it may drop
    privileges or change what km can see (and km's jail hides the host's files). (The
    warm server imports it once, for all its monitors.)"""
    from kontain.monitor import exits, launch, process  # noqa: F401
    from kontain.monitor.vdso import install as _vdso  # noqa: F401 - imported for later
    from kontain.syscalls.registry import all_handlers  # noqa: F401


def run(cl: CommandLine, ignored: frozenset[int], mask: int, personality: int,
        env: list[bytes] | None = None, kvm: object = None,
        after_launch: Callable[[Launched], None] | None = None,
        before_exit: Callable[[Outcome, Process], None] | None = None) -> int:
    """Run cl's payload as a program started with this signal state and personality
    (env None: km's own environment, as it was exec'd; kvm: /dev/kvm already open).
    Returns only km's own failure status: the payload's end ends km (before_exit first).
    (The hooks are the warm server's: kontain.cli.km_server.)"""
    from kontain.monitor.exits import end_monitor
    from kontain.monitor.launch import LaunchError, LaunchSpec, launch
    from kontain.syscalls.registry import all_handlers

    gdb_socket = None
    if cl.gdb is not None:  # (before launch: km's jail allows no new listening socket)
        from kontain.monitor import debugger
        try:
            gdb_socket = debugger.listen(debugger.port_argument(cl.gdb))
        except (OSError, ValueError) as e:
            _error(f"gdb stub: {e}")
            return EXIT_KM_ERROR

    mgtpipe = None
    if cl.mgtpipe is not None:  # (before launch, as the gdb stub's socket)
        from kontain.monitor import mgtpipe as mgt
        try:
            mgtpipe = mgt.listen(cl.mgtpipe)
        except OSError as e:
            _error(f"--mgtpipe {cl.mgtpipe}: {e.strerror or e}")
            return EXIT_KM_ERROR

    spec = LaunchSpec(cl.payload[0], [os.fsencode(a) for a in cl.payload[1:]],
                      argv0=None if cl.argv0 is None else os.fsencode(cl.argv0),
                      env=env if cl.putenv is None else [os.fsencode(e) for e in cl.putenv],
                      root=cl.root, mem_size=cl.mem_size, stats=cl.stats, verbose=cl.verbose,
                      strict=cl.strict, ignored_signals=ignored, signal_mask=mask,
                      personality=personality, kvm=kvm, coredump=cl.coredump,
                      snapshot=cl.snapshot, listen_on_resume=cl.listen_on_resume)

    handlers = all_handlers()
    extras = None
    if cl.policy is not None or cl.stats_fd is not None:
        from kontain.monitor.enforce import Extras
        try:
            extras = Extras(cl.policy, cl.stats_fd)
            handlers = extras.configure(spec, handlers)
        except (OSError, ValueError) as e:
            _error(f"{'--policy' if cl.policy else '--stats-fd'}: {e}")
            return 2

    def finish(outcome: Outcome) -> None:
        """The payload is over (called from whichever thread ended it): leave km."""
        proc = launched.proc
        if extras is not None:
            extras.finished(proc, outcome)
        if proc.debugger is not None:
            proc.debugger.exited(outcome)
        if cl.stats:
            proc.trace.write(proc.stats_report())
        if before_exit is not None:
            before_exit(outcome, proc)
        end_monitor(outcome, proc.trace.write, "km")

    try:
        launched = launch(spec, handlers, finish)
    except LaunchError as e:
        if extras is None or extras.stats is None:
            _error(str(e))
        else:  # (said on the stats descriptor, to a caller that raises it as subprocess)
            extras.failed(e)
        return e.status
    if extras is not None:
        extras.launched(launched.proc)
    if gdb_socket is not None:
        from kontain.monitor.debugger import Debugger, announce
        proc = launched.proc
        announce(gdb_socket, not cl.gdb_listen)
        proc.debugger = Debugger(proc, gdb_socket,
                                 "/" if cl.root == "/" else os.path.abspath(cl.root))
        proc.debugger.start(None if cl.gdb_listen else launched.thread)
    if mgtpipe is not None:
        mgt.serve(launched.proc, mgtpipe)
    if after_launch is not None:
        after_launch(launched)
    # What start-up made lives as long as km: out of the collector's sight (also keeps
    # the pages a forked km shares with its parent from being written by collections).
    gc.freeze()
    gc.enable()
    launched.run()  # does not return: finish() ends km
    return EXIT_KM_ERROR


def main(argv: list[str] | None = None) -> int:
    cl, status = command_line(sys.argv[1:] if argv is None else argv)
    if cl is None:
        return status
    import_all()
    ignored, mask = inherited_signal_state()
    return run(cl, ignored, mask, inherited_personality())


def entry() -> None:
    """Console-script entry point: exit without Python's teardown (the payload is done).
    With KM_SERVER set, the payload runs warm, from that server, when it answers."""
    from kontain.cli import km_client
    if "KM_SERVER" in os.environ and not km_client.attempted:  # (the launcher tries first)
        km_client.run_warm(os.environb[b"KM_SERVER"], sys.argv[1:])  # returns if no answer
    status = main()
    os._exit(status)


if __name__ == "__main__":
    entry()
