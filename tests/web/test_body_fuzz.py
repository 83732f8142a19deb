"""Request bodies under fuzzing, through the app: whatever a signed-in client sends to a JSON API
(bytes, JSON of any shape, deep nesting, numbers and escapes Python's json accepts but JSON does
not, a valid request with one part broken), the answer is below 500 and the request leaves
exactly one audit entry."""

from __future__ import annotations

import copy
import json
from pathlib import Path

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from copilot.web.body import InputError, parse_json
from tests.helpers import TRANSCRIPT, make_record

DATA = Path(__file__).with_name("data")
CDS = json.loads((DATA / "cds_order_sign_allergy.json").read_text())
JSON_VALUES = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False, allow_infinity=False) | st.text(max_size=20),
    lambda children: st.lists(children, max_size=3) | st.dictionaries(st.text(max_size=10), children, max_size=3),
    max_leaves=12)
VALID = {
    "/api/qc": make_record(),
    "/api/draft": {"transcript": TRANSCRIPT, "sections": ["chief_complaint"], "max_new_tokens": 8},
    "/api/generate": {"prompt": "Define sepsis.", "max_new_tokens": 4, "temperature": 0.5, "top_p": 0.9,
                      "top_k": 5, "seed": 1, "stop": ["."], "stream": False},
    "/cds-services/copilot-medication-safety": CDS,
}


@st.composite
def one_part_broken(draw, original: dict):
    data = copy.deepcopy(original)
    target = data
    for _ in range(draw(st.integers(min_value=0, max_value=3))):
        keys = list(target) if isinstance(target, dict) else list(range(len(target))) if isinstance(target, list) else []
        if not keys:
            break
        key = draw(st.sampled_from(keys))
        if not isinstance(target[key], (dict, list)):
            break
        target = target[key]
    keys = list(target) if isinstance(target, dict) else list(range(len(target)))
    if keys:
        target[draw(st.sampled_from(keys))] = draw(JSON_VALUES)
    return json.dumps(data).encode()


def bodies(path: str):
    return st.one_of(
        st.binary(max_size=300),
        JSON_VALUES.map(lambda v: json.dumps(v).encode()),
        one_part_broken(VALID[path]),
        st.integers(min_value=10, max_value=20_000).map(lambda n: b"[" * n + b"]" * n),
        st.sampled_from([b'{"prompt": "x", "temperature": NaN}', b'{"prompt": "x", "seed": 1e999}',
                         b'{"prompt": "\\ud800"}', b'{"prompt": "x", "top_k": ' + b"9" * 5000 + b"}",
                         b'{"text": "\\u0000"}', "\ufeff{}".encode(), b'{"a": 1, "a": 2}']),
    )


FUZZ = settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture,
                                                                       HealthCheck.too_slow])
CONTENT_TYPES = st.sampled_from(["application/json", "application/json; charset=latin-1", "application/fhir+json",
                                 "text/plain", "application/json; charset=bogus"])


def fuzz(path: str):
    @FUZZ
    @given(body=bodies(path), content_type=CONTENT_TYPES)
    def test(app, client, auth, body, content_type):
        log = app.extensions["copilot.audit"]
        before = log.count()
        response = client.post(path, data=body, content_type=content_type, headers=auth("clinician"))
        response.get_data()
        assert response.status_code < 500, response.get_data(as_text=True)[:300]
        assert log.count() == before + 1
    return test


test_qc_bodies = fuzz("/api/qc")
test_draft_bodies = fuzz("/api/draft")
test_generate_bodies = fuzz("/api/generate")
test_cds_bodies = fuzz("/cds-services/copilot-medication-safety")


@settings(max_examples=300, deadline=None)
@given(st.binary(max_size=400), st.sampled_from([None, "utf-8", "latin-1", "utf-16", "gb18030", "nope"]))
def test_parse_json_raises_only_input_errors(raw, charset):
    try:
        parse_json(raw, charset)
    except InputError as exc:
        assert exc.status == 400
