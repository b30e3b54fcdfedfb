"""The fuzzing driver: all three fuzzers, in parallel, with a summary and reproducers.

    .venv/bin/python -m fuzz.run [--seeds N] [--calls M] [--mutants K] [--cli C]
                                 [--timeout S] [--jobs J] [--first-seed B]
    .venv/bin/python -m fuzz.run syscall-replay SEED [--calls M] [--only K] [-v]

(from the repository's root: fuzz/ is a package beside kontain/).

The first form runs N syscall-fuzzer seeds (B, B+1, ...) of M calls each, K ELF mutants
and C command lines, J at a time, and prints what was done and every distinct failure
with a way to reproduce it (mutants are kept under .cache/fuzz/failures/). It exits 1
when anything failed. Everything is seeded: the same arguments make the same runs.

The second replays one syscall-fuzzer seed under km and shows its output: with
--only K, only call K is made (after generating the ones before it), with -v every call
is printed before it is made.
"""

from __future__ import annotations

import argparse
import random
import sys
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field

from fuzz import cli_fuzz, common, elf_mutate, syscalls
from fuzz.common import Failure

_explained_lock = threading.Lock()


@dataclass
class Report:
    seeds: int = 0
    syscalls: int = 0
    seeds_finished: int = 0
    early_ends: list[str] = field(default_factory=list)  # seeds whose fuzzer died early
    mutants: int = 0
    mutants_refused: int = 0  # km said 126/127
    cli_cases: int = 0
    failures: list[Failure] = field(default_factory=list)  # every one, not deduplicated
    seconds: float = 0.0

    @property
    def distinct(self) -> list[Failure]:
        return common.dedupe(self.failures)

    def summary(self) -> str:
        lines = [
            f"fuzz: syscalls: {self.syscalls:,} calls made in {self.seeds} seeds "
            f"({self.seeds_finished} ran to the end"
            + (f"; ended early, as a program may: {', '.join(self.early_ends[:10])}"
               + (" ..." if len(self.early_ends) > 10 else "") if self.early_ends else "")
            + ")",
            f"fuzz: ELF mutants: {self.mutants:,} tried ({self.mutants_refused:,} refused by "
            f"km with 126/127, {self.mutants - self.mutants_refused:,} ran)",
            f"fuzz: CLI cases: {self.cli_cases:,}",
            f"fuzz: failures: {len(self.failures)} ({len(self.distinct)} distinct)",
        ]
        lines += [failure.report() for failure in self.distinct]
        lines.append(f"fuzz: took {self.seconds:.0f}s")
        return "\n".join(lines)


def _syscall_task(seed: int, calls: int, timeout: float, explained: set[str] | None):
    """One seed; the first failure of each kind is replayed to find its call (explained
    holds the kinds already taken care of; None: explain nothing)."""
    outcome = syscalls.run_seed(seed, calls, timeout)
    found = []
    for problem in outcome.problems:
        with _explained_lock:
            fresh = explained is not None and problem.signature not in explained
            if fresh:
                explained.add(problem.signature)
        if fresh:
            found.append(syscalls.explain(seed, calls, timeout, problem))
        else:
            found.append(Failure("syscall", problem.signature, problem.detail,
                                 f".venv/bin/python -m fuzz.run syscall-replay {seed} "
                                 f"--calls {calls} -v", rank=3))
    return outcome, found


def _mutant_task(index: int, first_seed: int, seed_files, timeout: float):
    rng = random.Random(f"elf-{first_seed}-{index}")
    data, description = elf_mutate.mutate(seed_files[index % len(seed_files)], rng)
    result = elf_mutate.run_mutant(data, timeout)
    failures = elf_mutate.check_result(data, description, result, timeout)
    return result.status in (126, 127) and bool(common.km_error_lines(result.output)), failures


def _cli_task(index: int, first_seed: int, places, timeout: float):
    rng = random.Random(f"cli-{first_seed}-{index}")
    return cli_fuzz.check(cli_fuzz.case(rng, places), places, timeout)


def campaign(seeds: int, calls: int, mutants: int, cli_cases: int, timeout: float = 60.0,
             jobs: int = 2, first_seed: int = 1, explain: bool = True) -> Report:
    """Run everything; return the counts and the failures."""
    report = Report()
    start = time.monotonic()
    seed_files = elf_mutate.seeds() if mutants else []
    places = cli_fuzz.Places.make() if cli_cases else None
    if seeds:
        syscalls.fuzzer_binary("glibc"), syscalls.fuzzer_binary("musl")  # build up front
    try:
        with ThreadPoolExecutor(max_workers=jobs) as pool:
            explained: set[str] | None = set() if explain else None
            sys_jobs = [pool.submit(_syscall_task, first_seed + i, calls, timeout, explained)
                        for i in range(seeds)]
            elf_jobs = [pool.submit(_mutant_task, i, first_seed, seed_files,
                                    min(timeout, 10.0)) for i in range(mutants)]
            cli_jobs = [pool.submit(_cli_task, i, first_seed, places, min(timeout, 20.0))
                        for i in range(cli_cases)]
            for job in sys_jobs:
                outcome, found = job.result()
                report.seeds += 1
                report.syscalls += outcome.calls
                if outcome.finished:
                    report.seeds_finished += 1
                else:
                    report.early_ends.append(f"seed {outcome.seed} "
                                             f"({outcome.run.describe()})")
                report.failures += found
            for job in elf_jobs:
                refused, found = job.result()
                report.mutants += 1
                report.mutants_refused += refused
                report.failures += found
            for job in cli_jobs:
                report.cli_cases += 1
                report.failures += job.result()
    finally:
        if places is not None:
            common.remove_dir(places.base)
    report.seconds = time.monotonic() - start
    return report


def replay(args: argparse.Namespace) -> int:
    extra = (["-v"] if args.verbose else []) + (["-k", str(args.only)] if args.only is not None
                                                else [])
    calls = args.calls if args.only is None else args.only + 1
    outcome = syscalls.run_seed(args.seed, calls, args.timeout, extra)
    sys.stdout.write(outcome.run.output.decode(errors="replace"))
    print(f"fuzz: {outcome.run.describe()}; {outcome.calls} calls made")
    for problem in outcome.problems:
        print(f"fuzz: FAILURE {problem.signature}")
    return 1 if outcome.problems else 0


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    if argv[:1] == ["syscall-replay"]:
        parser = argparse.ArgumentParser(prog="fuzz.run syscall-replay")
        parser.add_argument("seed", type=int)
        parser.add_argument("--calls", type=int, default=10000)
        parser.add_argument("--only", type=int, help="make only this call (0-based)")
        parser.add_argument("-v", "--verbose", action="store_true")
        parser.add_argument("--timeout", type=float, default=120.0)
        return replay(parser.parse_args(argv[1:]))
    parser = argparse.ArgumentParser(prog="fuzz.run", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--seeds", type=int, default=4, help="syscall-fuzzer seeds")
    parser.add_argument("--calls", type=int, default=2000, help="system calls per seed")
    parser.add_argument("--mutants", type=int, default=100, help="ELF mutants")
    parser.add_argument("--cli", type=int, default=100, help="km command lines")
    parser.add_argument("--timeout", type=float, default=60.0, help="seconds per run")
    parser.add_argument("--jobs", type=int, default=2, help="runs at a time")
    parser.add_argument("--first-seed", type=int, default=1)
    parser.add_argument("--no-explain", action="store_true",
                        help="do not replay failing seeds to find the failing call")
    args = parser.parse_args(argv)
    if not common.sandbox_available():
        print("fuzz: warning: no namespaces here: payloads run without the sandbox",
              file=sys.stderr)
    report = campaign(args.seeds, args.calls, args.mutants, args.cli, args.timeout,
                      args.jobs, args.first_seed, not args.no_explain)
    print(report.summary())
    return 1 if report.failures else 0


if __name__ == "__main__":
    sys.exit(main())
