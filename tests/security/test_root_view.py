"""How / looks from inside km --root: a plain directory, as in a chroot. `ls -la /`,
`stat /`, `readlink /` and the `..` entries must not show / as a link, nor name the
root's place on the host. busybox runs the same commands in a native chroot of the same
root (they change nothing) and under km; the outputs must be the same.
"""

from __future__ import annotations

import shutil

from .conftest import BASE_ENV, CHROOT, run

BUSYBOX = "/bin/busybox"

SCRIPT = """
ls -la /
echo ---
ls -lad / /. /.. /../..
echo ---
stat -c '%n|%F|%N|%h|%a|%u|%g|%s' / /. /.. /../.. /bin/..
echo ---
readlink /; echo "readlink / -> $?"
readlink /..; echo "readlink /.. -> $?"
readlink -f /..
cd /.. && pwd && pwd -P
cd /../../.. && ls -a
cd /bin/../.. && pwd -P && ls -a
"""


def test_root_is_a_plain_directory(sandbox):
    root = sandbox.make_root("root", BUSYBOX)
    (root / "bin").mkdir()
    shutil.copy(BUSYBOX, root / "bin" / "busybox")
    argv = ["/bin/busybox", "sh", "-c", SCRIPT]
    sandbox.seal()
    native = run([CHROOT, str(root), *argv], cwd=sandbox.top, env=BASE_ENV)
    under_km = run([*sandbox.km_command, "--root", str(root), *argv], cwd=sandbox.top,
                   env=BASE_ENV)
    problems = []
    if str(root) in under_km.out or str(sandbox.top) in under_km.out:
        problems.append(f"the root's host path ({root}) shows inside it")
    sandbox.check_same(native, under_km, *problems, compare_roots=False)
