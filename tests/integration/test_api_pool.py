"""kontain.Pool: the same results as kontain.run, at most `size` runs at once, the policy
enforced, a timeout ending only its own run, and no process left once closed; a
snapshot pool runs python3 snippets with the warm-up's imports done, faster than cold."""

from __future__ import annotations

import asyncio
import os
import shutil
import subprocess
import threading
import time
import uuid

import pytest
from conftest import processes_with

import kontain
from kontain import Policy
from kontain import pool as pool_module

pytestmark = pytest.mark.usefixtures("kvm")

KM = ["--strict"]
SH = "/bin/busybox"
PY = "/usr/bin/python3"
ENV = {"PATH": "/usr/bin:/bin", "LC_ALL": "C"}
IMPORTS = "import json, sqlite3, decimal"


@pytest.fixture(scope="module")
def server_pool():
    with kontain.Pool(2, km_options=KM) as pool:
        yield pool


@pytest.fixture(scope="module")
def snapshot_pool():
    with kontain.Pool(2, warm=kontain.Warm([PY, "-c", IMPORTS]), km_options=KM) as pool:
        yield pool


def outcome(runner, args, **kwargs):
    try:
        result = runner(args, **kwargs)
    except Exception as e:  # noqa: BLE001 - the exception is what is compared
        return type(e), getattr(e, "returncode", None), getattr(e, "errno", None)
    return result.args, result.returncode, result.stdout, result.stderr



SERVER_CASES = [
    ([SH, "sh", "-c", "echo out; echo err >&2; exit 3"], {"capture_output": True}),
    ([SH, "sh", "-c", "cat; echo $A"], {"input": b"in\n", "capture_output": True,
                                        "env": {"A": "1"}}),
    ([SH, "env"], {"capture_output": True, "env": ENV}),
    ([SH, "sh", "-c", "echo é; exit 1"], {"capture_output": True, "text": True,
                                          "check": True}),
    (["no-such-program-anywhere"], {"capture_output": True}),
    ([SH, "sh", "-c", "kill -9 $$"], {"capture_output": True}),
]


@pytest.mark.parametrize(("args", "kwargs"), SERVER_CASES)
def test_server_pool_gives_what_run_gives(server_pool, args, kwargs):
    assert outcome(server_pool.run, args, **kwargs) == \
        outcome(kontain.run, args, km_options=KM, **kwargs)


def test_server_pool_cwd_and_stats(server_pool, tmp_path):
    result = server_pool.run([SH, "pwd"], cwd=tmp_path, capture_output=True)
    assert result.stdout == f"{tmp_path}\n".encode()
    assert result.stats.syscalls.get("exit_group") == 1 and result.stats.wall_time > 0


SNIPPETS = [
    ("import sys; print(sys.argv); sys.exit(5)", ["x", "y"], {}),
    ("import sys; print(sys.stdin.read().upper(), end='')", [], {"input": "abc"}),
    ("import os; print(os.environ.get('A'), os.getcwd())", [], {"env": {"A": "2"}}),
    ("raise ValueError('no')", [], {}),
    ("import sys; sys.exit('bye')", [], {}),
    ("import atexit; atexit.register(print, 'at exit'); print('x', end='')", [], {}),
]


@pytest.mark.parametrize(("code", "extra", "kwargs"), SNIPPETS)
def test_snapshot_pool_gives_what_run_gives(snapshot_pool, code, extra, kwargs):
    args = [PY, "-c", code, *extra]
    options = {"capture_output": True, "text": True, "cwd": "/", **kwargs}
    assert outcome(snapshot_pool.run, args, **options) == \
        outcome(kontain.run, args, km_options=KM, **options)


def test_snapshot_pool_has_the_imports_done_and_is_faster_than_cold(snapshot_pool):
    code = f"{IMPORTS}; print(json.dumps([1]))"
    pooled, cold = [], []
    for _ in range(3):  # (alternating: the host's load hits both alike)
        started = time.monotonic()
        result = snapshot_pool.run(code=code, capture_output=True)
        pooled.append(time.monotonic() - started)
        assert result.stdout == b"[1]\n" and result.returncode == 0
        started = time.monotonic()
        kontain.run([PY, "-c", code], capture_output=True, km_options=KM)
        cold.append(time.monotonic() - started)
    assert min(pooled) < min(cold), (pooled, cold)
    # The warm-up's modules are there before the snippet imports anything.
    result = snapshot_pool.run(code="import sys; print('sqlite3' in sys.modules)",
                               capture_output=True)
    assert result.stdout == b"True\n"


@pytest.mark.parametrize("warm", [False, True])
def test_policy_is_enforced_in_pool_runs(warm):
    code = "import socket; socket.socket(); print('connected')"
    with kontain.Pool(1, policy=Policy.strict(), km_options=KM, warm=kontain.Warm(
            [PY, "-c", "import socket"]) if warm else None) as pool:
        result = pool.run([PY, "-c", code], capture_output=True, cwd="/")
    cold = kontain.run([PY, "-c", code], capture_output=True, cwd="/",
                       policy=Policy.strict(), km_options=KM)
    assert result.returncode == cold.returncode == 1
    assert b"Address family not supported" in result.stderr
    assert result.stats.denied == cold.stats.denied == {"socket": 1}


def test_a_runs_policy_is_merged_with_the_pools(server_pool):
    result = server_pool.run([SH, "yes"], capture_output=True,
                             policy=Policy(max_output=1000))
    assert result.returncode == -9 and len(result.stdout) == 1000
    assert result.stats.limit == "max_output"


def test_at_most_size_runs_at_once(monkeypatch, server_pool):
    live, peak, lock = [0], [0], threading.Lock()

    class Counted(kontain.Popen):
        def __init__(self, *args, **kwargs):
            with lock:
                live[0] += 1
                peak[0] = max(peak[0], live[0])
            super().__init__(*args, **kwargs)

        def __exit__(self, *exc):
            super().__exit__(*exc)
            with lock:
                live[0] -= 1

    monkeypatch.setattr(pool_module.api, "Popen", Counted)
    results = []
    threads = [threading.Thread(target=lambda i=i: results.append(server_pool.run(
        [SH, "echo", str(i)], capture_output=True).stdout)) for i in range(6)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert sorted(results) == [f"{i}\n".encode() for i in range(6)]
    assert 1 <= peak[0] <= 2


def test_a_timeout_ends_only_its_run(server_pool):
    read, write = os.pipe()
    other: list = []
    waiting = threading.Thread(target=lambda: other.append(server_pool.run(
        [SH, "cat"], stdin=read, capture_output=True)))
    waiting.start()
    marker = f"marker-{uuid.uuid4().hex}"
    with pytest.raises(subprocess.TimeoutExpired):
        server_pool.run([SH, "sh", "-c", "while :; do :; done", marker], timeout=1.0)
    assert processes_with(marker) == []
    os.write(write, b"still here\n")
    os.close(write)
    waiting.join()
    os.close(read)
    assert other[0].returncode == 0 and other[0].stdout == b"still here\n"


def test_arun_from_asyncio(server_pool):
    async def main():
        return await asyncio.gather(*(server_pool.arun([SH, "echo", str(i)],
                                                       capture_output=True)
                                      for i in range(4)))
    results = asyncio.run(main())
    assert [r.stdout for r in results] == [f"{i}\n".encode() for i in range(4)]


@pytest.mark.parametrize("warm", [False, True])
def test_close_leaves_no_process_and_no_file(warm):
    pool = kontain.Pool(2, km_options=KM, warm=kontain.Warm([PY, "-c", "pass"])
                        if warm else None)
    directory = pool.directory
    marker = f"marker-{uuid.uuid4().hex}"
    assert pool.run([SH, "echo", "1"] if not warm else [PY, "-c", "print(1)"],
                    capture_output=True).stdout == b"1\n"
    busy: list = []
    args = ([SH, "sh", "-c", "sleep 1000", marker] if not warm else
            [PY, "-c", "import time; time.sleep(1000)", marker])
    started = threading.Thread(target=lambda: busy.append(pool.run(args)))
    started.start()
    while not pool._running:  # (the run has its km; close() must end it)
        time.sleep(0.01)
    assert processes_with(directory)  # the server and its spares
    pool.close()
    started.join()
    assert busy[0].returncode == -9
    assert processes_with(directory) == [] and processes_with(marker) == []
    assert not os.path.exists(directory)
    with pytest.raises(ValueError):
        pool.run([SH, "true"])


def test_a_warm_up_script_and_a_snapshot_path(tmp_path):
    script = tmp_path / "warm.py"
    script.write_text("import decimal\nfrom kontain.guest import serve\nserve()\n")
    with kontain.Pool(1, warm=kontain.Warm([PY, str(script)]), km_options=KM) as pool:
        result = pool.run(code="import sys; print('decimal' in sys.modules, sys.argv)",
                          capture_output=True)
        assert result.stdout == b"True ['-c']\n"
        snapshot = tmp_path / "copy.snap"
        shutil.copy(os.path.join(pool.directory, "warm.snap"), snapshot)
    with kontain.Pool(1, warm=str(snapshot), km_options=KM) as pool:
        result = pool.run([PY, "-c", "import sys; print(sys.argv)", "a"], capture_output=True)
        assert result.stdout == b"['-c', 'a']\n"


def test_a_snippet_cannot_reach_the_pools_snapshot(tmp_path):
    """The snapshot is handed to km as /dev/fd/N: km closes N before the payload runs,
    so a snippet cannot reopen it (for writing, through /proc/self/fd) and change what
    every later run of the pool resumes."""
    warm = kontain.Warm([PY, "-c", "import json"])
    with kontain.Pool(1, km_options=KM, warm=warm) as pool:
        n = pool._snapshot_fd
        probe = (f"import os\ntry:\n    os.open('/proc/self/fd/{n}', os.O_RDWR)\n"
                 f"    print('reopened')\nexcept OSError as e:\n    print(e.errno)")
        result = pool.run(code=probe, capture_output=True)
        assert result.stdout.strip() == b"2", result  # ENOENT: no descriptor N
        again = pool.run(code="print(2)", capture_output=True)
        assert again.stdout == b"2\n"
