#!/bin/sh
# CPython's regression suite natively and under km, module by module: see scripts/cpython_suite.py.
exec "$(dirname "$0")/../.venv/bin/python" "$(dirname "$0")/cpython_suite.py" "$@"
