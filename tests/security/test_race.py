"""A symlink race under km --root: one thread swaps a link between a file inside the root
and targets outside it while another uses the link in a loop (a bounded number of
times): opens it to read, opens it to append (creating it if it dangles), or chmods it.
Resolution and use must be one step: the outside file is never read, written or changed,
whatever the interleaving. tests/security/payloads/race.c.
"""

from __future__ import annotations

import pytest

from .conftest import FLAVOUR


@pytest.mark.parametrize("mode", ["read", "write", "chmod"])
def test_symlink_race_never_reaches_outside(sandbox, escape_payloads, mode):
    payload = escape_payloads.build("race", FLAVOUR)
    native_root, km_root = sandbox.pair(payload)
    native = sandbox.native(native_root, mode, str(sandbox.host))
    under_km = sandbox.km(km_root, mode, str(sandbox.host))
    # The lines printed do not depend on the interleaving; what the writes left in each
    # root does (which target each one found), so the roots are not compared.
    sandbox.check_same(native, under_km, compare_roots=False)
