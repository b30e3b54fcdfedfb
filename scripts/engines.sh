#!/usr/bin/env bash
# Start the container daemons krun's tests drive, unless they run already: containerd,
# then dockerd on it (with the vfs storage driver and no iptables, from /etc/docker/daemon.json
# as scripts/setup.sh writes it). CI machines and containers have no systemd to start them.
# Podman needs no daemon. Logs: /var/log/kontain-{containerd,dockerd}.log.
set -euo pipefail

wait_for() { # wait_for SECONDS COMMAND...: until COMMAND succeeds
	local deadline=$((SECONDS + $1))
	shift
	until "$@" >/dev/null 2>&1; do
		if ((SECONDS >= deadline)); then
			echo "engines: '$*' still fails after waiting" >&2
			return 1
		fi
		sleep 0.2
	done
}

if ! ctr version >/dev/null 2>&1; then
	setsid containerd >>/var/log/kontain-containerd.log 2>&1 </dev/null &
	wait_for 60 ctr version
fi
if ! /usr/bin/docker info >/dev/null 2>&1; then
	setsid dockerd --containerd /run/containerd/containerd.sock \
		>>/var/log/kontain-dockerd.log 2>&1 </dev/null &
	wait_for 120 /usr/bin/docker info
fi
