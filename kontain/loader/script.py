"""`#!` scripts: the interpreter line, parsed as Linux's binfmt_script does.

The first line (at most 256 bytes) names the interpreter and at most one argument; the
interpreter then runs with argv [interpreter, (argument), script path, original args...].
"""

from __future__ import annotations

import errno

from kontain.loader.elf import ExecError

BINPRM_BUF_SIZE = 256


def interpreter_line(head: bytes) -> tuple[bytes, bytes | None] | None:
    """(interpreter, optional argument) if head starts a `#!` script, else None."""
    if not head.startswith(b"#!"):
        return None
    line = head[2:BINPRM_BUF_SIZE].split(b"\n", 1)[0].strip(b" \t")
    if not line:
        raise ExecError(errno.ENOEXEC, "empty #! line")
    parts = line.split(None, 1)
    interpreter = parts[0]
    argument = parts[1].strip(b" \t") if len(parts) > 1 else None
    return interpreter, argument or None


def script_argv(head: bytes, path: bytes, argv: list[bytes]) -> tuple[bytes, list[bytes]] | None:
    """(interpreter path, its argv) for running the script at path with argv."""
    found = interpreter_line(head)
    if found is None:
        return None
    interpreter, argument = found
    new_argv = [interpreter] + ([argument] if argument else []) + [path] + argv[1:]
    return interpreter, new_argv
