"""Sockets over loopback: the payload as a TCP echo server (the test is its client), as a
TCP client (the test runs the server), and AF_UNIX socketpairs. Each scenario runs
natively and under km; what the payload prints and what the test's side saw must agree."""

import os
import selectors
import socket
import subprocess
import threading
import time

TIMEOUT = 20.0
MESSAGES = [b"hello\n", b"\x00\x01 binary \xff\xfe", b"x" * 10_000,
            bytes(range(256)) * 64, b"last one\n"]


def read_line(proc, deadline):
    """The payload's first stdout line, read without blocking past the deadline."""
    sel = selectors.DefaultSelector()
    sel.register(proc.stdout, selectors.EVENT_READ)
    data = b""
    while b"\n" not in data:
        remaining = deadline - time.monotonic()
        if remaining <= 0 or not sel.select(remaining):
            break
        chunk = os.read(proc.stdout.fileno(), 4096)
        if not chunk:
            break
        data += chunk
    sel.close()
    line, _, rest = data.partition(b"\n")
    return line.decode(errors="replace"), rest


def recv_exactly(sock, n):
    data = b""
    while len(data) < n:
        chunk = sock.recv(n - len(data))
        if not chunk:
            break
        data += chunk
    return data


def echo_session(argv, cwd, env):
    """Start `net server`, talk to it, and return what happened, for comparison."""
    proc = subprocess.Popen([str(a) for a in argv], cwd=cwd, env=env,
                            stdin=subprocess.DEVNULL, stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE)
    echoed, problems = [], []
    try:
        line, rest = read_line(proc, time.monotonic() + TIMEOUT)
        if not line.startswith("port "):
            problems.append(f"the first line is not the port (got {line!r})")
            proc.kill()
            out, err = proc.communicate()
        else:
            port = int(line.split()[1])
            with socket.create_connection(("127.0.0.1", port), timeout=TIMEOUT) as sock:
                for message in MESSAGES:
                    sock.sendall(message)
                    echoed.append(recv_exactly(sock, len(message)))
                sock.shutdown(socket.SHUT_WR)
                echoed.append(sock.recv(1))  # the server closes after our EOF: b""
            out, err = proc.communicate(timeout=TIMEOUT)
    except (OSError, subprocess.TimeoutExpired) as e:
        problems.append(f"{type(e).__name__}: {e}")
        proc.kill()
        out, err = proc.communicate()
        rest = b""
    return {"status": proc.returncode, "stdout": rest + out, "stderr": err,
            "echoed": echoed, "problems": problems}


def test_tcp_echo_server_payload_matches_native(payloads, flavour, km, tmp_path, base_env):
    exe = payloads.build("net", flavour)
    native = echo_session([exe, "server"], tmp_path, base_env)
    under_km = echo_session([*km, exe, "server"], tmp_path, base_env)
    assert native["problems"] == [], native
    assert native["echoed"] == MESSAGES + [b""]
    assert native["status"] == 0
    total = sum(map(len, MESSAGES))
    assert f"client closed its side after {total} bytes".encode() in native["stdout"]
    assert under_km["problems"] == [], under_km
    assert under_km["echoed"] == native["echoed"], "km's echo differs"
    assert under_km == native


REPLY = b"hello, client! this is the test server.\n"
assert len(REPLY) == 40  # net.c's client waits for exactly 40 bytes


class OneShotServer:
    """A TCP server on 127.0.0.1 for one `net client` connection: reads the request line,
    replies with REPLY, reads to EOF, says goodbye and closes."""

    def __init__(self):
        self.listener = socket.create_server(("127.0.0.1", 0))
        self.listener.settimeout(TIMEOUT)
        self.port = self.listener.getsockname()[1]
        self.request = b""
        self.after_reply = b""
        self.error = None
        self.thread = threading.Thread(target=self._serve, daemon=True)
        self.thread.start()

    def _serve(self):
        try:
            conn, _ = self.listener.accept()
            with conn:
                conn.settimeout(TIMEOUT)
                while not self.request.endswith(b"\n"):
                    chunk = conn.recv(4096)
                    if not chunk:
                        break
                    self.request += chunk
                conn.sendall(REPLY)
                while chunk := conn.recv(4096):
                    self.after_reply += chunk
                conn.sendall(b"goodbye\n")
        except OSError as e:
            self.error = e
        finally:
            self.listener.close()

    def result(self):
        self.thread.join(TIMEOUT)
        return {"request": self.request, "after_reply": self.after_reply,
                "error": repr(self.error)}


def test_tcp_client_payload_matches_native(payloads, flavour, run_native, run_km,
                                           assert_same):
    exe = payloads.build("net", flavour)
    server = OneShotServer()
    native = run_native([exe, "client", str(server.port)], timeout=TIMEOUT)
    native_seen = server.result()
    server = OneShotServer()
    under_km = run_km([exe, "client", str(server.port)], timeout=TIMEOUT)
    km_seen = server.result()
    assert native.returncode == 0, native.out + native.err
    assert native_seen == {"request": b"hello, server\n", "after_reply": b"",
                           "error": "None"}
    assert 'reply: "hello, client! this is the test server.\\n"' in native.out
    assert 'goodbye: "goodbye\\n"' in native.out
    assert_same(native, under_km)
    assert km_seen == native_seen


def test_socketpair_sendmsg_recvmsg_match_native(payloads, flavour, run_both,
                                                 assert_same):
    runs = run_both([payloads.build("net", flavour), "socketpair"])
    assert runs.native.returncode == 0, runs.native.out
    assert 'iov[1]: "t-second"' in runs.native.out
    assert_same(runs.native, runs.km)
