"""krun's JSON (kontain/oci/jsonio.py) reads and writes what the json package does."""

from __future__ import annotations

import json

import pytest

from kontain.oci import jsonio, spec

SAMPLES = [
    spec.default_config(False),
    {"ociVersion": "1.2.0", "id": "c1", "pid": 4242, "annotations": {"a.b/c": "d\n\t\"e\""},
     "bundle": "/srv/bündle", "values": [0, -1, 2 ** 63, 1.5, -2.5e-8, None, True, False]},
    [], {}, "text", 12, 3.25, None, [[[]]],
]


@pytest.mark.parametrize("value", SAMPLES)
def test_round_trips_as_json_does(value):
    text = jsonio.dumps(value)
    assert text == json.dumps(value)
    assert jsonio.loads(text) == json.loads(text) == value
    assert jsonio.loads(text.encode()) == value
    assert jsonio.loads(f" \n\t{text}\r\n ") == value
    assert jsonio.dumps(value, indent=2) == json.dumps(value, indent=2)


@pytest.mark.parametrize("text", ["", "{", "{bad", "[1,]", "{} x", "nul", '"\\x"', "\ufeff{}"])
def test_what_is_not_json_is_a_value_error(text):
    with pytest.raises(ValueError):
        jsonio.loads(text)


def test_what_json_cannot_hold_is_a_type_error():
    with pytest.raises(TypeError):
        jsonio.dumps({"x": object()})
    assert jsonio.dumps({"x": 1}) == '{"x": 1}'  # (nothing left behind by the failure)
