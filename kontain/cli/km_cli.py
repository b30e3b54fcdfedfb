"""km_cli: ask a running km for a snapshot of its payload (km --mgtpipe).

    km_cli -s SOCKET | -p PID [--live] [--label L] [--path FILE]

-s names km's management socket (km --mgtpipe SOCKET); -p finds it from km's pid (the
unix socket km listens on, from /proc). The snapshot goes to FILE (a path as the
payload sees it), else to km --snapshot, else ./kmsnap in the payload's cwd. Without
--live the payload ends once the snapshot is written. Prints the snapshot's path and
size; exit status 0, or 1 with km's reason (what cannot be saved) on stderr.
"""

from __future__ import annotations

import argparse
import json
import os
import socket
import struct
import sys

SO_ACCEPTCON = 0x10000


def socket_of(pid: int) -> str:
    """The path of the listening unix socket km (pid) holds: its --mgtpipe."""
    inodes = set()
    fd_dir = f"/proc/{pid}/fd"
    for name in os.listdir(fd_dir):
        try:
            target = os.readlink(f"{fd_dir}/{name}")
        except OSError:
            continue
        if target.startswith("socket:["):
            inodes.add(target[8:-1])
    with open(f"/proc/{pid}/net/unix") as f:
        next(f)
        for line in f:
            fields = line.split()
            if len(fields) >= 8 and fields[6] in inodes and int(fields[3], 16) & SO_ACCEPTCON:
                return fields[7]
    raise OSError(f"km {pid} has no management socket (start it with --mgtpipe PATH)")


def request(path: str, live: bool, label: str | None, target: str | None,
            pid: int | None = None) -> dict:
    conn = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    try:
        conn.connect(path)
        if pid is not None:  # (the path may have been bound again by another km since)
            peer = struct.unpack("3i", conn.getsockopt(socket.SOL_SOCKET,
                                                       socket.SO_PEERCRED, 12))[0]
            if peer != pid:
                raise OSError(f"{path} is km {peer}'s, not km {pid}'s")
        ask = {"op": "snapshot", "live": live, "label": label or "", "path": target}
        conn.sendall(json.dumps(ask).encode() + b"\n")
        data = b""
        while b"\n" not in data:
            chunk = conn.recv(4096)
            if not chunk:
                break
            data += chunk
    finally:
        conn.close()
    if not data:
        return {"ok": False, "error": "km closed the connection without an answer"}
    return json.loads(data)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="km_cli", description="Snapshot a running km "
                                     "payload (km --mgtpipe).")
    where = parser.add_mutually_exclusive_group(required=True)
    where.add_argument("-s", "--socket", help="km's management socket (km --mgtpipe)")
    where.add_argument("-p", "--pid", type=int, help="km's pid")
    parser.add_argument("--live", action="store_true", help="keep the payload running")
    parser.add_argument("--label", help="a label stored in the snapshot")
    parser.add_argument("--path", help="where the snapshot goes (the payload's view)")
    options = parser.parse_args(argv)
    try:
        path = options.socket or socket_of(options.pid)
        answer = request(path, options.live, options.label, options.path, options.pid)
    except (OSError, ValueError) as e:
        print(f"km_cli: {e}", file=sys.stderr)
        return 1
    if not answer.get("ok"):
        print(f"km_cli: {answer.get('error', 'failed')}", file=sys.stderr)
        return 1
    print(f"{answer['path']} {answer['bytes']}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
