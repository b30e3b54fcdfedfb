"""Sockets: creation, addresses, connections, data transfer (including msghdr with iovecs
and control messages), options and shutdown.

A struct msghdr holds guest pointers (name, iovec array, control buffer); km builds a
host msghdr whose pointers are km's addresses of the same guest bytes. Control messages
are checked before they leave: SCM_RIGHTS may only carry the guest's own descriptors.
"""

from __future__ import annotations

import ctypes
import errno
import struct

from kontain.linux import hostcall as host
from kontain.linux.hostcall import SyscallError
from kontain.linux.numbers import NUMBERS as NR
from kontain.syscalls import args
from kontain.syscalls.io import transfer_vector

TYPE_CHECKING = False  # no typing import at run time: km start-up is timed
if TYPE_CHECKING:
    from kontain.monitor.thread import GuestThread

SOCKADDR_MAX = 128  # sizeof(struct sockaddr_storage)
OPTVAL_MAX = 1 << 16
SOL_SOCKET, SCM_RIGHTS = 1, 1
MSG_NOSIGNAL = 0x4000
SO_ATTACH_FILTER, SO_ATTACH_REUSEPORT_CBPF = 26, 51
_U32 = struct.Struct("<I")
_MSGHDR = struct.Struct("<QI4xQQQQi4x")  # name, namelen, iov, iovlen, control, controllen, flags
_CMSGHDR = struct.Struct("<Qii")  # cmsg_len, cmsg_level, cmsg_type
_SOCK_FPROG = struct.Struct("<H6xQ")  # len, filter pointer


class HostMsghdr(ctypes.Structure):
    _fields_ = [("name", ctypes.c_uint64), ("namelen", ctypes.c_uint32),
                ("pad", ctypes.c_uint32), ("iov", ctypes.c_uint64),
                ("iovlen", ctypes.c_uint64), ("control", ctypes.c_uint64),
                ("controllen", ctypes.c_uint64), ("flags", ctypes.c_int32),
                ("pad2", ctypes.c_uint32)]


class HostMmsghdr(ctypes.Structure):
    _fields_ = [("hdr", HostMsghdr), ("len", ctypes.c_uint32), ("pad", ctypes.c_uint32)]


def _adopt(t: GuestThread, result: int) -> int:
    return t.proc.fds.adopt(result)


AF_UNIX = 1
UNIX_PATH_MAX = 108


def _addr_in(t: GuestThread, addr: int, addrlen: int, keep: list,
             creating: bool = False) -> tuple[int, int]:
    """(pointer, length) of a socket address the host will read.

    A unix socket's path is a path like any other (kontain.monitor.root): under
    km --root it is resolved inside the root, and the rewritten address lives in `keep`
    until the call is made. Abstract names (a leading NUL) are not paths; km's jail
    scopes them to the payload (kontain.monitor.jail)."""
    addrlen = args.s32(addrlen)
    if not 0 <= addrlen <= SOCKADDR_MAX:
        raise OSError(errno.EINVAL, "addrlen")
    if addrlen > 2 and t.proc.root.confined:
        raw = t.mm.read(addr, addrlen)
        if int.from_bytes(raw[:2], "little") == AF_UNIX and raw[2:3] not in (b"", b"\0"):
            path = raw[2:].split(b"\0", 1)[0]
            host_path = t.proc.root.unix_address(path, creating)
            if len(host_path) >= UNIX_PATH_MAX:
                raise OSError(errno.ENAMETOOLONG, "unix socket path")
            rewritten = ctypes.create_string_buffer(raw[:2] + host_path + b"\0", 2 + UNIX_PATH_MAX)
            keep.append(rewritten)
            return ctypes.addressof(rewritten), 2 + len(host_path) + 1
    return args.in_ptr(t, addr, addrlen) if addrlen else 0, addrlen


def _addr_out(t: GuestThread, addr: int, addrlen_ptr: int) -> tuple[int, int]:
    """(address buffer, addrlen pointer) for calls that return an address."""
    if not addr:
        return 0, 0
    if not addrlen_ptr:
        raise OSError(errno.EFAULT, "addrlen")
    length = args.s32(_U32.unpack(t.mm.read(addrlen_ptr, 4))[0])
    if length < 0:
        raise OSError(errno.EINVAL, "addrlen")
    buffer = args.out_ptr(t, addr, length) if length else 0
    return buffer, args.out_ptr(t, addrlen_ptr, 4)


def sys_socket(t: GuestThread, domain: int, type_: int, protocol: int, *_: int) -> int:
    return _adopt(t, host.call(NR["socket"], domain, type_, protocol))


def sys_socketpair(t: GuestThread, domain: int, type_: int, protocol: int, sv: int,
                   *_: int) -> int:
    pointer = args.out_ptr(t, sv, 8)
    if not pointer:
        raise SyscallError(errno.EFAULT)
    result = host.call(NR["socketpair"], domain, type_, protocol, pointer)
    if result == 0:
        a, b = struct.unpack("<ii", t.mm.read(sv, 8))
        if max(a, b) >= t.proc.fds.usable:
            host.syscall(NR["close"], a)
            host.syscall(NR["close"], b)
            raise SyscallError(errno.EMFILE)
    return result


def sys_bind(t: GuestThread, fd: int, addr: int, addrlen: int, *_: int) -> int:
    fd = args.fd(t, fd)
    keep: list = []
    pointer, length = _addr_in(t, addr, addrlen, keep, creating=True)
    return host.call(NR["bind"], fd, pointer, length)


def sys_connect(t: GuestThread, fd: int, addr: int, addrlen: int, *_: int) -> int:
    fd = args.fd(t, fd)
    keep: list = []
    pointer, length = _addr_in(t, addr, addrlen, keep)
    return host.call(NR["connect"], fd, pointer, length)


def sys_listen(t: GuestThread, fd: int, backlog: int, *_: int) -> int:
    return host.call(NR["listen"], args.fd(t, fd), backlog)


def sys_accept4(t: GuestThread, fd: int, addr: int, addrlen: int, flags: int, *_: int) -> int:
    fd = args.fd(t, fd)
    buffer, length_ptr = _addr_out(t, addr, addrlen)
    return _adopt(t, host.call(NR["accept4"], fd, buffer, length_ptr, flags))


def sys_accept(t: GuestThread, fd: int, addr: int, addrlen: int, *_: int) -> int:
    return sys_accept4(t, fd, addr, addrlen, 0)


def _name_call(name: str):
    number = NR[name]

    def handler(t: GuestThread, fd: int, addr: int, addrlen: int, *_: int) -> int:
        fd = args.fd(t, fd)
        buffer, length_ptr = _addr_out(t, addr, addrlen)
        if not buffer:
            raise SyscallError(errno.EFAULT)
        return host.call(number, fd, buffer, length_ptr)
    handler.__name__ = f"sys_{name}"
    return handler


def sys_sendto(t: GuestThread, fd: int, buf: int, length: int, flags: int, dest: int,
               addrlen: int) -> int:
    fd = args.fd(t, fd)
    length = min(length, args.MAX_RW_COUNT)
    pointer, length = args.buffer_ptr(t, buf, length, False) if length else (0, 0)
    keep: list = []
    dest_ptr, dest_len = _addr_in(t, dest, addrlen, keep) if dest else (0, 0)
    result = host.syscall(NR["sendto"], fd, pointer, length, flags, dest_ptr, dest_len)
    if result == -errno.EPIPE and not flags & MSG_NOSIGNAL:
        t.proc.broken_pipe(t)
    return host.check(result)


def sys_recvfrom(t: GuestThread, fd: int, buf: int, length: int, flags: int, src: int,
                 addrlen: int) -> int:
    fd = args.fd(t, fd)
    length = min(length, args.MAX_RW_COUNT)
    pointer, length = args.buffer_ptr(t, buf, length, True) if length else (0, 0)
    src_ptr, len_ptr = _addr_out(t, src, addrlen) if src else (0, 0)
    return host.call(NR["recvfrom"], fd, pointer, length, flags, src_ptr, len_ptr)


def sys_setsockopt(t: GuestThread, fd: int, level: int, optname: int, optval: int,
                   optlen: int, *_: int) -> int:
    fd = args.fd(t, fd)
    level, optname, optlen = args.s32(level), args.s32(optname), args.s32(optlen)
    if not 0 <= optlen <= OPTVAL_MAX:
        raise SyscallError(errno.EINVAL)
    if level == SOL_SOCKET and optname in (SO_ATTACH_FILTER, SO_ATTACH_REUSEPORT_CBPF):
        # struct sock_fprog points at the filter program: translate that pointer too.
        if optlen < _SOCK_FPROG.size:
            raise SyscallError(errno.EINVAL)
        count, program = _SOCK_FPROG.unpack(t.mm.read(optval, _SOCK_FPROG.size))
        program_ptr = args.in_ptr(t, program, 8 * count)
        fprog = ctypes.create_string_buffer(_SOCK_FPROG.pack(count, program_ptr))
        return host.call(NR["setsockopt"], fd, level, optname, ctypes.addressof(fprog),
                         _SOCK_FPROG.size)
    return host.call(NR["setsockopt"], fd, level, optname,
                     args.in_ptr(t, optval, optlen) if optlen else 0, optlen)


def sys_getsockopt(t: GuestThread, fd: int, level: int, optname: int, optval: int,
                   optlen: int, *_: int) -> int:
    fd = args.fd(t, fd)
    if not optlen:
        raise SyscallError(errno.EFAULT)
    length = args.s32(_U32.unpack(t.mm.read(optlen, 4))[0])
    if length < 0:
        raise SyscallError(errno.EINVAL)
    length = min(length, OPTVAL_MAX)
    return host.call(NR["getsockopt"], fd, args.s32(level), args.s32(optname),
                     args.out_ptr(t, optval, length) if length else 0,
                     args.out_ptr(t, optlen, 4))


def sys_shutdown(t: GuestThread, fd: int, how: int, *_: int) -> int:
    return host.call(NR["shutdown"], args.fd(t, fd), how)


# ---- sendmsg / recvmsg ---------------------------------------------------------------------

def _check_rights(t: GuestThread, control: bytes) -> None:
    """Refuse SCM_RIGHTS messages naming descriptors outside the guest's range."""
    offset = 0
    km_base = t.proc.fds.km_base
    while offset + _CMSGHDR.size <= len(control):
        length, level, kind = _CMSGHDR.unpack_from(control, offset)
        if length < _CMSGHDR.size or offset + length > len(control):
            break
        if level == SOL_SOCKET and kind == SCM_RIGHTS:
            count = (length - _CMSGHDR.size) // 4
            for fd in struct.unpack_from(f"<{count}i", control, offset + _CMSGHDR.size):
                if not 0 <= fd < km_base:
                    raise OSError(errno.EBADF, "SCM_RIGHTS descriptor")
        offset += (length + 7) & ~7


def _host_msghdr(t: GuestThread, va: int, receiving: bool, keep: list) -> HostMsghdr:
    """Translate the guest msghdr at va; arrays that must outlive the call go in keep."""
    name, namelen, iov, iovlen, control, controllen, _flags = _MSGHDR.unpack(
        t.mm.read(va, _MSGHDR.size))
    host_hdr = HostMsghdr()
    if name and namelen:
        if receiving:
            namelen = min(namelen, SOCKADDR_MAX)
            host_hdr.name = args.out_ptr(t, name, namelen)
        else:  # a destination: confined like sendto's (a unix path inside the root)
            host_hdr.name, namelen = _addr_in(t, name, namelen, keep)
        host_hdr.namelen = namelen
    if iovlen > 1024:
        raise OSError(errno.EMSGSIZE, "msg_iovlen")
    vector, used = transfer_vector(t, iov, iovlen, receiving)
    keep.append(vector)
    host_hdr.iov = ctypes.addressof(vector)
    host_hdr.iovlen = used
    if control and controllen:
        controllen = min(controllen, 1 << 20)
        if not receiving:
            _check_rights(t, t.mm.read(control, controllen))
        host_hdr.control = (args.out_ptr if receiving else args.in_ptr)(t, control, controllen)
        host_hdr.controllen = controllen
    return host_hdr


def _write_back(t: GuestThread, va: int, host_hdr: HostMsghdr) -> None:
    """After recvmsg: the lengths and flags the kernel updated."""
    t.mm.write(va + 8, _U32.pack(host_hdr.namelen))
    t.mm.write(va + 40, struct.pack("<Q", host_hdr.controllen))
    t.mm.write(va + 48, struct.pack("<i", host_hdr.flags))


def sys_sendmsg(t: GuestThread, fd: int, msg: int, flags: int, *_: int) -> int:
    fd = args.fd(t, fd)
    keep: list = []
    host_hdr = _host_msghdr(t, msg, False, keep)
    result = host.syscall(NR["sendmsg"], fd, ctypes.addressof(host_hdr), flags)
    if result == -errno.EPIPE and not flags & MSG_NOSIGNAL:
        t.proc.broken_pipe(t)
    return host.check(result)


def sys_recvmsg(t: GuestThread, fd: int, msg: int, flags: int, *_: int) -> int:
    fd = args.fd(t, fd)
    keep: list = []
    host_hdr = _host_msghdr(t, msg, True, keep)
    result = host.call(NR["recvmsg"], fd, ctypes.addressof(host_hdr), flags)
    _write_back(t, msg, host_hdr)
    return result


MMSGHDR_SIZE = 64
UIO_MAXIOV = 1024


def _mmsg(t: GuestThread, msgvec: int, vlen: int, receiving: bool,
          keep: list) -> ctypes.Array:
    vlen = min(vlen & 0xFFFFFFFF, UIO_MAXIOV)
    array = (HostMmsghdr * max(vlen, 1))()
    for i in range(vlen):
        array[i].hdr = _host_msghdr(t, msgvec + i * MMSGHDR_SIZE, receiving, keep)
    return array


def sys_sendmmsg(t: GuestThread, fd: int, msgvec: int, vlen: int, flags: int, *_: int) -> int:
    fd = args.fd(t, fd)
    keep: list = []
    array = _mmsg(t, msgvec, vlen, False, keep)
    result = host.call(NR["sendmmsg"], fd, ctypes.addressof(array),
                       min(vlen & 0xFFFFFFFF, UIO_MAXIOV), flags)
    for i in range(max(result, 0)):
        t.mm.write(msgvec + i * MMSGHDR_SIZE + 56, _U32.pack(array[i].len))
    return result


def sys_recvmmsg(t: GuestThread, fd: int, msgvec: int, vlen: int, flags: int, timeout: int,
                 *_: int) -> int:
    fd = args.fd(t, fd)
    keep: list = []
    array = _mmsg(t, msgvec, vlen, True, keep)
    result = host.call(NR["recvmmsg"], fd, ctypes.addressof(array),
                       min(vlen & 0xFFFFFFFF, UIO_MAXIOV), flags,
                       args.out_ptr(t, timeout, 16))
    for i in range(max(result, 0)):
        base = msgvec + i * MMSGHDR_SIZE
        _write_back(t, base, array[i].hdr)
        t.mm.write(base + 56, _U32.pack(array[i].len))
    return result


HANDLERS = {
    "socket": sys_socket, "socketpair": sys_socketpair, "bind": sys_bind,
    "connect": sys_connect, "listen": sys_listen, "accept": sys_accept,
    "accept4": sys_accept4, "getsockname": _name_call("getsockname"),
    "getpeername": _name_call("getpeername"), "sendto": sys_sendto,
    "recvfrom": sys_recvfrom, "setsockopt": sys_setsockopt, "getsockopt": sys_getsockopt,
    "shutdown": sys_shutdown, "sendmsg": sys_sendmsg, "recvmsg": sys_recvmsg,
    "sendmmsg": sys_sendmmsg, "recvmmsg": sys_recvmmsg,
}
