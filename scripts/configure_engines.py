"""Register krun with the container engines installed on this machine (run as root by
scripts/setup.sh; idempotent):

    configure_engines.py KRUN_PATH

- Podman: /etc/containers/containers.conf.d/50-kontain.conf names the runtime `krun`
  (`podman --runtime krun`). Where root cannot raise its hard RLIMIT_NOFILE (a sandbox
  without CAP_SYS_RESOURCE), podman's own default rlimits (nofile 1048576) fail with
  every runtime, runc included: the file then sets the hard limits this machine has.
- Docker: /etc/docker/daemon.json gains the runtime `krun` (`docker run --runtime=krun`),
  and, unless already set, the vfs storage driver and no iptables, which dockerd needs
  on these machines (no overlay-on-overlay, no iptables in the sandbox kernel). A running
  dockerd is sent SIGHUP, which reloads its runtimes.
- containerd: /etc/containerd/config.toml gains the CRI runtime handler `krun`: the runc
  shim with BinaryName set to krun, which a Kubernetes RuntimeClass names
  (docs/kubernetes/). containerd reads it when it (re)starts.
"""

from __future__ import annotations

import json
import os
import resource
import signal
import subprocess
import sys
import tomllib
from pathlib import Path

PODMAN_CONF = Path("/etc/containers/containers.conf.d/50-kontain.conf")
DOCKER_CONF = Path("/etc/docker/daemon.json")
CONTAINERD_CONF = Path("/etc/containerd/config.toml")
CRI_RUNTIMES = 'plugins."io.containerd.grpc.v1.cri".containerd.runtimes'


def configure_podman(krun: str) -> None:
    lines = ["# Written by kontain's scripts/setup.sh.", "[engine.runtimes]",
             f"krun = [{json.dumps(krun)}]"]
    ulimits = _ulimits_root_cannot_raise()
    if ulimits:
        lines = lines[:1] + ["[containers]", f"default_ulimits = {json.dumps(ulimits)}",
                             ""] + lines[1:]
    _write(PODMAN_CONF, "\n".join(lines) + "\n")


def _ulimits_root_cannot_raise() -> list[str]:
    """podman gives root's containers nofile = fs.nr_open and nproc = its hard limit's
    maximum; where setrlimit refuses that, the limits this machine allows instead."""
    nr_open = int(Path("/proc/sys/fs/nr_open").read_text())
    hard_nofile = resource.getrlimit(resource.RLIMIT_NOFILE)[1]
    if hard_nofile >= nr_open or _can_raise(resource.RLIMIT_NOFILE, nr_open):
        return []
    # podman sets its own RLIMIT_NPROC to 32768 as it starts (strace shows it), so that
    # is the most its containers can be given without CAP_SYS_RESOURCE.
    hard_nproc = min(resource.getrlimit(resource.RLIMIT_NPROC)[1] & (1 << 63) - 1, 32768)
    return [f"nofile={hard_nofile}:{hard_nofile}", f"nproc={hard_nproc}:{hard_nproc}"]


def _can_raise(which: int, value: int) -> bool:
    probe = ("import resource, sys; "
             f"resource.setrlimit({which}, ({value}, {value}))")
    return subprocess.run([sys.executable, "-S", "-c", probe],
                          stderr=subprocess.DEVNULL).returncode == 0


def configure_docker(krun: str) -> None:
    config = json.loads(DOCKER_CONF.read_text()) if DOCKER_CONF.exists() else {}
    config.setdefault("runtimes", {})["krun"] = {"path": krun}
    config.setdefault("storage-driver", "vfs")
    config.setdefault("iptables", False)
    _write(DOCKER_CONF, json.dumps(config, indent=2) + "\n")
    for pid in _pids_of("dockerd"):
        os.kill(pid, signal.SIGHUP)


def configure_containerd(krun: str) -> None:
    text = CONTAINERD_CONF.read_text() if CONTAINERD_CONF.exists() else "version = 2\n"
    config = tomllib.loads(text)
    runtimes = (config.get("plugins", {}).get("io.containerd.grpc.v1.cri", {})
                .get("containerd", {}).get("runtimes", {}))
    section = "\n# kontain: krun for Kubernetes' RuntimeClass `krun` (docs/kubernetes/)\n"
    if "runc" not in runtimes:
        # Runtimes a config names replace containerd's built-in list: without runc, the
        # default runtime, the CRI plugin would not load.
        section += f'[{CRI_RUNTIMES}.runc]\n  runtime_type = "io.containerd.runc.v2"\n'
    section += (f"[{CRI_RUNTIMES}.krun]\n"
                f'  runtime_type = "io.containerd.runc.v2"\n'
                f"  [{CRI_RUNTIMES}.krun.options]\n"
                f"    BinaryName = {json.dumps(krun)}\n")
    if "krun" in runtimes:
        if runtimes["krun"].get("options", {}).get("BinaryName") != krun:
            print(f"configure_engines: {CONTAINERD_CONF} has its own krun runtime; "
                  "left as it is", file=sys.stderr)
        return
    if config.get("version") != 2:
        print(f"configure_engines: {CONTAINERD_CONF} is not a version 2 config; add "
              f"docs/kubernetes/containerd-krun.toml by hand", file=sys.stderr)
        return
    tomllib.loads(text + section)  # still valid TOML, or no change at all
    _write(CONTAINERD_CONF, text + section)


def _pids_of(name: str) -> list[int]:
    pids = []
    for entry in os.listdir("/proc"):
        if entry.isdigit():
            try:
                if Path(f"/proc/{entry}/comm").read_text().strip() == name:
                    pids.append(int(entry))
            except OSError:
                pass
    return pids


def _write(path: Path, text: str) -> None:
    if path.exists() and path.read_text() == text:
        return
    path.parent.mkdir(parents=True, exist_ok=True)
    temporary = path.with_name(path.name + ".kontain-new")
    temporary.write_text(text)
    temporary.replace(path)
    print(f"configure_engines: wrote {path}")


def main() -> int:
    if len(sys.argv) != 2:
        print("usage: configure_engines.py KRUN_PATH", file=sys.stderr)
        return 2
    krun = os.path.abspath(sys.argv[1])
    for engine, configure in (("podman", configure_podman), ("dockerd", configure_docker),
                              ("containerd", configure_containerd)):
        if any(Path(d, engine).exists() for d in ("/usr/bin", "/usr/sbin")):
            configure(krun)
    return 0


if __name__ == "__main__":
    sys.exit(main())
