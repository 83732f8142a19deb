"""`copilot finetune reviews`: the QC office's reviewed findings, exported through the de-identification gate."""

from __future__ import annotations

import json

import pytest


@pytest.fixture(scope="module")
def scrubber():
    from finetune.deid import Scrubber

    return Scrubber()


def test_reviews_are_exported_pseudonymous_and_scrubbed(tmp_path, monkeypatch, scrubber):
    from copilot.config import Settings
    from copilot.db import open_database
    from copilot.qc.office.store import Filters, OfficeStore, Viewer
    from finetune.reviews import export_reviews

    monkeypatch.setenv("COPILOT_HOME", str(tmp_path))
    settings = Settings()
    store = OfficeStore(open_database(settings.database))
    text = "Mr. John Smith was seen on 03/14/2026 and started on lisinopril 10 mg qd."
    at = text.index(" qd") + 1
    evidence = {"document_id": "d1", "start": at, "end": at + 2, "text": "qd",
                "context": {"before": text[:at], "after": text[at + 2:]}}
    reviewer = Viewer("qc", "qc_staff")
    for n in range(2):
        store.ingest({"id": f"MRN-0042{n}", "encounter": {"type": "inpatient", "department": "心内科",
                                                          "attending": "dr.wang"}, "documents": []},
                     [{"rule_id": "documentation.do_not_use", "category": "documentation", "severity": "major",
                       "message": '"qd" is on the Do Not Use list', "evidence": evidence, "knowledge": [{"id": "abbr.qd"}]}],
                     level="terminal", source="api")
    rows = store.page(reviewer, Filters()).rows
    store.act(rows[0]["id"], "dismiss", reviewer, reason="Dr. Wang Li says qd is our house style")
    store.act(rows[1]["id"], "confirm", reviewer)

    report = export_reviews(settings, tmp_path / "reviews.jsonl", scrubber=scrubber)
    assert (report["written"], report["confirmed"], report["dismissed"], report["refused"]) == (2, 1, 1, 0)
    raw = (tmp_path / "reviews.jsonl").read_text(encoding="utf-8")
    for secret in ("John Smith", "MRN-0042", "03/14/2026", "心内科", "dr.wang", "Wang Li"):
        assert secret not in raw, secret
    examples = [json.loads(line) for line in raw.splitlines()]
    assert {e["label"] for e in examples} == {"confirmed", "dismissed"}
    dismissed = next(e for e in examples if e["label"] == "dismissed")
    assert dismissed["record"].startswith("record-") and "house style" in dismissed["reason"]
    assert dismissed["evidence_text"] == "qd" and "lisinopril 10 mg" in dismissed["evidence_before"]
    assert dismissed["knowledge"] == ["abbr.qd"] and "found_at" not in dismissed


def test_the_record_gate_drops_the_office_fields_it_cannot_de_identify(scrubber):
    from finetune.gate import Gate

    chart = {"id": "chart-9", "as_of": "2026-11-30T18:00:00+08:00",
             "encounter": {"type": "inpatient", "admitted_at": "2026-11-30T08:00:00+08:00", "department": "心内科",
                           "attending": "dr.wang"},
             "documents": [{"id": "d1", "type": "admission_note", "text": "主诉：胸痛2小时。"}],
             "medications": [{"name": "aspirin", "started_at": "2026-11-30T08:20:00+08:00", "at_discharge": True}],
             "procedures": [{"name": "PCI", "performed_at": "2026-11-30T09:00:00+08:00"}],
             "observations": [{"name": "LVEF", "value": 35}]}
    clean = Gate(scrubber).record(chart, "chart.json")
    assert not {"as_of", "procedures", "observations"} & set(clean)
    assert not {"department", "attending"} & set(clean["encounter"])
    assert "started_at" not in clean["medications"][0] and clean["encounter"]["admitted_at"] != "2026-11-30T08:00:00+08:00"
