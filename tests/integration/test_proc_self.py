"""/proc/self under km must describe the payload, not the Python process running km:
exe (however the payload was started, and after execve), cmdline, environ, the fd
directory, maps, status/stat/comm. tests/payloads/proc_self.c checks each against what
it knows about itself and prints yes/no, natively and under km.
"""

import os
import subprocess

import pytest

from .oracle import compare

LIBCS = ["musl", "glibc"]


def all_yes(out: str) -> None:
    """Natively every check the payload prints holds."""
    assert ": no" not in out, out


# ---- /proc/self/exe ---------------------------------------------------------------------


def test_proc_self_exe_names_the_payload(payloads, flavour, run_both, assert_same):
    exe = payloads.build("proc_self", flavour)
    out = compare(run_both([exe, "exe", os.path.realpath(exe)]), assert_same)
    all_yes(out)
    assert "readlink /proc/self/exe == expected: yes\n" in out
    assert "readlink /proc/<getpid()>/exe == expected: yes\n" in out


def test_proc_self_exe_relative_to_a_directory_fd(payloads, run_both, assert_same):
    """readlinkat(open("/proc/self"), "exe"), readlinkat(open("/proc"), "self/exe") and a
    relative readlink with /proc/self as the working directory reach the same link."""
    exe = payloads.build("proc_self", "musl")
    out = compare(run_both([exe, "exe_at", os.path.realpath(exe)]), assert_same)
    all_yes(out)
    assert out.count("== expected: yes\n") == 4


def test_proc_self_exe_when_started_by_a_relative_path(payloads, run_both, assert_same):
    """The kernel's link is absolute even when execve was given ./name."""
    exe = payloads.build("proc_self", "musl")
    out = compare(run_both([f"./{exe.name}", "exe", os.path.realpath(exe)], cwd=exe.parent),
                  assert_same)
    all_yes(out)


def test_proc_self_exe_through_a_symlink(payloads, run_both, assert_same, tmp_path):
    """Started through a symlink, /proc/self/exe names the file, not the link."""
    exe = payloads.build("proc_self", "glibc")
    link = tmp_path / "link-to-proc-self"
    link.symlink_to(exe)
    out = compare(run_both([link, "exe", os.path.realpath(exe)]), assert_same)
    all_yes(out)


def test_proc_self_exe_through_path_lookup(payloads, run_native, run_km, assert_same,
                                            tmp_path, base_env):
    exe = payloads.build("proc_self", "musl")
    bindir = tmp_path / "bin"
    bindir.mkdir()
    os.link(exe, bindir / "proc-self-in-path")  # a hard link: its own path, same file
    env = dict(base_env, PATH=f"{bindir}:/usr/bin:/bin")
    expected = str(bindir / "proc-self-in-path")
    native = run_native(["proc-self-in-path", "exe", expected], env=env)
    under_km = run_km(["proc-self-in-path", "exe", expected], env=env)
    assert native.returncode == 0
    all_yes(native.out)
    assert_same(native, under_km)


def test_proc_self_exe_after_execve(payloads, run_both, assert_same):
    """After execve (km re-execs itself) /proc/self/exe names the new program."""
    parent = payloads.build("proc_fork", "musl")
    child = payloads.build("proc_child", "glibc")
    runs = run_both([parent, "exec", child])
    assert runs.native.returncode == 33
    assert f"child: /proc/self/exe == {child}: yes\n" in runs.native.out
    assert_same(runs.native, runs.km)


# ---- cmdline, environ ---------------------------------------------------------------------


@pytest.mark.parametrize("libc", LIBCS)
def test_proc_self_cmdline_is_argv(libc, payloads, run_both, assert_same):
    exe = payloads.build("proc_self", libc)
    out = compare(run_both([exe, "cmdline", "two words", "", "trailing\ttab", "x" * 300]),
                  assert_same)
    assert "6 strings, argc 6, " in out
    assert "/proc/self/cmdline == argv: yes\n" in out


def test_proc_self_cmdline_of_a_long_argv(payloads, run_both, assert_same):
    """An argv longer than km's own host command line (km rewrites the host's in place,
    within the room its own leaves): the payload's view must still be complete."""
    exe = payloads.build("proc_self", "musl")
    args = [f"argument-{i:04d}-" + "y" * 40 for i in range(200)]
    out = compare(run_both([exe, "cmdline", *args]), assert_same)
    assert "/proc/self/cmdline == argv: yes\n" in out


@pytest.mark.parametrize("libc", LIBCS)
def test_proc_self_environ_is_the_environment(libc, payloads, run_both, assert_same,
                                              base_env):
    exe = payloads.build("proc_self", libc)
    env = dict(base_env, PROC_SELF_TEST="a value with spaces", EMPTY_VALUE="")
    out = compare(run_both([exe, "environ"], env=env), assert_same)
    assert "/proc/self/environ == environ: yes\n" in out


# ---- fd, maps, status -------------------------------------------------------------------


@pytest.mark.parametrize("libc", LIBCS)
def test_proc_self_fd_lists_only_the_payloads_descriptors(libc, payloads, run_both,
                                                          assert_same):
    exe = payloads.build("proc_self", libc)
    out = compare(run_both([exe, "fd"]), assert_same)
    assert "/proc/self/fd lists 6 descriptors: 0 1 2 3 4(the listing) 10\n" in out
    assert "readlink /proc/self/fd/3: /dev/null\n" in out
    all_yes(out)


def test_proc_self_maps_covers_text_data_heap_stack(payloads, flavour, run_both,
                                                     assert_same):
    exe = payloads.build("proc_self", flavour)
    out = compare(run_both([exe, "maps"]), assert_same)
    all_yes(out)
    assert "stack (a local variable): in a listed mapping: yes, 'w' permission: yes, " \
           "named [stack]: yes\n" in out


@pytest.mark.parametrize("libc", LIBCS)
def test_proc_self_status_stat_comm(libc, payloads, run_both, assert_same):
    exe = payloads.build("proc_self", libc)
    out = compare(run_both([exe, "status"]), assert_same)
    all_yes(out)
    assert "Threads: 1\nwith a second thread, Threads: 2\n" in out
    assert "/proc/self/stat: state R" in out
    assert "after prctl(PR_SET_NAME), /proc/self/comm: renamed-payload\n" in out
    assert "after prctl(PR_SET_NAME), Name: renamed-payload\n" in out


def test_a_title_written_over_argv_is_what_ps_shows(payloads, km, base_env, tmp_path):
    """setproctitle-style titles: /proc/self/cmdline as the payload reads it at each
    step, and /proc/PID/cmdline read from outside (ps) once it is set, as natively."""
    program = payloads.build("proctitle", "glibc")
    seen = []
    for prefix in ([], km):
        child = subprocess.Popen([*prefix, str(program), "first", "second"], cwd=tmp_path,
                                 env=base_env, stdin=subprocess.PIPE, stdout=subprocess.PIPE)
        lines = []
        for line in child.stdout:
            if line == b"ready\n":
                break
            lines.append(line)
        with open(f"/proc/{child.pid}/cmdline", "rb") as f:
            outside = f.read()
        child.stdin.close()
        child.wait(timeout=30)
        seen.append((b"".join(lines), outside))
    assert seen[0][1].startswith(b"nginx: worker process\0"), seen[0]
    assert b"final: nginx: worker process|" in seen[0][0]
    assert seen[1] == seen[0]


def test_status_shows_the_payloads_own_no_new_privs_and_seccomp(run_both, assert_same):
    """km's own walls (no_new_privs, its seccomp filter) are not the payload's: the
    payload sees the flag it was started with and no filter, as natively."""
    runs = run_both(["/bin/busybox", "grep", "-E", "^(NoNewPrivs|Seccomp)", "/proc/self/status"])
    out = compare(runs, assert_same)
    assert "NoNewPrivs:\t0\n" in out and "Seccomp:\t0\n" in out
