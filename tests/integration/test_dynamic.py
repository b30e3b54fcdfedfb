"""Dynamically linked executables: the ELF interpreter from PT_INTERP, shared libraries,
dlopen, and Debian's real dynamic programs (python3, perl, sqlite3, lua), against native."""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

import pytest

SOURCES = Path(__file__).resolve().parent.parent / "dynamic"
CACHE = Path(__file__).resolve().parents[2] / ".cache" / "dynamic"


def _build(tmp: Path) -> tuple[Path, Path]:
    CACHE.mkdir(parents=True, exist_ok=True)
    main, plugin = CACHE / "dyn_main", CACHE / "libplugin.so"
    subprocess.run(["gcc", "-O2", "-o", str(main), str(SOURCES / "dyn_main.c"), "-lm", "-ldl"],
                   check=True)
    subprocess.run(["gcc", "-O2", "-shared", "-fPIC", "-o", str(plugin),
                    str(SOURCES / "dyn_plugin.c")], check=True)
    return main, plugin


@pytest.fixture(scope="module")
def dynamic_payload(tmp_path_factory) -> tuple[Path, Path]:
    return _build(tmp_path_factory.mktemp("dyn"))


def test_dynamic_c_program_matches_native(dynamic_payload, run_both, assert_same):
    main, _plugin = dynamic_payload
    runs = run_both([main])
    assert "dynamic libc works" in runs.native.out
    assert_same(runs.native, runs.km)


def test_dlopen_of_a_shared_object_it_built_matches_native(dynamic_payload, run_both,
                                                          assert_same):
    main, plugin = dynamic_payload
    runs = run_both([main, plugin])
    assert "plugin kontain-plugin says 42" in runs.native.out
    assert_same(runs.native, runs.km)


def test_ld_so_list_shows_the_libraries_like_native(dynamic_payload, run_both, assert_same):
    main, _plugin = dynamic_payload
    ld_so = "/lib64/ld-linux-x86-64.so.2"
    runs = run_both([ld_so, "--list", main])
    assert "libc.so.6" in runs.native.out
    # Load addresses differ between runs; the libraries and their paths must not.
    strip = [line.split(" (0x")[0] for line in runs.native.out.splitlines()]
    assert strip == [line.split(" (0x")[0] for line in runs.km.out.splitlines()]
    assert runs.km.returncode == runs.native.returncode


def test_ld_library_path_finds_a_library(dynamic_payload, run_both, assert_same, tmp_path):
    main, plugin = dynamic_payload
    libdir = tmp_path / "lib"
    libdir.mkdir()
    shutil.copy(plugin, libdir / "libplugin.so")
    env = {"PATH": "/usr/bin:/bin", "LC_ALL": "C", "LD_LIBRARY_PATH": str(libdir)}
    runs = run_both([main, "libplugin.so"], env=env)
    assert "says 42" in runs.native.out
    assert_same(runs.native, runs.km)


PYTHON_SCRIPT = r'''
import asyncio, hashlib, json, os, socket, sqlite3, subprocess, sys, threading
from multiprocessing import Pool

print(json.dumps({"sha": hashlib.sha256(b"kontain").hexdigest()[:16], "n": [1, 2, 3]}))
db = sqlite3.connect(":memory:")
db.execute("create table t (k text, v integer)")
db.executemany("insert into t values (?, ?)", [("a", 1), ("b", 2), ("c", 3)])
print(db.execute("select group_concat(k), sum(v) from t").fetchone())
total = []
threads = [threading.Thread(target=lambda i=i: total.append(i * i)) for i in range(8)]
[t.start() for t in threads]
[t.join() for t in threads]
print("threads", sorted(total))
print(subprocess.run(["/bin/busybox", "echo", "from a subprocess"], capture_output=True,
                     text=True).stdout.strip())
def square(x):
    return x * x
if __name__ == "__main__":
    with Pool(2) as pool:
        print("pool", pool.map(square, range(6)))
server = socket.socket()
server.bind(("127.0.0.1", 0))
server.listen()
client = socket.create_connection(server.getsockname())
conn, _ = server.accept()
client.sendall(b"ping")
print("socket", conn.recv(4))
async def main():
    await asyncio.sleep(0.01)
    return "asyncio ok"
print(asyncio.run(main()))
'''


def test_debian_python3_script_matches_native(run_both, assert_same, tmp_path):
    script = tmp_path / "script.py"
    script.write_text(PYTHON_SCRIPT)
    runs = run_both(["/usr/bin/python3", script], timeout=120)
    assert "asyncio ok" in runs.native.out
    assert_same(runs.native, runs.km)


def test_debian_perl_script_matches_native(run_both, assert_same, tmp_path):
    script = tmp_path / "script.pl"
    script.write_text(r'''
my %count; $count{$_}++ for split //, "kontain monitor";
print join(",", map { "$_=$count{$_}" } sort keys %count), "\n";
my @words = sort { length($a) <=> length($b) or $a cmp $b } qw(vm kvm payload monitor km);
print "@words\n";
printf "%.3f %s\n", atan2(1, 1) * 4, scalar reverse "olleh";
print "match $1\n" if "version 5.36" =~ /(\d+\.\d+)/;
''')
    runs = run_both(["/usr/bin/perl", script])
    assert "match 5.36" in runs.native.out
    assert_same(runs.native, runs.km)


@pytest.mark.skipif(shutil.which("sqlite3") is None, reason="sqlite3 is not installed")
def test_debian_sqlite3_matches_native(run_native, run_km, assert_same, tmp_path):
    sql = ("create table t(k text, v int); insert into t values ('x', 1), ('y', 2);"
           "select k, v * 10 from t order by v desc; select count(*) from t;")
    sqlite3 = shutil.which("sqlite3")
    native = run_native([sqlite3, str(tmp_path / "native.sqlite"), sql])
    under_km = run_km([sqlite3, str(tmp_path / "km.sqlite"), sql])
    assert "y|20" in native.out
    assert_same(native, under_km)


@pytest.mark.skipif(shutil.which("lua5.4") is None, reason="lua5.4 is not installed")
def test_debian_lua_matches_native(run_both, assert_same):
    code = ("local t = {} for i = 1, 10 do t[#t + 1] = i * i end "
            "local function sum(xs) local s = 0 for _, x in ipairs(xs) do s = s + x end "
            "return s end print(string.format('%d %s', sum(t), table.concat(t, ',', 1, 3)))")
    runs = run_both([shutil.which("lua5.4"), "-e", code])
    assert runs.native.out == "385 1,4,9\n"
    assert_same(runs.native, runs.km)
