"""What a payload finds at start-up: argc/argv, its environment and the auxiliary vector
(AT_PAGESZ, AT_HWCAP, AT_PLATFORM, AT_EXECFN, AT_RANDOM, AT_ENTRY, ...)."""

import shutil

ARGS = ["plain", "with space", "", "--flag=value", "tab\there", "ünïcödé", "x" * 300]

ENV = {
    "PATH": "/usr/bin:/bin",
    "LC_ALL": "C",
    "KM_TEST_GREETING": "hello world",
    "KM_TEST_EMPTY": "",
    "HOME": "/nonexistent",
}


def test_argv_env_and_auxv_match_native(payloads, flavour, run_both, assert_same):
    exe = payloads.build("auxv", flavour)
    runs = run_both([exe, *ARGS], env=ENV)
    out = runs.native.out
    assert runs.native.returncode == 0, runs.native.err
    assert f"argc = {1 + len(ARGS)}\n" in out
    assert 'getenv(KM_TEST_GREETING) = "hello world"' in out
    assert "AT_PAGESZ = 0x1000\n" in out
    assert "AT_PLATFORM = x86_64\n" in out
    assert "AT_ENTRY == &_start: yes" in out
    assert_same(runs.native, runs.km)


def test_relative_argv0_and_execfn_match_native(payloads, run_both, assert_same, tmp_path):
    shutil.copy(payloads.build("auxv", "glibc-pie"), tmp_path / "auxv")
    runs = run_both(["./auxv", "one"], env=ENV, cwd=tmp_path)
    assert "AT_EXECFN = ./auxv\n" in runs.native.out
    assert_same(runs.native, runs.km)


def test_empty_environment_matches_native(payloads, run_both, assert_same):
    runs = run_both([payloads.build("auxv", "musl")], env={})
    assert "envc = 0\n" in runs.native.out
    assert_same(runs.native, runs.km)


def test_environment_without_locale_variables_is_passed_unchanged(payloads, run_both,
                                                                   assert_same):
    """km must not add variables of its own (Python's C-locale coercion sets LC_CTYPE in
    its own environment when no locale is configured)."""
    env = {"PATH": "/usr/bin:/bin", "KM_TEST_GREETING": "hi"}
    runs = run_both([payloads.build("auxv", "musl")], env=env)
    assert "envc = 2\n" in runs.native.out
    assert_same(runs.native, runs.km)
