"""Strict parsing of the JSON bodies clients send: UTF-8 only, at most MAX_DEPTH levels of nesting, no NaN or
Infinity (nor a number that only overflows to one), no duplicate names, no integer longer than MAX_INT_DIGITS.

The depth is measured before anything is parsed and without recursion, so a body of a million `[` costs one pass
over its bytes and never meets Python's recursion limit (the standard parser recurses once per level, and our own
code walks the parsed body again: token counting, re-serialising it upstream). No Flask here: the web layer wires
`loads` into every request (webapp/api/__init__.py)."""

from __future__ import annotations

import json
import math
import re
from itertools import accumulate
from typing import Any

MAX_DEPTH = 64  # far above any real chat, settings or admin body; tool and response_format schemas included
MAX_INT_DIGITS = 1000  # no field of ours needs more; Python refuses past 4300 digits anyway (a ValueError)

# A string, escapes (`\"` included) skipped; written as an unrolled loop so it runs at C speed on long strings.
_STRING = re.compile(rb'"[^"\\]*(?:\\.[^"\\]*)*"', re.DOTALL)
_NOT_BRACKET = bytes(b for b in range(256) if b not in b"[]{}")
_DELTA = [0] * 256
_DELTA[ord("[")] = _DELTA[ord("{")] = 1
_DELTA[ord("]")] = _DELTA[ord("}")] = -1


class InvalidJSON(ValueError):
    """The body is not JSON we accept; the message says why, for the client."""


def nesting_depth(data: bytes) -> int:
    """The deepest level of arrays and objects in a JSON text, counted without recursion. Brackets inside strings
    do not count. Exact for valid JSON; for invalid JSON it never reports less than the parser would reach before
    failing. UTF-8 multi-byte sequences never hold ASCII bytes, so scanning bytes is exact."""
    brackets = _STRING.sub(b"", data).translate(None, _NOT_BRACKET)
    return max(0, max(accumulate(map(_DELTA.__getitem__, brackets)), default=0))


def _refuse_constant(name: str) -> Any:
    raise InvalidJSON(f"{name} is not a JSON number; send a finite number.")


def _finite_float(text: str) -> float:
    value = float(text)
    if not math.isfinite(value):
        raise InvalidJSON(f"The number {text[:40]} is too large; send a finite number.")
    return value


def _bounded_int(text: str) -> int:
    if len(text.lstrip("-")) > MAX_INT_DIGITS:
        raise InvalidJSON(f"An integer has more than {MAX_INT_DIGITS} digits.")
    return int(text)


def _unique_names(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
    # Two readers of one body (our validation, a provider) must never see different values for one name.
    obj = dict(pairs)
    if len(obj) != len(pairs):
        seen: set[str] = set()
        name = next(k for k, _ in pairs if k in seen or seen.add(k))  # type: ignore[func-returns-value]
        raise InvalidJSON(f"The name {name[:40]!r} appears twice in one object.")
    return obj


def loads(data: bytes | str) -> Any:
    """Parse a client's JSON body, or raise InvalidJSON (a ValueError) with a message fit for the client."""
    if isinstance(data, str):
        text = data
        raw = data.encode("utf-8", "surrogatepass")
    else:
        raw = bytes(data)
        try:
            text = raw.decode("utf-8")
        except UnicodeDecodeError:
            raise InvalidJSON("The body must be UTF-8 encoded JSON.") from None
    # Fewer opening brackets than the limit (almost every body) cannot nest deeper: no need to measure.
    if raw.count(b"[") + raw.count(b"{") > MAX_DEPTH and nesting_depth(raw) > MAX_DEPTH:
        raise InvalidJSON(f"The JSON is nested deeper than {MAX_DEPTH} levels.")
    try:
        return json.loads(text, parse_constant=_refuse_constant, parse_float=_finite_float,
                          parse_int=_bounded_int, object_pairs_hook=_unique_names)
    except InvalidJSON:
        raise
    except RecursionError:  # cannot happen below MAX_DEPTH; kept so a regression is a 400, never a 500
        raise InvalidJSON(f"The JSON is nested deeper than {MAX_DEPTH} levels.") from None
    except ValueError as exc:  # json.JSONDecodeError, or a number Python will not convert
        raise InvalidJSON(f"The body is not valid JSON: {_reason(exc)}") from None


def _reason(exc: ValueError) -> str:
    if isinstance(exc, json.JSONDecodeError):
        return f"{exc.msg} (line {exc.lineno}, column {exc.colno})."
    return "a value cannot be read."
