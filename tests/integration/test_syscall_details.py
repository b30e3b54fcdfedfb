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


def _layouts(run, argv: list, times: int = 3) -> dict[str, set[str]]:
    seen: dict[str, set[str]] = {}
    for _ in range(times):
        result = run(argv)
        assert result.returncode == 0, result.describe()
        for line in result.out.splitlines():
            region, value = line.split()
            seen.setdefault(region, set()).add(value)
    return seen


@pytest.mark.parametrize("flavour_name", ["musl", "glibc-pie"])
def test_address_space_layout_randomisation(payloads, km, run_native, run_km, flavour_name):
    """Which regions move from run to run (stack, mmap area, heap, vDSO, a PIE's code)
    is the same under km as natively; `setarch -R` and personality(ADDR_NO_RANDOMIZE)
    before an exec keep every one in place, natively and under km."""
    program = payloads.build("aslr", FLAVOURS[flavour_name])
    randomised = {region: len(values) > 1 for region, values in _layouts(run_km, [program]).items()}
    assert randomised == {"stack": True, "mmap": True, "brk": True, "vdso": True,
                          "code": flavour_name == "glibc-pie", "personality": False}
    for argv in ([program], ["setarch", "-R", program], [program, "norandom"]):
        native = _layouts(run_native, argv)
        if argv[0] == "setarch":
            under_km = _layouts(run_native, ["setarch", "-R", *km, program])
        else:
            under_km = _layouts(run_km, argv)
        moved = {region: len(values) > 1 for region, values in native.items()}
        assert moved == {region: len(values) > 1 for region, values in under_km.items()}, \
            (argv, native, under_km)
        assert native["personality"] == under_km["personality"]
    assert moved == {"stack": False, "mmap": False, "brk": False, "code": False,
                     "vdso": False, "personality": False}
