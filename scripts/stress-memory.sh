#!/usr/bin/env bash
# Memory that grows under running threads, many times over (issue 8's acceptance: the
# threaded-memory programs behave as natively every time). Runs each case of
# tests/payloads/thr_mem.c N times under km (default 1000 for counter, 100 for the
# others) and counts runs whose output or status differs from the native run's.
#   scripts/stress-memory.sh [RUNS]
set -euo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
runs=${1:-1000}
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
gcc -static -O2 -pthread -o "$work/thr_mem" "$root/tests/payloads/thr_mem.c"
for case in counter condvar mremap churn; do
	n=$runs
	[ "$case" = counter ] || n=$((runs / 10 > 0 ? runs / 10 : 1))
	expected=$("$work/thr_mem" "$case")
	bad=0
	SECONDS=0
	for ((i = 0; i < n; i++)); do
		got=$(timeout 60 "$root/.venv/bin/km" "$work/thr_mem" "$case" 2>&1) || { bad=$((bad + 1)); continue; }
		[ "$got" = "$expected" ] || bad=$((bad + 1))
	done
	printf '%-8s %5d runs under km, %d differed from native (%d s)\n' "$case" "$n" "$bad" \
		"$SECONDS"
done
