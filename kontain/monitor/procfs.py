"""/proc as the payload must see it: its own entries describe the payload, never km.

km is the process the host's procfs describes, so every entry of km's own pid directory
(/proc/self, /proc/thread-self, /proc/<pid>, /proc/<pid>/task/<tid>, reached by any
name: a symlink, a bind mount, a procfs mounted inside the payload's root) is one of:

- synthesized from what km knows of the payload (maps, smaps, status, stat, statm,
  cmdline, environ, auxv, limits, personality), into a memfd when opened;
- the host's own file, where it describes the payload as well as km (comm, cgroup,
  mountinfo, oom_score_adj, fdinfo of a guest descriptor, ...);
- a magic link resolved as the payload means it (exe: the payload's file; cwd; root;
  fd/N: the guest's descriptor N, never one of km's);
- refused (EACCES): anything that would hand over km's memory or km's internals (mem,
  pagemap, map_files, syscall, stack, ...).

Which pid directory an object belongs to is decided from the object itself (walking up
from it with kernel handles, reading names procfs gives), never from a path string the
payload could race; when that cannot be decided, access is refused. Other processes'
entries are the host kernel's business: km is not dumpable and has no CAP_SYS_PTRACE, so
a payload cannot read another km's memory either (kontain.monitor.jail).
"""

from __future__ import annotations

import _thread
import ctypes
import errno
import os
import struct

from kontain.linux import hostcall as host
from kontain.linux.abi import (
    MAP_SHARED,
    MAP_TYPE,
    O_ACCMODE,
    O_CLOEXEC,
    O_DIRECTORY,
    O_PATH,
    PROT_EXEC,
    PROT_READ,
    PROT_WRITE,
)
from kontain.linux.numbers import NUMBERS as NR
from kontain.mm.vma import Vma

TYPE_CHECKING = False  # no typing import at run time: km start-up is timed
if TYPE_CHECKING:
    from kontain.monitor.process import Process

MFD_CLOEXEC = 1
PR_SET_NAME = 15
PR_SET_MM, PR_SET_MM_MAP = 35, 14
#: struct prctl_mm_map: code, data, brk, stack, arg and env bounds, auxv, its size, exe_fd.
_PRCTL_MM_MAP = struct.Struct("<11QQII")
PROC_SUPER_MAGIC = 0x9FA0
_STATFS = struct.Struct("<q")  # f_type, the first field of struct statfs
_DIRENT_HEAD = struct.Struct("<QqHB")  # d_ino, d_off, d_reclen, d_type

#: Own entries km synthesizes (relative to a pid or task directory).
SYNTHESIZED = frozenset({b"maps", b"smaps", b"smaps_rollup", b"status", b"stat", b"statm",
                         b"cmdline", b"environ", b"auxv", b"limits", b"personality"})
#: Own entries that describe the payload as well as km: the host's own.
PASSED = frozenset({b"", b"comm", b"cgroup", b"cpuset", b"io", b"loginuid", b"sessionid",
                    b"mounts", b"mountinfo", b"mountstats", b"oom_adj", b"oom_score",
                    b"oom_score_adj", b"sched", b"schedstat", b"wchan", b"uid_map",
                    b"gid_map", b"setgroups", b"projid_map", b"timerslack_ns",
                    b"coredump_filter", b"timens_offsets", b"arch_status",
                    b"autogroup", b"children", b"fd", b"fdinfo", b"task", b"attr", b"net",
                    b"ns", b"latency", b"ksm_stat", b"ksm_merging_pages"})
#: Directories whose subtrees are the host's (network and namespace files, LSM attributes).
PASSED_TREES = (b"attr/", b"net/", b"ns/")
#: Directories whose listing km filters (its descriptors, its own helper threads).
FILTERED_DIRECTORIES = frozenset({b"fd", b"fdinfo", b"task"})


class HostObject(Exception):
    """A magic link leads to an object that has no path in the payload's root (a pipe, a
    socket, an inherited file): the host path km itself can reach it by."""

    def __init__(self, path: bytes) -> None:
        super().__init__(path)
        self.path = path


def is_procfs(fd: int) -> bool:
    buffer = ctypes.create_string_buffer(120)  # struct statfs
    if host.syscall(NR["fstatfs"], fd, ctypes.addressof(buffer)) < 0:
        return False
    return _STATFS.unpack_from(buffer.raw)[0] == PROC_SUPER_MAGIC


def _refuse(message: str, code: int = errno.EACCES) -> OSError:
    return OSError(code, message)


class ProcFs:
    """The payload's view of its own /proc entries."""

    def __init__(self, proc: Process) -> None:
        self._proc = proc
        self.auxv = b""
        #: Guest address ranges of the argument and environment strings.
        self.argv_range = (0, 0)
        self.environ_range = (0, 0)
        #: Whether the host reads km's command line and environment from the guest's
        #: strings (rename_km): then its own cmdline and environ files are the payload's.
        self.host_reads_guest_strings = False
        #: Guest fds open on one of our directories km filters: fd -> the entry.
        self.filtered: dict[int, bytes] = {}

    # ---- which entry is it? --------------------------------------------------------------

    def own_entry(self, path: bytes) -> bytes | None:
        """The entry named by a guest absolute path to our own pid directory, by its
        spelling (/proc/self/..., /proc/<pid>/..., /proc/thread-self/...), or None."""
        if not path.startswith(b"/proc/"):
            return None
        parts = [p for p in path.split(b"/") if p and p != b"."]
        if len(parts) < 2 or parts[0] != b"proc" or b".." in parts:
            # `..` after a link is not lexical: let the kernel walk it (the object
            # it reaches is checked after all; kontain.monitor.root).
            return None
        head = parts[1]
        rest = parts[2:]
        if head == b"thread-self":
            rest = [b"task", b"%d" % self._thread_id()] + rest
        elif head != b"self" and head != b"%d" % self._proc.pid:
            if not head.isdigit() or int(head) not in self._proc.group.threads:
                return None
            rest = [b"task", head] + rest  # /proc/<tid>: that thread's directory
        return b"/".join(rest)

    def _thread_id(self) -> int:
        for tid, thread in self._proc.group.threads.items():
            if thread.host_ident == _thread.get_ident():
                return tid
        return self._proc.pid

    def classify(self, fd: int) -> bytes | None:
        """For a descriptor on procfs: its entry in our own pid directory, or None when
        it is not in one (a global file, another process). OSError(EACCES) when that
        cannot be decided: a procfs object km cannot place is refused."""
        try:
            target = os.readlink(b"/proc/self/fd/%d" % fd)
            if not target.startswith(b"/"):
                raise _refuse("procfs object without a path")
            parent_path, name = target.rsplit(b"/", 1)
            names = [name] if name else []
            here = os.open(parent_path or b"/", O_PATH | O_DIRECTORY | O_CLOEXEC)
        except OSError as e:
            raise _refuse(f"cannot place a procfs object: {e}") from None
        try:
            if names:  # the object must be what its parent holds under that name
                mine, theirs = os.fstat(fd), os.stat(name, dir_fd=here, follow_symlinks=False)
                if (mine.st_dev, mine.st_ino) != (theirs.st_dev, theirs.st_ino):
                    raise _refuse("procfs object moved while km looked at it")
            # Walk up to the procfs root, collecting the names procfs gives.
            while True:
                up = os.open(b"..", O_PATH | O_DIRECTORY | O_CLOEXEC, dir_fd=here)
                same = os.fstat(up), os.fstat(here)
                if not is_procfs(up) or (same[0].st_dev, same[0].st_ino) == (
                        same[1].st_dev, same[1].st_ino):
                    os.close(up)
                    break
                names.insert(0, os.readlink(b"/proc/self/fd/%d" % here).rsplit(b"/", 1)[1])
                os.close(here)
                here = up
            # `here` is the procfs root; names[0] the entry below it.
            if not names or not names[0].isdigit():
                return None
            me = os.readlink(b"self", dir_fd=here)  # our pid in that procfs's namespace
            if names[0] != me:
                try:
                    os.stat(b"%s/task/%s" % (me, names[0]), dir_fd=here)
                except FileNotFoundError:
                    return None  # another process
                names[0:1] = [b"task", names[0]]  # one of our threads, by its own pid dir
            else:
                del names[0]
            if len(names) >= 2 and names[0] == b"task":
                # Thread ids in that namespace are ours only when it is our namespace.
                if me != b"%d" % self._proc.pid:
                    raise _refuse("a thread directory in another pid namespace")
                if int(names[1]) not in self._proc.group.threads:
                    raise _refuse("a thread of km's own", errno.ENOENT)
            return b"/".join(names)
        except OSError as e:
            if e.errno in (errno.EACCES, errno.ENOENT):
                raise
            raise _refuse(f"cannot place a procfs object: {e}") from None
        finally:
            os.close(here)

    @staticmethod
    def _split_task(entry: bytes) -> tuple[int | None, bytes]:
        """(thread id or None, entry relative to that thread's or the process's dir)."""
        parts = entry.split(b"/")
        if len(parts) >= 2 and parts[0] == b"task" and parts[1].isdigit():
            return int(parts[1]), b"/".join(parts[2:])
        return None, entry

    # ---- using an entry ---------------------------------------------------------------------

    def open_own(self, entry: bytes, flags: int) -> int:
        """Open one of our own entries for the payload; returns a host fd."""
        tid, leaf = self._split_task(entry)
        if tid is not None and tid not in self._proc.group.threads:
            raise _refuse("no such thread", errno.ENOENT)
        if leaf in SYNTHESIZED:
            if flags & O_ACCMODE != os.O_RDONLY:
                raise _refuse(f"/proc/self/{leaf.decode()} is read-only")
            return _memfd(leaf, self._contents(leaf, tid), flags)
        if leaf in PASSED or leaf.startswith(PASSED_TREES) or self._guest_fd_info(leaf):
            fd = os.open(b"/proc/self/" + entry if entry else b"/proc/self",
                         flags & ~os.O_CREAT)
            if leaf in FILTERED_DIRECTORIES or entry == b"task":
                self.filtered[fd] = leaf
            return fd
        raise _refuse(f"/proc/self/{entry.decode(errors='replace')} belongs to km")

    def _guest_fd_info(self, leaf: bytes) -> bool:
        """fdinfo/N of one of the guest's descriptors."""
        if not leaf.startswith(b"fdinfo/"):
            return False
        number = leaf[7:]
        return number.isdigit() and int(number) < self._proc.fds.km_base

    @staticmethod
    def split_magic(entry: bytes) -> tuple[bytes, bytes] | None:
        """(the magic link, what follows it) if entry goes through one of our magic
        links (exe, cwd, root, fd/N, map_files/X, ns/X, of the process or a thread)."""
        parts = entry.split(b"/")
        i = 2 if len(parts) >= 2 and parts[0] == b"task" else 0
        if len(parts) > i and parts[i] in (b"exe", b"cwd", b"root"):
            return b"/".join(parts[:i + 1]), b"/".join(parts[i + 1:])
        if len(parts) > i + 1 and parts[i] in (b"fd", b"map_files", b"ns"):
            return b"/".join(parts[:i + 2]), b"/".join(parts[i + 2:])
        return None

    def magic_target(self, entry: bytes, final: bool = False) -> bytes | None:
        """Where an entry through one of our magic links leads, as a guest path
        (resolved again inside the root), or None if it goes through none. Raises
        HostObject when the target has no guest path, OSError when the payload may
        not follow it. final: nothing else is looked up after entry."""
        split = self.split_magic(entry)
        if split is None:
            return None
        link, rest = split
        target = self._link_target(link, final and not rest)
        return target.rstrip(b"/") + b"/" + rest if rest else target

    def _link_target(self, link: bytes, final: bool) -> bytes:
        _tid, leaf = self._split_task(link)
        proc = self._proc
        if leaf == b"exe":
            return os.fsencode(proc.guest_exe)
        if leaf == b"cwd":
            return proc.root.getcwd()
        if leaf == b"root":
            return b"/"
        if leaf.startswith(b"fd/"):
            number = leaf[3:]
            if not number.isdigit() or int(number) >= proc.fds.km_base:
                raise _refuse("no such descriptor", errno.ENOENT)
            try:
                target = os.readlink(b"/proc/self/fd/" + number)
            except OSError:
                raise _refuse("no such descriptor", errno.ENOENT) from None
            guest = proc.root.guest_path_of_host(target)
            if guest is None or final and not target.startswith(b"/"):
                # No path in the root (a pipe, a socket, an inherited file): only the
                # object itself can be reached, through km's own /proc.
                if not final:
                    raise _refuse("a descriptor outside the payload's root")
                raise HostObject(b"/proc/self/fd/" + number)
            return guest
        if leaf.startswith(b"map_files/"):
            raise _refuse("map_files describe km's memory")
        if not final:  # ns/X: a namespace, not a directory
            raise _refuse("not a directory", errno.ENOTDIR)
        raise HostObject(b"/proc/self/" + leaf)

    def readlink_own(self, entry: bytes) -> bytes | None:
        """What readlink of one of our own entries returns, if it is one of our links
        (None otherwise, or when entry goes on past a link: that is a path inside)."""
        split = self.split_magic(entry)
        if split is None or split[1]:
            return None
        try:
            target = self.magic_target(entry, final=True)
        except HostObject as e:
            fd = e.path[len(b"/proc/self/fd/"):]
            if e.path.startswith(b"/proc/self/fd/") and fd.isdigit() \
                    and self._proc.signalfds.lookup(int(fd)):
                return b"anon_inode:[signalfd]"  # (a pipe, to the host)
            return os.readlink(e.path)
        return target

    def filter_entries(self, fd: int, data: bytes) -> bytes:
        """Drop linux_dirent64 records naming km's descriptors or km's own threads."""
        kind = self.filtered.get(fd)
        if kind is None:
            return data
        if kind == b"task":
            keep = {b"%d" % tid for tid in self._proc.group.threads}
            wanted = (lambda name: not name.isdigit() or name in keep)
        else:
            km_base = self._proc.fds.km_base
            wanted = (lambda name: not (name.isdigit() and int(name) >= km_base))
        out = bytearray()
        offset = 0
        while offset + _DIRENT_HEAD.size <= len(data):
            _ino, _off, reclen, _type = _DIRENT_HEAD.unpack_from(data, offset)
            if reclen == 0:
                break
            name = data[offset + _DIRENT_HEAD.size:offset + reclen].split(b"\0", 1)[0]
            if wanted(name):
                out += data[offset:offset + reclen]
            offset += reclen
        return bytes(out)

    def closed(self, fd: int) -> None:
        self.filtered.pop(fd, None)

    # ---- contents ------------------------------------------------------------------------

    def _contents(self, leaf: bytes, tid: int | None) -> bytes:
        if leaf == b"status":
            return self.status(tid)
        return {b"maps": self.maps, b"smaps": self.smaps, b"smaps_rollup": self.smaps_rollup,
                b"stat": self.stat, b"statm": self.statm,
                b"cmdline": self.cmdline, b"environ": self.environ,
                b"auxv": lambda: self.auxv, b"limits": self.limits,
                b"personality": lambda: b"%08x\n" % self._proc.personality}[leaf]()

    def cmdline(self) -> bytes:
        """The argument strings in the payload's memory, as Linux reads them: a program
        that rewrote them (setproctitle: the last NUL overwritten) shows its title, the
        first string of the area it wrote over, arguments and environment."""
        if self.host_reads_guest_strings:
            return _read_host(b"/proc/self/cmdline")
        start, end = self.argv_range
        _env_start, env_end = self.environ_range
        mm = self._proc.mm
        try:
            if end > start and mm.read(end - 1, 1) != b"\0":
                title = mm.read(start, min(4096, max(env_end, end) - start))
                nul = title.find(b"\0")
                return title if nul < 0 else title[:nul + 1]
            return mm.read(start, end - start) if end > start else b""
        except Exception:  # noqa: BLE001 - unmapped by the payload: nothing to show
            return b""

    def environ(self) -> bytes:
        """The environment strings in the payload's memory, as Linux reads them."""
        if self.host_reads_guest_strings:
            return _read_host(b"/proc/self/environ")
        start, end = self.environ_range
        try:
            return self._proc.mm.read(start, end - start) if end > start else b""
        except Exception:  # noqa: BLE001 - unmapped by the payload: nothing to show
            return b""

    def _map_lines(self) -> list[tuple[Vma, str]]:
        lines = []
        for vma in _as_linux_shows(self._proc.mm.vmas()):
            perms = "".join((
                "r" if vma.prot & PROT_READ else "-", "w" if vma.prot & PROT_WRITE else "-",
                "x" if vma.prot & PROT_EXEC else "-",
                "s" if vma.flags & MAP_TYPE == MAP_SHARED else "p"))
            device = f"{os.major(vma.device):02x}:{os.minor(vma.device):02x}"
            head = f"{vma.start:08x}-{vma.end:08x} {perms} {vma.offset:08x} {device} {vma.inode}"
            lines.append((vma, f"{head:<72} {vma.name}".rstrip() if vma.name else head))
        return lines

    def maps(self) -> bytes:
        return "".join(line + "\n" for _vma, line in self._map_lines()).encode()

    def smaps(self) -> bytes:
        out = []
        for vma, line in self._map_lines():
            out.append(line + "\n" + _smaps_fields(vma.size, self._resident(vma)))
        return "".join(out).encode()

    def smaps_rollup(self) -> bytes:
        vmas = self._proc.mm.vmas()
        if not vmas:
            return b""
        size = sum(v.size for v in vmas)
        resident = sum(self._resident(v) for v in vmas)
        head = f"{vmas[0].start:08x}-{vmas[-1].end:08x} ---p 00000000 00:00 0"
        return (f"{head:<72} [rollup]\n" + _smaps_fields(size, resident, rollup=True)).encode()

    def _resident(self, vma: Vma) -> int:
        """Bytes of the mapping backed by memory now (mincore of the host pages)."""
        if vma.pa is None or vma.foreign:
            return 0
        pages = vma.size >> 12
        vector = ctypes.create_string_buffer(pages)
        if host.syscall(NR["mincore"], self._proc.mm.host_base + vma.pa, vma.size,
                        ctypes.addressof(vector)) < 0:
            return 0
        return sum(b & 1 for b in vector.raw) << 12

    def statm(self) -> bytes:
        vmas = self._proc.mm.vmas()
        size = sum(v.size for v in vmas) >> 12
        resident = sum(self._resident(v) for v in vmas) >> 12
        text = sum(v.size for v in vmas if v.prot & PROT_EXEC) >> 12
        data = sum(v.size for v in vmas if v.prot & PROT_WRITE and not v.shared) >> 12
        return f"{size} {resident} 0 {text} 0 {data} 0\n".encode()

    def status(self, tid: int | None = None) -> bytes:
        """The host's status of km's thread (the main one for the process), with the
        memory and signal lines the payload's."""
        threads = len(self._proc.group.threads) or 1
        queued, signal_lines = self._signal_fields(tid)
        lines = []
        host_file = b"/proc/self/task/%d/status" % tid if tid else b"/proc/self/status"
        for line in _read_host(host_file).split(b"\n"):
            key = line.split(b":", 1)[0]
            if key == b"Threads":
                line = b"Threads:\t%d" % threads
            elif key == b"SigQ":
                # Queued for the user (all of its processes) / its limit: the host's
                # count, plus what km queued for the payload itself.
                host_queued, _, limit = line.split(b"\t")[-1].partition(b"/")
                line = b"SigQ:\t%d/%s" % (int(host_queued or 0) + queued, limit)
            elif key in signal_lines:
                line = key + b":\t" + signal_lines[key]
            elif key == b"NoNewPrivs":  # the payload's flag, not km's wall
                line = b"NoNewPrivs:\t%d" % self._proc.no_new_privs
            elif key in (b"Seccomp", b"Seccomp_filters"):  # the payload's profile only
                mode = (2 if key == b"Seccomp" else 1) if self._proc.options.syscall_filter \
                    else 0
                line = key + b":\t%d" % mode
            elif key in (b"VmPeak", b"VmSize", b"VmRSS", b"VmHWM", b"VmData", b"VmStk",
                         b"VmExe", b"VmLib", b"VmPTE", b"VmSwap", b"RssAnon", b"RssFile",
                         b"RssShmem", b"VmLck", b"VmPin"):
                line = key + b":\t" + self._vm_field(key)
            lines.append(line)
        return b"\n".join(lines)

    def _signal_fields(self, tid: int | None) -> tuple[int, dict[bytes, bytes]]:
        """(signals km has queued, the SigPnd, ShdPnd, SigBlk, SigIgn, SigCgt lines) of
        the payload: the pending set and mask of the named thread, else the first's."""
        proc = self._proc
        threads = proc.group.threads
        thread = threads.get(tid if tid is not None else proc.pid) \
            or next(iter(threads.values()), None)
        state = proc.signals
        with state.lock:
            ignored = caught = 0
            for signo in range(1, len(state.actions)):
                handler = state.actions[signo].handler
                if handler == 1:  # SIG_IGN
                    ignored |= 1 << (signo - 1)
                elif handler != 0:
                    caught |= 1 << (signo - 1)
            queued = len(state.shared.entries) + sum(
                len(t.pending.entries) for t in threads.values())
            pending = thread.pending.bits if thread is not None else 0
            blocked = thread.signal_mask if thread is not None else 0
            shared = state.shared.bits
        return queued, {b"SigPnd": b"%016x" % pending, b"ShdPnd": b"%016x" % shared,
                        b"SigBlk": b"%016x" % blocked, b"SigIgn": b"%016x" % ignored,
                        b"SigCgt": b"%016x" % caught}

    def _vm_field(self, key: bytes) -> bytes:
        vmas = self._proc.mm.vmas()
        kib = {
            b"VmPeak": sum(v.size for v in vmas), b"VmSize": sum(v.size for v in vmas),
            b"VmRSS": sum(self._resident(v) for v in vmas),
            b"VmHWM": sum(self._resident(v) for v in vmas),
            b"VmData": sum(v.size for v in vmas if v.prot & PROT_WRITE and not v.shared
                           and v.name != "[stack]"),
            b"VmStk": sum(v.size for v in vmas if v.name == "[stack]"),
            b"VmExe": sum(v.size for v in vmas if v.prot & PROT_EXEC and v.file_backed),
            b"RssAnon": sum(self._resident(v) for v in vmas if not v.file_backed),
            b"RssFile": sum(self._resident(v) for v in vmas if v.file_backed),
        }.get(key, 0) >> 10
        return b"%8d kB" % kib

    def stat(self) -> bytes:
        text = _read_host(b"/proc/self/stat")
        close = text.rfind(b")")
        fields = text[close + 2:].split(b" ")
        vmas = self._proc.mm.vmas()
        if len(fields) > 48:  # (index = field number in proc(5) - 3)
            fields[17] = b"%d" % (len(self._proc.group.threads) or 1)  # num_threads
            fields[20] = b"%d" % sum(v.size for v in vmas)  # vsize
            fields[21] = b"%d" % (sum(self._resident(v) for v in vmas) >> 12)  # rss
            # The addresses are the payload's, not those of km's Python.
            for index in (23, 24, 25, 26, 27, 42, 43):
                fields[index] = b"0"
            fields[44] = b"%d" % self._proc.mm.brk_start
            fields[45], fields[46] = (b"%d" % a for a in self.argv_range)
            fields[47], fields[48] = (b"%d" % a for a in self.environ_range)
        return text[:close + 2] + b" ".join(fields)

    def limits(self) -> bytes:
        """As fs/proc/base.c prints them, with the limits the payload sees."""
        text = f"{'Limit':<25} {'Soft Limit':<20} {'Hard Limit':<20} {'Units':<10}\n"
        for resource, (name, unit) in enumerate(_LIMITS):
            soft, hard = self._proc.guest_rlimit(resource)
            shown = ["unlimited" if v >= (1 << 63) or v < 0 else str(v) for v in (soft, hard)]
            text += f"{name:<25} {shown[0]:<20} {shown[1]:<20} " + (
                f"{unit:<10}" if unit else "") + "\n"
        return text.encode()

    # ---- how the host shows km ----------------------------------------------------------

    def rename_km(self, argv: list[bytes]) -> None:
        """Make `ps` show the payload: comm, and the command line the host reports.

        The host reads a process's command line from its memory between arg_start and
        arg_end. km points those (PR_SET_MM_MAP, which needs no privilege) at the
        payload's own argument and environment strings, in guest memory: what the
        host shows is then live, a title the payload writes over its arguments (nginx's
        "nginx: worker process") included. Where that is refused, km's own command line
        is overwritten with the payload's, once, cut to the room it has.
        """
        name = os.path.basename(argv[0] if argv else b"km")[:15] or b"km"
        host.syscall(NR["prctl"], PR_SET_NAME, host.address_of(name))
        try:
            fields = _read_host(b"/proc/self/stat").rsplit(b")", 1)[1].split()
            arg_start, arg_end = int(fields[45]), int(fields[46])
        except (OSError, IndexError, ValueError):
            return
        self.host_reads_guest_strings = self._point_cmdline_at_guest(fields)
        if self.host_reads_guest_strings:
            return
        room = arg_end - arg_start
        if room <= 1:
            return
        text = b"".join(arg + b"\0" for arg in argv)[:room - 1]
        ctypes.memmove(arg_start, text.ljust(room, b"\0"), room)

    def _point_cmdline_at_guest(self, stat_fields: list[bytes]) -> bool:
        """PR_SET_MM_MAP with km's own values (/proc/self/stat, the current break), but
        the argument and environment areas the guest's strings in km's memory."""
        mm = self._proc.mm
        (arg_start, arg_end), (env_start, env_end) = self.argv_range, self.environ_range
        host_arg, host_env = mm.host_address(arg_start), mm.host_address(env_start)
        if host_arg is None or host_env is None or arg_end <= arg_start \
                or mm.host_address(env_end - 1) != host_env + env_end - 1 - env_start \
                or mm.host_address(arg_end - 1) != host_arg + arg_end - 1 - arg_start:
            return False  # the strings are not one contiguous run of km's memory
        try:
            start_code, end_code, start_stack = (int(stat_fields[i]) for i in (23, 24, 25))
            start_data, end_data, start_brk = (int(stat_fields[i]) for i in (42, 43, 44))
        except (IndexError, ValueError):
            return False
        brk = host.syscall(NR["brk"], 0)
        layout = _PRCTL_MM_MAP.pack(
            start_code, end_code, start_data, end_data, start_brk, brk, start_stack,
            host_arg, host_arg + arg_end - arg_start, host_env, host_env + env_end - env_start,
            0, 0, 0xFFFFFFFF)
        return host.syscall(NR["prctl"], PR_SET_MM, PR_SET_MM_MAP, host.address_of(layout),
                            len(layout), 0) == 0


_LIMITS = (("Max cpu time", "seconds"), ("Max file size", "bytes"), ("Max data size", "bytes"),
           ("Max stack size", "bytes"), ("Max core file size", "bytes"),
           ("Max resident set", "bytes"), ("Max processes", "processes"),
           ("Max open files", "files"), ("Max locked memory", "bytes"),
           ("Max address space", "bytes"), ("Max file locks", "locks"),
           ("Max pending signals", "signals"), ("Max msgqueue size", "bytes"),
           ("Max nice priority", ""), ("Max realtime priority", ""),
           ("Max realtime timeout", "us"))


def _smaps_fields(size: int, resident: int, rollup: bool = False) -> str:
    kib = [("Rss", resident), ("Pss", resident), ("Shared_Clean", 0), ("Shared_Dirty", 0),
           ("Private_Clean", 0), ("Private_Dirty", resident), ("Referenced", resident),
           ("Anonymous", 0), ("KSM", 0), ("LazyFree", 0), ("AnonHugePages", 0),
           ("ShmemPmdMapped", 0), ("FilePmdMapped", 0), ("Shared_Hugetlb", 0),
           ("Private_Hugetlb", 0), ("Swap", 0), ("SwapPss", 0), ("Locked", 0)]
    if rollup:
        kib[2:2] = [("Pss_Dirty", resident), ("Pss_Anon", 0), ("Pss_File", 0),
                    ("Pss_Shmem", 0)]
    lines = [] if rollup else [f"{'Size:':<16}{size >> 10:>8} kB",
                               f"{'KernelPageSize:':<16}{4:>8} kB",
                               f"{'MMUPageSize:':<16}{4:>8} kB"]
    lines += [f"{name + ':':<16}{value >> 10:>8} kB" for name, value in kib]
    if not rollup:
        lines += ["THPeligible:    0", "VmFlags: rd wr mr mw me ac"]
    return "\n".join(lines) + "\n"


def _as_linux_shows(vmas: list[Vma]) -> list[Vma]:
    """Merge VMAs Linux would show as one mapping (km grows memory by adding VMAs
    beside the old ones: see kontain.mm.space)."""
    merged: list[Vma] = []
    for vma in vmas:
        if merged and merged[-1].continues(vma):
            merged[-1] = merged[-1].replace(end=vma.end)
        else:
            merged.append(vma)
    return merged


def _read_host(path: bytes) -> bytes:
    fd = os.open(path, os.O_RDONLY | O_CLOEXEC)
    try:
        chunks = []
        while chunk := os.read(fd, 65536):
            chunks.append(chunk)
        return b"".join(chunks)
    finally:
        os.close(fd)


def _memfd(name: bytes, contents: bytes, flags: int) -> int:
    label = b"proc-" + name  # kept alive (and NUL-terminated) across the call
    fd = host.syscall(NR["memfd_create"], host.address_of(label),
                      MFD_CLOEXEC if flags & O_CLOEXEC else 0)
    if fd < 0:
        raise OSError(-fd, "memfd_create")
    view = memoryview(contents)
    while view:
        view = view[os.write(fd, view):]
    os.lseek(fd, 0, os.SEEK_SET)
    return fd


