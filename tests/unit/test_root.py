"""The guest-path resolver (kontain.monitor.root): every rule, without a VM.

Each test builds a root directory with a secret beside it, resolves guest paths the way
system calls do, and checks what the host would act on. `lookup` returns (dirfd, host
path) for a host *at() call; under a root that path is /proc/self/fd/N, so tests look
at the object through os.stat/os.readlink of it.
"""

from __future__ import annotations

import errno
import os
import threading
from pathlib import Path
from types import SimpleNamespace

import pytest

from kontain.monitor.fdspace import FdSpace
from kontain.monitor.procfs import ProcFs
from kontain.monitor.root import AT_FDCWD, PayloadRoot


@pytest.fixture
def tree(tmp_path: Path) -> Path:
    """root/{etc/hello, etc/links...}, and secret/ beside the root."""
    root = tmp_path / "root"
    (root / "etc").mkdir(parents=True)
    (root / "tmp").mkdir()
    (root / "etc" / "hello").write_text("inside\n")
    secret = tmp_path / "secret"
    secret.mkdir()
    (secret / "file").write_text("SECRET\n")
    links = {"absolute": "/etc/hello", "out-absolute": str(secret / "file"),
             "out-relative": "../../secret/file", "dangling-out": str(secret / "new"),
             "dangling-in": "/tmp/created", "loop": "loop2", "loop2": "loop"}
    for name, target in links.items():
        (root / "etc" / name).symlink_to(target)
    return tmp_path


@pytest.fixture
def root(tree: Path):
    cwd = os.getcwd()
    resolver = PayloadRoot(str(tree / "root"), FdSpace())
    yield resolver
    os.chdir(cwd)


def what(host_path: bytes) -> str:
    """The host file a resolved name leads to (following it)."""
    return os.fsdecode(os.path.realpath(host_path))


def test_absolute_paths_resolve_inside_the_root(root, tree):
    _dfd, name = root.lookup(AT_FDCWD, b"/etc/hello")
    assert what(name) == str(tree / "root" / "etc" / "hello")


@pytest.mark.parametrize("path", [b"/..", b"/../../..", b"/etc/../../..", b"../../.."])
def test_dotdot_stops_at_the_root(root, tree, path):
    assert what(root.lookup(AT_FDCWD, path)[1]) == str(tree / "root")


@pytest.mark.parametrize("link", [b"/etc/absolute", b"/etc/out-absolute", b"/etc/out-relative"])
def test_symlinks_are_followed_inside_the_root(root, tree, link):
    try:
        target = what(root.lookup(AT_FDCWD, link)[1])
    except OSError as e:
        assert e.errno == errno.ENOENT  # the secret's path does not exist inside the root
        return
    assert target.startswith(str(tree / "root") + os.sep)


def test_a_dangling_link_is_enoent_for_calls_that_follow_it(root, tree):
    # The old fallback handed the host "parent + name", which the host then followed
    # by its own rules: out of the root.
    with pytest.raises(OSError) as e:
        root.lookup(AT_FDCWD, b"/etc/dangling-out", follow=True)
    assert e.value.errno == errno.ENOENT
    assert not (tree / "secret" / "new").exists()


def test_a_call_that_does_not_follow_sees_the_link_itself(root):
    dfd, name = root.lookup(AT_FDCWD, b"/etc/dangling-out", follow=False)
    assert os.readlink(name, dir_fd=None if dfd == AT_FDCWD else dfd).endswith(b"secret/new")


def test_creating_through_a_dangling_link_stays_inside_the_root(root, tree):
    # As in a chroot: the link's target is looked up inside the root, where the secret
    # directory does not exist.
    with pytest.raises(OSError) as e:
        root.open(AT_FDCWD, b"/etc/dangling-out", os.O_CREAT | os.O_WRONLY, 0o644)
    assert e.value.errno == errno.ENOENT
    assert not (tree / "secret" / "new").exists()


def test_creating_through_a_link_inside_the_root(root, tree):
    os.close(root.open(AT_FDCWD, b"/etc/dangling-in", os.O_CREAT | os.O_WRONLY, 0o644))
    assert (tree / "root" / "tmp" / "created").exists()


def test_a_missing_file_is_enoent(root):
    with pytest.raises(OSError) as e:
        root.lookup(AT_FDCWD, b"/etc/none")
    assert e.value.errno == errno.ENOENT


def test_symlink_loops_are_eloop(root):
    with pytest.raises(OSError) as e:
        root.lookup(AT_FDCWD, b"/etc/loop")
    assert e.value.errno == errno.ELOOP


def test_the_root_is_a_plain_directory_even_for_lstat(root, tree):
    for follow in (True, False):
        dfd, name = root.lookup(AT_FDCWD, b"/", follow=follow)
        st = os.stat(name, dir_fd=None if dfd == AT_FDCWD else dfd, follow_symlinks=follow)
        assert os.path.samestat(st, os.stat(tree / "root")), follow


def test_relative_paths_use_the_guest_cwd(root, tree):
    root.chdir(b"/etc")
    assert root.getcwd() == b"/etc"
    assert what(root.lookup(AT_FDCWD, b"hello")[1]) == str(tree / "root" / "etc" / "hello")
    root.chdir(b"../../..")
    assert root.getcwd() == b"/"
    assert os.getcwd() == str(tree / "root")


def test_relative_paths_use_the_directory_descriptor(root, tree):
    fd = os.open(tree / "root" / "etc", os.O_RDONLY | os.O_DIRECTORY)
    try:
        assert what(root.lookup(fd, b"hello")[1]) == str(tree / "root" / "etc" / "hello")
        assert what(root.lookup(fd, b"../../../..")[1]) == str(tree / "root")
    finally:
        os.close(fd)


def test_a_directory_descriptor_from_outside_the_root_leads_nowhere(root, tree):
    fd = os.open(tree / "secret", os.O_RDONLY | os.O_DIRECTORY)
    try:
        with pytest.raises(OSError) as e:
            root.lookup(fd, b"file")
        assert e.value.errno == errno.EACCES
        with pytest.raises(OSError):
            root.fchdir(fd)
    finally:
        os.close(fd)


def test_unix_socket_addresses_are_paths_inside_the_root(root, tree):
    name = root.unix_address(b"/tmp/sock", creating=True)
    assert what(os.path.dirname(name)) == str(tree / "root" / "tmp")
    with pytest.raises(OSError):
        root.unix_address(b"/etc/dangling-out", creating=False)


def test_threads_resolve_without_sharing_descriptors(root, tree):
    names = {b"/etc/hello": str(tree / "root" / "etc" / "hello"),
             b"/tmp": str(tree / "root" / "tmp")}
    errors: list[str] = []

    def work(path: bytes) -> None:
        for _ in range(300):
            got = what(root.lookup(AT_FDCWD, path)[1])
            if got != names[path]:
                errors.append(f"{path!r} -> {got}")
    threads = [threading.Thread(target=work, args=(p,)) for p in names for _ in range(2)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert errors == []


# ---- the payload's own /proc entries ------------------------------------------------------

@pytest.fixture
def unconfined():
    fds = FdSpace()
    resolver = PayloadRoot("/", fds)
    proc = SimpleNamespace(pid=os.getpid(), fds=fds, root=resolver, guest_exe="/bin/payload",
                           group=SimpleNamespace(threads={os.getpid(): SimpleNamespace(
                               host_ident=threading.get_ident())}), argv=[b"payload"],
                           mm=SimpleNamespace(vmas=lambda: [], brk_start=0,
                                              read=lambda va, n: ARGV[va - 0x1000:][:n]))
    resolver.procfs = ProcFs(proc)
    resolver.procfs.argv_range = (0x1000, 0x1000 + len(ARGV))  # the guest's strings
    return resolver


ARGV = b"payload\0"


@pytest.mark.parametrize("path", [b"/proc/self/mem", b"/proc/%d/mem" % os.getpid(),
                                  b"/proc/thread-self/../../mem", b"/proc/self/pagemap",
                                  b"/proc/self/task/%d/mem" % os.getpid()])
def test_km_memory_is_never_opened_for_the_payload(unconfined, path):
    with pytest.raises(OSError) as e:
        unconfined.open(AT_FDCWD, path, os.O_RDWR, 0)
    assert e.value.errno == errno.EACCES


def test_km_memory_through_a_symlink_is_refused_too(unconfined, tmp_path):
    (tmp_path / "m").symlink_to("/proc/self/mem")
    with pytest.raises(OSError) as e:
        unconfined.open(AT_FDCWD, os.fsencode(tmp_path / "m"), os.O_RDONLY, 0)
    assert e.value.errno == errno.EACCES


def test_km_descriptors_are_not_in_the_payloads_fd_directory(unconfined):
    km_fd = unconfined.procfs._proc.fds.km_base + 1
    with pytest.raises(OSError) as e:
        unconfined.open(AT_FDCWD, b"/proc/self/fd/%d" % km_fd, os.O_RDONLY, 0)
    assert e.value.errno == errno.ENOENT


def test_exe_names_the_payload(unconfined):
    assert unconfined.readlink(AT_FDCWD, b"/proc/self/exe") == b"/bin/payload"
    dfd = os.open("/proc/self", os.O_RDONLY | os.O_DIRECTORY)
    try:
        assert unconfined.readlink(dfd, b"exe") == b"/bin/payload"
    finally:
        os.close(dfd)


def test_synthesized_files_describe_the_payload(unconfined):
    fd = unconfined.open(AT_FDCWD, b"/proc/self/cmdline", os.O_RDONLY, 0)
    try:
        assert os.read(fd, 100) == b"payload\0"
    finally:
        os.close(fd)
    with pytest.raises(OSError) as e:
        unconfined.open(AT_FDCWD, b"/proc/self/maps", os.O_WRONLY, 0)
    assert e.value.errno == errno.EACCES
