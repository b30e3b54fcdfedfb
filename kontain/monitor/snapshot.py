"""Snapshots: the whole payload saved to one file, from which `km FILE` resumes it.

The file is an ELF core (kontain.monitor.coredump writes it, so `gdb PAYLOAD SNAPSHOT`
reads it as a core: threads, registers, memory), with one more note, km's own, for what
a core does not hold and a resume needs:

    name "KONTAIN", type NT_KONTAIN (0x4B4D0001), desc: "KMSNAP" + format version (u16)
    + a marshal'd dict (Python's marshal, version 4) -- see state() for its keys.

Memory follows the core's rules with one addition that makes it enough to resume:
every PT_LOAD of anonymous memory holds all of it (never-touched pages are holes in a
sparse file), and a private file mapping the payload wrote holds all of it; a file
mapping it never wrote (code, read-only data) is re-mapped from its file at resume,
which must be unchanged (inode, size, mtime are checked).

A snapshot is taken in the paused state (ThreadGroup.pause, as a core): every other
thread stopped with its whole user context in hand. What cannot be saved is refused,
never faked, with a message naming it (SnapshotError): a socket (a connected one's
peer is elsewhere; see the docs for the list), an eventfd/epoll/timerfd/signalfd or
other anonymous-inode descriptor, the write end of a pipe whose reader is outside the
process, a deleted or replaced mapped file, a process with children (they would not
come back), a thread that does not stop (stuck in a host call that is not interrupted).

The trigger is a km hypercall (HYPERCALL, a number Linux will never use): the payload
makes it as a system call; it returns 0 in the original after the snapshot and 1 in a
resumed instance, or -errno (EBUSY: refused, the reason on km's diagnostics stream).
"""

from __future__ import annotations

import _thread
import errno
import marshal
import os
import stat
import struct
import time

from kontain.linux import hostcall as host
from kontain.machine import hostmem
from kontain.monitor import coredump as core

TYPE_CHECKING = False  # no typing import at run time: km start-up is timed
if TYPE_CHECKING:
    from collections.abc import Callable

    from kontain.monitor.process import Process
    from kontain.monitor.thread import GuestThread

#: The km hypercall: rax = HYPERCALL, rdi = flags (SNAP_LIVE), rsi = a label (a guest
#: C string, or 0), rdx = the snapshot's path (a guest C string, or 0: km --snapshot).
HYPERCALL = 0x4B4D0001
SNAP_LIVE = 1
NT_KONTAIN = 0x4B4D0001
NOTE_NAME = b"KONTAIN"
MAGIC = b"KMSNAP"
VERSION = 1
DEFAULT_PATH = "kmsnap"
#: How long the other threads have to stop.
STOP_TIMEOUT = 2.0
_MASK64 = (1 << 64) - 1
_FLAGS_MASK = 0x3F7FD7
_USER_FLAGS = 0x202
RLIMIT_COUNT = 16
PR_GET_DUMPABLE = 3
#: (major, minor) of the devices a snapshot saves by path: null, zero, full, random,
#: urandom, tty (reopening one gives the same device: nothing of it is lost).
MEMORY_DEVICES = {(1, 3), (1, 5), (1, 7), (1, 8), (1, 9), (5, 0)}


#: One snapshot at a time (two threads' hypercalls, or one and km_cli's).
_busy = _thread.allocate_lock()


class SnapshotError(Exception):
    """The snapshot is refused; the message names what cannot be saved."""


# ---- the hypercall ---------------------------------------------------------------------

def hypercall(t: GuestThread, flags: int, label: int, path: int) -> int:
    """The payload asked for a snapshot. Returns 0 (written, the original goes on) or
    -errno; not live, the original ends once it is written (exit status 0), before any
    of its threads runs again."""
    proc = t.proc
    if flags & ~SNAP_LIVE:
        return -errno.EINVAL
    try:
        name = t.mm.cstring(path) if path else None
        tag = t.mm.cstring(label) if label else b""
    except OSError:
        return -errno.EFAULT
    target = os.fsencode(name if name is not None else proc.options.snapshot or DEFAULT_PATH)
    started = time.monotonic_ns()

    def written(size: int) -> None:
        proc.trace.log("snapshot", f"{os.fsdecode(target)}: {size} bytes in "
                                   f"{(time.monotonic_ns() - started) / 1e6:.1f} ms")
        if not flags & SNAP_LIVE:  # (still paused: no thread runs another instruction)
            proc.end(proc.outcome(status=0))

    try:
        take(proc, t, target, tag, after=written)
    except SnapshotError as e:
        proc.trace.write(f"km: snapshot refused: {e}\n")
        return -errno.EBUSY
    except OSError as e:
        proc.trace.write(f"km: snapshot {os.fsdecode(target)}: {e.strerror or e}\n")
        return -(e.errno or errno.EIO)
    return 0


def take(proc: Process, caller: GuestThread | None, path: bytes, label: bytes = b"",
         after: Callable[[int], None] | None = None) -> int:
    """Pause the process, check it can be saved, write the snapshot to path (a guest
    path, relative to the payload's cwd); returns the file's size. caller: the thread
    making the hypercall, or None (km --mgtpipe: no thread of the process asks).
    after: called with the size while the process is still paused (it may end it)."""
    if not _busy.acquire(False):
        raise SnapshotError("another snapshot of this process is being taken")
    try:
        return _take(proc, caller, path, label, after)
    finally:
        _busy.release()


def _take(proc: Process, caller: GuestThread | None, path: bytes, label: bytes,
          after: Callable[[int], None] | None) -> int:
    group = proc.group
    others = [t for t in group.all() if t is not caller and not t.exited]
    if caller is not None:
        caller.parked = True  # (its context is in hand: the hypercall)
    try:
        if others and not group.pause(STOP_TIMEOUT):
            stuck = [t.tid for t in group.all() if not t.parked and not t.exited]
            raise SnapshotError(f"thread(s) {stuck} did not stop (in a host call that is "
                                "not interrupted)")
        size = _write_snapshot(proc, caller, path, label)
        if after is not None:
            after(size)
        return size
    finally:
        if caller is not None:
            caller.parked = False
        if others:
            group.resume()


def _write_snapshot(proc: Process, caller: GuestThread | None, path: bytes,
                    label: bytes) -> int:
    _no_children()
    if proc.timers:
        raise SnapshotError(f"{len(proc.timers)} POSIX timer(s) (timer_create): the host's "
                            "timers of this process cannot be saved")
    threads = ([caller] if caller is not None else []) + [
        t for t in proc.group.all() if t is not caller and not t.exited]
    saved, images = [], []
    for t in threads:
        record, image = _thread_state(proc, t, t is caller)
        saved.append(record)
        images.append(image)
    vmas = proc.mm.vmas()
    files = _mapped_files(proc, vmas)
    fds = _descriptors(proc)
    if not saved:
        raise SnapshotError("no thread to save")
    pagemap = hostmem.pagemap_fd(proc.fds.move_high)
    sizes = [_saved_size(v, proc, pagemap) for v in vmas]
    state = _process_state(proc, label, saved, vmas, sizes, files, fds)
    body = core.notes(proc, images, bytes(128), vmas, None)
    body += core.note(NOTE_NAME, NT_KONTAIN,
                      MAGIC + struct.pack("<H", VERSION) + marshal.dumps(state, 4))
    return _write_file(proc, path, lambda fd: core._write(fd, proc, vmas, sizes, body,
                                                          1 << 62, pagemap))


def _write_file(proc: Process, path: bytes, write: Callable[[int], int]) -> int:
    """Write the file beside path and rename it over path: a snapshot being resumed
    (its pages mapped by running instances) is replaced, never truncated under them."""
    from kontain.linux.numbers import NUMBERS as NR
    temporary = path + b".km-%d" % os.getpid()
    fd = proc.root.open(-100, temporary, os.O_WRONLY | os.O_CREAT | os.O_TRUNC
                        | os.O_CLOEXEC | os.O_NOFOLLOW, 0o600)
    done = False
    try:
        size = write(fd)
        old_dir, old = proc.root.lookup(-100, temporary, False, 0)
        new_dir, new = proc.root.lookup(-100, path, False, 1)
        host.call(NR["renameat2"], old_dir, host.address_of(old), new_dir,
                  host.address_of(new), 0)
        done = True
        return size
    finally:
        os.close(fd)
        if not done:
            try:
                gone_dir, gone = proc.root.lookup(-100, temporary, False, 0)
                host.call(NR["unlinkat"], gone_dir, host.address_of(gone), 0)
            except OSError:
                pass


def _no_children() -> None:
    """A process with children cannot be saved: they would not be there on resume."""
    try:
        found = os.waitid(os.P_ALL, 0, os.WEXITED | os.WNOHANG | os.WNOWAIT)
    except ChildProcessError:
        return
    del found
    raise SnapshotError("the process has child processes (they cannot be saved with it)")


# ---- threads -----------------------------------------------------------------------------

def _thread_state(proc: Process, t: GuestThread, caller: bool) -> tuple[dict, core.ThreadImage]:
    """One thread's saved state, and its image for the core notes. The caller resumes
    returning 1 from the hypercall; a parked thread where park_if_paused left it (a
    system call it was waiting in is made again)."""
    from kontain.kvm import structs as s
    regs = s.Regs.from_buffer_copy(t.regs)
    if caller:
        regs.rip, regs.rflags = t.regs.rcx, t.regs.r11 & _FLAGS_MASK | _USER_FLAGS
        regs.rax = 1
    else:
        regs.rip, regs.rsp, regs.rflags = t.user_context()
    sregs = t.vcpu.get_sregs()
    xsave = bytes(t.vcpu.get_xsave())
    fs_base, gs_base = sregs.fs.base, sregs.gs.base
    record = {
        "tid": t.tid, "regs": bytes(regs), "fs": fs_base, "gs": gs_base,
        "fs_selector": sregs.fs.selector, "gs_selector": sregs.gs.selector,
        "xsave": xsave, "mask": t.signal_mask,
        "pending": [(n, bytes(i)) for n, i in t.pending.entries], "pending_bits": t.pending.bits,
        "altstack": tuple(t.altstack), "robust_list": t.robust_list,
        "clear_child_tid": t.clear_child_tid, "name": bytes(t.name),
        "saved_mask": t.saved_mask,
    }
    shown = (regs.r15, regs.r14, regs.r13, regs.r12, regs.rbp, regs.rbx, regs.r11, regs.r10,
             regs.r9, regs.r8, 0 if caller else regs.rax, regs.rcx, regs.rdx, regs.rsi,
             regs.rdi, _MASK64, regs.rip, core.USER_CS, regs.rflags, regs.rsp, core.USER_SS,
             fs_base, gs_base, 0, 0, 0, 0)
    image = core.ThreadImage(t.tid, shown, core._xstate(xsave, proc.machine.xsave_size,
                                                        proc.machine.xcr0),
                             t.pending.bits, t.signal_mask)
    return record, image


# ---- memory --------------------------------------------------------------------------------

def _saved_size(vma, proc: Process, pagemap: int) -> int:
    """Bytes of vma in the file: a core's, but all of anonymous memory and all of a
    private file mapping the payload wrote (a resume needs every byte)."""
    if vma.pa is None or vma.foreign:
        return core.dump_size(vma, proc, pagemap) if vma.foreign else 0
    if not vma.file_backed:
        return vma.size
    if vma.shared:
        return 0
    if core._written(pagemap, core._host_address(vma, proc), vma.size):
        return vma.size
    return core.dump_size(vma, proc, pagemap)


def _mapped_files(proc: Process, vmas: list) -> dict[str, tuple[int, int, int, int]]:
    """Each mapped file's identity now: path -> (device, inode, size, mtime_ns)."""
    files: dict[str, tuple[int, int, int, int]] = {}
    for vma in vmas:
        if not vma.file_backed or vma.foreign or vma.name in files:
            continue
        if vma.name.endswith(" (deleted)") or not vma.name.startswith("/"):
            if vma.shared and vma.name.startswith(("/dev/zero", "/SYSV", "/memfd:")) \
                    or vma.name.endswith(" (deleted)") and vma.shared:
                raise SnapshotError(f"mapping {vma.start:#x}-{vma.end:#x} of {vma.name}: "
                                    "shared memory of a deleted file cannot be saved")
            raise SnapshotError(f"mapping {vma.start:#x}-{vma.end:#x}: its file "
                                f"{vma.name!r} is gone (deleted or unnamed)")
        try:
            st = os.stat(proc.host_path(os.fsencode(vma.name)))
        except OSError as e:
            raise SnapshotError(f"mapped file {vma.name}: {e.strerror}") from None
        if (st.st_dev, st.st_ino) != (vma.device, vma.inode):
            raise SnapshotError(f"mapped file {vma.name} was replaced since it was mapped")
        files[vma.name] = (st.st_dev, st.st_ino, st.st_size, st.st_mtime_ns)
    return files


def _vma_record(vma, size: int) -> tuple:
    return (vma.start, vma.end, vma.prot, vma.flags, vma.name, vma.offset, vma.inode,
            vma.device, vma.pa is not None, vma.held_pa is not None, vma.foreign, size)


# ---- descriptors ---------------------------------------------------------------------------

def _descriptors(proc: Process) -> list[tuple]:
    """Every guest descriptor above 2 (0-2 are the resuming km's own stdio), as
    (fd, kind, cloexec, status flags, ...) -- kontain.monitor.resume._descriptors reads
    them: "file" and "dir" (path, offset, device, inode), "pipe" (inode, its bytes),
    "signalfd" (mask, group), "eventfd" (count, semaphore), "timerfd" (clock, value,
    interval), "epoll" (its interest list: fd, events, data), "listen" (family, type,
    protocol, address, backlog, options), "sockpair" (family, type, inode, the peer's
    inode, the bytes waiting to be read)."""
    import fcntl
    out: list[tuple] = []
    pipes: dict[int, list[tuple[int, int]]] = {}
    limit = proc.fds.km_base
    signalfds: dict[int, int] = {}
    for name in sorted(os.listdir("/proc/self/fd"), key=int):
        fd = int(name)
        if fd < 3 or fd >= limit:
            continue
        try:
            st = os.fstat(fd)
            flags = fcntl.fcntl(fd, fcntl.F_GETFL)
            cloexec = bool(fcntl.fcntl(fd, fcntl.F_GETFD) & fcntl.FD_CLOEXEC)
            link = os.readlink(f"/proc/self/fd/{fd}")
        except OSError:
            continue  # (the listing's own descriptor, closed since)
        mode = st.st_mode
        head = (fd, "", cloexec, flags)
        signal_file = proc.signalfds.lookup(fd) if proc.signalfds.fds else None
        if signal_file is not None:
            group = signalfds.setdefault(id(signal_file), len(signalfds))
            out.append((fd, "signalfd", cloexec, flags, signal_file.mask, group))
        elif stat.S_ISREG(mode) or stat.S_ISDIR(mode) or stat.S_ISCHR(mode):
            out.append(_file(proc, fd, st, head))
        elif stat.S_ISFIFO(mode):
            pipes.setdefault(st.st_ino, []).append((fd, flags))
            out.append((fd, "pipe", cloexec, flags, st.st_ino))
        elif stat.S_ISSOCK(mode):
            out.append(_listening(proc, fd, st, head))
        elif link == "anon_inode:[eventfd]":
            info = _fdinfo(fd)
            out.append((fd, "eventfd", cloexec, flags, int(info["eventfd-count"], 16),
                        int(info.get("eventfd-semaphore", "0"))))
        elif link == "anon_inode:[timerfd]":
            out.append(_timerfd(fd, head))
        elif link == "anon_inode:[eventpoll]":
            out.append((fd, "epoll", cloexec, flags, _interest(fd)))
        else:
            raise SnapshotError(f"fd {fd}: {link} cannot be saved")
    contents = {}
    for inode, ends in pipes.items():
        readers = [fd for fd, fl in ends if fl & os.O_ACCMODE == os.O_RDONLY]
        writers = [fd for fd, fl in ends if fl & os.O_ACCMODE != os.O_RDONLY]
        if writers and not readers:
            raise SnapshotError(f"fd {writers[0]}: a pipe whose read end is outside the "
                                "process")
        contents[inode] = _pipe_bytes(readers[0], writers[0] if writers else -1)
    saved = [d + (contents[d[4]],) if d[1] == "pipe" else d for d in out]
    ends = {d[6] for d in saved if d[1] == "sockpair"}
    for d in saved:
        if d[1] == "sockpair" and d[7] not in ends:
            raise SnapshotError(f"fd {d[0]}: a connected socket whose peer is outside the "
                                "process (its connection cannot be saved)")
    targets = {d[0]: d[1] for d in saved}
    for d in saved:
        if d[1] == "epoll":
            for tfd, _, _ in d[4]:
                if targets.get(tfd) == "epoll":
                    raise SnapshotError(f"fd {d[0]}: an epoll watching another epoll")
    return saved


def _file(proc: Process, fd: int, st: os.stat_result, head: tuple) -> tuple:
    mode = st.st_mode
    path = proc.path_of_fd(fd)
    if path.endswith(" (deleted)") or not path.startswith("/"):
        raise SnapshotError(f"fd {fd}: {path!r} is deleted or unnamed")
    offset = 0
    if not stat.S_ISCHR(mode):
        try:
            offset = os.lseek(fd, 0, os.SEEK_CUR)
        except OSError:
            offset = 0
    elif (os.major(st.st_rdev), os.minor(st.st_rdev)) not in MEMORY_DEVICES:
        raise SnapshotError(f"fd {fd}: device {path} (only /dev/null, zero, full, random, "
                            "urandom and tty can be saved)")
    kind = "dir" if stat.S_ISDIR(mode) else "file"
    return (fd, kind, head[2], head[3], path, offset, st.st_dev, st.st_ino)


def _fdinfo(fd: int) -> dict[str, str]:
    with open(f"/proc/self/fdinfo/{fd}") as f:
        text = f.read()
    info = {}
    for line in text.splitlines():
        key, _, value = line.partition(":")
        info.setdefault(key.strip(), value.strip())
    return info


def _timerfd(fd: int, head: tuple) -> tuple:
    """clockid, the time left and the interval (fdinfo: "it_value: (sec, nsec)")."""
    info = _fdinfo(fd)
    if int(info.get("ticks", "0")):
        raise SnapshotError(f"fd {fd}: a timerfd with expirations not yet read (their "
                            "count cannot be set again)")

    def pair(text: str) -> tuple[int, int]:
        sec, nsec = text.strip("()").split(",")
        return int(sec), int(nsec)
    return (head[0], "timerfd", head[2], head[3], int(info["clockid"]),
            pair(info["it_value"]), pair(info["it_interval"]))


def _interest(fd: int) -> list[tuple[int, int, int]]:
    """An epoll's interest list: (fd, events, data) from fdinfo's tfd lines."""
    found = []
    with open(f"/proc/self/fdinfo/{fd}") as f:
        for line in f:
            if not line.startswith("tfd:"):
                continue
            # "tfd: N events: X data: X  pos:N ino:X sdev:X" (some without a space)
            words = line.replace(":", ": ").split()
            fields = dict(zip(words[0::2], words[1::2], strict=False))
            target = int(fields["tfd:"])
            try:
                same = os.fstat(target).st_ino == int(fields.get("ino:", "0"), 16)
            except OSError:
                same = False
            if not same:
                raise SnapshotError(f"fd {fd}: an epoll watching a file no descriptor "
                                    f"names any more (registered as fd {target})")
            found.append((target, int(fields["events:"], 16), int(fields["data:"], 16)))
    return found


SOCKET_OPTIONS = ((1, 2), (1, 15), (1, 9), (41, 26), (6, 1))  # REUSEADDR/PORT, KEEPALIVE,
#                                                  IPV6_V6ONLY, TCP_NODELAY (level, name)


def _listening(proc: Process, fd: int, st: os.stat_result, head: tuple) -> tuple:
    """A listening TCP or unix socket: what makes it again. Any other socket (a
    connected one's peer is outside the snapshot) is refused."""
    import select
    import socket
    try:
        s = socket.socket(fileno=os.dup(fd))
    except OSError as e:
        raise SnapshotError(f"fd {fd}: a socket ({e.strerror})") from None
    try:
        kind = f"{s.family.name}, {s.type.name}"
        listening = s.getsockopt(socket.SOL_SOCKET, socket.SO_ACCEPTCONN)
        if not listening and s.family == socket.AF_UNIX and _connected(s):
            return _socketpair_end(s, fd, st, head, kind)
        if not listening or s.family not in (socket.AF_INET, socket.AF_INET6, socket.AF_UNIX):
            state = "connected" if _connected(s) else "not listening"
            raise SnapshotError(f"fd {fd}: a {state} socket ({kind}); only listening TCP "
                                "and unix sockets can be saved (a connection's peer is "
                                "outside the snapshot)")
        poller = select.poll()
        poller.register(fd, select.POLLIN)
        if poller.poll(0):
            raise SnapshotError(f"fd {fd}: a listening socket ({kind}) with connections "
                                "waiting to be accepted")
        options = []
        for level, name in SOCKET_OPTIONS:
            try:
                options.append((level, name, s.getsockopt(level, name)))
            except OSError:
                pass
        address = s.getsockname()
        if s.family == socket.AF_UNIX and isinstance(address, str) and address:
            guest = proc.root.guest_path_of_host(os.fsencode(address))
            address = os.fsdecode(guest) if guest is not None else address
        return (head[0], "listen", head[2], head[3], int(s.family), int(s.type), s.proto,
                address, proc.backlogs.get(st.st_ino, 128), options)
    finally:
        s.close()


def _socketpair_end(s, fd: int, st: os.stat_result, head: tuple, kind: str) -> tuple:
    """One end of a connected unix socket: its peer (by inode, sock_diag) must be in
    the process too (a socketpair, or both ends of a connection); a stream's unread
    bytes are peeked (nothing taken), a datagram socket must have none queued."""
    import socket
    peer = _unix_peers().get(st.st_ino)
    if peer is None:
        raise SnapshotError(f"fd {fd}: a connected socket ({kind}) whose peer is unknown")
    data = b""
    try:
        queued, ancillary, _, _ = s.recvmsg(1 << 20, socket.CMSG_SPACE(4 * 64),
                                            socket.MSG_PEEK | socket.MSG_DONTWAIT)
    except BlockingIOError:
        queued, ancillary = b"", []
    except OSError as e:
        raise SnapshotError(f"fd {fd}: a connected socket ({kind}): {e.strerror}") from None
    if ancillary:
        raise SnapshotError(f"fd {fd}: a socket ({kind}) with descriptors or credentials "
                            "in flight")
    if queued and s.type != socket.SOCK_STREAM:
        raise SnapshotError(f"fd {fd}: a {kind} socket with datagrams queued")
    if queued:
        data = queued
        if len(data) == 1 << 20:
            raise SnapshotError(f"fd {fd}: a socket with more than 1 MiB unread")
    return (head[0], "sockpair", head[2], head[3], int(s.family), int(s.type), st.st_ino,
            peer, data)


def _unix_peers() -> dict[int, int]:
    """Every unix socket's peer (inode -> inode), from the kernel's sock_diag."""
    import socket
    sock_diag_by_family, nlm_dump, udiag_show_peer, unix_diag_peer = 20, 0x301, 4, 2
    request = struct.pack("<IHHII", 16 + 24, sock_diag_by_family, nlm_dump, 1, 0) + \
        struct.pack("<BBHIIIII", socket.AF_UNIX, 0, 0, 0xFFFFFFFF, 0, udiag_show_peer,
                    0xFFFFFFFF, 0xFFFFFFFF)
    peers: dict[int, int] = {}
    with socket.socket(socket.AF_NETLINK, socket.SOCK_DGRAM | socket.SOCK_CLOEXEC, 4) as nl:
        nl.sendto(request, (0, 0))
        while True:
            data = nl.recv(1 << 16)
            at = 0
            while at + 16 <= len(data):
                length, kind = struct.unpack_from("<IH", data, at)
                if kind in (2, 3) or length < 16:  # NLMSG_ERROR, NLMSG_DONE
                    return peers
                inode = struct.unpack_from("<I", data, at + 16 + 4)[0]
                attr = at + 16 + 16
                while attr + 4 <= at + length:
                    size, attr_type = struct.unpack_from("<HH", data, attr)
                    if size < 4:
                        break
                    if attr_type == unix_diag_peer:
                        peers[inode] = struct.unpack_from("<I", data, attr + 4)[0]
                    attr += (size + 3) & ~3
                at += (length + 3) & ~3


def _connected(s) -> bool:
    try:
        s.getpeername()
    except OSError:
        return False
    return True


def _pipe_bytes(reader: int, writer: int) -> bytes:
    """The bytes buffered in a pipe, read out and (when the write end is here) written
    back, in the paused state (no guest thread reads or writes meanwhile)."""
    import fcntl
    flags = fcntl.fcntl(reader, fcntl.F_GETFL)
    fcntl.fcntl(reader, fcntl.F_SETFL, flags | os.O_NONBLOCK)
    data = bytearray()
    try:
        while True:
            try:
                chunk = os.read(reader, 1 << 16)
            except BlockingIOError:
                break
            if not chunk:
                break
            data += chunk
    finally:
        fcntl.fcntl(reader, fcntl.F_SETFL, flags)
    if data and writer >= 0:
        view = memoryview(bytes(data))
        while view:  # (fits: it came out of this very buffer)
            try:
                done = os.write(writer, view)
            except OSError:
                done = 0
            if done <= 0:
                raise SnapshotError(f"fd {writer}: the pipe's bytes could not be put back")
            view = view[done:]
    elif data:
        raise SnapshotError(f"fd {reader}: a pipe with bytes in it and its write end "
                            "outside the process")
    return bytes(data)


# ---- the process ---------------------------------------------------------------------------

def _itimers() -> list[tuple[int, tuple[int, int, int, int]]]:
    """setitimer/alarm timers that are armed (the host's, of km's process): which, and
    struct itimerval (interval, value: seconds and microseconds each)."""
    import ctypes

    from kontain.linux.numbers import NUMBERS as NR
    armed = []
    for which in (0, 1, 2):  # ITIMER_REAL, ITIMER_VIRTUAL, ITIMER_PROF
        value = (ctypes.c_int64 * 4)()
        if host.syscall(NR["getitimer"], which, ctypes.addressof(value)) == 0 \
                and (value[2] or value[3]):
            armed.append((which, tuple(value)))
    return armed


def _process_state(proc: Process, label: bytes, threads: list[dict], vmas: list,
                   sizes: list[int], files: dict, fds: list[tuple]) -> dict:
    from kontain.linux.numbers import NUMBERS as NR
    umask = os.umask(0)
    os.umask(umask)
    actions = [(a.handler, a.flags, a.restorer, a.mask) for a in proc.signals.actions]
    mm = proc.mm
    return {
        "label": label, "exe": proc.exe, "guest_exe": proc.guest_exe,
        "argv": list(proc.argv), "threads": threads,
        "vmas": [_vma_record(v, n) for v, n in zip(vmas, sizes, strict=True)],
        "files": files, "fds": fds, "actions": actions,
        "shared_pending": [(n, bytes(i)) for n, i in proc.signals.shared.entries],
        "shared_bits": proc.signals.shared.bits,
        "brk": (mm.brk_start, mm.brk_end), "mmap_top": mm.mmap_top,
        "personality": proc.personality, "cwd": proc.root.getcwd(), "umask": umask,
        "rlimits": {r: tuple(v) for r, v in proc.rlimits.items()},
        "dumpable": proc.dumpable, "no_new_privs": proc.no_new_privs,
        "uts": dict(proc.uts_names), "auxv": proc.procfs.auxv,
        "argv_range": tuple(proc.procfs.argv_range),
        "environ_range": tuple(proc.procfs.environ_range),
        "host_dumpable": host.syscall(NR["prctl"], PR_GET_DUMPABLE, 0, 0, 0, 0),
        "itimers": _itimers(),
        "xcr0": proc.machine.xcr0,
    }
