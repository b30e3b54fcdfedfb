"""Data transfer on descriptors: read/write and their vectored, positioned relatives,
lseek, sendfile, copy_file_range, splice, tee and vmsplice.

Calls that take a guest offset pointer (splice, sendfile, copy_file_range) read it
into km and write it back afterwards, as the kernel does (copy_from_user before,
copy_to_user after): a read-only offset moves the data and then fails with EFAULT, and
a pointer is looked at only when Linux looks at it (a pipe end with an offset is ESPIPE
whatever the pointer).

Guest memory the host keeps using after the call returns (vmsplice puts the pages
themselves in the pipe; AIO, kontain.syscalls.aio, moves data later) is handed to the
host in place, never through a copy in km (`host_vector`): a buffer spanning mappings
becomes several host segments, and memory that is not accessible becomes km's guard,
PROT_NONE address space where the host faults exactly where Linux faults on the
guest's. What Linux refuses on the numbers alone (EINVAL, EFAULT from access_ok) is
decided by the host on the same numbers, through a readv that moves nothing.
"""

from __future__ import annotations

import _thread
import ctypes
import errno
import os
import struct

from kontain.linux import hostcall as host
from kontain.linux.abi import (
    MAP_ANONYMOUS,
    MAP_NORESERVE,
    MAP_PRIVATE,
    O_ACCMODE,
    O_CLOEXEC,
    O_PATH,
    O_RDONLY,
    PROT_NONE,
)
from kontain.linux.hostcall import SyscallError
from kontain.linux.numbers import NUMBERS as NR
from kontain.machine.layout import PAGE_SIZE, USER_END
from kontain.mm.access import SplitBuffer
from kontain.mm.space import GuestFault
from kontain.syscalls import args
from kontain.syscalls.signal import signalfd_read

TYPE_CHECKING = False  # no typing import at run time: km start-up is timed
if TYPE_CHECKING:
    from kontain.mm.access import GuestMemory
    from kontain.monitor.signalfd import SignalFile
    from kontain.monitor.thread import GuestThread

IOV_MAX = 1024
_IOVEC = struct.Struct("<QQ")


def transfer_vector(t: GuestThread, iov_va: int, iovcnt: int,
                    write: bool) -> tuple[int, int, object]:
    """The host's (iovec array, entry count) for a guest iovec array of a call made at
    once (readv, sendmsg...); the third item keeps km's arrays alive until it returns.

    Buffers are guest memory in place (km's copy for one spanning mappings, as in
    args.buffer_ptr). The first that is not all accessible ends the vector, its
    accessible start followed by km's guard (_guarded), so the host moves what Linux
    moves and faults where Linux faults. What Linux refuses before it moves anything (a
    count over IOV_MAX, an unreadable array, a negative length, a range access_ok()
    refuses) the host is given to refuse the same way, after what it checks first (the
    descriptor)."""
    count = args.s32(iovcnt)
    raw = _iovec_array(t, iov_va, count)
    if raw is None:
        return fault_address(), count, None
    if not count:
        return 0, 0, None
    mm = t.mm
    host_iov = (ctypes.c_uint64 * (2 * count))()
    used = 0
    split: list[tuple[int, int, int]] = []  # (entry, va, length): km's copies, made below
    tail: list[int] | None = None  # the vector's end where a buffer is not accessible
    checked = False
    for base, length in _IOVEC.iter_unpack(raw):
        # Every entry's numbers are checked before anything moves (a negative length is
        # past _TOP too), even after the buffer that ends the transfer.
        if base + length > _TOP and not checked:
            if _refused(t, raw, count):
                return host.address_of(raw), count, raw  # refused again, the same way
            checked = True
        if tail is not None or not length:
            continue
        try:
            host_iov[2 * used] = mm.host_base + mm.translate(base, length, write)
        except SplitBuffer:
            if length > args.BOUNCE_LIMIT:
                tail = _guarded(mm, base, min(length, args.MAX_RW_COUNT), write, IOV_MAX - used)
                continue
            split.append((used, base, length))
        except GuestFault:
            tail = _guarded(mm, base, min(length, args.MAX_RW_COUNT), write, IOV_MAX - used)
            continue
        host_iov[2 * used + 1] = length
        used += 1
    for entry, base, length in split:  # (only once the vector is known to be taken)
        host_iov[2 * entry] = t.bounce(base, length, write)
    if tail:
        flat = host_iov[:2 * used] + tail
        host_iov = (ctypes.c_uint64 * len(flat))(*flat)
        used = len(flat) // 2
    if not used:
        return 0, 0, None
    return ctypes.addressof(host_iov), used, host_iov


def _guarded(mm: GuestMemory, va: int, count: int, write: bool, room: int) -> list[int]:
    """Host iovec entries (flat: address, length...) for a guest buffer that is not one
    accessible piece: in place as far as it is accessible (in as many entries as it
    spans, at most room), then km's guard for the rest. The host then moves what Linux
    moves and fails where Linux fails: a short transfer on a file, EFAULT with nothing
    consumed or sent on a pipe or a socket, 0 at end of file whatever the memory."""
    segments = mm.accessible_prefix(va, count, write)
    flat: list[int] = []
    for pa, n in segments[:room]:
        flat += (mm.host_base + pa, n)
    got = sum(n for _pa, n in segments)
    if got < count and len(segments) < room:
        flat += (fault_address(), count - got)
    return flat


def _transfer(t: GuestThread, plain: int, vectored: int, fd: int, buf: int, count: int,
              to_guest: bool, offset: int | None = None) -> int:
    """read/write/pread64/pwrite64 on a guest buffer, in place: the result or -errno (the
    caller looks at EPIPE). A buffer that is not one accessible piece of km's memory
    (spanning mappings, or not all accessible) goes to the vectored call
    (readv/writev/preadv/pwritev), which moves the same bytes with the same atomicity,
    and fails the same way (_guarded)."""
    fd = args.fd(t, fd)
    extra = () if offset is None else (offset,)
    if buf + count > _TOP and _refused_range(t, buf, count):
        # Linux refuses the range itself (access_ok, on the count before it is capped),
        # after it has looked at the descriptor: the host does so on the same numbers,
        # and touches no memory at them.
        return host.syscall(plain, fd, buf, count, *extra)
    count = min(count, args.MAX_RW_COUNT)
    if not count:
        return host.syscall(plain, fd, 0, 0, *extra)
    mm = t.mm
    try:
        return host.syscall(plain, fd, mm.host_base + mm.translate(buf, count, to_guest),
                            count, *extra)
    except GuestFault:
        flat = _guarded(mm, buf, count, to_guest, IOV_MAX)
    vector = (ctypes.c_uint64 * len(flat))(*flat)
    # preadv/pwritev take the offset as (low, high) longs; on x86-64 low holds all of it.
    return host.syscall(vectored, fd, ctypes.addressof(vector), len(flat) // 2, *extra, 0)


_READ, _WRITE, _PREAD64, _PWRITE64 = NR["read"], NR["write"], NR["pread64"], NR["pwrite64"]
_EPIPE, _EBADF = errno.EPIPE, errno.EBADF


def _in_place(t: GuestThread, fd: int, buf: int, count: int, to_guest: bool) -> int:
    """The fast path of read/write/pread64/pwrite64: km's address of the guest buffer
    when the common case holds: fd a guest descriptor that is no signalfd, a count Linux
    takes as is, and a buffer that is one accessible piece of km's memory. 0 otherwise
    (then _transfer decides, with every check). The checks are those of args.fd and
    _transfer, in a few comparisons: fd's low 32 bits as an int (a negative one is
    above km_base too), the range below _TOP (so no access_ok refusal is possible)."""
    proc = t.proc
    if fd >= proc.fds.km_base or fd in proc.signalfds.fds or not 0 < count <= args.MAX_RW_COUNT \
            or buf + count > _TOP:
        return 0
    mm = t.mm
    try:
        return mm.host_base + mm.translate(buf, count, to_guest)
    except GuestFault:
        return 0


def sys_read(t: GuestThread, fd: int, buf: int, count: int, *_: int) -> int:
    fd &= 0xFFFFFFFF
    address = _in_place(t, fd, buf, count, True)
    if address:
        result = host.syscall3(_READ, fd, address, count)
        if result < 0:
            raise SyscallError(-result)
        return result
    if fd in t.proc.signalfds.fds:
        file = t.proc.signalfds.lookup(fd)
        if file is not None:
            return signalfd_read(t, file, fd, count, lambda data: t.mm.write(buf, data))
    return host.check(_transfer(t, _READ, NR["readv"], fd, buf, count, True))


def _not_writable(t: GuestThread, fd: int) -> None:
    """A signalfd has no write: EINVAL (the host's pipe read end would say EBADF)."""
    if fd in t.proc.signalfds.fds and t.proc.signalfds.lookup(fd) is not None:
        raise OSError(errno.EINVAL, "write to a signalfd")


def sys_write(t: GuestThread, fd: int, buf: int, count: int, *_: int) -> int:
    fd &= 0xFFFFFFFF
    address = _in_place(t, fd, buf, count, False)
    if address:
        result = host.syscall3(_WRITE, fd, address, count)
    else:
        _not_writable(t, fd)
        result = _transfer(t, _WRITE, NR["writev"], fd, buf, count, False)
    if result < 0:
        if result == -_EPIPE:
            t.proc.broken_pipe(t)
        raise SyscallError(-result)
    return result


def sys_pread64(t: GuestThread, fd: int, buf: int, count: int, offset: int, *_: int) -> int:
    fd &= 0xFFFFFFFF
    address = _in_place(t, fd, buf, count, True)
    if address:
        result = host.syscall4(_PREAD64, fd, address, count, offset)
        if result < 0:
            raise SyscallError(-result)
        return result
    return host.check(_transfer(t, _PREAD64, NR["preadv"], fd, buf, count, True, offset))


def sys_pwrite64(t: GuestThread, fd: int, buf: int, count: int, offset: int, *_: int) -> int:
    fd &= 0xFFFFFFFF
    address = _in_place(t, fd, buf, count, False)
    if address:
        result = host.syscall4(_PWRITE64, fd, address, count, offset)
    else:
        result = _transfer(t, _PWRITE64, NR["pwritev"], fd, buf, count, False, offset)
    if result < 0:
        if result == -_EPIPE:
            t.proc.broken_pipe(t)
        raise SyscallError(-result)
    return result


def _vectored(name: str, write_to_guest: bool):
    number = NR[name]
    sends = not write_to_guest

    def handler(t: GuestThread, fd: int, iov: int, iovcnt: int, a3: int, a4: int,
                a5: int) -> int:
        fd = args.fd(t, fd)
        if fd in t.proc.signalfds.fds and name in ("readv", "writev"):
            file = t.proc.signalfds.lookup(fd)
            if file is not None:
                if sends:
                    raise OSError(errno.EINVAL, "writev to a signalfd")
                return _signalfd_readv(t, file, fd, iov, iovcnt)
        pointer, used, keep = transfer_vector(t, iov, iovcnt, write_to_guest)
        result = host.syscall(number, fd, pointer, used, a3, a4, a5)
        del keep  # (km's arrays live until the host is done with them)
        if sends and result == -errno.EPIPE:
            t.proc.broken_pipe(t)
        return host.check(result)
    handler.__name__ = f"sys_{name}"
    return handler


def _signalfd_readv(t: GuestThread, file: SignalFile, fd: int, iov: int, iovcnt: int) -> int:
    """readv of a signalfd: the records spread over the buffers in order."""
    count = args.s32(iovcnt)
    if not 0 <= count <= IOV_MAX:
        raise OSError(errno.EINVAL, "iovcnt")
    vector = list(_IOVEC.iter_unpack(t.mm.read(iov, count * 16))) if count else []
    if any(length >> 63 for _base, length in vector):
        raise OSError(errno.EINVAL, "iov_len")

    def scatter(data: bytes) -> None:
        for base, length in vector:
            if not data:
                break
            t.mm.write(base, data[:length])
            data = data[length:]
    return signalfd_read(t, file, fd, sum(length for _base, length in vector), scatter)


def sys_lseek(t: GuestThread, fd: int, offset: int, whence: int, *_: int) -> int:
    if fd in t.proc.signalfds.fds and t.proc.signalfds.lookup(fd) is not None:
        return 0  # a signalfd has no position (Linux's noop_llseek), a pipe refuses
    return host.call(NR["lseek"], args.fd(t, fd), offset, whence)


# ---- offsets read before the call and written back after it --------------------------

def _offset_in(t: GuestThread, va: int) -> tuple[int, ctypes.Array | None]:
    """(what the host gets, km's copy) for a guest loff_t pointer: NULL stays NULL; an
    unreadable one becomes km's guard, so the host fails with EFAULT where Linux reads
    it (after the checks Linux makes first)."""
    if not va:
        return 0, None
    try:
        box = ctypes.create_string_buffer(t.mm.read(va, 8), 8)
    except GuestFault:
        return fault_address(), None
    return ctypes.addressof(box), box


def _offset_out(t: GuestThread, va: int, box: ctypes.Array | None) -> bool:
    """Write an offset back (Linux's copy_to_user): False if the guest's is not writable."""
    if box is None:
        return True
    try:
        t.mm.write(va, box.raw)
    except GuestFault:
        return False
    return True


def sys_sendfile(t: GuestThread, out_fd: int, in_fd: int, offset: int, count: int,
                 *_: int) -> int:
    # Linux reads *offset before looking at the descriptors and writes it back whatever
    # the transfer did (EFAULT then, even after an error).
    if offset:
        pointer, box = _offset_in(t, offset)
        if box is None:
            raise GuestFault(offset)
    else:
        pointer, box = 0, None
    try:
        result = host.syscall(NR["sendfile"], args.fd(t, out_fd), args.fd(t, in_fd), pointer,
                              count)
    except OSError as e:
        result = -(e.errno or errno.EBADF)
    if result == -errno.EPIPE:
        t.proc.broken_pipe(t)
    if not _offset_out(t, offset, box):
        raise GuestFault(offset)
    return host.check(result)


def sys_copy_file_range(t: GuestThread, fd_in: int, off_in: int, fd_out: int, off_out: int,
                        length: int, flags: int) -> int:
    fd_in, fd_out = args.fd(t, fd_in), args.fd(t, fd_out)
    in_pointer, in_box = _offset_in(t, off_in)
    out_pointer, out_box = _offset_in(t, off_out)
    result = host.call(NR["copy_file_range"], fd_in, in_pointer, fd_out, out_pointer, length,
                       flags)
    # Written back only when something was copied, both tried, as Linux.
    if result > 0 and not (_offset_out(t, off_in, in_box) & _offset_out(t, off_out, out_box)):
        raise GuestFault(off_in or off_out)
    return result


# ---- splice, tee, vmsplice ---------------------------------------------------------------

SPLICE_F_ALL = 0xF  # MOVE | NONBLOCK | MORE | GIFT


def sys_splice(t: GuestThread, fd_in: int, off_in: int, fd_out: int, off_out: int,
               length: int, flags: int) -> int:
    # Linux's order: a zero length succeeds before anything is looked at, then flags,
    # then the descriptors; the offsets only when both ends are known.
    if not length:
        return 0
    if flags & 0xFFFFFFFF & ~SPLICE_F_ALL:
        raise OSError(errno.EINVAL, "splice flags")
    fd_in, fd_out = args.fd(t, fd_in), args.fd(t, fd_out)
    in_pointer, in_box = _offset_in(t, off_in)
    out_pointer, out_box = _offset_in(t, off_out)
    result = host.syscall(NR["splice"], fd_in, in_pointer, fd_out, out_pointer, length,
                          flags & 0xFFFFFFFF)
    if result == -errno.EPIPE:
        t.proc.broken_pipe(t)
    host.check(result)
    if not _offset_out(t, off_out, out_box):
        raise GuestFault(off_out)
    if not _offset_out(t, off_in, in_box):
        raise GuestFault(off_in)
    return result


def sys_tee(t: GuestThread, fd_in: int, fd_out: int, length: int, flags: int, *_: int) -> int:
    # tee checks its flags before the length (splice the other way round).
    if flags & 0xFFFFFFFF & ~SPLICE_F_ALL:
        raise OSError(errno.EINVAL, "tee flags")
    if not length:
        return 0
    result = host.syscall(NR["tee"], args.fd(t, fd_in), args.fd(t, fd_out), length,
                          flags & 0xFFFFFFFF)
    if result == -errno.EPIPE:
        t.proc.broken_pipe(t)
    return host.check(result)


def sys_vmsplice(t: GuestThread, fd: int, iov: int, nr_segs: int, flags: int, *_: int) -> int:
    """vmsplice: the pipe gets references to the guest's pages themselves (never to a
    copy in km, which the pipe would go on showing once km reused it). Gifted pages
    (SPLICE_F_GIFT) are safe to hand over: the kernel steals a page only when nothing
    else maps it, that is after km itself has let it go (munmap replaces km's host
    pages), so km's view of guest memory never changes under it."""
    flags &= 0xFFFFFFFF
    if flags & ~SPLICE_F_ALL:
        raise OSError(errno.EINVAL, "vmsplice flags")
    fd = args.fd(t, fd)
    mode = host.syscall(NR["fcntl"], fd, 3)  # F_GETFL
    if mode < 0:
        raise OSError(-mode, "vmsplice fd")
    # The write end (or O_RDWR) reads guest memory; the read end writes it. O_PATH:
    # the host says EBADF before it looks at the vector.
    to_guest = mode & O_ACCMODE == O_RDONLY and not mode & O_PATH
    # The kernel takes nr_segs as an unsigned int.
    pointer, count, keep = host_vector(t, iov, nr_segs & 0xFFFFFFFF, to_guest)
    result = host.syscall(NR["vmsplice"], fd, pointer, count, flags)
    del keep  # km's copy of the vector lives until here (the pipe holds guest pages)
    if result == -errno.EPIPE:
        t.proc.broken_pipe(t)
    return host.check(result)


# ---- guest memory the host keeps: the guard and the vector ---------------------------------

#: km's guard: PROT_NONE address space, as big as one transfer can be, so that every
#: byte of a segment standing for inaccessible guest memory faults.
GUARD_SIZE = args.MAX_RW_COUNT + PAGE_SIZE
#: Buffers ending above this are checked by the host (access_ok's limit is at the top).
_TOP = USER_END - PAGE_SIZE
_guard = 0
_probe = -1
_init_lock = _thread.allocate_lock()


def fault_address() -> int:
    """A km address where every access faults for GUARD_SIZE bytes: given to the host in
    place of guest memory that is not accessible, so the host call fails with EFAULT (or
    stops short) exactly where the same call would natively."""
    global _guard
    if not _guard:
        with _init_lock:
            if not _guard:
                flags = MAP_PRIVATE | MAP_ANONYMOUS | MAP_NORESERVE
                address = host.syscall(NR["mmap"], 0, GUARD_SIZE, PROT_NONE, flags, -1, 0)
                if address < 0:  # no room for it: one page (the kernel stops at a fault)
                    address = host.call(NR["mmap"], 0, PAGE_SIZE, PROT_NONE, flags, -1, 0)
                _guard = address
    return _guard


def _probe_fd(t: GuestThread) -> int:
    """The read end of a pipe nobody writes to: reading it checks the arguments, as
    every read does, and then reads nothing (end of file)."""
    global _probe
    if _probe < 0:
        with _init_lock:
            if _probe < 0:
                read_end, write_end = os.pipe2(O_CLOEXEC)
                os.close(write_end)
                _probe = t.proc.fds.move_high(read_end)
    return _probe


def _refused(t: GuestThread, raw: bytes, count: int) -> int:
    """What the kernel's import_iovec says of these (guest) numbers: 0 if it takes them,
    else -EINVAL or -EFAULT. Asked of the host with a readv of the probe pipe: it checks
    the vector exactly as vmsplice and AIO do, then reads nothing."""
    result = host.syscall(NR["readv"], _probe_fd(t), host.address_of(raw), count)
    return min(result, 0)


def _refused_range(t: GuestThread, buf: int, count: int) -> bool:
    """Whether read/write refuse a buffer on its numbers alone (access_ok: EFAULT),
    asked of the host with a read of the probe pipe, which touches no memory."""
    return host.syscall(NR["read"], _probe_fd(t), buf, count) == -errno.EFAULT


def host_vector(t: GuestThread, iov_va: int, count: int,
                write: bool) -> tuple[int, int, object]:
    """The host's (address, count) for a guest iovec array of count entries, for a call
    that checks it as import_iovec does and may use the memory after it returns; the
    third item keeps km's arrays alive (hold it until the host is done with them).

    write: the host writes guest memory. Buffers are guest memory in place. A vector the
    kernel would refuse (too long, unreadable, a negative length, beyond access_ok) is
    passed on so that the host refuses it at the same point of the call."""
    raw = _iovec_array(t, iov_va, count)
    if raw is None:
        return fault_address(), count, None
    if not count:
        return 0, 0, None
    return translate_vector(t, raw, count, write)


def _iovec_array(t: GuestThread, iov_va: int, count: int) -> bytes | None:
    """The guest's iovec array; None when the host must refuse it instead, given km's
    guard for it: EINVAL for a count Linux refuses before reading the array, EFAULT
    for an array it cannot read."""
    if not 0 <= count <= IOV_MAX:
        return None
    try:
        return t.mm.read(iov_va, count * 16) if count else b""
    except GuestFault:
        return None


def translate_vector(t: GuestThread, raw: bytes, count: int,
                     write: bool) -> tuple[int, int, object]:
    """host_vector for an array already read from the guest (raw: count iovecs)."""
    mm = t.mm
    base = mm.host_base
    flat: list[int] = []
    total = 0
    checked = False
    for va, length in _IOVEC.iter_unpack(raw):
        wanted = min(length, args.MAX_RW_COUNT - total)  # Linux truncates the vector here
        segments = mm.accessible_prefix(va, wanted, write) if wanted > 0 else []
        got = sum(n for _pa, n in segments)
        if not checked and (got < wanted or va + length > _TOP or length >> 63):
            # Not all guest memory: let the host's import_iovec judge the numbers first.
            refused = _refused(t, raw, count)
            if refused:
                return host.address_of(raw), count, raw  # refused again, the same way
            checked = True
        for pa, n in segments:
            flat += (base + pa, n)
        if got < wanted:  # the transfer faults here, as on the guest's memory
            flat += (fault_address(), wanted - got)
            break
        total += wanted
        if len(flat) >= 2 * IOV_MAX:
            break
    flat = flat[:2 * IOV_MAX]
    if not flat:
        return 0, 0, None
    vector = (ctypes.c_uint64 * len(flat))(*flat)
    return ctypes.addressof(vector), len(flat) // 2, vector


HANDLERS = {
    "read": sys_read,
    "write": sys_write,
    "pread64": sys_pread64,
    "pwrite64": sys_pwrite64,
    "readv": _vectored("readv", True),
    "writev": _vectored("writev", False),
    "preadv": _vectored("preadv", True),
    "pwritev": _vectored("pwritev", False),
    "preadv2": _vectored("preadv2", True),
    "pwritev2": _vectored("pwritev2", False),
    "lseek": sys_lseek,
    "sendfile": sys_sendfile,
    "copy_file_range": sys_copy_file_range,
    "splice": sys_splice,
    "tee": sys_tee,
    "vmsplice": sys_vmsplice,
}
