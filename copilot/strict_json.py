"""JSON as RFC 8259 defines it, with bounds: every request body and every JSONL line the copilot
reads is parsed here.

Python's ``json.loads`` accepts more than JSON and fails in ways a server must not: ``NaN`` and
``Infinity``, numbers that overflow to infinity (``1e400``), lone UTF-16 surrogates (``"\\ud800"``,
which no UTF-8 encoder can write back, so hashing the value for the audit log fails), and one
recursion per nesting level (a 10,000-deep array raises RecursionError, and a 900-deep one parses
but breaks the schema validator further down). ``loads`` refuses each of these with a JSONError
(a ValueError) whose message says what is wrong, before any of it reaches the code below.
"""

from __future__ import annotations

import json
import math
import re

import numpy as np

MAX_DEPTH = 64  # a FHIR Bundle inside a CDS Hooks request nests about 15 levels deep

# A JSON string, escapes included (the depth scan removes them, and brackets inside them, first).
_STRING = re.compile(r'"[^"\\]*(?:\\.[^"\\]*)*"', re.S)
_NOT_BRACKET = re.compile(r"[^\[\]{}]+")
_SURROGATE_ESCAPE = re.compile(r"\\u[dD][89a-fA-F][0-9a-fA-F]{2}")
_SURROGATE = re.compile("[\ud800-\udfff]")


class JSONError(ValueError):
    """Not JSON, or JSON beyond the limits; the message says which and where."""


def loads(text: str, max_depth: int = MAX_DEPTH) -> object:
    """Parse ``text`` (already decoded) as strict JSON nested at most ``max_depth`` levels."""
    _check_depth(text, max_depth)
    try:
        value = json.loads(text, parse_constant=_no_constant, parse_float=_finite_float)
    except json.JSONDecodeError as exc:
        raise JSONError(f"malformed JSON at line {exc.lineno}, column {exc.colno}: {exc.msg}") from None
    except RecursionError:  # unreachable after the depth scan; kept so no caller ever sees one
        raise JSONError(f"JSON nested too deeply (more than {max_depth} levels)") from None
    except JSONError:
        raise
    except ValueError as exc:  # an integer of more than 4,300 digits
        raise JSONError(f"a number in the JSON is out of range ({exc})") from None
    if _SURROGATE_ESCAPE.search(text):
        _check_text(value)
    return value


def _check_depth(text: str, max_depth: int) -> None:
    """The deepest nesting of brackets outside strings, computed without recursion (vectorised:
    a 16 MiB FHIR Bundle takes about a second to parse, and this adds a fraction of that)."""
    if text.count("[") + text.count("{") <= max_depth:
        return  # too few brackets to nest deeper, wherever they are
    brackets = _NOT_BRACKET.sub("", _STRING.sub("", text)).encode("ascii")
    steps = np.frombuffer(brackets, dtype=np.uint8)
    depth = np.cumsum(np.where((steps == ord("[")) | (steps == ord("{")), 1, -1), dtype=np.int64)
    if depth.size and int(depth.max()) > max_depth:
        raise JSONError(f"JSON nested too deeply (more than {max_depth} levels)")


def _no_constant(name: str):
    raise JSONError(f"{name} is not a JSON number")


def _finite_float(literal: str) -> float:
    value = float(literal)
    if not math.isfinite(value):
        raise JSONError(f"the number {literal[:40]} is out of range")
    return value


def _check_text(value: object) -> None:
    """Refuse strings (keys included) holding an unpaired surrogate: escapes that name no character."""
    stack = [value]
    while stack:
        item = stack.pop()
        if isinstance(item, str):
            if _SURROGATE.search(item):
                raise JSONError("a string in the JSON holds an unpaired surrogate escape (\\ud800-\\udfff), "
                                "which is not Unicode text")
        elif isinstance(item, dict):
            stack.extend(item.keys())
            stack.extend(item.values())
        elif isinstance(item, list):
            stack.extend(item)
