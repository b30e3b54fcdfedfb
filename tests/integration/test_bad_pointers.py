"""System calls with bad pointers (NULL, low addresses, unmapped, the kernel half) fail
with EFAULT and the payload carries on, as natively."""


def test_bad_pointers_give_efault_like_native(payloads, flavour, run_both, assert_same):
    runs = run_both([payloads.build("badptr", flavour)])
    out = runs.native.out
    assert runs.native.returncode == 0, out
    assert "done, 0 unexpected results\n" in out
    assert out.count(": EFAULT\n") >= 19
    assert_same(runs.native, runs.km)
