"""Fixtures for the escape tests: a hostile payload tries to get out of `km --root DIR`.

Each test gets a ``Sandbox`` in its tmp_path:

    tmp_path/
      host/                 outside every root: what the payload must never reach
        canary              a file with a secret in it (mode 0640)
        canarydir/file      a directory (mode 0750) holding another file
      root-native/          the root of the native-chroot run (the oracle)
      root-km/              the root of the km run
        prog                the payload
        host/  <HOSTDIR>/   empty decoy directories: where a path that climbs out of
                            the root lands when it is resolved the way a chroot does

Everything outside the roots is snapshotted (type, content, mode, owner, size, link
count, mtime and ctime of every entry) before the first run and compared after each one,
so a file that changed, appeared or disappeared outside the root fails the test.

The same payload runs natively in ``chroot ROOT`` (root-native) and under
``km --root ROOT`` (root-km); the payloads print one line per attempt, so the two runs
are compared line by line, and the two roots are compared afterwards (an attempt that
creates a file must create it in the same place inside the root as a chroot does).
"""

from __future__ import annotations

import difflib
import importlib.util
import os
import secrets
import shutil
import stat
import subprocess
import sys
from pathlib import Path

import pytest


def _root_conftest():
    """tests/conftest.py as a module: its PayloadBuilder and run() are reused here.

    pytest imports each directory's conftest.py under the bare name "conftest" (and drops
    the previous one from sys.modules), so `import conftest` could give tests/unit's."""
    path = Path(__file__).resolve().parent.parent / "conftest.py"
    for module in list(sys.modules.values()):
        if getattr(module, "__file__", None) and Path(module.__file__).resolve() == path:
            return module
    spec = importlib.util.spec_from_file_location("kontain_tests_conftest", path)
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module
    spec.loader.exec_module(module)
    return module


_base = _root_conftest()
BASE_ENV = _base.BASE_ENV
PayloadBuilder = _base.PayloadBuilder
Result = _base.Result
run = _base.run

SOURCES = Path(__file__).resolve().parent / "payloads"
CACHE = _base.PAYLOAD_CACHE / "security"
#: Climbs far more levels than any test directory is deep (as UP in payloads/escape.h).
UP = "../" * 23 + ".."
#: Every payload here is a static musl binary: small, quick to build, no loader.
FLAVOUR = "musl"
RUN_TIMEOUT = 30.0
#: Absolute paths: the runs get a fixed environment whose PATH may not hold sbin.
CHROOT = shutil.which("chroot", path="/usr/sbin:/sbin:/usr/bin:/bin") or "/usr/sbin/chroot"
UNSHARE = shutil.which("unshare", path="/usr/bin:/bin") or "/usr/bin/unshare"
MOUNT = shutil.which("mount", path="/usr/bin:/bin") or "/usr/bin/mount"


@pytest.fixture(scope="session")
def escape_payloads() -> PayloadBuilder:
    return PayloadBuilder(source_dir=SOURCES, cache=CACHE)


# --------------------------------------------------------------------------------------
# The host side: what must not change


def _entry(path: Path) -> tuple:
    st = os.lstat(path)
    if stat.S_ISREG(st.st_mode):
        content = path.read_bytes()
    elif stat.S_ISLNK(st.st_mode):
        content = os.readlink(path).encode()
    else:
        content = b""
    return (stat.filemode(st.st_mode), st.st_uid, st.st_gid, st.st_size, st.st_nlink,
            st.st_mtime_ns, st.st_ctime_ns, content)


def snapshot(top: Path, exclude: set[Path]) -> dict[str, tuple]:
    """Every entry under top (top included), except the excluded subtrees."""
    state = {".": _entry(top)}
    for dirpath, dirnames, filenames in os.walk(top):
        here = Path(dirpath)
        dirnames[:] = [d for d in dirnames if here / d not in exclude]
        for name in dirnames + filenames:
            path = here / name
            if path not in exclude:
                state[str(path.relative_to(top))] = _entry(path)
    return state


def describe_changes(before: dict[str, tuple], after: dict[str, tuple]) -> list[str]:
    fields = ("mode", "uid", "gid", "size", "nlink", "mtime_ns", "ctime_ns", "content")
    problems = []
    for name in sorted(before.keys() | after.keys()):
        old, new = before.get(name), after.get(name)
        if old is None:
            problems.append(f"host: {name} appeared outside the root: {new}")
        elif new is None:
            problems.append(f"host: {name} disappeared from outside the root")
        elif old != new:
            changed = [f"{f} {a!r} -> {b!r}" for f, a, b in zip(fields, old, new, strict=True)
                       if a != b]
            problems.append(f"host: {name} changed: {'; '.join(changed)}")
    return problems


def tree(root: Path, skip: tuple[str, ...] = ("prog",)) -> dict[str, tuple]:
    """What a root holds, for comparing two roots: names, types, modes, owners, sizes,
    contents and link targets (no times or inode numbers, which always differ)."""
    entries = {}
    for dirpath, dirnames, filenames in os.walk(root):
        here = Path(dirpath)
        for name in dirnames + filenames:
            path = here / name
            relative = str(path.relative_to(root))
            if relative in skip:
                continue
            st = os.lstat(path)
            if stat.S_ISREG(st.st_mode):
                content = path.read_bytes()[:200]
            elif stat.S_ISLNK(st.st_mode):
                content = os.readlink(path).encode()
            else:
                content = b""
            size = st.st_size if not stat.S_ISDIR(st.st_mode) else 0
            entries[relative] = (stat.filemode(st.st_mode), st.st_uid, st.st_gid, size,
                                 content)
    return entries


def tree_differences(native_root: Path, km_root: Path) -> list[str]:
    a, b = tree(native_root), tree(km_root)
    problems = []
    for name in sorted(a.keys() | b.keys()):
        if a.get(name) != b.get(name):
            problems.append(f"root: {name}: chroot left {a.get(name)}, km left {b.get(name)}")
    return problems


def text_diff(native: str, under_km: str) -> str:
    lines = difflib.unified_diff(native.splitlines(keepends=True),
                                 under_km.splitlines(keepends=True),
                                 "native chroot", "km --root", n=2)
    return "".join(line if line.endswith("\n") else line + "\n" for line in lines)


# --------------------------------------------------------------------------------------
# The sandbox


class Sandbox:
    """A host directory with canaries, roots for the payload, and the runs."""

    def __init__(self, top: Path, km: list[str]) -> None:
        self.top = top
        self.km_command = km
        self.host = top / "host"
        self.canary = self.host / "canary"
        self.canarydir = self.host / "canarydir"
        #: The canary's content: a run whose output holds it has read the host file.
        self.secret = f"CANARY-{secrets.token_hex(8)}"
        self.host.mkdir()
        self.canary.write_text(self.secret + "\n")
        self.canary.chmod(0o640)
        self.canarydir.mkdir()
        (self.canarydir / "file").write_text(self.secret + " in canarydir\n")
        self.canarydir.chmod(0o750)
        self.roots: list[Path] = []
        self._before: dict[str, tuple] | None = None

    # ---- roots -----------------------------------------------------------------------

    def make_root(self, name: str, payload: Path | str) -> Path:
        """A root holding the payload as /prog, /tmp, an empty /proc and the decoys."""
        if self._before is not None:
            raise RuntimeError("make every root before the first run (the host side "
                               "is snapshotted then)")
        root = self.top / name
        root.mkdir()
        shutil.copy(payload, root / "prog")
        for sub in ("tmp", "proc", "host", str(self.host).lstrip("/")):
            (root / sub).mkdir(parents=True, exist_ok=True)
        self.roots.append(root)
        return root

    def pair(self, payload: Path) -> tuple[Path, Path]:
        """(root for the native chroot run, root for the km run)."""
        return self.make_root("root-native", payload), self.make_root("root-km", payload)

    # ---- the host side ---------------------------------------------------------------

    def seal(self) -> None:
        """Take the snapshot of everything outside the roots (once, before any run)."""
        if self._before is None:
            self._before = snapshot(self.top, set(self.roots))

    def host_changes(self) -> list[str]:
        self.seal()
        return describe_changes(self._before, snapshot(self.top, set(self.roots)))

    def leaks(self, result: Result) -> list[str]:
        """The canary's secret in what a run printed means it read the host file."""
        if self.secret in result.out or self.secret in result.err:
            return [f"the payload printed the host canary's content ({self.secret})"]
        return []

    # ---- runs ------------------------------------------------------------------------

    def argv_native(self, root: Path, args: list[str], proc: bool = False) -> list[str]:
        return namespaced(root, [CHROOT, str(root), "/prog", *args], proc)

    def argv_km(self, root: Path, args: list[str], proc: bool = False,
                options: tuple[str, ...] = (), private: bool = False) -> list[str]:
        return namespaced(root, [*self.km_command, *options, "--root", str(root), "/prog",
                                 *args], proc, private)

    def native(self, root: Path, *args: str, proc: bool = False, **kwargs) -> Result:
        """The payload in a native chroot (the oracle); proc: with a procfs in the root."""
        self.seal()
        kwargs.setdefault("timeout", RUN_TIMEOUT)
        return run(self.argv_native(root, list(args), proc), cwd=self.top, **kwargs)

    def km(self, root: Path, *args: str, proc: bool = False, options: tuple[str, ...] = (),
           private: bool = False, **kwargs) -> Result:
        """The payload under km --root; proc: with a procfs in the root; private: in a
        mount namespace of its own (a seatbelt for attempts that would change the host's
        mount table if km let them through)."""
        self.seal()
        kwargs.setdefault("timeout", RUN_TIMEOUT)
        return run(self.argv_km(root, list(args), proc, options, private), cwd=self.top,
                   **kwargs)

    # ---- verdicts --------------------------------------------------------------------

    def check(self, under_km: Result, *problems: str, show_stdout: bool = True) -> None:
        """Fail with every problem found: the host side first, then the given ones."""
        found = self.host_changes() + self.leaks(under_km) + [p for p in problems if p]
        # A hostile payload must not be able to break km either.
        found += [f"km: {line.strip()}" for line in under_km.err.splitlines()
                  if "internal error" in line or line.startswith("Traceback")]
        if under_km.timed_out:
            found.insert(0, "km timed out")
        if found:
            report = [*found, "", under_km.describe()]
            if show_stdout:
                report += ["km's stdout:", under_km.out[-4000:]]
            if under_km.err:
                report += ["km's stderr:", under_km.err[-2000:]]
            pytest.fail("\n".join(report), pytrace=False)

    def check_same(self, native: Result, under_km: Result, *extra: str,
                   compare_roots: bool = True) -> None:
        """km must do what the chroot did: same lines, same status, same root afterwards,
        and the host untouched (extra: more problems the caller found). The native run
        must itself have kept to its root."""
        assert native.returncode == 0 and not self.leaks(native), (
            f"the native chroot run failed, so it is no oracle:\n{native.describe()}\n"
            f"{native.out}{native.err}")
        problems = []
        if native.out != under_km.out:
            problems.append("km's lines differ from the native chroot's:\n"
                            + text_diff(native.out, under_km.out))
        if native.returncode != under_km.returncode:
            problems.append(f"exit status: native {native.returncode}, "
                            f"km {under_km.returncode}")
        if compare_roots and len(self.roots) >= 2:
            problems += tree_differences(self.roots[0], self.roots[1])
        self.check(under_km, *problems, *extra, show_stdout=native.out == under_km.out)


def namespaced(root: Path, argv: list[str], proc: bool, private: bool = False) -> list[str]:
    """argv, or argv in a private mount namespace of its own (private), with a real procfs
    at ROOT/proc (proc). Whatever is mounted there goes away with the namespace when the
    run ends: nothing to clean up on the host. The command execs, keeping its pid."""
    if not (proc or private):
        return argv
    script = f'{MOUNT} -t proc proc "$0/proc" && exec "$@"' if proc else 'exec "$@"'
    return [UNSHARE, "--mount", "--propagation", "private", "--", "/bin/sh", "-c", script,
            str(root), *argv]


@pytest.fixture(scope="session")
def as_root() -> None:
    """The oracle runs in chroot(2) and mount namespaces: both need root."""
    if os.geteuid() != 0:
        pytest.fail("the escape tests run as root (chroot, mount namespaces, a procfs "
                    "mounted in the root)", pytrace=False)


@pytest.fixture
def sandbox(tmp_path, km, as_root) -> Sandbox:
    return Sandbox(tmp_path, km)


def lines_of(result: Result) -> list[tuple[str, str]]:
    """A payload's "what: result" lines, as (what, result) pairs in order."""
    pairs = []
    for line in result.out.splitlines():
        what, sep, value = line.partition(": ")
        if sep:
            pairs.append((what, value))
    return pairs


def mount_table() -> str:
    """The host's mount table, as the test process (in the host's namespace) sees it."""
    with open("/proc/self/mountinfo") as f:
        return f.read()


def spawn_victim() -> subprocess.Popen:
    """A host process outside the payload (for ptrace, signals, process_vm_readv): it
    waits for EOF on its stdin, so closing the pipe ends it without a signal."""
    return subprocess.Popen(["/bin/sh", "-c", "read line; exit 0"], stdin=subprocess.PIPE,
                            stdout=subprocess.DEVNULL)
