"""execve: the payload replaces itself with another program, in a fresh VM.

km carries out a guest execve by exec'ing itself on the host with the new payload:
the pid stays, the host closes the descriptors the guest marked close-on-exec (and all
of km's own, which are close-on-exec), the other threads disappear, and the new km
builds a fresh VM. What Linux keeps across exec that only km knows — ignored signals
and the signal mask — travels in an internal option. Everything that can make execve
fail (ENOENT, EACCES, ENOEXEC) is checked first, so the caller still gets the error.
"""

from __future__ import annotations

import _signal
import ctypes
import errno
import os
import stat
import sys

from kontain.loader.elf import ExecError, read_elf
from kontain.loader.script import BINPRM_BUF_SIZE, script_argv
from kontain.monitor import signals as sig
from kontain.monitor.vcpu import KICK_SIGNAL

TYPE_CHECKING = False  # no typing import at run time: km start-up is timed
if TYPE_CHECKING:
    from kontain.monitor.process import Process
    from kontain.monitor.vcpu import GuestThread

MAX_SCRIPT_DEPTH = 4
_libc = ctypes.CDLL(None, use_errno=True)


def check_executable(proc: Process, path: bytes, depth: int = 0) -> None:
    """Raise ExecError with the errno execve would return for path (a guest path,
    resolved inside the payload's root like every other)."""
    try:
        host_path = os.path.realpath(proc.host_path(path))
        st = os.stat(host_path)
    except OSError as e:
        raise ExecError(e.errno or errno.ENOENT, e.strerror or "cannot stat") from None
    if not stat.S_ISREG(st.st_mode) or not os.access(host_path, os.X_OK):
        raise ExecError(errno.EACCES, "not an executable file")
    try:
        fd = os.open(host_path, os.O_RDONLY | os.O_CLOEXEC)
    except OSError as e:
        raise ExecError(e.errno or errno.EACCES, e.strerror or "cannot open") from None
    try:
        head = os.pread(fd, BINPRM_BUF_SIZE, 0)
        if head.startswith(b"#!"):
            if depth >= MAX_SCRIPT_DEPTH:
                raise ExecError(errno.ELOOP, "too many levels of #! interpreters")
            interpreter, _argv = script_argv(head, path, [path])
            check_executable(proc, interpreter, depth + 1)
            return
        image = read_elf(os.fsdecode(path), fd)
        if image.interpreter is not None:
            try:
                os.stat(proc.host_path(os.fsencode(image.interpreter)))
            except OSError:
                raise ExecError(errno.ENOENT,
                                f"interpreter {image.interpreter} not found") from None
    finally:
        os.close(fd)


def exec_state(proc: Process, thread: GuestThread) -> str:
    """The signal state execve keeps: ignored signals, the thread's mask, and the
    signals pending (on the thread and on the process)."""
    ignored = sum(sig.bit(s) for s in range(1, sig.NSIG + 1)
                  if proc.signals.action(s).handler == sig.SIG_IGN)
    pending = thread.pending.bits | proc.signals.shared.bits
    return f"{ignored:x}:{thread.signal_mask:x}:{pending:x}"


def km_command(proc: Process, path: bytes, argv: list[bytes], state: str) -> list[bytes]:
    """The host command line of the km that will run path."""
    # The directory holding the kontain package (site-packages, or the source tree).
    root = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
    boot = (f"import gc, sys; gc.disable(); sys.path.insert(0, {root!r}); "
            "from kontain.cli.km import entry; entry()")
    options = proc.options
    command = [os.fsencode(sys.executable), b"-E", b"-S", b"-c", boot.encode(),
               b"--exec-state=" + state.encode(), b"--jailed"]
    if options.verbose is not None:
        command.append(b"--verbose=" + options.verbose.encode())
    if options.stats:
        command.append(b"-S")
    if options.strict:
        command.append(b"--strict")
    command += [b"--mem-size", str(options.mem_size).encode()]
    if proc.root.confined:
        command += [b"--root", os.fsencode(proc.root.directory)]
        if not path.startswith(b"/"):
            path = proc.root.cwd.rstrip(b"/") + b"/" + path
    elif not path.startswith(b"/") and b"/" not in path:
        path = b"./" + path  # execve does not search PATH; km would
    command += [b"--argv0", argv[0] if argv else path, b"--", path] + argv[1:]
    return command


def execve(proc: Process, thread: GuestThread, path: bytes, argv: list[bytes],
           envp: list[bytes]) -> int:
    """Replace the payload (path as the guest names it); returns only on failure."""
    try:
        check_executable(proc, path)
    except ExecError as e:
        return -e.errno
    except OSError as e:
        return -(e.errno or errno.ENOENT)
    if path.startswith(b"/proc/") and path.endswith(b"/exe"):
        path = os.fsencode(proc.guest_exe)
    command = km_command(proc, path, argv, exec_state(proc, thread))
    # The new km is a dynamically linked Python: the payload's LD_* variables must not
    # reach its loader. They travel as options and are put back for the payload.
    loader_vars = [e for e in envp if e.startswith(b"LD_")]
    if loader_vars:
        envp = [e for e in envp if not e.startswith(b"LD_")]
        at = command.index(b"--argv0")
        command[at:at] = [b"--loader-env=" + e for e in loader_vars]
    proc.trace.log("process", f"execve {path!r} {argv!r}")
    # A KICK still pending at exec would kill the new km before it installs its handler:
    # block it now; the new km unblocks it once its handler is in place.
    _signal.pthread_sigmask(_signal.SIG_BLOCK, [KICK_SIGNAL])
    if proc.vfork_release is not None:  # exec cannot fail any more: release the parent
        proc.vfork_release()
    argv_array = (ctypes.c_char_p * (len(command) + 1))(*command, None)
    envp_array = (ctypes.c_char_p * (len(envp) + 1))(*envp, None)
    _libc.execve(os.fsencode(sys.executable), argv_array, envp_array)
    error = ctypes.get_errno()
    _signal.pthread_sigmask(_signal.SIG_UNBLOCK, [KICK_SIGNAL])
    return -error
