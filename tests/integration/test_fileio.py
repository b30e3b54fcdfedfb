"""File-system and file-descriptor system calls inside a fresh directory (argv[1]).

The native run and the km run each get their own empty directory; the payload prints only
relative names, so the outputs must be identical, and so must the trees they leave."""

import os
import stat


def snapshot(root):
    """The tree under root: relative path -> (type, mode, size, contents or link target)."""
    tree = {}
    for dirpath, dirnames, filenames in os.walk(root):
        for name in dirnames + filenames:
            path = os.path.join(dirpath, name)
            st = os.lstat(path)
            rel = os.path.relpath(path, root)
            if stat.S_ISLNK(st.st_mode):
                tree[rel] = ("symlink", os.readlink(path))
            elif stat.S_ISDIR(st.st_mode):
                tree[rel] = ("dir", oct(st.st_mode & 0o7777))
            else:
                with open(path, "rb") as f:
                    tree[rel] = ("file", oct(st.st_mode & 0o7777), st.st_size,
                                 st.st_mtime_ns, f.read())
    return tree


def test_file_syscalls_match_native(payloads, flavour, run_native, run_km, assert_same,
                                    tmp_path):
    exe = payloads.build("fileio", flavour)
    native_dir = (tmp_path / "native" / "work").resolve()
    km_dir = (tmp_path / "km" / "work").resolve()
    native_dir.mkdir(parents=True)
    km_dir.mkdir(parents=True)
    native = run_native([exe, native_dir], cwd=native_dir.parent)
    under_km = run_km([exe, km_dir], cwd=km_dir.parent)
    assert native.returncode == 0, native.out + native.err
    assert "getcwd equals argv[1]: yes" in native.out
    assert "ls sub: . .. b.txt c0 copy d.lnk\n" in native.out
    assert_same(native, under_km)
    # mtimes are compared only for the file whose times the payload set itself
    km_tree, native_tree = snapshot(km_dir), snapshot(native_dir)
    for tree in (km_tree, native_tree):
        for rel, entry in tree.items():
            if entry[0] == "file" and rel != os.path.join("sub", "b.txt"):
                tree[rel] = entry[:3] + entry[4:]
    assert km_tree == native_tree
