"""Processes under km: fork, vfork, execve, posix_spawn, popen, wait4/waitid, SIGCHLD,
process groups and signals between processes, each scenario compared with the same
payload run natively (tests/payloads/proc_fork.c, which execs tests/payloads/proc_child.c).

Every km child is a host process of its own (a forked km with a new VM), so the last
tests check that none of them outlives the payload.
"""

import os
import subprocess
import time
import uuid

import pytest
from conftest import FLAVOURS

from .oracle import compare

# The static flavours the process payloads are built in (static-pie adds nothing here
# that the loader tests do not already cover, and every km fork costs real time).
LIBCS = ["musl", "glibc"]


@pytest.fixture(params=LIBCS)
def libc(request):
    return request.param


@pytest.fixture
def proc_fork(payloads, libc):
    return payloads.build("proc_fork", libc)


@pytest.fixture
def proc_child(payloads, libc):
    """The program the parent execs: built with the same libc as the parent."""
    return payloads.build("proc_child", libc)


# ---- fork -------------------------------------------------------------------------------


def test_fork_pipe_waitpid_exit_status(proc_fork, run_both, assert_same):
    out = compare(run_both([proc_fork, "pipe"]), assert_same)
    assert "parent read: hello from the child\n" in out
    assert "child: getppid() == parent: yes" in out
    assert "WIFEXITED: yes, WEXITSTATUS: 7\n" in out
    assert "parent: counter still 1\n" in out  # the child wrote to its own copy
    assert "waitpid again: -1 ECHILD\n" in out


def test_fork_copies_the_stdio_buffer(proc_fork, run_both, assert_same):
    """What sits in a stdio buffer at fork is in both processes' copies of memory."""
    out = compare(run_both([proc_fork, "stdio"]), assert_same)
    assert out.startswith("printed before fork (sits in the buffer)\nchild\n")


def test_fork_bomb_of_50_children_all_reaped(proc_fork, run_both, assert_same):
    out = compare(run_both([proc_fork, "bomb", "50"], timeout=120), assert_same)
    assert "reaped 50 children (50 with a pid fork returned), 0 not exited\n" in out
    assert f"sum of exit codes: {sum(range(1, 51))}\n" in out
    assert "after the last child, waitpid: ECHILD\n" in out


def test_fork_beside_running_threads(proc_fork, run_both, assert_same):
    """fork in a process whose other threads keep malloc's lock busy: the child has only
    the forking thread and can still allocate and use stdio."""
    out = compare(run_both([proc_fork, "fork_threads", "10"]), assert_same)
    assert out == "10 of 10 children forked beside two busy threads worked\n"


def test_vfork_child_exits_while_parent_waits(proc_fork, run_both, assert_same):
    out = compare(run_both([proc_fork, "vfork_exit"]), assert_same)
    assert out == ("child: running while the parent waits\n"
                   "parent: resumed after the child\nvfork child: exited 3\n")


def test_vfork_then_exec(proc_fork, proc_child, run_both, assert_same):
    out = compare(run_both([proc_fork, "vfork_exec", proc_child]), assert_same)
    assert 'child: argv[1]="from-vfork"\n' in out
    assert "vfork+exec child: exited 9\n" in out
    assert "vfork+exec of a missing path: exited 127\n" in out


# ---- execve -----------------------------------------------------------------------------


def test_exec_static_binary_with_argv_and_env(proc_fork, proc_child, run_both, assert_same):
    """execve keeps the pid, passes argv (argv[0] and empty strings included) and exactly
    the envp given, keeps ignored signals and the mask, resets handled signals, and
    /proc/self/exe then names the new program."""
    out = compare(run_both([proc_fork, "exec", proc_child]), assert_same, status=33)
    assert 'child: argv[0]="custom-argv0"\n' in out
    assert 'child: argv[2]="two words"\nchild: argv[3]=""\n' in out
    assert "child: getpid() == pid before exec: yes\n" in out
    assert ('child: env "FOO=bar"\nchild: env "EMPTY="\nchild: env "MULTI=a=b=c"\n'
            'child: env "SPACES=with  two spaces"\nchild: 4 environment entries\n') in out
    assert f"child: /proc/self/exe == {proc_child}: yes\n" in out
    assert "child: signal 10 ignored: yes\n" in out  # SIGUSR1 was SIG_IGN
    assert "child: signal 2 ignored: no\n" in out  # SIGINT had a handler: reset
    assert "child: signal 12 blocked: yes\n" in out  # SIGUSR2 was blocked


def test_exec_keeps_a_pending_signal(proc_fork, proc_child, run_both, assert_same):
    """A signal blocked and pending at execve is still pending in the new program, which
    dies of it once it unblocks it (a signal that arrives while a child is about to exec
    must not be lost either: busybox sh's `cmd & kill $!` depends on it)."""
    out = compare(run_both([proc_fork, "exec_pending", proc_child]), assert_same,
                  status=-15)
    assert "parent: SIGTERM pending before execve: yes\n" in out
    assert "child: signal 15 blocked: yes\nchild: signal 15 pending: yes\n" in out
    assert "child: exiting" not in out


def test_exec_failures_return_errno_and_caller_continues(proc_fork, proc_child, run_both,
                                                         assert_same):
    out = compare(run_both([proc_fork, "exec_errors", proc_child]), assert_same, status=21)
    for line in ['execve("proc-missing"): -1 ENOENT',
                 'execve("proc-not-executable"): -1 EACCES',
                 'execve("proc-junk"): -1 ENOEXEC',
                 'execve("proc-empty"): -1 ENOEXEC',
                 'execve("proc-bad-interp"): -1 ENOENT',
                 'execve("."): -1 EACCES',
                 'execve("proc-junk/below"): -1 ENOTDIR']:
        assert line + ", still running\n" in out
    assert 'child: argv[1]="after the failures"\n' in out


def test_exec_shebang_script(proc_fork, run_both, assert_same):
    out = compare(run_both([proc_fork, "exec_script"]), assert_same)
    assert "script: $0=./proc-script.sh args=2 [a b c]\n" in out
    assert "script: exited 12\n" in out


def test_exec_shebang_script_whose_interpreter_is_a_script(proc_fork, run_both,
                                                           assert_same):
    """Linux follows a chain of #! interpreters (a few levels deep)."""
    out = compare(run_both([proc_fork, "exec_nested_script"]), assert_same)
    assert "script: $0=./proc-script.sh args=2 [./proc-nested.sh x]\n" in out
    assert "nested script: exited 12\n" in out


def test_child_inherits_fds_across_exec(proc_fork, proc_child, run_both, assert_same):
    """A pipe's write end at fd 17 survives fork+exec; close-on-exec descriptors do not
    (and the parent sees EOF on a close-on-exec pipe once the exec succeeded)."""
    out = compare(run_both([proc_fork, "fdinherit", proc_child]), assert_same)
    assert "child: wrote 32 bytes to fd 17\n" in out
    assert "child: fd 17 open: yes\n" in out
    assert out.count("closed: yes\n") == 2
    assert "parent read: message through inherited fd 17\n" in out
    assert "parent: EOF on the close-on-exec pipe (the exec succeeded): yes\n" in out


# ---- popen, posix_spawn -----------------------------------------------------------------


def test_popen_reads_and_writes_through_bin_sh(proc_fork, run_both, assert_same):
    """popen runs /bin/sh -c (dash on Debian: a dynamic executable, run under km too)."""
    out = compare(run_both([proc_fork, "popen"]), assert_same)
    assert "read from popen: popen-output\nread from popen: second line from sh\n" in out
    assert "pclose: exited 3\n" in out
    assert 'written through popen("cat", "w")\na second line\npclose of cat: exited 0\n' in out
    assert "pclose of a missing command: exited 127\n" in out
    assert "pclose of a shell that killed itself: signaled SIGTERM\n" in out


def test_posix_spawn_and_waitpid(proc_fork, proc_child, run_both, assert_same):
    """posix_spawn is a clone(CLONE_VM|CLONE_VFORK) with a stack of its own in both libcs:
    plain, with file actions (stdout into a pipe) and with attributes (group, mask)."""
    out = compare(run_both([proc_fork, "spawn", proc_child]), assert_same)
    assert "posix_spawn child: exited 4\n" in out
    assert "through the pipe: child: argv[1]=\"into a pipe\"\n" in out
    assert "posix_spawn child with attributes: exited 0, own group: yes\n" in out
    assert "child: signal 12 blocked: yes\n" in out


def test_posix_spawn_of_a_missing_program_returns_enoent(proc_fork, run_both, assert_same):
    """The exec failure happens in the child, after the clone: glibc's child stores the
    errno in memory it shares with the parent (CLONE_VM), musl's writes it to a pipe."""
    out = compare(run_both([proc_fork, "spawn_missing"]), assert_same)
    assert out == ("posix_spawn of a missing path: ENOENT\n"
                   "posix_spawnp of a missing name: ENOENT\n")


# ---- SIGCHLD, waiting -------------------------------------------------------------------


def test_sigchld_handler_counts_children(proc_fork, run_both, assert_same):
    out = compare(run_both([proc_fork, "sigchld", "5"]), assert_same)
    for i in range(5):
        assert (f"child {i}: SIGCHLD received, si_pid is the child: yes, CLD_EXITED, "
                f"si_status {10 + i}\n") in out
    assert "SIGCHLD handler ran 5 times for 5 children\n" in out


def test_sigchld_ignored_reaps_children_automatically(proc_fork, run_both, assert_same):
    out = compare(run_both([proc_fork, "sigchld_ign"]), assert_same)
    assert out == "wait with SIGCHLD ignored: ECHILD\n"


def test_waitid_wnohang_wnowait_and_pgid(proc_fork, run_both, assert_same):
    out = compare(run_both([proc_fork, "waitid"]), assert_same)
    assert "waitid WNOHANG while the child runs: 0, si_pid 0: yes\n" in out
    assert ("waitid WNOHANG|WNOWAIT after it exits: 0, si_pid is the child: yes, si_signo "
            "SIGCHLD, CLD_EXITED, si_status 5\n") in out
    assert "waitid P_ALL (WNOWAIT left it waitable): 0, si_pid is the child: yes" in out
    assert "waitid with no children: -1 ECHILD\n" in out
    assert "CLD_KILLED, si_status SIGKILL\n" in out


# ---- process groups, signals between processes -------------------------------------------


def test_kill_process_group(proc_fork, run_both, assert_same):
    """setpgid puts 4 children in a group; kill(-pgid, SIGTERM) reaches all of them."""
    out = compare(run_both([proc_fork, "pgkill", "4"]), assert_same)
    assert out.count("getpgid == the group: yes") == 4
    assert "parent outside the group: yes\n" in out
    assert out.count("WIFSIGNALED: yes, WTERMSIG: SIGTERM\n") == 3
    assert "child 3: exited 40\n" in out  # its handler exited
    assert "kill(-pgid) of the emptied group: -1 ESRCH\n" in out


def test_setsid_in_a_child(proc_fork, run_both, assert_same):
    out = compare(run_both([proc_fork, "setsid"]), assert_same)
    assert "leads a session and a group): exited 0\n" in out


def test_children_killed_by_signals_are_seen_as_signaled(proc_fork, run_both, assert_same):
    out = compare(run_both([proc_fork, "sigkill"]), assert_same)
    assert "SIGKILLed child: signaled SIGKILL\n" in out
    assert "  WIFSIGNALED: yes, WTERMSIG: SIGKILL, WIFEXITED: no, WCOREDUMP: no\n" in out
    assert "kill(reaped child, 0): -1 ESRCH\n" in out
    assert "child that dereferenced a bad pointer: signaled SIGSEGV\n" in out
    assert "child that called abort: signaled SIGABRT\n" in out
    assert "child that raised SIGTERM: signaled SIGTERM\n" in out
    assert "child killed in a blocking read: signaled SIGKILL\n" in out


def test_child_stops_and_continues(proc_fork, run_both, assert_same):
    out = compare(run_both([proc_fork, "stop"]), assert_same)
    assert out == ("child that stopped itself (WUNTRACED): stopped SIGSTOP\n"
                   "after SIGCONT (WCONTINUED): continued\nthen: exited 6\n")


def test_children_signalled_the_moment_fork_returns(proc_fork, run_both, assert_same):
    out = compare(run_both([proc_fork, "kill_at_once"]), assert_same)
    for name in ("SIGTERM", "SIGKILL", "SIGUSR1", "SIGINT"):
        assert f"child sent {name} right after fork: signaled {name}\n" in out


# ---- no km left behind ------------------------------------------------------------------


def leftovers(marker: str, session: int) -> list[tuple[int, str]]:
    """(pid, command line) of every live (not zombie) process whose command line contains
    marker or that belongs to the given session: what is left of a km run."""
    found = []
    needle = marker.encode()
    for entry in os.listdir("/proc"):
        if not entry.isdigit() or int(entry) == os.getpid():
            continue
        try:
            with open(f"/proc/{entry}/cmdline", "rb") as f:
                cmdline = f.read()
            with open(f"/proc/{entry}/stat", "rb") as f:
                fields = f.read().rsplit(b")", 1)[1].split()
        except (OSError, IndexError):
            continue
        state, sid = fields[0], int(fields[3])
        if state != b"Z" and (needle in cmdline or sid == session):
            found.append((int(entry), cmdline.replace(b"\0", b" ").decode(errors="replace")))
    return found


SCENARIOS = {
    "bomb": (0.0, ["bomb", "5"]),        # children exit and are reaped
    "noreap": (0.0, ["noreap", "5"]),    # children exit, the parent never waits for them
    "orphans": (2.0, ["orphans", "5"]),  # children outlive the parent by 300-500 ms
    # A shell leaving a background job behind, with a pipeline and an exec'd applet.
    "shell": (2.0, ["sh", "-c", "(sleep 0.3; true) & echo x | cat >/dev/null; "
                                "busybox true; exit 0"]),
}


@pytest.mark.parametrize("scenario", SCENARIOS)
def test_no_km_process_left_behind(scenario, payloads, km, tmp_path, base_env):
    """After `km payload` returns (and its orphans have had time to finish), no km process
    is still alive: none whose command line carries the run's unique marker, none in the
    session km was started in."""
    settle, args = SCENARIOS[scenario]
    marker = f"km-leftover-marker-{uuid.uuid4().hex}"
    if scenario == "shell":
        argv = [*km, "/bin/busybox", *args, marker]  # the marker is the shell's $0
    else:
        argv = [*km, payloads.build("proc_fork", "musl"), *args, marker]
    # km leads a new session (sid = its pid): every process it starts belongs to it.
    # stderr goes to a file, not a pipe, whose far end orphans would keep open.
    with open(tmp_path / "stderr", "w+b") as err:
        proc = subprocess.Popen([str(a) for a in argv], cwd=tmp_path, env=base_env,
                                stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL,
                                stderr=err, start_new_session=True)
        try:
            status = proc.wait(timeout=60)
        except subprocess.TimeoutExpired:
            proc.kill()
            status = proc.wait()
        err.seek(0)
        assert status == 0, f"km exited {status}: {err.read().decode(errors='replace')}"
    session = proc.pid
    deadline = time.monotonic() + settle + 3.0
    left = leftovers(marker, session)
    while left and time.monotonic() < deadline:
        time.sleep(0.05)
        left = leftovers(marker, session)
    try:
        assert not left, f"km processes still running after the payload ended: {left}"
    finally:
        for pid, _ in left:  # do not leave them to the rest of the session either
            try:
                os.kill(pid, 9)
            except ProcessLookupError:
                pass


@pytest.mark.parametrize("case", [["drop", "/bin/busybox", "id"], ["kill"]],
                         ids=["exec-after-setuid", "signal-after-setuid"])
def test_a_payload_that_drops_root_keeps_running(payloads, flavour, run_both, assert_same,
                                                 case):
    """After setresuid(nobody), km still execs for the payload (the new program is
    loaded in the same km: nothing of km's own has to be read as nobody) and a death by
    signal is still 128+N, with no message of km's."""
    program = payloads.build("setuid_exec", flavour)
    runs = run_both([program, *case])
    assert runs.native.out.startswith("uids now 65534 65534 65534\n"), runs.native.err
    assert_same(runs.native, runs.km)


def test_exec_of_a_fifo_is_eacces_without_waiting(run_both, assert_same):
    """execve checks the file type before opening it: a fifo is EACCES at once (opening
    it for reading would wait for a writer that never comes)."""
    script = "rm -f f; mkfifo f && chmod +x f; ./f; echo status $?"
    runs = run_both(["/bin/busybox", "sh", "-c", script], timeout=20)
    assert "status 126" in runs.native.out, runs.native.out + runs.native.err
    assert_same(runs.native, runs.km)


def test_descriptors_km_keeps_for_vfork_are_used_again(payloads, run_both, assert_same):
    program = payloads.build("vfork_many", FLAVOURS["musl"])
    runs = run_both([program, "1500"], timeout=300)
    assert runs.native.out == "1500 vforks, 0 failed\n"
    assert_same(runs.native, runs.km)


def test_the_payload_sees_its_descriptor_limits_as_natively(run_both, assert_same):
    assert_same(*vars(run_both(["/bin/busybox", "sh", "-c", "ulimit -n; ulimit -Hn"])).values())


def test_km_started_with_standard_descriptors_closed_runs_like_native(km, tmp_path):
    """A parent that closed km's stdin and stderr: km must not take descriptor 0 or 2
    for itself (the payload's first open would land there natively), and its own
    diagnostics must not go into whatever file the payload opens as 2."""
    script = ('exec 0<&- 2>&-; "$@" /bin/busybox sh -c '
              '\'exec 3>f; ls -l /proc/self/fd/ | grep -c -- "->"; echo status $?\'')
    outputs = []
    for prefix in ([], km):
        result = subprocess.run(["/bin/sh", "-c", script, "sh", *prefix], cwd=tmp_path,
                                capture_output=True, text=True, timeout=60)
        outputs.append((result.returncode, result.stdout))
    assert outputs[0] == outputs[1], outputs


# `#!` lines as Linux's binfmt_script reads them: (file contents, what it is about).
SCRIPTS = {
    "plain": b"#!/bin/echo\n",
    "argument": b"#! \t/bin/echo \t a b \t \n",
    "carriage-return": b"#!/bin/echo\r\n",
    "vertical-tab": b"#!/bin/echo\x0bx\n",
    "no-newline": b"#!/bin/echo",
    "nul-ends-name": b"#!/bin/echo\0arg\n",
    "nul-in-argument": b"#!/bin/echo a\0b\n",
    "empty": b"#!\n",
    "blanks-only": b"#!   \t \n",
    "blanks-past-buffer": b"#!" + b" " * 300 + b"/bin/echo\n",
    "nul-name": b"#!\0/bin/echo\n",
    "bare": b"#!",
    "name-past-buffer": b"#!" + b"/" * 300 + b"bin/echo\n",
    "argument-past-buffer": b"#!/bin/echo " + b"y" * 300,
    "argument-cut-at-255": b"#!" + b"/" * 240 + b"bin/echo " + b"z" * 10 + b"\n",
}


def test_interpreter_lines_parse_as_linux(payloads, run_both, assert_same, tmp_path):
    probe = payloads.build("exec_probe", FLAVOURS["musl"])
    for name, text in SCRIPTS.items():
        (tmp_path / name).write_bytes(text)
        (tmp_path / name).chmod(0o755)
    runs = run_both([probe, *(f"./{name}" for name in SCRIPTS)])
    assert "./plain: status 0: ./plain one" in runs.native.out, runs.native.out
    assert_same(runs.native, runs.km)


def test_interpreter_chains_stop_after_five_levels(payloads, run_both, assert_same, tmp_path):
    probe = payloads.build("exec_probe", FLAVOURS["musl"])
    previous = "/bin/echo"
    for level in range(1, 8):
        (tmp_path / f"level{level}").write_text(f"#!{previous}\n")
        (tmp_path / f"level{level}").chmod(0o755)
        previous = str(tmp_path / f"level{level}")
    runs = run_both([probe, *(f"./level{level}" for level in range(1, 8))])
    assert "./level6: status 127: execve: ELOOP" in runs.native.out, runs.native.out
    assert_same(runs.native, runs.km)


@pytest.mark.parametrize("mode", ["-fd", "-fd-cloexec", "-nofollow"])
def test_execveat_by_descriptor_and_nofollow(payloads, run_both, assert_same, tmp_path, mode):
    """fexecve of a close-on-exec descriptor runs an ELF, and refuses a script (ENOENT:
    its interpreter could not open /dev/fd/N after the exec); a script by inherited
    descriptor is given /dev/fd/N as its name; AT_SYMLINK_NOFOLLOW refuses a link."""
    probe = payloads.build("exec_probe", FLAVOURS["musl"])
    (tmp_path / "script").write_text("#!/bin/echo from\n")
    (tmp_path / "script").chmod(0o755)
    (tmp_path / "link").symlink_to("/bin/echo")
    runs = run_both([probe, mode, "/bin/echo", "./script", "./link"])
    assert "/bin/echo: status 0: one" in runs.native.out, runs.native.out
    assert_same(runs.native, runs.km)
