"""kontain.Policy: an immutable value, composed with |, read from TOML (km --policy)."""

from __future__ import annotations

import dataclasses

import pytest

from kontain.policy import Policy, parse_size


def test_a_policy_is_immutable():
    with pytest.raises(dataclasses.FrozenInstanceError):
        Policy().memory = 1  # type: ignore[misc]


def test_sizes_take_units():
    assert Policy(memory="256M").memory == 256 << 20
    assert Policy(max_output="1k").max_output == 1024
    assert parse_size("1.5G") == 3 << 29
    assert parse_size(4096) == 4096
    with pytest.raises(ValueError):
        parse_size("lots")


def test_the_right_side_wins_per_field_it_sets():
    left = Policy(memory="256M", cpu_time=1, network="none")
    right = Policy(cpu_time=2, network="host")
    merged = left | right
    assert (merged.memory, merged.cpu_time, merged.network) == (256 << 20, 2.0, "host")
    assert (right | Policy()) == right  # an unset field changes nothing


def test_collections_are_merged():
    left = Policy(hidden=["/a"], deny={"mkdir": "EPERM", "chmod": 1}, allow={"read"},
                  mounts={"/x": ("/h1", "ro")})
    right = Policy(hidden=["/b", "/a"], deny={"chmod": "kill"}, allow={"write"},
                   mounts={"/y": ("/h2", "rw")})
    merged = left | right
    assert merged.hidden == ("/a", "/b")
    assert merged.deny == {"mkdir": 1, "chmod": "kill"}
    assert merged.allow == frozenset({"read", "write"})
    assert merged.mounts == {"/x": ("/h1", "ro"), "/y": ("/h2", "rw")}


def test_a_bool_is_a_scalar_in_composition():
    assert (Policy(read_only=["/etc"]) | Policy(read_only=True)).read_only is True
    assert (Policy(allow_exec=False) | Policy(allow_exec=["/bin/sh"])).allow_exec == ("/bin/sh",)


@pytest.mark.parametrize("bad", [
    {"network": "wifi"}, {"memory": "1M"}, {"cpu_time": 0}, {"max_processes": 0},
    {"deny": {"nosuchcall": "EPERM"}}, {"deny": {"mkdir": "ENOTANERRNO"}},
    {"hidden": ["relative/path"]}, {"allow_connect": ["nohostport"]},
    {"mounts": {"/data": ("/srv", "rx")}},
])
def test_bad_values_are_refused_early(bad):
    with pytest.raises(ValueError):
        Policy(**bad)


def test_presets():
    strict = Policy.strict()
    assert strict.network == "none" and strict.read_only is True
    assert strict.tmpfs == ("/tmp",) and strict.allow_exec is False
    assert (strict.memory, strict.wall_time) == (256 << 20, 10.0)
    assert "/etc/shadow" in strict.hidden
    assert Policy.default().is_empty()


def test_toml_round_trip():
    policy = Policy.strict() | Policy(mounts={"/data": ("/srv/data", "ro")},
                                      deny={"mkdir": "kill", "chmod": "EACCES"},
                                      allow_connect=["127.0.0.1:8080"])
    assert Policy.from_toml(policy.to_toml()) == policy


def test_toml_extends_a_preset():
    policy = Policy.from_toml('extends = "strict"\nmemory = "512M"\n[deny]\nptrace = "kill"\n')
    assert policy.memory == 512 << 20 and policy.network == "none"
    assert policy.deny == {"ptrace": "kill"}


def test_toml_refuses_unknown_fields():
    with pytest.raises(ValueError, match="unknown policy field"):
        Policy.from_toml("memroy = 1\n")


def test_km_fields_leave_out_what_the_caller_enforces():
    fields = Policy(wall_time=1, max_output=10, memory="64M").km_fields()
    assert fields == {"memory": 64 << 20}
