"""How km talks about its own bugs: one line, never a traceback on the payload's stderr.

km's messages go to its diagnostics descriptor; a km bug is "km: internal error ..." with
where it happened (file:line), and the whole stack only under -V. Nothing here imports
anything: km may have dropped privileges or be jailed by the time it needs this.
"""

from __future__ import annotations


def where(error: BaseException) -> str:
    """`Type: message (file:line in function)` of the innermost frame."""
    tb = error.__traceback__
    place = ""
    while tb is not None:
        code = tb.tb_frame.f_code
        place = f" ({_short(code.co_filename)}:{tb.tb_lineno} in {code.co_name})"
        tb = tb.tb_next
    return f"{type(error).__name__}: {error}{place}"


def stack(error: BaseException) -> str:
    """The frames error went through, outermost first, one per line."""
    lines = []
    tb = error.__traceback__
    while tb is not None:
        code = tb.tb_frame.f_code
        lines.append(f"  {_short(code.co_filename)}:{tb.tb_lineno} in {code.co_name}")
        tb = tb.tb_next
    return "\n".join(lines)


def _short(filename: str) -> str:
    """kontain/monitor/thread.py rather than the install path."""
    marker = filename.rfind("/kontain/")
    return filename[marker + 1:] if marker >= 0 else filename
