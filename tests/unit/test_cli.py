"""km's command line."""

from __future__ import annotations

import pytest

from kontain.cli.km import UsageError, parse, parse_size
from kontain.monitor.launch import find_payload


def test_options_end_at_the_payload() -> None:
    cl = parse(["-S", "--mem-size", "1G", "prog", "-S", "--help"])
    assert cl.stats and cl.mem_size == 1 << 30
    assert cl.payload == ["prog", "-S", "--help"]
    assert not cl.show_help


def test_putenv_replaces_the_environment_and_copyenv_restores_it() -> None:
    assert parse(["-e", "A=1", "--putenv=B=2", "p"]).putenv == ["A=1", "B=2"]
    assert parse(["-e", "A=1", "--copyenv", "p"]).putenv is None


def test_verbose_takes_an_optional_regex() -> None:
    assert parse(["-V", "p"]).verbose == ""
    assert parse(["--verbose=sys.*", "p"]).verbose == "sys.*"
    assert parse(["p"]).verbose is None


def test_bad_options_are_usage_errors() -> None:
    with pytest.raises(UsageError):
        parse(["--bogus", "p"])
    with pytest.raises(UsageError):
        parse(["-e", "NOEQUALS", "p"])
    with pytest.raises(UsageError):
        parse_size("12X")


def test_payload_without_slash_is_found_in_path(tmp_path, monkeypatch) -> None:
    exe = tmp_path / "tool"
    exe.write_text("")
    exe.chmod(0o755)
    search = f"/nonexistent:{tmp_path}"
    assert find_payload("tool", search) == str(exe)
    with pytest.raises(FileNotFoundError):
        find_payload("no-such-tool-anywhere", search)
