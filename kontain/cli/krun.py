"""krun: an OCI runtime with runc's command line, every container process a km VM.

    krun [--root DIR] [--log FILE] [--log-format text|json] [--debug] [--systemd-cgroup]
         COMMAND [OPTIONS] ID

create, start, run, state, kill, delete, list, ps, pause, resume, spec, features: as runc
(see `krun --help`). Errors are one line on stderr (runc's text form, which shims parse)
and, with --log, one record in the log file (JSON with --log-format json); the exit
status is non-zero. `run` exits with the container's status.
"""

from __future__ import annotations

import _signal as signal  # not `signal`: it imports enum (krun's start-up is timed)
import os
import select
import sys
import time

from kontain import __version__
from kontain.cli.krun_cmdline import Command, Namespace, Option, UsageError, parse
from kontain.oci import cgroups, hooks, jsonio
from kontain.oci import spec as oci_spec
from kontain.oci.state import DEFAULT_ROOT, Container, StateError, all_containers, start_time

PR_SET_CHILD_SUBREAPER = 36


class Failure(Exception):
    """A command failed: its message is krun's one line of error."""


def _now() -> str:
    """The time now as RFC 3339 with microseconds (what datetime's isoformat gives,
    without importing datetime: krun's start-up is timed)."""
    ns = time.time_ns()
    seconds, fraction = divmod(ns, 1_000_000_000)
    return time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(seconds)) \
        + f".{fraction // 1000:06d}+00:00"


def _text_line(level: str, message: str) -> str:
    """A record as runc's text log format has it (stderr and --log-format text)."""
    return f"time={jsonio.dumps(_now())} level={level} msg={jsonio.dumps(message)}"


class Log:
    """--log and --log-format: where krun's records go, besides stderr for errors."""

    def __init__(self, path: str | None, form: str, debug: bool) -> None:
        self.path, self.form, self.debug_on = path, form, debug

    def record(self, level: str, message: str) -> None:
        if not self.path:
            return
        if self.form == "json":
            line = jsonio.dumps({"level": level, "msg": message, "time": _now()})
        else:
            line = _text_line(level, message)
        try:
            with open(self.path, "a") as f:
                f.write(line + "\n")
        except OSError:
            pass

    def error(self, message: str) -> None:
        self.record("error", message)
        sys.stderr.write(_text_line("error", message) + "\n")

    def warn(self, message: str) -> None:
        self.record("warning", message)
        sys.stderr.write(_text_line("warning", message) + "\n")

    def debug(self, message: str) -> None:
        if self.debug_on:
            self.record("debug", message)


# ---- the commands -------------------------------------------------------------------------

def cmd_create(args: Namespace, log: Log, detach_waiter: bool = False) -> int:
    """Make the container and leave its first process waiting for start; its host pid."""
    bundle = os.path.abspath(args.bundle or ".")
    try:
        config = oci_spec.load(bundle)
    except oci_spec.ConfigError as e:
        raise Failure(str(e)) from None
    if config.get("process") is None:
        raise Failure("config.json has no process to run")
    from kontain.kvm.api import Kvm
    from kontain.oci import init  # (not km itself: the first process imports that)

    try:
        kvm = Kvm()  # by krun: the container's device rules may not let its cgroup open it
    except OSError as e:
        raise Failure(f"cannot open /dev/kvm: {e.strerror or e}") from None
    policy = _syscall_filter(config)
    container = Container.make(args.root, args.id)
    try:
        return _create(args, log, config, bundle, container, init, policy, kvm)
    except BaseException:
        container.remove()
        raise


def _syscall_filter(config: dict):
    """linux.seccomp, compiled for km to enforce on the payload's calls."""
    from kontain.monitor.syscall_filter import SeccompProfileError, compile_profile
    try:
        return compile_profile((config.get("linux") or {}).get("seccomp"))
    except SeccompProfileError as e:
        raise Failure(f"linux.seccomp: {e}") from None


def _create(args: Namespace, log: Log, config: dict, bundle: str,
            container: Container, init, policy, kvm) -> int:
    cgroup = cgroups.Cgroup(cgroups.relative_path(config, args.id, args.systemd_cgroup))
    report_r, report_w = os.pipe2(os.O_CLOEXEC)
    go_r, go_w = os.pipe2(os.O_CLOEXEC)
    fifo_fd = os.open(container.fifo, os.O_PATH | os.O_CLOEXEC)
    console = _connect_console(args.console_socket)
    child = os.fork()
    if child == 0:
        os.close(report_r)
        os.close(go_w)
        init.container_init(config, bundle, init.Reporter(report_w), fifo_fd, console,
                            args.preserve_fds, kvm, go_r, cgroup, policy,
                            no_pivot=args.no_pivot)
    os.close(report_w)
    os.close(go_r)
    os.close(fifo_fd)
    os.close(kvm.fd)
    if console is not None:
        console.close()
    pid = None
    state = {
        "ociVersion": config["ociVersion"], "id": args.id, "status": "created", "pid": 0,
        "bundle": bundle, "rootfs": config["root"]["path"],
        "annotations": config.get("annotations") or {},
        "created": _now(), "owner": "",
    }

    def create_hooks(pid: int) -> None:
        """prestart and createRuntime, while the first process waits before its pivot."""
        hook_state = dict(state, pid=pid)
        try:
            hooks.run(config, "prestart", hook_state)
            hooks.run(config, "createRuntime", hook_state)
        except hooks.HookFailed as e:
            raise Failure(str(e)) from None
        os.write(go_w, jsonio.dumps({k: v for k, v in hook_state.items()
                                   if k not in ("rootfs", "created", "owner")}).encode()
                 + b"\n")

    try:
        # The first process imports km meanwhile (init.container_init): a cgroup
        # migration after a quiet spell waits for an RCU grace period, 5-15 ms here.
        try:
            cgroup.create()
            cgroup.apply((config.get("linux") or {}).get("resources") or {})
            cgroup.join(child)
        except OSError as e:
            raise Failure(f"cgroup {cgroup.relative}: {e}") from None
        finally:
            os.write(go_w, b"1")

        def map_ids(pid: int) -> None:
            try:
                init.write_id_maps(pid, config)
            except OSError as e:
                raise Failure(f"user namespace id maps: {e}") from None
            os.write(go_w, b"1")

        pid = _await_ready(report_r, create_hooks, map_ids)
    except BaseException:
        for victim in {child, pid} - {None}:
            try:
                os.kill(victim, signal.SIGKILL)
            except OSError:
                pass
        _reap(child)
        cgroup.remove(kill=True)
        raise
    finally:
        os.close(report_r)
        os.close(go_w)
    if pid != child:
        _reap(child)  # (the process that made the pid namespace, done)
    del state["status"]
    state.update(pid=pid, krun={"start_time": start_time(pid), "cgroup": cgroup.relative,
                                "hooks": config.get("hooks") or {}})
    container.save(state)
    if args.pid_file:
        temporary = args.pid_file + ".krun"
        with open(temporary, "w") as f:
            f.write(str(pid))
        os.replace(temporary, args.pid_file)
    log.debug(f"created {args.id}: pid {pid}")
    return pid


def _connect_console(path: str | None):
    from kontain.oci import init
    try:
        return init.connect_console(path)
    except OSError as e:
        raise Failure(f"console socket {path}: {e.strerror or e}") from None


def _await_ready(report: int, on_hooks=None, on_userns=None) -> int:
    """Read the first process's messages until it is ready; its pid. on_hooks(pid)
    runs create's hooks when the process asks, on_userns(pid) writes the id maps of
    the user namespace it made."""
    # The pid comes from the process that forked into the pid namespace, which races
    # with its child's own messages: a hooks request or "ready" may come first, and
    # waits for it.
    pid = None
    hooks_wanted = ready = False
    buffer = b""
    while True:
        chunk = os.read(report, 4096)
        if not chunk:
            raise Failure("the container's first process ended during create")
        buffer += chunk
        while b"\n" in buffer:
            line, buffer = buffer.split(b"\n", 1)
            message = jsonio.loads(line)
            if "error" in message:
                raise Failure(f"container init: {message['error']}")
            if "pid" in message:
                pid = message["pid"]
            if message.get("userns") and on_userns is not None:
                on_userns(message["userns"])
            hooks_wanted |= bool(message.get("hooks"))
            ready |= bool(message.get("ready"))
            if pid is None:
                continue
            if hooks_wanted and on_hooks is not None:
                hooks_wanted = False
                on_hooks(pid)
            if ready:
                return pid


def _reap(pid: int) -> None:
    try:
        os.waitpid(pid, 0)
    except ChildProcessError:
        pass


def cmd_start(args: Namespace, log: Log) -> int:
    container = Container.find(args.root, args.id)
    state = container.load()
    status = container.status(state)
    if status != "created":
        raise Failure(f"cannot start a container that is {status}: {args.id}")
    fd = os.open(container.fifo, os.O_RDONLY | os.O_NONBLOCK | os.O_CLOEXEC)
    try:
        poller = select.poll()
        poller.register(fd, select.POLLIN)
        while not poller.poll(100):
            if container.status(state) == "stopped":
                raise Failure(f"the container's process ended before start: {args.id}")
        os.read(fd, 1)
    finally:
        os.close(fd)
    os.unlink(container.fifo)
    log.debug(f"started {args.id}")
    hook_state = dict(container.public_state(), status="running")
    for warning in hooks.run_all({"hooks": state.get("krun", {}).get("hooks")}, "poststart",
                                 hook_state):
        log.warn(warning)
    return 0


def cmd_state(args: Namespace, log: Log) -> int:
    container = Container.find(args.root, args.id)
    print(jsonio.dumps(container.public_state(), indent=2))
    return 0


#: Signal names (and the kernel's aliases: SIGIOT, SIGCLD, SIGPOLL) -> numbers.
SIGNALS = {name: getattr(signal, name) for name in dir(signal)
           if name.startswith("SIG") and not name.startswith("SIG_")}


def parse_signal(text: str) -> int:
    """A signal as kill(1) and runc take it: 9, KILL, SIGKILL, RTMIN+2, SIGRTMAX-1."""
    text = text.upper()
    if text.isdigit():
        return int(text)
    name = text if text.startswith("SIG") else "SIG" + text
    base, sign, offset = name.replace("-", "+-", 1).partition("+")
    if sign and base in ("SIGRTMIN", "SIGRTMAX") and offset.lstrip("-").isdigit():
        signo = SIGNALS[base] + int(offset)
        if SIGNALS["SIGRTMIN"] <= signo <= SIGNALS["SIGRTMAX"]:
            return signo
    elif name in SIGNALS:
        return SIGNALS[name]
    raise Failure(f"unknown signal {text!r}")


def cmd_kill(args: Namespace, log: Log) -> int:
    container = Container.find(args.root, args.id)
    state = container.load()
    signo = parse_signal(args.signal)
    if container.status(state) == "stopped":
        raise Failure(f"container not running: {args.id}")
    targets = cgroups.Cgroup(state["krun"]["cgroup"]).pids() if args.all else []
    for pid in targets or [state["pid"]]:
        try:
            os.kill(pid, signo)
        except ProcessLookupError:
            continue
    return 0


def _destroy(container: Container, state: dict) -> None:
    """Kill what is left of the container, wait for it, and forget it."""
    relative = state.get("krun", {}).get("cgroup")
    cgroup = cgroups.Cgroup(relative) if relative else None
    pid = state.get("pid") or 0
    if container.status(state) != "stopped":
        for victim in set(cgroup.pids() if cgroup else []) | {pid}:
            try:
                os.kill(victim, signal.SIGKILL)
            except OSError:
                pass
        deadline = time.monotonic() + 10
        while container.status(state) != "stopped" and time.monotonic() < deadline:
            time.sleep(0.005)  # (not our child: nothing to wait on but its /proc entry)
    if cgroup:
        try:
            cgroup.remove(kill=True)
        except OSError:
            pass
    container.remove()


def cmd_delete(args: Namespace, log: Log) -> int:
    try:
        container = Container.find(args.root, args.id)
    except StateError:
        if args.force:
            return 0
        raise
    state = container.load()
    status = container.status(state)
    if status != "stopped" and not args.force:
        raise Failure(f"cannot delete container {args.id} that is not stopped: {status}")
    hook_state = dict(container.public_state(), status="stopped")
    _destroy(container, state)
    for warning in hooks.run_all({"hooks": state.get("krun", {}).get("hooks")}, "poststop",
                                 hook_state):
        log.warn(warning)
    return 0


def cmd_run(args: Namespace, log: Log) -> int:
    _become_subreaper()
    pid = cmd_create(args, log)
    try:
        cmd_start(args, log)
    except BaseException:
        _destroy(Container.find(args.root, args.id), Container.find(args.root, args.id).load())
        raise
    if args.detach:
        return 0
    status = _wait_for(pid)
    container = Container.find(args.root, args.id)
    if not args.keep:
        _destroy(container, container.load())
    return status


def _become_subreaper() -> None:
    """A process of ours whose parent exits (the one that made a pid namespace) comes
    back to us, so that we can wait for it."""
    import ctypes
    ctypes.CDLL(None).prctl(PR_SET_CHILD_SUBREAPER, 1, 0, 0, 0)


def _wait_for(pid: int) -> int:
    """Wait for our process pid, passing it the signals we get; its exit status (128+N
    for a signal N)."""
    def forward(signo: int, _frame: object) -> None:
        try:
            os.kill(pid, signo)
        except OSError:
            pass
    for signo in (signal.SIGINT, signal.SIGTERM, signal.SIGHUP, signal.SIGQUIT,
                  signal.SIGUSR1, signal.SIGUSR2, signal.SIGWINCH):
        signal.signal(signo, forward)
    while True:
        try:
            waited, raw = os.waitpid(-1, 0)
        except ChildProcessError:
            return 255
        except InterruptedError:
            continue
        if waited == pid:
            status = os.waitstatus_to_exitcode(raw)
            return 128 - status if status < 0 else status


def cmd_exec(args: Namespace, log: Log) -> int:
    """One more process in a running container (kontain.oci.enter)."""
    from kontain.oci import enter, init

    container = Container.find(args.root, args.id)
    state = container.load()
    status = container.status(state)
    if status not in ("running", "created"):
        raise Failure(f"cannot exec in a {status} container: {args.id}")
    try:
        config = oci_spec.load(state["bundle"])
    except oci_spec.ConfigError as e:
        raise Failure(str(e)) from None
    if args.process:
        with open(args.process) as f:
            process = jsonio.load(f)
    elif args.argv:
        process = enter.process_for_exec(config, args.argv, args.cwd, args.env or [],
                                         args.user, args.tty)
    else:
        raise Failure("exec needs a command or --process")
    if args.additional_gids:
        process.setdefault("user", {})["additionalGids"] = args.additional_gids
    for name in args.cap:  # as runc's exec --cap: bounding, effective and permitted
        name = name.upper()
        name = name if name.startswith("CAP_") else "CAP_" + name
        sets = process.setdefault("capabilities", {})
        for key in ("bounding", "effective", "permitted"):
            if name not in sets.setdefault(key, []):
                sets[key].append(name)
    if args.no_new_privs:
        process["noNewPrivileges"] = True
    try:
        kvm = init.preload()
    except OSError as e:
        raise Failure(f"cannot open /dev/kvm: {e.strerror or e}") from None
    if not args.detach:
        _become_subreaper()
    report_r, report_w = os.pipe2(os.O_CLOEXEC)
    console = _connect_console(args.console_socket)
    child = os.fork()
    if child == 0:
        os.close(report_r)
        enter.enter(state["pid"], cgroups.Cgroup(state["krun"]["cgroup"]), process,
                    init.Reporter(report_w), console, args.preserve_fds, kvm,
                    _syscall_filter(config), init.device_rules_of(config))
    os.close(report_w)
    os.close(kvm.fd)
    if console is not None:
        console.close()
    try:
        pid = _await_ready(report_r)
    except BaseException:
        _reap(child)
        raise
    finally:
        os.close(report_r)
    if pid != child:
        _reap(child)
    if args.pid_file:
        with open(args.pid_file + ".krun", "w") as f:
            f.write(str(pid))
        os.replace(args.pid_file + ".krun", args.pid_file)
    return 0 if args.detach else _wait_for(pid)


def cmd_list(args: Namespace, log: Log) -> int:
    rows = []
    for container in all_containers(args.root):
        try:
            rows.append(container.public_state())
        except StateError:
            continue
    if args.quiet:
        for row in rows:
            print(row["id"])
    elif args.format == "json":
        print(jsonio.dumps([{"ociVersion": r.get("ociVersion"), "id": r["id"], "pid": r["pid"],
                           "status": r["status"], "bundle": r.get("bundle"),
                           "rootfs": r.get("rootfs"), "created": r.get("created"),
                           "annotations": r.get("annotations"), "owner": r.get("owner", "")}
                          for r in rows]))
    else:
        print(f"{'ID':<12}{'PID':<10}{'STATUS':<10}{'BUNDLE':<40}{'CREATED':<32}OWNER")
        for r in rows:
            print(f"{r['id']:<12}{r['pid']:<10}{r['status']:<10}{r.get('bundle', ''):<40}"
                  f"{r.get('created', ''):<32}{r.get('owner') or 'root'}")
    return 0


def cmd_ps(args: Namespace, log: Log) -> int:
    container = Container.find(args.root, args.id)
    state = container.load()
    pids = cgroups.Cgroup(state["krun"]["cgroup"]).pids()
    if args.format == "json":
        print(jsonio.dumps(pids))
        return 0
    print("PID CMD")
    for pid in pids:
        try:
            with open(f"/proc/{pid}/cmdline", "rb") as f:
                command = f.read().replace(b"\0", b" ").decode(errors="replace").strip()
        except OSError:
            continue
        print(pid, command)
    return 0


def _freeze(args: Namespace, frozen: bool) -> int:
    container = Container.find(args.root, args.id)
    state = container.load()
    status = container.status(state)
    if status not in (("running",) if frozen else ("paused",)):
        raise Failure(f"container {args.id} is {status}, not "
                      f"{'running' if frozen else 'paused'}")
    try:
        cgroups.Cgroup(state["krun"]["cgroup"]).freeze(frozen)
    except OSError as e:
        raise Failure(f"freezer: {e}") from None
    state["krun"]["paused"] = frozen
    container.save(state)
    return 0


def _size(text: str) -> int:
    """runc's sizes: bytes, or with a k/m/g suffix (1024-based); -1 for no limit."""
    text = text.strip().lower().removesuffix("b")
    scale = {"k": 1 << 10, "m": 1 << 20, "g": 1 << 30}.get(text[-1:], 1)
    return int(text[:-1] if scale > 1 else text) * scale


def cmd_update(args: Namespace, log: Log) -> int:
    """New limits for a running container's cgroup: --resources (JSON, the shape of
    linux.resources; - for stdin) and the single-value options runc has."""
    container = Container.find(args.root, args.id)
    state = container.load()
    if container.status(state) == "stopped":
        raise Failure(f"container not running: {args.id}")
    resources: dict = {}
    if args.resources:
        text = sys.stdin.read() if args.resources == "-" else open(args.resources).read()
        resources = jsonio.loads(text)
    memory = resources.setdefault("memory", {})
    cpu = resources.setdefault("cpu", {})
    for value, section, key, convert in (
            (args.memory, memory, "limit", _size), (args.memory_swap, memory, "swap", _size),
            (args.memory_reservation, memory, "reservation", _size),
            (args.cpu_shares, cpu, "shares", int), (args.cpu_quota, cpu, "quota", int),
            (args.cpu_period, cpu, "period", int), (args.cpuset_cpus, cpu, "cpus", str),
            (args.cpuset_mems, cpu, "mems", str)):
        if value is not None:
            section[key] = convert(value)
    if args.pids_limit is not None:
        resources["pids"] = {"limit": int(args.pids_limit)}
    try:
        cgroups.Cgroup(state["krun"]["cgroup"]).apply(resources)
    except OSError as e:
        raise Failure(f"update {args.id}: {e}") from None
    return 0


def cmd_spec(args: Namespace, log: Log) -> int:
    path = os.path.join(args.bundle or ".", "config.json")
    if os.path.exists(path):
        raise Failure(f"File {path} exists. Remove it first")
    with open(path, "w") as f:
        jsonio.dump(oci_spec.default_config(args.rootless), f, indent="\t")
    return 0


def cmd_features(args: Namespace, log: Log) -> int:
    from kontain.monitor import syscall_filter as sf
    from kontain.oci.rootfs import FLAGS, PROPAGATION, RECURSIVE
    features = {
        "ociVersionMin": "1.0.0", "ociVersionMax": oci_spec.OCI_VERSION,
        "hooks": ["prestart", "createRuntime", "createContainer", "startContainer",
                  "poststart", "poststop"],
        "mountOptions": sorted([*FLAGS, *PROPAGATION, *RECURSIVE, "tmpcopyup"]),
        "linux": {
            "namespaces": sorted(oci_spec.NAMESPACE_FLAGS),
            "capabilities": sorted(oci_spec.CAPABILITIES),
            "cgroup": {"v1": True, "v2": True, "systemd": True, "systemdUser": False},
            "seccomp": {"enabled": True, "actions": sorted(sf.ACTIONS),
                        "operators": sorted(sf.OPERATORS),
                        "archs": sorted(sf.ARCHITECTURES)},
            "apparmor": {"enabled": False}, "selinux": {"enabled": False},
        },
        "annotations": {"org.opencontainers.runc.version": f"krun {__version__}"},
    }
    print(jsonio.dumps(features, indent=4))
    return 0


# ---- the command line ---------------------------------------------------------------------

GLOBAL_OPTIONS = (
    Option("--root", default=DEFAULT_ROOT), Option("--log"),
    Option("--log-format", choices=("text", "json"), default="text"),
    Option("--debug", kind="flag"), Option("--systemd-cgroup", kind="flag"),
    Option("--rootless", default="auto"), Option("--criu"),
    Option("-v", "--version", kind="flag"),
)
_CREATE_OPTIONS = (
    Option("-b", "--bundle"), Option("--pid-file"), Option("--console-socket"),
    Option("--preserve-fds", default=0, convert=int), Option("--no-pivot", kind="flag"),
    Option("--no-new-keyring", kind="flag"),
)
_FORMAT = Option("-f", "--format", choices=("table", "json"), default="table")
_UPDATE_VALUES = ("--memory", "--memory-swap", "--memory-reservation", "--cpu-shares",
                  "--cpu-quota", "--cpu-period", "--cpuset-cpus", "--cpuset-mems",
                  "--pids-limit", "--blkio-weight", "--kernel-memory", "--kernel-memory-tcp",
                  "--l3-cache-schema", "--mem-bw-schema")
COMMANDS = {command.name: command for command in (
    Command("create", cmd_create, "create a container", ("id",), _CREATE_OPTIONS),
    Command("run", cmd_run, "create and start a container, wait for it", ("id",),
            _CREATE_OPTIONS + (Option("-d", "--detach", kind="flag"),
                               Option("--keep", kind="flag"))),
    Command("start", cmd_start, "start a created container", ("id",)),
    Command("state", cmd_state, "print a container's state", ("id",)),
    Command("exec", cmd_exec, "run one more process in a container", ("id",), (
        Option("-p", "--process"), Option("-t", "--tty", kind="flag"),
        Option("-d", "--detach", kind="flag"), Option("--pid-file"),
        Option("--console-socket"), Option("--cwd"), Option("-e", "--env", kind="append"),
        Option("-u", "--user"),
        Option("-g", "--additional-gids", kind="append", convert=int),
        Option("--preserve-fds", default=0, convert=int), Option("--cap", kind="append"),
        Option("--no-new-privs", kind="flag"), Option("--apparmor"),
        Option("--process-label")), rest="argv"),
    Command("kill", cmd_kill, "send a signal to a container's process",
            ("id", "signal=SIGTERM"), (Option("-a", "--all", kind="flag"),)),
    Command("delete", cmd_delete, "delete a container", ("id",),
            (Option("-f", "--force", kind="flag"),)),
    Command("list", cmd_list, "list containers", (),
            (_FORMAT, Option("-q", "--quiet", kind="flag"))),
    Command("ps", cmd_ps, "list a container's processes", ("id",), (_FORMAT,)),
    Command("update", cmd_update, "change a running container's resource limits",
            ("id",), (Option("-r", "--resources"),
                      *(Option(name) for name in _UPDATE_VALUES))),
    Command("pause", lambda a, _log: _freeze(a, True), "pause a container", ("id",)),
    Command("resume", lambda a, _log: _freeze(a, False), "resume a paused container",
            ("id",)),
    Command("spec", cmd_spec, "write a config.json template", (),
            (Option("-b", "--bundle"), Option("--rootless", kind="flag"))),
    Command("features", cmd_features, "print the runtime's features"),
)}


def usage(command: str | None = None) -> str:
    if command in COMMANDS:
        return f"usage: {COMMANDS[command].usage()}\n\n{COMMANDS[command].help}\n"
    lines = ["usage: krun [--root DIR] [--log FILE] [--log-format text|json] [--debug]",
             "            [--systemd-cgroup] [-v] COMMAND [OPTIONS] ...", "",
             "An OCI runtime whose container processes each run in a km VM.", "",
             "commands:"]
    lines += [f"  {c.name:10} {c.help}" for c in COMMANDS.values()]
    return "\n".join(lines) + "\n"


def main(argv: list[str] | None = None) -> int:
    try:
        args = parse(sys.argv[1:] if argv is None else argv, GLOBAL_OPTIONS, COMMANDS)
    except UsageError as e:
        sys.stderr.write(f"krun: {e}\n")
        return 2
    if args.help:
        sys.stdout.write(usage(args.command))
        return 0
    if args.version:
        print(f"krun version {__version__}\nspec: {oci_spec.OCI_VERSION}")
        return 0
    log = Log(args.log, args.log_format, args.debug)
    if not args.command:
        sys.stderr.write(usage())
        return 1
    try:
        result = args.handler(args, log)
        return result if args.command in ("run", "exec") else 0
    except (Failure, StateError, oci_spec.ConfigError) as e:
        log.error(str(e))
        return 1
    except OSError as e:
        log.error(f"{args.command}: {e}")
        return 1


def entry() -> None:
    status = main()
    sys.stdout.flush()
    os._exit(status)


if __name__ == "__main__":
    entry()
