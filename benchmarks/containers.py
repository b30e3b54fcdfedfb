"""krun against runc: the same bundle (a static hello as the whole root file system),
`run` end to end, and what a container's processes cost in memory.

    sudo .venv/bin/python benchmarks/containers.py [--runs N] [--krun PATH] [--runc PATH]

- `krun run` vs `runc run` (and `km hello` alone, the cold start krun adds to runc's
  work): medians and bests of N runs each, in alternation, wall clock around the
  command; target: krun run <= runc run + one km cold start.
- Memory: the resident memory of the container's first process, a sleeping busybox,
  under each runtime: krun's extra is km's (its Python, its VM's tables) beyond the
  payload's own pages.

Benchmarks never fail on a timing: the exit status is 0 unless something broke.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
PAYLOADS = Path(__file__).resolve().parent / "payloads"


def build_bundle(directory: Path, krun: str) -> Path:
    bundle = directory / "bundle"
    rootfs = bundle / "rootfs"
    (rootfs / "bin").mkdir(parents=True)
    for name in ("proc", "dev", "sys", "tmp"):
        (rootfs / name).mkdir()
    subprocess.run(["musl-gcc", "-static", "-O2", "-o", str(rootfs / "bin" / "hello"),
                    str(PAYLOADS / "hello.c")], check=True)
    shutil.copy("/bin/busybox", rootfs / "bin" / "busybox")
    subprocess.run([krun, "spec", "--bundle", str(bundle)], check=True)
    config = json.loads((bundle / "config.json").read_text())
    config["process"].update(terminal=False, args=["/bin/hello"])
    (bundle / "config.json").write_text(json.dumps(config))
    return bundle


def timed(argv: list[str], cwd: Path) -> float:
    start = time.perf_counter()
    done = subprocess.run(argv, cwd=cwd, capture_output=True)
    elapsed = time.perf_counter() - start
    if done.returncode != 0 or b"hello" not in done.stdout:
        raise RuntimeError(f"{argv[0]}: status {done.returncode}: {done.stderr.decode()}")
    return elapsed


def run_times(krun: str, runc: str, km: str, bundle: Path, runs: int) -> dict[str, list[float]]:
    state = bundle.parent / "state"
    commands = {
        "runc run": [runc, "--root", str(state / "runc"), "run", "bench"],
        "krun run": [krun, "--root", str(state / "krun"), "run", "bench"],
        "km hello": [km, str(bundle / "rootfs" / "bin" / "hello")],
    }
    for argv in commands.values():  # warm-up (page cache, the first build of caches)
        timed(argv, bundle)
    times: dict[str, list[float]] = {name: [] for name in commands}
    for _ in range(runs):
        for name, argv in commands.items():
            times[name].append(timed(argv, bundle))
    return times


def container_rss(runtime: str, bundle: Path, name: str) -> int:
    """The resident memory of a container's first process (a sleeping busybox), from the
    host's /proc: under krun that process is km, VM and payload together."""
    config_path = bundle / "config.json"
    saved = config_path.read_text()
    config = json.loads(saved)
    config["process"]["args"] = ["/bin/busybox", "sleep", "5"]
    config_path.write_text(json.dumps(config))
    state = bundle.parent / "state" / name
    try:
        subprocess.run([runtime, "--root", str(state), "run", "-d", f"mem-{name}"], cwd=bundle,
                       check=True, stdout=subprocess.DEVNULL)
        shown = subprocess.run([runtime, "--root", str(state), "state", f"mem-{name}"],
                               check=True, capture_output=True).stdout
        pid = json.loads(shown)["pid"]
        time.sleep(0.5)  # (a benchmark: let the payload settle before reading)
        with open(f"/proc/{pid}/status") as f:
            rss = next(int(line.split()[1]) for line in f if line.startswith("VmRSS"))
        subprocess.run([runtime, "--root", str(state), "delete", "--force", f"mem-{name}"],
                       stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        return rss * 1024
    finally:
        config_path.write_text(saved)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--runs", type=int, default=10)
    parser.add_argument("--krun", default=str(ROOT / ".venv" / "bin" / "krun"))
    parser.add_argument("--km", default=str(ROOT / ".venv" / "bin" / "km"))
    parser.add_argument("--runc", default=shutil.which("runc") or "runc")
    args = parser.parse_args()
    if os.geteuid() != 0:
        print("containers.py: containers need root", file=sys.stderr)
        return 1
    with tempfile.TemporaryDirectory(prefix="krun-bench-") as tmp:
        bundle = build_bundle(Path(tmp), args.krun)
        times = run_times(args.krun, args.runc, args.km, bundle, args.runs)
        print(f"{'command':<10} {'median':>9} {'best':>9}   ({args.runs} runs each)")
        medians = {}
        for name, samples in times.items():
            medians[name] = statistics.median(samples)
            print(f"{name:<10} {medians[name] * 1e3:>7.1f}ms {min(samples) * 1e3:>7.1f}ms")
        target = medians["runc run"] + medians["km hello"]
        print(f"krun run / runc run: {medians['krun run'] / medians['runc run']:.2f}x; "
              f"target krun run <= runc run + km cold start = {target * 1e3:.1f} ms: "
              f"{'met' if medians['krun run'] <= target else 'not met'}")
        rss = {name: container_rss(path, bundle, name)
               for name, path in (("runc", args.runc), ("krun", args.krun))}
        print(f"resident memory of a sleeping container's process: runc {rss['runc'] / 2**20:.1f}"
              f" MiB, krun {rss['krun'] / 2**20:.1f} MiB (km beyond the payload: "
              f"{(rss['krun'] - rss['runc']) / 2**20:.1f} MiB)")
        print(json.dumps({"medians_ms": {k: round(v * 1e3, 2) for k, v in medians.items()},
                          "rss_bytes": rss}))
    return 0


if __name__ == "__main__":
    sys.exit(main())
