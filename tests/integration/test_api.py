"""kontain.run and kontain.Popen against subprocess: the same command, the same outputs,
errors and return codes; and no process of the payload left when they say it is over."""

from __future__ import annotations

import asyncio
import io
import signal
import subprocess
import time
import uuid

import pytest
from conftest import processes_with

import kontain
from kontain import Policy

pytestmark = pytest.mark.usefixtures("kvm")

#: As every km test: a km bug in a system call ends the payload.
KM = ["--strict"]
SH = "/bin/busybox"
ENV = {"PATH": "/usr/bin:/bin", "LC_ALL": "C"}


def both(argv, **kwargs):
    """(subprocess.run's result or exception, kontain.run's) for the same arguments."""
    results = []
    for runner, extra in ((subprocess.run, {}), (kontain.run, {"km_options": KM})):
        try:
            results.append(runner(argv, **kwargs, **extra))
        except Exception as e:  # noqa: BLE001 - the exception is what is compared
            results.append(e)
    return results


def same(native, km):
    if isinstance(native, BaseException):
        assert type(km) is type(native), (native, km)
        assert str(km) == str(native)
        return
    assert (km.returncode, km.stdout, km.stderr) == (native.returncode, native.stdout,
                                                     native.stderr)


@pytest.mark.parametrize("kwargs", [
    {"capture_output": True},
    {"capture_output": True, "text": True},
    {"capture_output": True, "encoding": "utf-8", "errors": "replace"},
    {"capture_output": True, "universal_newlines": True},
    {"stdout": subprocess.PIPE, "stderr": subprocess.STDOUT},
    {"stdout": subprocess.DEVNULL, "stderr": subprocess.PIPE},
    {"capture_output": True, "input": b"typed in\r\n"},
    {"capture_output": True, "input": "typed in\r\n", "text": True},
    {"capture_output": True, "stdin": subprocess.DEVNULL},
    {"capture_output": True, "env": ENV},
    {"capture_output": True, "cwd": "/usr/lib"},
])
def test_arguments_mean_what_they_mean_to_subprocess(kwargs):
    argv = [SH, "sh", "-c", "cat; pwd; echo out; echo err >&2; printf 'a\\r\\nb\\rc'; "
            "env | grep -c LC_ALL; exit 3"]
    same(*both(argv, **kwargs))


def test_check_raises_calledprocesserror():
    native, km = both([SH, "false"], check=True)
    same(native, km)
    assert isinstance(km, subprocess.CalledProcessError) and km.returncode == 1


@pytest.mark.parametrize("argv,error", [
    (["no-such-program-anywhere"], FileNotFoundError),
    (["/no/such/file"], FileNotFoundError),
    (["/etc/passwd"], PermissionError),   # not executable
    (["/usr/lib"], PermissionError),      # a directory
])
def test_a_program_that_cannot_run_raises_as_subprocess(argv, error):
    native, km = both(argv)
    assert isinstance(native, error)
    same(native, km)
    assert km.filename == native.filename


def test_stdout_to_a_file_object_and_a_descriptor(tmp_path):
    for target in ("file", "fd"):
        path = tmp_path / target
        with open(path, "wb") as f:
            out = f if target == "file" else f.fileno()
            assert kontain.run([SH, "echo", target], stdout=out, km_options=KM).returncode == 0
        assert path.read_text() == f"{target}\n"


def test_stdin_from_a_file(tmp_path):
    path = tmp_path / "in"
    path.write_text("from a file\n")
    with open(path) as f:
        result = kontain.run([SH, "cat"], stdin=f, capture_output=True, km_options=KM)
    assert result.stdout == b"from a file\n"


def test_a_file_object_without_a_descriptor_is_refused_as_by_subprocess():
    with pytest.raises(io.UnsupportedOperation):
        kontain.run([SH, "true"], stdout=io.BytesIO(), km_options=KM)



def test_timeout_raises_timeoutexpired_and_leaves_no_process():
    marker = f"marker-{uuid.uuid4().hex}"
    # A shell that forks a child in a new session, both spinning forever.
    script = f"setsid sh -c 'while :; do :; done' {marker} & while :; do :; done"
    started = time.monotonic()
    with pytest.raises(subprocess.TimeoutExpired) as raised:
        kontain.run([SH, "sh", "-c", script, marker], timeout=1.0, capture_output=True,
                    km_options=KM)
    assert raised.value.timeout == 1.0 and raised.value.cmd[-1] == marker
    assert time.monotonic() - started < 10
    assert processes_with(marker) == []


def test_run_returns_with_no_process_of_the_payload_left():
    marker = f"marker-{uuid.uuid4().hex}"
    result = kontain.run([SH, "sh", "-c", f"sleep 1000 {marker} >/dev/null 2>&1 & echo bg",
                          marker], capture_output=True, km_options=KM)
    assert result.stdout == b"bg\n"
    assert processes_with(marker) == []


def test_stats():
    result = kontain.run([SH, "echo", "hi"], capture_output=True, km_options=KM)
    stats = result.stats
    assert stats.wall_time > 0 and stats.cpu_time > 0
    assert stats.peak_memory > 0 and stats.guest_memory > 0
    assert stats.syscalls["write"] == 1 and stats.syscalls["exit_group"] == 1
    assert stats.hypercalls == sum(stats.syscalls.values())
    assert stats.vm_exits >= stats.hypercalls  # (KVM's count: every kind of exit)
    assert stats.denied == {} and stats.limit is None


# ---- Popen ------------------------------------------------------------------------------

def test_popen_pipes_poll_wait_and_returncode():
    with kontain.Popen([SH, "sh", "-c", "read x; echo got $x; exit 7"], stdin=subprocess.PIPE,
                       stdout=subprocess.PIPE, text=True, km_options=KM) as p:
        assert p.pid > 0 and p.poll() is None and p.returncode is None
        with pytest.raises(subprocess.TimeoutExpired):
            p.wait(timeout=0.2)
        p.stdin.write("line\n")
        p.stdin.close()
        assert p.stdout.read() == "got line\n"
        assert p.wait() == 7 and p.returncode == 7 and p.poll() == 7
    assert p.stats.syscalls["read"] >= 1


def test_popen_communicate_with_timeout_goes_on_afterwards():
    p = kontain.Popen([SH, "sh", "-c", "echo early; sleep 1; echo late"],
                      stdout=subprocess.PIPE, km_options=KM)
    with pytest.raises(subprocess.TimeoutExpired):
        p.communicate(timeout=0.2)
    out, err = p.communicate()
    assert (out, err, p.returncode) == (b"early\nlate\n", None, 0)
    p.close()


@pytest.mark.parametrize("method,status", [("terminate", -signal.SIGTERM),
                                           ("kill", -signal.SIGKILL),
                                           ("send_signal", -signal.SIGINT)])
def test_popen_signals_reach_the_payload(method, status):
    with kontain.Popen([SH, "sleep", "100"], km_options=KM) as p:
        if method == "send_signal":
            p.send_signal(signal.SIGINT)
        else:
            getattr(p, method)()
        assert p.wait() == status


def test_popen_signal_handled_by_the_payload():
    with kontain.Popen([SH, "sh", "-c", "trap 'echo term; exit 5' TERM; echo ready; "
                        "while :; do sleep 0.05; done"], stdout=subprocess.PIPE,
                       km_options=KM) as p:
        assert p.stdout.readline() == b"ready\n"
        p.terminate()
        assert p.stdout.read() == b"term\n"
        assert p.wait() == 5


# ---- asyncio ----------------------------------------------------------------------------

def test_asyncio_create_subprocess_exec():
    async def main():
        p = await kontain.asyncio.create_subprocess_exec(
            SH, "sh", "-c", "cat; echo err >&2; exit 4", stdin=asyncio.subprocess.PIPE,
            stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE, km_options=KM)
        out, err = await p.communicate(b"in\n")
        with pytest.raises(FileNotFoundError):
            await kontain.asyncio.create_subprocess_exec("no-such-program-anywhere")
        return out, err, p.returncode, p.stats
    out, err, code, stats = asyncio.run(main())
    assert (out, err, code) == (b"in\n", b"err\n", 4)
    assert stats.syscalls["exit_group"] == 1


def test_asyncio_wall_time_kills_the_tree():
    async def main():
        p = await kontain.asyncio.create_subprocess_exec(
            SH, "sh", "-c", "while :; do :; done", policy=Policy(wall_time=0.5),
            km_options=KM)
        return await p.wait(), p.stats
    code, stats = asyncio.run(main())
    assert code == -signal.SIGKILL and stats.limit == "wall_time"


def test_asyncio_max_output():
    async def main():
        p = await kontain.asyncio.create_subprocess_exec(
            SH, "yes", stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE,
            policy=Policy(max_output=1000), km_options=KM)
        out, err = await p.communicate()
        return out, err, p.returncode, p.stats
    out, err, code, stats = asyncio.run(main())
    assert (out, err, code) == (b"y\n" * 500, b"", -signal.SIGKILL)
    assert stats.limit == "max_output"
