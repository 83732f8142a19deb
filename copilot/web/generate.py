"""Text generation over HTTP, streamed as Server-Sent Events.

Events: ``token`` ({"text"}), then ``done`` ({"finish_reason", "metrics", "text"}) or
``error`` ({"error"}). A client that disconnects cancels its generation. Every call is audited
once (success, invalid, error, cancelled); a full generation budget answers 503 at once.
"""

from __future__ import annotations

import contextlib
import json
from dataclasses import fields

from flask import Blueprint, Response, jsonify, stream_with_context

from copilot.engine.errors import EngineBusy, EngineError, InvalidRequest
from copilot.engine.generation import GenerationRequest, GenerationResult
from copilot.web import admission, state
from copilot.web.auditing import AuditUnavailable, DeferredAudit, audited
from copilot.web.auth import require_role
from copilot.web.body import InputError, json_object

bp = Blueprint("generate", __name__, url_prefix="/api")

_FIELDS = {f.name for f in fields(GenerationRequest)}
NO_STORE = {"Cache-Control": "no-store", "X-Accel-Buffering": "no"}  # streams carry patient data


def sse(event: str, data: dict) -> str:
    return f"event: {event}\ndata: {json.dumps(data, ensure_ascii=False)}\n\n"


def parse_request(body: dict) -> tuple[GenerationRequest, bool]:
    unknown = set(body) - _FIELDS - {"stream"}
    if unknown:
        raise InvalidRequest(f"unknown fields: {', '.join(sorted(unknown))}")
    body = dict(body)
    stream = body.pop("stream", True)
    if not isinstance(stream, bool):
        raise InvalidRequest("'stream' must be true or false")
    generation = GenerationRequest(**body)
    generation.validate()
    return generation, stream


@bp.post("/generate")
@require_role("clinician", "admin")
@audited("generate")
def generate():
    engine = state.engine()
    if engine is None:
        return jsonify(error=state.engine_error()), 503
    try:
        generation, stream = parse_request(json_object())
    except InputError as exc:
        return jsonify(error=str(exc)), exc.status
    except InvalidRequest as exc:
        return jsonify(error=str(exc)), 400
    slot = admission.enter()
    if slot is None:
        return admission.busy()
    try:
        items = engine.stream(generation)
        first = next(items)  # raises EngineBusy before any byte is sent
    except EngineBusy as exc:
        slot.release()
        return admission.busy(str(exc))
    except EngineError as exc:
        slot.release()
        return jsonify(error=str(exc)), 500
    audit = DeferredAudit("generate")

    def audited_result(result: GenerationResult | None, outcome: str, detail: str | None = None):
        audit(outcome, detail, outputs={"text": result.text} if result else None,
              tokens=result.metrics.generated_tokens if result else None,
              latency_ms=round(result.metrics.total_s * 1000, 1) if result else None)

    if not stream:
        try:
            result = first if isinstance(first, GenerationResult) else next(
                item for item in items if isinstance(item, GenerationResult))
        except EngineError as exc:
            audited_result(None, "error", str(exc))
            return jsonify(error=str(exc)), 500
        finally:
            items.close()
            slot.release()
        audited_result(result, "success")
        return jsonify(text=result.text, finish_reason=result.finish_reason, metrics=result.metrics.as_dict())

    def events():
        result, outcome, detail = None, "cancelled", None
        try:
            for item in _chain(first, items):
                if isinstance(item, GenerationResult):
                    result, outcome = item, "success"
                    audited_result(item, outcome)  # before "done": no answer ends without its entry
                    yield sse("done", {"text": item.text, "finish_reason": item.finish_reason,
                                       "metrics": item.metrics.as_dict()})
                else:
                    yield sse("token", {"text": item})
        except EngineError as exc:
            outcome, detail = "error", str(exc)
            yield sse("error", {"error": str(exc)})
        except AuditUnavailable:
            yield sse("error", {"error": "the audit log cannot be written; the answer is withheld"})
        finally:
            items.close()
            with contextlib.suppress(AuditUnavailable):  # logged; the stream is over either way
                audited_result(result, outcome, detail)
            slot.release()

    response = Response(stream_with_context(events()), mimetype="text/event-stream", headers=NO_STORE)
    response.call_on_close(audit.closed)
    response.call_on_close(slot.release)
    return response


def _chain(first, rest):
    yield first
    yield from rest
