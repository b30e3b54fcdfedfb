"""Payloads km cannot run: km exits 127 (not found) or 126 (cannot execute), printing
exactly one line, starting with "km: ", on stderr and nothing on stdout."""

import struct

import pytest


def elf32_i386_executable():
    """A minimal, valid ELF32 i386 executable: one PT_LOAD and `exit(0)` via int 0x80."""
    code = bytes([0xB8, 1, 0, 0, 0,      # mov eax, 1 (exit)
                  0x31, 0xDB,            # xor ebx, ebx
                  0xCD, 0x80])           # int 0x80
    base, ehsize, phsize = 0x08048000, 52, 32
    entry = base + ehsize + phsize
    ident = b"\x7fELF" + bytes([1, 1, 1, 0]) + bytes(8)  # ELFCLASS32, LSB, version 1
    header = ident + struct.pack("<HHIIIIIHHHHHH", 2, 3, 1, entry, ehsize, 0, 0,
                                 ehsize, phsize, 1, 0, 0, 0)
    size = ehsize + phsize + len(code)
    phdr = struct.pack("<IIIIIIII", 1, 0, base, base, size, size, 5, 0x1000)
    assert len(header) == ehsize and len(phdr) == phsize
    return header + phdr + code


def make(tmp_path, name, content, mode=0o755):
    path = tmp_path / name
    path.write_bytes(content)
    path.chmod(mode)
    return path


def assert_one_km_error_line(result, status):
    assert result.returncode == status, (
        f"expected exit {status}, got {result.returncode}\n{result.describe()}\n"
        f"stderr: {result.err!r}")
    assert result.stdout == b"", f"km printed on stdout: {result.out!r}"
    lines = result.err.splitlines(keepends=True)
    assert len(lines) == 1 and lines[0].startswith("km: ") and lines[0].endswith("\n"), (
        f"expected one line 'km: ...' on stderr, got {result.err!r}")


def test_text_file_is_not_executable_126(run_km, tmp_path):
    script = make(tmp_path, "notes.txt", b"just some text\nnot a program\n")
    assert_one_km_error_line(run_km([script]), 126)


def test_truncated_elf_is_rejected_126(run_km, payloads, tmp_path):
    elf = payloads.build("hello", "musl").read_bytes()
    truncated = make(tmp_path, "truncated", elf[:100])
    assert truncated.read_bytes()[:4] == b"\x7fELF"
    assert_one_km_error_line(run_km([truncated]), 126)


def test_32bit_elf_is_rejected_126(run_km, tmp_path):
    elf32 = make(tmp_path, "i386-exit0", elf32_i386_executable())
    assert_one_km_error_line(run_km([elf32]), 126)


def test_elf_for_another_machine_is_rejected_126(run_km, payloads, tmp_path):
    elf = bytearray(payloads.build("hello", "musl").read_bytes())
    elf[18:20] = struct.pack("<H", 183)  # e_machine = EM_AARCH64
    arm = make(tmp_path, "aarch64", bytes(elf))
    assert_one_km_error_line(run_km([arm]), 126)


def test_missing_path_is_not_found_127(run_km, tmp_path):
    assert_one_km_error_line(run_km([tmp_path / "no" / "such" / "payload"]), 127)


def test_missing_relative_path_is_not_found_127(run_km, tmp_path):
    assert_one_km_error_line(run_km(["./no-such-payload"], cwd=tmp_path), 127)


def test_name_not_in_path_is_not_found_127(run_km):
    assert_one_km_error_line(run_km(["km-test-no-such-command-anywhere"]), 127)


def test_file_without_execute_permission_126(run_km, payloads, tmp_path):
    plain = make(tmp_path, "hello-644", payloads.build("hello", "musl").read_bytes(), 0o644)
    assert_one_km_error_line(run_km([plain]), 126)


def test_directory_is_not_executable_126(run_km, tmp_path):
    (tmp_path / "adir").mkdir()
    assert_one_km_error_line(run_km([tmp_path / "adir"]), 126)


@pytest.mark.parametrize("content", [b"", b"\x7fELF"], ids=["empty", "magic-only"])
def test_tiny_files_are_rejected_126(run_km, tmp_path, content):
    assert_one_km_error_line(run_km([make(tmp_path, "tiny", content)]), 126)
