#!/usr/bin/env bash
# Build the local container images that krun's tests and the README use (no registry is
# reachable from these machines) and load them into container engines:
#   kontain-busybox   Debian's busybox-static, every applet a link, /etc/passwd and /etc/group
#   kontain-python    a minimal Debian 12 root (debootstrap from the package mirror) with python3
#
#   scripts/images.sh [podman] [docker] [containerd]     (no argument: all three)
#
# The root file systems are built once into .cache/images/*.tar; an engine that already
# holds an image is left alone. Names: podman localhost/kontain-busybox, docker
# kontain-busybox, containerd docker.io/library/kontain-busybox (namespace default).
# Needs root: debootstrap, and the engines' own stores.
set -euo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
cache="$root/.cache/images"
mirror=${DEBIAN_MIRROR:-http://deb.debian.org/debian}
mkdir -p "$cache"

build_busybox() {
	local tar="$cache/busybox.tar" dir
	[ -s "$tar" ] && return
	dir=$(mktemp -d)
	mkdir -p "$dir"/{bin,etc,tmp,root,home/user}
	chmod 755 "$dir"
	chmod 1777 "$dir/tmp"
	cp /bin/busybox "$dir/bin/busybox"
	for applet in $(/bin/busybox --list); do
		[ "$applet" = busybox ] || ln -s busybox "$dir/bin/$applet"
	done
	printf 'root:x:0:0:root:/root:/bin/sh\nuser:x:1000:1000:user:/home/user:/bin/sh\n' \
		>"$dir/etc/passwd"
	printf 'root:x:0:\nuser:x:1000:\n' >"$dir/etc/group"
	chown 1000:1000 "$dir/home/user"
	tar -C "$dir" -cf "$tar.part" . && mv "$tar.part" "$tar"
	rm -rf "$dir"
}

build_python() {
	local tar="$cache/python.tar" dir
	[ -s "$tar" ] && return
	dir=$(mktemp -d)
	echo "images: debootstrap of a Debian 12 root with python3 (about a minute)" >&2
	debootstrap --variant=minbase --include=python3 bookworm "$dir" "$mirror" \
		>"$cache/debootstrap.log" 2>&1 || {
		echo "images: debootstrap failed; see $cache/debootstrap.log" >&2
		exit 1
	}
	rm -rf "$dir"/var/cache/apt/archives/*.deb "$dir"/var/lib/apt/lists/*
	tar -C "$dir" -cf "$tar.part" . && mv "$tar.part" "$tar"
	rm -rf "$dir"
}

load_podman() {
	local name
	for name in busybox python; do
		podman image exists "localhost/kontain-$name" ||
			podman import -q "$cache/$name.tar" "localhost/kontain-$name" >/dev/null
	done
}

load_docker() {
	local name
	for name in busybox python; do
		/usr/bin/docker image inspect "kontain-$name" >/dev/null 2>&1 ||
			/usr/bin/docker import "$cache/$name.tar" "kontain-$name" >/dev/null
	done
}

load_containerd() {
	# containerd has no import of a root file system: podman makes the image archive.
	local name ref archive
	load_podman
	for name in busybox python; do
		ref="docker.io/library/kontain-$name:latest"
		ctr -n default images ls -q | grep -qx "$ref" && continue
		archive=$(mktemp)
		podman tag "localhost/kontain-$name" "$ref"
		podman save -q --format docker-archive -o "$archive" "$ref"
		ctr -n default images import "$archive" >/dev/null
		rm -f "$archive"
	done
}

engines=("$@")
((${#engines[@]})) || engines=(podman docker containerd)
build_busybox
build_python
for engine in "${engines[@]}"; do
	case "$engine" in
	podman | docker | containerd) "load_$engine" ;;
	*)
		echo "images: unknown engine $engine (podman, docker, containerd)" >&2
		exit 2
		;;
	esac
done
