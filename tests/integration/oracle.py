"""The comparison most differential tests end with: native Linux is the oracle."""

from __future__ import annotations


def compare(runs, assert_same, *, status: int = 0) -> str:
    """The native run must have behaved as the test expects (its status, no FATAL line
    from the payload's own checks), then km exactly like it; returns the native stdout."""
    native = runs.native
    assert native.returncode == status, native.describe() + "\n" + native.out + native.err
    assert "FATAL" not in native.out, native.out
    assert_same(native, runs.km)
    return native.out
