"""/proc from inside km --root: links that lead out (/proc/self/root, /proc/1/root,
/proc/self/cwd, /proc/self/fd/N), files that must describe the payload and not km
(maps, smaps, task/*/maps, environ), the descriptors the payload can see, and
/proc/self/mem, which must never give km's memory.

Each runs twice: with the root as the test made it (no /proc inside: km synthesizes some
/proc/self files, a native chroot has none) and with a real procfs mounted at ROOT/proc
in a mount namespace of the run's own. tests/security/payloads/proc.c makes the attempts.
"""

from __future__ import annotations

import dataclasses
import os
import re
import selectors
import subprocess
import time

import pytest

from .conftest import BASE_ENV, FLAVOUR, RUN_TIMEOUT, Result, lines_of

PROC = [pytest.param(False, id="no-proc"), pytest.param(True, id="procfs-mounted")]


def payload_pair(sandbox, escape_payloads):
    return sandbox.pair(escape_payloads.build("proc", FLAVOUR))


def no_host_path(result: Result, root) -> list[str]:
    """The payload must never learn where its root is on the host."""
    if str(root) in result.out:
        return [f"the payload saw the root's host path {root}"]
    return []


# ---- links out of the root ---------------------------------------------------------------


@pytest.mark.parametrize("proc", PROC)
def test_proc_links_do_not_lead_out_of_the_root(sandbox, escape_payloads, proc):
    native_root, km_root = payload_pair(sandbox, escape_payloads)
    native = sandbox.native(native_root, "root", str(sandbox.host), proc=proc)
    under_km = sandbox.km(km_root, "root", str(sandbox.host), proc=proc)
    assert native.returncode == 0, native.out + native.err
    # A native chroot is no oracle here. Without a /proc in the root every attempt fails
    # there, while km may synthesize /proc/self (its links then name the payload's own
    # root and cwd, which is right). With a real procfs a chroot is not a jail at all:
    # /proc/1/root is the host's /, and a root process reads the canary through it (the
    # classic chroot escape). So km is held to the safe outcome: every open that leads
    # towards the host fails, /proc/self/root reads "/", and no link names the root's
    # place on the host.
    problems = no_host_path(under_km, km_root)
    for what, value in lines_of(under_km):
        if (what.startswith("open") and value.startswith("OK")) or (
                what.startswith("opendir") and value == "OK"):
            problems.append(f"{what}: {value} (must fail: it leads out of the root, or "
                            f"to nothing)")
        if what == "readlink /proc/self/root" and value.startswith("OK") and value != "OK /":
            problems.append(f"{what}: {value} (the payload's root is /)")
    if "readlink /proc/1/root:" not in under_km.out:
        problems.append("the payload did not get through its attempts")
    sandbox.check(under_km, *problems)


# ---- files that must describe the payload --------------------------------------------------


@pytest.mark.parametrize("proc", PROC)
def test_proc_files_describe_the_payload_not_km(sandbox, escape_payloads, proc):
    native_root, km_root = payload_pair(sandbox, escape_payloads)
    # km's own environment holds a variable the payload is not given (-e replaces it):
    # /proc/self/environ must show the payload's, not km's.
    env = dict(BASE_ENV, KM_ONLY_VARIABLE="km-only")
    payload_env = ("-e", "PATH=/bin", "-e", "PAYLOAD_VARIABLE=given")
    native = sandbox.native(native_root, "files", str(sandbox.host), proc=proc,
                            env={"PATH": "/bin", "PAYLOAD_VARIABLE": "given"})
    under_km = sandbox.km(km_root, "files", str(sandbox.host), proc=proc, env=env,
                          options=payload_env)
    assert native.returncode == 0, native.out + native.err
    if proc:  # natively every file is there and describes the process itself
        assert "NOT" not in native.out and "refused" not in native.out, native.out
    # Each file either describes the payload or is refused (ENOENT without a procfs,
    # where km synthesizes maps and friends and a chroot has nothing): never km.
    problems = [f"{what}: {value}" for what, value in lines_of(under_km)
                if "NOT" in value]
    tasks = re.search(r"task directory: (\d+) of ours, (\d+) others", under_km.out)
    if tasks and tasks.group(2) != "0":
        problems.append(f"/proc/self/task lists {tasks.group(2)} threads that are km's")
    if under_km.returncode != 0 or "cmdline:" not in under_km.out:
        problems.append(f"the payload did not finish: status {under_km.returncode}")
    sandbox.check(under_km, *problems)


# ---- descriptors ------------------------------------------------------------------------------


@pytest.mark.parametrize("proc", PROC)
def test_km_descriptors_are_invisible(sandbox, escape_payloads, proc):
    native_root, km_root = payload_pair(sandbox, escape_payloads)
    # The oracle always has a procfs: it shows what the payload must see, 0, 1 and 2.
    native = sandbox.native(native_root, "fds", str(sandbox.host), proc=True)
    under_km = sandbox.km(km_root, "fds", str(sandbox.host), proc=proc)
    # km's descriptors (/dev/kvm, the VM, vCPUs, pipes, its root) must not be listed or
    # reachable: poll over the whole range finds 0, 1, 2; nothing beyond the limit (where
    # km keeps its own) answers. Without a procfs in the root, km may instead refuse
    # /proc/self/fd, as a chroot without /proc does: that counts as the native listing.
    refused = b"/proc/self/fd lists: refused ENOENT\n"
    if not proc and refused in under_km.stdout:
        listed = b"/proc/self/fd lists: 0 1 2\n"
        under_km = dataclasses.replace(under_km, stdout=under_km.stdout.replace(refused, listed))
    sandbox.check_same(native, under_km, compare_roots=False)


# ---- /proc/self/mem ------------------------------------------------------------------------


def km_mappings(pid: int) -> list[str]:
    """'ADDRESS PERMS' lines for the readable mappings of the km process: addresses that
    hold km's interpreter, heap, libraries, guest RAM and stacks on the host."""
    lines = []
    with open(f"/proc/{pid}/maps") as f:
        for line in f:
            fields = line.split()
            span, perms = fields[0], fields[1]
            name = fields[5] if len(fields) > 5 else ""
            if perms[0] != "r" or name in ("[vvar]", "[vvar_vclock]", "[vsyscall]"):
                continue
            lines.append(f"{span.split('-')[0]} {perms}\n")
    return lines[:250]


def run_mem(argv: list[str], cwd, feed_km_addresses: bool, env=None) -> Result:
    """Run `proc mem`: wait for "ready", give it km's addresses (if asked), collect."""
    start = time.monotonic()
    proc = subprocess.Popen(argv, cwd=cwd, env=dict(env or BASE_ENV), stdin=subprocess.PIPE,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    try:
        first = b""
        sel = selectors.DefaultSelector()
        sel.register(proc.stdout, selectors.EVENT_READ)
        deadline = start + RUN_TIMEOUT
        while b"\n" not in first and sel.select(max(0.0, deadline - time.monotonic())):
            chunk = os.read(proc.stdout.fileno(), 4096)
            if not chunk:
                break
            first += chunk
        sel.close()
        feed = b""
        if first.startswith(b"ready\n") and feed_km_addresses:
            feed = "".join(km_mappings(proc.pid)).encode()
        out, err = proc.communicate(feed, timeout=max(1.0, deadline - time.monotonic()))
        timed_out = False
    except subprocess.TimeoutExpired:
        proc.kill()
        out, err = proc.communicate()
        timed_out = True
    return Result(argv, proc.returncode, first + out, err, time.monotonic() - start,
                  cwd=str(cwd), timed_out=timed_out)


def mem_problems(result: Result) -> list[str]:
    """Every way of reaching "our memory" must be refused or be the payload's own."""
    problems = []
    found = 0
    for what, value in lines_of(result):
        if what == "ready" or what.startswith("FATAL"):
            continue
        found += 1
        if value.startswith("refused"):
            continue
        m = re.fullmatch(r"own read (\S+), own write (\S+), kernel half (\S+), "
                         r"km's addresses (\d+)/(\d+) read, (\d+) written", value)
        if not m:
            problems.append(f"{what}: {value}")
            continue
        own_read, own_write, kernel, read, tried, written = m.groups()
        if own_read != "yes":
            problems.append(f"{what}: reading the payload's own address gives {own_read} "
                            f"(not its memory: km's?)")
        elif own_write != "yes":
            problems.append(f"{what}: writing the payload's own address: {own_write}")
        if kernel in ("READABLE", "WRITABLE"):
            problems.append(f"{what}: the kernel half (km's GDT/IDT/stub) is {kernel}")
        if read != "0" or written != "0":
            problems.append(f"{what}: km's own memory: {read} of {tried} addresses readable, "
                            f"{written} written")
    if found < 6:
        problems.append(f"only {found} of 6 ways of reaching the memory were tried")
    return problems


@pytest.mark.parametrize("proc", PROC)
def test_proc_self_mem_is_never_km_memory(sandbox, escape_payloads, proc):
    native_root, km_root = payload_pair(sandbox, escape_payloads)
    for root in (native_root, km_root):
        (root / "memlink").symlink_to("/proc/self/mem")
    native = run_mem(sandbox.argv_native(native_root, ["mem", str(sandbox.host)], proc),
                     sandbox.top, feed_km_addresses=False)
    under_km = run_mem(sandbox.argv_km(km_root, ["mem", str(sandbox.host)], proc),
                       sandbox.top, feed_km_addresses=True)
    if proc:  # natively, /proc/self/mem is the process's own memory: the checks hold
        assert not mem_problems(native), native.out
    sandbox.check(under_km, *mem_problems(under_km))


def test_proc_self_mem_without_a_root_is_never_km_memory(escape_payloads, km, tmp_path):
    """Without --root the payload sees the host's /proc: /proc/self/mem there is km's
    process, so km must refuse it or answer with the payload's memory."""
    payload = escape_payloads.build("proc", FLAVOUR)
    work = tmp_path / "work"
    work.mkdir()
    (work / "memlink").symlink_to("/proc/self/mem")
    native = run_mem([str(payload), "mem", str(tmp_path)], work, feed_km_addresses=False)
    assert not mem_problems(native), native.out
    under_km = run_mem([*km, str(payload), "mem", str(tmp_path)], work,
                       feed_km_addresses=True)
    problems = mem_problems(under_km)
    if problems:
        pytest.fail("\n".join([*problems, "", under_km.describe(), under_km.out,
                               under_km.err[-2000:]]), pytrace=False)
