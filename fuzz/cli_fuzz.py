"""Random km command lines: the options of ``km --help`` with odd values, missing
values, unknown options, --root pointing at files, symlinks and nothing, huge and odd
argument vectors. The payload, when there is one to run, is tests/payloads/hello.c
(it prints "Hello from a ..." and exits 42).

Pass: no traceback, no internal error, no hang; when the payload ran, its status (42);
otherwise km's own status (0 for --help/--version; 1, 2, 126 or 127 for an error) with
exactly one ``km: ...`` line.
"""

from __future__ import annotations

import os
import random
from dataclasses import dataclass
from pathlib import Path

from fuzz import common, elf_mutate
from fuzz.common import Failure, Problem, Run

HELLO_STATUS = 42
HELLO_OUTPUT = b"Hello from a "
ERROR_STATUSES = (1, 2, 126, 127)

SIZES = ["", "0", "1", "64M", "63M", "64m", "64MB", "64MiB", "64mib", "99999999999G",
         "99999999999999999999T", "1T", "1e9", "1.5G", "-1", "-64M", "0x4000000", "0b1",
         "0o777777777", "1_000_000_000", " 64M", "64M ", "9" * 400, "G", "k", "0x", "--",
         "\u0663\u0662M", "64\u00a0M", "nan", "inf", "64M\t", "\udcff", "4G", "2G", "128M"]
REGEXES = ["", "[", "(", ")", "*", "+", "?", "a{99999999999}", "(?P<", "\\", "syscall",
           "exit|mem", ".*", "(a*)*b", "[[:alpha:]]", "a" * 5000, "(?i)EXIT", "\\x", "\udcff",
           "(?<=a+)b", "{", "exit\n", "^"]
ENV_VALUES = ["A=B", "", "A", "=B", "A=B=C", "PATH=/nowhere", "\x01=\x02", "A=" + "x" * 70000,
              "LD_PRELOAD=/nope.so", "HOME=", "A=\udcff"]
UNKNOWN = ["-x", "--foo", "---", "-VV", "--verbose=", "-SV", "-Sv", "--exec-state",
           "--exec-state=", "--exec-state=zz", "--exec-state=1:2", "--exec-state=ff:ff:ff",
           "--exec-state=-1:-1", "--exec-state=" + "f" * 40 + ":0", "--loader-env=",
           "--loader-env=A", "--argv0", "--argv0=", "--argv0=x", "--mem-size", "--root",
           "-e", "--putenv", "--copyenv=1", "--help=x", "-hv", "-", "-\udcff"]


@dataclass
class Places:
    """The files a case can name, made once per campaign in a scratch directory."""

    base: Path
    hello: Path  # outside any root
    root: Path  # a directory holding /hello

    @classmethod
    def make(cls) -> Places:
        base = common.scratch_dir("cli-")
        hello = base / "hello"
        hello.write_bytes(elf_mutate.hello_binary("musl").read_bytes())
        hello.chmod(0o755)
        root = base / "root"
        (root / "bin").mkdir(parents=True)
        for target in (root / "hello", root / "bin" / "hello"):
            target.write_bytes(hello.read_bytes())
            target.chmod(0o755)
        (base / "text").write_text("not a program\n")
        (base / "plain").write_bytes(hello.read_bytes())  # not executable
        (base / "empty").write_bytes(b"")
        (base / "dir").mkdir()
        os.symlink(root, base / "link-to-root")
        os.symlink(base / "nowhere", base / "dangling")
        os.symlink(base / "loop", base / "loop")
        os.symlink(hello, base / "link-to-hello")
        return cls(base, hello, root)

    def roots(self) -> list[str]:
        b = self.base
        return [str(self.root), str(b / "link-to-root"), str(self.hello), str(b / "nowhere"),
                str(b / "dangling"), str(b / "loop"), "", "/", ".", "root", str(b / "text"),
                str(b / "dir"), "/proc/self/fd/0", str(self.root) + "/", str(b / "..")]

    def payloads(self, in_root: bool) -> list[str]:
        b = self.base
        if in_root:
            return ["/hello", "hello", "/bin/hello", "../../hello", "/nope", "/", "/dir"]
        return [str(self.hello), "hello", "./hello", str(b / "text"), str(b / "plain"),
                str(b / "empty"), str(b / "dir"), str(b / "nowhere"), str(b / "dangling"),
                str(b / "loop"), str(b / "link-to-hello"), "", "-", "true", "/dev/null",
                str(self.hello) + "/x", "\udcff"]


def case(rng: random.Random, places: Places) -> list[str]:
    """One command line (without km itself)."""
    argv: list[str] = []
    root = False
    for _ in range(rng.choice([0, 1, 1, 2, 2, 3, 5])):
        kind = rng.randrange(10)
        if kind == 0:
            argv += rng.choice([["-V"], ["--verbose"], [f"-V={rng.choice(REGEXES)}"],
                                [f"--verbose={rng.choice(REGEXES)}"],
                                [f"-V{rng.choice(REGEXES)}"]])
        elif kind == 1:
            size = rng.choice(SIZES)
            argv += rng.choice([["--mem-size", size], [f"--mem-size={size}"]])
        elif kind == 2:
            value = rng.choice(ENV_VALUES)
            argv += rng.choice([["-e", value], ["--putenv", value], [f"--putenv={value}"],
                                [f"-e={value}"]])
        elif kind == 3:
            where = rng.choice(places.roots())
            root = where != ""
            argv += rng.choice([["--root", where], [f"--root={where}"]])
        elif kind == 4:
            argv += [rng.choice(["-S", "--hcall-stats", "--copyenv", "--"])]
        elif kind == 5:
            argv += [rng.choice(["-v", "--version", "-h", "--help"])]
        else:
            argv += [rng.choice(UNKNOWN)]
    if rng.random() < 0.9:
        argv.append(rng.choice(places.payloads(root and rng.random() < 0.8)))
        if rng.random() < 0.1:  # a huge argument vector, or a huge argument
            argv += ["x" * 100] * 5000 if rng.random() < 0.5 else ["y" * 100000]
        else:
            argv += rng.choice([[], ["arg"], ["", "\udcff", "a b"], ["--root", "x"]])
    return argv


def judge(result: Run) -> list[Problem]:
    problems = common.km_problems(result, "km command line")
    if problems:
        return problems
    lines = common.km_error_lines(result.output)
    if HELLO_OUTPUT in result.output:
        if result.status != HELLO_STATUS:
            problems.append(Problem(f"payload ran but km exited {result.status}",
                                    result.output.decode(errors="replace")[-500:]))
        return problems
    if result.status == 0:
        return problems  # --help, --version, or a payload that prints nothing (true)
    if result.status not in ERROR_STATUSES:
        problems.append(Problem(f"km exited {result.status} without running the payload",
                                "\n".join(lines[-3:])))
    elif len(lines) != 1:
        problems.append(Problem(f"{len(lines)} km error lines (want exactly one)",
                                "\n".join(lines[:5]) or result.output.decode(
                                    errors="replace")[-500:]))
    return problems


def check(argv: list[str], places: Places, timeout: float) -> list[Failure]:
    command = [*common.km_command(), *argv]
    result = common.run([os.fsencode(a) for a in command], timeout, cwd=places.base)
    shown = " ".join(repr(a) if not a or any(c in a for c in " \t\\'\"\udcff") else a
                     for a in argv[:12])
    if len(argv) > 12:
        shown += f" ... ({len(argv)} arguments)"
    return [Failure("cli", p.signature, p.detail, f"(cd {places.base} && km {shown})")
            for p in judge(result)]
