#!/usr/bin/env python3
"""Warm start against cold start: `km hello` through a warm server (km --server) and cold,
with `python3 -S -c pass` and the native hello as yardsticks, run alternately.

    .venv/bin/python benchmarks/warm_start.py [--runs N] [--km PATH] [--cold-km PATH]
                                              HELLO

--km is the km the client runs as (default .venv/bin/km, whose launcher takes the warm
path before importing anything of km); the server is started from it, on a socket in a
temporary directory, and stopped at the end. Prints best and median wall-clock ms of
each command (spawn to reaped), and the client's own share: the same client against a
stand-in server that answers "exit 0" as soon as it has read the request.
"""

from __future__ import annotations

import argparse
import os
import socket
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent


def timed(argv: list[str], env: dict[str, str]) -> float:
    """Wall-clock ms from spawn to reaped; output discarded."""
    devnull = os.open(os.devnull, os.O_WRONLY)
    try:
        start = time.perf_counter()
        pid = os.posix_spawn(argv[0], argv, env, file_actions=[(os.POSIX_SPAWN_DUP2, devnull, 1)])
        _, status = os.waitpid(pid, 0)
        elapsed = (time.perf_counter() - start) * 1e3
    finally:
        os.close(devnull)
    if os.waitstatus_to_exitcode(status) != 0:
        raise SystemExit(f"{argv} failed: {status}")
    return elapsed


def answer_at_once(listener: socket.socket) -> None:
    """The stand-in server: read a request, close its descriptors, say exit status 0."""
    while True:
        conn, _ = listener.accept()
        with conn:
            data, ancdata, _, _ = conn.recvmsg(1 << 16, socket.CMSG_SPACE(253 * 4))
            size = int.from_bytes(data[:8], "little") + 8
            while len(data) < size:
                data += conn.recv(size - len(data))
            for _level, _kind, fds in ancdata:
                for i in range(0, len(fds), 4):
                    os.close(int.from_bytes(fds[i:i + 4], sys.byteorder))
            conn.sendall(b"X\0\0\0\0")


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("hello", type=Path)
    parser.add_argument("--runs", type=int, default=40)
    parser.add_argument("--km", default=str(REPO / ".venv" / "bin" / "km"))
    parser.add_argument("--cold-km", help="km for the cold figure (default: --km)")
    parser.add_argument("--python", default=sys.executable)
    args = parser.parse_args()
    hello = str(args.hello.resolve())
    base = {k: v for k, v in os.environ.items() if k != "KM_SERVER"}
    with tempfile.TemporaryDirectory() as tmp:
        sock = f"{tmp}/km.sock"
        server = subprocess.Popen([args.km, "--server", sock], env=base,
                                  stdin=subprocess.DEVNULL)
        try:
            while not os.path.exists(sock):
                if server.poll() is not None:
                    raise SystemExit("the server did not start")
                time.sleep(0.01)
            warm_env = dict(base, KM_SERVER=sock)
            stand_in = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
            stand_in.bind(f"{tmp}/stand-in.sock")
            stand_in.listen(16)
            threading.Thread(target=answer_at_once, args=(stand_in,), daemon=True).start()
            commands = {
                "km hello, warm": ([args.km, hello], warm_env),
                "client alone": ([args.km, hello], dict(base, KM_SERVER=f"{tmp}/stand-in.sock")),
                "km hello, cold": ([args.cold_km or args.km, hello], base),
                "python3 -S -c pass": ([args.python, "-S", "-c", "pass"], base),
                "native hello": ([hello], base),
            }
            for argv, env in commands.values():  # warm-up
                timed(argv, env)
            times: dict[str, list[float]] = {name: [] for name in commands}
            for _ in range(args.runs):
                for name, (argv, env) in commands.items():
                    times[name].append(timed(argv, env))
        finally:
            server.terminate()
            server.wait()
    python = statistics.median(times["python3 -S -c pass"])
    print(f"{'command':24} {'best ms':>8} {'median ms':>10} {'median / python -S':>19}")
    for name, values in times.items():
        median = statistics.median(values)
        print(f"{name:24} {min(values):8.2f} {median:10.2f} {median / python:19.2f}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
