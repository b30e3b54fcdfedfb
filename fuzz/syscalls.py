"""Run fuzz/syscall_fuzz.c under km, one seed at a time, and explain what it finds.

Each seed runs ``km --root ROOT /syscall_fuzz -n SEED CALLS /`` inside the sandbox (ROOT
a fresh tmpfs holding only the fuzzer). Odd seeds use the musl build, even ones glibc's,
so both start-up paths are covered. One seed in LETHAL_EVERY also lets the fuzzer end
itself (a fatal signal, exit_group, unmapping its own code...), to cover those paths.

The fuzzer is deterministic, so a failing seed is replayed with -v (every call printed
before it is made) to find the call km failed on, and then that call alone (-k K: the
same generation, only call K made) to get a one-call reproducer when it is one.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from pathlib import Path

from fuzz import common
from fuzz.common import Failure, Problem, Run

LETHAL_EVERY = 8
LETHAL_ONE_IN = 3000
MEM_SIZE = "1G"  # bounded: random mmap(MAP_POPULATE)s must not eat the host
SUMMARY = re.compile(rb"^syscall_fuzz: seed -?\d+: (\d+) calls made", re.M)
PROGRESS = re.compile(rb"^syscall_fuzz: progress (\d+)", re.M)
CALL_LINE = re.compile(rb"^#(\d+) (.*)$")
SELF_CHECK = re.compile(rb"^syscall_fuzz: FAILURE: .*$", re.M)


def fuzzer_binary(variant: str) -> Path:
    flags = ("-static", "-O2", "-Wall", "-fno-stack-protector")
    compiler = {"glibc": "gcc", "musl": "musl-gcc"}[variant]
    return common.build(common.FUZZ_DIR / "syscall_fuzz.c", compiler, flags,
                        f"syscall_fuzz-{variant}")


def variant_of(seed: int) -> str:
    return "musl" if seed % 2 else "glibc"


def lethal_for(seed: int) -> bool:
    return seed % LETHAL_EVERY == LETHAL_EVERY - 1


@dataclass
class SeedResult:
    seed: int
    calls: int  # calls made (from the summary, else the last progress line)
    finished: bool  # the fuzzer printed its summary
    run: Run
    problems: list[Problem] = field(default_factory=list)


def command(seed: int, calls: int, root: Path, extra: list[str] | None = None,
            variant: str | None = None) -> list[str]:
    binary = fuzzer_binary(variant or variant_of(seed))
    fuzz_args = ["-n"] if common.sandbox_available() else []
    if lethal_for(seed):
        fuzz_args += ["-l", str(LETHAL_ONE_IN)]
    guest_dir = "/"
    km = [*common.km_command(), "--mem-size", MEM_SIZE, "-V=exit", "--root", str(root),
          "/syscall_fuzz", *fuzz_args, *(extra or []), str(seed), str(calls), guest_dir]
    return common.in_sandbox(root, [(binary, "syscall_fuzz")], km)


def run_seed(seed: int, calls: int, timeout: float, extra: list[str] | None = None,
             variant: str | None = None) -> SeedResult:
    root = common.scratch_dir(f"sys{seed}-")
    try:
        common.prepare_root(root, [(fuzzer_binary(variant or variant_of(seed)),
                                    "syscall_fuzz")])
        result = common.run(command(seed, calls, root, extra, variant), timeout)
    finally:
        common.remove_dir(root)
    summary = SUMMARY.search(result.output)
    progress = [int(n) for n in PROGRESS.findall(result.output)]
    made = int(summary.group(1)) if summary else max(progress, default=0)
    outcome = SeedResult(seed, made, summary is not None, result)
    outcome.problems = judge(seed, result, summary is not None)
    return outcome


def judge(seed: int, result: Run, finished: bool) -> list[Problem]:
    problems = common.km_problems(result, f"syscall_fuzz seed {seed}")
    for line in SELF_CHECK.findall(result.output):  # km wrote into read-only memory
        text = line.decode(errors="replace")
        problems.append(Problem(common.normalize(text.split(": ", 2)[-1]), text))
    if result.timed_out or any(p.signature.startswith("km died") for p in problems):
        return problems
    if result.signaled or result.status > 128:
        number = result.status - 128
        if not lethal_for(seed) and number not in common.PLAUSIBLE_SIGNALS:
            problems.append(Problem(f"payload killed by signal {number}",
                                    "a signal the fuzzer never sends itself"))
    elif not finished and not lethal_for(seed):
        problems.append(Problem(f"exit status {result.status} without the fuzzer's summary",
                                common.km_error_lines(result.output)[-1:][0]
                                if common.km_error_lines(result.output) else ""))
    return problems


# --------------------------------------------------------------------------------------
# Explaining a failure


def _problem_position(output: bytes, problem: Problem) -> int:
    """Where in the output the problem first shows (its detail's first line)."""
    first = problem.detail.splitlines()[0].encode() if problem.detail else b""
    at = output.find(first) if first else -1
    return at if at >= 0 else len(output)


def _last_call_before(output: bytes, position: int) -> tuple[int, str] | None:
    last = None
    for line in output[:position].splitlines():
        match = CALL_LINE.match(line)
        if match:
            last = (int(match.group(1)), match.group(2).decode(errors="replace"))
    return last


def explain(seed: int, calls: int, timeout: float, problem: Problem) -> Failure:
    """Replay the seed with -v to find the call, then try that call alone."""
    replay = run_seed(seed, calls, timeout * 2, ["-v"])
    found = next((p for p in replay.problems if p.signature == problem.signature), None)
    where = _last_call_before(replay.run.output, _problem_position(replay.run.output, found)
                              ) if found else None
    prefix = f".venv/bin/python -m fuzz.run syscall-replay {seed} --calls {calls}"
    if where is None:
        return Failure("syscall", problem.signature, problem.detail,
                       f"{prefix}  (seed {seed}, {calls} calls; not reproduced with -v)",
                       rank=2)
    index, call = where
    alone = run_seed(seed, index + 1, timeout, ["-k", str(index)])
    if any(p.signature == problem.signature for p in alone.problems):
        memory = [line.decode(errors="replace").strip()
                  for line in alone.run.output.splitlines() if line.startswith(b"    arg")]
        return Failure("syscall", problem.signature, problem.detail,
                       f"{prefix} --only {index}  # the one call: {call}"
                       + "".join(f"\n      {line}" for line in memory), rank=0)
    return Failure("syscall", problem.signature, problem.detail,
                   f"{prefix} -v  # fails at call #{index} {call} "
                   f"(not alone: the calls before it matter)", rank=1)
