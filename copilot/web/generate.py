"""Text generation over HTTP, streamed as Server-Sent Events.

Events: ``token`` ({"text"}), then ``done`` ({"finish_reason", "metrics", "text"}) or
``error`` ({"error"}). A client that disconnects cancels its generation.
"""

from __future__ import annotations

import json
from dataclasses import fields

from flask import Blueprint, Response, jsonify, request, stream_with_context

from copilot.engine.errors import EngineBusy, EngineError, InvalidRequest
from copilot.engine.generation import GenerationRequest, GenerationResult
from copilot.web import state
from copilot.web.auditing import record as audit
from copilot.web.auth import require_role

bp = Blueprint("generate", __name__, url_prefix="/api")

_FIELDS = {f.name for f in fields(GenerationRequest)}


def sse(event: str, data: dict) -> str:
    return f"event: {event}\ndata: {json.dumps(data, ensure_ascii=False)}\n\n"


def parse_request() -> tuple[GenerationRequest, bool]:
    body = request.get_json(silent=True)
    if not isinstance(body, dict):
        raise InvalidRequest("the body must be a JSON object")
    unknown = set(body) - _FIELDS - {"stream"}
    if unknown:
        raise InvalidRequest(f"unknown fields: {', '.join(sorted(unknown))}")
    stream = body.pop("stream", True)
    generation = GenerationRequest(**body)
    generation.validate()
    return generation, bool(stream)


@bp.post("/generate")
@require_role("clinician", "admin")
def generate():
    engine = state.engine()
    if engine is None:
        return jsonify(error=state.engine_error()), 503
    body = request.get_json(silent=True)
    try:
        generation, stream = parse_request()
        items = engine.stream(generation)
        first = next(items)  # raises EngineBusy before any byte is sent
    except InvalidRequest as exc:
        return jsonify(error=str(exc)), 400
    except EngineBusy as exc:
        return jsonify(error=str(exc)), 503, {"Retry-After": "5"}

    def audited(result: GenerationResult | None, outcome: str, detail: str | None = None):
        audit("generate", inputs=body, outputs={"text": result.text} if result else None,
              tokens=result.metrics.generated_tokens if result else None,
              latency_ms=round(result.metrics.total_s * 1000, 1) if result else None, outcome=outcome, detail=detail)

    if not stream:
        result = first if isinstance(first, GenerationResult) else None
        if result is None:
            try:
                result = next(item for item in items if isinstance(item, GenerationResult))
            except EngineError as exc:
                audited(None, "error", str(exc))
                return jsonify(error=str(exc)), 500
        audited(result, "success")
        return jsonify(text=result.text, finish_reason=result.finish_reason, metrics=result.metrics.as_dict())

    def events():
        result, outcome, detail = None, "cancelled", None
        try:
            for item in _chain(first, items):
                if isinstance(item, GenerationResult):
                    result, outcome = item, "success"
                    yield sse("done", {"text": item.text, "finish_reason": item.finish_reason,
                                       "metrics": item.metrics.as_dict()})
                else:
                    yield sse("token", {"text": item})
        except EngineError as exc:
            outcome, detail = "error", str(exc)
            yield sse("error", {"error": str(exc)})
        finally:
            items.close()
            audited(result, outcome, detail)

    return Response(stream_with_context(events()), mimetype="text/event-stream",
                    headers={"Cache-Control": "no-cache", "X-Accel-Buffering": "no"})


def _chain(first, rest):
    yield first
    yield from rest
