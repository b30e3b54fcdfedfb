"""Inside a payload: ask km for a snapshot of this process (docs/ARCHITECTURE.md,
"Snapshots").

Pure Python with ctypes and os only, so any CPython payload run by km can import it:
put the directory holding km's `kontain` package on the payload's PYTHONPATH (it
imports nothing else of km's), e.g.

    km --snapshot=/tmp/warm.snap -e PYTHONPATH=/path/to/km python3 app.py

    from kontain.guest import snapshot
    ... warm up ...
    if snapshot():          # 0 in the original (which ends here), 1 once resumed
        ...                 # runs in every `km /tmp/warm.snap`

snapshot(live=True) keeps the original running (it returns 0 there). Errors raise
OSError: ENOSYS when not under km, EBUSY when km refuses (it says why on its stderr:
a socket, a child process, ...).
"""

from __future__ import annotations

import ctypes
import errno
import os
import sys

#: km's snapshot hypercall (kontain.monitor.snapshot.HYPERCALL; include/kontain/snapshot.h).
HYPERCALL = 0x4B4D0001
SNAPSHOT_LIVE = 1


def snapshot(live: bool = False, label: str | None = None, path: str | None = None) -> int:
    """Save this process to a snapshot (path, or km --snapshot, or ./kmsnap). Returns
    0 in the original (live=False: it exits with status 0 instead) and 1 when running
    from the snapshot."""
    for stream in (sys.stdout, sys.stderr):  # buffered output belongs to the original
        try:
            stream.flush()
        except (AttributeError, OSError, ValueError):
            pass
    libc = ctypes.CDLL(None, use_errno=True)
    call = libc.syscall
    call.restype = ctypes.c_long
    call.argtypes = [ctypes.c_long, ctypes.c_long, ctypes.c_char_p, ctypes.c_char_p]
    result = call(HYPERCALL, SNAPSHOT_LIVE if live else 0,
                  None if label is None else os.fsencode(label),
                  None if path is None else os.fsencode(path))
    if result < 0:
        code = ctypes.get_errno()
        if code == errno.ENOSYS:
            raise OSError(code, "kontain.guest.snapshot: not running under km")
        raise OSError(code, f"kontain.guest.snapshot: {os.strerror(code)}")
    return result


#: A kontain.Pool request on a resumed instance's stdin: this header (the body's length
#: in 10 decimal digits and a newline), then the body (JSON: argv, env, cwd), then the
#: snippet's own input.
REQUEST_HEADER = b"KPOOL1 %010d\n"
_HEADER_SIZE = 18
#: Interpreter options that change nothing once python3 has started (ignored).
_NO_EFFECT = frozenset({"-u", "-B", "-E", "-I", "-s", "-S", "-q", "-b", "-bb", "-O", "-OO"})


#: Compiled and run before the snapshot (see serve).
_REHEARSAL = """
import sys
class C:
    def f(self, x: int, *args, **kwargs) -> list:
        try:
            return [i * 2 for i in range(x) if i] + list(args)
        except (ValueError, KeyError) as e:
            raise RuntimeError(f"{e!r}") from None
        finally:
            pass
with open(__file__ if '__file__' in globals() else '/dev/null') as f:
    pass
s = {1, 2}; d = {'a': 1.5, 'b': b'x'}; t = (lambda y: y)(C().f(3))
"""


def _read_exactly(size: int) -> bytes:
    data = b""
    while len(data) < size:
        chunk = os.read(0, size - len(data))  # (os.read: sys.stdin's buffer stays empty)
        if not chunk:
            break
        data += chunk
    return data


def serve(label: str | None = None, path: str | None = None) -> None:
    """The end of a kontain.Pool warm-up program: snapshot this warmed-up python3, and in
    every resumed instance run the snippet kontain.Pool sends on stdin (a python3
    command line's arguments: `-c CODE ...`, `-m MODULE ...` or `SCRIPT ...`, with its
    environment and working directory) as python3 would run it, in a fresh __main__,
    then exit with its status. Returns only when snapshots are refused (OSError)."""
    import atexit  # noqa: F401 - as json, imported before the snapshot
    import builtins  # noqa: F401
    import json
    import random
    import runpy  # noqa: F401 - imported before the snapshot, not in every instance
    import traceback  # noqa: F401
    import types  # noqa: F401
    # A rehearsal: what every instance does first is done once here, so the lazy
    # initialisations it triggers (the compiler's above all: ~700 page faults, 18 ms
    # in every resumed instance otherwise) are in the snapshot.
    json.loads(b'{"argv": ["-c", "pass"], "env": {"A": "1"}, "cwd": "/"}')
    exec(compile(_REHEARSAL, "<string>", "exec"), {"__name__": "__rehearsal__"})  # noqa: S102
    import gc
    gc.collect()
    # The warmed-up heap goes to the permanent generation: a collection in a resumed
    # instance would otherwise walk it all, a page fault per page of it (~30 ms).
    gc.freeze()
    if not snapshot(label=label, path=path):
        return  # (not reached: the original ends at the snapshot)
    header = _read_exactly(_HEADER_SIZE)
    if len(header) != _HEADER_SIZE or not header.startswith(b"KPOOL1 "):
        os.write(2, b"kontain.guest.serve: no request on stdin\n")
        os._exit(2)
    request = json.loads(_read_exactly(int(header[7:17])))
    env = request["env"]
    if env != os.environ:  # (only what differs: each change is work in the instance)
        for name in [name for name in os.environ if name not in env]:
            del os.environ[name]
        for name, value in env.items():
            if os.environ.get(name) != value:
                os.environ[name] = value
    try:
        os.chdir(request["cwd"])
    except OSError:
        os.chdir("/")  # (a directory the policy hides: as a root's /)
    random.seed()  # every resume starts with the snapshot's PRNG state otherwise
    try:
        _run_main(request["argv"])
        status = 0
    except SystemExit as e:
        status = _exit_status(e.code)
    _leave(status)


def _exit_status(code: object) -> int:
    """SystemExit's code as python3 makes it an exit status."""
    if code is None:
        return 0
    if isinstance(code, int):
        return code & 0xFF
    try:
        print(code, file=sys.stderr)
    except Exception:  # noqa: BLE001 - as Python's own handling, ignored
        pass
    return 1


def _leave(status: int) -> None:
    """End as python3 ends (atexit handlers, stdout and stderr flushed; 120 when stdout
    cannot be flushed), without the interpreter's teardown: that touches every page
    of the warmed-up heap, which a resumed instance has only mapped (~130 ms of page
    faults for a python3 with sqlite3 imported, against ~35 ms for the whole resume)."""
    import atexit
    try:
        atexit._run_exitfuncs()
    except Exception:  # noqa: BLE001 - atexit prints what a handler raised
        pass
    for stream in (sys.stdout, sys.stderr):
        try:
            stream.flush()
        except Exception:  # noqa: BLE001
            if stream is sys.stdout:
                status = status or 120
    os._exit(status)


def _run_main(argv: list[str]) -> None:
    """Run argv (python3's arguments after the interpreter) as python3's main would."""
    import builtins
    import runpy
    import types
    while argv and argv[0] in _NO_EFFECT:
        argv = argv[1:]
    main = types.ModuleType("__main__")
    main.__builtins__ = builtins  # type: ignore[attr-defined]
    sys.modules["__main__"] = main
    try:
        if argv[:1] == ["-c"] and len(argv) >= 2:
            sys.argv = ["-c"] + argv[2:]
            exec(compile(argv[1], "<string>", "exec"), main.__dict__)  # noqa: S102
        elif argv[:1] == ["-m"] and len(argv) >= 2:
            sys.argv = [argv[1]] + argv[2:]
            runpy.run_module(argv[1], run_name="__main__", alter_sys=True)
        elif argv and not argv[0].startswith("-"):
            sys.argv = list(argv)
            runpy.run_path(argv[0], run_name="__main__")
        else:
            os.write(2, f"kontain.guest.serve: unsupported arguments {argv!r}\n".encode())
            sys.exit(2)
    except SystemExit:
        raise
    except BaseException as e:  # noqa: BLE001 - reported as python3 reports it
        import traceback
        traceback.print_exception(type(e), e, e.__traceback__.tb_next if e.__traceback__
                                  else None)
        sys.exit(1)
