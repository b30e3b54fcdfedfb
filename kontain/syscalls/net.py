"""Sockets: creation, addresses, connections, data transfer (including msghdr with iovecs
and control messages), options and shutdown.

A struct msghdr holds guest pointers (name, iovec array, control buffer); km builds a
host msghdr whose pointers are km's addresses of the same guest bytes. Control messages
are checked before they leave: SCM_RIGHTS may only carry the guest's own descriptors.
"""

from __future__ import annotations

import ctypes
import errno
import os
import struct

from kontain.linux import hostcall as host
from kontain.linux.abi import (
    MAP_ANONYMOUS,
    MAP_NORESERVE,
    MAP_PRIVATE,
    PROT_NONE,
    PROT_READ,
    PROT_WRITE,
)
from kontain.linux.hostcall import SyscallError
from kontain.linux.numbers import NUMBERS as NR
from kontain.mm.access import GuestFault, SplitBuffer
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
SO_DOMAIN = 39


# ---- Linux's order of errors -------------------------------------------------------------
#
# Linux looks a call's descriptor up (EBADF, ENOTSOCK), then reads and checks the other
# arguments, each call in its own order (connect reads the address before it asks
# whether the file is a socket; sendto checks its buffer with access_ok() before
# anything). Rather than model every order, km hands the host arguments that fail the
# way the guest's fail, and the host answers in Linux's order because it is Linux: a
# descriptor the guest may not use becomes -1 (never open), a bad guest pointer a km
# address that is just as bad. Only what km itself refuses is checked by km, after the
# socket (_refuse).

#: x86-64's TASK_SIZE_MAX: a range reaching past it fails access_ok() up front.
TASK_SIZE_MAX = (1 << 47) - 4096
#: An address access_ok() refuses, on the host as in the guest.
KERNEL_HALF = 0xFFFF_8000_0000_0000
GUARD_SIZE = 1 << 20
_guard = 0


def bad_pointer(va: int, size: int = 0) -> int:
    """A km address the host fails on as Linux fails on the guest's bad pointer va.

    A range access_ok() refuses (past TASK_SIZE_MAX) stays refused; any other lands in
    a PROT_NONE reservation of km's (user half, never accessible): EFAULT at the first
    byte the host touches, after whatever it checks first."""
    if va >= TASK_SIZE_MAX or va + max(size, 0) > TASK_SIZE_MAX:
        return KERNEL_HALF
    global _guard
    if not _guard:  # (two threads racing here each reserve one: harmless)
        _guard = host.call(NR["mmap"], 0, GUARD_SIZE, PROT_NONE,
                           MAP_PRIVATE | MAP_ANONYMOUS | MAP_NORESERVE, -1, 0)
    return _guard


def host_pointer(t: GuestThread, va: int, size: int, write: bool) -> int:
    """km's address of a guest buffer of size bytes the host reads (or writes); NULL
    stays NULL (calls give it a meaning), a bad pointer becomes bad_pointer()."""
    if not va:
        return 0
    if size <= 0:  # the host touches nothing: nothing to translate
        return bad_pointer(va, 0)
    try:
        return args.out_ptr(t, va, size) if write else args.in_ptr(t, va, size)
    except GuestFault:
        return bad_pointer(va, size)


PAGE_SIZE = 4096
#: The most of a partly mapped buffer km copies for the host (socket options: Linux
#: reads at most net.core.optmem_max bytes of one, 128 KiB by default).
SHADOW_MAX = 1 << 20


class _Shadow:
    """The accessible start of a guest buffer, copied into km's memory just before
    pages that are not accessible: the host reads (and writes) it as Linux does the
    guest's, faulting exactly where the guest's mapping ends. For buffers that are not
    all mapped (Linux only touches the bytes a call needs): km cannot know how many
    that is, the host finds out."""

    __slots__ = ("va", "pointer", "size", "base", "length")

    def __init__(self, t: GuestThread, va: int, size: int, write: bool) -> None:
        self.va, self.base, self.length = va, 0, 0
        segments = t.mm.accessible_prefix(va, min(size, SHADOW_MAX), write) if va else []
        self.size = sum(n for _pa, n in segments)
        if not self.size:  # (NULL too: the host would fault on it as well)
            self.pointer = bad_pointer(va, size)
            return
        pages = -(-self.size // PAGE_SIZE) * PAGE_SIZE
        self.length = pages + GUARD_SIZE
        self.base = host.call(NR["mmap"], 0, self.length, PROT_NONE,
                              MAP_PRIVATE | MAP_ANONYMOUS | MAP_NORESERVE, -1, 0)
        try:
            host.call(NR["mprotect"], self.base, pages, PROT_READ | PROT_WRITE)
            self.pointer = self.base + pages - self.size
            ctypes.memmove(self.pointer, t.mm.read(va, self.size), self.size)
        except BaseException:
            self.close()
            raise

    def limit(self, length: int) -> int:
        """length, cut where the host could reach past the pages behind the copy: some
        options are read or written at an offset, not from their first byte."""
        return min(length, self.size + GUARD_SIZE)

    def copy_back(self, t: GuestThread, count: int) -> None:
        """The first count bytes the host wrote go to the guest."""
        count = min(max(count, 0), self.size)
        if count:
            t.mm.write(self.va, ctypes.string_at(self.pointer, count))

    def close(self) -> None:
        if self.base:
            host.syscall(NR["munmap"], self.base, self.length)
            self.base = 0


def host_fd(t: GuestThread, value: int) -> int:
    """A guest descriptor for the host: km's own descriptors are not open for the guest,
    so they become -1, which the host finds not open either (EBADF in its order)."""
    number = args.s32(value)
    return number if number < t.proc.fds.km_base else -1


def socket_domain(fd: int) -> int:
    """The address family of socket fd: EBADF if it is not open, ENOTSOCK if it is no
    socket (how Linux's socket calls look their descriptor up)."""
    domain = ctypes.c_int(0)
    length = ctypes.c_uint32(4)
    host.call(NR["getsockopt"], fd, SOL_SOCKET, SO_DOMAIN, ctypes.addressof(domain),
              ctypes.addressof(length))
    return domain.value


def _refuse(fd: int, error: OSError) -> OSError:
    """An error km found in an argument, returned after the descriptor's own (EBADF,
    ENOTSOCK), which Linux finds first."""
    socket_domain(fd)
    return error


def _addr_in(t: GuestThread, fd: int, addr: int, addrlen: int, keep: list,
             creating: bool = False) -> tuple[int, int]:
    """(pointer, length) of a socket address the host will read.

    A unix socket's path is a path like any other (kontain.monitor.root): under
    km --root it is resolved inside the root, and the rewritten address lives in `keep`
    until the call is made. Abstract names (a leading NUL) are not paths; km's jail
    scopes them to the payload (kontain.monitor.jail). A length Linux refuses, or an
    address it cannot read, goes to the host as it is: the host says EINVAL or EFAULT
    where Linux does."""
    addrlen = args.s32(addrlen)
    if not 0 < addrlen <= SOCKADDR_MAX:
        return (bad_pointer(addr, 0) if addr else 0), addrlen
    if addrlen > 2 and t.proc.root.confined:
        try:
            raw = t.mm.read(addr, addrlen)
        except GuestFault:
            return bad_pointer(addr, addrlen), addrlen
        # Only a unix socket ever looks a path up (another family refuses the address).
        if int.from_bytes(raw[:2], "little") == AF_UNIX and raw[2:3] not in (b"", b"\0") \
                and socket_domain(fd) == AF_UNIX:
            path = raw[2:].split(b"\0", 1)[0]
            host_path = t.proc.root.unix_address(path, creating)
            if len(host_path) >= UNIX_PATH_MAX:
                raise OSError(errno.ENAMETOOLONG, "unix socket path")
            rewritten = ctypes.create_string_buffer(raw[:2] + host_path + b"\0", 2 + UNIX_PATH_MAX)
            keep.append(rewritten)
            return ctypes.addressof(rewritten), 2 + len(host_path) + 1
    return host_pointer(t, addr, addrlen, False), addrlen


class _Length:
    """A socklen_t the host updates (an address's or an option's length): read from the
    guest once, given to the host in km's memory (so that a guest thread changing it
    meanwhile cannot make the host write past what km translated), written back."""

    __slots__ = ("va", "box", "pointer", "value")

    def __init__(self, t: GuestThread, va: int) -> None:
        self.va = va
        self.box: ctypes.c_int | None = None
        self.value = 0
        if not va:
            self.pointer = 0
            return
        try:
            self.value = args.s32(_U32.unpack(t.mm.read(va, 4))[0])
        except GuestFault:
            self.pointer = bad_pointer(va, 4)  # the host faults on it, in its order
            return
        self.box = ctypes.c_int(self.value)
        self.pointer = ctypes.addressof(self.box)

    def write_back(self, t: GuestThread) -> None:
        if self.box is not None:
            t.mm.write(self.va, _U32.pack(self.box.value & 0xFFFFFFFF))


def _addr_out(t: GuestThread, addr: int, addrlen_ptr: int) -> tuple[int, _Length]:
    """(address buffer, its length) for calls that return an address: Linux copies
    min(*addrlen, the address's length) bytes and reports the full length."""
    length = _Length(t, addrlen_ptr)
    size = min(max(length.value, 0), SOCKADDR_MAX)
    return host_pointer(t, addr, size, True), length


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
    fd = host_fd(t, fd)
    keep: list = []
    pointer, length = _addr_in(t, fd, addr, addrlen, keep, creating=True)
    return host.call(NR["bind"], fd, pointer, length)


def sys_connect(t: GuestThread, fd: int, addr: int, addrlen: int, *_: int) -> int:
    fd = host_fd(t, fd)
    keep: list = []
    pointer, length = _addr_in(t, fd, addr, addrlen, keep)
    return host.call(NR["connect"], fd, pointer, length)


def sys_listen(t: GuestThread, fd: int, backlog: int, *_: int) -> int:
    result = host.call(NR["listen"], host_fd(t, fd), backlog)
    try:  # (the host does not tell a backlog: a snapshot makes the socket again with it)
        t.proc.backlogs[os.fstat(fd).st_ino] = args.s32(backlog)
    except OSError:
        pass
    return result


SO_ACCEPTCONN, SOCK_NONBLOCK, SOCK_CLOEXEC = 30, 0o4000, 0o2000000
F_GETFL, O_NONBLOCK, POLLIN = 3, 0o4000, 1


def _would_take_a_connection(fd: int) -> bool:
    """Whether accept on fd would take a connection now, or wait for one (False: the
    host fails first: not a listening socket, nothing pending for a non-blocking one;
    EBADF and ENOTSOCK are raised)."""
    listening = ctypes.c_int(0)
    size = ctypes.c_uint32(4)
    host.call(NR["getsockopt"], fd, SOL_SOCKET, SO_ACCEPTCONN, ctypes.addressof(listening),
              ctypes.addressof(size))
    if not listening.value:
        return False
    if not host.call(NR["fcntl"], fd, F_GETFL) & O_NONBLOCK:
        return True
    pollfd = struct.pack("<ihh", fd, POLLIN, 0)
    return host.call(NR["poll"], host.address_of(pollfd), 1, 0) > 0


def sys_accept4(t: GuestThread, fd: int, addr: int, addrlen: int, flags: int, *_: int) -> int:
    fd = host_fd(t, fd)
    if not addr:  # no address wanted: Linux does not look at addrlen
        return _adopt(t, host.call(NR["accept4"], fd, 0, 0, flags))
    buffer, length = _addr_out(t, addr, addrlen)
    if (length.box is None or length.value < 0) \
            and not flags & ~(SOCK_CLOEXEC | SOCK_NONBLOCK) and _would_take_a_connection(fd):
        # Linux would take a connection (waiting for one), then fail on addrlen and
        # drop it. km fails at once and leaves the connection queued: only a payload
        # with this bug could tell, by the connection it would have lost.
        raise SyscallError(errno.EFAULT if length.box is None else errno.EINVAL)
    result = _adopt(t, host.call(NR["accept4"], fd, buffer, length.pointer, flags))
    try:
        length.write_back(t)
    except GuestFault:
        host.syscall(NR["close"], result)  # Linux installs no descriptor then
        raise
    return result


def sys_accept(t: GuestThread, fd: int, addr: int, addrlen: int, *_: int) -> int:
    return sys_accept4(t, fd, addr, addrlen, 0)


def _name_call(name: str):
    """getsockname/getpeername: the address is wanted even with a NULL buffer (EFAULT
    unless *addrlen is 0, when Linux copies nothing and reports the length)."""
    number = NR[name]

    def handler(t: GuestThread, fd: int, addr: int, addrlen: int, *_: int) -> int:
        fd = host_fd(t, fd)
        buffer, length = _addr_out(t, addr, addrlen)
        if not buffer and length.value > 0:
            buffer = bad_pointer(0, 0)
        result = host.call(number, fd, buffer, length.pointer)
        length.write_back(t)
        return result
    handler.__name__ = f"sys_{name}"
    return handler


def _data_buffer(t: GuestThread, va: int, length: int,
                 write: bool) -> tuple[int, int, _Shadow | None]:
    """(host pointer, length, km's copy to close) of sendto's or recvfrom's buffer
    (length already capped at MAX_RW_COUNT, as Linux caps it before access_ok).

    A buffer only partly accessible is not cut short (a datagram would be): Linux
    moves data until it faults, so the host gets km's copy of the accessible start,
    followed by PROT_NONE pages (_Shadow): EFAULT where the guest's mapping ends."""
    if not length:  # (access_ok() refuses a kernel address even for no bytes)
        return (KERNEL_HALF if va > TASK_SIZE_MAX else 0), 0, None
    mm = t.mm
    try:
        return mm.host_base + mm.translate(va, length, write), length, None
    except SplitBuffer:  # all accessible, over two mappings
        pointer, usable = args.buffer_ptr(t, va, length, write)
        return pointer, usable, None
    except GuestFault:
        pass
    if va + length > TASK_SIZE_MAX:
        return bad_pointer(va, length), length, None  # access_ok() refuses it first
    shadow = _Shadow(t, va, length, write)
    if not shadow.size:  # nothing accessible: the host faults at the first byte
        return shadow.pointer, length, None
    return shadow.pointer, shadow.limit(length), shadow


def sys_sendto(t: GuestThread, fd: int, buf: int, length: int, flags: int, dest: int,
               addrlen: int) -> int:
    fd = host_fd(t, fd)
    pointer, length, shadow = _data_buffer(t, buf, min(length, args.MAX_RW_COUNT), False)
    try:
        keep: list = []
        dest_ptr, dest_len = _addr_in(t, fd, dest, addrlen, keep) if dest else (0, 0)
        result = host.syscall(NR["sendto"], fd, pointer, length, flags, dest_ptr, dest_len)
    finally:
        if shadow is not None:
            shadow.close()
    if result == -errno.EPIPE and not flags & MSG_NOSIGNAL:
        t.proc.broken_pipe(t)
    return host.check(result)


def sys_recvfrom(t: GuestThread, fd: int, buf: int, length: int, flags: int, src: int,
                 addrlen: int) -> int:
    fd = host_fd(t, fd)
    pointer, length, shadow = _data_buffer(t, buf, min(length, args.MAX_RW_COUNT), True)
    try:
        if not src:  # no address wanted: Linux does not look at addrlen
            result = host.call(NR["recvfrom"], fd, pointer, length, flags, 0, 0)
        else:
            src_ptr, src_len = _addr_out(t, src, addrlen)
            result = host.call(NR["recvfrom"], fd, pointer, length, flags, src_ptr,
                               src_len.pointer)
            src_len.write_back(t)
        if shadow is not None:
            shadow.copy_back(t, result)
    finally:
        if shadow is not None:
            shadow.close()
    return result


def sys_setsockopt(t: GuestThread, fd: int, level: int, optname: int, optval: int,
                   optlen: int, *_: int) -> int:
    fd = host_fd(t, fd)
    level, optname, optlen = args.s32(level), args.s32(optname), args.s32(optlen)
    if level == SOL_SOCKET and optname in (SO_ATTACH_FILTER, SO_ATTACH_REUSEPORT_CBPF) \
            and optlen >= _SOCK_FPROG.size:
        # struct sock_fprog points at the filter program: translate that pointer too.
        try:
            count, program = _SOCK_FPROG.unpack(t.mm.read(optval, _SOCK_FPROG.size))
        except GuestFault:
            return host.call(NR["setsockopt"], fd, level, optname,
                             bad_pointer(optval, optlen), optlen)
        program_ptr = host_pointer(t, program, 8 * count, False)
        fprog = ctypes.create_string_buffer(_SOCK_FPROG.pack(count, program_ptr))
        # (any optlen but 16 is EINVAL before the host reads the structure)
        return host.call(NR["setsockopt"], fd, level, optname, ctypes.addressof(fprog),
                         optlen)
    if optlen <= 0:  # nothing to read (a negative length is the host's EINVAL)
        return host.call(NR["setsockopt"], fd, level, optname,
                         bad_pointer(optval) if optval else 0, optlen)
    pointer = None
    if optlen <= OPTVAL_MAX:
        try:
            pointer = args.in_ptr(t, optval, optlen) if optval else 0
        except GuestFault:
            pass
    if pointer is not None:
        return host.call(NR["setsockopt"], fd, level, optname, pointer, optlen)
    # Not all mapped (or longer than options are): Linux reads what the option takes.
    shadow = _Shadow(t, optval, optlen, False)
    try:
        return host.call(NR["setsockopt"], fd, level, optname, shadow.pointer,
                         shadow.limit(optlen))
    finally:
        shadow.close()


def sys_getsockopt(t: GuestThread, fd: int, level: int, optname: int, optval: int,
                   optlen: int, *_: int) -> int:
    fd = host_fd(t, fd)
    level, optname = args.s32(level), args.s32(optname)
    length = _Length(t, optlen)
    size = max(length.value, 0)
    shadow = None
    pointer = 0
    if optval and size:
        try:
            if size > OPTVAL_MAX:
                raise GuestFault(optval)
            pointer = args.out_ptr(t, optval, size)
        except GuestFault:
            # Not all mapped (or longer than options are): Linux writes what the
            # option has, which may fit.
            shadow = _Shadow(t, optval, size, True)
            pointer = shadow.pointer
            if length.box is not None:
                length.box.value = length.value = shadow.limit(length.value)
    elif optval:
        pointer = bad_pointer(optval)
    try:
        result = host.syscall(NR["getsockopt"], fd, level, optname, pointer, length.pointer)
        if result >= 0 and shadow is not None and length.box is not None:
            shadow.copy_back(t, length.box.value)
    finally:
        if shadow is not None:
            shadow.close()
    # Linux writes the length back on success, and with some errors (ERANGE).
    if result >= 0 or length.box is not None and length.box.value != length.value:
        length.write_back(t)
    return host.check(result)


def sys_shutdown(t: GuestThread, fd: int, how: int, *_: int) -> int:
    return host.call(NR["shutdown"], host_fd(t, fd), how)


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


def _host_msghdr(t: GuestThread, fd: int, va: int, receiving: bool,
                 keep: list) -> HostMsghdr:
    """Translate the guest msghdr at va; arrays that must outlive the call go in keep."""
    name, namelen, iov, iovlen, control, controllen, _flags = _MSGHDR.unpack(
        t.mm.read(va, _MSGHDR.size))
    host_hdr = HostMsghdr()
    if name:
        namelen = args.s32(namelen)
        if namelen < 0:
            raise OSError(errno.EINVAL, "msg_namelen")
        namelen = min(namelen, SOCKADDR_MAX)  # as Linux clamps it
        if receiving:
            # (even with a length of 0: Linux then reports the sender's address length)
            host_hdr.name = host_pointer(t, name, namelen, True)
        elif namelen:  # a destination: confined like sendto's (a unix path inside the root)
            host_hdr.name, namelen = _addr_in(t, fd, name, namelen, keep)
        host_hdr.namelen = namelen
    if iovlen > 1024:
        raise OSError(errno.EMSGSIZE, "msg_iovlen")
    # (buffers the host cannot use, even the array, become memory it faults on: Linux
    # checks only the array when it reads it, and the protocol may refuse the message,
    # EDESTADDRREQ, EAGAIN..., before touching data)
    host_hdr.iov, host_hdr.iovlen, vector = transfer_vector(t, iov, iovlen, receiving)
    keep.append(vector)
    if control and controllen:
        controllen = min(controllen, 1 << 20)
        if not receiving:
            _check_rights(t, t.mm.read(control, controllen))
        host_hdr.control = host_pointer(t, control, controllen, receiving)
        host_hdr.controllen = controllen
    return host_hdr


def _translate_msghdr(t: GuestThread, fd: int, va: int, receiving: bool,
                      keep: list) -> HostMsghdr | int:
    """The host msghdr of the guest's, or a pointer to the guest's own if km cannot read
    it (the host then says EBADF, ENOTSOCK or EFAULT, in Linux's order)."""
    try:
        return _host_msghdr(t, fd, va, receiving, keep)
    except GuestFault:
        try:
            t.mm.read(va, _MSGHDR.size)
        except GuestFault:
            return bad_pointer(va, _MSGHDR.size)
        raise _refuse(fd, SyscallError(errno.EFAULT)) from None
    except OSError as error:
        raise _refuse(fd, error) from None


def _write_back(t: GuestThread, va: int, host_hdr: HostMsghdr) -> None:
    """After recvmsg: the lengths and flags the kernel updated."""
    t.mm.write(va + 8, _U32.pack(host_hdr.namelen))
    t.mm.write(va + 40, struct.pack("<Q", host_hdr.controllen))
    t.mm.write(va + 48, struct.pack("<i", host_hdr.flags))


def sys_sendmsg(t: GuestThread, fd: int, msg: int, flags: int, *_: int) -> int:
    fd = host_fd(t, fd)
    keep: list = []
    host_hdr = _translate_msghdr(t, fd, msg, False, keep)
    if isinstance(host_hdr, int):
        return host.call(NR["sendmsg"], fd, host_hdr, flags)
    result = host.syscall(NR["sendmsg"], fd, ctypes.addressof(host_hdr), flags)
    if result == -errno.EPIPE and not flags & MSG_NOSIGNAL:
        t.proc.broken_pipe(t)
    return host.check(result)


def sys_recvmsg(t: GuestThread, fd: int, msg: int, flags: int, *_: int) -> int:
    fd = host_fd(t, fd)
    keep: list = []
    host_hdr = _translate_msghdr(t, fd, msg, True, keep)
    if isinstance(host_hdr, int):
        return host.call(NR["recvmsg"], fd, host_hdr, flags)
    result = host.call(NR["recvmsg"], fd, ctypes.addressof(host_hdr), flags)
    _write_back(t, msg, host_hdr)
    return result


MMSGHDR_SIZE = 64
UIO_MAXIOV = 1024


def _mmsg(t: GuestThread, fd: int, msgvec: int, vlen: int, receiving: bool,
          keep: list) -> tuple[ctypes.Array | int, int]:
    """(host mmsghdr array, entries) of the guest's. Linux stops at the first entry it
    cannot use and reports the messages before it: km passes those; if it is the first,
    the call fails as Linux's would."""
    vlen = min(vlen & 0xFFFFFFFF, UIO_MAXIOV)
    array = (HostMmsghdr * max(vlen, 1))()
    for i in range(vlen):
        try:
            array[i].hdr = _host_msghdr(t, fd, msgvec + i * MMSGHDR_SIZE, receiving, keep)
        except OSError:
            if i:
                return array, i
            # Why the first one failed, in Linux's order (or a pointer the host fails on).
            header = _translate_msghdr(t, fd, msgvec, receiving, keep)
            if isinstance(header, int):
                return header, vlen
            array[0].hdr = header  # (readable now: another thread mapped it meanwhile)
    return array, vlen


def sys_sendmmsg(t: GuestThread, fd: int, msgvec: int, vlen: int, flags: int, *_: int) -> int:
    fd = host_fd(t, fd)
    keep: list = []
    array, count = _mmsg(t, fd, msgvec, vlen, False, keep)
    if isinstance(array, int):
        return host.call(NR["sendmmsg"], fd, array, count, flags)
    result = host.call(NR["sendmmsg"], fd, ctypes.addressof(array), count, flags)
    for i in range(max(result, 0)):
        t.mm.write(msgvec + i * MMSGHDR_SIZE + 56, _U32.pack(array[i].len))
    return result


def sys_recvmmsg(t: GuestThread, fd: int, msgvec: int, vlen: int, flags: int, timeout: int,
                 *_: int) -> int:
    fd = host_fd(t, fd)
    keep: list = []
    array, count = _mmsg(t, fd, msgvec, vlen, True, keep)
    timeout_ptr = host_pointer(t, timeout, 16, True)
    if isinstance(array, int):
        return host.call(NR["recvmmsg"], fd, array, count, flags, timeout_ptr)
    result = host.call(NR["recvmmsg"], fd, ctypes.addressof(array), count, flags,
                       timeout_ptr)
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
