"""execve from inside km --root: a program that exists only on the host (outside the root)
must not run, by any path to it; a `#!` script runs when its interpreter exists inside
the root and fails with ENOENT when the interpreter exists only outside it - exactly as
in a native chroot. tests/security/payloads/exec.c forks and execs one target per run.
"""

from __future__ import annotations

import shutil

import pytest

from .conftest import FLAVOUR, UP

TARGETS = ["inside", "host-absolute", "host-climbing", "host-link", "host-link-top",
           "host-via-dir-link", "proc-root", "script-inside", "script-outside",
           "script-climbing"]


@pytest.mark.parametrize("target", TARGETS)
def test_exec_stays_inside_the_root(sandbox, escape_payloads, target):
    payload = escape_payloads.build("exec", FLAVOUR)
    host = sandbox.host
    # On the host, outside the root: a program and an interpreter that must never run.
    for name in ("hostprog", "host-interp"):
        shutil.copy(payload, host / name)
    native_root, km_root = sandbox.pair(payload)
    for root in (native_root, km_root):
        (root / "bin").mkdir()
        (root / "inside-only").mkdir()
        shutil.copy(payload, root / "bin" / "inside")
        shutil.copy(payload, root / "inside-only" / "interp")  # exists only in the root
        scripts = {"script-inside": "#!/inside-only/interp interp\n",
                   "script-outside": f"#!{host}/host-interp interp\n",
                   "script-climbing": f"#!{UP}{host}/host-interp interp\n"}
        for name, text in scripts.items():
            (root / "bin" / name).write_text(text)
            (root / "bin" / name).chmod(0o755)
    native = sandbox.native(native_root, "run", target, str(host))
    under_km = sandbox.km(km_root, "run", target, str(host))
    sandbox.check_same(native, under_km)
    if target in ("inside", "script-inside"):  # the oracle shows these do run
        assert "ran " in native.out
