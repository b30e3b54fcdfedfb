#!/usr/bin/env bash
# Set up km on a fresh Debian/Ubuntu machine, then run a demo payload in its own VM.
#   scripts/setup.sh            install, then run the demo
#   scripts/setup.sh --no-demo  install only (what .ci/run uses)
set -euo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)

if [ ! -e /dev/kvm ]; then
	echo "setup: /dev/kvm is missing: km runs payloads in KVM virtual machines and needs it" >&2
	exit 1
fi

# Toolchains the tests build their payloads with, the real programs they run, runc (krun's
# tests run each container with runc too, as the oracle), the container engines krun
# plugs into, debootstrap for the local images (no registry is reachable), and gdb (the
# core dump, snapshot and gdb stub tests read with the real one).
packages=(gcc binutils musl-tools busybox-static bash-static golang-go python3 python3-venv perl
	sqlite3 lua5.4 libpython3.11-testsuite nodejs default-jre-headless runc crun podman
	docker.io containerd debootstrap curl gdb)
missing=()
for p in "${packages[@]}"; do
	dpkg -s "$p" >/dev/null 2>&1 || missing+=("$p")
done
if ((${#missing[@]})); then
	sudo=""
	if [ "$(id -u)" != 0 ]; then
		if ! command -v sudo >/dev/null; then
			echo "setup: these packages are missing: ${missing[*]}" >&2
			echo "setup: run this script as root (or install sudo) to install them" >&2
			exit 1
		fi
		sudo=sudo
	fi
	$sudo apt-get update -q
	DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -q "${missing[@]}"
fi

python3 -m venv "$root/.venv"
"$root/.venv/bin/pip" install -q --upgrade "$root[dev]"
# pip rewrites the launchers' `#!python -S` without their -S: put it back (without it,
# every km start scans site-packages).
sed -i '1s|^\(#!.*python[0-9.]*\)$|\1 -S|' "$root/.venv/bin/km" "$root/.venv/bin/km_cli" \
	"$root/.venv/bin/krun"
# The compiled code of what km and krun import as they start, in one file the launchers
# read instead of ~100 .pyc files (kontain/startup_bundle.py; an edited source is
# imported as usual).
# (From /, so that the installed package is the one bundled, not a source tree in the cwd.)
(cd / && "$root/.venv/bin/python" -m kontain.startup_bundle "$root/.venv" >/dev/null)

# krun as a runtime of each engine (README "krun"): podman by name, dockerd by name, and
# containerd's runc shim pointed at krun for Kubernetes' RuntimeClass `krun`.
if [ "$(id -u)" = 0 ]; then
	"$root/.venv/bin/python" -S "$root/scripts/configure_engines.py" "$root/.venv/bin/krun"
elif command -v sudo >/dev/null; then
	sudo "$root/.venv/bin/python" -S "$root/scripts/configure_engines.py" "$root/.venv/bin/krun"
else
	echo "setup: not root and no sudo: krun is not registered with podman, docker, containerd" >&2
fi

if [ "${1:-}" != "--no-demo" ]; then
	mkdir -p "$root/.cache/demo"
	musl-gcc -static -O2 -o "$root/.cache/demo/hello" "$root/examples/hello.c"
	echo "+ .venv/bin/km .cache/demo/hello"
	"$root/.venv/bin/km" "$root/.cache/demo/hello"
fi
