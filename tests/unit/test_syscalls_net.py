"""System call handlers of the net family (kontain/syscalls/net.py) without KVM: socket
and socketpair, bind/connect/listen/accept, the names of a socket, sendto/recvfrom,
socket options (and the BPF program pointer inside SO_ATTACH_FILTER), shutdown, and
sendmsg/recvmsg/sendmmsg/recvmmsg with their iovecs, addresses and control messages
(SCM_RIGHTS may carry only the guest's own descriptors).

Linux is the oracle: each case is also made natively by this process on sockets of its
own, and km must give the same result, errno and bytes. Unix sockets use abstract names
(nothing on disk) or paths in tmp_path.
"""

from __future__ import annotations

import ctypes
import errno
import os
import socket
import struct

import pytest
from harness import Guest, make_process, make_thread
from oracle import (
    BAD,
    HOLE,
    PAGE,
    RO,
    RW,
    Twin,
    call,
    host,
    hostile_registers_leave_km_untouched,
    native,
)

from kontain.machine.layout import kernel_va
from kontain.syscalls import net as family

SOL_SOCKET, SCM_RIGHTS, SO_TYPE, SO_RCVBUF, SO_REUSEADDR = 1, 1, 3, 8, 2
SO_ATTACH_FILTER, SO_DETACH_FILTER = 26, 27
MSG_DONTWAIT, MSG_TRUNC, MSG_CTRUNC = 0x40, 0x20, 0x8
MSGHDR = struct.Struct("<QI4xQQQQi4x")  # name namelen iov iovlen control controllen flags
CMSG_RIGHTS = struct.Struct("<Qii")      # cmsg_len level type, then the descriptors


@pytest.fixture
def thread():
    return make_thread(make_process())


@pytest.fixture
def guest(thread):
    return Guest(thread)


@pytest.fixture
def twin(thread):
    made: list[Twin] = []

    def make(prots: list[int | None], data: bytes = b"") -> Twin:
        made.append(Twin(thread, prots, data))
        return made[-1]
    yield make
    for t in made:
        t.close()


@pytest.fixture
def fds():
    """Descriptors a test opens, closed after it (whichever are still open)."""
    opened: list[int] = []
    yield opened
    for fd in opened:
        try:
            os.close(fd)
        except OSError:
            pass


@pytest.fixture
def pairs(fds):
    """Connected, non-blocking socket pairs (fd, fd) of a kind, closed after the test."""
    def make(kind: int = socket.SOCK_DGRAM) -> tuple[int, int]:
        a, b = socket.socketpair(socket.AF_UNIX, kind | socket.SOCK_NONBLOCK)
        pair = a.detach(), b.detach()
        fds.extend(pair)
        return pair
    return make


def closed_fd() -> int:
    """A descriptor number that is not open (in this process, hence in the guest)."""
    fd = os.open(os.devnull, os.O_RDONLY)
    os.close(fd)
    return fd


def abstract(tag: str) -> bytes:
    """A unique abstract unix address: sockaddr_un with a leading NUL, no file."""
    return struct.pack("<H", socket.AF_UNIX) + b"\0kontain-test-" + \
        f"{os.getpid()}-{tag}".encode()


def _open_count() -> int:
    return len(os.listdir("/proc/self/fd"))


# ---- socket, socketpair ----------------------------------------------------------------

@pytest.mark.parametrize("domain, kind, protocol", [
    (socket.AF_UNIX, socket.SOCK_STREAM, 0), (socket.AF_INET, socket.SOCK_DGRAM, 0),
    (socket.AF_UNIX, socket.SOCK_STREAM | socket.SOCK_CLOEXEC | socket.SOCK_NONBLOCK, 0),
    (999, socket.SOCK_STREAM, 0), (socket.AF_UNIX, 99, 0), (socket.AF_INET, socket.SOCK_STREAM, 99),
    (socket.AF_UNIX, socket.SOCK_STREAM | 0x100, 0)])
def test_socket_like_linux(thread, fds, domain, kind, protocol):
    km, linux = call(thread, "socket", domain, kind, protocol), \
        native("socket", domain, kind, protocol)
    fds.extend(fd for fd in (km, linux) if fd >= 0)
    assert (km >= 0, min(km, 0)) == (linux >= 0, min(linux, 0))
    if km >= 0:
        assert os.get_blocking(km) == os.get_blocking(linux)


def test_socketpair_writes_two_descriptors(thread, guest, fds):
    out = guest.alloc(8)
    assert call(thread, "socketpair", socket.AF_UNIX, socket.SOCK_STREAM, 0, out) == 0
    a, b = struct.unpack("<ii", guest.read(out, 8))
    fds += [a, b]
    os.write(a, b"across")
    assert os.read(b, 10) == b"across"


def test_socketpair_errors_leak_nothing(thread, twin):
    t = twin([RO, RW, HOLE])
    before = _open_count()
    for guest_arg, host_arg, domain in [(0, 0, socket.AF_UNIX), (BAD, BAD, socket.AF_UNIX),
                                        (t.guest, t.host, socket.AF_UNIX),
                                        (t.guest + 2 * PAGE - 4, t.host + 2 * PAGE - 4,
                                         socket.AF_UNIX),
                                        (t.guest + PAGE, t.host + PAGE, socket.AF_INET)]:
        assert call(thread, "socketpair", domain, socket.SOCK_STREAM, 0, guest_arg) == \
            native("socketpair", domain, socket.SOCK_STREAM, 0, host_arg) < 0
        assert _open_count() == before


# ---- addresses: bind, connect, accept, names ----------------------------------------------

@pytest.mark.parametrize("length", [0, 1, 2, 110, 128, 129, -1 & 0xFFFFFFFF])
def test_bind_address_lengths(thread, guest, fds, length):
    km_sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM).detach()
    linux_sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM).detach()
    fds += [km_sock, linux_sock]
    km_addr = abstract(f"km-{length}").ljust(130, b"\0")
    linux_addr = abstract(f"linux-{length}").ljust(130, b"\0")
    assert call(thread, "bind", km_sock, guest.put(km_addr), length) == \
        native("bind", linux_sock, host(linux_addr), length)


def test_bind_connect_and_their_errors(thread, guest, fds, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)  # unix socket paths relative to tmp_path: short
    server = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM).detach()
    client, other = (socket.socket(socket.AF_UNIX, socket.SOCK_STREAM).detach()
                     for _ in range(2))
    fds += [server, client, other]
    path = struct.pack("<H", socket.AF_UNIX) + b"srv\0"
    assert call(thread, "bind", server, guest.put(path), len(path)) == 0
    assert os.path.exists(tmp_path / "srv")
    assert call(thread, "bind", other, guest.put(path), len(path)) == \
        native("bind", other, host(path), len(path)) == -errno.EADDRINUSE
    assert call(thread, "listen", server, 5) == 0
    assert call(thread, "connect", client, guest.put(path), len(path)) == 0
    missing = struct.pack("<H", socket.AF_UNIX) + b"missing\0"
    assert call(thread, "connect", other, guest.put(missing), len(missing)) == \
        native("connect", other, host(missing), len(missing)) == -errno.ENOENT
    for name in ("bind", "connect"):
        assert call(thread, name, other, BAD, 16) == native(name, other, BAD, 16) \
            == -errno.EFAULT
        assert call(thread, name, thread.proc.fds.km_base, guest.put(path), len(path)) \
            == -errno.EBADF
    assert call(thread, "listen", thread.proc.fds.km_base, 5) == -errno.EBADF
    assert call(thread, "listen", closed_fd(), 5) == native("listen", closed_fd(), 5) \
        == -errno.EBADF


@pytest.fixture
def listener(fds):
    """A listening abstract unix socket and a function connecting a new client to it."""
    server = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    server.bind(abstract("listener")[2:].decode("latin-1"))
    server.listen(8)
    fds.append(server.detach())

    def connect(bound_as: str | None = None) -> int:
        client = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        if bound_as is not None:
            client.bind(abstract(bound_as)[2:].decode("latin-1"))
        client.connect(abstract("listener")[2:].decode("latin-1"))
        fds.append(client.detach())
        return fds[-1]
    return fds[0], connect


@pytest.mark.parametrize("length", [128, 10, 2, 0])
def test_accept4_writes_the_peer_address_linux_writes(thread, guest, fds, listener, length):
    server, connect = listener
    connect("peer-a")
    connect("peer-b")
    km_addr, km_len = guest.alloc(128), guest.put(struct.pack("<i", length))
    linux_addr, linux_len = host(128), host(struct.pack("<i", length))
    km = call(thread, "accept4", server, km_addr, km_len, socket.SOCK_CLOEXEC)
    linux = native("accept4", server, linux_addr, linux_len, socket.SOCK_CLOEXEC)
    fds += [km, linux]
    assert km >= 0 and linux >= 0
    assert guest.read(km_len, 4) == ctypes.string_at(linux_len, 4)
    shown = min(length, struct.unpack("<i", guest.read(km_len, 4))[0])
    # the two peers' names differ in their last byte only ("-a", "-b")
    assert guest.read(km_addr, shown)[:-1] == ctypes.string_at(linux_addr, shown)[:-1]


def test_accept_errors(thread, guest, fds, listener):
    server, connect = listener
    length = guest.put(struct.pack("<i", 16))
    for _ in range(4):
        connect()
    assert call(thread, "accept4", server, guest.alloc(16), 0, 0) == \
        native("accept4", server, host(16), 0, 0) == -errno.EFAULT
    assert call(thread, "accept4", server, guest.alloc(16), BAD, 0) == \
        native("accept4", server, host(16), BAD, 0) == -errno.EFAULT
    negative = struct.pack("<i", -1)
    assert call(thread, "accept4", server, guest.alloc(16), guest.put(negative), 0) == \
        native("accept4", server, host(16), host(negative), 0) == -errno.EINVAL
    assert call(thread, "accept4", server, 0, 0, 0x1234) == \
        native("accept4", server, 0, 0, 0x1234) == -errno.EINVAL
    assert call(thread, "accept", thread.proc.fds.km_base, 0, 0) == -errno.EBADF
    fd = call(thread, "accept", server, 0, length)  # no address wanted: length untouched
    fds.append(fd)
    assert fd >= 0 and struct.unpack("<i", guest.read(length, 4))[0] == 16


@pytest.mark.parametrize("name", ["getsockname", "getpeername"])
@pytest.mark.parametrize("length", [128, 5])
def test_socket_names_like_linux(thread, guest, fds, listener, name, length):
    _server, connect = listener
    client = connect("named")
    km_addr, km_len = guest.alloc(128), guest.put(struct.pack("<i", length))
    linux_addr, linux_len = host(128), host(struct.pack("<i", length))
    assert call(thread, name, client, km_addr, km_len) == \
        native(name, client, linux_addr, linux_len) == 0
    assert guest.read(km_len, 4) == ctypes.string_at(linux_len, 4)
    assert guest.read(km_addr, 128) == ctypes.string_at(linux_addr, 128)
    negative = struct.pack("<i", -1)
    assert call(thread, name, client, km_addr, guest.put(negative)) == \
        native(name, client, linux_addr, host(negative)) == -errno.EINVAL
    assert call(thread, name, client, km_addr, BAD) == native(name, client, linux_addr, BAD) \
        == -errno.EFAULT
    assert call(thread, name, thread.proc.fds.km_base, km_addr, km_len) == -errno.EBADF


@pytest.mark.parametrize("address", ["buffer", "null"])
def test_socket_name_with_zero_length_reports_the_length(thread, guest, fds, listener,
                                                         address):
    _server, connect = listener
    client = connect("zero")
    km_len, linux_len = guest.put(bytes(4)), host(bytes(4))
    km_addr, linux_addr = (guest.alloc(16), host(16)) if address == "buffer" else (0, 0)
    assert native("getsockname", client, linux_addr, linux_len) == 0
    assert call(thread, "getsockname", client, km_addr, km_len) == 0
    assert guest.read(km_len, 4) == ctypes.string_at(linux_len, 4)


# ---- sendto, recvfrom ---------------------------------------------------------------------

def test_sendto_recvfrom_with_addresses(thread, guest, fds):
    receiver = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM | socket.SOCK_NONBLOCK)
    receiver.bind(abstract("rx")[2:].decode("latin-1"))
    sender = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
    sender.bind(abstract("tx")[2:].decode("latin-1"))
    rx, tx = receiver.detach(), sender.detach()
    fds += [rx, tx]
    dest = abstract("rx")
    data = guest.put(b"datagram one")
    assert call(thread, "sendto", tx, data, 12, 0, guest.put(dest), len(dest)) == 12
    assert native("sendto", tx, host(b"datagram two"), 12, 0, host(dest), len(dest)) == 12
    km_buf, km_src, km_len = guest.alloc(64), guest.alloc(128), guest.put(struct.pack("<i", 128))
    linux_buf, linux_src, linux_len = host(64), host(128), host(struct.pack("<i", 128))
    assert call(thread, "recvfrom", rx, km_buf, 64, 0, km_src, km_len) == 12
    assert native("recvfrom", rx, linux_buf, 64, 0, linux_src, linux_len) == 12
    assert guest.read(km_buf, 12) == b"datagram one"
    assert guest.read(km_len, 4) == ctypes.string_at(linux_len, 4)
    assert guest.read(km_src, 128) == ctypes.string_at(linux_src, 128)
    # errors: nothing to receive, bad buffers and addresses, km's descriptors
    assert call(thread, "recvfrom", rx, km_buf, 64, 0, 0, 0) == \
        native("recvfrom", rx, linux_buf, 64, 0, 0, 0) == -errno.EAGAIN
    assert call(thread, "sendto", tx, data, 12, 0, guest.put(dest), 200) == \
        native("sendto", tx, host(b"x" * 12), 12, 0, host(dest.ljust(200, b"\0")), 200) \
        == -errno.EINVAL
    assert call(thread, "sendto", tx, BAD, 12, 0, guest.put(dest), len(dest)) == \
        native("sendto", tx, BAD, 12, 0, host(dest), len(dest)) == -errno.EFAULT
    assert call(thread, "sendto", tx, data, 12, 0, BAD, len(dest)) == \
        native("sendto", tx, host(b"x" * 12), 12, 0, BAD, len(dest)) == -errno.EFAULT
    for name in ("sendto", "recvfrom"):
        assert call(thread, name, thread.proc.fds.km_base, data, 12, 0, 0, 0) == -errno.EBADF


def test_a_datagram_longer_than_the_buffer_is_truncated(thread, guest, pairs):
    km_a, km_b = pairs()
    linux_a, linux_b = pairs()
    for fd in (km_a, linux_a):
        os.write(fd, b"0123456789")
    buf = guest.alloc(16)
    assert call(thread, "recvfrom", km_b, buf, 4, 0, 0, 0) == \
        native("recvfrom", linux_b, host(16), 4, 0, 0, 0) == 4
    for fd in (km_a, linux_a):
        os.write(fd, b"0123456789")
    assert call(thread, "recvfrom", km_b, buf, 4, MSG_TRUNC, 0, 0) == \
        native("recvfrom", linux_b, host(16), 4, MSG_TRUNC, 0, 0) == 10


@pytest.mark.parametrize("direction", ["sendto", "recvfrom"])
def test_datagrams_and_partly_mapped_buffers(thread, twin, pairs, direction):
    km_a, km_b = pairs()
    linux_a, linux_b = pairs()
    t = twin([RW, HOLE], b"d" * PAGE)
    start = PAGE - 50
    if direction == "sendto":
        assert native("sendto", linux_a, t.host + start, 100, 0, 0, 0) == -errno.EFAULT
        assert call(thread, "sendto", km_a, t.guest + start, 100, 0, 0, 0) == -errno.EFAULT
    else:
        os.write(km_a, b"r" * 100)
        os.write(linux_a, b"r" * 100)
        assert native("recvfrom", linux_b, t.host + start, 100, 0, 0, 0) == -errno.EFAULT
        assert call(thread, "recvfrom", km_b, t.guest + start, 100, 0, 0, 0) == -errno.EFAULT


@pytest.mark.parametrize("direction", ["sendto", "recvfrom"])
def test_no_bytes_at_a_kernel_address_is_efault(thread, pairs, direction):
    km_a, km_b = pairs()
    linux_a, linux_b = pairs()
    km_fd, linux_fd = (km_a, linux_a) if direction == "sendto" else (km_b, linux_b)
    for pointer in (kernel_va(0), BAD):
        assert call(thread, direction, km_fd, pointer, 0, MSG_DONTWAIT, 0, 0) == \
            native(direction, linux_fd, pointer, 0, MSG_DONTWAIT, 0, 0)


def test_sending_on_a_shut_down_socket_raises_sigpipe_unless_asked_not_to(thread, guest, pairs):
    a, b = pairs(socket.SOCK_STREAM)
    socket.socket(fileno=os.dup(a)).shutdown(socket.SHUT_WR)
    data = guest.put(b"x")
    assert call(thread, "sendto", a, data, 1, 0x4000, 0, 0) == -errno.EPIPE  # MSG_NOSIGNAL
    assert not thread.pending.bits
    assert call(thread, "sendto", a, data, 1, 0, 0, 0) == -errno.EPIPE
    assert thread.pending.bits == 1 << 12  # SIGPIPE


# ---- options ------------------------------------------------------------------------------

def test_socket_options_like_linux(thread, guest, pairs):
    km_sock, _ = pairs()
    linux_sock, _ = pairs()
    size = struct.pack("<i", 65536)
    assert call(thread, "setsockopt", km_sock, SOL_SOCKET, SO_RCVBUF, guest.put(size), 4) == \
        native("setsockopt", linux_sock, SOL_SOCKET, SO_RCVBUF, host(size), 4) == 0
    for option, length in ((SO_RCVBUF, 4), (SO_TYPE, 64), (SO_TYPE, 2), (SO_REUSEADDR, 0)):
        km_val, km_len = guest.alloc(64), guest.put(struct.pack("<i", length))
        linux_val, linux_len = host(64), host(struct.pack("<i", length))
        assert call(thread, "getsockopt", km_sock, SOL_SOCKET, option, km_val, km_len) == \
            native("getsockopt", linux_sock, SOL_SOCKET, option, linux_val, linux_len)
        assert guest.read(km_len, 4) == ctypes.string_at(linux_len, 4)
        assert guest.read(km_val, 8) == ctypes.string_at(linux_val, 8)


def test_socket_option_errors(thread, guest, pairs):
    km_sock, _ = pairs()
    linux_sock, _ = pairs()
    one = struct.pack("<i", 1)
    cases = [("setsockopt", SOL_SOCKET, SO_REUSEADDR, one, 2),          # too short
             ("setsockopt", SOL_SOCKET, SO_REUSEADDR, one, -1 & 0xFFFFFFFF),
             ("setsockopt", SOL_SOCKET, SO_REUSEADDR, BAD, 4),
             ("setsockopt", SOL_SOCKET, 9999, one, 4),
             ("setsockopt", 9999, SO_REUSEADDR, one, 4),
             ("getsockopt", SOL_SOCKET, SO_TYPE, bytes(4), 0),           # optlen NULL
             ("getsockopt", SOL_SOCKET, SO_TYPE, bytes(4), BAD),
             ("getsockopt", SOL_SOCKET, SO_TYPE, BAD, struct.pack("<i", 4)),
             ("getsockopt", SOL_SOCKET, SO_TYPE, bytes(4), struct.pack("<i", -1)),
             ("getsockopt", SOL_SOCKET, 9999, bytes(4), struct.pack("<i", 4))]
    for name, level, option, *rest in cases:
        km_rest = [guest.put(v) if isinstance(v, bytes) else v for v in rest]
        linux_rest = [host(v) if isinstance(v, bytes) else v for v in rest]
        assert call(thread, name, km_sock, level, option, *km_rest) == \
            native(name, linux_sock, level, option, *linux_rest), (name, option, rest)
    for name in ("setsockopt", "getsockopt"):
        assert call(thread, name, thread.proc.fds.km_base, SOL_SOCKET, SO_TYPE,
                    guest.alloc(4), guest.put(struct.pack("<i", 4))) == -errno.EBADF


def test_setsockopt_reads_only_what_the_option_takes(thread, guest, pairs):
    km_sock, _ = pairs()
    linux_sock, _ = pairs()
    one = struct.pack("<i", 1)
    assert native("setsockopt", linux_sock, SOL_SOCKET, SO_REUSEADDR, host(one), 100000) == 0
    assert call(thread, "setsockopt", km_sock, SOL_SOCKET, SO_REUSEADDR, guest.put(one),
                100000) == 0


BPF_ACCEPT_ALL = struct.pack("<HBBI", 0x06, 0, 0, 0xFFFFFFFF)  # BPF_RET|BPF_K, -1


def test_attach_filter_translates_the_program_pointer(thread, guest, pairs):
    km_a, km_b = pairs()
    linux_a, linux_b = pairs()
    program = guest.put(BPF_ACCEPT_ALL)
    fprog = guest.put(struct.pack("<H6xQ", 1, program))
    linux_fprog = host(struct.pack("<H6xQ", 1, host(BPF_ACCEPT_ALL)))
    assert call(thread, "setsockopt", km_b, SOL_SOCKET, SO_ATTACH_FILTER, fprog, 16) == \
        native("setsockopt", linux_b, SOL_SOCKET, SO_ATTACH_FILTER, linux_fprog, 16) == 0
    os.write(km_a, b"filtered")
    assert os.read(km_b, 16) == b"filtered"
    bad_program = guest.put(struct.pack("<H6xQ", 1, BAD))
    linux_bad = host(struct.pack("<H6xQ", 1, BAD))
    assert call(thread, "setsockopt", km_b, SOL_SOCKET, SO_ATTACH_FILTER, bad_program, 16) \
        == native("setsockopt", linux_b, SOL_SOCKET, SO_ATTACH_FILTER, linux_bad, 16) \
        == -errno.EFAULT
    km_buffer = ctypes.create_string_buffer(BPF_ACCEPT_ALL)  # a program in km's memory
    km_program = guest.put(struct.pack("<H6xQ", 1, ctypes.addressof(km_buffer)))
    assert call(thread, "setsockopt", km_b, SOL_SOCKET, SO_ATTACH_FILTER, km_program, 16) \
        == -errno.EFAULT
    for length in (8, 15):
        assert call(thread, "setsockopt", km_b, SOL_SOCKET, SO_ATTACH_FILTER, fprog, length) \
            == native("setsockopt", linux_b, SOL_SOCKET, SO_ATTACH_FILTER, linux_fprog, length)


def test_shutdown_like_linux(thread, pairs):
    km_sock, _ = pairs(socket.SOCK_STREAM)
    linux_sock, _ = pairs(socket.SOCK_STREAM)
    for how in (3, -1 & 0xFFFFFFFF, socket.SHUT_RD, socket.SHUT_RDWR):
        assert call(thread, "shutdown", km_sock, how) == native("shutdown", linux_sock, how)
    lone = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    try:
        assert call(thread, "shutdown", lone.fileno(), 0) == \
            native("shutdown", lone.fileno(), 0)
    finally:
        lone.close()
    assert call(thread, "shutdown", thread.proc.fds.km_base, 0) == -errno.EBADF


# ---- sendmsg, recvmsg -------------------------------------------------------------------

class Message:
    """A struct msghdr and what it points to, in guest memory or in host memory."""

    def __init__(self, put, name: bytes | None = None, namelen: int | None = None,
                 chunks: list[bytes] | None = None, control: bytes | None = None,
                 controllen: int | None = None, iovlen: int | None = None) -> None:
        iov = b""
        self.buffers = []
        for chunk in chunks or []:
            address = put(chunk)
            self.buffers.append((address, len(chunk)))
            iov += struct.pack("<QQ", address, len(chunk))
        name_ptr = put(name) if name is not None else 0
        control_ptr = put(control) if control is not None else 0
        self.address = put(MSGHDR.pack(
            name_ptr, len(name or b"") if namelen is None else namelen,
            put(iov) if iov else 0, len(chunks or []) if iovlen is None else iovlen,
            control_ptr, len(control or b"") if controllen is None else controllen, 0))
        self.name, self.control = name_ptr, control_ptr


def _rights(*fds: int) -> bytes:
    return CMSG_RIGHTS.pack(16 + 4 * len(fds), SOL_SOCKET, SCM_RIGHTS) + \
        struct.pack(f"<{len(fds)}i", *fds).ljust((4 * len(fds) + 7) & ~7, b"\0")


def _read_msghdr(read, address: int) -> tuple:
    return MSGHDR.unpack(read(address, MSGHDR.size))


def test_sendmsg_recvmsg_with_rights_like_linux(thread, guest, pairs, fds):
    km_a, km_b = pairs()
    linux_a, linux_b = pairs()
    passed = os.open(os.devnull, os.O_RDONLY)
    fds.append(passed)
    sent = Message(guest.put, chunks=[b"two ", b"chunks"], control=_rights(passed))
    assert call(thread, "sendmsg", km_a, sent.address, 0) == 10
    linux_sent = Message(host, chunks=[b"two ", b"chunks"], control=_rights(passed))
    assert native("sendmsg", linux_a, linux_sent.address, 0) == 10
    km = Message(guest.put, name=bytes(128), chunks=[bytes(4), bytes(16)],
                 control=bytes(64))
    linux = Message(host, name=bytes(128), chunks=[bytes(4), bytes(16)],
                    control=bytes(64))
    assert call(thread, "recvmsg", km_b, km.address, 0) == \
        native("recvmsg", linux_b, linux.address, 0) == 10
    km_hdr = _read_msghdr(guest.read, km.address)
    linux_hdr = _read_msghdr(ctypes.string_at, linux.address)
    # namelen, controllen, flags as Linux wrote them (the pointers differ, of course)
    assert (km_hdr[1], km_hdr[5], km_hdr[6]) == (linux_hdr[1], linux_hdr[5], linux_hdr[6])
    assert b"".join(guest.read(a, n) for a, n in km.buffers) == b"two chunks" + bytes(10)
    km_cmsg = guest.read(km.control, 20)
    linux_cmsg = ctypes.string_at(linux.control, 20)
    assert km_cmsg[:16] == linux_cmsg[:16]  # the same header; the descriptors are new ones
    received = struct.unpack_from("<i", km_cmsg, 16)[0]
    fds += [received, struct.unpack_from("<i", linux_cmsg, 16)[0]]
    assert os.path.samestat(os.fstat(received), os.fstat(passed))


def test_recvmsg_truncation_flags(thread, guest, pairs, fds):
    km_a, km_b = pairs()
    linux_a, linux_b = pairs()
    passed = os.open(os.devnull, os.O_RDONLY)
    fds.append(passed)
    for a in (km_a, linux_a):
        socket.socket(fileno=os.dup(a)).sendmsg([b"0123456789"],
                                                [(SOL_SOCKET, SCM_RIGHTS,
                                                  struct.pack("<ii", passed, passed))])
    km = Message(guest.put, chunks=[bytes(4)], control=bytes(20))
    linux = Message(host, chunks=[bytes(4)], control=bytes(20))
    assert call(thread, "recvmsg", km_b, km.address, 0) == \
        native("recvmsg", linux_b, linux.address, 0) == 4
    km_hdr = _read_msghdr(guest.read, km.address)
    linux_hdr = _read_msghdr(ctypes.string_at, linux.address)
    assert (km_hdr[1], km_hdr[5], km_hdr[6]) == (linux_hdr[1], linux_hdr[5], linux_hdr[6])
    assert km_hdr[6] & (MSG_TRUNC | MSG_CTRUNC) == MSG_TRUNC | MSG_CTRUNC
    for control in (guest.read(km.control, 20), ctypes.string_at(linux.control, 20)):
        fds.append(struct.unpack_from("<i", control, 16)[0])


@pytest.mark.parametrize("direction", ["sendmsg", "recvmsg"])
def test_messages_and_partly_mapped_buffers(thread, guest, twin, pairs, direction):
    """A datagram is never cut to the mapped part of its buffers: EFAULT, as Linux."""
    km_a, km_b = pairs()
    linux_a, linux_b = pairs()
    t = twin([RW, HOLE], b"d" * PAGE)
    pieces = [(0, 20), (PAGE - 50, 100)]  # the second buffer runs into the hole
    km_iov = guest.put(b"".join(struct.pack("<QQ", t.guest + o, n) for o, n in pieces))
    linux_iov = host(b"".join(struct.pack("<QQ", t.host + o, n) for o, n in pieces))
    km_msg = guest.put(MSGHDR.pack(0, 0, km_iov, 2, 0, 0, 0))
    linux_msg = host(MSGHDR.pack(0, 0, linux_iov, 2, 0, 0, 0))
    if direction == "sendmsg":
        assert native("sendmsg", linux_a, linux_msg, 0) == -errno.EFAULT
        assert call(thread, "sendmsg", km_a, km_msg, 0) == -errno.EFAULT
    else:
        os.write(km_a, b"r" * 120)
        os.write(linux_a, b"r" * 120)
        assert native("recvmsg", linux_b, linux_msg, 0) == -errno.EFAULT
        assert call(thread, "recvmsg", km_b, km_msg, 0) == -errno.EFAULT


def test_rights_may_carry_only_the_guests_descriptors(thread, guest, pairs, fds):
    a, b = pairs()
    base = thread.proc.fds.km_base
    for bad in (base, base + 1, -1 & 0xFFFFFFFF):
        message = Message(guest.put, chunks=[b"x"],
                          control=_rights(0, struct.unpack("<i", struct.pack("<I", bad))[0]))
        assert call(thread, "sendmsg", a, message.address, 0) == -errno.EBADF
    with pytest.raises(BlockingIOError):
        os.read(b, 10)  # nothing was sent
    closed = closed_fd()
    km = Message(guest.put, chunks=[b"x"], control=_rights(closed))
    linux = Message(host, chunks=[b"x"], control=_rights(closed))
    assert call(thread, "sendmsg", a, km.address, 0) == \
        native("sendmsg", a, linux.address, 0) == -errno.EBADF


@pytest.mark.parametrize("case", ["iovlen", "msg", "iov", "first buffer", "control",
                                  "name", "km fd"])
def test_msghdr_errors(thread, guest, pairs, case):
    a, _ = pairs()
    kwargs: dict = {"chunks": [b"x"]}
    if case == "iovlen":
        kwargs["iovlen"] = 1025
    elif case == "control":
        kwargs["control"], kwargs["controllen"] = None, 16
    elif case == "name":
        kwargs["name"], kwargs["namelen"] = None, 16
    km = Message(guest.put, **kwargs)
    linux = Message(host, **kwargs)
    km_address, linux_address = km.address, linux.address
    if case == "msg":
        km_address = linux_address = BAD
    elif case in ("iov", "first buffer", "control", "name"):
        field = {"iov": 16, "first buffer": None, "control": 32, "name": 0}[case]
        if field is None:  # the iovec's base
            iov = _read_msghdr(guest.read, km_address)[2]
            guest.mm.write(iov, struct.pack("<Q", BAD))
            iov = _read_msghdr(ctypes.string_at, linux_address)[2]
            ctypes.memmove(iov, struct.pack("<Q", BAD), 8)
        else:
            guest.mm.write(km_address + field, struct.pack("<Q", BAD))
            ctypes.memmove(linux_address + field, struct.pack("<Q", BAD), 8)
    if case == "km fd":
        assert call(thread, "sendmsg", thread.proc.fds.km_base, km_address, 0) == -errno.EBADF
        assert call(thread, "recvmsg", thread.proc.fds.km_base, km_address, 0) == -errno.EBADF
        return
    assert call(thread, "sendmsg", a, km_address, 0) == native("sendmsg", a, linux_address, 0)


def test_sendmsg_clamps_a_long_name(thread, guest, fds):
    receiver = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    receiver.bind(("127.0.0.1", 0))
    sender = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    port = receiver.getsockname()[1]
    fds += [receiver.detach(), sender.detach()]
    name = struct.pack("<H", socket.AF_INET) + struct.pack(">H", port) + \
        socket.inet_aton("127.0.0.1")
    linux = Message(host, name=name.ljust(200, b"\0"), chunks=[b"x"])
    km = Message(guest.put, name=name.ljust(200, b"\0"), chunks=[b"x"])
    assert native("sendmsg", fds[-1], linux.address, 0) == 1
    assert call(thread, "sendmsg", fds[-1], km.address, 0) == 1


def test_recvmsg_reports_the_name_length_even_when_it_copies_none(thread, guest, fds):
    receiver = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM | socket.SOCK_NONBLOCK)
    receiver.bind(abstract("rx0")[2:].decode("latin-1"))
    sender = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
    sender.bind(abstract("tx0")[2:].decode("latin-1"))
    for _ in range(2):  # one for Linux, one for km
        sender.sendto(b"x", abstract("rx0")[2:].decode("latin-1"))
    rx, tx = receiver.detach(), sender.detach()
    fds += [rx, tx]
    linux = Message(host, name=bytes(16), namelen=0, chunks=[bytes(4)])
    km = Message(guest.put, name=bytes(16), namelen=0, chunks=[bytes(4)])
    assert native("recvmsg", rx, linux.address, 0) == 1
    assert call(thread, "recvmsg", rx, km.address, 0) == 1
    assert _read_msghdr(guest.read, km.address)[1] == \
        _read_msghdr(ctypes.string_at, linux.address)[1] == len(abstract("tx0"))


MMSGHDR = 64


def _mmsg_vector(put, read, chunks: list[bytes]) -> int:
    """An array of struct mmsghdr, one buffer each, msg_len 0."""
    headers = [Message(put, chunks=[c]) for c in chunks]
    return put(b"".join(read(h.address, MSGHDR.size) + bytes(8) for h in headers))


def test_sendmmsg_recvmmsg_like_linux(thread, guest, pairs):
    km_a, km_b = pairs()
    linux_a, linux_b = pairs()
    km_vec = _mmsg_vector(guest.put, guest.read, [b"one", b"two", b"three"])
    linux_vec = _mmsg_vector(host, ctypes.string_at, [b"one", b"two", b"three"])
    assert call(thread, "sendmmsg", km_a, km_vec, 3, 0) == \
        native("sendmmsg", linux_a, linux_vec, 3, 0) == 3
    assert [struct.unpack_from("<I", guest.read(km_vec + i * MMSGHDR + 56, 4))[0]
            for i in range(3)] == [3, 3, 5]
    km_in = _mmsg_vector(guest.put, guest.read, [bytes(8)] * 4)
    linux_in = _mmsg_vector(host, ctypes.string_at, [bytes(8)] * 4)
    assert call(thread, "recvmmsg", km_b, km_in, 4, MSG_DONTWAIT, 0) == \
        native("recvmmsg", linux_b, linux_in, 4, MSG_DONTWAIT, 0) == 3
    for i in range(4):
        assert guest.read(km_in + i * MMSGHDR + 56, 4) == \
            ctypes.string_at(linux_in + i * MMSGHDR + 56, 4)
    assert call(thread, "recvmmsg", km_b, km_in, 4, MSG_DONTWAIT, 0) == \
        native("recvmmsg", linux_b, linux_in, 4, MSG_DONTWAIT, 0) == -errno.EAGAIN
    assert call(thread, "sendmmsg", km_a, km_vec, 0, 0) == \
        native("sendmmsg", linux_a, linux_vec, 0, 0) == 0
    assert call(thread, "sendmmsg", km_a, BAD, 1, 0) == native("sendmmsg", linux_a, BAD, 1, 0) \
        == -errno.EFAULT
    for name in ("sendmmsg", "recvmmsg"):
        assert call(thread, name, thread.proc.fds.km_base, km_vec, 1, 0, 0) == -errno.EBADF


# ---- hostile registers ---------------------------------------------------------------------

NOT_SWEPT: dict[str, str] = {}  # every handler of the family is swept


@pytest.mark.parametrize("name", sorted(set(family.HANDLERS) - set(NOT_SWEPT)))
def test_hostile_registers_give_errors_never_crashes(thread, name):
    hostile_registers_leave_km_untouched(thread, name)
