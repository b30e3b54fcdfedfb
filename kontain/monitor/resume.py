"""Resume: `km FILE`, where FILE is a snapshot (kontain.monitor.snapshot), goes on from it.

In a fresh VM: every mapping is made again at its address with its protection (so
km's page tables, brk and the mmap area are as they were), then its bytes are put
behind it with one host mmap MAP_PRIVATE of the snapshot file at that PT_LOAD's offset,
over the mapping's physical range: nothing is read at resume, pages fault in when
touched, and every resume of one file shares its page cache (a write makes the
resumed process its own copy). A file mapping the payload never wrote is mapped from
its file again, which must be the one that was mapped (inode, size and mtime as
saved). The vDSO goes back at its address (the host's must be the same). Then the
descriptors (files by path and offset, pipes with their bytes), signal state, limits,
cwd and umask, and one vCPU per thread with its registers, FS/GS bases and XSAVE
state. The thread that asked for the snapshot sees its hypercall return 1; the others
go on where the pause stopped them (a system call they waited in is made again).

Not carried: pids and tids (a resumed process has km's; glibc does not cache them),
descriptors 0-2 (the resuming km's own stdio), the argv given to `km FILE ...`. A
snapshot given as /dev/fd/N is not left open at N for the payload.
"""

from __future__ import annotations

import _thread
import errno
import marshal
import os
import struct

from kontain.machine import hostmem
from kontain.monitor import coredump as core
from kontain.monitor import signals as sig
from kontain.monitor import snapshot as snap
from kontain.monitor.thread import GuestThread

TYPE_CHECKING = False  # no typing import at run time: km start-up is timed
if TYPE_CHECKING:
    from kontain.monitor.process import Process

MAP_FIXED, MAP_ANONYMOUS, MAP_SHARED, MAP_TYPE = 0x10, 0x20, 0x01, 0x0F
PROT_WRITE = 2
F_SETPIPE_SZ = 1031
DEFAULT_PIPE = 1 << 16
PAGE_SIZE = 4096
AT_FDCWD = -100
RLIMIT_NOFILE = 7


class ResumeError(Exception):
    """The snapshot cannot be resumed (the message says why)."""


def is_snapshot(path: str) -> bool:
    """Whether path is an ELF core (a snapshot km resumes, if it has km's note)."""
    from kontain.monitor.launch import _snapshot
    return _snapshot(path)


def read_state(fd: int) -> tuple[dict, list[tuple[int, int, int, int]]]:
    """The snapshot's km note and its PT_LOADs (vaddr, offset, filesz, memsz)."""
    head = os.pread(fd, core.EHDR.size, 0)
    if len(head) != core.EHDR.size:
        raise ResumeError("truncated ELF header")
    fields = core.EHDR.unpack(head)
    phoff, phentsize, phnum = fields[5], fields[9], fields[10]
    if phnum == core.PN_XNUM:
        shoff = fields[6]
        phnum = core.SHDR.unpack(os.pread(fd, core.SHDR.size, shoff))[7]
    table = os.pread(fd, phentsize * phnum, phoff)
    loads, note = [], None
    for i in range(phnum):
        kind, _, offset, vaddr, _, filesz, memsz, _ = core.PHDR.unpack_from(table, i * phentsize)
        if kind == core.PT_LOAD:
            loads.append((vaddr, offset, filesz, memsz))
        elif kind == core.PT_NOTE:
            note = (offset, filesz)
    if note is None:
        raise ResumeError("no notes: not a snapshot")
    data = os.pread(fd, note[1], note[0])
    at = 0
    while at + 12 <= len(data):
        namesz, descsz, kind = core.NOTE_HEADER.unpack_from(data, at)
        name_at = at + 12
        desc_at = name_at + (namesz + 3) // 4 * 4
        name = data[name_at:name_at + namesz].rstrip(b"\0")
        if name == snap.NOTE_NAME and kind == snap.NT_KONTAIN:
            desc = data[desc_at:desc_at + descsz]
            if not desc.startswith(snap.MAGIC):
                break
            version = struct.unpack_from("<H", desc, len(snap.MAGIC))[0]
            if version != snap.VERSION:
                raise ResumeError(f"snapshot format {version}; this km reads {snap.VERSION}")
            return marshal.loads(desc[len(snap.MAGIC) + 2:]), loads
        at = desc_at + (descsz + 3) // 4 * 4
    raise ResumeError("a core file, not a snapshot (no KONTAIN note)")


def listen_first(proc: Process, path: str) -> set[int]:
    """km --listen-on-resume: make only the snapshot's listening sockets, at their
    numbers, and wait for a connection on one of them; returns their numbers (resume
    then leaves them as they are: the connection waits there for the payload's
    accept). Nothing else of the snapshot is touched until then."""
    import fcntl
    import select
    fd = proc.fds.move_high(os.open(path, os.O_RDONLY | os.O_CLOEXEC))
    try:
        state, _ = read_state(fd)
    finally:
        os.close(fd)
    made: set[int] = set()
    try:
        for entry in state["fds"]:
            if entry[1] != "listen":
                continue
            temp = proc.fds.move_high(_listen(proc, entry[0], *entry[4:]))
            try:
                os.dup2(temp, entry[0], inheritable=not entry[2])
            finally:
                os.close(temp)
            fcntl.fcntl(entry[0], fcntl.F_SETFL, entry[3])
            made.add(entry[0])
    except OSError as e:
        raise ResumeError(f"listening socket: {e.strerror}") from None
    if not made:
        raise ResumeError("--listen-on-resume: the snapshot has no listening socket")
    proc.trace.log("load", f"listening on fds {sorted(made)} until a connection comes")
    poller = select.poll()
    for number in made:
        poller.register(number, select.POLLIN)
    while not poller.poll():
        pass
    return made


def resume(proc: Process, path: str, ready: set[int] | frozenset = frozenset()
           ) -> tuple[GuestThread, list]:
    """Make proc (a fresh process, nothing loaded) the snapshot's; returns its first
    thread and a starter per other thread (call each, then run the first). ready:
    descriptors made already (listen_first)."""
    fd = proc.fds.move_high(os.open(path, os.O_RDONLY | os.O_CLOEXEC))
    _close_given(proc, path)
    try:
        state, loads = read_state(fd)
        if len(loads) != len(state["vmas"]):
            raise ResumeError("the mappings and the PT_LOADs do not match")
        missing = state["xcr0"] & ~proc.machine.xcr0
        if missing:
            raise ResumeError(f"this CPU lacks state components the snapshot's threads use "
                              f"(XCR0 bits {missing:#x}): resume it on a CPU like its own")
        _process(proc, state)
        _memory(proc, state, loads, fd)
        _anonymous_strings(proc)
        proc.procfs.rename_km(proc.argv)  # (ps shows the payload, as at its start)
        _descriptors(proc, [e for e in state["fds"] if e[0] not in ready])
        _signals(proc, state)
        threads = [_thread_of(proc, record, i == 0) for i, record in
                   enumerate(state["threads"])]
    except ResumeError:
        raise
    except OSError as e:
        raise ResumeError(f"{e.strerror or e}" + (f": {e.filename}" if e.filename else "")) \
            from None
    except Exception as e:  # noqa: BLE001 - a damaged file: said, never a traceback
        raise ResumeError(f"damaged or incompatible snapshot ({type(e).__name__}: {e})") \
            from None
    finally:
        os.close(fd)
    proc.trace.log("load", f"resumed {path}: {len(state['vmas'])} mappings, "
                           f"{len(threads)} threads")
    return threads[0], [_starter(proc, t) for t in threads[1:]]


def _process(proc: Process, state: dict) -> None:
    proc.exe, proc.guest_exe = state["exe"], state["guest_exe"]
    proc.argv = list(state["argv"])
    proc.personality = state["personality"]
    proc.dumpable, proc.no_new_privs = state["dumpable"], state["no_new_privs"]
    for resource_id, limit in state["rlimits"].items():
        proc.rlimits[resource_id] = tuple(limit)
    soft, hard = proc.rlimits.get(RLIMIT_NOFILE, (0, 0))
    try:
        proc.fds.set_limit(min(soft, proc.fds.km_base), min(hard, proc.fds.km_base))
    except OSError:
        pass  # (a higher hard limit than this km has room for: km's own stays)
    proc.uts_names.update(state["uts"])
    os.umask(state["umask"])
    cwd = state["cwd"]
    try:
        if proc.root.confined:
            proc.root.chdir(cwd)
        else:
            os.chdir(cwd)
    except OSError as e:
        raise ResumeError(f"cwd {os.fsdecode(cwd)}: {e.strerror}") from None
    proc.procfs.auxv = state["auxv"]
    proc.procfs.argv_range = tuple(state["argv_range"])
    proc.procfs.environ_range = tuple(state["environ_range"])


def _memory(proc: Process, state: dict, loads: list, snapfd: int) -> None:
    mm = proc.mm
    mm.mmap_top = state["mmap_top"]
    files = state["files"]
    opened: dict[tuple[str, bool], int] = {}
    vdso_base = None
    # The pages behind each mapping come from the snapshot: none to give beforehand.
    mm._prefault = lambda pa, size: None
    try:
        for record, offset, filesz in _merged(state["vmas"], loads):
            start, end, prot, flags, name, file_offset, inode, _dev, backed, held, \
                foreign, _ = record
            if foreign:
                vdso_base = start if vdso_base is None else min(vdso_base, start)
                continue
            fd = -1
            if inode and not flags & MAP_ANONYMOUS:
                writable = flags & MAP_TYPE == MAP_SHARED and prot & PROT_WRITE
                fd = opened.get((name, bool(writable)), -1)
                if fd < 0:
                    fd = _open_mapped(proc, name, files.get(name), bool(writable))
                    opened[(name, bool(writable))] = fd
            mm.mmap(start, end - start, prot, flags | MAP_FIXED, fd,
                    file_offset if fd >= 0 else 0, name=name)
            if backed and filesz == end - start:
                _fill(proc, start, end, flags, snapfd, offset)
    finally:
        del mm._prefault
        for fd in opened.values():
            os.close(fd)
    mm.brk_start, mm.brk_end = state["brk"]
    if vdso_base is not None:
        from kontain.monitor import vdso
        vdso.install(proc, vdso_base)
        saved = sorted((r[0], r[1]) for r in state["vmas"] if r[10])
        now = sorted((v.start, v.end) for v in mm.vmas() if v.foreign)
        if saved != now:
            raise ResumeError("this host's vDSO is not the one the snapshot was taken with")


def _merged(vmas: list, loads: list) -> list[tuple[tuple, int, int]]:
    """(record, file offset, bytes in the file) per mapping to make, neighbours of
    private anonymous memory that lie one after the other in the file made as one
    (as Linux would have merged them: the arenas of an allocator, pieces of the heap;
    one mmap instead of many)."""
    out: list[tuple[tuple, int, int]] = []
    for record, (_, offset, filesz, _) in zip(vmas, loads, strict=True):
        start, end, prot, flags, name, _, inode, _, backed, _, foreign, _ = record
        whole = backed and not inode and not foreign and filesz == end - start \
            and flags & MAP_TYPE != MAP_SHARED
        if whole and out:
            last, last_offset, last_size = out[-1]
            if last[1] == start and last[2:5] == (prot, flags, name) and not last[6] \
                    and last[8] and not last[10] and last_size == last[1] - last[0] \
                    and last_offset + last_size == offset \
                    and flags & MAP_TYPE != MAP_SHARED:
                out[-1] = (last[:1] + (end,) + last[2:], last_offset, last_size + filesz)
                continue
        out.append((record, offset, filesz))
    return out


def _anonymous_strings(proc: Process) -> None:
    """The pages of the argument and environment strings as anonymous memory of km's
    (a copy): the host reads a process's command line only from anonymous memory, and
    rename_km points it at these."""
    start = proc.procfs.argv_range[0] & ~(PAGE_SIZE - 1)
    end = proc.procfs.environ_range[1]
    mm = proc.mm
    for va in range(start, end, PAGE_SIZE):
        host = mm.host_address(va)
        if host is None:
            return
        page = host & ~(PAGE_SIZE - 1)
        data = mm.read(va & ~(PAGE_SIZE - 1), PAGE_SIZE)
        hostmem.mmap_fixed(page, PAGE_SIZE, hostmem.PROT_READ | hostmem.PROT_WRITE,
                           hostmem.MAP_PRIVATE | hostmem.MAP_ANONYMOUS)
        mm.view[page - mm.host_base:page - mm.host_base + PAGE_SIZE] = data


def _open_mapped(proc: Process, name: str, identity: tuple | None, writable: bool) -> int:
    """The file of a mapping, checked to be the one the snapshot mapped."""
    try:
        fd = proc.root.open(-100, os.fsencode(name),
                            (os.O_RDWR if writable else os.O_RDONLY) | os.O_CLOEXEC, 0)
    except OSError as e:
        raise ResumeError(f"mapped file {name}: {e.strerror}") from None
    fd = proc.fds.move_high(fd)
    if identity is not None:
        st = os.fstat(fd)
        _, inode, size, mtime = identity
        if (st.st_ino, st.st_size, st.st_mtime_ns) != (inode, size, mtime):
            os.close(fd)
            raise ResumeError(f"mapped file {name} changed since the snapshot (inode, size "
                              "or mtime differ): it cannot be resumed")
    return fd


def _fill(proc: Process, start: int, end: int, flags: int, snapfd: int, offset: int) -> None:
    """Put the snapshot's bytes behind [start, end): the file itself, copy-on-write (a
    shared anonymous mapping gets a copy: it must stay shared with a later fork)."""
    mm = proc.mm
    va = start
    while va < end:
        vma = mm.find(va)
        if vma is None:
            va += PAGE_SIZE
            continue
        va = vma.end
        if vma.pa is None:
            continue
        at = offset + vma.start - start
        if flags & MAP_TYPE == MAP_SHARED:
            view = mm.view[vma.pa:vma.pa + vma.size]
            done = 0
            while done < vma.size:
                n = os.preadv(snapfd, [view[done:]], at + done)
                if n <= 0:
                    break
                done += n
            continue
        host = proc.machine.phys.host_address(vma.pa)
        hostmem.mmap_fixed(host, vma.size, hostmem.PROT_READ | hostmem.PROT_WRITE,
                           hostmem.MAP_PRIVATE, snapfd, at)


def _descriptors(proc: Process, saved: list) -> None:
    """Make every saved descriptor again at its number: first each one from a new
    open file description at a number of km's, then dup2 to its own; signalfds (km
    numbers them itself) and epolls (their interest lists name the others) last."""
    import fcntl
    usable = proc.fds.usable
    for entry in saved:  # (the file is trusted as an executable, but km's own are km's)
        if not 3 <= entry[0] < usable:
            raise ResumeError(f"descriptor {entry[0]} is outside the payload's range")
    made: list[tuple[int, int, int, bool]] = []  # (temporary fd, fd, status flags, cloexec)
    temps: set[int] = set()
    pipes: dict[int, tuple[int, int]] = {}
    pairs: dict[int, tuple[int, int]] = {}  # a socket end's inode -> (its new end,)
    queued: dict[int, int] = {}  # a socket end's inode -> the new end that writes to it
    try:
        for entry in saved:
            fd, kind, cloexec, flags = entry[:4]
            if kind == "pipe":
                inode, contents = entry[4], entry[5]
                if inode not in pipes:
                    r, w = (proc.fds.move_high(x) for x in os.pipe2(os.O_CLOEXEC))
                    temps.update((r, w))
                    if len(contents) > DEFAULT_PIPE:
                        fcntl.fcntl(w, F_SETPIPE_SZ, len(contents))
                    view = memoryview(contents)
                    while view:
                        view = view[os.write(w, view):]
                    pipes[inode] = (r, w)
                r, w = pipes[inode]
                made.append((r if flags & os.O_ACCMODE == os.O_RDONLY else w, fd, flags,
                             cloexec))
                continue
            if kind == "sockpair":
                inode, peer, unread = entry[6], entry[7], entry[8]
                if inode not in pairs:
                    import socket
                    a, b = socket.socketpair(entry[4], entry[5])
                    pairs[inode], pairs[peer] = (_keep(proc, a, temps),) * 2, \
                        (_keep(proc, b, temps),) * 2
                    queued[inode], queued[peer] = pairs[peer][0], pairs[inode][0]
                if unread:  # written by the peer, to be read here
                    view = memoryview(unread)
                    while view:
                        view = view[os.write(queued[inode], view):]
                made.append((pairs[inode][0], fd, flags, cloexec))
                continue
            if kind in ("signalfd", "epoll"):
                continue
            if kind in ("file", "dir"):
                temp = _reopen(proc, entry[4], flags, entry[5], kind)
            elif kind == "eventfd":
                temp = os.eventfd(entry[4], os.EFD_CLOEXEC
                                  | (os.EFD_SEMAPHORE if entry[5] else 0))
            elif kind == "timerfd":
                temp = _timerfd(entry[4], entry[5], entry[6])
            elif kind == "listen":
                temp = _listen(proc, fd, *entry[4:])
            else:
                raise ResumeError(f"fd {fd}: unknown kind {kind!r}")
            temp = proc.fds.move_high(temp)
            temps.add(temp)
            made.append((temp, fd, flags, cloexec))
        for temp, fd, flags, cloexec in made:
            os.dup2(temp, fd, inheritable=not cloexec)
            fcntl.fcntl(fd, fcntl.F_SETFL, flags)
        _signalfds(proc, [e for e in saved if e[1] == "signalfd"])
        for entry in saved:
            if entry[1] == "epoll":
                _epoll(proc, *entry)
    except OSError as e:
        raise ResumeError(f"descriptor: {e.strerror}" + (f" ({e.filename})" if e.filename
                                                          else "")) from None
    finally:
        for temp in temps:
            os.close(temp)


def _keep(proc: Process, s, temps: set[int]) -> int:
    fd = proc.fds.move_high(s.detach())
    temps.add(fd)
    return fd


def _reopen(proc: Process, path: str, flags: int, offset: int, kind: str) -> int:
    opened = proc.root.open(-100, os.fsencode(path),
                            flags & ~(os.O_CREAT | os.O_EXCL | os.O_TRUNC) | os.O_CLOEXEC, 0)
    if offset:
        try:
            os.lseek(opened, offset, os.SEEK_SET)
        except OSError:
            pass
    return opened


def _timerfd(clock: int, value: tuple[int, int], interval: tuple[int, int]) -> int:
    """A timerfd with the time that was left and its interval (relative: the time
    the snapshot spent on disk does not count, as for a stopped process)."""
    import ctypes

    from kontain.linux import hostcall as host
    from kontain.linux.numbers import NUMBERS as NR
    fd = host.syscall(NR["timerfd_create"], clock, os.O_CLOEXEC)
    if fd < 0:
        raise OSError(-fd, "timerfd_create")
    spec = (ctypes.c_int64 * 4)(interval[0], interval[1], value[0], value[1])
    done = host.syscall(NR["timerfd_settime"], fd, 0, ctypes.addressof(spec), 0)
    if done < 0:
        os.close(fd)
        raise OSError(-done, "timerfd_settime")
    return fd


def _listen(proc: Process, fd: int, family: int, kind: int, protocol: int, address,
            backlog: int, options: list) -> int:
    """A listening socket made again: same address, options and backlog. A unix
    socket's path left behind by the original (nobody listening there) is removed."""
    import socket
    s = socket.socket(family, kind, protocol)
    try:
        for level, name, value in options:
            try:
                s.setsockopt(level, name, value)
            except OSError:
                pass
        if family == socket.AF_UNIX and isinstance(address, str) and address:
            address = os.fsdecode(proc.host_path(os.fsencode(address)))
        try:
            s.bind(address)
        except OSError as e:
            if e.errno != errno.EADDRINUSE or family != socket.AF_UNIX \
                    or not isinstance(address, str) or not address or socket_in_use(address):
                raise ResumeError(f"fd {fd}: cannot listen on {address!r} again: "
                                  f"{e.strerror}") from None
            _unlink(address)
            s.bind(address)
        s.listen(backlog)
        s.set_inheritable(False)
        return s.detach()
    finally:
        s.close()


def _unlink(path: str) -> None:
    """unlinkat (km's jail allows no unlink, and os.unlink makes one of AT_FDCWD)."""
    from kontain.linux import hostcall as host
    from kontain.linux.numbers import NUMBERS as NR
    name = os.fsencode(path)
    host.call(NR["unlinkat"], AT_FDCWD, host.address_of(name), 0)


def socket_in_use(path: str) -> bool:
    """Whether something listens on the unix socket path (else it is stale, or not a
    socket, and may be replaced)."""
    import socket  # (loaded before the jail: launch.preload_snapshots)
    probe = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    try:
        probe.connect(path)
        return True
    except OSError as e:
        return e.errno != errno.ECONNREFUSED
    finally:
        probe.close()


def _close_given(proc: Process, path: str) -> None:
    """A snapshot given as /dev/fd/N (or /proc/self/fd/N) is km's input, not one of the
    payload's descriptors: close N, or a payload could reopen it for writing through
    /proc/self/fd and change every later resume of the file (a pool's)."""
    for prefix in ("/dev/fd/", "/proc/self/fd/"):
        if path.startswith(prefix) and path[len(prefix):].isdigit():
            fd = int(path[len(prefix):])
            if 3 <= fd < proc.fds.km_base:
                try:
                    os.close(fd)
                except OSError:
                    pass


def _signalfds(proc: Process, saved: list) -> None:
    groups: dict[int, list] = {}
    for entry in saved:
        groups.setdefault(entry[5], []).append(entry)
    for entries in groups.values():
        first = entries[0]
        made = proc.signalfds.create(first[4], (first[3] & os.O_NONBLOCK)
                                     | (os.O_CLOEXEC if first[2] else 0))
        for entry in entries:
            if entry[0] != made:
                os.dup2(made, entry[0], inheritable=not entry[2])
                proc.signalfds.duplicated(made, entry[0])
        if made not in {e[0] for e in entries}:
            os.close(made)
            proc.signalfds.closed(made)


def _epoll(proc: Process, fd: int, _kind: str, cloexec: bool, flags: int,
           interest: list) -> None:
    import ctypes

    from kontain.linux import hostcall as host
    from kontain.linux.numbers import NUMBERS as NR
    made = host.syscall(NR["epoll_create1"], os.O_CLOEXEC)
    if made < 0:
        raise OSError(-made, "epoll_create1")
    try:
        made = proc.fds.move_high(made)
        for target, events, data in interest:
            event = struct.pack("<IQ", events, data)
            buffer = ctypes.create_string_buffer(event, len(event))
            done = host.syscall(NR["epoll_ctl"], made, 1, target, ctypes.addressof(buffer))
            if done < 0:
                raise ResumeError(f"fd {fd}: epoll of fd {target}: {os.strerror(-done)}")
        os.dup2(made, fd, inheritable=not cloexec)
    finally:
        os.close(made)


def _signals(proc: Process, state: dict) -> None:
    for signo, (handler, flags, restorer, mask) in enumerate(state["actions"]):
        if signo == 0 or signo > sig.NSIG or signo in (sig.SIGKILL, sig.SIGSTOP):
            continue
        proc.signals.actions[signo] = sig.Disposition(handler, flags, restorer, mask)
        if handler != sig.SIG_DFL:
            proc.host_signals.disposition_changed(signo)
    for signo, info in state["shared_pending"]:
        proc.signals.shared.add(signo, info)
    if state["itimers"]:
        import ctypes

        from kontain.linux import hostcall as host
        from kontain.linux.numbers import NUMBERS as NR
        for which, timer in state["itimers"]:  # (alarm, setitimer: the time left)
            value = (ctypes.c_int64 * 4)(*timer)
            host.call(NR["setitimer"], which, ctypes.addressof(value), 0)


def _thread_of(proc: Process, record: dict, first: bool) -> GuestThread:
    from kontain.kvm import structs as s
    from kontain.machine import cpustate
    vcpu = proc.group.new_vcpu()
    if first:
        try:
            vcpu.enter_without_running()
        except OSError as e:
            raise ResumeError(f"the VM cannot start: {e.strerror}") from None
    sregs = vcpu.get_sregs()
    sregs.fs.base, sregs.gs.base = record["fs"], record["gs"]
    sregs.fs.selector, sregs.gs.selector = record["fs_selector"], record["gs_selector"]
    cpustate.apply_thread(vcpu, cpustate.ThreadState(
        s.Regs.from_buffer_copy(record["regs"]), sregs,
        s.Xsave.from_buffer_copy(record["xsave"])))
    thread = GuestThread(proc, vcpu, proc.pid if first else 0)
    thread.signal_mask = record["mask"]
    for signo, info in record["pending"]:
        thread.pending.add(signo, info)
    thread.altstack = tuple(record["altstack"])
    thread.robust_list = record["robust_list"]
    thread.clear_child_tid = record["clear_child_tid"]
    thread.name = record["name"]
    thread.saved_mask = record["saved_mask"]
    return thread


def _starter(proc: Process, thread: GuestThread):
    """Start thread's host thread now (it learns its tid and joins the group), and
    return the function that lets it run."""
    group = proc.group
    ready, go = _thread.allocate_lock(), _thread.allocate_lock()
    ready.acquire()
    go.acquire()

    try:
        _thread.start_new_thread(group.host_thread, (thread, ready, go))
    except RuntimeError:
        raise ResumeError("no host thread for a payload thread (a process limit)") from None
    ready.acquire()
    return go.release

