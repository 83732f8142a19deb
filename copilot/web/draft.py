"""POST /api/draft: a grounded note, streamed section by section as Server-Sent Events.

Events: start, section_start, token, section_end, done (note, unsupported spans, citations,
metrics, audit_seq) or error. A client that disconnects cancels the generation; the draft is
audited once either way (outcome success, cancelled, invalid or error). A draft holds one of the
generation slots (copilot.web.admission) while it streams; beyond them callers get 503 at once.
"""

from __future__ import annotations

import contextlib
import threading
import time

from flask import Blueprint, Response, jsonify, stream_with_context

from copilot.drafting.draft import DraftError, DraftRequest, Drafter, note_types
from copilot.engine.errors import EngineBusy, EngineError
from copilot.records.loaders import RecordError, record_from_json
from copilot.web import admission, state
from copilot.web.auditing import AuditUnavailable, DeferredAudit, audited, record_reference, valid_patient_ref
from copilot.web.auth import require_role
from copilot.web.body import InputError, json_object
from copilot.web.generate import NO_STORE, sse
from copilot.web.metrics import observe_generation

bp = Blueprint("draft", __name__, url_prefix="/api/draft")

FIELDS = {"transcript", "record", "note_type", "sections", "patient_ref", "max_new_tokens"}
MAX_TRANSCRIPT = 200_000


def _drafter() -> Drafter:
    def build():
        try:
            retriever = state.retriever()
        except Exception:  # no index: draft from the patient's material alone
            retriever = None
        return Drafter(state.engine(), state.graph(), retriever)

    return state._lazy("copilot.drafter", build)


def parse(body) -> tuple[DraftRequest, str | None]:
    if not isinstance(body, dict):
        raise DraftError("the body must be a JSON object")
    unknown = set(body) - FIELDS
    if unknown:
        raise DraftError(f"unknown fields: {', '.join(sorted(unknown))}")
    transcript = body.get("transcript")
    if transcript is not None and not isinstance(transcript, str):
        raise DraftError("'transcript' must be a string")
    if transcript and len(transcript) > MAX_TRANSCRIPT:
        raise DraftError(f"'transcript' is longer than {MAX_TRANSCRIPT} characters")
    record = None
    if body.get("record") is not None:
        try:
            record = record_from_json(body["record"], origin="request")
        except RecordError as exc:
            raise DraftError(f"record: {exc}") from None
    sections = body.get("sections")
    if sections is not None and (not isinstance(sections, list) or not all(isinstance(s, str) for s in sections)):
        raise DraftError("'sections' must be a list of section ids")
    max_new = body.get("max_new_tokens")
    if max_new is not None and (not isinstance(max_new, int) or isinstance(max_new, bool) or not 1 <= max_new <= 1024):
        raise DraftError("'max_new_tokens' must be an integer from 1 to 1024")
    patient_ref = body.get("patient_ref")
    if patient_ref is not None and not valid_patient_ref(patient_ref):
        raise DraftError("'patient_ref' must be a FHIR reference such as Patient/123")
    note_type = body.get("note_type", "soap")
    if not isinstance(note_type, str):
        raise DraftError("'note_type' must be a string")
    draft = DraftRequest(transcript=transcript, record=record, note_type=note_type, sections=sections,
                         max_new_tokens=max_new)
    draft.plan()
    if patient_ref is None and record is not None:
        patient_ref = record_reference(record.id)
    return draft, patient_ref


@bp.get("/note-types")
@require_role()
def list_note_types():
    return jsonify({name: {"label": spec["label"], "language": spec.get("language", "en"),
                           "sections": [{"id": s["id"], "title": s["title"]} for s in spec["sections"]]}
                    for name, spec in note_types().items()})


@bp.post("")
@require_role("clinician", "admin")
@audited("draft")
def draft():
    if state.engine() is None:
        return jsonify(error=state.engine_error()), 503
    try:
        draft_request, patient_ref = parse(json_object())
    except InputError as exc:
        return jsonify(error=str(exc)), exc.status
    except DraftError as exc:
        return jsonify(error=str(exc)), 400
    slot = admission.enter()
    if slot is None:
        return admission.busy()
    try:
        if state.engine().queue_full:
            slot.release()
            return admission.busy("the engine queue is full; try again shortly")
        cancel = threading.Event()
        events = _drafter().draft(draft_request, cancel)
        first = next(events)
    except BaseException:
        slot.release()
        raise
    model = state.model_info()
    first[1].update(model=model["id"], knowledge_snapshot=_snapshot_id())
    started = time.monotonic()
    audit = DeferredAudit("draft", patient_ref=patient_ref)

    def stream():
        outcome, detail = "cancelled", None
        try:
            for event, data in _chain([first], events):
                if event == "done":
                    outcome = "success"
                    observe_generation("draft", data["metrics"]["tokens"], data["metrics"]["tokens_per_s"])
                    data["audit_seq"] = _audit(audit, data, outcome, started).seq
                yield sse(event, data)
        except EngineBusy as exc:
            outcome, detail = "error", str(exc)
            yield sse("error", {"error": f"{exc}; the draft stopped, please retry"})
        except EngineError as exc:
            outcome, detail = "error", str(exc)
            yield sse("error", {"error": str(exc)})
        except AuditUnavailable:
            yield sse("error", {"error": "the audit log cannot be written; the note is withheld"})
        finally:
            cancel.set()
            events.close()
            if outcome != "success":
                with contextlib.suppress(AuditUnavailable):  # logged; the stream is over either way
                    _audit(audit, None, outcome, started, detail=detail)
            slot.release()

    response = Response(stream_with_context(stream()), mimetype="text/event-stream", headers=NO_STORE)
    response.call_on_close(audit.closed)
    response.call_on_close(slot.release)
    return response


def _snapshot_id():
    try:
        return state.snapshot().id
    except Exception:
        return None


def _audit(audit: DeferredAudit, done, outcome, started, detail=None):
    sources = [c["id"] for c in done["citations"] if c["kind"] == "knowledge"] if done else []
    outputs = {k: done[k] for k in ("note", "unsupported")} if done else None
    return audit(outcome, detail, outputs=outputs, sources=sources, tokens=done["metrics"]["tokens"] if done else None,
                 latency_ms=round((time.monotonic() - started) * 1000, 1))


def _chain(head, rest):
    yield from head
    yield from rest
