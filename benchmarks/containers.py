"""krun against runc: the same bundle (a static hello as the whole root file system),
`run` end to end, the same hello as an image run by podman and docker, and what a
container's processes cost in memory.

    sudo .venv/bin/python benchmarks/containers.py [--runs N] [--krun PATH] [--runc PATH]
                                                   [--crun PATH] [--podman PATH] [--docker PATH]

- `krun run` vs `runc run` (and `km hello` alone, the cold start krun adds to runc's
  work): medians and bests of N runs each, wall clock around the command; target:
  krun run <= runc run + one km cold start.
- Engines: the same hello, alone in an image (`podman import` and `docker import` of a tar
  holding only /hello, tagged localhost/kontain-bench-hello), run by
  `podman run --rm --runtime R IMAGE /hello` for R = krun (the --krun launcher), runc
  (--runc) and crun (--crun), and by `docker run --rm --runtime=R IMAGE /hello` for
  R = krun and runc as dockerd registers them (/etc/docker/daemon.json), if dockerd
  answers. Each runtime is compared with runc under the same engine.
- Every timed command takes one turn per round (alternation), so a drift in the host's
  load hits all of them alike; one untimed probe run of each comes first and is the
  warm-up too. A runtime whose probe fails (crun on a host with cgroup v1 hybrid) is
  reported unavailable with its error instead of timed.
- Memory: the resident memory of the container's first process, a sleeping busybox,
  under each runtime: krun's extra is km's (its Python, its VM's tables) beyond the
  payload's own pages.

Benchmarks never fail on a timing: the exit status is 0 unless something broke (krun or
km failed, a run failed after its probe had passed, an image could not be built).
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import statistics
import subprocess
import sys
import tarfile
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
PAYLOADS = Path(__file__).resolve().parent / "payloads"
IMAGE = "localhost/kontain-bench-hello:latest"
TIMEOUT = 120  # seconds for one run: a hung runtime must not hang the benchmark

# A command: its argv and the directory it runs in (a bundle's `run` reads ./config.json).
Command = tuple[list[str], Path | None]


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


def build_image_tar(hello: Path, directory: Path) -> Path:
    """A tar holding only /hello, the image's whole root file system: the engine adds
    /proc, /dev, /sys and /etc's files itself, so the image costs nothing to unpack and
    the runs compare the runtimes, not the image."""
    tar_path = directory / "hello.tar"
    with tarfile.open(tar_path, "w") as tar, open(hello, "rb") as f:
        info = tar.gettarinfo(str(hello), arcname="hello")
        info.uid = info.gid = 0
        info.uname = info.gname = "root"
        info.mode = 0o755
        tar.addfile(info, f)
    return tar_path


def first_error_line(stderr: bytes) -> str:
    """The line that says why a run failed: engines print warnings and log lines first
    (podman's WARN[...], level=error msg="Removing container ..."), their verdict as
    "Error: ..." ("docker: Error response ..."), and a usage hint last (docker's
    "See 'docker run --help'")."""
    # (conmon's errors can quote a NUL byte: keep the report one printable line)
    text = "".join(c if c.isprintable() or c == "\n" else "?"
                   for c in stderr.decode(errors="replace"))
    lines = [line.strip() for line in text.splitlines() if line.strip()]
    for line in lines:
        if line.startswith(("Error", "docker: Error")):
            return line
    for line in lines:
        if "error" in line.lower():
            return line
    return lines[-1] if lines else "no message"


def timed(argv: list[str], cwd: Path | None) -> float:
    start = time.perf_counter()
    try:
        done = subprocess.run(argv, cwd=cwd, capture_output=True, timeout=TIMEOUT)
    except subprocess.TimeoutExpired as e:
        raise RuntimeError(f"no exit after {TIMEOUT} s") from e
    elapsed = time.perf_counter() - start
    if done.returncode != 0 or b"hello" not in done.stdout:
        raise RuntimeError(f"status {done.returncode}: {first_error_line(done.stderr)}")
    return elapsed


def probe(argv: list[str], cwd: Path | None) -> str | None:
    """One untimed run, which is the warm-up too (page cache, engine's image store):
    None if it printed hello, else the one line saying why not."""
    try:
        timed(argv, cwd)
    except (RuntimeError, OSError) as e:
        return str(e)
    return None


def bundle_commands(krun: str, runc: str, km: str, bundle: Path) -> dict[str, Command]:
    state = bundle.parent / "state"
    return {
        "runc run": ([runc, "--root", str(state / "runc"), "run", "bench"], bundle),
        "krun run": ([krun, "--root", str(state / "krun"), "run", "bench"], bundle),
        "km hello": ([km, str(bundle / "rootfs" / "bin" / "hello")], bundle),
    }


def engine_commands(args: argparse.Namespace, tar: Path, unavailable: dict[str, str],
                    errors: dict[str, str]) -> dict[str, Command]:
    """`ENGINE run --rm --runtime=R IMAGE /hello` for each engine that answers and takes
    the image; an engine that is missing or whose daemon does not answer is unavailable,
    one that answers but cannot import a 25 kB tar is broken."""
    commands: dict[str, Command] = {}
    engines = {
        # podman takes a runtime's path: the same krun and runc binaries as the bundle runs
        "podman": {"runc": args.runc, "krun": args.krun, "crun": args.crun},
        # dockerd takes only the names its daemon.json registers
        "docker": {"runc": "runc", "krun": "krun"},
    }
    for engine, runtimes in engines.items():
        binary = getattr(args, engine)
        try:
            info = subprocess.run([binary, "info", "--format", "{{json .}}"], capture_output=True,
                                  timeout=30)
        except (OSError, subprocess.TimeoutExpired) as e:
            unavailable[engine] = f"{binary} info: {e}"
            continue
        if info.returncode != 0:
            unavailable[engine] = f"{binary} info: {first_error_line(info.stderr)}"
            continue
        if engine == "docker":
            registered = json.loads(info.stdout).get("Runtimes") or {}
            path = (registered.get("krun") or {}).get("path")
            if path and Path(path).resolve() != Path(args.krun).resolve():
                print(f"note: dockerd's krun is {path}, not --krun {args.krun}")
        imported = subprocess.run([binary, "import", str(tar), IMAGE], capture_output=True,
                                  timeout=TIMEOUT)
        if imported.returncode != 0:
            errors[engine] = f"{binary} import: {first_error_line(imported.stderr)}"
            continue
        for runtime, path in runtimes.items():
            commands[f"{engine} {runtime}"] = (
                [binary, "run", "--rm", f"--runtime={path}", IMAGE, "/hello"], None)
    return commands


def remove_images(binaries: list[str]) -> None:
    """The image goes with the run: nothing of the benchmark stays in the engines' stores."""
    for binary in binaries:
        try:
            subprocess.run([binary, "rmi", "-f", IMAGE], capture_output=True, timeout=TIMEOUT)
        except (OSError, subprocess.TimeoutExpired):
            pass  # (a failed removal costs some disk, not the figures)


def alternate(commands: dict[str, Command], runs: int,
              errors: dict[str, str]) -> dict[str, list[float]]:
    """N rounds, each command once per round; a command that fails is dropped from the
    rounds after (its error reported), the others go on."""
    times: dict[str, list[float]] = {name: [] for name in commands}
    for _ in range(runs):
        for name, (argv, cwd) in commands.items():
            if name in errors:
                continue
            try:
                times[name].append(timed(argv, cwd))
            except RuntimeError as e:
                errors[name] = str(e)
    return {name: samples for name, samples in times.items() if name not in errors}


def reference(name: str) -> str | None:
    """What a command is compared with: runc under the same engine, or runc's own `run`."""
    if name == "km hello":
        return None
    return "runc run" if name.endswith(" run") else f"{name.split()[0]} runc"


def under_test(name: str) -> bool:
    """krun's and km's commands: their failure is a bug, not a host's limitation."""
    return "krun" in name or name.startswith("km")


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


def report(order: list[str], times: dict[str, list[float]], unavailable: dict[str, str],
           errors: dict[str, str], runs: int) -> dict[str, object]:
    """The table, the targets, and the figures for the JSON line."""
    medians = {name: statistics.median(samples) for name, samples in times.items()}
    bests = {name: min(samples) for name, samples in times.items()}
    ratios: dict[str, list[float]] = {}
    print(f"{'command':<12} {'median':>9} {'best':>9} {'med/runc':>9} {'best/runc':>9} "
          f"{'med-runc':>9}   ({runs} runs each, in alternation)")
    for name in order:
        if name in unavailable or name in errors:
            why = "unavailable" if name in unavailable else "ERROR"
            print(f"{name:<12} {why}: {unavailable.get(name) or errors[name]}")
            continue
        line = f"{name:<12} {medians[name] * 1e3:>7.1f}ms {bests[name] * 1e3:>7.1f}ms"
        ref = reference(name)
        if ref is not None and ref in medians:
            ratios[name] = [round(medians[name] / medians[ref], 3),
                            round(bests[name] / bests[ref], 3)]
            line += (f" {ratios[name][0]:>8.2f}x {ratios[name][1]:>8.2f}x "
                     f"{(medians[name] - medians[ref]) * 1e3:>+7.1f}ms")
        print(line)
    # The issue's target is the bundle's; the engines' are the same question asked through
    # podman and docker, where the engine's own work is common to both runtimes.
    targets: dict[str, bool] = {}
    if "km hello" in medians:
        for krun_name, runc_name in (("krun run", "runc run"), ("podman krun", "podman runc"),
                                     ("docker krun", "docker runc")):
            if krun_name not in medians or runc_name not in medians:
                continue
            target = medians[runc_name] + medians["km hello"]
            targets[krun_name] = medians[krun_name] <= target
            print(f"target {krun_name} <= {runc_name} + km cold start = {target * 1e3:.1f} ms: "
                  f"{'met' if targets[krun_name] else 'not met'} "
                  f"({medians[krun_name] * 1e3:.1f} ms)")
    return {"medians_ms": {k: round(v * 1e3, 2) for k, v in medians.items()},
            "bests_ms": {k: round(v * 1e3, 2) for k, v in bests.items()},
            "ratios_vs_runc": ratios, "targets_met": targets}


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--runs", type=int, default=10)
    parser.add_argument("--krun", default=str(ROOT / ".venv" / "bin" / "krun"))
    parser.add_argument("--km", default=str(ROOT / ".venv" / "bin" / "km"))
    parser.add_argument("--runc", default=shutil.which("runc") or "runc")
    parser.add_argument("--crun", default=shutil.which("crun") or "crun")
    parser.add_argument("--podman", default=shutil.which("podman") or "podman")
    # /usr/bin/docker: the client that matches the distribution's dockerd (a newer client
    # earlier in PATH may speak an API version the daemon refuses)
    parser.add_argument("--docker", default="/usr/bin/docker" if os.path.exists("/usr/bin/docker")
                        else shutil.which("docker") or "docker")
    args = parser.parse_args()
    if os.geteuid() != 0:
        print("containers.py: containers need root", file=sys.stderr)
        return 1
    unavailable: dict[str, str] = {}
    errors: dict[str, str] = {}
    with tempfile.TemporaryDirectory(prefix="krun-bench-") as tmp:
        bundle = build_bundle(Path(tmp), args.krun)
        tar = build_image_tar(bundle / "rootfs" / "bin" / "hello", Path(tmp))
        try:
            commands = bundle_commands(args.krun, args.runc, args.km, bundle)
            commands |= engine_commands(args, tar, unavailable, errors)
            for name, (argv, cwd) in commands.items():
                why = probe(argv, cwd)
                if why is not None:
                    (errors if under_test(name) else unavailable)[name] = why
            timeable = {name: command for name, command in commands.items()
                        if name not in unavailable and name not in errors}
            times = alternate(timeable, args.runs, errors)
        finally:
            # (not from an engine found unavailable: a daemon that did not answer `info`
            # would only make `rmi` wait for its timeout)
            remove_images([getattr(args, engine) for engine in ("podman", "docker")
                           if engine not in unavailable])
        for engine in ("podman", "docker"):
            if engine in unavailable or engine in errors:
                what = "unavailable" if engine in unavailable else "ERROR"
                print(f"{engine}: {what}: {unavailable.get(engine) or errors[engine]}")
        figures = report(list(commands), times, unavailable, errors, args.runs)
        try:
            rss = {name: container_rss(path, bundle, name)
                   for name, path in (("runc", args.runc), ("krun", args.krun))}
            print(f"resident memory of a sleeping container's process: runc "
                  f"{rss['runc'] / 2**20:.1f} MiB, krun {rss['krun'] / 2**20:.1f} MiB (km beyond "
                  f"the payload: {(rss['krun'] - rss['runc']) / 2**20:.1f} MiB)")
        except (subprocess.CalledProcessError, OSError, StopIteration, KeyError) as e:
            rss = {}
            errors["memory"] = str(e)
            print(f"memory: ERROR: {e}")
        print(json.dumps({"runs": args.runs, **figures, "rss_bytes": rss,
                          "unavailable": unavailable, "errors": errors}))
    return 1 if errors else 0


if __name__ == "__main__":
    sys.exit(main())
