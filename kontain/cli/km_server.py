"""km's warm server (`km --server SOCKET`): a resident km that forks a monitor per request.

A cold km spends most of its start importing itself (docs/ARCHITECTURE.md, "Where the
time goes"). The server imports everything once, opens /dev/kvm and asks KVM what it
supports, then keeps SPARES children forked ahead of time, each waiting on the listening
socket with its private copy of the server's pages already made (MADV_POPULATE_WRITE: a
monitor would otherwise take ~800 copy-on-write faults as it starts, ~3 ms here). The
child that accepts a connection becomes that client's monitor:

1. it reads the request (kontain.cli.km_client: command line, environment, cwd,
   descriptors, umask, personality, signal state) and the client's credentials from the
   kernel (SO_PEERCRED, SO_PEERGROUPS, SO_PEERPIDFD);
2. it declines ('R': the client starts cold, as if no server were there) when it cannot
   make itself the process a cold km would have been: credentials a non-root server
   cannot take, or another confinement (namespaces, cgroup, seccomp, capability bounding
   set, LSM label) than the server's own;
3. it takes the client's limits, groups, gid and uid (a non-root client never gets a root
   monitor), umask, cwd, environment and descriptors (at the same numbers, all others
   closed), in a session of its own (no signal meant for the server's terminal reaches
   it), says 'G' with its pid, and runs the command line exactly as km's main does
   (kontain.cli.km.run); the server forks the next spare meanwhile;
4. when the payload ends it closes the payload's descriptors and sends 'X' and the exit
   status, or 'K' and the fatal signal, then ends as a cold km ends.

The client forwards the signals it receives to the monitor's pid (it has the client's
uid, so the client may); a thread of the monitor watches the client (a pidfd) and kills
the monitor, VM and all, if the client dies first. The server reaps monitors: a stopped
one (a stop signal's default action) is told to its client ('T'), which stops itself so
its shell sees the job stop; an exit status the monitor could not send itself (it crashed)
is sent from waitpid. If the server ends, running monitors go on and report themselves.

What a warm payload sees differently from a cold one: its parent (getppid) is the
server, its session and process group are its own, and it has no controlling terminal
(its stdio may still be the client's terminal). A client in a terminal's background job
runs cold, so SIGTTIN/SIGTTOU keep their meaning.

Who may use the server is whoever may connect to SOCKET (its mode is the server's umask's;
chmod it to share): a root server runs each client's payload with the client's own
uid, gid and groups and lends it /dev/kvm, as the kvm group would.
"""

from __future__ import annotations

import _signal
import _thread
import ctypes
import errno
import fcntl
import gc
import os
import resource
import select
import socket
import struct

from kontain.cli import km
from kontain.kvm.api import Kvm
from kontain.linux import hostcall as host
from kontain.linux.numbers import NUMBERS as NR
from kontain.monitor.exits import die_by_signal, end_monitor

TYPE_CHECKING = False
if TYPE_CHECKING:
    from kontain.monitor.launch import Launched
    from kontain.monitor.process import Outcome, Process

#: Monitors forked ahead of time, waiting for a client.
SPARES = 2
SO_PEERCRED, SO_PEERGROUPS, SO_PEERPIDFD = 17, 59, 77
PR_SET_DUMPABLE, PR_SET_CHILD_SUBREAPER, PR_SET_NO_NEW_PRIVS = 4, 36, 38
#: What a client's process must share with the server's (a forked monitor cannot take
#: them on): namespaces, the cgroup, /proc/PID/status lines, the LSM label.
NAMESPACES = ("mnt", "pid", "net", "ipc", "uts", "user", "cgroup", "time")
SAME_STATUS = (b"Seccomp", b"Seccomp_filters", b"CapBnd", b"CapInh")
#: For a root client, all of its capabilities (a non-root client has none: see _admit).
ROOT_STATUS = (b"CapPrm", b"CapEff", b"CapAmb")
#: A request's size limit (argv + environment: Linux allows at most 6 MiB or so).
MAX_REQUEST = 16 << 20
CMSG_ROOM = socket.CMSG_SPACE(253 * 4)
#: Seconds a client has to send its request (it sends it at once).
REQUEST_TIMEOUT = 10


def _error(message: str) -> None:
    os.write(2, f"km: {message}\n".encode(errors="replace"))


def serve(path: str) -> int:
    """Run the server on the unix socket `path` until SIGINT, SIGTERM or SIGHUP."""
    km.import_all()
    try:
        kvm = Kvm()
        kvm.supported_cpuid()  # asked once: every monitor inherits the answers
        kvm.vcpu_mmap_size()
    except OSError as e:
        _error(f"cannot open /dev/kvm: {e.strerror or e} (KVM is needed to run payloads)")
        return km.EXIT_KM_ERROR
    try:
        listener = _listen(path)
    except OSError as e:
        _error(f"--server {path}: {e.strerror or e}")
        return km.EXIT_KM_ERROR
    server = Server(path, listener, kvm)
    os.write(2, f"km: warm server on {path} (KM_SERVER={path} km ...)\n".encode(errors="replace"))
    try:
        server.loop()
    finally:
        server.close()
    return 0


def _listen(path: str) -> socket.socket:
    listener = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    try:
        listener.bind(path)
    except OSError as e:
        if e.errno != errno.EADDRINUSE:
            raise
        probe = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        try:
            probe.connect(path)
        except ConnectionRefusedError:  # a stale socket: no server behind it
            os.unlink(path)
            listener.bind(path)
        else:
            raise OSError(errno.EADDRINUSE, "a server already answers there") from None
        finally:
            probe.close()
    listener.listen(128)
    listener.setblocking(False)
    return listener


def _same_file(path: str, st: os.stat_result) -> bool:
    try:
        now = os.stat(path)
    except OSError:
        return False
    return (now.st_dev, now.st_ino) == (st.st_dev, st.st_ino)


class Server:
    """The resident process: keeps spares forked, tells clients what waitpid says."""

    def __init__(self, path: str, listener: socket.socket, kvm: Kvm) -> None:
        self.path, self.listener, self.kvm = path, listener, kvm
        #: The socket file made: removed at the end only if it is still this one.
        self.bound = os.stat(path)
        #: Spares tell the server they took a client (and hand it the connection).
        self.notify_read, self.notify_write = socket.socketpair(socket.AF_UNIX,
                                                                socket.SOCK_DGRAM)
        #: Spares see EOF on this pipe when the server is gone, and leave.
        self.alive_read, self.alive_write = os.pipe2(os.O_CLOEXEC)
        self.wake_read, self.wake_write = os.pipe2(os.O_CLOEXEC | os.O_NONBLOCK)
        #: Spares waiting for a client; the processes forking one (see _fork_spare).
        self.spares: set[int] = set()
        self.starting: set[int] = set()
        #: pid -> the connection to its client (the server's copy).
        self.monitors: dict[int, socket.socket] = {}
        self.stopping = False
        self.failed_spares = 0

    def _stop(self, signo: int, frame: object) -> None:
        self.stopping = True

    def loop(self) -> None:
        # Spares are the server's grandchildren (see _fork_spare): its children still.
        host.syscall(NR["prctl"], PR_SET_CHILD_SUBREAPER, 1, 0, 0, 0)
        _signal.set_wakeup_fd(self.wake_write)
        _signal.signal(_signal.SIGCHLD, lambda signo, frame: None)
        for signo in (_signal.SIGINT, _signal.SIGTERM, _signal.SIGHUP):
            _signal.signal(signo, self._stop)
        poller = select.poll()
        poller.register(self.notify_read, select.POLLIN)
        poller.register(self.wake_read, select.POLLIN)
        gc.freeze()  # the spares share what the server made, untouched by collections
        while not self.stopping:
            while len(self.spares) + len(self.starting) < SPARES and self.failed_spares < 10:
                self.starting.add(self._fork_spare())
            try:
                poller.poll()
            except InterruptedError:
                pass
            try:
                while os.read(self.wake_read, 256):
                    pass
            except BlockingIOError:
                pass
            self._take_notifications()
            self._reap()
            if self.failed_spares >= 10:
                _error("--server: spares keep failing; stopping")
                return

    def _fork_spare(self) -> int:
        """Fork a process that makes a spare: in a session of its own (no signal meant
        for the server's terminal reaches a payload) without leading it or its process
        group (a payload may call setsid, as a cold km's may when it is not a job of an
        interactive shell). Its pid; the spare's comes as an 'S' notification."""
        pid = os.fork()
        if pid == 0:
            try:
                os.setsid()
                spare = os.fork()
                if spare == 0:
                    self._spare()
                self.notify_write.send(b"S" + spare.to_bytes(8, "little"))
                os._exit(0)
            except BaseException as e:  # noqa: BLE001 - a km bug: said on the server's stderr
                _error(f"internal error in a monitor: {e!r}")
            finally:
                os._exit(km.EXIT_KM_ERROR)
        return pid

    def _take_notifications(self) -> None:
        while True:
            try:
                data, ancdata, _flags, _addr = self.notify_read.recvmsg(
                    9, socket.CMSG_SPACE(4), socket.MSG_DONTWAIT)
            except (BlockingIOError, InterruptedError):
                return
            kind, pid = data[:1], int.from_bytes(data[1:9], "little")
            if kind == b"S":  # a new spare
                self.spares.add(pid)
                continue
            self.spares.discard(pid)  # ('A': it accepted a client)
            self.failed_spares = 0
            for level, kind, payload in ancdata:
                if level == socket.SOL_SOCKET and kind == socket.SCM_RIGHTS:
                    fd = int.from_bytes(payload[:4], "little")
                    self.monitors[pid] = socket.socket(fileno=fd)

    def _reap(self) -> None:
        while True:
            try:
                pid, status = os.waitpid(-1, os.WNOHANG | os.WUNTRACED | os.WCONTINUED)
            except ChildProcessError:
                return
            if pid == 0:
                return
            conn = self.monitors.get(pid)
            if pid in self.starting:
                self.starting.discard(pid)
                if status != 0:
                    self.failed_spares += 1
            if pid in self.spares:  # died before taking a client: a broken host?
                self.spares.discard(pid)
                self.failed_spares += 1
            if conn is None:
                continue
            if os.WIFSTOPPED(status):
                _send(conn, b"T", os.WSTOPSIG(status))
            elif os.WIFEXITED(status) or os.WIFSIGNALED(status):
                # (Unread when the monitor told the client itself, as it does unless it
                # crashed: the client left at the first.)
                if os.WIFEXITED(status):
                    _send(conn, b"X", os.WEXITSTATUS(status))
                else:
                    _send(conn, b"K", os.WTERMSIG(status))
                conn.close()
                del self.monitors[pid]

    def close(self) -> None:
        """Stop taking clients: spares leave (the pipe's EOF), monitors go on."""
        if _same_file(self.path, self.bound):
            try:
                os.unlink(self.path)
            except OSError:
                pass
        self.listener.close()
        os.close(self.alive_write)
        for conn in self.monitors.values():
            conn.close()

    # ---- in a spare --------------------------------------------------------------------

    def _spare(self) -> None:
        """Wait for a client; become its monitor (does not return)."""
        _signal.set_wakeup_fd(-1)
        for signo in (_signal.SIGCHLD, _signal.SIGTERM, _signal.SIGHUP):
            _signal.signal(signo, _signal.SIG_DFL)
        _signal.signal(_signal.SIGINT, _signal.default_int_handler)  # as Python starts
        for fd in (self.alive_write, self.wake_read, self.wake_write):
            os.close(fd)
        self.notify_read.close()
        for conn in self.monitors.values():
            conn.close()
        _populate()
        poller = select.poll()
        poller.register(self.listener, select.POLLIN)
        poller.register(self.alive_read, select.POLLIN)
        while True:
            for fd, _events in poller.poll():
                if fd == self.alive_read:
                    os._exit(0)  # the server is gone
            try:
                conn, _ = self.listener.accept()
                break
            except (BlockingIOError, InterruptedError):
                continue
        self.listener.close()
        os.close(self.alive_read)
        try:
            self.notify_write.sendmsg([b"A" + os.getpid().to_bytes(8, "little")],
                                      [(socket.SOL_SOCKET, socket.SCM_RIGHTS,
                                        conn.fileno().to_bytes(4, "little"))])
        except OSError:
            pass  # the server is gone: this monitor reports for itself
        self.notify_write.close()
        conn.setblocking(True)
        Monitor(conn, self.kvm).serve()


def _send(conn: socket.socket, kind: bytes, value: int) -> bool:
    try:
        conn.send(kind + value.to_bytes(4, "little", signed=True),
                  socket.MSG_NOSIGNAL | socket.MSG_DONTWAIT)
        return True
    except OSError:
        return False


class Declined(Exception):
    """This monitor cannot be what a cold km would be for the client: it starts cold."""


class Request:
    """What the client sent (kontain.cli.km_client.run_warm)."""

    def __init__(self, body: bytes, fds: list[int]) -> None:
        fields = body.split(b"\0")
        if len(fields) < 7 or fields[0] != b"KM1":
            raise Declined("not a km request")
        self.umask, self.personality, self.mask = (int(f) for f in fields[1:4])
        self.ignored = frozenset(int(s) for s in fields[4].split(b",") if s)
        self.targets = [int(fd) for fd in fields[5].split(b",") if fd]
        argc = int(fields[6])
        self.argv = [os.fsdecode(a) for a in fields[7:7 + argc]]
        self.env = [e for e in fields[7 + argc:] if e]
        if len(fds) != len(self.targets) + 1 or len(self.argv) != argc:
            raise Declined("descriptors or arguments lost")
        if any(not 0 <= fd < 1 << 20 for fd in self.targets) or self.umask & ~0o777:
            raise Declined("bad request")
        self.cwd, self.fds = fds[0], fds[1:]


class Monitor:
    """One client's monitor, in the spare that accepted it."""

    def __init__(self, conn: socket.socket, kvm: Kvm) -> None:
        self.conn, self.kvm = conn, kvm
        self.pidfd = self.log_fd = -1
        self.no_new_privs = False
        #: Held by the thread that reports the payload's end (the first to end it).
        self.reporting = _thread.allocate_lock()

    def serve(self) -> None:
        received: list[int] = []
        try:  # (the server's stderr, for why a client was declined; closed before 'G')
            self.log_fd = fcntl.fcntl(2, fcntl.F_DUPFD_CLOEXEC, 3)
        except OSError:
            self.log_fd = -1
        try:
            request = self._receive(received)
            pid, uid, gid, groups = self._credentials()
            self._admit(pid, uid, gid, groups)
            self._become(request, pid, uid, gid, groups)
        except (Declined, OSError, ValueError) as e:
            # (Why is the server's business, not the client's: it starts cold, as if no
            # server were there.)
            if self.log_fd >= 0:
                os.write(self.log_fd, f"km: a client runs cold: {e}\n".encode(errors="replace"))
            for fd in received:
                try:
                    os.close(fd)
                except OSError:
                    pass
            _send(self.conn, b"R", 0)
            os._exit(0)
        if self.log_fd >= 0:
            os.close(self.log_fd)
        if not _send(self.conn, b"G", os.getpid()):
            os._exit(0)
        cl, status = km.command_line(request.argv, allow_server=False)
        if cl is not None:
            status = km.run(cl, request.ignored, request.mask, request.personality,
                            env=request.env, kvm=self.kvm, after_launch=self._watch_client,
                            before_exit=self._report)
        # km's own failure (usage, payload not found...), said on the client's stderr.
        os.closerange(0, self.conn.fileno())
        _send(self.conn, b"X", status)
        os._exit(status)

    def _receive(self, received: list[int]) -> Request:
        self.conn.settimeout(REQUEST_TIMEOUT)  # (a client that sends nothing holds a process)
        data, ancdata, flags, _addr = self.conn.recvmsg(1 << 16, CMSG_ROOM)
        for level, kind, payload in ancdata:
            if level == socket.SOL_SOCKET and kind == socket.SCM_RIGHTS:
                received += [int.from_bytes(payload[i:i + 4], "little")
                             for i in range(0, len(payload) - len(payload) % 4, 4)]
        if flags & socket.MSG_CTRUNC or len(data) < 8:
            raise Declined("truncated")
        size = int.from_bytes(data[:8], "little")
        if size > MAX_REQUEST:
            raise Declined("too large")
        body = bytearray(data[8:])
        while len(body) < size:
            chunk = self.conn.recv(min(size - len(body), 1 << 20))
            if not chunk:
                raise Declined("client gone")
            body += chunk
        self.conn.settimeout(None)
        return Request(bytes(body), received)

    def _credentials(self) -> tuple[int, int, int, list[int]]:
        cred = self.conn.getsockopt(socket.SOL_SOCKET, SO_PEERCRED, 12)
        pid, uid, gid = (int.from_bytes(cred[i:i + 4], "little") for i in (0, 4, 8))
        raw = self.conn.getsockopt(socket.SOL_SOCKET, SO_PEERGROUPS, 1024)
        groups = [int.from_bytes(raw[i:i + 4], "little") for i in range(0, len(raw), 4)]
        try:  # the client itself, whatever its pid may later name
            self.pidfd = int.from_bytes(
                self.conn.getsockopt(socket.SOL_SOCKET, SO_PEERPIDFD, 4), "little")
        except OSError:
            self.pidfd = os.pidfd_open(pid)
        return pid, uid, gid, groups

    def _admit(self, pid: int, uid: int, gid: int, groups: list[int]) -> None:
        """Decline a client whose cold km this monitor could not be."""
        if os.geteuid() != 0 and (uid != os.geteuid() or gid != os.getegid()
                                  or sorted(groups) != sorted(os.getgroups())):
            raise Declined("credentials the server cannot take")
        for ns in NAMESPACES:
            try:
                mine = os.readlink(f"/proc/self/ns/{ns}")
            except FileNotFoundError:
                continue  # (a kernel without that namespace)
            if os.readlink(f"/proc/{pid}/ns/{ns}") != mine:
                raise Declined(f"another {ns} namespace")
        if _read(f"/proc/{pid}/cgroup") != _read("/proc/self/cgroup"):
            raise Declined("another cgroup")
        try:
            label = _read("/proc/self/attr/current")
        except OSError:
            label = None
        if label is not None and _read(f"/proc/{pid}/attr/current") != label:
            raise Declined("another LSM label")
        theirs, mine = _status(pid), _status("self")
        for name in SAME_STATUS + (ROOT_STATUS if uid == 0 else ()):
            if theirs.get(name) != mine.get(name):
                raise Declined(f"another {name.decode()}")
        if uid != 0 and any(int(theirs.get(n, b"0"), 16) for n in ROOT_STATUS):
            raise Declined("a non-root client with capabilities")
        if theirs.get(b"NoNewPrivs") == b"0" and mine.get(b"NoNewPrivs") != b"0":
            raise Declined("no_new_privs the client has not")
        self.no_new_privs = theirs.get(b"NoNewPrivs") != b"0"
        # The pid named the client all along only if the client is still alive now.
        if host.syscall(NR["pidfd_send_signal"], self.pidfd, 0, 0, 0) != 0:
            raise Declined("client gone")

    def _become(self, request: Request, pid: int, uid: int, gid: int,
                groups: list[int]) -> None:
        """Make this process the one a cold km started by the client would be."""
        self._arrange_descriptors(request)
        for resource_id, limit in enumerate(_limits(pid)):
            resource.setrlimit(resource_id, limit)
        if os.geteuid() == 0:
            os.setgroups(groups)
            os.setresgid(gid, gid, gid)
            os.setresuid(uid, uid, uid)
            # (A change of uid made it undumpable: a cold km is dumpable until its jail.)
            host.syscall(NR["prctl"], PR_SET_DUMPABLE, 1, 0, 0, 0)
        if self.no_new_privs:
            host.syscall(NR["prctl"], PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0)
        os.umask(request.umask)
        os.fchdir(request.cwd)  # (as the client: it needs the client's search right)
        os.close(request.cwd)
        os.environb.clear()  # launch() looks the payload up in the client's PATH
        for entry in request.env:
            name, eq, value = entry.partition(b"=")
            if eq and name:
                try:
                    os.environb[name] = value
                except ValueError:
                    pass

    def _arrange_descriptors(self, request: Request) -> None:
        """The client's descriptors at their numbers, nothing else below km's own."""
        base = max(request.targets + [2]) + 1
        self.conn = socket.socket(fileno=_move(self.conn.detach(), base))
        self.pidfd = _move(self.pidfd, base)
        self.kvm.fd = _move(self.kvm.fd, base)
        request.cwd = _move(request.cwd, base)
        request.fds = [_move(fd, base) for fd in request.fds]
        self.log_fd = _move(self.log_fd, base) if self.log_fd >= 0 else -1
        keep = {self.conn.fileno(), self.pidfd, self.kvm.fd, request.cwd, self.log_fd,
                *request.fds}
        for fd, target in zip(request.fds, request.targets, strict=True):
            os.dup2(fd, target, inheritable=True)
        for name in os.listdir("/proc/self/fd"):
            fd = int(name)
            if fd not in keep and fd not in request.targets:
                try:
                    os.close(fd)
                except OSError:
                    pass
        for fd in request.fds:
            os.close(fd)
        request.fds = []

    def _watch_client(self, launched: Launched) -> None:
        """A thread that kills this monitor, VM and all, when the client dies (no
        signals for it: km's forwarding reads them all from its signalfd). The
        connection and pidfd go among km's own descriptors first, out of the payload's
        reach."""
        fds = launched.proc.fds
        self.conn = socket.socket(fileno=fds.move_high(self.conn.detach()))
        self.pidfd = fds.move_high(self.pidfd)
        everything = _signal.valid_signals()
        old = _signal.pthread_sigmask(_signal.SIG_BLOCK, everything)
        _thread.start_new_thread(_watch, (self.conn.fileno(), self.pidfd))
        _signal.pthread_sigmask(_signal.SIG_SETMASK, old)
        # A guest fork's km is not this client's: it has no watcher and no connection.
        os.register_at_fork(after_in_child=self._forget_client)

    def _forget_client(self) -> None:
        """In a guest fork's km: close the client's connection and pidfd, once (the
        numbers are other descriptors' in that km's own children)."""
        if self.pidfd < 0:
            return
        for fd in (self.conn.detach(), self.pidfd):
            try:
                os.close(fd)
            except OSError:
                pass
        self.pidfd = -1

    def _report(self, outcome: Outcome, proc: Process) -> None:
        """The payload is over: tell the client, once the payload's descriptors are
        closed (a pipe's reader sees its EOF, a lock is free, when the client exits).
        A guest fork's km (no client of its own) ends as a cold km's would."""
        if self.pidfd < 0:
            end_monitor(outcome, proc.trace.write, "km")
        if not self.reporting.acquire(blocking=False):
            self.reporting.acquire()  # another thread is ending the process: wait for it
        if outcome.internal:
            proc.trace.write(f"km: internal error: {outcome.reason}\n")
        # With the GIL held from here (PyDLL calls keep it), no guest thread runs on:
        # one whose read the close ends must not go on to exit with another status.
        message = (b"K" if outcome.signal else b"X") + (
            outcome.signal or outcome.status).to_bytes(4, "little", signed=True)
        _held_libc.syscall(NR["close_range"], 0, proc.fds.km_base - 1, 0)
        _held_libc.send(self.conn.fileno(), message, len(message),
                        socket.MSG_NOSIGNAL | socket.MSG_DONTWAIT)
        if outcome.signal:
            die_by_signal(outcome.signal)
        os._exit(outcome.status)


#: libc through ctypes.PyDLL: its calls keep the GIL (see Monitor._report).
_held_libc = ctypes.PyDLL(None)
_held_libc.syscall.argtypes = [ctypes.c_long, ctypes.c_uint, ctypes.c_uint, ctypes.c_uint]
_held_libc.send.argtypes = [ctypes.c_int, ctypes.c_char_p, ctypes.c_size_t, ctypes.c_int]


MADV_POPULATE_WRITE = 23
#: Larger writable mappings are reservations, not what the server made.
POPULATE_LIMIT = 64 << 20


def _populate() -> None:
    """Copy now, while the spare waits, the pages of the server a monitor would copy
    one fault at a time as it starts (a forked child's first write to each shared page
    faults: about 800 of them in a warm start, 1-2 ms on these hosts)."""
    with open("/proc/self/maps", "rb") as f:
        lines = f.read().splitlines()
    for line in lines:
        fields = line.split()
        if fields[1][:2] != b"rw" or fields[1][3:4] != b"p" or fields[-1] in (
                b"[vvar]", b"[vdso]", b"[vsyscall]", b"[stack]"):
            continue
        start, end = (int(x, 16) for x in fields[0].split(b"-"))
        if end - start <= POPULATE_LIMIT:
            host.syscall(NR["madvise"], start, end - start, MADV_POPULATE_WRITE)


#: The sender's si_code kept for a forwarded signal (kill, the kernel's, sigqueue,
#: tgkill); any other is taken as kill's: the client receives no timer's or child's.
SENDER_CODES = frozenset({0, 0x80, -1, -6})


def _watch(conn: int, pidfd: int) -> None:
    """The watcher thread: posts the signals the client forwards to this process, as
    their sender sent them; kills this process when the client is gone."""
    poller = select.poll()
    poller.register(conn, select.POLLIN)
    poller.register(pidfd, select.POLLIN)
    siginfo = ctypes.create_string_buffer(128)
    tid = _thread.get_native_id()
    buffer = b""
    while True:
        try:
            events = poller.poll()
        except InterruptedError:
            continue
        for fd, _flags in events:
            if fd == pidfd:
                os.kill(os.getpid(), _signal.SIGKILL)  # the client exited: so does its km
            try:
                data = os.read(conn, 4096)
            except OSError:
                data = b""
            if not data:
                os.kill(os.getpid(), _signal.SIGKILL)
            buffer += data
            while len(buffer) >= 16:
                signo, code, pid, uid = struct.unpack_from("<iiiI", buffer)
                buffer = buffer[16:]
                if 1 <= signo <= 64:
                    # To itself, a task may queue a signal with any sender's code: km
                    # reads it from its signalfd as if the sender had sent it to km.
                    # (Named by this thread's own id, as the kernel wants, it still goes
                    # to the whole process.)
                    struct.pack_into("<iiiiiI", siginfo, 0, signo, 0,
                                     code if code in SENDER_CODES else 0, 0, pid, uid)
                    host.syscall(NR["rt_sigqueueinfo"], tid, signo, ctypes.addressof(siginfo))


def _move(fd: int, base: int) -> int:
    """fd at a number >= base (close-on-exec), the old one closed."""
    if fd >= base:
        return fd
    new = fcntl.fcntl(fd, fcntl.F_DUPFD_CLOEXEC, base)
    os.close(fd)
    return new


def _read(path: str) -> bytes:
    with open(path, "rb") as f:
        return f.read()


def _limits(pid: int) -> list[tuple[int, int]]:
    """The process's resource limits, by resource number: from /proc/PID/limits, which
    anyone may read (prlimit(2) on another user's process needs CAP_SYS_RESOURCE)."""
    limits = []
    for line in _read(f"/proc/{pid}/limits").splitlines()[1:]:
        # (the kernel's format: "%-25s %-20s %-20s %-10s", in resource order)
        soft, hard = (field.strip() for field in (line[26:46], line[47:67]))
        limits.append(tuple(resource.RLIM_INFINITY if v == b"unlimited" else int(v)
                            for v in (soft, hard)))
    if len(limits) != 16:  # (RLIM_NLIMITS)
        raise Declined("unexpected /proc/PID/limits")
    return limits


def _status(pid: int | str) -> dict[bytes, bytes]:
    fields = {}
    for line in _read(f"/proc/{pid}/status").splitlines():
        name, _, value = line.partition(b":")
        fields[name] = value.strip()
    return fields
