"""JSON for krun's start path, without the json package.

The json package compiles regular expressions as it loads (re, and enum with it): ~6 ms
of every krun start, and engines start krun for every container. The C scanner and
encoder that package uses itself (_json) do the work here; only its error path, and
indented output, go through the json package.
"""

from __future__ import annotations

import _json

_WHITESPACE = " \t\n\r"


class _Decoding:
    """What _json's scanner asks of a decoder: plain JSON, as json.loads reads it."""

    strict = True
    object_hook = None
    object_pairs_hook = None
    parse_float = float
    parse_int = int

    @staticmethod
    def parse_constant(name: str) -> float:
        return {"NaN": float("nan"), "Infinity": float("inf"),
                "-Infinity": float("-inf")}[name]


_scan = _json.make_scanner(_Decoding)


def _refuse(value: object) -> object:
    raise TypeError(f"Object of type {type(value).__name__} is not JSON serializable")


# (No circular-reference markers: krun's own data has no cycles, and a shared markers
# dict would keep entries after an error.)
_encode = _json.make_encoder(None, _refuse, _json.encode_basestring_ascii, None, ": ", ", ",
                             False, False, True)


def loads(text: str | bytes) -> object:
    """json.loads (ValueError, as json.JSONDecodeError is, for what is not JSON)."""
    if isinstance(text, (bytes, bytearray)):
        text = text.decode("utf-8")
    start = len(text) - len(text.lstrip(_WHITESPACE))
    try:
        value, end = _scan(text, start)
    except (StopIteration, SystemError, ValueError):
        value, end = None, -1
    if end < 0 or text[end:].strip(_WHITESPACE):
        import json  # the json package says what is wrong, and where

        return json.loads(text)
    return value


def load(file) -> object:
    return loads(file.read())


def dumps(value: object, indent: int | str | None = None) -> str:
    """json.dumps (indent: as json.dumps's, for output people read)."""
    if indent is not None:
        import json

        return json.dumps(value, indent=indent)
    return "".join(_encode(value, 0))


def dump(value: object, file, indent: int | str | None = None) -> None:
    file.write(dumps(value, indent))
