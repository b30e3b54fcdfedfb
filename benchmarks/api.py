"""kontain.run's latency against subprocess.run natively, bubblewrap and the km command
line, and from a kontain.Pool (its warm server; a snapshot of a warmed-up python3), and
throughput 2 at a time (issue 14's benchmark; docs/python-api.md, "Latency").

    .venv/bin/python benchmarks/api.py [--runs N]

Each command takes one turn per round (alternation), so a drift in the host's load hits
all alike; the best and the median of N runs each are printed. bwrap is timed where it
is installed (Debian's bubblewrap: --ro-bind / /, --unshare-all, its own /dev, /proc, /tmp).
"""

from __future__ import annotations

import argparse
import shutil
import statistics
import subprocess
import sys
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import kontain  # noqa: E402
from kontain import Policy  # noqa: E402

COMMAND = ["/usr/bin/python3", "-c", "print(1)"]
#: A snippet that needs what a service's warm-up would import.
IMPORTS = "import json, sqlite3, decimal"
WITH_IMPORTS = ["/usr/bin/python3", "-c", f"{IMPORTS}; print(1)"]
BWRAP = ["bwrap", "--ro-bind", "/", "/", "--unshare-all", "--die-with-parent", "--dev",
         "/dev", "--proc", "/proc", "--tmpfs", "/tmp"]


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--runs", type=int, default=15)
    runs = parser.parse_args().runs
    started = time.perf_counter()
    server = kontain.Pool(2)
    print(f"Pool(2) started in {(time.perf_counter() - started) * 1e3:.0f} ms")
    started = time.perf_counter()
    snapshot = kontain.Pool(2, warm=kontain.Warm(["/usr/bin/python3", "-c", IMPORTS]))
    print(f"Pool(2, warm=Warm(...)) started (snapshot made) in "
          f"{(time.perf_counter() - started) * 1e3:.0f} ms")
    try:
        measure(runs, server, snapshot)
    finally:
        server.close()
        snapshot.close()


def measure(runs: int, server: kontain.Pool, snapshot: kontain.Pool) -> None:
    contenders = {
        "subprocess.run, native": lambda: subprocess.run(COMMAND, capture_output=True),
        "km command line": lambda: subprocess.run(kontain.km_command() + COMMAND,
                                                  capture_output=True),
        "kontain.run": lambda: kontain.run(COMMAND, capture_output=True),
        "kontain.run, strict": lambda: kontain.run(COMMAND, capture_output=True,
                                                   policy=Policy.strict()),
    }
    contenders["Pool, warm server"] = lambda: server.run(COMMAND, capture_output=True)
    contenders["Pool, snapshot"] = lambda: snapshot.run(COMMAND, capture_output=True)
    contenders["Pool, snapshot, strict"] = lambda: snapshot.run(COMMAND, capture_output=True,
                                                                policy=Policy.strict())
    contenders["kontain.run, imports"] = lambda: kontain.run(WITH_IMPORTS, capture_output=True)
    contenders["Pool, warm server, imports"] = lambda: server.run(WITH_IMPORTS,
                                                                  capture_output=True)
    contenders["Pool, snapshot, imports"] = lambda: snapshot.run(WITH_IMPORTS,
                                                                 capture_output=True)
    if shutil.which("bwrap"):
        contenders["bwrap"] = lambda: subprocess.run(BWRAP + COMMAND, capture_output=True)
    times: dict[str, list[float]] = {name: [] for name in contenders}
    for _ in range(runs):
        for name, run in contenders.items():
            started = time.perf_counter()
            result = run()
            times[name].append(time.perf_counter() - started)
            if result.returncode != 0 or result.stdout != b"1\n":
                raise SystemExit(f"{name} failed: {result}")
    for name, values in times.items():
        print(f"{name:28} best {min(values) * 1e3:7.1f} ms   median "
              f"{statistics.median(values) * 1e3:7.1f} ms")
    for name in ("kontain.run", "Pool, warm server", "Pool, snapshot",
                 "subprocess.run, native"):
        run = contenders[name]
        started = time.perf_counter()
        with ThreadPoolExecutor(2) as pool:
            list(pool.map(lambda _, run=run: run(), range(20)))
        print(f"{name}, 20 runs 2 at a time: {20 / (time.perf_counter() - started):.1f}/s")


if __name__ == "__main__":
    main()
