"""Clocks and sleeps: each check prints yes/no, and all must say yes, as natively."""


def test_clocks_and_sleeps_behave_like_native(payloads, flavour, run_both, assert_same):
    runs = run_both([payloads.build("time", flavour)])
    assert runs.native.returncode == 0
    assert ": no\n" not in runs.native.out, runs.native.out
    assert_same(runs.native, runs.km)
