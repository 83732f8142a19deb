"""The record loaders under fuzzing: random and adversarial input (bytes, JSON of any shape,
valid records and FHIR Bundles with one part broken, deep nesting) always becomes a record or
the project's RecordError; a JSONL file yields one result per non-blank line, whatever the line."""

from __future__ import annotations

import copy
import json
from pathlib import Path

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from copilot.records.loaders import RecordError, iter_records, record_from_json
from copilot.records.model import Record
from tests.helpers import make_record

BUNDLE = json.loads((Path(__file__).resolve().parents[1] / "web" / "data" / "fhir_bundle.json").read_text())
JSON_VALUES = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False, allow_infinity=False)
    | st.text(max_size=20) | st.sampled_from(["", "2026-13-45", "Patient/x", "urn:uuid:1", "male", "progress_note"]),
    lambda children: st.lists(children, max_size=3) | st.dictionaries(st.text(max_size=10), children, max_size=3),
    max_leaves=12)
FUZZ = settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture,
                                                                        HealthCheck.too_slow])


def loaded_or_refused(data) -> None:
    try:
        assert isinstance(record_from_json(data, "fuzz"), Record)
    except RecordError:
        pass


def paths(value, prefix=()):
    """Every (container, key) place inside a JSON value."""
    if isinstance(value, dict):
        for key, child in value.items():
            yield prefix + (key,)
            yield from paths(child, prefix + (key,))
    elif isinstance(value, list):
        for index, child in enumerate(value):
            yield prefix + (index,)
            yield from paths(child, prefix + (index,))


@st.composite
def broken(draw, original):
    """``original`` with one place replaced by any JSON value, or removed."""
    data = copy.deepcopy(original)
    places = list(paths(data))
    path = draw(st.sampled_from(places))
    parent = data
    for key in path[:-1]:
        parent = parent[key]
    if draw(st.booleans()):
        parent[path[-1]] = draw(JSON_VALUES)
    elif isinstance(parent, dict):
        del parent[path[-1]]
    else:
        parent.pop(path[-1])
    return data


@FUZZ
@given(JSON_VALUES)
def test_any_json_is_a_record_or_a_record_error(data):
    loaded_or_refused(data)


@FUZZ
@given(broken(make_record()))
def test_a_project_record_with_one_part_broken(data):
    loaded_or_refused(data)


@FUZZ
@given(broken(BUNDLE))
def test_a_fhir_bundle_with_one_part_broken(data):
    loaded_or_refused(data)


LINES = st.one_of(
    st.binary(max_size=200),
    JSON_VALUES.map(lambda v: json.dumps(v).encode()),
    broken(make_record()).map(lambda v: json.dumps(v).encode()),
    st.integers(min_value=60, max_value=6000).map(lambda n: b"[" * n + b"]" * n),
    st.sampled_from([b'{"id": "x", "documents": NaN}', b"9" * 5000, b'{"id": "\\ud800"}', b"\xff\xfe\x00",
                     json.dumps(make_record()).encode()]),
).map(lambda line: line.replace(b"\n", b" ").replace(b"\r", b" "))


@FUZZ
@given(st.lists(LINES, min_size=1, max_size=12))
def test_a_jsonl_file_yields_one_result_per_line_whatever_the_lines(tmp_path_factory, lines):
    path = tmp_path_factory.mktemp("fuzz") / "batch.jsonl"
    path.write_bytes(b"\n".join(lines) + b"\n")
    results = list(iter_records([path]))
    expected = [number for number, line in enumerate(lines, 1) if line.strip()]
    assert [r.line for r in results] == expected
    assert all((r.record is None) != (r.error is None) for r in results)
    assert all(r.error is None or str(path) in r.position for r in results)
