"""The start-up bundle: modules come from it while their sources are unchanged, and from
the ordinary finders once a source changed; a bundle another Python wrote is ignored."""

from __future__ import annotations

import marshal
import os
import subprocess
import sys
import textwrap
from pathlib import Path

from kontain import startup_bundle

REPO = Path(__file__).resolve().parents[2]


def _in_fresh_python(venv: Path, body: str, path: Path = REPO) -> list[str]:
    """Run body in a new interpreter (-S, as the launchers) with venv's bundle
    installed; its output lines, the first saying whether the bundle was installed."""
    program = textwrap.dedent(f"""
        import sys
        sys.path[:0] = [{str(REPO)!r}, {str(path)!r}]
        from kontain.startup_bundle import install
        print("installed", install({str(venv)!r}))
    """) + textwrap.dedent(body)
    done = subprocess.run([sys.executable, "-S", "-c", program], capture_output=True,
                          text=True, timeout=60)
    assert done.returncode == 0, done.stderr
    return done.stdout.splitlines()


def test_kontain_and_standard_modules_come_from_the_bundle(tmp_path):
    assert startup_bundle.build(str(tmp_path)) > 50
    out = _in_fresh_python(tmp_path, """
        import json
        import kontain.monitor.launch as launch
        import kontain.syscalls as package
        print(type(launch.__loader__).__name__, launch.__file__.endswith("launch.py"))
        print(type(json.__loader__).__name__, json.dumps({"a": [1]}))
        print(package.__path__[0].endswith("syscalls"))
    """)
    assert out == ["installed True", "BundleFinder True", 'BundleFinder {"a": [1]}', "True"]


def test_a_source_changed_since_is_imported_as_usual(tmp_path):
    source = tmp_path / "src" / "kbprobe.py"
    source.parent.mkdir()
    source.write_text("VALUE = 'bundled'\n")
    sys.path.insert(0, str(source.parent))
    try:
        assert startup_bundle.build(str(tmp_path), roots=("kbprobe",),
                                    directories=(str(source.parent),)) == 1
    finally:
        sys.path.remove(str(source.parent))
        sys.modules.pop("kbprobe", None)
    probe = "import kbprobe; print(type(kbprobe.__loader__).__name__, kbprobe.VALUE)"
    assert _in_fresh_python(tmp_path, probe, source.parent)[1] == "BundleFinder bundled"
    source.write_text("VALUE = 'edited'\n")
    assert _in_fresh_python(tmp_path, probe, source.parent)[1] == "SourceFileLoader edited"


def test_a_bundle_of_another_python_or_checkout_or_a_broken_one_is_ignored(tmp_path):
    bundle = tmp_path / startup_bundle.FILENAME
    elsewhere = marshal.dumps(("/another/checkout/kontain", os.path.dirname(os.__file__), {}))
    for contents in (b"\x00\x01\x02\x03" + bytes(64), b"",
                     startup_bundle.MAGIC_NUMBER + (10 ** 6).to_bytes(8, "little"),
                     startup_bundle.MAGIC_NUMBER + len(elsewhere).to_bytes(8, "little")
                     + elsewhere):
        bundle.write_bytes(contents)
        assert _in_fresh_python(tmp_path, "import json")[0] == "installed False"
    assert not os.path.exists(str(bundle) + ".new")


def test_installing_leaves_no_descriptor_open(tmp_path):
    """The payload would find a low descriptor taken (the mmap module keeps a dup of the
    file's: the bundle is mapped without it)."""
    startup_bundle.build(str(tmp_path))
    program = textwrap.dedent(f"""
        import os, sys
        sys.path.insert(0, {str(REPO)!r})
        before = sorted(os.listdir("/proc/self/fd"))
        from kontain.startup_bundle import install
        assert install({str(tmp_path)!r})
        import kontain.monitor.launch
        print(before == sorted(os.listdir("/proc/self/fd")))
    """)
    done = subprocess.run([sys.executable, "-S", "-c", program], capture_output=True,
                          text=True, timeout=60)
    assert done.stdout == "True\n", done.stderr
