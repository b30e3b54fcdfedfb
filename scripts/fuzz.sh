#!/usr/bin/env bash
# The long fuzzing campaign (issue 8's acceptance: at least 10^6 random system calls
# over at least 100 seeds and 2,000 ELF mutants, with no km traceback, internal error
# or hang). Prints the figures that go in the README, then every distinct failure with
# its reproducer; exits 1 if there was any. Extra arguments go to the driver and win:
#   scripts/fuzz.sh                       # the campaign
#   scripts/fuzz.sh --first-seed 1000     # another 100 seeds
#   scripts/fuzz.sh --seeds 10 --mutants 100 --cli 100
set -euo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
cd "$root"
exec "$root/.venv/bin/python" -m fuzz.run --seeds 100 --calls 12000 --mutants 2000 \
	--cli 1000 --jobs 2 "$@"
