"""krun's command line, as container engines write it for runc."""

from __future__ import annotations

import pytest

from kontain.cli.krun import COMMANDS, GLOBAL_OPTIONS
from kontain.cli.krun_cmdline import UsageError, parse


def line(*words: str):
    return parse(list(words), GLOBAL_OPTIONS, COMMANDS)


def test_containerd_shims_create():
    args = line("--root", "/run/containerd/runc/k8s.io", "--log", "/x/log.json",
                "--log-format", "json", "--systemd-cgroup", "create", "--bundle", "/b",
                "--pid-file", "/b/init.pid", "--console-socket=/tmp/s.sock", "abc")
    assert (args.root, args.log, args.log_format, args.systemd_cgroup) == (
        "/run/containerd/runc/k8s.io", "/x/log.json", "json", True)
    assert (args.command, args.id, args.bundle, args.pid_file, args.console_socket) == (
        "create", "abc", "/b", "/b/init.pid", "/tmp/s.sock")
    assert args.preserve_fds == 0 and args.no_pivot is False


def test_defaults_short_options_and_values_joined():
    args = line("run", "-b/bundle", "-d", "--preserve-fds", "3", "c1")
    assert (args.root, args.log_format, args.bundle, args.detach, args.preserve_fds) == (
        "/run/krun", "text", "/bundle", True, 3)


def test_exec_keeps_the_commands_own_options():
    args = line("exec", "--tty", "-e", "A=1", "--env=B=2", "-eC=3", "-g", "5", "c1", "sh",
                "-c", "echo --force", "--", "-x")
    assert (args.id, args.argv) == ("c1", ["sh", "-c", "echo --force", "--", "-x"])
    assert (args.tty, args.env, args.additional_gids) == (True, ["A=1", "B=2", "C=3"], [5])
    assert line("exec", "--process", "/p.json", "c1").argv == []


def test_options_may_follow_operands_and_operands_may_be_optional():
    assert line("delete", "c1", "--force").force is True
    assert (line("kill", "c1").signal, line("kill", "--all", "c1", "KILL").signal) == (
        "SIGTERM", "KILL")
    assert line("kill", "c1", "--", "-9").signal == "-9"
    assert line("list", "--format=json", "-q").format == "json"
    assert line("--debug=false", "state", "c1").debug is False


def test_no_command_help_and_version():
    assert line().command is None
    assert line("--version").version is True
    assert line("exec", "--help").help is True


@pytest.mark.parametrize("words", [
    ("nosuch",), ("state",), ("state", "a", "b"), ("--root",), ("--bogus", "state", "a"),
    ("list", "--format", "yaml"), ("run", "--preserve-fds", "x", "c"),
    ("delete", "--force=maybe", "c"),
])
def test_bad_lines_are_usage_errors(words):
    with pytest.raises(UsageError):
        line(*words)
