#!/usr/bin/env bash
# Run the whole test suite (after scripts/setup.sh). Extra arguments go to pytest.
set -euo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
cd "$root"
"$root/.venv/bin/ruff" check kontain tests benchmarks fuzz
exec "$root/.venv/bin/pytest" -q "$@"
