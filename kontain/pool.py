"""kontain.Pool: warm monitors for many short runs (issue 14, item 4).

    with kontain.Pool(2, policy=Policy.strict()) as pool:                 # warm server
        pool.run(["python3", "-c", "print(1)"], capture_output=True)
    with kontain.Pool(2, warm=kontain.Warm(["python3", "-c", "import json"])) as pool:
        pool.run(code="print(json.dumps([1]))", capture_output=True)      # snapshot

Every pool owns a warm km server (`km --server SOCKET`, docs/ARCHITECTURE.md "The warm
path"), started with the pool in a temporary directory: each run is a kontain.run whose
km has KM_SERVER set, so its payload is run by a monitor the server forked ahead of
time (the payload's environment is given with `km -e`, so KM_SERVER is not in it).

With `warm=`, the pool also makes, once, a snapshot of a warmed-up python3
(docs/ARCHITECTURE.md "Snapshots and resume"): the warm-up program runs, then
kontain.guest.serve() saves it; each run resumes that file (`km /dev/fd/N`: the
snapshot is handed to km as a descriptor, so a policy hiding the pool's directory does
not hide it). A resumed instance has the snapshot's argv, environment and working
directory, and the stdio of the km resuming it, so the request comes on stdin first:
a header, the python3 arguments (`-c CODE ...`, `-m MODULE ...`, `SCRIPT ...`), the
environment and working directory (kontain.guest.REQUEST_HEADER), then the run's
input. kontain.guest.serve reads it and runs the snippet in a fresh __main__ as python3
would, with every module the warm-up imported already in sys.modules.

Differences from kontain.run, by design: a snapshot pool runs python3 command lines
only (args[0] names the interpreter and is not looked at), its payload's stdin is the
run's `input` (EOF without one: a file or descriptor as stdin is refused), and a
working directory the policy hides becomes /. Every resume of one snapshot starts with
the same hash seed (random is reseeded by serve()).
"""

from __future__ import annotations

import asyncio
import functools
import json
import os
import select
import shutil
import signal
import subprocess
import tempfile
import threading
import weakref
from collections.abc import Mapping, Sequence
from typing import Any

from kontain import api
from kontain.api import CompletedProcess, StrOrBytesPath
from kontain.policy import Policy

__all__ = ["Pool", "Warm"]

#: python3 under the snapshot pool (the warm-up's; Debian's).
PYTHON = "/usr/bin/python3"
#: The variables of the caller's environment a warm-up gets by default (Warm(env=...)
#: sets it all). Every instance has the warm-up's memory, its environment strings too,
#: whatever environment a run gives: the caller's secrets stay out of it.
WARM_ENV = frozenset({"PATH", "LANG", "LC_ALL", "LC_CTYPE", "TZ"})
_GUEST = os.path.join(os.path.dirname(os.path.abspath(__file__)), "guest.py")


class Warm:
    """How a snapshot pool warms python3 up: `args`, a python3 command line run once
    (with cwd / and env, by default the caller's PATH, LANG, LC_ALL, LC_CTYPE and TZ
    only) before the snapshot. For `python3 [-X...] -c CODE`,
    the pool appends the call to kontain.guest.serve() to CODE; any other program must
    call `kontain.guest.serve()` itself once warm (PYTHONPATH then includes the
    directory of this kontain package)."""

    def __init__(self, args: Sequence[str] = (PYTHON, "-c", "pass"), *,
                 env: Mapping[str, str] | None = None) -> None:
        self.args = [os.fsdecode(a) for a in args]
        self.env = dict(env) if env is not None else None

    def command(self) -> list[str]:
        """The warm-up command line as run (with serve() appended to a -c program)."""
        args = list(self.args)
        if len(args) >= 3 and args[-2] == "-c" and "kontain.guest" not in args[-1]:
            with open(_GUEST, encoding="utf-8") as f:  # (inlined: no PYTHONPATH needed)
                source = f.read()
            args[-1] += ("\n_kontain_guest = {'__name__': 'kontain_guest'}\n"
                         f"exec(compile({source!r}, 'kontain/guest.py', 'exec'), "
                         "_kontain_guest)\n_kontain_guest['serve']()\n")
        return args


class Pool:
    """At most `size` runs at once, each in its own VM, from warm monitors; thread-safe.
    `policy` applies to every run (a run's own policy is merged over it with `|`).
    `warm`: None (the warm server alone), a Warm (a snapshot made at construction), or
    the path of a snapshot made earlier (by a Warm pool, or a program calling
    kontain.guest.serve())."""

    def __init__(self, size: int = 2, policy: Policy | None = None,
                 warm: Warm | StrOrBytesPath | None = None, *,
                 km_options: Sequence[str] = ()) -> None:
        if size < 1:
            raise ValueError("size must be at least 1")
        self.size = size
        self.policy = policy if policy is not None else Policy.default()
        self.km_options = list(km_options)
        self._slots = threading.BoundedSemaphore(size)
        self._lock = threading.Lock()
        self._running: set[api.Popen] = set()
        self._closed = False
        self._server: subprocess.Popen | None = None
        self._snapshot_fd = -1
        self.directory = tempfile.mkdtemp(prefix="kontain-pool-")
        self._stop = [None]  # (the server, once started: what the finalizer stops)
        # A pool never closed is stopped when collected, or when Python exits.
        self._finalizer = weakref.finalize(self, _stop, self._stop, self.directory)
        try:
            self.socket = os.path.join(self.directory, "km.sock")
            self._start_server()
            if warm is not None:
                path = os.path.join(self.directory, "warm.snap")
                if isinstance(warm, Warm):
                    self._make_snapshot(warm, path)
                else:
                    path = os.fsdecode(warm)
                self._snapshot_fd = os.open(path, os.O_RDONLY | os.O_CLOEXEC)
        except BaseException:
            self.close()
            raise

    # ---- set-up ------------------------------------------------------------------------

    def _start_server(self) -> None:
        env = {k: v for k, v in os.environ.items() if k != "KM_SERVER"}
        self._server = self._stop[0] = subprocess.Popen(
            api.km_command() + ["--server", self.socket], stdin=subprocess.DEVNULL,
            stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, env=env,
            start_new_session=True)
        assert self._server.stderr is not None
        line = self._server.stderr.readline()  # (said once it listens)
        if b"warm server on" not in line:
            self._server.wait()
            raise OSError(f"kontain.Pool: the warm km server did not start: "
                          f"{line.decode(errors='replace').strip()}")
        # What the server says later (a monitor that declined) is read and dropped, so
        # it never blocks on a full pipe.
        threading.Thread(target=_drain, args=(self._server.stderr,), daemon=True).start()

    def _make_snapshot(self, warm: Warm, path: str) -> None:
        env = dict(warm.env) if warm.env is not None else {
            name: value for name, value in os.environ.items() if name in WARM_ENV}
        command = warm.command()
        if "kontain_guest" not in command[-1]:  # (a script importing kontain.guest)
            env["PYTHONPATH"] = os.pathsep.join(
                p for p in (env.get("PYTHONPATH"), api._PACKAGE_PARENT) if p)
        result = api.run(command, cwd="/", env=env, capture_output=True,
                         km_options=self.km_options + [f"--snapshot={path}"])
        if result.returncode != 0 or not os.path.exists(path):
            raise OSError(f"kontain.Pool: the warm-up {warm.args!r} made no snapshot "
                          f"(exit status {result.returncode}): "
                          f"{result.stderr.decode(errors='replace').strip()[-2000:]}")

    # ---- runs --------------------------------------------------------------------------

    def run(self, args: StrOrBytesPath | Sequence[StrOrBytesPath] | None = None, *,
            code: str | None = None, input: str | bytes | None = None,
            capture_output: bool = False, stdin: api.File = None, stdout: api.File = None,
            stderr: api.File = None, cwd: StrOrBytesPath | None = None,
            env: Mapping[str, str] | None = None, timeout: float | None = None,
            check: bool = False, text: bool | None = None, encoding: str | None = None,
            errors: str | None = None, policy: Policy | None = None,
            km_options: Sequence[str] = ()) -> CompletedProcess:
        """kontain.run(args, ...) from the pool (waits for a free slot first): the same
        arguments and result. `code=` is short for args ["python3", "-c", code]."""
        if code is not None:
            if args is not None:
                raise ValueError("args and code may not both be given")
            args = [PYTHON, "-c", code]
        if args is None:
            raise TypeError("Pool.run needs args or code")
        if input is not None and stdin is not None:
            raise ValueError("stdin and input arguments may not both be used.")
        if isinstance(args, (str, bytes, os.PathLike)):
            argv = [os.fsdecode(args)]
        else:
            argv = [os.fsdecode(a) for a in args]
        merged = self.policy if policy is None else self.policy | policy
        payload_env = dict(os.environ if env is None else env)
        if env is None:
            payload_env.pop("KM_SERVER", None)  # (the caller's own server is not the pool's)
        km_env = {k: v for k, v in os.environ.items() if k != "KM_SERVER"}
        km_env["KM_SERVER"] = self.socket
        options = self.km_options + list(km_options)
        if self._snapshot_fd >= 0:
            if stdin is not None:
                raise ValueError("a snapshot pool's payload reads `input` (stdin refused)")
            guest_cwd = os.fsdecode(cwd) if cwd is not None else (
                os.getcwd() if merged.root is None else "/")
            body = json.dumps({"argv": argv[1:], "env": payload_env,
                               "cwd": guest_cwd}).encode()
            if text and isinstance(input, str):
                import locale
                input = input.encode(encoding or locale.getpreferredencoding(False),
                                     errors or "strict")
            request = b"KPOOL1 %010d\n" % len(body) + body + (input or b"")
            km_argv = [f"/dev/fd/{self._snapshot_fd}"]
            return self._run(args, km_argv, options, merged, km_env, dict(
                stdin=subprocess.PIPE, stdout=stdout, stderr=stderr, capture_output=
                capture_output, text=text, encoding=encoding, errors=errors,
                pass_fds=(self._snapshot_fd,)), request, timeout, check)
        if not payload_env:  # (km -e cannot say "none": KM_SERVER would be left in it)
            km_env = {}
        for name, value in payload_env.items():
            options += ["-e", f"{name}={value}"]
        return self._run(args, argv, options, merged, km_env, dict(
            stdin=subprocess.PIPE if input is not None else stdin, stdout=stdout,
            stderr=stderr, capture_output=capture_output, text=text, encoding=encoding,
            errors=errors, cwd=cwd), input, timeout, check)

    def _run(self, args: Any, argv: list[str], options: list[str], policy: Policy,
             km_env: dict[str, str], popen: dict[str, Any], input: Any,
             timeout: float | None, check: bool) -> CompletedProcess:
        """api.run's body, with the Popen known to the pool (close() kills it)."""
        if popen.pop("capture_output"):
            if popen["stdout"] is not None or popen["stderr"] is not None:
                raise ValueError(
                    "stdout and stderr arguments may not be used with capture_output.")
            popen["stdout"] = popen["stderr"] = subprocess.PIPE
        with self._slots:
            if self._closed:
                raise ValueError("the pool is closed")
            process = api.Popen(argv, env=km_env, policy=policy, km_options=options,
                                **popen)
            process.args = args
            with self._lock:
                self._running.add(process)
            try:
                with process:
                    out, err, returncode = api.communicate(process, input, timeout)
            finally:
                with self._lock:
                    self._running.discard(process)
        if check and returncode:
            raise subprocess.CalledProcessError(returncode, args, output=out, stderr=err)
        return CompletedProcess(args, returncode, out, err, process.stats)

    async def arun(self, *args: Any, **kwargs: Any) -> CompletedProcess:
        """run() in a thread of the event loop's executor (the loop goes on meanwhile)."""
        loop = asyncio.get_running_loop()
        return await loop.run_in_executor(None, functools.partial(self.run, *args, **kwargs))

    # ---- the end -----------------------------------------------------------------------

    def close(self) -> None:
        """Kill the runs still going, stop the server and every monitor it forked,
        remove the pool's directory. When it returns no process of the pool is left."""
        with self._lock:
            self._closed = True
            running = list(self._running)
        for process in running:
            process.kill()
        self._finalizer()
        if self._snapshot_fd >= 0:
            os.close(self._snapshot_fd)
            self._snapshot_fd = -1

    def __enter__(self) -> Pool:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def __repr__(self) -> str:
        kind = "snapshot" if self._snapshot_fd >= 0 else "server"
        return f"<kontain.Pool size={self.size} {kind}{' closed' if self._closed else ''}>"


def _stop(holder: list, directory: str) -> None:
    """Stop the server and every monitor it forked; remove the pool's directory."""
    server = holder[0]
    if server is not None and server.poll() is None:
        spares = _children(server.pid)
        server.send_signal(signal.SIGTERM)
        try:
            server.wait(10)
        except subprocess.TimeoutExpired:
            server.kill()
            server.wait()
        _kill_and_wait(spares)
    shutil.rmtree(directory, ignore_errors=True)


def _drain(stream: Any) -> None:
    try:
        while stream.read(65536):
            pass
    except (OSError, ValueError):
        pass


def _children(pid: int) -> list[int]:
    """pidfds of pid's children (the server's spares and monitors), taken now so a
    reused pid is never signalled later."""
    fds = []
    try:
        with open(f"/proc/{pid}/task/{pid}/children") as f:
            pids = [int(p) for p in f.read().split()]
    except OSError:
        return []
    for child in pids:
        try:
            fds.append(os.pidfd_open(child))
        except OSError:
            continue
    return fds


def _kill_and_wait(pidfds: list[int]) -> None:
    """SIGKILL each process and wait until it has ended (a pidfd polls readable then)."""
    for fd in pidfds:
        try:
            signal.pidfd_send_signal(fd, signal.SIGKILL)
        except ProcessLookupError:
            pass
        except OSError:
            pass
    for fd in pidfds:
        try:
            select.select([fd], [], [], 10)
        finally:
            os.close(fd)
