"""The snapshot file's km note (kontain.monitor.snapshot) as resume reads it back
(kontain.monitor.resume.read_state), and km's command line for snapshots."""

from __future__ import annotations

import marshal
import os
import struct

import pytest

from kontain.cli.km import UsageError, parse
from kontain.monitor import coredump as core
from kontain.monitor import resume, snapshot


def write_file(path, notes: bytes, loads: list[tuple[int, int]]) -> None:
    """A minimal ET_CORE: a PT_NOTE, then one PT_LOAD per (vaddr, size) with no data."""
    phnum = 1 + len(loads)
    notes_at = core.EHDR.size + phnum * core.PHDR.size
    headers = [core.PHDR.pack(core.PT_NOTE, 0, notes_at, 0, 0, len(notes), 0, 0)]
    headers += [core.PHDR.pack(core.PT_LOAD, core.PF_R, 0, va, 0, 0, size, 4096)
                for va, size in loads]
    ehdr = core.EHDR.pack(b"\x7fELF\x02\x01\x01".ljust(16, b"\0"), core.ET_CORE,
                          core.EM_X86_64, 1, 0, core.EHDR.size, 0, 0, core.EHDR.size,
                          core.PHDR.size, phnum, 0, 0, 0)
    path.write_bytes(ehdr + b"".join(headers) + notes)


def km_note(state: dict, version: int = snapshot.VERSION) -> bytes:
    return core.note(snapshot.NOTE_NAME, snapshot.NT_KONTAIN,
                     snapshot.MAGIC + struct.pack("<H", version) + marshal.dumps(state, 4))


def test_the_km_note_is_found_among_the_core_notes(tmp_path):
    state = {"vmas": [(0x1000, 0x2000)], "label": b"warm"}
    body = core.note(b"CORE", core.NT_PRSTATUS, bytes(336)) + km_note(state) + \
        core.note(b"LINUX", core.NT_X86_XSTATE, bytes(64))
    path = tmp_path / "snap"
    write_file(path, body, [(0x1000, 0x1000)])
    assert resume.is_snapshot(str(path))
    fd = os.open(path, os.O_RDONLY)
    try:
        got, loads = resume.read_state(fd)
    finally:
        os.close(fd)
    assert got == state
    assert loads == [(0x1000, 0, 0, 0x1000)]


@pytest.mark.parametrize("body, message", [
    (core.note(b"CORE", core.NT_PRSTATUS, bytes(336)), "not a snapshot"),
    (km_note({}, version=snapshot.VERSION + 1), "snapshot format"),
])
def test_a_core_or_another_format_is_refused(tmp_path, body, message):
    path = tmp_path / "core"
    write_file(path, body, [])
    fd = os.open(path, os.O_RDONLY)
    try:
        with pytest.raises(resume.ResumeError, match=message):
            resume.read_state(fd)
    finally:
        os.close(fd)


def test_an_executable_is_not_a_snapshot(tmp_path):
    path = tmp_path / "exe"
    path.write_bytes(b"\x7fELF\x02\x01\x01".ljust(16, b"\0") + struct.pack("<H", 2) + bytes(64))
    assert not resume.is_snapshot(str(path))
    assert not resume.is_snapshot(str(tmp_path / "missing"))


def test_command_line_snapshot_options():
    cl = parse(["--snapshot=/tmp/a.snap", "--mgtpipe", "/tmp/km.sock", "prog"])
    assert (cl.snapshot, cl.mgtpipe, cl.payload) == ("/tmp/a.snap", "/tmp/km.sock", ["prog"])
    with pytest.raises(UsageError):
        parse(["--snapshot=", "prog"])


def test_the_hypercall_number_is_one_linux_never_uses():
    from kontain.monitor.dispatch import KM_SNAPSHOT, TABLE_SIZE
    assert KM_SNAPSHOT == snapshot.HYPERCALL >= TABLE_SIZE
    header = (os.path.dirname(os.path.dirname(os.path.dirname(__file__)))
              + "/include/kontain/snapshot.h")
    with open(header) as f:
        assert f"#define KM_SNAPSHOT_HYPERCALL {snapshot.HYPERCALL:#X}L".replace(
            "0X", "0x") in f.read()
