"""Debian's static busybox, an unmodified real-world binary, running applets over a prepared
directory under km, compared with native busybox runs. Each command runs on its own
(no shell pipelines): files in, stdout out."""

import os

import pytest

BUSYBOX = "/bin/busybox"

FRUITS = "banana 3 yellow\napple 10 red\ncherry 7 red\ndate 1 brown\napple 2 green\n"
POEM = "".join(f"line {i}: the quick brown fox jumps over the lazy dog {i * i}\n"
               for i in range(2000))


@pytest.fixture(scope="module")
def data(tmp_path_factory):
    """A small tree with fixed contents, modes and times (so listings are stable)."""
    if not os.access(BUSYBOX, os.X_OK):
        pytest.fail(f"{BUSYBOX} is missing: install busybox-static", pytrace=False)
    root = tmp_path_factory.mktemp("busybox") / "data"
    (root / "sub" / "deeper").mkdir(parents=True)
    (root / "fruits.txt").write_text(FRUITS)
    (root / "poem.txt").write_text(POEM)
    (root / "numbers").write_text("".join(f"{(i * 7919) % 1000}\n" for i in range(300)))
    (root / "binary.bin").write_bytes(bytes(range(256)) * 40)
    (root / "empty").write_bytes(b"")
    (root / "sub" / "notes.md").write_text("# notes\nsome text\n")
    (root / "sub" / "deeper" / "leaf.txt").write_text("leaf\n")
    (root / "sub" / "link").symlink_to("notes.md")
    (root / "script.sh").write_text("#!/bin/sh\necho hi\n")
    (root / "script.sh").chmod(0o755)
    for path in sorted(root.rglob("*"), reverse=True):
        if not path.is_symlink():
            os.utime(path, (1_600_000_000, 1_600_000_000))
    os.utime(root, (1_600_000_000, 1_600_000_000))
    return root


# Each applet's argv (relative to the data directory, which is the working directory).
COMMANDS = {
    "echo": ["echo", "hello", "from", "busybox"],
    "echo-n-e": ["echo", "-n", "-e", "tab\\there\\n"],
    "ls": ["ls"],
    "ls-1": ["ls", "-1"],
    "ls-1a-sub": ["ls", "-1a", "sub"],
    "ls-R": ["ls", "-R"],
    "cat": ["cat", "fruits.txt", "sub/notes.md"],
    "cat-symlink": ["cat", "sub/link"],
    "cat-missing": ["cat", "fruits.txt", "no-such-file"],
    "wc": ["wc", "fruits.txt", "poem.txt", "binary.bin"],
    "wc-l": ["wc", "-l", "poem.txt"],
    "sort": ["sort", "fruits.txt"],
    "sort-numeric-reverse-unique": ["sort", "-n", "-r", "-u", "numbers"],
    "sort-key": ["sort", "-k2,2n", "fruits.txt"],
    "sha256sum": ["sha256sum", "fruits.txt", "poem.txt", "binary.bin", "empty"],
    "md5sum": ["md5sum", "poem.txt"],
    "grep": ["grep", "-n", "red", "fruits.txt"],
    "grep-count-regex": ["grep", "-c", "-E", "fox jumps over the lazy dog [0-9]*9$", "poem.txt"],
    "grep-no-match": ["grep", "kiwi", "fruits.txt"],
    "grep-recursive": ["grep", "-r", "leaf", "sub"],
    "sed": ["sed", "-e", "s/apple/APPLE/g", "-e", "/cherry/d", "fruits.txt"],
    "sed-range": ["sed", "-n", "10,15p", "poem.txt"],
    "awk": ["awk", "{ total += $2; print $1, NF } END { print \"total\", total }",
            "fruits.txt"],
    "awk-printf": ["awk", "-F:", "NR % 500 == 0 { printf \"%05d %s\\n\", NR, $1 }", "poem.txt"],
    "find": ["find", "."],
    "find-type-name": ["find", ".", "-type", "f", "-name", "*.txt"],
    "head": ["head", "-n", "3", "poem.txt"],
    "tail": ["tail", "-n", "2", "poem.txt"],
    "uniq-count": ["uniq", "-c", "numbers"],
    "cut": ["cut", "-d", " ", "-f", "1,3", "fruits.txt"],
    "od": ["od", "-A", "x", "-t", "x1z", "-N", "64", "binary.bin"],
    "cmp": ["cmp", "fruits.txt", "poem.txt"],
    "stat-size": ["stat", "-c", "%n %s %a %F", "fruits.txt", "sub", "sub/link"],
    "du": ["du", "-a", "sub"],
    "basename-dirname": ["basename", "/a/b/c.txt", ".txt"],
    "expr": ["expr", "6", "*", "7"],
    "seq": ["seq", "1", "3", "30"],
    "false": ["false"],
}


@pytest.mark.parametrize("args", COMMANDS.values(), ids=COMMANDS.keys())
def test_busybox_applet_matches_native(args, data, run_both, assert_same):
    runs = run_both([BUSYBOX, *args], cwd=data)
    assert b"applet not found" not in runs.native.stderr
    assert_same(runs.native, runs.km)


def tree(root):
    """Every path under root with its type, mode and contents (or target), and files'
    mtimes (busybox tar does not restore directories' mtimes, natively either)."""
    found = {}
    for dirpath, dirnames, filenames in os.walk(root):
        for name in sorted(dirnames + filenames):
            path = os.path.join(dirpath, name)
            st = os.lstat(path)
            rel = os.path.relpath(path, root)
            if os.path.islink(path):
                found[rel] = ("link", os.readlink(path))
            elif os.path.isdir(path):
                found[rel] = ("dir", st.st_mode)
            else:
                with open(path, "rb") as f:
                    found[rel] = ("file", st.st_mode, st.st_mtime, f.read())
    return found


def test_busybox_tar_create_list_extract_matches_native(data, run_native, run_km,
                                                        assert_same, tmp_path):
    """tar -c, then -t and -x of the archive just made, each side in its own directory;
    the archives must be byte-identical and extract to the original tree."""
    sides = {}
    for side, run in (("native", run_native), ("km", run_km)):
        work = tmp_path / side
        work.mkdir()
        create = run([BUSYBOX, "tar", "-cf", "archive.tar", "-C", data, "."], cwd=work)
        listing = run([BUSYBOX, "tar", "-tvf", "archive.tar"], cwd=work)
        (work / "out").mkdir()
        extract = run([BUSYBOX, "tar", "-xf", "archive.tar", "-C", "out"], cwd=work)
        sides[side] = (create, listing, extract, work)
    native, km = sides["native"], sides["km"]
    for step in range(3):
        assert native[step].returncode == 0, native[step].err
        assert_same(native[step], km[step])
    assert "./sub/deeper/leaf.txt" in native[1].out
    native_tar = (native[3] / "archive.tar").read_bytes()
    km_tar = (km[3] / "archive.tar").read_bytes()
    assert len(km_tar) == len(native_tar) and km_tar == native_tar, "the archives differ"
    assert tree(km[3] / "out") == tree(native[3] / "out") == tree(data)


@pytest.mark.parametrize("name", ["fruits.txt", "poem.txt", "binary.bin", "empty"])
def test_busybox_gzip_round_trip_matches_native(name, data, run_both, assert_same,
                                                tmp_path):
    """gzip -c FILE, then gzip -dc of the result: same bytes as native at each step."""
    runs = run_both([BUSYBOX, "gzip", "-c", "-9", data / name])
    assert runs.native.returncode == 0
    assert_same(runs.native, runs.km)
    compressed = tmp_path / (name + ".gz")
    compressed.write_bytes(runs.native.stdout)
    runs = run_both([BUSYBOX, "gzip", "-dc", compressed])
    assert runs.native.stdout == (data / name).read_bytes()
    assert_same(runs.native, runs.km)
