"""Unix sockets from inside km --root: a listener on the host, outside the root, must be
out of reach by any path (absolute, climbing, through links) and by any call that takes
an address (connect, bind, sendto, sendmsg with msg_name, sendmmsg); bind must create its
socket file inside the root; and listeners on abstract names (@name) on the host must be
out of reach too.
"""

from __future__ import annotations

import secrets
import socket
from contextlib import ExitStack

from .conftest import FLAVOUR, lines_of


class HostListeners:
    """The test's listeners: two socket files in the host directory, two abstract names."""

    def __init__(self, stack: ExitStack, host_dir, abstract: str) -> None:
        def listener(kind: int, address) -> socket.socket:
            s = stack.enter_context(socket.socket(socket.AF_UNIX, kind))
            s.bind(address)
            if kind == socket.SOCK_STREAM:
                s.listen(16)
            s.setblocking(False)
            return s
        self.by_name = {
            "stream.sock": listener(socket.SOCK_STREAM, str(host_dir / "stream.sock")),
            "dgram.sock": listener(socket.SOCK_DGRAM, str(host_dir / "dgram.sock")),
            "@abstract": listener(socket.SOCK_STREAM, "\0" + abstract),
            "@abstract-dgram": listener(socket.SOCK_DGRAM, "\0" + abstract + "-dgram"),
        }

    def drain(self) -> list[str]:
        """What reached each listener since the last drain (connections, datagrams)."""
        reached = []
        for name, s in self.by_name.items():
            while True:
                try:
                    if s.type == socket.SOCK_STREAM:
                        conn, _ = s.accept()
                        conn.close()
                        reached.append(f"{name}: a connection")
                    else:
                        reached.append(f"{name}: a datagram {s.recv(4096)!r}")
                except BlockingIOError:
                    break
        return reached


def test_unix_sockets_outside_the_root_are_unreachable(sandbox, escape_payloads):
    payload = escape_payloads.build("sockets", FLAVOUR)
    native_root, km_root = sandbox.pair(payload)
    abstract = f"kontain-escape-{secrets.token_hex(8)}"
    with ExitStack() as stack:
        listeners = HostListeners(stack, sandbox.host, abstract)
        native = sandbox.native(native_root, str(sandbox.host), abstract)
        reached_natively = listeners.drain()
        under_km = sandbox.km(km_root, str(sandbox.host), abstract)
        reached_from_km = listeners.drain()

    # The chroot keeps the payload from the socket files (it reaches the abstract names:
    # a chroot shares the host's network namespace, where those live).
    assert native.returncode == 0, native.out + native.err
    assert all(r.startswith("@") for r in reached_natively), reached_natively
    problems = [f"reached the host listener {r}" for r in reached_from_km]
    native_lines, km_lines = dict(lines_of(native)), dict(lines_of(under_km))
    for what, value in km_lines.items():
        if what.startswith("abstract"):
            # An unprivileged container (its own network namespace, or Landlock's
            # abstract-socket scoping) fails these; the chroot succeeds, so it is no oracle.
            if value.startswith("OK"):
                problems.append(f"{what}: {value} (the host's abstract listener)")
        elif native_lines.get(what) != value:
            problems.append(f"{what}: km {value}, native chroot {native_lines.get(what)}")
    # (A refused abstract connect leaves nothing to send on: those steps are not tried.)
    problems += [f"{what}: not tried under km (native chroot {native_lines[what]})"
                 for what in sorted(native_lines.keys() - km_lines.keys())
                 if not what.startswith("abstract")]
    sandbox.check(under_km, *problems)
