"""Fuzzers for km: random system calls, mangled executables, odd command lines.

* ``syscall_fuzz.c`` / :mod:`fuzz.syscalls`: a static C program making seeded random raw
  system calls, run under km (inside :file:`sandbox.c`'s namespaces).
* :mod:`fuzz.elf_mutate`: mutants of valid executables, each run under ``km --root``.
* :mod:`fuzz.cli_fuzz`: random km command lines.
* :mod:`fuzz.run`: the driver (``python -m fuzz.run --help``); ``scripts/fuzz.sh`` runs
  the long campaign, ``tests/fuzz/`` a small one in CI.

What counts as a failure is the same everywhere (:mod:`fuzz.common`): a Python
traceback, an "internal error", a hang, or an exit status Linux could not have given.
"""
