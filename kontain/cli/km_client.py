"""km's warm client: hand a km command line to a resident km server (`km --server
SOCKET`) and end as the payload ends.

With KM_SERVER=SOCKET in its environment, km first asks that server, which forks a
monitor with every km module already imported (kontain.cli.km_server). The client sends
what a cold km would have inherited: its command line, environment (as exec'd, from
/proc/self/environ), working directory (a descriptor), every inheritable descriptor,
umask, personality, ignored signals and signal mask; the server takes the client's
credentials, limits and confinement from the kernel. Signals the client receives go to
the monitor; a stop of the monitor stops the client; the payload's exit status, or its
fatal signal, becomes the client's. When no server answers, or it declines (another
sandbox, credentials it cannot grant, a background job on a terminal), run_warm returns
having changed nothing and km starts cold.

Only built-in modules (posix, _signal, sys) and _socket: this runs before anything else
of km's is imported, and its whole cost is the warm start's.
"""

import _signal
import _thread
import posix
import sys

#: Linux x86-64 numbers (no `socket` or `signal` module: they import enum).
SOL_SOCKET, SCM_RIGHTS = 1, 1
SIGKILL, SIGPIPE, SIGCHLD, SIGCONT, SIGSTOP = 9, 13, 17, 18, 19
#: Never forwarded: the uncatchable ones, SIGPIPE (km ignores it), glibc's 32 and 33,
#: and the signals of a fault in the client itself (a Python handler would return to
#: the faulting instruction forever).
NOT_FORWARDED = frozenset({SIGKILL, SIGSTOP, SIGPIPE, 32, 33, 4, 5, 7, 8, 11, 31})
#: Signals whose default action dumps core (RLIMIT_CORE is set to 0 before re-raising
#: one, as km does: the core would be the client's, not the payload's).
CORE_SIGNALS = frozenset({3, 4, 5, 6, 7, 8, 11, 24, 25, 31})
#: SCM_RIGHTS carries at most 253 descriptors (SCM_MAX_FD); one is the cwd.
MAX_FDS = 252
PROTOCOL = b"KM1"
#: Set once run_warm has been tried (by the launcher, before km.entry would try again).
attempted = False


def inherited_signal_state() -> tuple[frozenset[int], int]:
    """The signals km's parent left ignored and the mask it left blocked: the payload
    inherits them, as from an execve (`nohup km ...`, a shell's `trap '' HUP`).

    Python itself sets SIGPIPE and SIGXFSZ to ignored before km runs, so what the
    parent did with those two cannot be known: they start at their default action (what
    Python's subprocess and most shells give a child anyway)."""
    python_sets = (_signal.SIGPIPE, _signal.SIGXFSZ)
    ignored = frozenset(
        signo for signo in range(1, _signal.NSIG)
        if signo not in python_sets and _signal.getsignal(signo) == _signal.SIG_IGN)
    mask = 0
    for signo in _signal.pthread_sigmask(_signal.SIG_BLOCK, ()):
        mask |= 1 << (int(signo) - 1)
    return ignored, mask


def _read(path: str) -> bytes:
    fd = posix.open(path, posix.O_RDONLY | posix.O_CLOEXEC)
    try:
        data = b""
        while chunk := posix.read(fd, 1 << 16):
            data += chunk
        return data
    finally:
        posix.close(fd)


def _passed_descriptors(sock_fd: int) -> list[int]:
    """Every descriptor a cold km (exec'd by this process's parent) would have: the
    inheritable ones."""
    fds = []
    for name in posix.listdir("/proc/self/fd"):
        fd = int(name)
        if fd == sock_fd:
            continue
        try:
            if posix.get_inheritable(fd):
                fds.append(fd)
        except OSError:  # the directory listdir had open
            pass
    return sorted(fds)


def _in_background() -> bool:
    """A job in a terminal's background: its payload must meet SIGTTIN/SIGTTOU as a
    cold km's would, which only a process of the job can (the warm monitor is not)."""
    for fd in (0, 1, 2):
        try:
            return posix.tcgetpgrp(fd) != posix.getpgrp()
        except OSError:
            continue
    return False


def run_warm(server: bytes, args: list[str]) -> None:
    """Run km's command line args in a monitor the warm server at `server` forks, and
    end this process as its payload ends. Returns, having changed nothing, when no
    server answers or it declines: km then starts cold."""
    global attempted
    attempted = True
    for arg in args:
        if not arg.startswith("-") or arg == "--":
            break
        if arg == "--server" or arg.startswith("--server="):
            return  # (km --server SOCKET starts a server, with KM_SERVER set or not)
    if not server or _in_background():
        return
    import _socket
    try:
        sock = _socket.socket(_socket.AF_UNIX, _socket.SOCK_STREAM)
    except OSError:
        return
    try:
        sock.connect(server)
        fds = _passed_descriptors(sock.fileno())
        if len(fds) > MAX_FDS:
            return
        cwd = posix.open(".", posix.O_PATH | posix.O_DIRECTORY | posix.O_CLOEXEC)
    except OSError:
        sock.close()
        return
    ignored, mask = inherited_signal_state()
    umask = posix.umask(0)
    posix.umask(umask)
    try:
        personality = int(_read("/proc/self/personality"), 16)
        environ = _read("/proc/self/environ")
    except (OSError, ValueError):
        personality, environ = 0, b"\0".join(k + b"=" + v for k, v in posix.environ.items())
    encoding, errors = sys.getfilesystemencoding(), sys.getfilesystemencodeerrors()
    argv = [a.encode(encoding, errors) for a in args]
    body = b"\0".join([PROTOCOL, b"%d" % umask, b"%d" % personality, b"%d" % mask,
                       b",".join(b"%d" % s for s in sorted(ignored)),
                       b",".join(b"%d" % fd for fd in fds), b"%d" % len(argv)]
                      + argv) + b"\0" + environ
    rights = b"".join(fd.to_bytes(4, sys.byteorder) for fd in [cwd] + fds)
    _Session(sock).run(body, rights, cwd)


class _Session:
    """One request: signals forwarded with their sender, the server's answers followed.

    The signals to forward are blocked and taken with sigwaitinfo by the main thread, so
    that the monitor can post each with the siginfo it came with (who sent it, how); a
    second thread reads the server's answers."""

    def __init__(self, sock: object) -> None:
        self.sock = sock
        self.pid = posix.getpid()
        self.lock = _thread.allocate_lock()
        #: The monitor's pid, once the server said it ('G').
        self.monitor = 0
        #: Signals received before that: (signo, code, pid, uid).
        self.pending: list[tuple[int, int, int, int]] = []
        #: What the reader thread left to the main thread: "cold", or ("K", signo).
        self.outcome: object = None
        self.forwarded = [s for s in range(1, 65) if s not in NOT_FORWARDED]
        # (A signal the parent left ignored is forwarded too: the payload ignores it.)
        self.mask = _signal.pthread_sigmask(_signal.SIG_BLOCK, self.forwarded)

    def run(self, body: bytes, rights: bytes, cwd: int) -> None:
        sock = self.sock
        message = len(body).to_bytes(8, "little") + body
        try:
            sent = sock.sendmsg([message], [(SOL_SOCKET, SCM_RIGHTS, rights)])
            if sent < len(message):
                sock.sendall(message[sent:])
        except OSError:
            return self._cold()
        finally:
            posix.close(cwd)
        main = _thread.get_ident()
        _thread.start_new_thread(self._read, (main,))
        while True:
            info = _signal.sigwaitinfo(self.forwarded)
            if info.si_pid == self.pid and info.si_signo == SIGCHLD and self.outcome:
                break  # (the reader's call: no other process sends with this pid)
            self._forward((info.si_signo, info.si_code, info.si_pid, info.si_uid))
        if self.outcome == "cold":
            return self._cold()
        _die(self.outcome[1])

    def _forward(self, signal: tuple[int, int, int, int]) -> None:
        with self.lock:
            if not self.monitor:
                self.pending.append(signal)
                return
            if signal[0] == SIGCONT:
                # A stopped monitor cannot post it to itself: only a SIGCONT sent to it
                # goes on (the payload sees this client as its sender).
                try:
                    posix.kill(self.monitor, SIGCONT)
                except OSError:
                    pass
                return
            try:
                self.sock.sendall(b"".join(v.to_bytes(4, "little", signed=True)
                                           for v in signal))
            except OSError:
                pass

    def _read(self, main: int) -> None:
        """The reader thread: the server's answers."""
        buffer = b""
        while True:
            try:
                data = self.sock.recv(256)
            except OSError:
                data = b""
            if not data:
                if not self.monitor:
                    return self._wake(main, "cold")
                posix.write(2, b"km: the warm server's monitor ended without a status\n")
                posix._exit(1)
            buffer += data
            while len(buffer) >= 5:
                kind, value = buffer[:1], int.from_bytes(buffer[1:5], "little", signed=True)
                buffer = buffer[5:]
                if kind == b"R":  # declined: before anything ran
                    return self._wake(main, "cold")
                if kind == b"G":  # the monitor's pid: signals go to it from now on
                    with self.lock:
                        self.monitor = value
                        pending, self.pending = self.pending, []
                    for signal in pending:
                        self._forward(signal)
                elif kind == b"T":  # the payload stopped: so does this job
                    posix.kill(self.pid, SIGSTOP)
                elif kind == b"X":
                    posix._exit(value)
                elif kind == b"K":  # (signal dispositions are the main thread's to change)
                    return self._wake(main, ("K", value))

    def _wake(self, main: int, outcome: object) -> None:
        self.outcome = outcome
        _signal.pthread_kill(main, SIGCHLD)

    def _cold(self) -> None:
        """Leave no trace of the attempt: the mask as it was, and signals received
        meanwhile taken as a cold km would have taken them."""
        self.sock.close()
        _signal.pthread_sigmask(_signal.SIG_SETMASK, self.mask)
        for signal in self.pending:
            posix.kill(self.pid, signal[0])


def _die(signo: int) -> None:
    """End as the payload ended: killed by signo (as km ends itself)."""
    if signo in CORE_SIGNALS:
        import resource
        try:
            resource.setrlimit(resource.RLIMIT_CORE,
                               (0, resource.getrlimit(resource.RLIMIT_CORE)[1]))
        except (ValueError, OSError):
            pass
    try:
        if signo != SIGKILL:  # (its action cannot be set: OSError, and no kill)
            _signal.signal(signo, _signal.SIG_DFL)
        _signal.pthread_sigmask(_signal.SIG_UNBLOCK, [signo])
        posix.kill(posix.getpid(), signo)
    except (OSError, ValueError):
        pass
    posix._exit(128 + signo)
