"""One audit entry per request that reaches a patient-data endpoint, whatever its outcome: who,
what, which patient, which model and knowledge, and hashes of what went in and came out (never
the text itself).

Views that touch patient data carry ``@audited(action)``. A view records its own entry with
``record`` when it knows more (the patient, the sources it cited); whatever it did not record,
``ensure_audited`` (an after-request hook) records from the response: invalid input (4xx),
refusals and failures (5xx, including an exception that escaped the view). A streamed response
is audited by its ``DeferredAudit`` exactly once, when the stream ends, fails or is dropped by
the client. If the log cannot be written, the request fails (503) rather than answering
without its entry.
"""

from __future__ import annotations

import hashlib
import logging
import re
import sqlite3
import threading
from functools import wraps

from flask import current_app, g, jsonify, request

from copilot.audit import hash_payload
from copilot.audit.log import PATIENT_REF_RE
from copilot.web import state

log = logging.getLogger(__name__)
_ID_UNSAFE = re.compile(r"[^A-Za-z0-9_.:/@+\-]")
_FHIR_ID_UNSAFE = re.compile(r"[^A-Za-z0-9\-.]")


class AuditUnavailable(RuntimeError):
    """The audit log cannot be written now (disk full, database locked too long): the request
    that needed the entry is refused with 503."""


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


def _default_detail() -> str:
    return f"{request.method} {request.path}"


def _append(user, detail: str, action: str, *, patient_ref=None, inputs=None, outputs=None, sources=(),
            tokens=None, latency_ms=None, outcome="success"):
    """Write one entry (in an app context); AuditUnavailable when the log cannot take it."""
    model = state.model_info()
    try:
        snapshot_id = state.snapshot().id
    except Exception:  # no knowledge built yet: still audit the call
        snapshot_id = None
    try:
        return state.audit_log().append(
            user=user.name if user else "anonymous", role=user.role if user else "none",
            action=_clean_id(action), patient_ref=patient_ref, model_id=_clean_id(model["id"]),
            model_version=_clean_id(model["version"]), knowledge_snapshot=_clean_id(snapshot_id),
            input_hash=hash_payload(inputs) if inputs is not None else None,
            output_hash=hash_payload(outputs) if outputs is not None else None,
            sources=sorted(set(sources)), tokens=tokens, latency_ms=latency_ms, outcome=outcome,
            detail=" ".join(detail.split())[:300] or None)
    except (sqlite3.Error, OSError) as exc:
        log.error("audit entry for %s (%s) could not be written: %s", action, outcome, exc)
        raise AuditUnavailable(f"the audit log cannot be written: {exc}") from exc


def record(action: str, *, patient_ref: str | None = None, inputs=None, outputs=None, sources=(),
           tokens: int | None = None, latency_ms: float | None = None, outcome: str = "success",
           detail: str | None = None):
    """The entry of the current request."""
    entry = _append(g.get("user"), detail or _default_detail(), action, patient_ref=patient_ref, inputs=inputs,
                    outputs=outputs, sources=sources, tokens=tokens, latency_ms=latency_ms, outcome=outcome)
    g.audit_entries = g.get("audit_entries", 0) + 1
    return entry


def audited(action: str):
    """Mark a view as touching patient data: its request gets exactly one entry, ``action``."""
    def decorate(view):
        @wraps(view)
        def wrapped(*args, **kwargs):
            g.audit_action = action
            return view(*args, **kwargs)
        return wrapped
    return decorate


def outcome_of(status: int) -> str:
    if status < 400:
        return "success"
    if status == 403:
        return "denied"
    return "invalid" if status < 500 else "error"


def ensure_audited(response):
    """After-request hook: the entry a marked view did not write itself."""
    action = g.get("audit_action")
    if action is None or g.get("audit_entries") or g.get("audit_stream") is not None:
        return response
    try:
        record(action, inputs=g.get("request_body"), outcome=outcome_of(response.status_code),
               detail=f"{_default_detail()}: {response.status_code}"
                      + (f" {g.audit_reason}" if g.get("audit_reason") else ""))
    except AuditUnavailable:
        if response.status_code < 400:  # never answer with patient data that has no entry
            return unavailable_response()
    return response


def unavailable_response():
    return jsonify(error="the audit log cannot be written right now, so the request was not completed; "
                         "try again shortly (the administrator has been told in the server log)"), 503, \
        {"Retry-After": "30"}


class DeferredAudit:
    """Exactly one entry for a request whose outcome is known later, such as a streamed response,
    however it ends: completed, failed, or closed by a client that went away (even before the
    first byte). ``fixed`` values (the patient) go into the entry; the body sent is hashed."""

    def __init__(self, action: str, **fixed):
        self.action, self.fixed = action, {"inputs": g.get("request_body"), **fixed}
        self._app = current_app._get_current_object()
        self._user = g.get("user")
        self._detail = _default_detail()
        self._lock = threading.Lock()
        self.entry = None
        self.written = False
        g.audit_stream = self

    def __call__(self, outcome: str, detail: str | None = None, **values):
        """Write the entry (the first call only); returns it, or None if already written."""
        with self._lock:
            if self.written:
                return None
            self.written = True
        with self._app.app_context():
            self.entry = _append(self._user, detail or self._detail, self.action, outcome=outcome,
                                 **{**self.fixed, **values})
        return self.entry

    def closed(self) -> None:
        """For ``Response.call_on_close``: a stream that ended without an entry was cancelled."""
        try:
            self("cancelled", detail=f"{self._detail}: the client went away")
        except AuditUnavailable:
            pass  # logged by _append
