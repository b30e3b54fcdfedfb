"""Core dumps: a payload killed by a signal whose default action dumps core writes an
ELF core that real gdb reads like a native one (kontain.monitor.coredump).

Each test runs tests/payloads/core_crash.c with RLIMIT_CORE unlimited (the other tests
run with 0), reads the core with `gdb -batch`, and where the host writes native cores
as plain files in the working directory (core_pattern `core`) compares with the native
run's core. The wait status km's parent sees has the signal; the host's core flag it
cannot have (km is not dumpable: docs/ARCHITECTURE.md, "Core dumps").
"""

from __future__ import annotations

import os
import resource
import shutil
import signal
import subprocess
import threading
from pathlib import Path

import pytest
from conftest import BASE_ENV, Flavour, default_signals

#: Built with symbols; the dynamic one needs NT_FILE and the auxv to find its libraries.
FLAVOURS = {
    "musl": Flavour("musl-g", "musl-gcc", ("-static", "-O1", "-g"), pie=False),
    "glibc": Flavour("glibc-g", "gcc", ("-static", "-O1", "-g", "-pthread"), pie=False),
    "glibc-dynamic": Flavour("glibc-dyn-g", "gcc", ("-O1", "-g", "-pthread"), pie=True),
}
GDB = shutil.which("gdb")
pytestmark = pytest.mark.skipif(GDB is None, reason="gdb is not installed")


def native_cores_are_files() -> bool:
    """Whether a native crash here leaves `core` in its working directory (a pipe
    handler, or a pattern with a directory, is not something to depend on)."""
    try:
        with open("/proc/sys/kernel/core_pattern") as f:
            pattern = f.read().strip()
        with open("/proc/sys/kernel/core_uses_pid") as f:
            uses_pid = f.read().strip() != "0"
    except OSError:
        return False
    return pattern == "core" and not uses_pid


def run_with_core_limit(argv: list, cwd: Path, limit: int = resource.RLIM_INFINITY,
                        timeout: float = 60) -> int:
    """Run argv with RLIMIT_CORE = limit; returns the raw wait status (os.wait4)."""
    def setup() -> None:
        # child_setup's signals, and this core limit instead of its 0.
        default_signals()
        resource.setrlimit(resource.RLIMIT_CORE, (limit, resource.getrlimit(
            resource.RLIMIT_CORE)[1]))

    proc = subprocess.Popen([str(a) for a in argv], cwd=cwd, env=dict(BASE_ENV),
                            stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL,
                            stderr=subprocess.DEVNULL, preexec_fn=setup)
    timer = threading.Timer(timeout, lambda: os.kill(proc.pid, signal.SIGKILL))
    timer.start()
    try:
        _, status, _ = os.wait4(proc.pid, 0)
    finally:
        timer.cancel()
    proc.returncode = os.waitstatus_to_exitcode(status)
    return status


MARK = "--- commands ---"


def gdb(program: Path, core: Path, *commands: str) -> str:
    """gdb's output: what it says on loading the core, MARK, then the commands' output."""
    argv = [GDB, "-nx", "-batch", "-iex", "set debuginfod enabled off",
            "-ex", f"echo {MARK}\\n"]
    for command in commands:
        argv += ["-ex", command]
    done = subprocess.run([*argv, str(program), str(core)], capture_output=True, text=True,
                          timeout=120)
    return done.stdout + done.stderr


def output(text: str) -> str:
    """What gdb's commands printed (after MARK)."""
    return text.partition(MARK)[2]


def one_core(directory: Path, pattern: str = "core.*") -> Path:
    cores = sorted(directory.glob(pattern))
    assert len(cores) == 1, f"expected one core in {directory}: {cores}"
    return cores[0]


def values(text: str) -> list[str]:
    """gdb's `$N = value` lines, as values."""
    return [line.split(" = ", 1)[1] for line in output(text).splitlines()
            if line.startswith("$") and " = " in line]


def frames(text: str) -> list[str]:
    """The function of each `#N` line of a backtrace."""
    names = []
    for line in output(text).splitlines():
        if line.startswith("#"):
            words = line.split()
            names.append(words[3] if len(words) > 3 and words[2] == "in" else words[1])
    return names


@pytest.fixture(params=list(FLAVOURS), ids=list(FLAVOURS))
def program(request, payloads) -> Path:
    return payloads.build("core_crash", FLAVOURS[request.param])


def test_segv_core_shows_frames_registers_and_variables_like_native(program, km, tmp_path):
    status = run_with_core_limit([*km, program, "segv"], tmp_path)
    assert os.WIFSIGNALED(status) and os.WTERMSIG(status) == signal.SIGSEGV, hex(status)
    core = one_core(tmp_path)
    assert core.name.startswith(f"core.{program.name}.")
    assert core.stat().st_mode & 0o777 == 0o600
    commands = ("bt", "info registers rip", "p global_counter", "frame 0", "p local_value",
                "p $_siginfo.si_signo", "p $_siginfo._sifields._sigfault.si_addr")
    text = gdb(program, core, *commands)
    assert "Program terminated with signal SIGSEGV" in text, text
    assert frames(text)[:2] == ["segv_here", "main"], text
    assert "<segv_here+" in text, text
    got = values(text)
    assert got[:4] == ["4243", "777", "11", "(void *) 0x0"], text
    if native_cores_are_files():
        native_dir = tmp_path / "native"
        native_dir.mkdir()
        run_with_core_limit([program, "segv"], native_dir)
        native = gdb(program, one_core(native_dir, "core"), *commands)
        assert frames(native)[:2] == frames(text)[:2], native
        assert values(native) == got, native


def test_threads_of_an_aborted_payload_each_show_their_function(payloads, km, tmp_path):
    program = payloads.build("core_crash", FLAVOURS["glibc"])
    status = run_with_core_limit([*km, program, "abort", "threads"], tmp_path)
    assert os.WIFSIGNALED(status) and os.WTERMSIG(status) == signal.SIGABRT, hex(status)
    text = gdb(program, one_core(tmp_path), "info threads", "thread apply all bt", "bt")
    assert "Program terminated with signal SIGABRT" in text, text
    listed = [line for line in output(text).splitlines()
              if "Thread 0x" in line and "LWP" in line and not line.startswith("Thread ")]
    assert len(listed) == 4, text
    names = frames(text)
    assert names.count("worker_wait") == 3, text
    assert names.count("abort_here") == 2, text  # thread 1 in `thread apply`, and `bt`
    if native_cores_are_files():
        native_dir = tmp_path / "native"
        native_dir.mkdir()
        run_with_core_limit([program, "abort", "threads"], native_dir)
        native = gdb(program, one_core(native_dir, "core"), "info threads",
                     "thread apply all bt", "bt")
        # (A worker may be in worker_wait itself, not yet in pause, in either run.)
        assert frames(native).count("worker_wait") == 3, native
        assert frames(native)[-5:] == names[-5:], native  # the aborting thread's `bt`


def test_sigfpe_core_has_the_fault_siginfo(payloads, km, tmp_path):
    program = payloads.build("core_crash", FLAVOURS["glibc-dynamic"])
    status = run_with_core_limit([*km, program, "fpe"], tmp_path)
    assert os.WIFSIGNALED(status) and os.WTERMSIG(status) == signal.SIGFPE, hex(status)
    text = gdb(program, one_core(tmp_path), "bt", "info sharedlibrary", "frame 0",
               "p local_value", "p $_siginfo.si_code")
    assert frames(text)[:2] == ["fpe_here", "main"], text
    assert "libc.so.6" in text, text
    assert values(text) == ["888", "1"], text  # FPE_INTDIV


def test_sigquit_from_kill_dumps_core(payloads, km, tmp_path):
    program = payloads.build("core_crash", FLAVOURS["glibc"])  # (musl's kill has no CFI)
    status = run_with_core_limit([*km, program, "quit"], tmp_path)
    assert os.WIFSIGNALED(status) and os.WTERMSIG(status) == signal.SIGQUIT, hex(status)
    core = one_core(tmp_path)
    text = gdb(program, core, "bt", "p $_siginfo.si_signo", "p $_siginfo.si_code",
               "p $_siginfo._sifields._kill.si_pid")
    assert "quit_here" in frames(text), text
    # As delivered: SI_USER from the payload itself (kill(getpid(), ...)), whose pid the
    # core is named after.
    assert values(text) == ["3", "0", core.name.rsplit(".", 1)[1]], text


def test_abort_core_has_the_tkill_siginfo(payloads, km, tmp_path):
    program = payloads.build("core_crash", FLAVOURS["glibc"])
    status = run_with_core_limit([*km, program, "abort"], tmp_path)
    assert os.WIFSIGNALED(status) and os.WTERMSIG(status) == signal.SIGABRT, hex(status)
    core = one_core(tmp_path)
    text = gdb(program, core, "p $_siginfo.si_signo", "p $_siginfo.si_code",
               "p $_siginfo._sifields._kill.si_pid")
    assert values(text) == ["6", "-6", core.name.rsplit(".", 1)[1]], text  # SI_TKILL


def test_rlimit_core_zero_writes_no_core(payloads, km, tmp_path):
    program = payloads.build("core_crash", FLAVOURS["musl"])
    status = run_with_core_limit([*km, program, "segv"], tmp_path, limit=0)
    assert os.WIFSIGNALED(status) and os.WTERMSIG(status) == signal.SIGSEGV
    assert not os.WCOREDUMP(status)
    assert list(tmp_path.iterdir()) == []


def test_payload_that_sets_its_rlimit_core_to_zero_dumps_no_core(payloads, km, tmp_path):
    program = payloads.build("core_crash", FLAVOURS["glibc"])
    status = run_with_core_limit([*km, program, "segv", "rlimit0"], tmp_path)
    assert os.WIFSIGNALED(status) and os.WTERMSIG(status) == signal.SIGSEGV
    assert list(tmp_path.iterdir()) == []


def test_payload_that_makes_itself_not_dumpable_dumps_no_core(payloads, km, tmp_path):
    program = payloads.build("core_crash", FLAVOURS["musl"])
    status = run_with_core_limit([*km, program, "segv", "nodump"], tmp_path)
    assert os.WIFSIGNALED(status) and os.WTERMSIG(status) == signal.SIGSEGV
    assert list(tmp_path.iterdir()) == []


def test_dumpable_again_dumps_and_km_itself_stays_undumpable(payloads, km, tmp_path):
    """PR_SET_DUMPABLE is the payload's flag: set back to 1 it dumps again, and it never
    reaches the host (km dumpable would let other processes read its memory)."""
    program = payloads.build("core_crash", FLAVOURS["musl"])
    status = run_with_core_limit([*km, program, "segv", "redump"], tmp_path)
    assert os.WIFSIGNALED(status) and os.WTERMSIG(status) == signal.SIGSEGV
    assert len(list(tmp_path.iterdir())) == 1


def test_wait_status_has_the_signal_without_the_host_core_flag(payloads, km, tmp_path):
    """What km's parent sees: the payload's signal. The kernel sets the core flag
    (0x80) only when it dumped the dying process itself, and km, which holds the
    guest's memory, is never dumpable; the payload's core is written all the same."""
    program = payloads.build("core_crash", FLAVOURS["musl"])
    status = run_with_core_limit([*km, program, "segv"], tmp_path)
    assert os.WIFSIGNALED(status) and os.WTERMSIG(status) == signal.SIGSEGV
    assert not os.WCOREDUMP(status)
    one_core(tmp_path)
    if native_cores_are_files():
        native = run_with_core_limit([program, "segv"], tmp_path)
        assert os.WCOREDUMP(native)


def test_symlink_at_the_core_path_is_not_followed(payloads, km, tmp_path):
    program = payloads.build("core_crash", FLAVOURS["musl"])
    target = tmp_path / "target"
    (tmp_path / "work").mkdir()
    link = tmp_path / "work" / "core.planted"
    link.symlink_to(target)
    status = run_with_core_limit([*km, "--coredump=core.planted", program, "segv"],
                                 tmp_path / "work")
    assert os.WTERMSIG(status) == signal.SIGSEGV
    assert not target.exists() and link.is_symlink()
    assert sorted(p.name for p in (tmp_path / "work").iterdir()) == ["core.planted"]


def test_existing_hard_linked_file_is_not_overwritten(payloads, km, tmp_path):
    program = payloads.build("core_crash", FLAVOURS["musl"])
    precious = tmp_path / "precious"
    precious.write_bytes(b"keep me")
    os.link(precious, tmp_path / "core.x")
    run_with_core_limit([*km, "--coredump=core.x", program, "segv"], tmp_path)
    assert precious.read_bytes() == b"keep me"


def test_coredump_template_inside_root(payloads, km, tmp_path):
    """--coredump names a path in the payload's view (under --root), with %e and %p."""
    program = payloads.build("core_crash", FLAVOURS["musl"])
    root = tmp_path / "root"
    (root / "bin").mkdir(parents=True)
    (root / "cores").mkdir()
    shutil.copy(program, root / "bin" / "crash")
    status = run_with_core_limit([*km, f"--root={root}", "--coredump=/cores/%e-%p.core",
                                  "/bin/crash", "segv"], tmp_path)
    assert os.WTERMSIG(status) == signal.SIGSEGV
    core = one_core(root / "cores", "crash-*.core")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["root"]
    text = gdb(program, core, "bt", "p global_counter")
    assert frames(text)[:2] == ["segv_here", "main"], text
    assert values(text) == ["4243"], text


def test_threads_blocked_in_system_calls_are_stopped_and_dumped(payloads, km, tmp_path):
    """The other threads are stopped wherever they are (a futex, a read, a nanosleep,
    guest code, a join) and each shows its own function; the dying one is thread 1."""
    program = payloads.build("core_threads", FLAVOURS["glibc-dynamic"])
    status = run_with_core_limit([*km, program], tmp_path)
    assert os.WTERMSIG(status) == signal.SIGSEGV, hex(status)
    text = gdb(program, one_core(tmp_path), "bt 1", "info threads", "thread apply all bt")
    assert frames(text)[0] == "crashes", text
    listed = [line for line in output(text).splitlines()
              if "Thread 0x" in line and "LWP" in line and not line.startswith("Thread ")]
    assert len(listed) == 6, text
    names = set(frames(text))
    assert {"in_condwait", "in_read", "in_nanosleep", "in_busy_loop", "crashes",
            "main"} <= names, text
