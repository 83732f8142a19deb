"""FHIR export: every entry becomes a valid R4 AuditEvent that carries what the entry says."""

from __future__ import annotations

import io
import json
from datetime import datetime

import pytest
from fhir.resources.R4B.auditevent import AuditEvent
from fhir.resources.R4B.bundle import Bundle

from copilot.audit import AuditLog, hash_payload
from copilot.audit.fhir import CHAIN_EXTENSION, MODEL_SYSTEM, SNAPSHOT_SYSTEM, audit_event, write_bundle, write_ndjson


@pytest.fixture
def log(tmp_path) -> AuditLog:
    audit = AuditLog.for_home(tmp_path)
    audit.append(user="dr.lee", role="clinician", action="draft", patient_ref="Patient/123",
                 model_id="smollm2-135m-instruct", model_version="int8-2026.4", knowledge_snapshot="kb-1a2b3c",
                 input_hash=hash_payload({"note": "x"}), output_hash=hash_payload("y"),
                 sources=["drug.warfarin", "interaction.warfarin-nsaid"], tokens=321, latency_ms=812.5)
    audit.append(user="nurse.kim", role="nurse", action="draft", patient_ref="Patient/456", outcome="denied",
                 detail="role nurse may not draft notes")
    audit.append(user="admin", role="admin", action="audit.read", outcome="success")
    audit.append(user="dr.lee", role="clinician", action="qc", patient_ref="Encounter/e-9", model_id="m",
                 outcome="error", detail="EngineError")
    return audit


def by_name(event: dict, name: str) -> dict:
    return next(entity for entity in event.get("entity", []) if entity.get("name") == name)


def details(entity: dict) -> dict[str, list[str]]:
    out: dict[str, list[str]] = {}
    for detail in entity.get("detail", []):
        out.setdefault(detail["type"], []).append(detail["valueString"])
    return out


def test_ndjson_events_validate_and_carry_the_entry(log):
    out = io.StringIO()
    assert write_ndjson(log.entries(), out, observer="Clinical Copilot, Ward 5 server") == 4
    lines = out.getvalue().splitlines()
    assert len(lines) == 4
    events = [json.loads(line) for line in lines]
    for line in lines:
        AuditEvent.model_validate_json(line)
    entries = list(log.entries())

    first, entry = events[0], entries[0]
    assert first["resourceType"] == "AuditEvent"
    assert first["type"]["code"] == "110110" and first["type"]["system"].endswith("DCM")
    assert first["subtype"][0]["code"] == "draft" and first["action"] == "E"
    assert datetime.fromisoformat(first["recorded"].replace("Z", "+00:00")) == datetime.fromisoformat(entry.timestamp)
    assert first["outcome"] == "0"
    agent = first["agent"][0]
    assert agent["who"]["display"] == "dr.lee" and agent["role"][0]["text"] == "clinician"
    assert agent["requestor"] is True
    assert first["source"]["observer"]["display"] == "Clinical Copilot, Ward 5 server"
    patient = next(e for e in first["entity"] if e.get("what", {}).get("reference"))
    assert patient["what"]["reference"] == "Patient/123" and patient["role"]["code"] == "1"
    model = by_name(first, "model")
    assert model["what"]["identifier"] == {"system": MODEL_SYSTEM, "value": "smollm2-135m-instruct"}
    assert details(model) == {"model_version": ["int8-2026.4"]}
    knowledge = by_name(first, "knowledge")
    assert knowledge["what"]["identifier"] == {"system": SNAPSHOT_SYSTEM, "value": "kb-1a2b3c"}
    assert details(knowledge) == {"source": ["drug.warfarin", "interaction.warfarin-nsaid"]}
    assert details(by_name(first, "request")) == {"input_hash": [entry.input_hash], "output_hash": [entry.output_hash],
                                                  "tokens": ["321"], "latency_ms": ["812.5"]}
    chain = {ext["url"]: ext for ext in next(e for e in first["extension"] if e["url"] == CHAIN_EXTENSION)["extension"]}
    assert chain["seq"]["valueInteger"] == 1 and chain["hash"]["valueString"] == entry.hash
    assert chain["prevHash"]["valueString"] == entry.prev_hash

    denied, audit_read, failed = events[1:]
    assert denied["outcome"] == "4" and denied["outcomeDesc"] == "role nurse may not draft notes"
    assert audit_read["action"] == "R" and audit_read["type"]["code"] == "110112"
    assert all(e.get("what", {}).get("reference") is None for e in audit_read.get("entity", []))
    assert failed["outcome"] == "8" and failed["entity"][0]["what"]["reference"] == "Encounter/e-9"
    assert len({e["id"] for e in events}) == 4


def test_event_ids_are_stable(log):
    entry = next(log.entries())
    assert audit_event(entry)["id"] == audit_event(entry)["id"]


def test_bundle_is_a_valid_collection(log):
    out = io.StringIO()
    assert write_bundle(log.entries(after_seq=1), out) == 3
    data = json.loads(out.getvalue())
    bundle = Bundle.model_validate(data)
    assert bundle.type == "collection" and len(bundle.entry) == 3
    assert [e["resource"]["extension"][0]["extension"][0]["valueInteger"] for e in data["entry"]] == [2, 3, 4]
    assert all(e["fullUrl"] == f"urn:uuid:{e['resource']['id']}" for e in data["entry"])
