"""km --root DIR: DIR is the payload's /, and no path can lead outside it."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest

BUSYBOX = "/bin/busybox"


@pytest.fixture
def root(tmp_path: Path) -> Path:
    """A minimal root: busybox and a file; a secret outside it, and links towards it."""
    top = tmp_path / "root"
    (top / "bin").mkdir(parents=True)
    (top / "etc").mkdir()
    (top / "tmp").mkdir()
    shutil.copy(BUSYBOX, top / "bin" / "busybox")
    (top / "etc" / "hello").write_text("inside the root\n")
    secret = tmp_path / "secret"
    secret.write_text("SECRET\n")
    (top / "etc" / "absolute-link").symlink_to(secret)
    (top / "etc" / "relative-link").symlink_to("../../secret")
    return top


def km_in(run_km, root: Path, *argv: str):
    return run_km(["--root", str(root), "/bin/busybox", *argv])


def test_payload_reads_files_inside_its_root(run_km, root):
    result = km_in(run_km, root, "cat", "/etc/hello")
    assert (result.returncode, result.out) == (0, "inside the root\n")


@pytest.mark.parametrize("path", ["/../secret", "/../../../../../secret", "/etc/absolute-link",
                                  "/etc/relative-link", "/proc/self/root/../secret"])
def test_no_path_leads_outside_the_root(run_km, root, path):
    result = km_in(run_km, root, "cat", path)
    assert result.returncode != 0
    assert "SECRET" not in result.out


def test_cwd_and_relative_paths_stay_inside(run_km, root):
    script = "cd /etc && pwd && cat hello && cd ../../.. && pwd && ls / && echo x > /tmp/f"
    result = km_in(run_km, root, "sh", "-c", script)
    assert result.returncode == 0, result.err
    assert result.out == "/etc\ninside the root\n/\nbin\netc\ntmp\n"
    assert (root / "tmp" / "f").read_text() == "x\n"


def test_exec_and_interpreter_lookup_happen_inside_the_root(run_km, root):
    script = root / "bin" / "script"
    script.write_text("#!/bin/busybox sh\necho script ran; cat /etc/hello\n")
    script.chmod(0o755)
    result = km_in(run_km, root, "sh", "-c", "/bin/script && busybox ls /bin")
    assert result.out == "script ran\ninside the root\nbusybox\nscript\n", result.err


def test_missing_root_is_an_error(run_km, tmp_path):
    result = run_km(["--root", str(tmp_path / "none"), "/bin/busybox", "true"])
    assert result.returncode == 1
    assert result.err.startswith("km: ")
