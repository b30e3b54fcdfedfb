"""Inside a payload: ask km for a snapshot of this process (docs/ARCHITECTURE.md,
"Snapshots").

Pure Python with ctypes and os only, so any CPython payload run by km can import it:
put the directory holding km's `kontain` package on the payload's PYTHONPATH (it
imports nothing else of km's), e.g.

    km --snapshot=/tmp/warm.snap -e PYTHONPATH=/path/to/km python3 app.py

    from kontain.guest import snapshot
    ... warm up ...
    if snapshot():          # 0 in the original (which ends here), 1 once resumed
        ...                 # runs in every `km /tmp/warm.snap`

snapshot(live=True) keeps the original running (it returns 0 there). Errors raise
OSError: ENOSYS when not under km, EBUSY when km refuses (it says why on its stderr:
a socket, a child process, ...).
"""

from __future__ import annotations

import ctypes
import errno
import os
import sys

#: km's snapshot hypercall (kontain.monitor.snapshot.HYPERCALL; include/kontain/snapshot.h).
HYPERCALL = 0x4B4D0001
SNAPSHOT_LIVE = 1


def snapshot(live: bool = False, label: str | None = None, path: str | None = None) -> int:
    """Save this process to a snapshot (path, or km --snapshot, or ./kmsnap). Returns
    0 in the original (live=False: it exits with status 0 instead) and 1 when running
    from the snapshot."""
    for stream in (sys.stdout, sys.stderr):  # buffered output belongs to the original
        try:
            stream.flush()
        except (AttributeError, OSError, ValueError):
            pass
    libc = ctypes.CDLL(None, use_errno=True)
    call = libc.syscall
    call.restype = ctypes.c_long
    call.argtypes = [ctypes.c_long, ctypes.c_long, ctypes.c_char_p, ctypes.c_char_p]
    result = call(HYPERCALL, SNAPSHOT_LIVE if live else 0,
                  None if label is None else os.fsencode(label),
                  None if path is None else os.fsencode(path))
    if result < 0:
        code = ctypes.get_errno()
        if code == errno.ENOSYS:
            raise OSError(code, "kontain.guest.snapshot: not running under km")
        raise OSError(code, f"kontain.guest.snapshot: {os.strerror(code)}")
    return result
