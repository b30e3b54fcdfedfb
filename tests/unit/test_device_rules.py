"""A container's device rules as km checks them when the payload opens a device node
(kontain/monitor/devices.py, and the check in the open handler)."""

from __future__ import annotations

import errno
import os

import pytest
from harness import make_process, make_thread

from kontain.linux.hostcall import SyscallError
from kontain.monitor.devices import DeviceRules
from kontain.oci.cgroups import DEFAULT_ALLOWED_DEVICES
from kontain.syscalls import fs

AT_FDCWD = -100
DOCKER = [{"allow": False, "access": "rwm"},
          {"allow": True, "type": "c", "major": 1, "minor": 5, "access": "rwm"},
          {"allow": False, "type": "c", "major": 10, "minor": 229, "access": "rwm"}]


def test_the_last_rule_matching_decides_for_each_access():
    rules = DeviceRules(DOCKER + DEFAULT_ALLOWED_DEVICES)
    assert rules.permits("c", 1, 3, "rw")  # /dev/null: a default device
    assert rules.permits("c", 1, 5, "r")  # /dev/zero: the config's own
    assert not rules.permits("c", 1, 1, "r")  # /dev/mem: the deny-all
    assert not rules.permits("b", 8, 0, "r")  # a disk: only mknod (m) is allowed
    assert not rules.permits("c", 10, 229, "r")  # /dev/fuse, denied by name
    assert rules.permits("c", 136, 4, "rw")  # a pty of the container's devpts
    read_only = DeviceRules([{"allow": False, "access": "rwm"},
                             {"allow": True, "type": "c", "major": 1, "minor": 9,
                              "access": "r"}])
    assert read_only.permits("c", 1, 9, "r") and not read_only.permits("c", 1, 9, "rw")
    assert DeviceRules([]).permits("b", 8, 0, "rw")  # no rules: the cgroup's default


@pytest.mark.parametrize("flags", [os.O_RDONLY, os.O_WRONLY, os.O_RDWR])
def test_a_denied_device_is_eperm_and_leaves_no_descriptor(flags):
    proc = make_process()
    proc.options.device_rules = DeviceRules([{"allow": False, "access": "rwm"}])
    thread = make_thread(proc)
    before = set(os.listdir("/proc/self/fd"))
    with pytest.raises(SyscallError) as raised:
        fs._open(thread, AT_FDCWD, b"/dev/null", flags, 0)
    assert raised.value.errno == errno.EPERM
    assert set(os.listdir("/proc/self/fd")) == before
    proc.options.device_rules = DeviceRules([{"allow": False, "access": "rwm"}, {
        "allow": True, "type": "c", "major": 1, "minor": 3, "access": "rw"}])
    os.close(fs._open(thread, AT_FDCWD, b"/dev/null", flags, 0))
    os.close(fs._open(thread, AT_FDCWD, b"/tmp", os.O_RDONLY, 0))  # not a device: no check
