"""krun, the OCI runtime: bundles of a busybox root, driven with runc's command line.

The oracle is runc on the same bundle where runc is installed (the README set-up
installs it): output and exit status must agree. Each test keeps its containers' state
in a directory of its own (--root) and deletes what it made.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess

import pytest
from conftest import REPO, run

BUSYBOX = "/bin/busybox"
KRUN = str(REPO / ".venv" / "bin" / "krun")
RUNC = shutil.which("runc")
APPLETS = ("sh", "echo", "cat", "ls", "id", "hostname", "sleep", "touch", "wc", "grep",
           "kill", "mount", "true", "false")

pytestmark = pytest.mark.skipif(os.geteuid() != 0, reason="containers need root")


@pytest.fixture
def bundle(tmp_path, kvm):
    """A bundle: busybox-static as the whole root file system, runc's default config
    running a shell script given to configure()."""
    root = tmp_path / "bundle" / "rootfs"
    (root / "bin").mkdir(parents=True)
    shutil.copy(BUSYBOX, root / "bin" / "busybox")
    for applet in APPLETS:
        (root / "bin" / applet).symlink_to("busybox")
    for directory in ("proc", "sys", "dev", "tmp", "etc"):
        (root / directory).mkdir()
    done = run([KRUN, "spec", "--bundle", str(root.parent)])
    assert done.returncode == 0, done.err
    return root.parent


def configure(bundle, script: str, **changes) -> None:
    path = bundle / "config.json"
    config = json.loads(path.read_text())
    config["process"]["terminal"] = False
    config["process"]["args"] = ["sh", "-c", script]
    for key, value in changes.items():
        config[key] = value
    path.write_text(json.dumps(config))


def runtime(command: str, tmp_path, *args: str, timeout: float = 60, **kwargs):
    state = tmp_path / f"state-{os.path.basename(command)}"
    return run([command, "--root", str(state), *args], timeout=timeout, **kwargs)


def both(bundle, tmp_path, *args: str):
    """krun, and runc where it is installed, with the same arguments on the same bundle."""
    krun = runtime(KRUN, tmp_path, *args, cwd=bundle)
    native = runtime(RUNC, tmp_path, *args, cwd=bundle) if RUNC else None
    return krun, native


def test_run_prints_and_exits_as_runc(bundle, tmp_path):
    configure(bundle, "echo hello from $(hostname); echo pid $$; id -u; exit 7")
    krun, native = both(bundle, tmp_path, "run", "c1")
    assert krun.out == "hello from krun\npid 1\n0\n", krun.err
    assert krun.returncode == 7
    if native:
        assert (native.out, native.returncode) == (krun.out, krun.returncode)


def test_the_container_process_is_a_vm_and_so_are_its_children(bundle, tmp_path):
    # The shell forks: both it and its child are km processes, each with a VM.
    configure(bundle, "sleep 30 & echo started; wait")
    created = runtime(KRUN, tmp_path, "create", "c2", cwd=bundle)
    assert created.returncode == 0, created.err
    state = json.loads(runtime(KRUN, tmp_path, "state", "c2").out)
    assert state["status"] == "created" and state["pid"] > 0
    pid = state["pid"]
    started = subprocess.Popen([KRUN, "--root", str(tmp_path / "state-krun"), "start", "c2"])
    assert started.wait(timeout=60) == 0
    children = _wait_for_children(pid)
    assert _has_vm(pid), "the container's first process holds no kvm-vm"
    assert children and all(_has_vm(child) for child in children)
    assert json.loads(runtime(KRUN, tmp_path, "state", "c2").out)["status"] == "running"
    assert runtime(KRUN, tmp_path, "delete", "c2").returncode != 0  # still running
    assert runtime(KRUN, tmp_path, "delete", "--force", "c2").returncode == 0
    assert runtime(KRUN, tmp_path, "state", "c2").returncode != 0


def _has_vm(pid: int) -> bool:
    fds = f"/proc/{pid}/fd"
    return any(os.readlink(os.path.join(fds, fd)) == "anon_inode:kvm-vm"
               for fd in os.listdir(fds))


def _wait_for_children(pid: int) -> list[int]:
    """The children of pid, once it has one (the shell forks the sleep at start)."""
    import select
    for _ in range(600):
        try:
            with open(f"/proc/{pid}/task/{pid}/children") as f:
                children = [int(c) for c in f.read().split()]
        except OSError:
            return []
        if children:
            return children
        select.select([], [], [], 0.05)  # (polling /proc: there is no event to wait on)
    return []


def test_kill_reaches_the_payloads_handler(bundle, tmp_path):
    configure(bundle, "trap 'echo got TERM; exit 3' TERM; echo ready; "
                      "while true; do sleep 0.1; done")
    assert runtime(KRUN, tmp_path, "create", "c3", cwd=bundle).returncode == 0
    log = tmp_path / "out"
    with open(log, "w") as out:
        starter = subprocess.Popen([KRUN, "--root", str(tmp_path / "state-krun"), "start",
                                    "c3"], stdout=out)
        assert starter.wait(timeout=60) == 0
    state = json.loads(runtime(KRUN, tmp_path, "state", "c3").out)
    assert runtime(KRUN, tmp_path, "kill", "c3", "TERM").returncode == 0
    _wait_until_stopped(tmp_path, "c3")
    assert json.loads(runtime(KRUN, tmp_path, "state", "c3").out)["status"] == "stopped"
    assert state["pid"] > 0
    assert runtime(KRUN, tmp_path, "delete", "c3").returncode == 0


def _wait_until_stopped(tmp_path, container: str) -> None:
    import select
    for _ in range(1200):
        state = json.loads(runtime(KRUN, tmp_path, "state", container).out)
        if state["status"] == "stopped":
            return
        select.select([], [], [], 0.05)
    raise AssertionError(f"{container} did not stop")


def test_pid1_ignores_signals_it_does_not_handle(bundle, tmp_path):
    # As for any pid namespace's init: TERM without a handler does nothing, KILL ends it.
    configure(bundle, "kill -TERM $$; echo still here; exit 4")
    krun, native = both(bundle, tmp_path, "run", "c4")
    assert (krun.out, krun.returncode) == ("still here\n", 4), krun.err
    if native:
        assert (native.out, native.returncode) == (krun.out, krun.returncode)


def test_read_only_root_masked_and_read_only_paths(bundle, tmp_path):
    configure(bundle, "touch /x 2>/dev/null || echo root read-only; "
                      "cat /proc/kcore 2>/dev/null | wc -c; "
                      "echo 1 > /proc/sys/kernel/ns_last_pid 2>/dev/null || echo sys read-only; "
                      "ls /dev/null /dev/zero /dev/urandom /dev/tty /dev/fd/ >/dev/null "
                      "&& echo devices")
    krun, native = both(bundle, tmp_path, "run", "c5")
    assert krun.returncode == 0, krun.err
    assert "root read-only\n" in krun.out and "sys read-only\n" in krun.out
    assert "devices\n" in krun.out
    if native:
        assert native.out == krun.out


def test_errors_are_one_line_and_nonzero(bundle, tmp_path):
    missing = runtime(KRUN, tmp_path, "state", "nothing")
    assert missing.returncode != 0 and missing.err.count("\n") == 1
    assert "does not exist" in missing.err
    configure(bundle, "true")
    assert runtime(KRUN, tmp_path, "create", "dup", cwd=bundle).returncode == 0
    again = runtime(KRUN, tmp_path, "create", "dup", cwd=bundle)
    assert again.returncode != 0 and "exists" in again.err
    assert runtime(KRUN, tmp_path, "delete", "--force", "dup").returncode == 0


def test_pid_file_and_list(bundle, tmp_path):
    configure(bundle, "true")
    pid_file = tmp_path / "pid"
    created = runtime(KRUN, tmp_path, "create", "--pid-file", str(pid_file), "c6", cwd=bundle)
    assert created.returncode == 0, created.err
    state = json.loads(runtime(KRUN, tmp_path, "state", "c6").out)
    assert int(pid_file.read_text()) == state["pid"]
    listed = json.loads(runtime(KRUN, tmp_path, "list", "--format", "json").out)
    assert [c["id"] for c in listed] == ["c6"] and listed[0]["status"] == "created"
    # Only a stopped container is deleted without --force (runtime spec, "delete").
    assert runtime(KRUN, tmp_path, "delete", "c6").returncode != 0
    assert runtime(KRUN, tmp_path, "delete", "--force", "c6").returncode == 0
    assert json.loads(runtime(KRUN, tmp_path, "list", "--format", "json").out) == []


def test_exec_runs_in_the_container_with_its_own_status(bundle, tmp_path):
    configure(bundle, "sleep 30")
    assert runtime(KRUN, tmp_path, "run", "-d", "c7", cwd=bundle).returncode == 0
    try:
        inside = runtime(KRUN, tmp_path, "exec", "-e", "FOO=bar", "--cwd", "/tmp", "c7",
                         "sh", "-c", "echo $FOO $(pwd) $(hostname); cat /proc/1/cmdline; exit 5")
        # (the container's pid 1 as its /proc shows it: the shell exec'd sleep)
        assert (inside.out, inside.returncode) == ("bar /tmp krun\nsleep\x0030\0", 5), \
            inside.err
        killed = runtime(KRUN, tmp_path, "exec", "c7", "sh", "-c", "kill -9 $$")
        assert killed.returncode == 137
        if RUNC:  # the same, natively
            assert runtime(RUNC, tmp_path, "run", "-d", "c7", cwd=bundle,
                           stdin=subprocess.DEVNULL).returncode == 0
            native = runtime(RUNC, tmp_path, "exec", "-e", "FOO=bar", "--cwd", "/tmp", "c7",
                             "sh", "-c", "echo $FOO $(pwd) $(hostname); cat /proc/1/cmdline; "
                             "exit 5")
            runtime(RUNC, tmp_path, "delete", "--force", "c7")
            assert (native.out, native.returncode) == (inside.out, inside.returncode)
    finally:
        runtime(KRUN, tmp_path, "delete", "--force", "c7")


def test_hooks_run_in_order_with_the_state(bundle, tmp_path):
    log = tmp_path / "hooks.log"
    def hook(name: str) -> dict:
        return {"path": "/bin/sh", "args": ["sh", "-c", f"read -r state; echo {name} "
                f"\"$state\" >> {log}"]}
    hooks = {kind: [hook(kind)] for kind in ("prestart", "createRuntime", "poststart",
                                             "poststop")}
    configure(bundle, "echo running >> /dev/null", hooks=hooks)
    assert runtime(KRUN, tmp_path, "create", "c8", cwd=bundle).returncode == 0
    assert runtime(KRUN, tmp_path, "start", "c8").returncode == 0
    _wait_until_stopped(tmp_path, "c8")
    assert runtime(KRUN, tmp_path, "delete", "c8").returncode == 0
    lines = log.read_text().splitlines()
    assert [line.split()[0] for line in lines] == ["prestart", "createRuntime", "poststart",
                                                   "poststop"]
    states = [json.loads(line.split(" ", 1)[1]) for line in lines]
    assert all(s["id"] == "c8" and s["bundle"] == str(bundle) for s in states)
    assert [s["status"] for s in states] == ["created", "created", "running", "stopped"]
    assert states[0]["pid"] > 0


def test_a_failing_prestart_hook_fails_create(bundle, tmp_path):
    configure(bundle, "echo never", hooks={"prestart": [{"path": "/bin/false"}]})
    created = runtime(KRUN, tmp_path, "create", "c9", cwd=bundle)
    assert created.returncode != 0 and "prestart hook" in created.err
    assert runtime(KRUN, tmp_path, "state", "c9").returncode != 0


def test_terminal_through_the_console_socket(bundle, tmp_path):
    """process.terminal: the pty's master comes over --console-socket; a shell on the
    slave reads what is typed there and answers on it."""
    import select
    import socket
    path = tmp_path / "console.sock"
    server = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    server.bind(str(path))
    server.listen(1)
    configure(bundle, "unused")
    config = json.loads((bundle / "config.json").read_text())
    config["process"].update(terminal=True, args=["sh"])
    (bundle / "config.json").write_text(json.dumps(config))
    creating = subprocess.Popen([KRUN, "--root", str(tmp_path / "state-krun"), "create",
                                 "--console-socket", str(path), "c10"], cwd=bundle)
    connection, _ = server.accept()
    _, fds, _, _ = socket.recv_fds(connection, 64, 1)
    master = fds[0]
    try:
        assert creating.wait(timeout=60) == 0
        assert runtime(KRUN, tmp_path, "start", "c10").returncode == 0
        os.write(master, b"echo hello $((6*7)); tty; exit 3\n")
        seen = b""
        while select.select([master], [], [], 30)[0]:
            try:
                chunk = os.read(master, 4096)
            except OSError:  # EIO: the slave side is closed, the shell has exited
                break
            if not chunk:
                break
            seen += chunk
        assert b"hello 42\r\n/dev/pts/0\r\n" in seen, seen
        _wait_until_stopped(tmp_path, "c10")
    finally:
        os.close(master)
        connection.close()
        server.close()
        runtime(KRUN, tmp_path, "delete", "--force", "c10")


def test_the_seccomp_profile_applies_to_the_payloads_calls(bundle, tmp_path):
    """linux.seccomp is enforced by km on the payload's own calls (every process of the
    container, forked ones too): an errno for mkdir, death by SIGSYS for sethostname,
    an argument condition on socket's family."""
    seccomp = {"defaultAction": "SCMP_ACT_ALLOW", "architectures": ["SCMP_ARCH_X86_64"],
               "syscalls": [
                   {"names": ["mkdir", "mkdirat"], "action": "SCMP_ACT_ERRNO", "errnoRet": 13},
                   {"names": ["sethostname"], "action": "SCMP_ACT_KILL_PROCESS"},
                   {"names": ["kill"], "action": "SCMP_ACT_ERRNO", "errnoRet": 1,
                    "args": [{"index": 1, "value": 10, "op": "SCMP_CMP_EQ"}]}]}
    configure(bundle, "mkdir /tmp/x; echo mkdir=$?; hostname foo; echo hostname=$?; "
                      "kill -USR1 $$; echo usr1=$?; kill -0 $$; echo zero=$?",
              linux=dict(json.loads((bundle / "config.json").read_text())["linux"],
                         seccomp=seccomp))
    krun, native = both(bundle, tmp_path, "run", "c11")
    assert krun.out == "mkdir=1\nhostname=159\nusr1=1\nzero=0\n", krun.err
    assert "Permission denied" in krun.err and "Bad system call" in krun.err
    if native:
        assert (native.out, native.err, native.returncode) == \
            (krun.out, krun.err, krun.returncode)


def _cgroup_file(pid: int, controller: str, v1_name: str, v2_name: str) -> str:
    """A cgroup control file of pid's cgroup, read from the host (v1 or v2)."""
    with open(f"/proc/{pid}/cgroup") as f:
        lines = [line.rstrip("\n").split(":", 2) for line in f]
    for _id, controllers, path in lines:
        if controller in controllers.split(","):
            with open(f"/sys/fs/cgroup/{controller}{path}/{v1_name}") as limit:
                return limit.read().strip()
    path = next(p for _id, c, p in lines if c == "")
    with open(f"/sys/fs/cgroup{path}/{v2_name}") as limit:
        return limit.read().strip()


def test_update_pause_resume(bundle, tmp_path):
    configure(bundle, "sleep 30")
    assert runtime(KRUN, tmp_path, "run", "-d", "c12", cwd=bundle).returncode == 0
    try:
        pid = json.loads(runtime(KRUN, tmp_path, "state", "c12").out)["pid"]
        updated = runtime(KRUN, tmp_path, "update", "--memory", "64m", "--pids-limit", "20",
                          "c12")
        assert updated.returncode == 0, updated.err
        assert _cgroup_file(pid, "memory", "memory.limit_in_bytes", "memory.max") == \
            str(64 << 20)
        assert _cgroup_file(pid, "pids", "pids.max", "pids.max") == "20"
        assert runtime(KRUN, tmp_path, "pause", "c12").returncode == 0
        assert json.loads(runtime(KRUN, tmp_path, "state", "c12").out)["status"] == "paused"
        assert runtime(KRUN, tmp_path, "resume", "c12").returncode == 0
        assert json.loads(runtime(KRUN, tmp_path, "state", "c12").out)["status"] == "running"
        assert json.loads(runtime(KRUN, tmp_path, "ps", "--format", "json", "c12").out) \
            == [pid]
    finally:
        runtime(KRUN, tmp_path, "delete", "--force", "c12")


def test_a_memory_limit_kills_a_payload_that_exceeds_it(bundle, tmp_path, payloads):
    """linux.resources.memory: km is inside the container's cgroup, so a payload that
    touches more than the limit is OOM-killed (status 137), as under runc."""
    shutil.copy(payloads.build("eat_memory", "musl"), bundle / "rootfs" / "bin" / "eat")
    limit = {"memory": {"limit": 64 << 20, "swap": 64 << 20}}
    config = json.loads((bundle / "config.json").read_text())
    config["process"].update(terminal=False, args=["/bin/eat", "200"])
    config["linux"]["resources"] = limit
    (bundle / "config.json").write_text(json.dumps(config))
    krun, native = both(bundle, tmp_path, "run", "c13")
    assert krun.returncode == 137, krun.out + krun.err
    if native:
        assert native.returncode == krun.returncode
    config["process"]["args"] = ["/bin/eat", "16"]
    (bundle / "config.json").write_text(json.dumps(config))
    fits = runtime(KRUN, tmp_path, "run", "c14", cwd=bundle)
    assert (fits.out, fits.returncode) == ("touched 16 MiB\n", 0), fits.err


def test_sysctls_are_written_before_proc_sys_is_made_read_only(bundle, tmp_path):
    """podman sets net.ipv4.ping_group_range in every container whose /proc/sys is
    read-only: the sysctl goes in first, as runc orders it."""
    config = json.loads((bundle / "config.json").read_text())
    configure(bundle, "cat /proc/sys/net/ipv4/ping_group_range",
              linux=dict(config["linux"], sysctl={"net.ipv4.ping_group_range": "0 0"}))
    krun, native = both(bundle, tmp_path, "run", "c15")
    assert (krun.out.split(), krun.returncode) == (["0", "0"], 0), krun.err
    if native:
        assert (native.out, native.returncode) == (krun.out, krun.returncode)


def test_runc_mount_extensions_tmpcopyup_and_recursive_read_only(bundle, tmp_path):
    """podman asks for runc's own options: a tmpfs that starts with the image's files
    (tmpcopyup), and a bind made read-only with everything under it (rro)."""
    (bundle / "rootfs" / "etc" / "from-image").write_text("image file\n")
    shared = tmp_path / "shared"
    (shared / "inner").mkdir(parents=True)
    config = json.loads((bundle / "config.json").read_text())
    mounts = config["mounts"] + [
        {"destination": "/etc", "type": "tmpfs", "source": "tmpfs",
         "options": ["nosuid", "nodev", "tmpcopyup"]},
        {"destination": "/data", "type": "bind", "source": str(shared),
         "options": ["rbind", "rro"]},
    ]
    configure(bundle, "cat /etc/from-image; echo new > /etc/written && cat /etc/written; "
                      "grep ' /etc ' /proc/mounts | cut -d' ' -f3; "
                      "touch /data/inner/x 2>/dev/null || echo data read-only", mounts=mounts)
    krun, native = both(bundle, tmp_path, "run", "c16")
    assert krun.out == "image file\nnew\ntmpfs\ndata read-only\n", krun.err
    assert krun.returncode == 0
    assert not (bundle / "rootfs" / "etc" / "written").exists()  # the tmpfs took it
    if native:
        assert (native.out, native.returncode) == (krun.out, krun.returncode)


def test_device_rules_of_the_cgroup(bundle, tmp_path):
    """linux.resources.devices: a device the rules deny cannot be opened even though its
    node is in /dev; the default devices still can (the v1 devices controller here)."""
    config = json.loads((bundle / "config.json").read_text())
    linux = dict(config["linux"])
    linux["devices"] = [{"path": "/dev/kmsg", "type": "c", "major": 1, "minor": 11,
                         "fileMode": 0o644, "uid": 0, "gid": 0}]
    linux["resources"] = dict(linux.get("resources") or {},
                              devices=[{"allow": False, "access": "rwm"}])
    configure(bundle, "true < /dev/kmsg || echo kmsg refused; true < /dev/null && echo null ok",
              linux=linux)
    krun, native = both(bundle, tmp_path, "run", "c17")
    assert krun.out == "kmsg refused\nnull ok\n", krun.err
    assert "Operation not permitted" in krun.err
    if native:
        assert (native.out, native.returncode) == (krun.out, krun.returncode)


def test_no_pivot_moves_the_root_instead(bundle, tmp_path):
    """create --no-pivot (a root on a ramdisk, where pivot_root is refused): the
    container sees the same root, its mounts and devices."""
    configure(bundle, "ls /bin/busybox && cat /proc/self/mountinfo | wc -l >/dev/null "
                      "&& ls /dev/null && hostname")
    krun, native = both(bundle, tmp_path, "run", "--no-pivot", "c18")
    assert (krun.out, krun.returncode) == ("/bin/busybox\n/dev/null\nkrun\n", 0), krun.err
    if native:
        assert (native.out, native.returncode) == (krun.out, krun.returncode)


def test_exec_cap_and_no_new_privs(bundle, tmp_path):
    """exec --cap adds a capability to the process's bounding, effective and permitted
    sets; --no-new-privs sets its no_new_privs."""
    configure(bundle, "sleep 30")
    script = "grep -E '^(CapEff|CapBnd|NoNewPrivs)' /proc/self/status"
    results = {}
    for command in (KRUN, RUNC) if RUNC else (KRUN,):
        name = os.path.basename(command)
        assert runtime(command, tmp_path, "run", "-d", "c19", cwd=bundle,
                       stdin=subprocess.DEVNULL).returncode == 0
        try:
            results[name] = runtime(command, tmp_path, "exec", "--cap", "CAP_NET_RAW",
                                    "--cap", "CAP_SYS_CHROOT", "--no-new-privs", "c19", "sh",
                                    "-c", script)
        finally:
            runtime(command, tmp_path, "delete", "--force", "c19")
    krun = results["krun"]
    assert krun.returncode == 0, krun.err
    fields = dict(line.split(":\t") for line in krun.out.splitlines())
    assert int(fields["CapEff"], 16) & (1 << 13 | 1 << 18) == 1 << 13 | 1 << 18
    assert fields["NoNewPrivs"] == "1"
    if RUNC:
        assert results["runc"].out == krun.out
