"""System call details where km once differed from Linux, each case run natively and
under km with the same payload (see also test_syscall_details_fs.py / _io.py)."""

from __future__ import annotations

import shutil

import pytest
from conftest import FLAVOURS


@pytest.mark.skipif(shutil.which("unshare") is None, reason="needs unshare(1)")
def test_host_and_domain_names(payloads, km, run_native, run_km, assert_same):
    """sethostname/setdomainname as root, then refused as nobody. Natively the payload
    runs in a UTS namespace of its own (unshare -u) so that the host keeps its name;
    under km the payload's names are its own anyway (km never renames the host)."""
    program = payloads.build("uts", FLAVOURS["musl"])
    native = run_native(["unshare", "-u", program])
    under_km = run_native(["unshare", "-u", *km, program])
    assert "uname nodename=kontain-uts domainname=example.org" in native.out, native.out
    assert "sethostname as nobody: -1 EPERM" in native.out
    assert_same(native, under_km)


def test_km_never_renames_the_host(payloads, run_km):
    program = payloads.build("uts", FLAVOURS["musl"])
    before = open("/proc/sys/kernel/hostname").read()
    result = run_km([program])
    assert "sethostname(kontain-uts): 0" in result.out, result.describe()
    assert open("/proc/sys/kernel/hostname").read() == before


def test_fixed_mappings_below_mmap_min_addr(payloads, run_both, assert_same):
    """As an unprivileged process (the payload drops root): below the host's
    vm.mmap_min_addr EPERM, from it up allowed, at any address km's layout leaves."""
    minimum = open("/proc/sys/vm/mmap_min_addr").read().strip()
    program = payloads.build("mmap_low", FLAVOURS["musl"])
    runs = run_both([program, minimum])
    assert "MAP_FIXED at min+4096: mapped\n" in runs.native.out, runs.native.out
    assert_same(runs.native, runs.km)
