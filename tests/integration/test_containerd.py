"""krun under containerd: `ctr` drives containerd's runc shim (io.containerd.runc.v2) with
krun as the shim's runc binary (`--runc-binary`), as a Kubernetes node whose containerd
registers krun as a runtime handler would (docs/kubernetes/).

The oracle is runc on the same commands, where it is installed: output and exit status
must agree. The module starts the engines and loads the local images once
(scripts/engines.sh, scripts/images.sh containerd: both do nothing when already done).
Every container has an id of its own and is removed at the end of its test, whatever
happened (task delete --force, container rm).
"""

from __future__ import annotations

import glob
import os
import select
import shutil
import subprocess
import time
import uuid
from dataclasses import dataclass

import pytest
from conftest import BASE_ENV, REPO, child_setup, run, wait_until

KRUN = str(REPO / ".venv" / "bin" / "krun")
RUNC = shutil.which("runc")
CTR = shutil.which("ctr")
NAMESPACE = "default"
SHIM = "io.containerd.runc.v2"
BUSYBOX = "docker.io/library/kontain-busybox:latest"
PYTHON = "docker.io/library/kontain-python:latest"

pytestmark = [
    pytest.mark.skipif(os.geteuid() != 0, reason="containers need root"),
    pytest.mark.skipif(CTR is None or shutil.which("containerd") is None,
                       reason="containerd and ctr are not installed"),
]


@pytest.fixture(scope="module")
def engine(kvm):
    """containerd running, the kontain-busybox and kontain-python images in it."""
    for argv in (["engines.sh"], ["images.sh", "containerd"]):
        done = run([str(REPO / "scripts" / argv[0]), *argv[1:]], timeout=900)
        if done.returncode != 0:
            pytest.fail(f"{done.describe()}\n{done.out}{done.err}", pytrace=False)


@pytest.fixture
def containers(engine):
    """new(tag) -> a fresh container id; each is deleted, with its task, at the end."""
    made: list[str] = []

    def new(tag: str) -> str:
        cid = f"kontain-test-{tag}-{uuid.uuid4().hex[:10]}"
        made.append(cid)
        return cid

    yield new
    for cid in made:
        ctr("task", "delete", "--force", cid)  # kills a live task first
        ctr("container", "rm", cid)
        for path in cgroups_of(cid):  # (should a test fail half-way)
            try:
                os.rmdir(path)
            except OSError:
                pass


def cgroups_of(cid: str) -> list[str]:
    """The cgroup directories of a container of ctr's (cgroupsPath /NAMESPACE/ID), in the
    unified hierarchy or in each legacy one."""
    return sorted(glob.glob(f"/sys/fs/cgroup/{NAMESPACE}/{cid}")
                  + glob.glob(f"/sys/fs/cgroup/*/{NAMESPACE}/{cid}"))


def ctr(*args: str, timeout: float = 60):
    return run([CTR, "--namespace", NAMESPACE, *args], timeout=timeout)


def ctr_run(binary: str, image: str, cid: str, *argv: str, options: tuple[str, ...] = ()):
    """ctr run -d of argv in a new container of image, with no stdio, the shim running
    binary as its runc: ctr returns once the task has started."""
    return ctr("run", "-d", "--null-io", "--runtime", SHIM, "--runc-binary", binary,
               *options, image, cid, *argv)


@dataclass
class Attached:
    out: str
    err: str
    returncode: int


def attached(argv: list[str], what: str) -> Attached:
    """Run a ctr command attached to a process (ctr run, ctr task exec) that prints, ends
    each of its streams with a line END, then reads a line from its stdin and exits:
    its output without the ENDs, and ctr's status (the process's).

    The output is read in full before the process may exit: ctr can lose the output of
    a process that exits at once (seen here under runc, a few runs in a hundred on a
    loaded machine: containerd's race between a process's exit and the copying of its
    output, as in concourse/concourse#6775)."""
    proc = subprocess.Popen(argv, stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, env=dict(BASE_ENV),
                            preexec_fn=child_setup)
    streams = {proc.stdout: b"", proc.stderr: b""}
    deadline = time.monotonic() + 60
    try:
        while waiting := [s for s, text in streams.items() if not text.endswith(b"END\n")]:
            ready, _, _ = select.select(waiting, [], [], max(0, deadline - time.monotonic()))
            if not ready:
                raise AssertionError(f"no END from {what} after 60 s: {streams}")
            for stream in ready:
                chunk = os.read(stream.fileno(), 4096)
                if not chunk:
                    proc.wait(timeout=60)
                    raise AssertionError(f"{what} ended its output with no END (status "
                                         f"{proc.returncode}): {streams}")
                streams[stream] += chunk
        proc.stdin.close()  # the process's read sees the end of its input: it exits
        status = proc.wait(timeout=60)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
        for stream in (proc.stdin, proc.stdout, proc.stderr):
            stream.close()
    out, err = (text.decode()[:-len("END\n")] for text in streams.values())
    return Attached(out, err, status)


def sh(script: str) -> list[str]:
    """sh -c script, whose shell prints the ENDs and reads a line as it exits, with the
    script's status (for attached())."""
    return ["sh", "-c", f"trap 'echo END; echo END >&2; read line' EXIT\n{script}"]


def ctr_run_attached(binary: str, image: str, cid: str, *argv: str) -> Attached:
    """ctr run --rm of argv (see attached()): ctr waits, prints, ends with its status."""
    return attached([CTR, "--namespace", NAMESPACE, "run", "--rm", "--runtime", SHIM,
                     "--runc-binary", binary, image, cid, *argv], f"{cid} ({binary})")


def ctr_exec_attached(cid: str, exec_id: str, *argv: str, options=()) -> Attached:
    return attached([CTR, "--namespace", NAMESPACE, "task", "exec", "--exec-id", exec_id,
                     *options, cid, *argv], f"exec {exec_id} in {cid}")


def both(tag: str, containers, image: str, *argv: str):
    """The same ctr run --rm with krun, and with runc where it is installed."""
    krun = ctr_run_attached(KRUN, image, containers(f"{tag}-krun"), *argv)
    native = ctr_run_attached(RUNC, image, containers(f"{tag}-runc"), *argv) \
        if RUNC else None
    return krun, native


def tasks() -> dict[str, tuple[int, str]]:
    """ctr task ls: container id -> (host pid, status)."""
    listed = ctr("task", "ls")
    assert listed.returncode == 0, listed.err
    rows = [line.split() for line in listed.out.splitlines()[1:]]
    return {row[0]: (int(row[1]), row[2]) for row in rows if len(row) == 3}


def task_pid(cid: str) -> int:
    pid, status = tasks()[cid]
    assert status == "RUNNING", (cid, status)
    return pid


def wait_stopped(cid: str, pid: int) -> None:
    """Until containerd reports the task stopped: first its process's end (a pidfd
    becomes readable when the process exits), then the shim's report of it."""
    try:
        fd = os.pidfd_open(pid)
    except ProcessLookupError:
        fd = None
    if fd is not None:
        try:
            select.select([fd], [], [], 60)
        finally:
            os.close(fd)
    wait_until(lambda: tasks().get(cid, (0, ""))[1] == "STOPPED", f"task {cid} to stop")


def task_processes(cid: str) -> list[tuple[int, str]]:
    """ctr task ps: (host pid, exec id or "") of each process of the task."""
    listed = ctr("task", "ps", cid)
    assert listed.returncode == 0, listed.err
    processes = []
    for line in listed.out.splitlines()[1:]:
        pid, _, info = line.strip().partition(" ")
        exec_id = info.split("ExecID:", 1)[1].split(",", 1)[0] if "ExecID:" in info else ""
        processes.append((int(pid), exec_id))
    return processes


def has_vm(pid: int) -> bool:
    """Whether pid holds a KVM virtual machine's descriptor (km does; a process runc
    starts does not)."""
    fds = f"/proc/{pid}/fd"
    return any(os.readlink(os.path.join(fds, fd)) == "anon_inode:kvm-vm"
               for fd in os.listdir(fds))


def outcome(result) -> tuple[str, int]:
    return result.out, result.returncode


# --------------------------------------------------------------------------------------


def test_busybox_prints_as_under_runc(containers):
    krun, native = both("echo", containers, BUSYBOX,
                        *sh("echo hello from pid $$; id; ls /bin/sh; grep -c : /etc/passwd"))
    assert outcome(krun) == ("hello from pid 1\nuid=0(root) gid=0(root) groups=0(root)\n"
                             "/bin/sh\n2\n", 0), krun.err
    if native:
        assert outcome(native) == outcome(krun)


def test_a_failing_commands_status_propagates(containers):
    krun, native = both("exit", containers, BUSYBOX, *sh("echo out; echo err >&2; exit 7"))
    assert (krun.out, krun.err, krun.returncode) == ("out\n", "err\n", 7)
    if native:
        assert (native.out, native.err, native.returncode) == ("out\n", "err\n", 7)


def test_python3_image(containers):
    script = ("import os, sys\n"
              "print(tuple(sys.version_info[:2]), os.getpid(), os.getuid())\n"
              "print(sum(i * i for i in range(10000)))\n"
              "print('END', flush=True); print('END', file=sys.stderr, flush=True)\n"
              "sys.stdin.readline(); sys.exit(4)\n")
    krun, native = both("python", containers, PYTHON, "python3", "-c", script)
    assert outcome(krun) == ("(3, 11) 1 0\n333283335000\n", 4), krun.err
    if native:
        assert outcome(native) == outcome(krun)


def _detached_lifecycle(binary: str, cid: str) -> list:
    """Start a shell detached that exits 3 on TERM; exec into it (attached, then
    detached), list its processes, delete it while it runs (refused), TERM it, delete it.
    What it observed, for comparison between runtimes."""
    seen = []
    started = ctr_run(binary, BUSYBOX, cid, "sh", "-c", "trap 'exit 3' TERM; sleep 1000 & wait")
    assert started.returncode == 0, started.describe() + "\n" + started.err
    pid = task_pid(cid)
    inside = ctr_exec_attached(cid, "probe", *sh(
        "echo in $(pwd) as $(id -u); tr '\\0' ' ' < /proc/1/cmdline; echo; echo err >&2; "
        "exit 5"), options=("--cwd", "/tmp"))
    seen.append(("exec", inside.out, inside.err, inside.returncode))
    detached = ctr("task", "exec", "--detach", "--exec-id", "sleeper", cid, "sleep", "900")
    assert detached.returncode == 0, detached.err
    # the task's processes: its shell, the shell's sleep (a fork), the exec'd sleep
    processes = wait_until(lambda: (lambda p: p if len(p) == 3 else None)(task_processes(cid)),
                     f"three processes in {cid}")
    assert pid in [p for p, _ in processes]
    seen.append(("ps", sorted(e for _, e in processes)))
    early = ctr("task", "delete", cid)
    seen.append(("delete running", early.returncode != 0, "must be stopped" in early.err))
    killed = ctr("task", "kill", "-s", "SIGTERM", cid)
    seen.append(("kill", killed.returncode))
    wait_stopped(cid, pid)
    deleted = ctr("task", "delete", cid)
    seen.append(("delete", deleted.returncode, "exit code 3" in deleted.err))
    assert cid not in tasks()
    return seen


def test_detached_task_exec_ps_kill_delete(containers):
    krun = _detached_lifecycle(KRUN, containers("life-krun"))
    assert krun == [
        ("exec", "in /tmp as 0\nsh -c trap 'exit 3' TERM; sleep 1000 & wait \n", "err\n", 5),
        ("ps", ["", "", "sleeper"]),
        ("delete running", True, True),
        ("kill", 0),
        ("delete", 0, True),
    ]
    if RUNC:
        assert _detached_lifecycle(RUNC, containers("life-runc")) == krun


def test_sigkill_ends_a_task_with_137(containers):
    def killed(binary: str, cid: str) -> tuple:
        started = ctr_run(binary, BUSYBOX, cid, "sleep", "1000")
        assert started.returncode == 0, started.describe() + "\n" + started.err
        pid = task_pid(cid)
        assert ctr("task", "kill", "-s", "SIGKILL", cid).returncode == 0
        wait_stopped(cid, pid)
        deleted = ctr("task", "delete", cid)
        removed = ctr("container", "rm", cid)
        return deleted.returncode, "exit code 137" in deleted.err, removed.returncode

    krun = killed(KRUN, containers("kill-krun"))
    assert krun == (0, True, 0)
    if RUNC:
        assert killed(RUNC, containers("kill-runc")) == krun


def test_the_containers_processes_are_vms_under_krun_only(containers):
    def vms(binary: str, cid: str) -> tuple[bool, bool]:
        started = ctr_run(binary, BUSYBOX, cid, "sleep", "1000")
        assert started.returncode == 0, started.describe() + "\n" + started.err
        main = task_pid(cid)
        execd = ctr("task", "exec", "--detach", "--exec-id", "e1", cid, "sleep", "900")
        assert execd.returncode == 0, execd.err
        other = wait_until(lambda: [p for p, e in task_processes(cid) if e == "e1"],
                     f"the exec in {cid}")[0]
        return has_vm(main), has_vm(other)

    assert vms(KRUN, containers("vm-krun")) == (True, True), \
        "a process of the krun container holds no kvm-vm descriptor"
    if RUNC:
        assert vms(RUNC, containers("vm-runc")) == (False, False)


MISSING_MOUNT = ("--mount", "type=bind,src=/nonexistent-kontain-src,dst=/x,options=rbind:ro")


def _run_plain(binary: str, cid: str, *argv: str, options=()):
    """ctr run --rm, its output as it comes (ctr's errors and the container's output)."""
    return ctr("run", "--rm", "--runtime", SHIM, "--runc-binary", binary, *options,
               BUSYBOX, cid, *argv)


def test_a_missing_command_fails_with_a_one_line_error(containers):
    # runc fails at create: the shim quotes its error, ctr prints it. krun finds the
    # command missing as the container starts and says so on the container's stderr
    # (status 127, as a shell's). Either way: a failure and one line naming the command.
    # krun's line comes from a process that exits at once, whose output containerd may
    # lose (see attached(); under runc too, with a command that prints and exits): only
    # that case, status 127 and no output at all, is tried again, at most twice.
    for _attempt in range(3):
        krun = _run_plain(KRUN, containers("missing-krun"), "/nonexistent")
        if not (krun.returncode == 127 and krun.out == krun.err == ""):
            break
    assert (krun.out, krun.err, krun.returncode) == \
        ("", "krun: /nonexistent: No such file or directory\n", 127), krun.describe()
    if RUNC:
        native = _run_plain(RUNC, containers("missing-runc"), "/nonexistent")
        assert native.returncode != 0
        assert len([line for line in native.err.splitlines() if "/nonexistent" in line]) == 1


def test_a_create_error_reaches_the_user_through_the_shim(containers):
    # krun's error, a line of JSON in its --log file (--log-format json), is what the
    # shim quotes in its "OCI runtime create failed", as it quotes runc's.
    for binary in (KRUN, RUNC) if RUNC else (KRUN,):
        cid = containers("create")
        done = _run_plain(binary, cid, "true", options=MISSING_MOUNT)
        assert done.returncode == 1, done.describe()
        lines = [line for line in done.err.splitlines() if "OCI runtime create failed" in line]
        assert len(lines) == 1 and "/nonexistent-kontain-src" in lines[0], done.err
        assert cgroups_of(cid) == []  # a failed create leaves no cgroup behind


def test_a_failed_create_leaves_no_cgroup(containers):
    cid = containers("leak")
    done = _run_plain(KRUN, cid, "true", options=MISSING_MOUNT)
    assert done.returncode == 1, done.describe()
    assert cgroups_of(cid) == []
