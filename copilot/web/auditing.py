"""One call per request that touches patient data: who, what, which patient, which model and
knowledge, and hashes of what went in and came out (never the text itself)."""

from __future__ import annotations

import hashlib
import re

from flask import g, request

from copilot.audit import hash_payload
from copilot.audit.log import PATIENT_REF_RE
from copilot.web import state

_ID_UNSAFE = re.compile(r"[^A-Za-z0-9_.:/@+\-]")
_FHIR_ID_UNSAFE = re.compile(r"[^A-Za-z0-9\-.]")


def valid_patient_ref(ref: str) -> bool:
    return isinstance(ref, str) and bool(PATIENT_REF_RE.match(ref))


def record_reference(record_id: str) -> str:
    """An audit reference for a record that came without a patient reference: its id where that
    is a valid FHIR id, else a stable digest of it (record ids are not for the log to interpret)."""
    if record_id and len(record_id) <= 64 and not _FHIR_ID_UNSAFE.search(record_id):
        return f"Record/{record_id}"
    return "Record/sha256-" + hashlib.sha256(record_id.encode("utf-8")).hexdigest()[:32]


def _clean_id(value):
    return _ID_UNSAFE.sub("_", str(value))[:200] if value is not None else None


def record(action: str, *, patient_ref: str | None = None, inputs=None, outputs=None, sources=(),
           tokens: int | None = None, latency_ms: float | None = None, outcome: str = "success",
           detail: str | None = None):
    user = g.get("user")
    model = state.model_info()
    try:
        snapshot_id = state.snapshot().id
    except Exception:  # no knowledge built yet: still audit the call
        snapshot_id = None
    return state.audit_log().append(
        user=user.name if user else "anonymous", role=user.role if user else "none",
        action=_clean_id(action), patient_ref=patient_ref, model_id=_clean_id(model["id"]),
        model_version=_clean_id(model["version"]), knowledge_snapshot=_clean_id(snapshot_id),
        input_hash=hash_payload(inputs) if inputs is not None else None,
        output_hash=hash_payload(outputs) if outputs is not None else None,
        sources=sorted(set(sources)), tokens=tokens, latency_ms=latency_ms, outcome=outcome,
        detail=" ".join((detail or f"{request.method} {request.path}").split())[:300] or None)
