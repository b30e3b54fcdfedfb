"""execve: the payload replaces itself with another program, inside the same km.

Everything that can make execve fail (ENOENT, EACCES, ENOEXEC, ELOOP, E2BIG) is found
first, while the caller can still get the error: the `#!` chain is followed (five
levels, as Linux), the final ELF is opened and parsed, its interpreter looked for.
Then, past the point of no return, the calling thread raises ExecImage; its run loop
unwinds to kontain.monitor.group, and the process replaces its image
(Process.replace_image): the other threads vanish, guest memory is dropped and the VM
made new for the next program (Machine.reset: the same VM, memslots and vCPUs, all
reset), descriptors marked close-on-exec are closed, handled signals go back to their
default action, and the new program is loaded and run by this same host thread. The
pid stays, and so does everything execve keeps: ignored signals, the mask, pending
signals, the working directory, limits, timers of alarm/setitimer.

No new km is started: an exec costs what loading a program costs, it works after the
payload dropped the privileges km's own files need, and a close-on-exec descriptor
can still be what is executed (fexecve).
"""

from __future__ import annotations

import errno
import os
import stat

from kontain.linux.abi import O_PATH
from kontain.linux.hostcall import SyscallError
from kontain.loader.elf import ElfImage, ExecError, read_elf
from kontain.loader.script import BINPRM_BUF_SIZE, MAX_SCRIPT_DEPTH, script_argv
from kontain.monitor.exits import ExecImage

TYPE_CHECKING = False  # no typing import at run time: km start-up is timed
if TYPE_CHECKING:
    from kontain.monitor.process import Process
    from kontain.monitor.thread import GuestThread

#: Linux caps argv + envp at a quarter of the stack limit; km's stack is 8 MiB.
MAX_ARG_BYTES = 2 << 20
#: Linux's cap on one argument or environment string, its NUL included (MAX_ARG_STRLEN).
MAX_ARG_STRLEN = 32 * 4096


class ExecRequest:
    """What execve will run, opened and checked before the point of no return."""

    def __init__(self, fd: int, name: str, argv: list[bytes], envp: list[bytes],
                 execfn: bytes, image: ElfImage | None = None, host_path: str = "") -> None:
        #: km's descriptor on the executable (close-on-exec, above the guest's range).
        self.fd = fd
        #: The executable as the guest names it (mapping names, /proc/self/exe).
        self.name = name
        self.argv = argv
        self.envp = envp
        #: The path execve was given (AT_EXECFN).
        self.execfn = execfn
        #: The executable's headers and its host path, as prepare found them (so that
        #: loading it does not read them again).
        self.image = image
        self.host_path = host_path

    def close(self) -> None:
        if self.fd >= 0:
            os.close(self.fd)
            self.fd = -1


def prepare(proc: Process, path: bytes, argv: list[bytes], envp: list[bytes], *,
            shown: bytes | None = None, script_unreachable: bool = False) -> ExecRequest:
    """Open what execve of path would run: the ELF, at the end of any `#!` chain.
    Raises ExecError with the errno execve would return.

    shown is the name the program is given (AT_EXECFN, a script's argument) when it is
    not path: execveat names a file by descriptor as /dev/fd/N[/path]. A script reached
    through a close-on-exec descriptor is ENOENT (script_unreachable): its interpreter
    could not open it after the exec, so Linux refuses at once."""
    if sum(len(s) + 1 + 8 for s in argv + envp) > MAX_ARG_BYTES:
        raise ExecError(errno.E2BIG, "argument list too long")
    execfn = name_given = shown if shown is not None else path
    for depth in range(MAX_SCRIPT_DEPTH + 2):
        fd = _open_executable(proc, path)
        try:
            head = os.pread(fd, BINPRM_BUF_SIZE, 0)
            script = None
            if head.startswith(b"#!"):
                if script_unreachable:
                    raise ExecError(errno.ENOENT, "a script behind a close-on-exec descriptor")
                script = script_argv(head, name_given, argv)
            if script is None:
                image = read_elf(os.fsdecode(path), fd)
                if image.interpreter is not None:
                    try:
                        os.stat(proc.host_path(os.fsencode(image.interpreter)))
                    except OSError:
                        raise ExecError(errno.ENOENT, f"interpreter {image.interpreter} "
                                                      "not found") from None
                host_path = os.readlink(b"/proc/self/fd/%d" % fd)
                name = proc.root.guest_path_of_host(host_path)
                allowed = proc.options.exec_allowed  # km --policy's allow_exec
                if allowed is not None and not allowed(proc, os.fsdecode(host_path)):
                    raise ExecError(errno.EACCES, "not a program the policy allows")
                request = ExecRequest(proc.fds.move_high(fd), os.fsdecode(
                    name if name is not None else path), argv, envp, execfn, image,
                    os.fsdecode(host_path))
                fd = -1
                return request
        finally:
            if fd >= 0:
                os.close(fd)
        if depth >= MAX_SCRIPT_DEPTH:
            break
        path, argv = script
        name_given = path
        # Linux opens the interpreter by a kernel string, where "" is not refused as
        # a user path is: it names the working directory (and so is EACCES).
        path = path or b"."

    raise ExecError(errno.ELOOP, "too many levels of #! interpreters")


def _open_executable(proc: Process, path: bytes) -> int:
    """An O_RDONLY descriptor on the regular, executable file path names (a guest
    path, resolved like any other: /proc/self/exe and /proc/self/fd/N included)."""
    try:
        # O_PATH first: opening a fifo for reading would wait for a writer, where
        # execve says EACCES at once.
        found = os.open(proc.host_path(path), O_PATH | os.O_CLOEXEC)
    except OSError as e:
        raise ExecError(e.errno or errno.ENOENT, e.strerror or "cannot open") from None
    try:
        name = b"/proc/self/fd/%d" % found
        if not stat.S_ISREG(os.fstat(found).st_mode) or not os.access(name, os.X_OK):
            raise ExecError(errno.EACCES, "not an executable file")
        try:
            return os.open(name, os.O_RDONLY | os.O_CLOEXEC)
        except OSError as e:
            raise ExecError(e.errno or errno.EACCES, e.strerror or "cannot open") from None
    finally:
        os.close(found)


def execve(proc: Process, thread: GuestThread, path: bytes, argv: list[bytes],
           envp: list[bytes], *, shown: bytes | None = None,
           script_unreachable: bool = False) -> int:
    """Replace the payload (path as the guest names it); returns only on failure."""
    try:
        request = prepare(proc, path, argv, envp, shown=shown,
                          script_unreachable=script_unreachable)
    except ExecError as e:
        raise SyscallError(e.errno) from None
    proc.trace.log("process", f"execve {path!r} {argv!r}")
    if proc.vfork_release is not None:  # exec cannot fail any more: release the parent
        proc.vfork_release()
    raise ExecImage(request)
