"""km --policy's own checks, one module at a time (the payload-level behaviour is in
tests/integration/test_api_policy.py)."""

from __future__ import annotations

import errno
import ipaddress
import json

import pytest

from kontain.linux.numbers import NUMBERS
from kontain.monitor import netpolicy, procpolicy, statsfd
from kontain.monitor.enforce import Denials, Enforcement
from kontain.monitor.policy import Policy
from kontain.monitor.syscall_filter import ALLOW, ERRNO, KILL_PROCESS


@pytest.mark.parametrize("address,loopback", [
    ("127.0.0.1", True), ("127.255.0.9", True), ("::1", True), ("::ffff:127.0.0.1", True),
    ("10.0.0.1", False), ("::", False), ("0.0.0.0", False), ("::ffff:10.0.0.1", False),
])
def test_loopback_addresses(address, loopback):
    assert netpolicy.is_loopback(ipaddress.ip_address(address)) is loopback


def test_socket_families_by_mode():
    denials = Denials(log=False)
    none = netpolicy.NetworkPolicy("none", (), denials)
    loop = netpolicy.NetworkPolicy("loopback", (), denials)
    AF_UNIX, AF_INET, AF_INET6, AF_NETLINK, STREAM, DGRAM = 1, 2, 10, 16, 1, 2
    assert none.socket_ok(AF_UNIX, DGRAM) == 0
    assert none.socket_ok(AF_INET, STREAM) == errno.EAFNOSUPPORT
    assert loop.socket_ok(AF_INET6, STREAM | 0o4000) == 0  # (SOCK_NONBLOCK)
    assert loop.socket_ok(AF_INET, DGRAM) == errno.EACCES
    assert loop.socket_ok(AF_NETLINK, DGRAM) == errno.EAFNOSUPPORT


def test_allow_connect():
    policy = netpolicy.NetworkPolicy("host", ("10.0.0.5:80", "[2001:db8::1]:*", "localhost:9"),
                                     Denials(log=False))
    ip = ipaddress.ip_address
    assert policy.connect_ok(ip("10.0.0.5"), 80)
    assert not policy.connect_ok(ip("10.0.0.5"), 81)
    assert policy.connect_ok(ip("2001:db8::1"), 443)
    assert policy.connect_ok(ip("::ffff:10.0.0.5"), 80)
    assert policy.connect_ok(ip("127.0.0.1"), 1234)  # loopback stays reachable
    assert not policy.connect_ok(ip("192.0.2.1"), 80)
    assert netpolicy.NetworkPolicy("host", (), Denials(log=False)).connect_ok(ip("192.0.2.1"), 1)


def test_process_tokens():
    denials = Denials(log=True)
    limits = procpolicy.Limits(3, None, denials)
    limits.acquire()
    limits.acquire()  # the first process holds one of the three
    with pytest.raises(OSError) as raised:
        limits.acquire()
    assert raised.value.errno == errno.EAGAIN
    limits.release()
    limits.acquire()
    assert denials.counts == {"fork": 1} and denials.log == [{"call": "fork",
                                                              "verdict": "EAGAIN"}]


def test_denials_keep_a_bounded_log():
    denials = Denials(log=True)
    for _ in range(Denials.LOG_MAX + 5):
        denials.record("mkdir", "EPERM")
    assert denials.counts == {"mkdir": Denials.LOG_MAX + 5}
    assert len(denials.log) == Denials.LOG_MAX


def test_allow_and_deny_become_a_seccomp_profile():
    enforcement = Enforcement(Policy(allow={"read", "write", "mkdir"},
                                     deny={"mkdir": "EACCES", "ptrace": "kill"}))
    compiled = enforcement.syscall_filter()
    args = (0,) * 6
    assert compiled.decide(NUMBERS["read"], args).kind == ALLOW
    denied = compiled.decide(NUMBERS["mkdir"], args)
    assert (denied.kind, denied.errno) == (ERRNO, errno.EACCES)
    assert compiled.decide(NUMBERS["ptrace"], args).kind == KILL_PROCESS
    other = compiled.decide(NUMBERS["chmod"], args)
    assert (other.kind, other.errno) == (ERRNO, errno.EPERM)


def test_stats_json():
    value = {"a": [1, 2.5, {"b": 'q"\\\n\x01é'}], "t": True, "n": None}
    assert json.loads(statsfd.dumps(value)) == value
