"""/proc/self as the payload expects it: about the payload, not about the km process.

km is the process the host's /proc describes, so a few of its files must be rewritten:
exe (the payload's path), cmdline (its argv), maps (its mappings), auxv (its vector),
status and stat (thread counts), and the fd directory (without km's own descriptors).
Files are synthesized into a memfd when the payload opens them; the fd directory is the
host's, with km's descriptors filtered out of getdents64. km also renames itself
(comm and the cmdline the host shows in `ps`) after the payload.
"""

from __future__ import annotations

import ctypes
import os
import struct

from kontain.linux import hostcall as host
from kontain.linux.numbers import NUMBERS as NR
from kontain.monitor.vma import MAP_SHARED, MAP_TYPE, PROT_EXEC, PROT_READ, PROT_WRITE, Vma

TYPE_CHECKING = False  # no typing import at run time: km start-up is timed
if TYPE_CHECKING:
    from kontain.monitor.process import Process

O_CLOEXEC = 0o2000000
MFD_CLOEXEC = 1
PR_SET_NAME = 15
_DIRENT_HEAD = struct.Struct("<QqHB")  # d_ino, d_off, d_reclen, d_type


class ProcFs:
    """The payload's view of /proc/self (and /proc/<its pid>, /proc/thread-self)."""

    def __init__(self, proc: Process) -> None:
        self._proc = proc
        self.auxv = b""
        #: Guest fds open on a /proc fd directory: their getdents64 hides km's fds.
        self.fd_directories: set[int] = set()

    def _own(self, path: bytes) -> bytes | None:
        """The part after /proc/self/ (or /proc/<pid>/), if path names our own entry."""
        for prefix in (b"/proc/self/", b"/proc/thread-self/", b"/proc/%d/" % self._proc.pid):
            if path.startswith(prefix):
                return path[len(prefix):]
        if path in (b"/proc/self", b"/proc/thread-self", b"/proc/%d" % self._proc.pid):
            return b""
        return None

    def open(self, path: bytes, flags: int) -> int | None:
        """A synthesized /proc file for path as an fd, or None to let the host open it."""
        entry = self._own(path)
        if entry is None:
            return None
        make = {b"maps": self.maps, b"auxv": lambda: self.auxv, b"cmdline": self.cmdline,
                b"status": self.status, b"stat": self.stat}.get(entry)
        if make is None:
            return None
        return _memfd(entry, make(), flags)

    def opened(self, path: bytes, fd: int) -> None:
        """Note a descriptor the host opened for path (fd directories are filtered)."""
        if self._own(path.rstrip(b"/")) == b"fd":
            self.fd_directories.add(fd)
        else:
            self.fd_directories.discard(fd)

    # ---- contents ------------------------------------------------------------------------

    def cmdline(self) -> bytes:
        return b"".join(arg + b"\0" for arg in self._proc.argv)

    def maps(self) -> bytes:
        lines = []
        for vma in _as_linux_shows(self._proc.mm.vmas()):
            perms = "".join((
                "r" if vma.prot & PROT_READ else "-", "w" if vma.prot & PROT_WRITE else "-",
                "x" if vma.prot & PROT_EXEC else "-",
                "s" if vma.flags & MAP_TYPE == MAP_SHARED else "p"))
            device = f"{os.major(vma.device):02x}:{os.minor(vma.device):02x}"
            head = f"{vma.start:08x}-{vma.end:08x} {perms} {vma.offset:08x} {device} {vma.inode}"
            lines.append(f"{head:<72} {vma.name}".rstrip() if vma.name else head)
        return ("\n".join(lines) + "\n").encode()

    def status(self) -> bytes:
        import re  # here, not at the top: km start-up is timed and re is costly to import

        text = _read_host(b"/proc/self/status")
        threads = len(self._proc.group.threads) or 1
        return re.sub(rb"(?m)^Threads:\s*\d+", b"Threads:\t%d" % threads, text)

    def stat(self) -> bytes:
        text = _read_host(b"/proc/self/stat")
        close = text.rfind(b")")
        fields = text[close + 2:].split(b" ")
        if len(fields) > 17:
            fields[17] = str(len(self._proc.group.threads) or 1).encode()  # num_threads
        return text[:close + 2] + b" ".join(fields)

    # ---- getdents64 filter --------------------------------------------------------------

    def filter_fd_entries(self, data: bytes) -> bytes:
        """Drop linux_dirent64 records naming km's descriptors."""
        km_base = self._proc.fds.km_base
        out = bytearray()
        offset = 0
        while offset + _DIRENT_HEAD.size <= len(data):
            _ino, _off, reclen, _type = _DIRENT_HEAD.unpack_from(data, offset)
            if reclen == 0:
                break
            name = data[offset + _DIRENT_HEAD.size:offset + reclen].split(b"\0", 1)[0]
            if not (name.isdigit() and int(name) >= km_base):
                out += data[offset:offset + reclen]
            offset += reclen
        return bytes(out)

    # ---- how the host shows km ----------------------------------------------------------

    def rename_km(self, argv: list[bytes]) -> None:
        """Make `ps` show the payload: comm, and the command line the host reports.

        The command line is rewritten in place, in the memory the kernel reads it from
        (arg_start..arg_end of /proc/self/stat), as setproctitle does: PR_SET_MM would
        need CAP_SYS_RESOURCE. It is cut to the room km's own command line leaves.
        """
        name = os.path.basename(argv[0] if argv else b"km")[:15] or b"km"
        host.syscall(NR["prctl"], PR_SET_NAME, host.address_of(name))
        try:
            fields = _read_host(b"/proc/self/stat").rsplit(b")", 1)[1].split()
            arg_start, arg_end = int(fields[45]), int(fields[46])
        except (OSError, IndexError, ValueError):
            return
        room = arg_end - arg_start
        if room <= 1:
            return
        text = b"".join(arg + b"\0" for arg in argv)[:room - 1]
        ctypes.memmove(arg_start, text.ljust(room, b"\0"), room)


def _as_linux_shows(vmas: list[Vma]) -> list[Vma]:
    """Merge VMAs Linux would show as one mapping (km grows memory by adding VMAs
    beside the old ones: see kontain.monitor.mm)."""
    merged: list[Vma] = []
    for vma in vmas:
        if merged and merged[-1].continues(vma):
            merged[-1] = merged[-1].replace(end=vma.end)
        else:
            merged.append(vma)
    return merged


def _read_host(path: bytes) -> bytes:
    with open(path, "rb") as f:
        return f.read()


def _memfd(name: bytes, contents: bytes, flags: int) -> int:
    label = b"proc-" + name  # kept alive (and NUL-terminated) across the call
    fd = host.syscall(NR["memfd_create"], host.address_of(label),
                      MFD_CLOEXEC if flags & O_CLOEXEC else 0)
    if fd < 0:
        raise OSError(-fd, "memfd_create")
    os.write(fd, contents)
    os.lseek(fd, 0, os.SEEK_SET)
    return fd
