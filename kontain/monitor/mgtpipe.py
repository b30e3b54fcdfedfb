"""km --mgtpipe PATH: a unix socket on which km takes snapshot requests from outside.

The client is km_cli (kontain/cli/km_cli.py). One request per connection, one JSON
object a line each way:

    -> {"op": "snapshot", "live": false, "label": "warm", "path": "/tmp/app.snap"}
    <- {"ok": true, "path": "/tmp/app.snap", "bytes": 123456789}
    <- {"ok": false, "error": "fd 5: a connected socket (AF_INET, SOCK_STREAM); ..."}

"path" is optional (km --snapshot, else ./kmsnap in the payload's cwd) and, like
--snapshot, a path in the payload's view. Without "live" the payload ends once the
snapshot is written (exit status 0), as with the hypercall; the reply comes first.
The socket is made before km's jail (which allows no new listening socket for km
itself); a stale file at PATH with nobody listening is replaced.
"""

from __future__ import annotations

import _thread
import errno
import json
import os
import select  # noqa: F401 - (for snapshot, before km's jail: launch.preload_snapshots)
import socket

from kontain.monitor import snapshot  # (before km's jail: see launch.preload_snapshots)
from kontain.monitor.resume import socket_in_use

TYPE_CHECKING = False  # no typing import at run time: km start-up is timed
if TYPE_CHECKING:
    from kontain.monitor.process import Process

MAX_REQUEST = 1 << 16


def listen(path: str) -> socket.socket:
    """The management socket at path (removing a dead one left there)."""
    server = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM | socket.SOCK_CLOEXEC)
    try:
        server.bind(path)
    except OSError as e:
        if e.errno != errno.EADDRINUSE or socket_in_use(path):
            server.close()
            raise
        os.unlink(path)
        server.bind(path)
    os.chmod(path, 0o600)
    server.listen(4)
    return server


def serve(proc: Process, server: socket.socket) -> None:
    """Answer requests on a host thread of km's own (not a guest thread)."""
    fd = proc.fds.move_high(server.detach())
    _thread.start_new_thread(_loop, (proc, fd))


def _loop(proc: Process, fd: int) -> None:
    server = socket.socket(fileno=fd)
    while True:
        try:
            conn, _ = server.accept()
        except OSError:
            return
        # Out of the guest's range at once (it was the lowest free number, a guest's).
        conn = socket.socket(fileno=proc.fds.move_high(conn.detach()))
        try:
            _answer(proc, conn)
        except Exception as e:  # noqa: BLE001 - a bad client must not end km
            proc.trace.log("snapshot", f"mgtpipe: {type(e).__name__}: {e}")
        finally:
            conn.close()


def _answer(proc: Process, conn: socket.socket) -> None:
    data = b""
    while b"\n" not in data and len(data) < MAX_REQUEST:
        chunk = conn.recv(4096)
        if not chunk:
            break
        data += chunk
    try:
        request = json.loads(data.split(b"\n", 1)[0] or b"{}")
        if not isinstance(request, dict) or request.get("op", "snapshot") != "snapshot":
            raise ValueError("unknown request")
    except ValueError as e:
        _reply(conn, {"ok": False, "error": f"bad request: {e}"})
        return
    live = bool(request.get("live"))
    label = str(request.get("label") or "")
    path = os.fsencode(request.get("path") or proc.options.snapshot or snapshot.DEFAULT_PATH)

    def written(size: int) -> None:
        _reply(conn, {"ok": True, "path": os.fsdecode(path), "bytes": size})
        if not live:  # (still paused: the payload runs no further)
            proc.end(proc.outcome(status=0))

    try:
        snapshot.take(proc, None, path, label.encode(), after=written)
    except snapshot.SnapshotError as e:
        proc.trace.write(f"km: snapshot refused: {e}\n")
        _reply(conn, {"ok": False, "error": f"refused: {e}"})
    except OSError as e:
        _reply(conn, {"ok": False, "error": f"{os.fsdecode(path)}: {e.strerror or e}"})


def _reply(conn: socket.socket, answer: dict) -> None:
    try:
        conn.sendall(json.dumps(answer).encode() + b"\n")
    except OSError:
        pass
