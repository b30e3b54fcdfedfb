"""Data transfer on descriptors: read/write and their vectored, positioned relatives,
lseek, sendfile, copy_file_range, splice and tee."""

from __future__ import annotations

import ctypes
import errno
import struct

from kontain.linux import hostcall as host
from kontain.linux.numbers import NUMBERS as NR
from kontain.mm.space import GuestFault
from kontain.syscalls import args

TYPE_CHECKING = False  # no typing import at run time: km start-up is timed
if TYPE_CHECKING:
    from kontain.monitor.thread import GuestThread

IOV_MAX = 1024
_IOVEC = struct.Struct("<QQ")


def transfer_vector(t: GuestThread, iov_va: int, iovcnt: int,
                    write: bool) -> tuple[ctypes.Array, int]:
    """Translate a guest iovec array into a host one.

    Returns (the host iovec array, count of entries used). Buffers are translated in
    order; one that is not accessible ends the vector there (a partial transfer, as
    Linux does when it faults mid-way), unless it is the first, which is EFAULT.
    """
    count = args.s32(iovcnt)
    if not 0 <= count <= IOV_MAX:
        raise OSError(errno.EINVAL, "iovcnt")
    raw = t.mm.read(iov_va, count * 16) if count else b""
    host_iov = (ctypes.c_uint64 * (2 * max(count, 1)))()
    used = 0
    total = 0
    for i in range(count):
        base, length = _IOVEC.unpack_from(raw, i * 16)
        if length > 1 << 63:
            raise OSError(errno.EINVAL, "iov_len")
        total += length
        if total > 1 << 63:
            raise OSError(errno.EINVAL, "iov total")
        if not length:
            continue
        try:
            address, usable = args.buffer_ptr(t, base, length, write)
        except GuestFault:
            if used == 0:
                raise
            break
        host_iov[2 * used] = address
        host_iov[2 * used + 1] = usable
        used += 1
        if usable < length:
            break
    return host_iov, used


def _transfer(t: GuestThread, plain: int, vectored: int, fd: int, buf: int, count: int,
              to_guest: bool, offset: int | None = None) -> int:
    """read/write/pread64/pwrite64 on a guest buffer, in place: the result or -errno (the
    caller looks at EPIPE). A buffer spanning two mappings (not contiguous in km's
    memory) goes to the vectored call (readv/writev/preadv/pwritev) instead, which moves
    the same bytes with the same atomicity."""
    fd = args.fd(t, fd)
    count = min(count, args.MAX_RW_COUNT)
    extra = () if offset is None else (offset,)
    if not count:
        return host.syscall(plain, fd, 0, 0, *extra)
    mm = t.mm
    try:
        return host.syscall(plain, fd, mm.host_base + mm.translate(buf, count, to_guest),
                            count, *extra)
    except GuestFault:
        segments = mm.accessible_prefix(buf, count, to_guest)
        if not segments:
            raise
    vector = (ctypes.c_uint64 * (2 * len(segments)))()
    for i, (pa, n) in enumerate(segments):
        vector[2 * i], vector[2 * i + 1] = mm.host_base + pa, n
    # preadv/pwritev take the offset as (low, high) longs; on x86-64 low holds all of it.
    return host.syscall(vectored, fd, ctypes.addressof(vector), len(segments), *extra, 0)


def sys_read(t: GuestThread, fd: int, buf: int, count: int, *_: int) -> int:
    return host.check(_transfer(t, NR["read"], NR["readv"], fd, buf, count, True))


def sys_write(t: GuestThread, fd: int, buf: int, count: int, *_: int) -> int:
    result = _transfer(t, NR["write"], NR["writev"], fd, buf, count, False)
    if result == -errno.EPIPE:
        t.proc.broken_pipe(t)
    return host.check(result)


def sys_pread64(t: GuestThread, fd: int, buf: int, count: int, offset: int, *_: int) -> int:
    return host.check(_transfer(t, NR["pread64"], NR["preadv"], fd, buf, count, True, offset))


def sys_pwrite64(t: GuestThread, fd: int, buf: int, count: int, offset: int, *_: int) -> int:
    result = _transfer(t, NR["pwrite64"], NR["pwritev"], fd, buf, count, False, offset)
    if result == -errno.EPIPE:
        t.proc.broken_pipe(t)
    return host.check(result)


def _vectored(name: str, write_to_guest: bool):
    number = NR[name]
    sends = not write_to_guest

    def handler(t: GuestThread, fd: int, iov: int, iovcnt: int, a3: int, a4: int,
                a5: int) -> int:
        fd = args.fd(t, fd)
        vector, used = transfer_vector(t, iov, iovcnt, write_to_guest)
        result = host.syscall(number, fd, ctypes.addressof(vector), used, a3, a4, a5)
        if sends and result == -errno.EPIPE:
            t.proc.broken_pipe(t)
        return host.check(result)
    handler.__name__ = f"sys_{name}"
    return handler


def sys_lseek(t: GuestThread, fd: int, offset: int, whence: int, *_: int) -> int:
    return host.call(NR["lseek"], args.fd(t, fd), offset, whence)


def sys_sendfile(t: GuestThread, out_fd: int, in_fd: int, offset: int, count: int,
                 *_: int) -> int:
    result = host.syscall(NR["sendfile"], args.fd(t, out_fd), args.fd(t, in_fd),
                          args.out_ptr(t, offset, 8), count)
    if result == -errno.EPIPE:
        t.proc.broken_pipe(t)
    return host.check(result)


def sys_copy_file_range(t: GuestThread, fd_in: int, off_in: int, fd_out: int, off_out: int,
                        length: int, flags: int) -> int:
    return host.call(NR["copy_file_range"], args.fd(t, fd_in), args.out_ptr(t, off_in, 8),
                     args.fd(t, fd_out), args.out_ptr(t, off_out, 8), length, flags)


def sys_splice(t: GuestThread, fd_in: int, off_in: int, fd_out: int, off_out: int,
               length: int, flags: int) -> int:
    return host.call(NR["splice"], args.fd(t, fd_in), args.out_ptr(t, off_in, 8),
                     args.fd(t, fd_out), args.out_ptr(t, off_out, 8), length, flags)


def sys_tee(t: GuestThread, fd_in: int, fd_out: int, length: int, flags: int, *_: int) -> int:
    return host.call(NR["tee"], args.fd(t, fd_in), args.fd(t, fd_out), length, flags)


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
}
