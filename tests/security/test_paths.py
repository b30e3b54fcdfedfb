"""Path escapes from km --root: links out of the root (absolute, relative, dangling),
`..`, absolute host paths, descriptors and the working directory, renames and links
across the boundary, symlink loops.

tests/security/payloads/paths.c makes the attempts of one OP and prints a line each; the
same run in a native chroot is the oracle: km must print the same lines, leave its root
as the chroot left its own, and leave everything outside the root untouched.
"""

from __future__ import annotations

import pytest

from .conftest import FLAVOUR

#: Calls that follow a link in the last component, each tried on links out of the root.
FOLLOWING = ["stat", "lstat", "statx", "access", "faccessat2", "statfs", "chmod", "chown",
             "lchown", "utimensat", "utimes", "truncate", "open", "openat", "openat2",
             "open-write", "open-trunc", "linkat-follow", "setxattr", "getxattr", "chdir"]

#: Creating through a dangling link must create the file inside the root, where the link
#: points when it is resolved inside the root (as a chroot does) - never on the host.
CREATING = ["create-open", "create-openat", "create-openat2", "create-creat", "create-excl",
            "create-mkdir", "create-mknod"]

#: Names made or moved across the boundary.
NAMESPACE = ["mkdir", "mknod", "symlink", "rename-out", "rename-in", "exchange", "link-out",
             "link-in", "unlink"]

#: `..`, absolute paths, descriptors, the working directory; symlink loops.
CLIMBING = ["dotdot", "absolute", "cwd", "fd", "fchdir", "loops"]


def compare_with_chroot(sandbox, escape_payloads, op: str) -> None:
    payload = escape_payloads.build("paths", FLAVOUR)
    native_root, km_root = sandbox.pair(payload)
    native = sandbox.native(native_root, op, str(sandbox.host))
    under_km = sandbox.km(km_root, op, str(sandbox.host))
    sandbox.check_same(native, under_km)


@pytest.mark.parametrize("op", FOLLOWING)
def test_links_out_of_the_root_are_followed_inside_it(sandbox, escape_payloads, op):
    compare_with_chroot(sandbox, escape_payloads, op)


@pytest.mark.parametrize("op", CREATING)
def test_creating_through_a_dangling_link_stays_inside(sandbox, escape_payloads, op):
    compare_with_chroot(sandbox, escape_payloads, op)


@pytest.mark.parametrize("op", NAMESPACE)
def test_names_do_not_cross_the_root(sandbox, escape_payloads, op):
    compare_with_chroot(sandbox, escape_payloads, op)


@pytest.mark.parametrize("op", CLIMBING)
def test_climbing_out_of_the_root(sandbox, escape_payloads, op):
    compare_with_chroot(sandbox, escape_payloads, op)
