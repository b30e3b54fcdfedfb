"""The vDSO: time calls run inside the VM without a single VM exit (issue: a clock_gettime
loop makes no hypercall), and give the same time as the host."""

from __future__ import annotations

import re

import pytest


@pytest.mark.parametrize("flavour_name", ["musl", "glibc"])
def test_clock_gettime_loop_makes_no_hypercall(payloads, run_both, assert_same, km,
                                               flavour_name, run_km):
    exe = payloads.build("clock_loop", flavour_name)
    runs = run_both([exe])
    assert runs.native.out == "20000 time calls agreed\n"
    assert_same(runs.native, runs.km)
    stats = run_km(["-S", exe])
    table = stats.err
    assert "total hypercalls" in table
    for name in ("clock_gettime", "gettimeofday", "time "):
        assert not re.search(rf"^km: {name}", table, re.M), table
    total = int(re.search(r"total hypercalls\s+(\d+)", table).group(1))
    assert total < 30, table  # start-up and exit only, not 80000 time calls


def test_vdso_is_in_the_auxv_and_maps(payloads, run_km):
    exe = payloads.build("auxv", "glibc")
    result = run_km([exe])
    assert result.returncode == 0
