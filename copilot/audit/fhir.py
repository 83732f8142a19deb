"""Audit entries -> FHIR R4 AuditEvent resources, as NDJSON (the bulk-data format) or a collection Bundle.

Built against fhir.resources' R4B models (AuditEvent is unchanged between R4 and R4B), and every
resource is validated before it is written, so a hospital's SIEM or FHIR server can ingest the
export as it is. Each event carries the entry's seq, hash and prev_hash in an extension, so the
receiver can re-check the chain's order and keep the heads.
"""

from __future__ import annotations

import json
import socket
import uuid
from collections.abc import Iterable, Iterator
from datetime import datetime, timezone
from typing import Any, TextIO

from fhir.resources.R4B.auditevent import AuditEvent
from fhir.resources.R4B.bundle import Bundle

from copilot.audit.log import AuditEntry

DCM = "http://dicom.nema.org/resources/ontology/DCM"
ENTITY_TYPE = "http://terminology.hl7.org/CodeSystem/audit-entity-type"
OBJECT_ROLE = "http://terminology.hl7.org/CodeSystem/object-role"
SOURCE_TYPE = "http://terminology.hl7.org/CodeSystem/security-source-type"
ACTION_SYSTEM = "urn:clinical-copilot:audit-action"
USER_SYSTEM = "urn:clinical-copilot:user"
MODEL_SYSTEM = "urn:clinical-copilot:model"
SNAPSHOT_SYSTEM = "urn:clinical-copilot:knowledge-snapshot"
CHAIN_EXTENSION = "urn:clinical-copilot:fhir:StructureDefinition:audit-chain"
# A fixed namespace makes an entry's resource id stable across exports (same entry, same id).
ID_NAMESPACE = uuid.UUID("6f1c3f0e-4d2a-5b8e-9a51-2c0d7e3b9a10")

# FHIR AuditEvent.action: what the request did to the data. The copilot's requests run a model
# over the record (E); these verbs only read it. Anything else is E.
READ_ACTIONS = frozenset({"read", "view", "search", "list", "export", "audit.read", "audit_read", "audit.export"})
CREATE_ACTIONS = frozenset({"create"})
# AuditEvent.outcome: 0 success; 4 minor failure (refused, like HTTP 4xx); 8 serious failure (HTTP 5xx).
OUTCOME_CODES = {"success": "0", "invalid": "4", "denied": "4", "cancelled": "4", "error": "8"}


def default_observer() -> str:
    return f"Clinical Copilot on {socket.gethostname()}"


def _coding(system: str, code: str, display: str) -> dict[str, str]:
    return {"system": system, "code": code, "display": display}


def _detail(kind: str, value: Any) -> dict[str, str]:
    return {"type": kind, "valueString": str(value)}


def action_code(action: str) -> str:
    if action in READ_ACTIONS:
        return "R"
    return "C" if action in CREATE_ACTIONS else "E"


def audit_event(entry: AuditEntry, observer: str | None = None) -> dict[str, Any]:
    """One entry -> an AuditEvent as JSON-ready dict, validated by fhir.resources (ValueError if invalid)."""
    if entry.patient_ref:
        event_type = _coding(DCM, "110110", "Patient Record")
    else:
        event_type = _coding(DCM, "110112", "Query")
    entities: list[dict[str, Any]] = []
    if entry.patient_ref:
        entities.append({"what": {"reference": entry.patient_ref},
                         "type": _coding(ENTITY_TYPE, "1", "Person"),
                         "role": _coding(OBJECT_ROLE, "1", "Patient")})
    if entry.model_id:
        model = {"what": {"identifier": {"system": MODEL_SYSTEM, "value": entry.model_id},
                          "display": " ".join(filter(None, (entry.model_id, entry.model_version)))},
                 "type": _coding(ENTITY_TYPE, "2", "System Object"), "name": "model"}
        if entry.model_version:
            model["detail"] = [_detail("model_version", entry.model_version)]
        entities.append(model)
    if entry.knowledge_snapshot or entry.sources:
        knowledge: dict[str, Any] = {"type": _coding(ENTITY_TYPE, "2", "System Object"), "name": "knowledge"}
        if entry.knowledge_snapshot:
            knowledge["what"] = {"identifier": {"system": SNAPSHOT_SYSTEM, "value": entry.knowledge_snapshot},
                                 "display": f"knowledge snapshot {entry.knowledge_snapshot}"}
        if entry.sources:
            knowledge["detail"] = [_detail("source", source) for source in entry.sources]
        entities.append(knowledge)
    exchange = [_detail(kind, value) for kind, value in (
        ("input_hash", entry.input_hash), ("output_hash", entry.output_hash), ("tokens", entry.tokens),
        ("latency_ms", entry.latency_ms)) if value is not None]
    if exchange:
        entities.append({"type": _coding(ENTITY_TYPE, "2", "System Object"), "name": "request",
                         "description": "hashes of the request and response (no clinical text), tokens, latency",
                         "detail": exchange})
    event: dict[str, Any] = {
        "resourceType": "AuditEvent",
        "id": str(uuid.uuid5(ID_NAMESPACE, entry.hash)),
        "extension": [{"url": CHAIN_EXTENSION, "extension": [
            {"url": "seq", "valueInteger": entry.seq},
            {"url": "hash", "valueString": entry.hash},
            {"url": "prevHash", "valueString": entry.prev_hash}]}],
        "type": event_type,
        "subtype": [_coding(ACTION_SYSTEM, entry.action, entry.action)],
        "action": action_code(entry.action),
        "recorded": entry.timestamp,
        "outcome": OUTCOME_CODES[entry.outcome],
        "agent": [{"who": {"identifier": {"system": USER_SYSTEM, "value": entry.user}, "display": entry.user},
                   "altId": entry.user,
                   "role": [{"text": entry.role}],
                   "requestor": True}],
        "source": {"observer": {"display": observer or default_observer()},
                   "type": [_coding(SOURCE_TYPE, "4", "Application Server")]},
    }
    if entry.detail:
        event["outcomeDesc"] = entry.detail
    if entities:
        event["entity"] = entities
    AuditEvent.model_validate(event)  # the dict written is the one validated (re-serializing the model costs 2x)
    return event


def audit_events(entries: Iterable[AuditEntry], observer: str | None = None) -> Iterator[dict[str, Any]]:
    observer = observer or default_observer()
    for entry in entries:
        yield audit_event(entry, observer)


def write_ndjson(entries: Iterable[AuditEntry], out: TextIO, observer: str | None = None) -> int:
    """One AuditEvent per line; returns how many were written."""
    count = 0
    for event in audit_events(entries, observer):
        out.write(json.dumps(event, ensure_ascii=False, separators=(",", ":")) + "\n")
        count += 1
    return count


def bundle(entries: Iterable[AuditEntry], observer: str | None = None) -> dict[str, Any]:
    """A collection Bundle of AuditEvents, validated as a whole."""
    events = list(audit_events(entries, observer))
    data = {
        "resourceType": "Bundle",
        "type": "collection",
        "timestamp": datetime.now(timezone.utc).isoformat(timespec="seconds"),
        "entry": [{"fullUrl": f"urn:uuid:{event['id']}", "resource": event} for event in events],
    }
    Bundle.model_validate(data)
    return data


def write_bundle(entries: Iterable[AuditEntry], out: TextIO, observer: str | None = None) -> int:
    data = bundle(entries, observer)
    json.dump(data, out, ensure_ascii=False, indent=1)
    out.write("\n")
    return len(data["entry"])
