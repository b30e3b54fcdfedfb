"""Benchmarks for threads, processes and language runtimes under km, against native.

    .venv/bin/python benchmarks/runtimes.py [--km PATH]

- futex ping-pong between two threads, and thread create+join (threads as vCPUs);
- fork+exit+wait and fork+exec+wait round trips, and the memory 20 idle forked
  children of a payload with 200 MiB touched really cost (copy-on-write must hold);
- Debian's python3: `-c pass` start-up, a pure-Python CPU loop, and reading a 100 MiB
  file in 64 KiB chunks (with the VM exits counted by km -S);
- memory: the first touch of each page of 10 MiB and 100 MiB of fresh anonymous memory
  (timed inside the payload);
- real programs: `gcc -O2 hello.c` (driver, cc1, as, collect2, ld) and a busybox sh
  script of 100 external commands.

Each figure is the best of a few runs; ratios are km / native time unless said.
Benchmarks never fail on a timing: the exit status is 0 unless something broke.
"""

from __future__ import annotations

import argparse
import os
import re
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
PAYLOADS = Path(__file__).resolve().parent / "payloads"
CACHE = ROOT / ".cache" / "bench"
PYTHON = "/usr/bin/python3"


def build(name: str) -> Path:
    CACHE.mkdir(parents=True, exist_ok=True)
    out = CACHE / name
    source = PAYLOADS / f"{name}.c"
    if not out.exists() or out.stat().st_mtime < source.stat().st_mtime:
        subprocess.run(["musl-gcc", "-static", "-O2", "-o", str(out), str(source)], check=True)
    return out


def best_time(argv: list[str], runs: int = 3) -> float:
    best = float("inf")
    for _ in range(runs):
        start = time.perf_counter()
        subprocess.run(argv, check=True, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        best = min(best, time.perf_counter() - start)
    return best


def per_item(argv: list[str], n: int, runs: int = 3) -> float:
    """Seconds per item: (t(n) - t(0)) / n, so start-up is not counted."""
    return (best_time(argv + [str(n)], runs) - best_time(argv + ["0"], runs)) / n


def row(label: str, native: float, under_km: float, unit: str, scale: float) -> None:
    print(f"{label:<34} native {native * scale:10.2f} {unit:<3} km {under_km * scale:10.2f} "
          f"{unit:<3} km/native {under_km / native:8.2f}")


def private_memory_kib(pids: list[int]) -> int:
    """Sum of proportional set sizes: shared copy-on-write pages count once in all."""
    total = 0
    for pid in pids:
        try:
            text = Path(f"/proc/{pid}/smaps_rollup").read_text()
        except OSError:
            continue
        match = re.search(r"^Pss:\s+(\d+) kB", text, re.M)
        total += int(match.group(1)) if match else 0
    return total


def process_tree(root: int) -> list[int]:
    pids, frontier = [root], [root]
    while frontier:
        parent = frontier.pop()
        try:
            children = Path(f"/proc/{parent}/task/{parent}/children").read_text().split()
        except OSError:
            continue
        for child in map(int, children):
            pids.append(child)
            frontier.append(child)
    return pids


def cow_memory(argv: list[str]) -> int:
    proc = subprocess.Popen(argv + ["200", "20"], stdout=subprocess.PIPE, text=True)
    try:
        assert proc.stdout is not None
        proc.stdout.readline()  # "ready"
        time.sleep(0.5)
        return private_memory_kib(process_tree(proc.pid))
    finally:
        for pid in reversed(process_tree(proc.pid)):
            try:
                os.kill(pid, 9)
            except ProcessLookupError:
                pass
        proc.wait()


def self_timed(argv: list[str], runs: int = 3) -> float:
    """The best of the figures the payload prints about itself."""
    return min(float(subprocess.run(argv, check=True, capture_output=True, text=True).stdout)
               for _ in range(runs))


def busybox_script(directory: Path) -> Path:
    """A script of 100 external busybox commands (each a fork and an exec)."""
    commands = ["/bin/busybox true", "/bin/busybox basename /a/b/c", "/bin/busybox expr 1 + 2",
                "/bin/busybox echo hi", "/bin/busybox cat /etc/hostname"]
    script = directory / "hundred.sh"
    script.write_text("".join(f"{commands[i % len(commands)]} >/dev/null\n"
                              for i in range(100)))
    return script


def hypercalls(km: str, argv: list[str]) -> int:
    result = subprocess.run([km, "-S", *argv], capture_output=True, text=True)
    match = re.search(r"total hypercalls\s+(\d+)", result.stderr)
    return int(match.group(1)) if match else -1


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--km", default=str(ROOT / ".venv" / "bin" / "km"))
    km = parser.parse_args().km
    pingpong, create = build("futex_pingpong"), build("thread_create")
    fork_wait, cow, hello = build("fork_wait"), build("cow_children"), build("hello")

    print("threads")
    row("futex ping-pong round trip", per_item([str(pingpong)], 20000),
        per_item([km, str(pingpong)], 1000), "us", 1e6)
    row("thread create + join", per_item([str(create)], 2000),
        per_item([km, str(create)], 100), "us", 1e6)

    print("processes")
    row("fork + exit + wait", per_item([str(fork_wait)], 200),
        per_item([km, str(fork_wait)], 20), "ms", 1e3)
    native_exec = (best_time([str(fork_wait), "100", str(hello)])
                   - best_time([str(fork_wait), "0"])) / 100
    km_exec = (best_time([km, str(fork_wait), "10", str(hello)])
               - best_time([km, str(fork_wait), "0"])) / 10
    row("fork + exec + wait", native_exec, km_exec, "ms", 1e3)
    native_kib, km_kib = cow_memory([str(cow)]), cow_memory([km, str(cow)])
    print(f"{'20 children of a 200 MiB payload':<34} native {native_kib / 1024:10.1f} MiB km "
          f"{km_kib / 1024:10.1f} MiB (20 copies would be {21 * 200} MiB)")

    if shutil.which(PYTHON):
        print("python3")
        row("python3 -c pass", best_time([PYTHON, "-c", "pass"], 5),
            best_time([km, PYTHON, "-c", "pass"], 5), "ms", 1e3)
        loop = "x = 0\nfor i in range(3_000_000): x += i * i % 7\n"
        native_cpu = best_time([PYTHON, "-c", loop]) - best_time([PYTHON, "-c", "pass"])
        km_cpu = best_time([km, PYTHON, "-c", loop]) - best_time([km, PYTHON, "-c", "pass"])
        print(f"{'pure-Python CPU loop':<34} native {native_cpu:10.2f} s   km "
              f"{km_cpu:10.2f} s   throughput km/native {native_cpu / km_cpu:5.3f}")
        with tempfile.NamedTemporaryFile(dir=CACHE, delete=False) as f:
            f.write(os.urandom(1 << 20) * 100)
            data = f.name
        try:
            read = ("import sys\nf = open(sys.argv[1], 'rb', buffering=0)\n"
                    "while f.read(65536): pass\n")
            row("read 100 MiB in 64 KiB chunks", best_time([PYTHON, "-c", read, data]),
                best_time([km, PYTHON, "-c", read, data]), "ms", 1e3)
            print(f"{'':<34} VM exits: {hypercalls(km, [PYTHON, '-c', read, data])} "
                  f"(1600 reads + start-up)")
        finally:
            os.unlink(data)

    print("memory")
    touch = build("touch_pages")
    for mib in (10, 100):
        row(f"first touch, {mib} MiB (per 4 KiB page)", self_timed([str(touch), str(mib)]) / 1e9,
            self_timed([km, str(touch), str(mib)]) / 1e9, "us", 1e6)

    print("programs")
    with tempfile.TemporaryDirectory(dir=CACHE) as scratch:
        work = Path(scratch)
        if shutil.which("gcc"):
            source = work / "hello.c"
            source.write_text('#include <stdio.h>\nint main(void) { puts("hi"); return 0; }\n')
            gcc = [shutil.which("gcc") or "gcc", "-O2", "-o", str(work / "hello"), str(source)]
            row("gcc -O2 hello.c", best_time(gcc), best_time([km, *gcc]), "ms", 1e3)
        if Path("/bin/busybox").exists():
            sh = ["/bin/busybox", "sh", str(busybox_script(work))]
            row("busybox sh, 100 commands", best_time(sh), best_time([km, *sh]), "ms", 1e3)
    return 0


if __name__ == "__main__":
    sys.exit(main())
