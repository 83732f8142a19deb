"""copilot.strict_json under fuzzing: any text either parses to what json.loads gives or raises
JSONError, never RecursionError, OverflowError or a value the audit log cannot hash."""

from __future__ import annotations

import json

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from copilot.audit import hash_payload
from copilot.strict_json import MAX_DEPTH, JSONError, loads

JSON_VALUES = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False, allow_infinity=False) | st.text(),
    lambda children: st.lists(children, max_size=4) | st.dictionaries(st.text(max_size=8), children, max_size=4),
    max_leaves=30)
TOKENS = st.sampled_from(['[', ']', '{', '}', '"', '\\', ':', ',', '1e400', 'NaN', '-Infinity', '\\ud800', '\\udc00',
                          '\\ud83d\\ude00', '9' * 5000, 'true', 'null', ' ', '\n', '"a"', '0', '-', '.', 'e', '\x00'])


def outcome(text: str):
    try:
        return loads(text)
    except JSONError:
        return JSONError


@settings(max_examples=300, deadline=None)
@given(st.text(max_size=300))
def test_any_text_parses_or_is_a_json_error(text):
    value = outcome(text)
    if value is not JSONError:
        assert value == json.loads(text)
        hash_payload(value)  # whatever parses can be audited


@settings(max_examples=300, deadline=None)
@given(st.lists(TOKENS, max_size=120).map("".join))
def test_adversarial_token_soup_parses_or_is_a_json_error(text):
    value = outcome(text)
    if value is not JSONError:
        hash_payload(value)


@settings(max_examples=200, deadline=None)
@given(JSON_VALUES)
def test_valid_json_round_trips(value):
    text = json.dumps(value)
    assert loads(text) == value


@settings(max_examples=50, deadline=None)
@given(st.integers(min_value=1, max_value=20_000), st.sampled_from(["[]", "{}"]))
def test_depth_is_bounded_without_recursion(depth, pair):
    text = ("[" * depth + "]" * depth) if pair == "[]" else ('{"a": ' * depth + "1" + "}" * depth)
    if depth <= MAX_DEPTH:
        assert loads(text) is not None
    else:
        with pytest.raises(JSONError, match="nested too deeply"):
            loads(text)


@pytest.mark.parametrize("text, message", [
    ('{"a": NaN}', "NaN is not a JSON number"), ("[Infinity]", "Infinity"), ("1e999", "out of range"),
    ('"\\ud800"', "unpaired surrogate"), ('{"\\udfff": 1}', "unpaired surrogate"), ("9" * 5000, "out of range"),
    ('{"a": [1, 2', "malformed JSON at line 1"),
])
def test_what_python_accepts_and_json_does_not_is_refused(text, message):
    with pytest.raises(JSONError, match=message):
        loads(text)


def test_strings_that_look_like_brackets_do_not_count_as_depth():
    text = json.dumps({"note": "[" * 10_000, "more": ["{" * 500, "\\\"[[["]})
    assert loads(text)["note"] == "[" * 10_000
