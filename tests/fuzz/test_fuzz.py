"""The fuzzers' CI slice: a small, fixed budget of each (well under a minute on two
cores), seeded so that a failure here reproduces exactly. The long campaign is
scripts/fuzz.sh; the fuzzers themselves live in fuzz/ (python3 -m fuzz.run --help).

Each test fails with the driver's report: every distinct km failure with its reproducer
(a syscall-replay command naming the one call, a kept ELF mutant, a km command line).
"""

import importlib
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(REPO))  # fuzz/ is a top-level package beside kontain/
fuzz_run = importlib.import_module("fuzz.run")

SEEDS, CALLS = 4, 2000
MUTANTS = 100
CLI_CASES = 100
JOBS = 2


def assert_no_failures(report) -> None:
    if report.failures:
        pytest.fail(report.summary(), pytrace=False)


@pytest.mark.slow
def test_random_syscalls_do_not_break_km(km):
    report = fuzz_run.campaign(SEEDS, CALLS, 0, 0, timeout=60, jobs=JOBS)
    print(report.summary())
    assert report.seeds == SEEDS
    assert_no_failures(report)
    assert report.syscalls > 0, report.summary()


@pytest.mark.slow
def test_elf_mutants_are_refused_or_run(km):
    report = fuzz_run.campaign(0, 0, MUTANTS, 0, timeout=20, jobs=JOBS)
    print(report.summary())
    assert report.mutants == MUTANTS
    assert_no_failures(report)


@pytest.mark.slow
def test_odd_command_lines_get_one_error_line(km):
    report = fuzz_run.campaign(0, 0, 0, CLI_CASES, timeout=20, jobs=JOBS)
    print(report.summary())
    assert report.cli_cases == CLI_CASES
    assert_no_failures(report)
