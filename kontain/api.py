"""kontain.run and kontain.Popen: subprocess's interface, each process in its own VM.

The payload runs under km, started as a subprocess (`km_command()`), so every argument
subprocess gives meaning to (stdin/stdout/stderr as PIPE, DEVNULL, STDOUT, a descriptor
or a file object, input, text/encoding/errors, cwd, env, pass_fds, timeout, check) has
the same meaning here: it applies to km, whose standard streams, environment and working
directory the payload inherits. The same errors come back: FileNotFoundError (and
PermissionError, OSError ENOEXEC) from the constructor when the program cannot be
executed (km reports it on its --stats-fd before the payload would start, with the errno
an execve would give), TimeoutExpired, CalledProcessError.

What is added:

- `policy` (kontain.Policy; `root=` is a shorthand for Policy(root=...)): km enforces it
  (km --policy), except wall_time (this module kills the payload's whole process tree
  at that time: returncode -9, `stats.limit == "wall_time"`) and max_output (run and
  communicate stop reading past it, keep the first max_output bytes of stdout and stderr
  together, and kill the tree: returncode -9, `stats.limit == "max_output"`).
- `.stats` once the payload has ended (kontain.api.Stats, from km --stats-fd).
- No process is left behind: kill(), a timeout, wall_time and the end of run() kill every
  process of the payload's tree (each is a km holding the stats pipe, however it was
  forked, whatever session or group it moved to).

A later warm pool plugs in at `_start`: what it returns (a started km, its stats
descriptor) is all a Popen needs.
"""

from __future__ import annotations

import dataclasses
import errno
import os
import selectors
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Iterable, Mapping, Sequence
from subprocess import DEVNULL, PIPE, STDOUT, CalledProcessError, TimeoutExpired
from typing import IO, Any, Union

from kontain.policy import Policy

__all__ = ["run", "Popen", "CompletedProcess", "Stats", "PIPE", "DEVNULL", "STDOUT",
           "TimeoutExpired", "CalledProcessError", "km_command"]

StrOrBytesPath = Union[str, bytes, "os.PathLike[str]", "os.PathLike[bytes]"]
File = int | IO[Any] | None
_PACKAGE_PARENT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
_BOOT = ("import sys; sys.path.insert(0, {!r}); import gc; gc.disable(); "
         "from kontain.cli.km import entry; entry()")


def km_command() -> list[str]:
    """How km is started: $KONTAIN_KM (split on whitespace) if set, else this Python with
    this kontain package (-I -S: the caller's PYTHON* variables and site do not reach km)."""
    override = os.environ.get("KONTAIN_KM", "").split()
    if override:
        return override
    return [sys.executable, "-I", "-S", "-c", _BOOT.format(_PACKAGE_PARENT)]


@dataclasses.dataclass(frozen=True)
class Stats:
    """What km measured of the payload's first process (km --stats-fd)."""

    #: Seconds from km's start to the payload's end (measured here if km could not say).
    wall_time: float
    #: CPU seconds of km (the guest's time in its VM and km's work for it).
    cpu_time: float | None = None
    #: km's peak resident memory in bytes (guest memory touched, and km's own).
    peak_memory: int | None = None
    #: Guest memory in use at the end, bytes.
    guest_memory: int | None = None
    #: System calls by name.
    syscalls: Mapping[str, int] = dataclasses.field(default_factory=dict)
    #: VM exits of the first process's vCPUs, as KVM counts them (all kinds).
    vm_exits: int | None = None
    #: System calls the first process made (each one VM exit).
    hypercalls: int | None = None
    #: Calls the policy refused, by name (the first process's).
    denied: Mapping[str, int] = dataclasses.field(default_factory=dict)
    #: Each refused call, {"call": name, "verdict": ...} (policy.deny_log).
    denials: Sequence[Mapping[str, str]] = ()
    #: The limit this side enforced, if one ended the payload: "wall_time", "max_output".
    limit: str | None = None


class CompletedProcess(subprocess.CompletedProcess):
    """subprocess.CompletedProcess, with the payload's .stats."""

    def __init__(self, args: Any, returncode: int, stdout: Any = None, stderr: Any = None,
                 stats: Stats | None = None) -> None:
        super().__init__(args, returncode, stdout, stderr)
        self.stats = stats


def _policy(policy: Policy | None, root: StrOrBytesPath | None) -> Policy:
    policy = policy if policy is not None else Policy.default()
    if root is not None:
        policy = policy | Policy(root=os.fsdecode(root))
    return policy


def _command(argv: list[str], km_options: Sequence[str], policy: Policy
             ) -> tuple[list[str], int, tuple[int, ...]]:
    """The km command line for argv under policy, the read end of its stats pipe, and
    the descriptors km must be handed (then closed here)."""
    stats_read, stats_write = os.pipe2(os.O_CLOEXEC)
    keep = [stats_write]
    command = km_command() + list(km_options) + ["--stats-fd", str(stats_write)]
    if policy.km_fields():
        text = policy.to_toml(km_only=True).encode()
        policy_read, policy_write = os.pipe2(os.O_CLOEXEC)
        keep.append(policy_read)
        try:
            _write_all(policy_write, text)  # (a policy is far below a pipe's 64 KiB)
        finally:
            os.close(policy_write)
        command += ["--policy", f"/dev/fd/{policy_read}"]
    return command + ["--"] + argv, stats_read, tuple(keep)


def _start(argv: list[str], km_options: Sequence[str], policy: Policy,
           popen_kwargs: dict[str, Any]) -> tuple[subprocess.Popen, int]:
    """Start km for argv under policy; returns it and the read end of its stats pipe.
    (Where a warm pool will hand out a km it started earlier.)"""
    command, stats_read, keep = _command(argv, km_options, policy)
    try:
        pass_fds = tuple(popen_kwargs.pop("pass_fds", ())) + keep
        km = subprocess.Popen(command, pass_fds=pass_fds, **popen_kwargs)
    except BaseException:
        os.close(stats_read)
        raise
    finally:
        for fd in keep:
            os.close(fd)
    return km, stats_read


def _raise_start_error(line: bytes, program: str, status: int | None) -> None:
    """What subprocess raises when execve of program fails (km said why on line)."""
    import json
    try:
        record = json.loads(line) if line else {}
    except ValueError:
        record = {}
    code = record.get("errno")
    if code:
        raise OSError(code, os.strerror(code), program)
    raise OSError(errno.EIO, f"km could not start {program!r} (exit status {status}): "
                             f"{record.get('error', 'no reason given')}")


def _write_all(fd: int, data: bytes) -> None:
    view = memoryview(data)
    while view:
        view = view[os.write(fd, view):]


def _read_line(fd: int) -> bytes:
    """The first line km writes on its stats pipe (b"" if it ended without one)."""
    line = b""
    while not line.endswith(b"\n"):
        chunk = os.read(fd, 1)
        if not chunk:
            break
        line += chunk
    return line


def _parent_of(pid: int) -> int:
    try:
        with open(f"/proc/{pid}/stat", "rb") as f:
            return int(f.read().rsplit(b")", 1)[1].split()[1])
    except (OSError, ValueError, IndexError):
        return 0


def _pipe_holders(inode: int, km_pid: int) -> list[int]:
    """The processes of a payload: those holding an end of pipe inode, but this one and
    its other children. (A child this process is starting in another thread holds every
    descriptor of ours until its exec closes them: it is not the payload's.)"""
    target = f"pipe:[{inode}]"
    me = os.getpid()
    holders = []
    for entry in os.listdir("/proc"):
        if not entry.isdigit() or int(entry) == me:
            continue
        try:
            for name in os.listdir(f"/proc/{entry}/fd"):
                if os.readlink(f"/proc/{entry}/fd/{name}") == target:
                    pid = int(entry)
                    if pid == km_pid or _parent_of(pid) != me:
                        holders.append(pid)
                    break
        except OSError:
            continue
    return holders


def kill_tree(stats_fd: int, km_pid: int) -> None:
    """SIGKILL every process of a payload: each is a km holding its stats pipe (km_pid,
    the first, and what it forked). Repeated until none holds it (a process forked
    between a look and the kill is found next time; one that was killed cannot fork)."""
    inode = os.fstat(stats_fd).st_ino
    for _ in range(100):
        if _writers_gone(stats_fd):
            return
        holders = _pipe_holders(inode, km_pid)
        if not holders:
            return
        for pid in holders:
            try:
                os.kill(pid, signal.SIGKILL)
            except ProcessLookupError:
                pass
        time.sleep(0.001)


def _writers_gone(fd: int) -> bool:
    """True when no process holds the write end any more (poll says POLLHUP)."""
    import select
    p = select.poll()
    p.register(fd, select.POLLIN)
    return any(events & select.POLLHUP for _fd, events in p.poll(0))


def _parse_stats(data: bytes, wall: float, limit: str | None) -> Stats:
    import json
    summary: dict[str, Any] = {}
    for line in data.splitlines():
        try:
            record = json.loads(line)
        except ValueError:
            continue
        if "exit" in record:
            summary = record
    if not summary:
        return Stats(wall_time=wall, limit=limit)
    return Stats(wall_time=summary.get("wall_time", wall), cpu_time=summary.get("cpu_time"),
                 peak_memory=summary.get("peak_rss"), guest_memory=summary.get("guest_memory"),
                 syscalls=summary.get("syscalls", {}), vm_exits=summary.get("vm_exits"),
                 hypercalls=summary.get("hypercalls"),
                 denied=summary.get("denied", {}), denials=tuple(summary.get("denials", ())),
                 limit=limit)


class Popen:
    """subprocess.Popen's interface (POSIX, no shell), for a payload in its own VM."""

    def __init__(self, args: StrOrBytesPath | Sequence[StrOrBytesPath], bufsize: int = -1,
                 stdin: File = None, stdout: File = None, stderr: File = None, *,
                 cwd: StrOrBytesPath | None = None, env: Mapping[str, str] | None = None,
                 text: bool | None = None, encoding: str | None = None,
                 errors: str | None = None, universal_newlines: bool | None = None,
                 pass_fds: Iterable[int] = (), root: StrOrBytesPath | None = None,
                 policy: Policy | None = None, km_options: Sequence[str] = ()) -> None:
        if isinstance(args, (str, bytes, os.PathLike)):
            argv = [os.fsdecode(args)]
        else:
            argv = [os.fsdecode(a) for a in args]
        if not argv:
            raise IndexError("list index out of range")  # (subprocess's own error)
        self.args = args
        self.policy = _policy(policy, root)
        self._text = bool(text or universal_newlines or encoding or errors)
        self._encoding, self._errors = encoding, errors
        self.returncode: int | None = None
        self.stats: Stats | None = None
        self._limit: str | None = None
        self._lock = threading.Lock()
        #: Held while the stats pipe is used to find the tree, and to close it.
        self._tree_lock = threading.Lock()
        self._timer: threading.Timer | None = None
        self._stats_data = b""
        host_cwd = cwd
        if cwd is not None and self.policy.root is not None:
            host_cwd = os.path.join(self.policy.root, os.fsdecode(cwd).lstrip("/"))
        self._started = time.monotonic()
        self._km, self._stats_fd = _start(argv, km_options, self.policy, dict(
            bufsize=bufsize, stdin=stdin, stdout=stdout, stderr=stderr, cwd=host_cwd,
            env=env, text=text, encoding=encoding, errors=errors,
            universal_newlines=universal_newlines, pass_fds=tuple(pass_fds)))
        self.pid = self._km.pid
        self.stdin, self.stdout, self.stderr = self._km.stdin, self._km.stdout, self._km.stderr
        line = _read_line(self._stats_fd)
        if not line.startswith(b'{"started"'):
            self._fail_to_start(line, argv[0])
        if self.policy.wall_time is not None:
            self._timer = threading.Timer(self.policy.wall_time, self._wall_time_hit)
            self._timer.daemon = True
            self._timer.start()

    def _fail_to_start(self, line: bytes, program: str) -> None:
        self._km.wait()
        for stream in (self._km.stdin, self._km.stdout, self._km.stderr):
            if stream is not None:
                stream.close()
        os.close(self._stats_fd)
        self._stats_fd = -1
        _raise_start_error(line, program, self._km.returncode)

    # ---- the process's end -----------------------------------------------------------

    def _ended(self) -> None:
        """The first process ended and was reaped: its stats, its returncode."""
        with self._lock:
            if self.returncode is not None or self._stats_fd < 0:
                if self.returncode is None:
                    self.returncode = self._km.returncode
                return
            if self._timer is not None:
                self._timer.cancel()
            wall = time.monotonic() - self._started
            os.set_blocking(self._stats_fd, False)
            try:
                while chunk := os.read(self._stats_fd, 65536):
                    self._stats_data += chunk
            except BlockingIOError:
                pass
            self.stats = _parse_stats(self._stats_data, wall, self._limit)
            self.returncode = self._km.returncode

    def kill_tree(self) -> None:
        """SIGKILL the payload and every process it made."""
        with self._tree_lock:  # (the wall_time timer's thread, and the caller's)
            if self._stats_fd >= 0:
                kill_tree(self._stats_fd, self.pid)

    def _wall_time_hit(self) -> None:
        with self._tree_lock:
            if self._stats_fd < 0 or self._km.poll() is not None:
                return
            self._limit = "wall_time"
            kill_tree(self._stats_fd, self.pid)

    def poll(self) -> int | None:
        if self._km.poll() is not None:
            self._ended()
        return self.returncode

    def wait(self, timeout: float | None = None) -> int:
        try:
            self._km.wait(timeout)
        except TimeoutExpired:
            raise TimeoutExpired(self.args, timeout) from None
        self._ended()
        assert self.returncode is not None
        return self.returncode

    def send_signal(self, sig: int) -> None:
        """Send sig to the payload (km forwards it; SIGKILL and SIGSTOP act on km)."""
        if self._km.poll() is None:
            self._km.send_signal(sig)

    def terminate(self) -> None:
        self.send_signal(signal.SIGTERM)

    def kill(self) -> None:
        """SIGKILL the payload and every process of its tree."""
        if self._km.poll() is None:
            self._km.kill()
        self.kill_tree()

    def close(self) -> None:
        """Kill what is left of the tree and drop the stats pipe (the process reaped)."""
        if self._timer is not None:
            self._timer.cancel()
        with self._tree_lock:
            if self._stats_fd >= 0:
                kill_tree(self._stats_fd, self.pid)
                os.close(self._stats_fd)
                self._stats_fd = -1

    def __enter__(self) -> Popen:
        return self

    def __exit__(self, *exc: object) -> None:
        for stream in (self.stdout, self.stderr):
            if stream is not None:
                stream.close()
        try:
            if self.stdin is not None:
                self.stdin.close()
        finally:
            self.wait()
            self.close()

    def __del__(self) -> None:
        if getattr(self, "_stats_fd", -1) >= 0:
            try:
                os.close(self._stats_fd)
            except OSError:
                pass

    # ---- communicate -------------------------------------------------------------------

    def communicate(self, input: str | bytes | None = None, timeout: float | None = None
                    ) -> tuple[Any, Any]:
        """As subprocess's (TimeoutExpired leaves the process running, and a later call
        goes on collecting); past policy.max_output, the tree is killed and the first
        max_output bytes kept."""
        if input is not None and self._text and isinstance(input, str):
            input = input.encode(self._encoding_name(), self._errors or "strict")
        deadline = None if timeout is None else time.monotonic() + timeout
        if not hasattr(self, "_chunks"):
            self._chunks: dict[int, list[bytes]] = {}
            self._input = memoryview(input or b"")
            self._open: dict[int, Any] = {}
            if self.stdin is not None:
                self.stdin.flush()
                if input:
                    self._open[self.stdin.fileno()] = self.stdin
                else:
                    self.stdin.close()
            self._fds = []
            for stream in (self.stdout, self.stderr):
                self._fds.append(stream.fileno() if stream is not None else -1)
                if stream is not None:
                    self._open[stream.fileno()] = stream
                    self._chunks[stream.fileno()] = []
            self._total = 0
        cap = self.policy.max_output
        with selectors.DefaultSelector() as selector:
            for fd, stream in self._open.items():
                writing = self.stdin is not None and stream is self.stdin
                selector.register(fd, selectors.EVENT_WRITE if writing else selectors.EVENT_READ)
            while self._open:
                remaining = None if deadline is None else deadline - time.monotonic()
                if remaining is not None and remaining <= 0:
                    raise TimeoutExpired(self.args, timeout, *self._outputs())
                for key, _events in selector.select(remaining):
                    fd = key.fd
                    if self.stdin is not None and self._open.get(fd) is self.stdin:
                        try:
                            sent = os.write(fd, self._input[:65536])
                        except BrokenPipeError:
                            sent = len(self._input)
                        self._input = self._input[sent:]
                        if not self._input:
                            selector.unregister(fd)
                            self._open.pop(fd).close()
                        continue
                    data = os.read(fd, 65536)
                    if not data:
                        selector.unregister(fd)
                        self._open.pop(fd).close()
                        continue
                    if cap is not None and self._total + len(data) > cap:
                        data = data[:cap - self._total]
                        self._chunks[fd].append(data)
                        self._total = cap
                        self._output_limit_hit(selector)
                        break
                    self._chunks[fd].append(data)
                    self._total += len(data)
        try:
            self.wait(None if deadline is None else max(0.0, deadline - time.monotonic()))
        except TimeoutExpired:
            raise TimeoutExpired(self.args, timeout, *self._outputs()) from None
        return self._outputs()

    def _output_limit_hit(self, selector: selectors.BaseSelector) -> None:
        self._limit = "max_output"
        self.kill()
        for fd in list(self._open):
            selector.unregister(fd)
            self._open.pop(fd).close()

    def _encoding_name(self) -> str:
        import locale
        return self._encoding or locale.getpreferredencoding(False)

    def _outputs(self) -> tuple[Any, Any]:
        outputs = []
        for stream, fd in zip((self.stdout, self.stderr), self._fds, strict=True):
            if stream is None:
                outputs.append(None)
                continue
            data = b"".join(self._chunks.get(fd, []))
            if self._text:
                data = data.decode(self._encoding_name(), self._errors or "strict")
                data = data.replace("\r\n", "\n").replace("\r", "\n")
            outputs.append(data)
        return outputs[0], outputs[1]

    def __repr__(self) -> str:
        return f"<kontain.Popen: returncode: {self.returncode} args: {self.args!r}>"



def communicate(process: Popen, input: Any, timeout: float | None) -> tuple[Any, Any, int]:
    """What subprocess.run does with a started process: (stdout, stderr, returncode), the
    process killed (its whole tree) if the wait times out or anything else interrupts."""
    try:
        out, err = process.communicate(input, timeout=timeout)
    except TimeoutExpired as exc:
        process.kill()
        exc.stdout, exc.stderr = process.communicate()
        raise
    except BaseException:
        process.kill()
        raise
    returncode = process.poll()
    assert returncode is not None
    return out, err, returncode

def run(args: StrOrBytesPath | Sequence[StrOrBytesPath], *, stdin: File = None,
        input: str | bytes | None = None, capture_output: bool = False, stdout: File = None,
        stderr: File = None, cwd: StrOrBytesPath | None = None,
        env: Mapping[str, str] | None = None, root: StrOrBytesPath | None = None,
        timeout: float | None = None, check: bool = False, text: bool | None = None,
        encoding: str | None = None, errors: str | None = None,
        universal_newlines: bool | None = None, pass_fds: Iterable[int] = (),
        policy: Policy | None = None, km_options: Sequence[str] = ()) -> CompletedProcess:
    """subprocess.run, the program in its own VM under policy: see the module docstring.
    When run returns, no process of the payload is left."""
    if input is not None:
        if stdin is not None:
            raise ValueError("stdin and input arguments may not both be used.")
        stdin = PIPE
    if capture_output:
        if stdout is not None or stderr is not None:
            raise ValueError("stdout and stderr arguments may not be used with capture_output.")
        stdout = stderr = PIPE
    with Popen(args, stdin=stdin, stdout=stdout, stderr=stderr, cwd=cwd, env=env, text=text,
               encoding=encoding, errors=errors, universal_newlines=universal_newlines,
               pass_fds=pass_fds, root=root, policy=policy, km_options=km_options) as process:
        out, err, returncode = communicate(process, input, timeout)
    if check and returncode:
        raise CalledProcessError(returncode, process.args, output=out, stderr=err)
    return CompletedProcess(process.args, returncode, out, err, process.stats)

