"""Privileged instructions and forged exceptions get the signals Linux sends.

On PVM `int $N` reaches km as #UD, and the payload may itself issue the `out` km's
ring-0 stub uses to report an exception (IOPL is 3), or jump into the stub: km must tell
a real exception (delivered at CPL 0) from these, and answer like Linux (SIGSEGV for #GP,
SIGTRAP for int3) rather than read a stale exception frame.
"""

from __future__ import annotations


def test_privileged_instructions_and_forged_exceptions(payloads, flavour, run_both, assert_same):
    program = payloads.build("cpu_forge", flavour)
    runs = run_both([program])
    assert "out 0x8e     -> Segmentation fault" in runs.native.out
    assert_same(runs.native, runs.km)
