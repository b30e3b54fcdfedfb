"""kontain.Policy, knob by knob: the denied operation fails as Linux fails it under the
same limit (or as documented in docs/python-api.md), and the host is untouched."""

from __future__ import annotations

import os
import shutil
import signal
import socket
import subprocess
import sys
import threading
from pathlib import Path

import pytest

import kontain
from kontain import Policy

pytestmark = pytest.mark.usefixtures("kvm")

KM = ["--strict"]
SH = "/bin/busybox"
PY = "/usr/bin/python3"
needs_root = pytest.mark.skipif(os.geteuid() != 0, reason="file policies need root")


def py(code: str, policy: Policy, **kwargs) -> kontain.CompletedProcess:
    return kontain.run([PY, "-c", code], capture_output=True, text=True, policy=policy,
                       km_options=KM, **kwargs)


def sh(script: str, policy: Policy, **kwargs) -> kontain.CompletedProcess:
    return kontain.run([SH, "sh", "-c", script], capture_output=True, text=True,
                       policy=policy, km_options=KM, **kwargs)


@pytest.fixture
def canary(tmp_path: Path) -> Path:
    path = tmp_path / "canary"
    path.write_text("untouched\n")
    return path


# ---- files ------------------------------------------------------------------------------

@needs_root
def test_read_only_root_gives_erofs_and_the_host_file_keeps_its_content(canary):
    result = sh(f"echo changed > {canary}; echo $?; rm {canary}; mkdir /nope",
                Policy(read_only=True))
    assert "Read-only file system" in result.stderr
    assert canary.read_text() == "untouched\n"


@needs_root
def test_writable_and_tmpfs_inside_a_read_only_root(tmp_path, canary):
    writable = tmp_path / "out"
    writable.mkdir()
    # (tmp_path is under /tmp: the canary's directory is then the private tmpfs's)
    result = sh(f"echo a > {writable}/f && echo b > /tmp/private && cat /tmp/private "
                f"{writable}/f && echo x > {canary}; echo x > /etc/kontain-never",
                Policy(read_only=True, writable=[str(writable)], tmpfs=["/tmp"]))
    assert result.stdout == "b\na\n"
    assert "Read-only file system" in result.stderr
    assert (writable / "f").read_text() == "a\n"
    assert not Path("/tmp/private").exists()  # the tmpfs was the payload's own
    assert canary.read_text() == "untouched\n"


@needs_root
def test_read_only_paths(tmp_path):
    (tmp_path / "ro").mkdir()
    result = sh(f"echo x > {tmp_path}/ro/f; echo x > {tmp_path}/rw && echo ok",
                Policy(read_only=[str(tmp_path / "ro")]))
    assert result.stdout == "ok\n" and "Read-only file system" in result.stderr


@needs_root
def test_hidden_paths_read_as_empty_and_cannot_be_written(tmp_path):
    (tmp_path / "dir").mkdir()
    (tmp_path / "dir" / "secret").write_text("SECRET\n")
    (tmp_path / "file").write_text("SECRET\n")
    result = sh(f"ls -A {tmp_path}/dir; cat {tmp_path}/file; echo; "
                f"echo x > {tmp_path}/file",
                Policy(hidden=[str(tmp_path / "dir"), str(tmp_path / "file")]))
    assert "SECRET" not in result.stdout
    assert "Read-only file system" in result.stderr
    assert (tmp_path / "file").read_text() == "SECRET\n"


@needs_root
def test_mounts_bind_a_host_directory_into_the_root(tmp_path):
    root = tmp_path / "root"
    (root / "bin").mkdir(parents=True)
    (root / "data").mkdir()
    shutil.copy(SH, root / "bin" / "busybox")
    host_dir = tmp_path / "host"
    host_dir.mkdir()
    (host_dir / "input").write_text("shared\n")
    result = kontain.run(["/bin/busybox", "sh", "-c", "cat /data/input; echo x > /data/new"],
                         capture_output=True, text=True, km_options=KM,
                         policy=Policy(root=str(root), mounts={"/data": (str(host_dir), "ro")}))
    assert result.stdout == "shared\n" and "Read-only file system" in result.stderr
    assert not (host_dir / "new").exists()


def test_root_confines_paths(tmp_path, canary):
    root = tmp_path / "root"
    (root / "bin").mkdir(parents=True)
    shutil.copy(SH, root / "bin" / "busybox")
    result = kontain.run(["/bin/busybox", "sh", "-c", f"cat {canary} ../../canary; ls /"],
                         capture_output=True, text=True, root=root, km_options=KM)
    assert "untouched" not in result.stdout and result.stdout.split() == ["bin"]


# ---- network ----------------------------------------------------------------------------

@pytest.fixture
def listener():
    server = socket.socket()
    server.bind(("127.0.0.1", 0))
    server.listen()
    yield server.getsockname()[1]
    server.close()


def test_network_none_leaves_only_unix_sockets():
    result = py("import socket\n"
                "a, b = socket.socketpair(); a.send(b'u'); print(b.recv(1))\n"
                "for f, t in ((socket.AF_INET, socket.SOCK_STREAM), "
                "(socket.AF_INET6, socket.SOCK_DGRAM), (socket.AF_NETLINK, socket.SOCK_RAW)):\n"
                "    try: socket.socket(f, t)\n"
                "    except OSError as e: print(e.errno)\n", Policy(network="none"))
    assert result.stdout == "b'u'\n97\n97\n97\n"  # EAFNOSUPPORT
    assert result.stats.denied == {"socket": 3}


def test_network_loopback(listener):
    result = py("import socket\n"
                f"socket.create_connection(('127.0.0.1', {listener})); print('loopback ok')\n"
                "try: socket.create_connection(('192.0.2.1', 80), timeout=5)\n"
                "except OSError as e: print(e.errno)\n"
                "s = socket.socket(); s.bind(('0.0.0.0', 0)); print(s.getsockname()[0])\n"
                "try: socket.socket(socket.AF_INET, socket.SOCK_DGRAM)\n"
                "except OSError as e: print(e.errno)\n", Policy(network="loopback"))
    assert result.stdout == "loopback ok\n13\n127.0.0.1\n13\n"


def test_allow_connect_lists_the_reachable_addresses(listener):
    other = socket.socket()
    other.bind(("127.0.0.2", 0))
    other.listen()
    try:
        result = py("import socket\n"
                    f"socket.create_connection(('127.0.0.1', {listener})); print('listed')\n"
                    "try: socket.create_connection(('192.0.2.1', 80), timeout=5)\n"
                    "except OSError as e: print(e.errno)\n",
                    Policy(network="host", allow_connect=[f"127.0.0.1:{listener}"]))
    finally:
        other.close()
    assert result.stdout == "listed\n13\n"


# ---- processes --------------------------------------------------------------------------

def test_max_processes_fails_fork_with_eagain():
    result = py("import os, time\n"
                "kids = []\n"
                "for i in range(10):\n"
                "    try: pid = os.fork()\n"
                "    except OSError as e: print(i, e.errno); break\n"
                "    if pid == 0: time.sleep(0.5); os._exit(0)\n"
                "    kids.append(pid)\n"
                "for k in kids: os.waitpid(k, 0)\n"
                "pid = os.fork()\n"  # the tokens came back
                "if pid == 0: os._exit(0)\n"
                "print('again', os.waitpid(pid, 0)[1])\n", Policy(max_processes=4))
    assert result.stdout == "3 11\nagain 0\n"


def test_max_threads_fails_clone_with_eagain():
    result = py("import threading, time\n"
                "started = 0\n"
                "try:\n"
                "    for i in range(10):\n"
                "        threading.Thread(target=time.sleep, args=(0.5,)).start(); started += 1\n"
                "except RuntimeError as e: print(started, e)\n", Policy(max_threads=4))
    assert result.stdout == "3 can't start new thread\n"


def test_allow_exec_lists_the_programs():
    policy = Policy(allow_exec=[PY])
    result = py("import os, subprocess\n"
                f"print(subprocess.run([{PY!r}, '-c', 'print(1)'], capture_output=True).stdout)\n"
                "try: subprocess.run(['/bin/busybox', 'true'])\n"
                "except OSError as e: print(e.errno)\n", policy)
    assert result.stdout == "b'1\\n'\n13\n"
    nothing = py("import os\nos.execv('/usr/bin/python3', ['p'])", Policy(allow_exec=False))
    assert "Permission denied" in nothing.stderr


# ---- resources ----------------------------------------------------------------------------

def test_memory_gives_enomem():
    result = py("a = []\nwhile True: a.append(bytearray(16 << 20))", Policy(memory="128M"))
    assert result.returncode == 1 and "MemoryError" in result.stderr


def test_cpu_time_gives_sigxcpu():
    result = py("while True: pass", Policy(cpu_time=1))
    assert result.returncode == -signal.SIGXCPU


def test_wall_time_kills_the_whole_tree():
    result = sh("sleep 1000 & sleep 1000", Policy(wall_time=0.5))
    assert result.returncode == -signal.SIGKILL and result.stats.limit == "wall_time"


def test_max_open_files_gives_emfile():
    result = py("import resource\nprint(resource.getrlimit(resource.RLIMIT_NOFILE))\n"
                "f = [open('/dev/null') for i in range(100)]", Policy(max_open_files=20))
    assert result.stdout == "(20, 20)\n" and "Too many open files" in result.stderr


def test_max_file_size_gives_sigxfsz_and_efbig(tmp_path):
    target = tmp_path / "big"
    native = subprocess.run(["sh", "-c", f"ulimit -f 100; head -c 300000 /dev/zero > {target}"
                             "; echo $?"], capture_output=True, text=True)
    result = sh(f"head -c 300000 /dev/zero > {target}; echo $?", Policy(max_file_size=51200))
    assert result.stdout == native.stdout == "153\n"  # 128 + SIGXFSZ
    assert target.stat().st_size == 51200
    ignored = py(f"open({str(target)!r}, 'wb').write(b'x' * 100000)", Policy(max_file_size=51200))
    assert "File too large" in ignored.stderr  # (python ignores SIGXFSZ: EFBIG)


def test_max_output_keeps_the_first_bytes_and_kills():
    result = sh("yes", Policy(max_output="10k"))
    assert result.returncode == -signal.SIGKILL and result.stats.limit == "max_output"
    assert result.stdout == "y\n" * 5120


# ---- system calls -----------------------------------------------------------------------

def test_deny_with_an_errno_and_deny_log():
    result = py("import os\ntry: os.mkdir('/tmp/x-never')\nexcept OSError as e: print(e.errno)",
                Policy(deny={"mkdir": "EACCES", "mkdirat": 13}, deny_log=True))
    assert result.stdout == "13\n"
    assert result.stats.denied == {"mkdir": 1}
    assert list(result.stats.denials) == [{"call": "mkdir", "verdict": "ERRNO(13)"}]


def test_deny_kill_ends_the_process_with_sigsys():
    result = sh("mkdir /tmp/x-never", Policy(deny={"mkdir": "kill"}))
    assert result.returncode == -signal.SIGSYS


def test_allow_is_the_complete_list():
    calls = {"arch_prctl", "set_tid_address", "exit_group", "write", "brk", "mmap",
             "munmap", "rt_sigaction", "rt_sigprocmask", "getpid", "ioctl", "prlimit64",
             "set_robust_list", "rseq", "getuid", "geteuid", "getgid", "getegid", "uname",
             "getppid", "getcwd", "newfstatat", "fstat", "mprotect", "read", "close"}
    result = kontain.run([SH, "echo", "allowed"], capture_output=True, km_options=KM,
                         policy=Policy(allow=calls))
    assert result.stdout == b"allowed\n"
    denied = kontain.run([SH, "mkdir", "/tmp/x-never"], capture_output=True, km_options=KM,
                         policy=Policy(allow=calls))
    assert b"Operation not permitted" in denied.stderr


# ---- the command line -------------------------------------------------------------------

def test_km_policy_file(tmp_path):
    path = tmp_path / "policy.toml"
    path.write_text('network = "none"\n[deny]\nmkdir = "EPERM"\n')
    km = kontain.km_command()
    result = subprocess.run(km + KM + ["--policy", str(path), SH, "sh", "-c",
                                       "mkdir /tmp/x-never; nc 127.0.0.1 1 </dev/null"],
                            capture_output=True, text=True)
    assert "Operation not permitted" in result.stderr
    assert "Address family not supported" in result.stderr
    path.write_text("wall_time = 1\n")
    result = subprocess.run(km + KM + ["--policy", str(path), SH, "true"], capture_output=True,
                            text=True)
    assert result.stderr == ("km: --policy: wall_time is enforced by kontain.run, not by "
                             "km: ignored\n")
    bad = subprocess.run(km + ["--policy", "/no/such/policy.toml", SH, "true"],
                         capture_output=True, text=True)
    assert bad.returncode == 2 and bad.stderr.startswith("km: --policy:")


def test_python_m_kontain_help_lists_the_cli():
    result = subprocess.run([sys.executable, "-m", "kontain", "--help"], capture_output=True,
                            text=True, env={**os.environ, "PYTHONPATH": str(
                                Path(kontain.__file__).parent.parent)})
    assert result.returncode == 0 and "--policy FILE" in result.stdout


def test_policies_apply_from_many_threads():
    results = []

    def one() -> None:
        results.append(sh("echo x > /f", Policy(read_only=True) if os.geteuid() == 0
                          else Policy(network="none")).returncode)
    threads = [threading.Thread(target=one) for _ in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert len(results) == 4
