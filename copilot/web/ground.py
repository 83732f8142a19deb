"""POST /api/ground: mark what a draft (from any tool) says that its encounter does not support.

Body: {"source": transcript, "draft": text, "record"?: project JSON record or FHIR Bundle,
"patient_ref"?: "Patient/123"}. Answer: {"unsupported": [{start, end, text, reason, kind}]} with
offsets in characters of the draft. Every outcome is audited (action "ground"); no model runs, so
it never waits behind generation.
"""

from __future__ import annotations

import time

from flask import Blueprint, g, jsonify

from copilot.drafting.grounding import GroundingError, ground
from copilot.records.loaders import RecordError, record_from_json
from copilot.web import state
from copilot.web.auditing import audited, record_reference, valid_patient_ref
from copilot.web.auditing import record as audit
from copilot.web.auth import require_role
from copilot.web.body import InputError, json_object

bp = Blueprint("ground", __name__, url_prefix="/api/ground")
FIELDS = frozenset({"source", "draft", "record", "patient_ref"})


def _elapsed_ms(started: float) -> float:
    return round((time.perf_counter() - started) * 1000, 1)


def _parse(body: dict):
    unknown = set(body) - FIELDS
    if unknown:
        raise GroundingError(f"unknown fields: {', '.join(sorted(unknown))}")
    for field in ("source", "draft"):
        if field in body and not isinstance(body[field], str):
            raise GroundingError(f"'{field}' must be a string")
    if "draft" not in body:
        raise GroundingError("'draft' is required")
    record = None
    if body.get("record") is not None:
        try:
            record = record_from_json(body["record"], origin="request")
        except RecordError as exc:
            raise GroundingError(f"record: {exc}") from None
    patient_ref = body.get("patient_ref")
    if patient_ref is not None and (not isinstance(patient_ref, str) or not valid_patient_ref(patient_ref)):
        raise GroundingError("'patient_ref' must be a FHIR reference such as Patient/123")
    if patient_ref is None and record is not None:
        patient_ref = record_reference(record.id)
    return body.get("source") or "", body["draft"], record, patient_ref


@bp.post("")
@require_role("clinician", "qc_staff", "admin")
@audited("ground")
def check():
    started = time.perf_counter()
    try:
        body = json_object()
        source, draft, record, patient_ref = _parse(body)
        marks = ground(source, draft, record, state.graph())
    except InputError as exc:
        audit("ground", inputs=g.get("request_body"), outcome="invalid", latency_ms=_elapsed_ms(started),
              detail=f"rejected: {exc.status}")
        return jsonify(error=str(exc)), exc.status
    except GroundingError as exc:
        audit("ground", inputs=g.get("request_body"), outcome="invalid", latency_ms=_elapsed_ms(started),
              detail="rejected: invalid input")
        return jsonify(error=str(exc)), 400
    result = {"unsupported": marks}
    audit("ground", patient_ref=patient_ref, inputs=body, outputs=result, latency_ms=_elapsed_ms(started))
    return jsonify(result)
