"""Every request that reaches a patient-data endpoint leaves exactly one audit entry, whatever its
outcome: success, invalid, denied, cancelled or error (the issue counted 14 of 182 missing:
cancelled streams, draft and generation 400s, bad generation parameters and deeply nested JSON
answered with unaudited 500s). Unauthenticated calls never reach the endpoint and leave none."""

from __future__ import annotations

import json
import sqlite3
from pathlib import Path

import pytest

from copilot.audit import hash_payload
from tests.helpers import NOTE, TRANSCRIPT, make_record

DATA = Path(__file__).with_name("data")
DEEP = b'{"prompt": ' + b"[" * 10_000 + b"]" * 10_000 + b"}"
NDJSON = "application/x-ndjson"


def cds_request() -> dict:
    return json.loads((DATA / "cds_order_sign_allergy.json").read_text())


GENERATE = "/api/generate"
DRAFT = "/api/draft"
CASES = [
    # name, role, method, path, request kwargs, status, action, outcome
    ("generate", "clinician", "POST", GENERATE, {"json": {"prompt": "Define sepsis.", "max_new_tokens": 8}},
     200, "generate", "success"),
    ("generate, no stream", "clinician", "POST", GENERATE,
     {"json": {"prompt": "Define sepsis.", "max_new_tokens": 8, "stream": False}}, 200, "generate", "success"),
    ("top_p not a number", "clinician", "POST", GENERATE, {"json": {"prompt": "x", "top_p": "abc"}},
     400, "generate", "invalid"),
    ("negative top_k", "clinician", "POST", GENERATE, {"json": {"prompt": "x", "top_k": -5}}, 400, "generate",
     "invalid"),
    ("80-bit seed", "clinician", "POST", GENERATE, {"json": {"prompt": "x", "seed": 2**80}}, 400, "generate",
     "invalid"),
    ("NaN temperature", "clinician", "POST", GENERATE,
     {"data": b'{"prompt": "x", "temperature": NaN}', "content_type": "application/json"}, 400, "generate", "invalid"),
    ("10,000-deep JSON", "clinician", "POST", GENERATE, {"data": DEEP, "content_type": "application/json"},
     400, "generate", "invalid"),
    ("lone surrogate", "clinician", "POST", GENERATE,
     {"data": b'{"prompt": "\\ud800"}', "content_type": "application/json"}, 400, "generate", "invalid"),
    ("generate as text", "clinician", "POST", GENERATE, {"data": b"hi", "content_type": "text/plain"},
     415, "generate", "invalid"),
    ("generate by qc staff", "qc_staff", "POST", GENERATE, {"json": {"prompt": "x"}}, 403,
     "denied:generate.generate", "denied"),
    ("draft", "clinician", "POST", DRAFT, {"json": {"transcript": TRANSCRIPT, "sections": ["chief_complaint"]}},
     200, "draft", "success"),
    ("draft, 10,000-deep JSON", "clinician", "POST", DRAFT,
     {"data": b'{"record": ' + b"[" * 10_000 + b"]" * 10_000 + b"}", "content_type": "application/json"},
     400, "draft", "invalid"),
    ("draft, unknown field", "clinician", "POST", DRAFT, {"json": {"transcript": "x", "evil": 1}}, 400, "draft",
     "invalid"),
    ("draft, bad note type", "clinician", "POST", DRAFT, {"json": {"transcript": "x", "note_type": "../x"}},
     400, "draft", "invalid"),
    ("draft, 3 MiB", "clinician", "POST", DRAFT, {"json": {"transcript": "x" * (3 << 20)}}, 413, "draft",
     "invalid"),
    ("qc", "clinician", "POST", "/api/qc", {"json": make_record(NOTE)}, 200, "qc", "success"),
    ("qc, deep JSON", "clinician", "POST", "/api/qc",
     {"data": b"[" * 10_000 + b"]" * 10_000, "content_type": "application/json"}, 400, "qc", "invalid"),
    ("qc, wrong type", "clinician", "POST", "/api/qc", {"data": b"\x89PNG", "content_type": "image/png"}, 415,
     "qc", "invalid"),
    ("qc, 3 MiB", "clinician", "POST", "/api/qc", {"data": b"a" * (3 << 20), "content_type": "text/plain"},
     413, "qc", "invalid"),
    ("ground", "clinician", "POST", "/api/ground", {"json": {"source": TRANSCRIPT, "draft": "Knee pain."}}, 200, "ground",
     "success"),
    ("ground, no draft", "qc_staff", "POST", "/api/ground", {"json": {"source": TRANSCRIPT}}, 400, "ground", "invalid"),
    ("ground, deep JSON", "clinician", "POST", "/api/ground",
     {"data": b"[" * 10_000 + b"]" * 10_000, "content_type": "application/json"}, 400, "ground", "invalid"),
    ("ground, 3 MiB", "clinician", "POST", "/api/ground", {"json": {"source": "x" * (3 << 20), "draft": "x"}}, 413,
     "ground", "invalid"),
    ("cds", "clinician", "POST", "/cds-services/copilot-medication-safety", {"json": cds_request()}, 200,
     "cds:copilot-medication-safety", "success"),
    ("cds, unknown service", "clinician", "POST", "/cds-services/nope", {"json": cds_request()}, 404, "cds",
     "invalid"),
    ("cds, deep JSON", "clinician", "POST", "/cds-services/copilot-medication-safety",
     {"data": b"[" * 10_000 + b"]" * 10_000, "content_type": "application/json"}, 400,
     "cds:copilot-medication-safety", "invalid"),
    ("job upload", "qc_staff", "POST", "/api/qc/jobs",
     {"data": (json.dumps(make_record(NOTE)) + "\n").encode(), "content_type": NDJSON}, 202, "qc:job-submit",
     "success"),
    ("job upload, wrong type", "qc_staff", "POST", "/api/qc/jobs", {"data": b"x", "content_type": "image/png"},
     415, "qc:job-submit", "invalid"),
    ("job report, no such job", "qc_staff", "GET", "/api/qc/jobs/" + "0" * 32 + "/report", {}, 404,
     "qc:job-report", "invalid"),
]


def entries(app) -> list:
    return list(app.extensions["copilot.audit"].entries())


@pytest.mark.parametrize("name, role, method, path, kwargs, status, action, outcome", CASES, ids=[c[0] for c in CASES])
def test_each_outcome_leaves_exactly_one_entry(app, client, auth, name, role, method, path, kwargs, status, action,
                                               outcome):
    response = client.open(path, method=method, headers=auth(role), **kwargs)
    response.get_data()
    response.close()
    assert response.status_code == status, response.get_data(as_text=True)[:300]
    assert response.headers.get("Cache-Control") == "no-store"
    found = entries(app)
    assert [(e.action, e.outcome) for e in found] == [(action, outcome)]
    assert found[0].user == {"clinician": "clin", "qc_staff": "qc"}[role]
    if "data" in kwargs and status == 400:
        assert found[0].input_hash == hash_payload(kwargs["data"])
    assert app.extensions["copilot.audit"].verify().ok


@pytest.mark.parametrize("path", [GENERATE, DRAFT, "/api/qc", "/api/ground", "/cds-services/copilot-qc-summary"])
def test_unauthenticated_calls_leave_no_entry(app, client, path):
    assert client.post(path, data=DEEP, content_type="application/json").status_code == 401
    assert entries(app) == []


@pytest.mark.parametrize("path, body", [
    (GENERATE, {"prompt": "Count: " + " ".join(map(str, range(300))), "max_new_tokens": 400}),
    (DRAFT, {"transcript": TRANSCRIPT, "sections": ["hpi"], "max_new_tokens": 400}),
])
def test_a_stream_the_client_drops_is_audited_once_as_cancelled(app, client, auth, fake_engine, path, body):
    fake_engine.script = " ".join(str(n) for n in range(400))
    fake_engine.token_delay = 0.002
    response = client.post(path, json=body, headers=auth("clinician"), buffered=False)
    assert response.status_code == 200
    chunks = iter(response.response)
    next(chunks)
    next(chunks)
    response.close()
    [entry] = entries(app)
    assert (entry.action, entry.outcome) == (path.rsplit("/", 1)[1], "cancelled")
    assert app.extensions["copilot.admission"].in_use == 0  # the dropped stream gave its slot back


def test_a_stream_closed_before_its_first_byte_is_audited_once(app, client, auth):
    response = client.post(GENERATE, json={"prompt": "hi"}, headers=auth("clinician"), buffered=False)
    response.close()
    [entry] = entries(app)
    assert entry.outcome == "cancelled" and app.extensions["copilot.admission"].in_use == 0


def test_a_failing_generation_is_audited_as_an_error(app, client, auth, fake_engine):
    fake_engine.fail_after = 2
    response = client.post(GENERATE, json={"prompt": "hi"}, headers=auth("clinician"))
    assert b"event: error" in response.data
    [entry] = entries(app)
    assert entry.outcome == "error" and "scripted failure" in entry.detail


def test_an_unexpected_exception_is_a_json_500_and_is_audited(app, client, auth, monkeypatch):
    from copilot.web import state

    def broken(record):
        raise RuntimeError("/secret/path/inside the server")

    with app.app_context():
        monkeypatch.setattr(state.qc_runner(), "check", broken)
    response = client.post("/api/qc", json=make_record(NOTE), headers=auth("clinician"))
    assert response.status_code == 500 and "incident" in response.get_json()["error"]
    assert b"/secret/path" not in response.data and b"Traceback" not in response.data
    [entry] = entries(app)
    assert (entry.action, entry.outcome) == ("qc", "error")


def test_no_answer_goes_out_when_its_entry_cannot_be_written(app, client, auth, monkeypatch):
    log = app.extensions["copilot.audit"]

    def full(**values):
        raise sqlite3.OperationalError("database or disk is full")

    monkeypatch.setattr(log, "append", full)
    response = client.post("/api/qc", json=make_record(NOTE), headers=auth("clinician"))
    assert response.status_code == 503 and "audit log" in response.get_json()["error"]
    assert b"findings" not in response.data and response.headers["Retry-After"]
    streamed = client.post(GENERATE, json={"prompt": "hi"}, headers=auth("clinician"))
    assert streamed.status_code == 200 and b"event: done" not in streamed.data and b"withheld" in streamed.data
    monkeypatch.undo()
    assert client.post("/api/qc", json=make_record(NOTE), headers=auth("clinician")).status_code == 200
    assert [e.outcome for e in log.entries()] == ["success"] and log.verify().ok
