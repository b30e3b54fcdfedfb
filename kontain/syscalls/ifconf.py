"""Network interface ioctls on sockets: SIOCGIFCONF and the SIOCGIF*/SIOCSIF* requests
on a struct ifreq (what if_nametoindex, ifconfig and getaddrinfo's scope names use).

km's seccomp filter lets no interface ioctl reach the host (kontain.monitor.seccomp), so
km answers them itself, from what the host's rtnetlink says about its interfaces (a
netlink socket needs no privilege and works inside km's jail). Each answer is built as
Linux builds it (net/core/dev_ioctl.c, net/ipv4/devinet.c): from the guest's own 40
bytes, of which only what the kernel writes changes, with the kernel's errors in the
kernel's order: EBADF, ENOTTY for a descriptor that is no socket, EFAULT for the
structure, ENODEV for a name or index no interface has, EADDRNOTAVAIL for an interface
without that IPv4 address. Requests that change an interface are EPERM: km does not
change the host's network, as an unprivileged process may not.
"""

from __future__ import annotations

import ctypes
import errno
import struct

from kontain.linux import hostcall as host
from kontain.linux.hostcall import SyscallError
from kontain.linux.numbers import NUMBERS as NR
from kontain.mm.access import GuestFault
from kontain.syscalls.net import socket_domain

TYPE_CHECKING = False  # no typing import at run time: km start-up is timed
if TYPE_CHECKING:
    from kontain.monitor.thread import GuestThread

SIOCGIFNAME, SIOCGIFCONF, SIOCGIFFLAGS = 0x8910, 0x8912, 0x8913
SIOCGIFADDR, SIOCGIFDSTADDR, SIOCGIFBRDADDR, SIOCGIFNETMASK = 0x8915, 0x8917, 0x8919, 0x891B
SIOCGIFMETRIC, SIOCGIFMTU, SIOCGIFHWADDR, SIOCGIFSLAVE = 0x891D, 0x8921, 0x8927, 0x8929
SIOCGIFINDEX, SIOCGIFTXQLEN, SIOCGIFMAP = 0x8933, 0x8942, 0x8970
#: The IPv4 address requests, which only AF_INET (and AF_PACKET) sockets answer.
INET_REQUESTS = frozenset({SIOCGIFADDR, SIOCGIFDSTADDR, SIOCGIFBRDADDR, SIOCGIFNETMASK})
GETTERS = INET_REQUESTS | {SIOCGIFNAME, SIOCGIFCONF, SIOCGIFFLAGS, SIOCGIFMETRIC, SIOCGIFMTU,
                           SIOCGIFHWADDR, SIOCGIFSLAVE, SIOCGIFINDEX, SIOCGIFTXQLEN,
                           SIOCGIFMAP}
#: Requests that change an interface (on a struct ifreq): SIOCSIFFLAGS, SIOCSIFADDR,
#: SIOCSIFDSTADDR, SIOCSIFBRDADDR, SIOCSIFNETMASK, SIOCSIFMETRIC, SIOCSIFMTU,
#: SIOCSIFNAME, SIOCSIFHWADDR, SIOCADDMULTI, SIOCDELMULTI, SIOCDIFADDR,
#: SIOCSIFHWBROADCAST, SIOCSIFTXQLEN, SIOCSIFMAP.
SETTERS = frozenset({0x8914, 0x8916, 0x8918, 0x891A, 0x891C, 0x891E, 0x8922, 0x8923, 0x8924,
                     0x8931, 0x8932, 0x8936, 0x8937, 0x8943, 0x8971})
#: Every request this module answers (kontain.syscalls.fs sends them here).
REQUESTS = GETTERS | SETTERS

IFNAMSIZ = 16
IFREQ_SIZE = 40
IFCONF = struct.Struct("<i4xQ")  # ifc_len, ifc_buf
AF_INET, AF_PACKET, AF_NETLINK = 2, 17, 16
SOCK_RAW, SOCK_CLOEXEC, NETLINK_ROUTE = 3, 0o2000000, 0

# rtnetlink (include/uapi/linux/netlink.h, rtnetlink.h, if_link.h, if_addr.h)
NLMSGHDR = struct.Struct("<IHHII")  # length, type, flags, seq, pid
RTATTR = struct.Struct("<HH")  # length, type
IFINFOMSG = struct.Struct("<BxHiII")  # family, type, index, flags, change
IFADDRMSG = struct.Struct("<BBBBi")  # family, prefixlen, flags, scope, index
NLMSG_ERROR, NLMSG_DONE = 2, 3
NLM_F_REQUEST, NLM_F_DUMP = 0x1, 0x300
RTM_NEWLINK, RTM_GETLINK, RTM_NEWADDR, RTM_GETADDR = 16, 18, 20, 22
IFLA_ADDRESS, IFLA_IFNAME, IFLA_MTU, IFLA_TXQLEN, IFLA_MAP = 1, 3, 4, 13, 14
IFLA_EXT_MASK, IFLA_PROP_LIST, IFLA_ALT_IFNAME = 29, 52, 53
RTEXT_FILTER_SKIP_STATS = 1 << 3
IFA_ADDRESS, IFA_LOCAL, IFA_LABEL, IFA_BROADCAST = 1, 2, 3, 4
RTNL_LINK_IFMAP = struct.Struct("<QQQHBB")  # mem_start, mem_end, base_addr, irq, dma, port
NLA_TYPE_MASK = 0x3FFF  # without NLA_F_NESTED and NLA_F_NET_BYTEORDER


class Link:
    """One interface, as RTM_NEWLINK describes it."""

    __slots__ = ("index", "name", "names", "flags", "type", "mtu", "txqlen", "address",
                 "ifmap")

    def __init__(self, index: int, kind: int, flags: int, attributes: dict[int, bytes],
                 altnames: list[bytes]) -> None:
        self.index, self.type, self.flags = index, kind, flags
        self.name = _string(attributes.get(IFLA_IFNAME, b""))
        #: Every name the interface answers to (its alternative names too, as the
        #: kernel's lookups by name do).
        self.names = {self.name, *altnames}
        self.mtu = _u32(attributes.get(IFLA_MTU))
        self.txqlen = _u32(attributes.get(IFLA_TXQLEN))
        self.address = attributes.get(IFLA_ADDRESS, b"")  # absent: addr_len 0
        raw = attributes.get(IFLA_MAP, b"")
        self.ifmap = RTNL_LINK_IFMAP.unpack_from(raw) if len(raw) >= RTNL_LINK_IFMAP.size \
            else (0, 0, 0, 0, 0, 0)


class Address:
    """One IPv4 address, as RTM_NEWADDR describes it (fields in network order)."""

    __slots__ = ("index", "label", "local", "address", "broadcast", "mask")

    def __init__(self, index: int, prefixlen: int, attributes: dict[int, bytes]) -> None:
        self.index = index
        self.label = _string(attributes.get(IFA_LABEL, b""))
        self.local = _in_addr(attributes.get(IFA_LOCAL))
        self.address = _in_addr(attributes.get(IFA_ADDRESS))
        self.broadcast = _in_addr(attributes.get(IFA_BROADCAST))
        bits = min(prefixlen, 32)
        self.mask = ((0xFFFFFFFF << (32 - bits)) & 0xFFFFFFFF).to_bytes(4, "big")


def _string(raw: bytes) -> bytes:
    return raw.split(b"\0", 1)[0]


def _u32(raw: bytes | None) -> int:
    return int.from_bytes(raw[:4], "little") if raw and len(raw) >= 4 else 0


def _in_addr(raw: bytes | None) -> bytes:
    return raw[:4] if raw and len(raw) >= 4 else bytes(4)


# ---- rtnetlink ----------------------------------------------------------------------------

def _all_attributes(data: bytes, offset: int = 0) -> list[tuple[int, bytes]]:
    """(type, value) of each attribute from offset on; a malformed one ends the list."""
    out = []
    while offset + RTATTR.size <= len(data):
        length, kind = RTATTR.unpack_from(data, offset)
        if length < RTATTR.size or offset + length > len(data):
            break
        out.append((kind & NLA_TYPE_MASK, data[offset + RTATTR.size:offset + length]))
        offset += (length + 3) & ~3
    return out


def _attributes(data: bytes, offset: int) -> tuple[dict[int, bytes], list[bytes]]:
    """The attributes from offset on (the first of each type), and the alternative
    interface names nested in IFLA_PROP_LIST."""
    found: dict[int, bytes] = {}
    altnames: list[bytes] = []
    for kind, value in _all_attributes(data, offset):
        found.setdefault(kind, value)
        if kind == IFLA_PROP_LIST:
            altnames += [_string(v) for k, v in _all_attributes(value) if k == IFLA_ALT_IFNAME]
    return found, altnames


def _dump(t: GuestThread, request: int, body: bytes) -> list[tuple[int, bytes]]:
    """(type, payload) of each message of an rtnetlink dump, asked on a socket of km's
    own (out of the guest's descriptor range, closed after)."""
    sock = t.proc.fds.move_high(host.call(NR["socket"], AF_NETLINK, SOCK_RAW | SOCK_CLOEXEC,
                                          NETLINK_ROUTE))
    try:
        message = NLMSGHDR.pack(NLMSGHDR.size + len(body), request,
                                NLM_F_REQUEST | NLM_F_DUMP, 1, 0) + body
        host.call(NR["sendto"], sock, host.address_of(message), len(message), 0, 0, 0)
        buffer = ctypes.create_string_buffer(1 << 16)
        out: list[tuple[int, bytes]] = []
        while True:
            size = host.call(NR["recvfrom"], sock, ctypes.addressof(buffer), len(buffer), 0,
                             0, 0)
            data = buffer.raw[:size]
            offset = 0
            while offset + NLMSGHDR.size <= len(data):
                length, kind, _flags, seq, _pid = NLMSGHDR.unpack_from(data, offset)
                if length < NLMSGHDR.size or offset + length > len(data):
                    break
                payload = data[offset + NLMSGHDR.size:offset + length]
                offset += (length + 3) & ~3
                if seq != 1:
                    continue
                if kind == NLMSG_DONE:
                    return out
                if kind == NLMSG_ERROR:
                    code = -struct.unpack_from("<i", payload)[0] if len(payload) >= 4 else 0
                    raise SyscallError(code or errno.EIO)
                out.append((kind, payload))
            if not size:
                return out
    finally:
        host.syscall(NR["close"], sock)


def links(t: GuestThread) -> list[Link]:
    """The host's interfaces, in the order of their indexes."""
    mask = RTATTR.pack(8, IFLA_EXT_MASK) + struct.pack("<I", RTEXT_FILTER_SKIP_STATS)
    out = []
    for kind, payload in _dump(t, RTM_GETLINK, IFINFOMSG.pack(0, 0, 0, 0, 0) + mask):
        if kind != RTM_NEWLINK or len(payload) < IFINFOMSG.size:
            continue
        _family, link_type, index, flags, _change = IFINFOMSG.unpack_from(payload)
        attributes, altnames = _attributes(payload, IFINFOMSG.size)
        out.append(Link(index, link_type, flags, attributes, altnames))
    return out


def addresses(t: GuestThread) -> list[Address]:
    """The host's IPv4 addresses: by interface, in each in the kernel's order."""
    out = []
    for kind, payload in _dump(t, RTM_GETADDR, IFADDRMSG.pack(AF_INET, 0, 0, 0, 0)):
        if kind != RTM_NEWADDR or len(payload) < IFADDRMSG.size:
            continue
        family, prefixlen, _flags, _scope, index = IFADDRMSG.unpack_from(payload)
        if family == AF_INET:
            out.append(Address(index, prefixlen, _attributes(payload, IFADDRMSG.size)[0]))
    return out


# ---- the ioctls -------------------------------------------------------------------------

def ioctl(t: GuestThread, fd: int, request: int, arg: int) -> int:
    """One interface request on guest descriptor fd (see the module docstring)."""
    try:
        domain = socket_domain(fd)
    except OSError as error:
        if error.errno == errno.ENOTSOCK:
            raise SyscallError(errno.ENOTTY) from None  # a file's ioctl knows none of them
        raise
    if request == SIOCGIFCONF:
        return _ifconf(t, arg)
    ifr = bytearray(t.mm.read(arg, IFREQ_SIZE))
    if request in SETTERS:
        raise SyscallError(errno.EPERM)
    ifr[IFNAMSIZ - 1] = 0  # (whatever the request: measured)
    if request == SIOCGIFNAME:
        index = struct.unpack_from("<i", ifr, IFNAMSIZ)[0]
        link = next((x for x in links(t) if x.index == index), None)
        if link is None:
            raise SyscallError(errno.ENODEV)
        name = link.name[:IFNAMSIZ - 1] + b"\0"
        ifr[:len(name)] = name
        t.mm.write(arg, ifr)
        return 0
    name = _string(bytes(ifr[:IFNAMSIZ]))
    device = name.split(b":", 1)[0]  # "eth0:1" is eth0, labelled
    if request in INET_REQUESTS:
        if domain not in (AF_INET, AF_PACKET):
            raise SyscallError(errno.ENOTTY)
        _inet(t, ifr, request, name, device)
    else:
        link = next((x for x in links(t) if device in x.names), None)
        if link is None:
            raise SyscallError(errno.ENODEV)
        _device(ifr, request, link)
    t.mm.write(arg, ifr)
    return 0


def _device(ifr: bytearray, request: int, link: Link) -> None:
    """What net/core/dev_ioctl.c writes into the ifreq for one interface."""
    if request == SIOCGIFFLAGS:
        # (short) dev_get_flags(): the flags above 16 bits (IFF_LOWER_UP...) are lost.
        struct.pack_into("<H", ifr, IFNAMSIZ, link.flags & 0xFFFF)
    elif request == SIOCGIFMETRIC:
        struct.pack_into("<i", ifr, IFNAMSIZ, 0)
    elif request == SIOCGIFMTU:
        struct.pack_into("<I", ifr, IFNAMSIZ, link.mtu)
    elif request == SIOCGIFINDEX:
        struct.pack_into("<i", ifr, IFNAMSIZ, link.index)
    elif request == SIOCGIFTXQLEN:
        struct.pack_into("<I", ifr, IFNAMSIZ, link.txqlen)
    elif request == SIOCGIFHWADDR:
        struct.pack_into("<H", ifr, IFNAMSIZ, link.type & 0xFFFF)
        data = link.address[:14] if link.address else bytes(14)
        ifr[IFNAMSIZ + 2:IFNAMSIZ + 2 + len(data)] = data
    elif request == SIOCGIFMAP:
        mem_start, mem_end, base_addr, irq, dma, port = link.ifmap
        struct.pack_into("<QQHBBB", ifr, IFNAMSIZ, mem_start, mem_end, base_addr & 0xFFFF,
                         irq & 0xFF, dma, port)
    else:  # SIOCGIFSLAVE: no interface is a slave of this kind any more
        raise SyscallError(errno.EINVAL)


def _inet(t: GuestThread, ifr: bytearray, request: int, name: bytes, device: bytes) -> None:
    """What net/ipv4/devinet.c writes for the IPv4 address requests: the address whose
    label is the name (and, 4.4BSD style, whose address is the one given, if any)."""
    link = next((x for x in links(t) if device in x.names), None)
    if link is None:
        raise SyscallError(errno.ENODEV)
    mine = [a for a in addresses(t) if a.index == link.index and a.label == name]
    family = struct.unpack_from("<H", ifr, IFNAMSIZ)[0]
    given = bytes(ifr[IFNAMSIZ + 4:IFNAMSIZ + 8])
    chosen = next((a for a in mine if a.local == given), None) if family == AF_INET else None
    chosen = chosen or (mine[0] if mine else None)
    if chosen is None:
        raise SyscallError(errno.EADDRNOTAVAIL)
    value = {SIOCGIFADDR: chosen.local, SIOCGIFBRDADDR: chosen.broadcast,
             SIOCGIFDSTADDR: chosen.address, SIOCGIFNETMASK: chosen.mask}[request]
    ifr[IFNAMSIZ:IFNAMSIZ + 16] = struct.pack("<HH", AF_INET, 0) + value + bytes(8)


def _ifconf(t: GuestThread, arg: int) -> int:
    """SIOCGIFCONF: one ifreq (label, IPv4 address) per address while they fit in
    ifc_len bytes; with a NULL ifc_buf, the length they all take."""
    length, buf = IFCONF.unpack(t.mm.read(arg, IFCONF.size))
    total = 0
    for address in addresses(t):
        if buf:
            if length - total < IFREQ_SIZE:
                break
            entry = (address.label[:IFNAMSIZ - 1].ljust(IFNAMSIZ, b"\0")
                     + struct.pack("<HH", AF_INET, 0) + address.local).ljust(IFREQ_SIZE, b"\0")
            try:
                t.mm.write(buf + total, entry)
            except GuestFault:
                raise SyscallError(errno.EFAULT) from None
        total += IFREQ_SIZE
    t.mm.write(arg, struct.pack("<i", total))
    return 0
