"""`#!` scripts: the interpreter line, parsed byte for byte as Linux's binfmt_script does.

Linux reads the first 256 bytes (zero-padded) and looks for the line's end with strnchr,
which also stops at a NUL. Without a newline the interpreter's name must end (space, tab
or NUL) within the buffer, else the name was cut and execve is ENOEXEC; what follows is
cut at byte 255. Only spaces and tabs separate: `#!/bin/sh\\r` names "/bin/sh\\r". The
interpreter is at most one argument, everything after the name up to the line's end
(inner blanks kept). The interpreter then runs with argv [interpreter, (argument),
script path, original args[1:]...].
"""

from __future__ import annotations

import errno

from kontain.loader.elf import ExecError

BINPRM_BUF_SIZE = 256
#: Linux rewrites an exec for an interpreter at most this many times, then says ELOOP.
MAX_SCRIPT_DEPTH = 5

_SPACETAB = b" \t"


def _next_non_spacetab(buf: bytes, first: int, last: int) -> int | None:
    for i in range(first, last + 1):
        if buf[i] not in _SPACETAB:
            return i
    return None


def _next_terminator(buf: bytes, first: int, last: int) -> int | None:
    for i in range(first, last + 1):
        if buf[i] in b" \t\0":
            return i
    return None


def _c_string(buf: bytes, start: int, end: int) -> bytes:
    return buf[start:end].split(b"\0", 1)[0]


def interpreter_line(head: bytes) -> tuple[bytes, bytes | None] | None:
    """(interpreter, optional argument) if head starts a `#!` script, else None.
    Raises ExecError(ENOEXEC) where Linux refuses the line."""
    if not head.startswith(b"#!"):
        return None
    buf = head[:BINPRM_BUF_SIZE].ljust(BINPRM_BUF_SIZE, b"\0")
    buf_end = BINPRM_BUF_SIZE - 1
    line_end = buf.find(b"\n", 0, buf.find(b"\0") if b"\0" in buf else BINPRM_BUF_SIZE)
    if line_end < 0:
        start = _next_non_spacetab(buf, 2, buf_end)
        if start is None:
            raise ExecError(errno.ENOEXEC, "#! line of blanks only")
        if _next_terminator(buf, start, buf_end) is None:
            raise ExecError(errno.ENOEXEC, "#! interpreter name longer than the line")
        line_end = buf_end
    while buf[line_end - 1] in _SPACETAB:
        line_end -= 1
    name = _next_non_spacetab(buf, 2, line_end)
    if name is None or name == line_end:
        raise ExecError(errno.ENOEXEC, "empty #! line")
    argument = None
    separator = _next_terminator(buf, name, line_end)
    if separator is not None and buf[separator] != 0:
        argument_start = _next_non_spacetab(buf, separator, line_end)
        if argument_start is not None:
            argument = _c_string(buf, argument_start, line_end)
    interpreter = _c_string(buf, name, line_end if separator is None else separator)
    return interpreter, argument


def script_argv(head: bytes, path: bytes, argv: list[bytes]) -> tuple[bytes, list[bytes]] | None:
    """(interpreter path, its argv) for running the script at path with argv."""
    found = interpreter_line(head)
    if found is None:
        return None
    interpreter, argument = found
    new_argv = [interpreter] + ([argument] if argument is not None else []) + [path] + argv[1:]
    return interpreter, new_argv
