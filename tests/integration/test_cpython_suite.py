"""CPython's own regression suite (Debian's libpython3.11-testsuite), run by Debian's
dynamically linked /usr/bin/python3 under km: each module below must pass under km
exactly as it does natively: 60 of them, a representative slice of the whole suite that
runs in CI time (scripts/cpython-suite.sh runs all of it; the README has the tally)."""

from __future__ import annotations

import os
import re

import pytest

#: Quick modules: the language, the standard library's pure parts, files and descriptors.
MODULES = """
test_abc test_binascii test_bisect test_bool test_complex test_contextlib test_copy
test_csv test_dataclasses test_defaultdict test_dict test_difflib test_enum test_epoll
test_errno test_fcntl test_fileio test_float test_fnmatch test_fractions test_grp
test_hashlib test_heapq test_hmac test_int test_ipaddress test_list test_long test_math
test_mmap test_operator test_popen test_posixpath test_pwd test_range test_resource
test_sched test_secrets test_slice test_stat test_string test_tempfile test_textwrap
test_tuple test_typing test_urlparse test_userdict test_userlist test_uuid test_zlib
""".split()

#: The operating-system modules: processes, signals, descriptors, sockets, threads,
#: terminals, the event loop. Each takes tens of seconds. (test_subprocess, which takes
#: minutes, is left to scripts/cpython-suite.sh, with the rest of the suite: the README
#: has its figures.)
SYSTEM_MODULES = """
test_os test_posix test_signal test_eintr test_socket test_io
test_threading test_pty test_asyncio.test_events
""".split()

#: Cases left out natively and under km alike: test_socket's VSOCK cases wait forever
#: in vsock_accept natively on these machines (VMs whose host answers no vsock).
MODULE_ARGS = {"test_socket": ("--ignore", "*VSOCK*")}

PYTHON = "/usr/bin/python3"
SUITE = "/usr/lib/python3.11/test/regrtest.py"


def _outcome(text: str) -> tuple[str, ...]:
    """The per-module verdict lines of regrtest's summary, without timings."""
    lines = []
    for line in text.splitlines():
        line = re.sub(r"\s*\(\d+(\.\d+)?\s*(ms|sec)\)", "", line.strip())
        if re.match(r"^(\d+ tests? OK\.|\d+ tests? failed|Tests result: )", line):
            lines.append(line)
    return tuple(lines)


@pytest.mark.skipif(not os.path.exists(SUITE), reason="libpython3.11-testsuite not installed")
@pytest.mark.parametrize("module", MODULES + [
    pytest.param(name, marks=pytest.mark.slow) for name in SYSTEM_MODULES])
def test_cpython_regression_module_passes_under_km_as_natively(run_both, module):
    """One regrtest module per km process: each starts Python anew, as a user would."""
    runs = run_both([PYTHON, "-m", "test", module, *MODULE_ARGS.get(module, ())],
                    timeout=900)
    assert runs.native.returncode == 0, runs.native.out[-2000:]
    assert "Tests result: SUCCESS" in runs.native.out
    assert runs.km.returncode == 0, runs.km.out[-3000:] + runs.km.err[-2000:]
    assert _outcome(runs.km.out) == _outcome(runs.native.out)
