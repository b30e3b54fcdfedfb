"""What a root process in an unprivileged container cannot do, and a payload under
km --root must not either: make device nodes, mount, chroot, pivot_root, unshare, setns,
open files by handle, set up io_uring (which would open paths behind km's back), ptrace
or signal host processes, push input into the terminal.

A native chroot is no oracle here: root in a chroot keeps every capability (it can mknod
/dev/mem, mount, escape the chroot by chroot + `..`, open_by_handle_at the host's /), so
these are not run natively; each test states the outcome a container gives instead.
tests/security/payloads/priv.c makes the attempts.
"""

from __future__ import annotations

import os
import select
import stat
import subprocess

import pytest

from .conftest import FLAVOUR, lines_of, mount_table, spawn_victim


@pytest.fixture
def priv_root(sandbox, escape_payloads):
    return sandbox.make_root("root-km", escape_payloads.build("priv", FLAVOUR))


def failures_required(result, *prefixes: str) -> list[str]:
    """Every attempt line (with one of the prefixes) must report an error."""
    problems, seen = [], 0
    for what, value in lines_of(result):
        if what.startswith(prefixes):
            seen += 1
            if value.startswith("OK"):
                problems.append(f"{what}: {value} (must fail)")
    if not seen:
        problems.append("the payload made none of its attempts")
    return problems


def test_device_nodes_cannot_be_made(sandbox, priv_root):
    under_km = sandbox.km(priv_root, "devices", str(sandbox.host))
    # As in a container without CAP_MKNOD: device nodes are refused with EPERM; fifos,
    # sockets and regular files are fine.
    expected = {"mknod chr 1:3 (null)": "EPERM", "mknod chr 1:1 (mem)": "EPERM",
                "mknod blk 7:0 (loop0)": "EPERM", "mknodat chr 1:2 (kmem)": "EPERM",
                "open /w/mem": "ENOENT", "mknod fifo": "OK", "mknod reg": "OK",
                "mknod sock": "OK"}
    got = dict(lines_of(under_km))
    problems = [f"{what}: {got.get(what)} (expected {value})"
                for what, value in expected.items() if got.get(what) != value]
    made = list((priv_root / "w").iterdir()) if (priv_root / "w").is_dir() else []
    devices = [p.name for p in made
               if stat.S_ISCHR(p.lstat().st_mode) or stat.S_ISBLK(p.lstat().st_mode)]
    if devices:
        problems.append(f"device nodes were made in the root: {devices}")
    sandbox.check(under_km, *problems)


def mount_changes(before: str, after: str, top) -> list[str]:
    """Mounts that appeared or went away where the payload could have made them (inside
    the test's directory, or at the paths it used, were they taken as host paths)."""
    def points(table: str) -> set[str]:
        return {line.split()[4] for line in table.splitlines()}
    changed = points(before) ^ points(after)
    return [f"the host's mount table changed at {p}" for p in sorted(changed)
            if p in ("/", "/mnt", "/jail") or p.startswith(str(top))]


def test_mount_chroot_unshare_setns_fail(sandbox, priv_root):
    # The attempts are made in a private mount namespace (a seatbelt: a km that let a
    # mount through must not change this machine's mount table); each must fail.
    before = mount_table()
    under_km = sandbox.km(priv_root, "mounts", str(sandbox.host), private=True)
    problems = failures_required(under_km, "mount", "umount", "unshare", "setns", "chroot",
                                 "open HOSTDIR")
    problems += mount_changes(before, mount_table(), sandbox.top)
    sandbox.check(under_km, *problems)


def test_pivot_root_fails(sandbox, priv_root):
    # In a private mount namespace too: a pivot_root that worked must not move the root
    # of this machine's namespace.
    under_km = sandbox.km(priv_root, "pivot", str(sandbox.host), private=True)
    sandbox.check(under_km, *failures_required(under_km, "pivot_root"))


def test_open_by_handle_fails(sandbox, priv_root):
    under_km = sandbox.km(priv_root, "handles", str(sandbox.host))
    # Without CAP_DAC_READ_SEARCH both fail (EPERM); with it a handle for inode 2 opens
    # the host file system's root from anywhere (the "shocker" container escape).
    sandbox.check(under_km, *failures_required(under_km, "name_to_handle_at",
                                               "open_by_handle_at", "openat that"))


def test_io_uring_is_refused_or_confined(sandbox, priv_root):
    under_km = sandbox.km(priv_root, "io_uring", str(sandbox.host))
    # io_uring's own openat would resolve paths in the host kernel, behind km: either
    # the ring is refused, or what it opens stays inside the root.
    sandbox.check(under_km, *failures_required(under_km, "io_uring_setup",
                                               "io_uring openat"))


def victim_state(victim: subprocess.Popen) -> tuple[str, str]:
    """(State, TracerPid) of the victim from the host's /proc."""
    fields = {}
    with open(f"/proc/{victim.pid}/status") as f:
        for line in f:
            key, _, value = line.partition(":")
            fields[key] = value.strip()
    return fields.get("State", "?"), fields.get("TracerPid", "?")


@pytest.mark.parametrize("mode", ["ptrace", "signals"])
def test_host_processes_are_out_of_reach(sandbox, priv_root, mode):
    victim = spawn_victim()
    try:
        under_km = sandbox.km(priv_root, mode, str(sandbox.host), str(victim.pid))
        alive = victim.poll() is None
        state = victim_state(victim) if alive else ("gone", "0")
    finally:
        victim.kill()
        victim.wait()
    # A payload in a container sees no host process: ptrace, process_vm_readv, kcmp,
    # pidfd_open and kill of one fail (ESRCH in a pid namespace, EPERM under Landlock's
    # signal scoping). The victim must be alive, running and untraced afterwards.
    problems = failures_required(under_km, "ptrace", "process_vm_readv", "kcmp",
                                 "pidfd_open", "kill")
    if not alive:
        problems.append("the host process the payload attacked is dead")
    elif state[0].startswith(("T", "t")) or state[1] != "0":
        problems.append(f"the host process is stopped or traced: State {state[0]}, "
                        f"TracerPid {state[1]}")
    sandbox.check(under_km, *problems)


def test_tiocsti_cannot_push_input_into_the_terminal(sandbox, priv_root):
    master, slave = os.openpty()
    try:
        under_km = sandbox.km(priv_root, "tiocsti", str(sandbox.host), stdin=slave)
        # TIOCSTI is synchronous: what it pushed is in the terminal's input queue now,
        # readable on the slave side (a shell there would run it), and echoed to the
        # master. Both must be empty.
        readable = select.select([slave, master], [], [], 0)[0]
        pushed = b"".join(os.read(fd, 4096) for fd in readable)
    finally:
        os.close(master)
        os.close(slave)
    problems = failures_required(under_km, "TIOCSTI")
    if pushed:
        problems.append(f"the terminal received input from the payload: {pushed!r}")
    sandbox.check(under_km, *problems)
