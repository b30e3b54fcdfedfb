"""Podman and Docker with krun as their runtime, runc as the oracle.

Each test runs the same engine command line under krun and under runc, on the local
images scripts/images.sh builds (busybox-static, and a debootstrapped Debian with
python3), and checks what the user sees: output, exit status, signals, limits. The
engines are set up as scripts/setup.sh configures them (krun registered as a named
runtime in containers.conf and daemon.json); scripts/engines.sh starts the daemons.
"""

from __future__ import annotations

import json
import os
import pty
import re
import select
import shutil
import socket
import tempfile
import time
import urllib.request
import uuid
from pathlib import Path

import pytest
from conftest import REPO, run, wait_until

KRUN = str(REPO / ".venv" / "bin" / "krun")
DOCKER = "/usr/bin/docker"  # the daemon's own client (a newer one may come first in PATH)
RUNTIMES = ("krun", "runc")

pytestmark = [
    pytest.mark.skipif(os.geteuid() != 0, reason="container engines need root"),
    pytest.mark.slow,
]


class Engine:
    """One engine's command line: podman, or docker talking to dockerd."""

    def __init__(self, name: str) -> None:
        self.name = name
        self.binary = DOCKER if name == "docker" else shutil.which("podman") or "podman"
        self.created: list[str] = []

    def image(self, which: str) -> str:
        return f"localhost/kontain-{which}" if self.name == "podman" else f"kontain-{which}"

    def runtime_flag(self, runtime: str) -> list[str]:
        if self.name == "podman":
            # krun by path, as the README shows first; krun by name is tested apart.
            return ["--runtime", KRUN if runtime == "krun" else runtime]
        return [f"--runtime={runtime}"]

    def cli(self, *args: str, timeout: float = 120, **kwargs):
        # Not in the project's directory: conmon leaves an `oom` file in its working
        # directory when a container is OOM-killed.
        kwargs.setdefault("cwd", tempfile.gettempdir())
        return run([self.binary, *args], timeout=timeout, **kwargs)

    def run(self, runtime: str, *args: str, timeout: float = 120, **kwargs):
        """`run --rm` with runtime; args: options, then the image and the command."""
        return self.cli("run", "--rm", *self.runtime_flag(runtime), *args, timeout=timeout,
                        **kwargs)

    def start(self, runtime: str, *args: str) -> str:
        """`run -d`: a container left running; returns its name (removed at teardown)."""
        name = f"kontain-{uuid.uuid4().hex[:12]}"
        self.created.append(name)
        done = self.cli("run", "-d", "--name", name, *self.runtime_flag(runtime), *args)
        assert done.returncode == 0, done.err
        return name

    def inspect(self, name: str, template: str) -> str:
        done = self.cli("inspect", "--format", template, name)
        assert done.returncode == 0, done.err
        return done.out.strip()

    def logs(self, name: str) -> str:
        done = self.cli("logs", name)
        return done.out + done.err

    def remove_created(self) -> None:
        for name in self.created:
            self.cli("rm", "-f", "-t", "0", name) if self.name == "podman" else \
                self.cli("rm", "-f", name)
        self.created.clear()


@pytest.fixture(scope="module")
def images(kvm):
    for tool in ("podman", DOCKER):
        if not shutil.which(tool):
            pytest.fail(f"{tool} is missing: scripts/setup.sh installs it")
    for script in ("engines.sh", "images.sh"):
        done = run([REPO / "scripts" / script, "podman", "docker"] if script == "images.sh"
                   else [REPO / "scripts" / script], timeout=600)
        assert done.returncode == 0, f"scripts/{script}: {done.err}"


@pytest.fixture(params=["podman", "docker"])
def engine(request, images):
    engine = Engine(request.param)
    yield engine
    engine.remove_created()


def both(engine: Engine, *args: str, **kwargs) -> dict:
    """engine.run(...) under each runtime: {runtime: result}."""
    return {runtime: engine.run(runtime, *args, **kwargs) for runtime in RUNTIMES}


def assert_agree(results: dict, stdout: bool = True) -> None:
    krun, runc = results["krun"], results["runc"]
    assert krun.returncode == runc.returncode, (krun.describe(), krun.err, runc.err)
    if stdout:
        assert krun.out == runc.out, (krun.out, runc.out)
    assert "internal error" not in krun.err and "Traceback" not in krun.err, krun.err


# ---- run --rm ------------------------------------------------------------------------


def test_run_busybox(engine):
    results = both(engine, engine.image("busybox"), "sh", "-c",
                   "echo hello from $(hostname | wc -c) chars; echo to stderr >&2; exit 3")
    assert_agree(results)
    assert results["krun"].returncode == 3
    assert results["krun"].out.startswith("hello from")
    assert "to stderr" in results["krun"].err


def test_run_python(engine):
    script = ("import json, os, sys, platform; "
              "print(json.dumps([sum(range(100)), platform.python_version(), os.getcwd()])); "
              "sys.exit(5)")
    results = both(engine, engine.image("python"), "python3", "-c", script)
    assert_agree(results)
    assert results["krun"].returncode == 5
    assert json.loads(results["krun"].out)[0] == 4950


def test_named_runtime(images):
    """krun registered in containers.conf by scripts/setup.sh: `--runtime krun`."""
    done = run(["podman", "run", "--rm", "--runtime", "krun", "localhost/kontain-busybox",
                "cat", "/proc/self/status"], timeout=120)
    assert done.returncode == 0, done.err
    assert re.search(r"^Name:\s+cat$", done.out, re.M)


def test_interactive_terminal(engine):
    """`run -it` driven through a pty, as a user at a terminal types."""
    outputs = {}
    for runtime in RUNTIMES:
        argv = [engine.binary, "run", "--rm", "-it", *engine.runtime_flag(runtime),
                engine.image("busybox"), "sh"]
        outputs[runtime] = _terminal_session(argv)
    for runtime, (status, screen) in outputs.items():
        assert status == 4, (runtime, screen)
        assert "42" in screen and "tty=/dev/" in screen, (runtime, screen)


def _terminal_session(argv: list[str]) -> tuple[int, str]:
    pid, master = pty.fork()
    if pid == 0:
        os.execv(argv[0], argv)
    screen = b""

    def read_until(pattern: bytes, timeout: float = 60) -> None:
        nonlocal screen
        deadline = time.monotonic() + timeout
        while pattern not in screen:
            left = deadline - time.monotonic()
            if left <= 0:
                raise AssertionError(f"no {pattern!r} on the terminal: {screen!r}")
            ready, _, _ = select.select([master], [], [], left)
            if ready:
                try:
                    screen += os.read(master, 4096)
                except OSError:  # EIO: the other side closed
                    break

    try:
        read_until(b"# ")  # the shell's prompt
        os.write(master, b"echo $((6*7)) tty=$(tty)\r")
        read_until(b"tty=/dev/")
        read_until(b"# ")
        os.write(master, b"exit 4\r")
        read_until(b"\x00\x00never")  # to the end of the session (EIO)
    except AssertionError:
        os.kill(pid, 9)
        raise
    finally:
        _, status = os.waitpid(pid, 0)
        os.close(master)
    return os.waitstatus_to_exitcode(status), screen.decode(errors="replace")


# ---- detached containers -------------------------------------------------------------

TRAPPING_LOOP = ('trap "echo got TERM; exit 3" TERM; trap "echo got USR1" USR1; echo started; '
                 'while :; do sleep 0.1; done')


@pytest.mark.parametrize("runtime", RUNTIMES)
def test_detached_logs_exec_top_stop(engine, runtime):
    name = engine.start(runtime, engine.image("busybox"), "sh", "-c", TRAPPING_LOOP)
    wait_until(lambda: "started" in engine.logs(name), "the container's first output")
    done = engine.cli("exec", name, "sh", "-c", "echo in exec; ps -o pid,comm")
    assert done.returncode == 0, done.err
    assert done.out.startswith("in exec")
    assert re.search(r"^\s*1\s+sh$", done.out, re.M), done.out
    done = engine.cli("exec", name, "sh", "-c", "exit 9")
    assert done.returncode == 9
    done = engine.cli("top", name)
    assert done.returncode == 0, done.err
    assert "sh -c" in done.out, done.out
    done = engine.cli("kill", "-s", "USR1", name)
    assert done.returncode == 0, done.err
    wait_until(lambda: "got USR1" in engine.logs(name), "the payload's USR1 trap")
    started = time.monotonic()
    done = engine.cli("stop", "-t", "30", name)
    assert done.returncode == 0, done.err
    assert time.monotonic() - started < 25, "stop waited for its timeout: TERM was lost"
    assert engine.inspect(name, "{{.State.ExitCode}}") == "3"
    assert "got TERM" in engine.logs(name)


@pytest.mark.parametrize("runtime", RUNTIMES)
def test_stop_kills_after_timeout(engine, runtime):
    name = engine.start(runtime, engine.image("busybox"), "sh", "-c",
                        'trap "" TERM; echo started; while :; do sleep 0.1; done')
    wait_until(lambda: "started" in engine.logs(name), "the container's first output")
    started = time.monotonic()
    done = engine.cli("stop", "-t", "1", name)
    assert done.returncode == 0, done.err
    assert time.monotonic() - started >= 1
    assert engine.inspect(name, "{{.State.ExitCode}}") == "137"


@pytest.mark.parametrize("runtime", RUNTIMES)
def test_each_process_is_a_vm(engine, runtime):
    """The container's main process and each child it forks is a km with its own VM
    (a kvm-vm descriptor); under runc none is."""
    name = engine.start(runtime, engine.image("busybox"), "sh", "-c",
                        "sleep 1000 & sleep 1000 & echo started; wait")
    wait_until(lambda: "started" in engine.logs(name), "the container's first output")
    main = int(engine.inspect(name, "{{.State.Pid}}"))
    children = wait_until(lambda: _children(main) if len(_children(main)) == 2 else [],
                          "the two sleeps")
    for pid in (main, *children):
        has_vm = "anon_inode:kvm-vm" in _fd_targets(pid)
        assert has_vm == (runtime == "krun"), (runtime, pid, _fd_targets(pid))


def _children(pid: int) -> list[int]:
    found = []
    for task in os.listdir(f"/proc/{pid}/task"):
        try:
            found += [int(c) for c in Path(f"/proc/{pid}/task/{task}/children").read_text()
                      .split()]
        except OSError:
            pass
    return found


def _fd_targets(pid: int) -> set[str]:
    targets = set()
    for fd in os.listdir(f"/proc/{pid}/fd"):
        try:
            targets.add(os.readlink(f"/proc/{pid}/fd/{fd}"))
        except OSError:
            pass
    return targets


@pytest.mark.parametrize("runtime", RUNTIMES)
def test_published_port(engine, runtime):
    """-p HOST:CONT to python3's http.server in the container, fetched from the host."""
    port = _free_port()
    name = engine.start(runtime, "-p", f"127.0.0.1:{port}:8000", engine.image("python"),
                        "python3", "-m", "http.server", "8000", "--directory", "/etc")
    body = wait_until(lambda: _fetch(f"http://127.0.0.1:{port}/hostname"),
                      f"the http.server of the {runtime} container")
    assert body.strip() == engine.inspect(name, "{{.Config.Hostname}}").encode()


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _fetch(url: str) -> bytes | None:
    try:
        with urllib.request.urlopen(url, timeout=5) as reply:
            return reply.read()
    except OSError:
        return None


# ---- limits and security options -----------------------------------------------------


def test_memory_limit(engine):
    eat = "b = bytearray({} << 20); b[::4096] = b'x' * len(b[::4096]); print('survived')"
    over = both(engine, "--memory", "64m", "--memory-swap", "64m", engine.image("python"),
                "python3", "-c", eat.format(200))
    assert_agree(over)
    assert over["krun"].returncode == 137
    within = both(engine, "--memory", "64m", "--memory-swap", "64m", engine.image("python"),
                  "python3", "-c", eat.format(8))
    assert_agree(within)
    assert within["krun"].out == "survived\n"


def test_pids_limit(engine):
    """A fork over --pids-limit fails with EAGAIN: the shell says it can't fork and
    gives up, the container's other processes unharmed. (krun's processes are each a km
    with more host tasks, its VM's, so the limit comes after fewer of the payload's
    processes than with runc.)"""
    script = "i=0; while [ $i -lt 60 ]; do sleep 30 & i=$((i+1)); done; echo unreachable"
    results = both(engine, "--pids-limit", "24", engine.image("busybox"), "sh", "-c", script)
    assert_agree(results)
    for result in results.values():
        assert "can't fork: Resource temporarily unavailable" in result.err, result.err


def test_read_only_root(engine):
    script = "touch /newfile; echo status=$?; touch /tmp/ok 2>/dev/null; echo tmp=$?"
    results = both(engine, "--read-only", "--tmpfs", "/tmp", engine.image("busybox"), "sh",
                   "-c", script)
    assert_agree(results)
    assert "status=1" in results["krun"].out and "tmp=0" in results["krun"].out
    assert "Read-only file system" in results["krun"].err


def test_user(engine):
    results = both(engine, "--user", "1000:1000", engine.image("busybox"), "sh", "-c",
                   "id; touch /root/x 2>&1; echo $?")
    assert_agree(results)
    assert results["krun"].out.startswith("uid=1000(user) gid=1000(user)")


def test_volume_env_workdir(engine, tmp_path):
    (tmp_path / "in.txt").write_text("from the host\n")
    for runtime in RUNTIMES:
        done = engine.run(runtime, "-v", f"{tmp_path}:/data", "-v",
                          f"{tmp_path}:/data-ro:ro", "-e", "GREETING=hello", "-w", "/data",
                          engine.image("busybox"), "sh", "-c",
                          'cat in.txt; echo "$GREETING $(pwd)" > out-$0.txt; '
                          "touch /data-ro/no 2>/dev/null || echo ro refused", runtime)
        assert done.returncode == 0, done.err
        assert done.out == "from the host\nro refused\n"
        assert (tmp_path / f"out-{runtime}.txt").read_text() == "hello /data\n"


def test_cap_drop(engine):
    results = both(engine, "--cap-drop", "CHOWN", "--cap-drop", "NET_RAW",
                   engine.image("busybox"), "sh", "-c",
                   "chown 1000 /tmp; echo chown=$?; grep ^Cap /proc/self/status")
    assert_agree(results)
    assert "chown=1" in results["krun"].out
    capabilities = int(re.search(r"CapEff:\s+(\w+)", results["krun"].out)[1], 16)
    assert not capabilities & (1 << 0 | 1 << 13)  # CAP_CHOWN, CAP_NET_RAW


def test_seccomp_profile(engine, tmp_path):
    """A profile of the user's: its errno for the calls it denies, the rest allowed."""
    profile = {
        "defaultAction": "SCMP_ACT_ALLOW",
        "syscalls": [
            {"names": ["mkdir", "mkdirat"], "action": "SCMP_ACT_ERRNO", "errnoRet": 13},
            {"names": ["fchmodat", "chmod"], "action": "SCMP_ACT_ERRNO", "errnoRet": 1},
        ],
    }
    path = tmp_path / "profile.json"
    path.write_text(json.dumps(profile))
    results = both(engine, "--security-opt", f"seccomp={path}", engine.image("busybox"),
                   "sh", "-c", "mkdir /tmp/d; echo mkdir=$?; chmod 700 /tmp; echo chmod=$?; "
                   "touch /tmp/f; echo touch=$?")
    assert_agree(results)
    assert results["krun"].out == "mkdir=1\nchmod=1\ntouch=0\n"
    assert "Permission denied" in results["krun"].err
    assert "Operation not permitted" in results["krun"].err


def test_image_python_pipeline(engine):
    """A Debian userland under krun: a shell pipeline with python3 and coreutils."""
    script = "seq 1 1000 | python3 -c 'import sys; print(sum(map(int, sys.stdin)))' | cat"
    results = both(engine, engine.image("python"), "bash", "-c", script)
    assert_agree(results)
    assert results["krun"].out == "500500\n"


def test_krun_error_reaches_the_user(engine):
    results = both(engine, engine.image("busybox"), "/no/such/program")
    krun, runc = results["krun"], results["runc"]
    assert krun.returncode == runc.returncode != 0, (krun.describe(), runc.describe())
    assert "no/such/program" in krun.err, krun.err
