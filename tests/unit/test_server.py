"""The warm server's pure parts: the request it reads, the limits it takes, km's option."""

from __future__ import annotations

import resource

import pytest

from kontain.cli import km
from kontain.cli import km_server as server


def request(*fields: bytes) -> bytes:
    return b"\0".join(fields)


def test_request_fields():
    body = request(b"KM1", b"18", b"0", b"4096", b"1,13", b"0,1,2,7", b"2", b"/bin/x",
                   b"", b"A=1", b"B=x=y")
    req = server.Request(body, [100, 101, 102, 103, 104])
    assert (req.umask, req.personality, req.mask) == (0o22, 0, 4096)
    assert req.ignored == {1, 13}
    assert req.targets == [0, 1, 2, 7]
    assert req.argv == ["/bin/x", ""]  # (an empty argument is kept)
    assert req.env == [b"A=1", b"B=x=y"]
    assert (req.cwd, req.fds) == (100, [101, 102, 103, 104])


@pytest.mark.parametrize("body, fds", [
    (request(b"KM2", b"18", b"0", b"0", b"", b"", b"0"), [3]),  # another protocol
    (request(b"KM1", b"18", b"0", b"0", b"", b"0", b"0"), [3]),  # a descriptor missing
    (request(b"KM1", b"18", b"0", b"0", b"", b"-1", b"0"), [3, 4]),  # a bad target
    (request(b"KM1", b"4096", b"0", b"0", b"", b"", b"0"), [3]),  # a bad umask
    (request(b"KM1", b"18", b"0", b"0", b"", b"", b"3", b"a"), [3]),  # arguments lost
    (request(b"KM1", b"x"), [3]),  # short
])
def test_bad_requests_are_declined(body, fds):
    with pytest.raises((server.Declined, ValueError)):
        server.Request(body, fds)


def test_limits_from_proc_match_getrlimit():
    limits = server._limits("self")
    assert len(limits) == 16
    for resource_id, limit in enumerate(limits):
        assert limit == resource.getrlimit(resource_id)


def test_server_option():
    assert km.parse(["--server", "/tmp/s"]).server == "/tmp/s"
    assert km.parse(["--server=/tmp/s"]).server == "/tmp/s"
    cl, status = km.command_line(["--server", "/tmp/s", "payload"])
    assert (cl, status) == (None, 2)
    cl, status = km.command_line(["--server", "/tmp/s"], allow_server=False)
    assert (cl, status) == (None, 2)
