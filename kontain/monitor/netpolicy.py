"""km --policy's network: which sockets the payload may make, and where they may go.

Checked by km on the socket calls it carries out, whoever the user is (no network
namespace needed):

- "none": only AF_UNIX sockets. socket() and socketpair() of any other family fail with
  EAFNOSUPPORT, as on a kernel built without that family; without an IPv4/IPv6 socket,
  no address can be reached.
- "loopback": AF_UNIX, and IPv4/IPv6 *stream* sockets that connect to and bind on
  loopback addresses only (127.0.0.0/8, ::1, ::ffff:127.0.0.0/104). A bind to the
  wildcard address binds to loopback instead (so a server still starts, unreachable from
  outside). Datagram and raw IPv4/IPv6 sockets fail with EACCES: a datagram can name its
  destination in each send, and km does not copy every send's address.
- "host" with allow_connect: as "host", but IPv4/IPv6 sockets are stream sockets
  that connect only to the listed addresses (and loopback).

A refused connect or bind is EACCES, what Linux returns when a security module (such
as Landlock's network rules) refuses one. The address checked is a copy in km's memory,
and that copy is what the host connects to: another guest thread cannot change it in
between. TCP Fast Open (MSG_FASTOPEN, which connects from a send) is refused the same way.
"""

from __future__ import annotations

import ctypes
import errno
import ipaddress

from kontain.linux import hostcall as host
from kontain.linux.numbers import NUMBERS as NR

TYPE_CHECKING = False  # no typing import at run time: km start-up is timed
if TYPE_CHECKING:
    from collections.abc import Callable

    from kontain.monitor.enforce import Denials
    from kontain.monitor.thread import GuestThread

AF_UNIX, AF_INET, AF_INET6 = 1, 2, 10
SOCK_STREAM = 1
SOCK_TYPE_MASK = 0xF
SOL_SOCKET, SO_DOMAIN = 1, 39
MSG_FASTOPEN = 0x20000000
SOCKADDR_MAX = 128
LOOPBACK_V4 = ipaddress.ip_network("127.0.0.0/8")


def _family_of_socket(fd: int) -> int:
    """The socket's own address family (EBADF, ENOTSOCK as Linux's calls give them)."""
    domain = ctypes.c_int(0)
    length = ctypes.c_uint32(4)
    host.call(NR["getsockopt"], fd, SOL_SOCKET, SO_DOMAIN, ctypes.addressof(domain),
              ctypes.addressof(length))
    return domain.value


def _address(raw: bytes) -> tuple[ipaddress.IPv4Address | ipaddress.IPv6Address, int] | None:
    """(IP, port) of an IPv4/IPv6 sockaddr; None for another family or a short one."""
    family = int.from_bytes(raw[:2], "little")
    if family == AF_INET and len(raw) >= 8:
        return ipaddress.IPv4Address(raw[4:8]), int.from_bytes(raw[2:4], "big")
    if family == AF_INET6 and len(raw) >= 24:
        return ipaddress.IPv6Address(raw[8:24]), int.from_bytes(raw[2:4], "big")
    return None


def is_loopback(ip: ipaddress.IPv4Address | ipaddress.IPv6Address) -> bool:
    if isinstance(ip, ipaddress.IPv6Address):
        if ip.ipv4_mapped is not None:
            return ip.ipv4_mapped in LOOPBACK_V4
        return ip == ipaddress.IPv6Address("::1")
    return ip in LOOPBACK_V4


def parse_allowed(entries: tuple[str, ...]) -> list[tuple[ipaddress._BaseAddress, int | None]]:
    """allow_connect's "HOST:PORT" entries (IP literals, [v6]:port, or localhost)."""
    allowed = []
    for entry in entries:
        host_part, _, port = entry.rpartition(":")
        host_part = host_part.strip("[]")
        if host_part == "localhost":
            host_part = "127.0.0.1"
        allowed.append((ipaddress.ip_address(host_part), None if port == "*" else int(port)))
    return allowed


class NetworkPolicy:
    def __init__(self, mode: str, allow_connect: tuple[str, ...], denials: Denials) -> None:
        self.mode = mode
        self.allowed = parse_allowed(allow_connect)
        self.denials = denials

    def socket_ok(self, family: int, type_: int) -> int:
        """0, or the errno socket(family, type) fails with."""
        if family == AF_UNIX:
            return 0
        if self.mode == "none":
            return errno.EAFNOSUPPORT
        if family not in (AF_INET, AF_INET6):
            return errno.EAFNOSUPPORT
        if type_ & SOCK_TYPE_MASK != SOCK_STREAM:
            return errno.EACCES
        return 0

    def connect_ok(self, ip, port: int) -> bool:
        if is_loopback(ip):
            return True
        if isinstance(ip, ipaddress.IPv6Address) and ip.ipv4_mapped is not None:
            ip = ip.ipv4_mapped
        for allowed_ip, allowed_port in self.allowed:
            if allowed_ip == ip and allowed_port in (None, port):
                return True
        return self.mode == "host" and not self.allowed


def wrap(handlers: dict[str, Callable[..., int]], mode: str, allow_connect: tuple[str, ...],
         denials: Denials) -> dict[str, Callable[..., int]]:
    """The handlers with the network policy in front of the socket calls."""
    policy = NetworkPolicy(mode, allow_connect, denials)
    out = dict(handlers)

    def refuse(name: str, code: int) -> None:
        denials.record(name, errno.errorcode.get(code, str(code)))
        raise OSError(code, "refused by the network policy")

    def make_socket(name: str, original: Callable[..., int]) -> Callable[..., int]:
        def checked(t: GuestThread, domain: int, type_: int, *rest: int) -> int:
            code = policy.socket_ok(domain & 0xFFFFFFFF, type_ & 0xFFFFFFFF)
            if code:
                refuse(name, code)
            return original(t, domain, type_, *rest)
        return checked

    def make_address_call(name: str, original: Callable[..., int]) -> Callable[..., int]:
        binding = name == "bind"

        def checked(t: GuestThread, fd: int, addr: int, addrlen: int, *rest: int) -> int:
            number = fd & 0xFFFFFFFF
            number = number - (1 << 32) if number >= 1 << 31 else number
            if not 0 <= number < t.proc.fds.km_base:
                return original(t, fd, addr, addrlen, *rest)
            try:
                family = _family_of_socket(number)
            except OSError:
                return original(t, fd, addr, addrlen, *rest)  # (EBADF, ENOTSOCK in order)
            if family not in (AF_INET, AF_INET6):
                return original(t, fd, addr, addrlen, *rest)
            length = addrlen & 0xFFFFFFFF
            if not 0 < length <= SOCKADDR_MAX:
                return original(t, fd, addr, addrlen, *rest)
            raw = bytearray(t.mm.read(addr, length))  # (EFAULT as Linux)
            parsed = _address(bytes(raw))
            if parsed is not None:
                ip, port = parsed
                if binding:
                    if ip.is_unspecified and policy.mode == "loopback":
                        # The wildcard: loopback only, in this copy.
                        if family == AF_INET:
                            raw[4:8] = bytes([127, 0, 0, 1])
                        else:
                            raw[8:24] = ipaddress.IPv6Address("::1").packed
                    elif policy.mode == "loopback" and not ip.is_unspecified \
                            and not is_loopback(ip):
                        refuse(name, errno.EACCES)
                elif not policy.connect_ok(ip, port):
                    refuse(name, errno.EACCES)
            buffer = ctypes.create_string_buffer(bytes(raw), len(raw))
            return host.call(NR[name], number, ctypes.addressof(buffer), length)
        return checked

    def make_send(name: str, flags_index: int, original: Callable[..., int]) -> Callable[..., int]:
        def checked(t: GuestThread, *args: int) -> int:
            if args[flags_index] & MSG_FASTOPEN:
                refuse(name, errno.EACCES)
            return original(t, *args)
        return checked

    for name in ("socket", "socketpair"):
        if name in out:
            out[name] = make_socket(name, out[name])
    for name in ("connect", "bind"):
        if name in out:
            out[name] = make_address_call(name, out[name])
    for name, index in (("sendto", 3), ("sendmsg", 2), ("sendmmsg", 3)):
        if name in out:
            out[name] = make_send(name, index, out[name])
    return out
