"""Hostile snippets under Policy.strict(): each is contained, with the outcome documented
in docs/python-api.md ("What Policy.strict() does to hostile code"); then many runs at
once, from threads and from asyncio."""

from __future__ import annotations

import asyncio
import os
import signal
import uuid
from concurrent.futures import ThreadPoolExecutor

import pytest
from conftest import processes_with

import kontain
from kontain import Policy

pytestmark = pytest.mark.usefixtures("kvm")

KM = ["--strict"]
PY = "/usr/bin/python3"
#: Policy.strict(), with a wall time short enough for a test suite.
STRICT = Policy.strict() | Policy(wall_time=3.0)



def hostile(code: str, policy: Policy = STRICT) -> kontain.CompletedProcess:
    marker = f"hostile-{uuid.uuid4().hex}"
    result = kontain.run([PY, "-c", code, marker], capture_output=True, text=True,
                         policy=policy, km_options=KM)
    assert processes_with(marker) == [], "a process of the payload was left"
    return result


def test_fork_bomb_stops_at_max_processes_then_wall_time():
    result = hostile("import os\n"
                     "made = failed = 0\n"
                     "while True:\n"
                     "    try:\n"
                     "        if os.fork() == 0:\n"
                     "            while True: pass\n"
                     "        made += 1\n"
                     "    except OSError:\n"
                     "        failed += 1\n"
                     "        if failed == 1: print('EAGAIN after', made, flush=True)\n")
    assert result.stdout == "EAGAIN after 15\n"  # 16 processes: this one and 15 children
    assert result.returncode == -signal.SIGKILL and result.stats.limit == "wall_time"


def test_memory_bomb_gets_enomem():
    result = hostile("a = []\nwhile True: a.append(bytearray(16 << 20))")
    assert result.returncode == 1 and result.stderr.endswith("MemoryError\n")


def test_disk_filling_gets_enospc_in_tmp_and_erofs_elsewhere():
    result = hostile("import errno\n"
                     "try: open('/fill', 'w')\n"
                     "except OSError as e: print(errno.errorcode[e.errno])\n"
                     "i = 0\n"
                     "try:\n"
                     "    while True:\n"
                     "        with open(f'/tmp/fill{i}', 'wb') as f: f.write(b'x' * (8 << 20))\n"
                     "        i += 1\n"
                     "except OSError as e: print(errno.errorcode[e.errno], i)\n")
    assert result.stdout == "EROFS\nENOSPC 8\n"  # 64 MiB of tmpfs: 8 files of 8 MiB


def test_one_big_file_gets_efbig():
    result = hostile("f = open('/tmp/big', 'wb')\nwhile True: f.write(b'x' * (1 << 20))",
                     STRICT | Policy(tmpfs_size="128M"))
    assert "[Errno 27] File too large" in result.stderr


def test_infinite_output_is_cut_at_max_output():
    result = hostile("while True: print('y' * 1000)")
    assert result.returncode == -signal.SIGKILL and result.stats.limit == "max_output"
    assert len(result.stdout) == 1 << 20


def test_sleeping_forever_is_killed_at_wall_time():
    result = hostile("import time\ntime.sleep(10 ** 6)")
    assert result.returncode == -signal.SIGKILL and result.stats.limit == "wall_time"
    assert 3.0 <= result.stats.wall_time < 10


@pytest.mark.skipif(os.geteuid() != 0, reason="file policies need root")
def test_reading_etc_shadow_finds_it_empty():
    with open("/etc/shadow") as f:
        before = f.read()
    result = hostile("print(repr(open('/etc/shadow').read()))\n"
                     "import os\nprint(os.listdir('/root'))")
    assert result.stdout == "''\n[]\n"
    with open("/etc/shadow") as f:
        assert f.read() == before


def test_sockets_other_than_unix_cannot_be_made():
    result = hostile("import socket\n"
                     "try: socket.create_connection(('127.0.0.1', 22))\n"
                     "except OSError as e: print(e.errno)\n"
                     "a, b = socket.socketpair(); print('unix ok')")
    assert result.stdout == "97\nunix ok\n" and result.stats.denied == {"socket": 1}


def test_exec_of_host_tools_is_refused():
    result = hostile("import os, subprocess\n"
                     "for tool in ('/bin/sh', '/usr/bin/python3', '/bin/busybox'):\n"
                     "    try: subprocess.run([tool, '-c', 'true'])\n"
                     "    except OSError as e: print(e.errno)\n")
    assert result.stdout == "13\n13\n13\n"  # EACCES


def test_signalling_the_parent_and_init_is_refused():
    result = hostile("import os, signal\n"
                     "for pid in (os.getppid(), 1):\n"
                     "    try: os.kill(pid, signal.SIGKILL)\n"
                     "    except OSError as e: print(e.errno)\n")
    assert result.stdout == "1\n1\n"  # EPERM; and this test's process is still here


# ---- many at once -----------------------------------------------------------------------

RUNS = 50


def test_50_concurrent_runs_from_threads():
    def one(i: int) -> tuple[int, str]:
        result = kontain.run(["/bin/busybox", "sh", "-c", f"echo run {i}"], capture_output=True,
                             text=True, policy=STRICT, km_options=KM)
        return result.returncode, result.stdout
    with ThreadPoolExecutor(RUNS) as pool:
        results = list(pool.map(one, range(RUNS)))
    assert results == [(0, f"run {i}\n") for i in range(RUNS)]


def test_50_concurrent_runs_from_asyncio():
    async def one(i: int) -> tuple[int, bytes]:
        p = await kontain.asyncio.create_subprocess_exec(
            "/bin/busybox", "sh", "-c", f"echo run {i}", stdout=asyncio.subprocess.PIPE,
            policy=STRICT, km_options=KM)
        out, _ = await p.communicate()
        return p.returncode, out

    async def main():
        return await asyncio.gather(*(one(i) for i in range(RUNS)))
    assert asyncio.run(main()) == [(0, f"run {i}\n".encode()) for i in range(RUNS)]


def test_killing_one_tree_never_reaches_another_run():
    """A run starting in another thread holds every descriptor of this process until its
    exec: the kill of a tree must not take it for a process of that tree."""
    def one(i: int) -> tuple[int, str]:
        if i % 2:
            result = kontain.run(["/bin/busybox", "sh", "-c", "sleep 100 & sleep 100"],
                                 policy=Policy(wall_time=0.2), km_options=KM)
            return result.returncode, result.stats.limit or ""
        result = kontain.run(["/bin/busybox", "echo", str(i)], capture_output=True,
                             text=True, km_options=KM)
        return result.returncode, result.stdout
    with ThreadPoolExecutor(8) as pool:
        results = list(pool.map(one, range(40)))
    assert results == [(-signal.SIGKILL, "wall_time") if i % 2 else (0, f"{i}\n")
                       for i in range(40)]
