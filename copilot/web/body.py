"""Request bodies, read the same way by every API: content type, size, charset, strict JSON.

Every JSON body (QC, drafting, generation, CDS Hooks, and any API added later) is parsed here,
once, by copilot.strict_json: RFC 8259 only, nested at most MAX_DEPTH levels, no NaN or
unpaired surrogates. Bad input becomes an InputError with the HTTP status to answer and a
message that names the problem; nothing a client sends can raise anything else. The raw
bytes are kept on ``g`` so the audit entry of a refused request still hashes what was sent.
"""

from __future__ import annotations

from flask import g, request

from copilot import strict_json

JSON_TYPES = frozenset({"application/json", "application/fhir+json"})


class InputError(ValueError):
    """The request body cannot be used; ``status`` is the HTTP answer (400, 413 or 415)."""

    def __init__(self, message: str, status: int = 400):
        super().__init__(message)
        self.status = status


def raw_body(max_bytes: int | None = None) -> bytes:
    """The body's bytes, read once (413 above the route's limit: werkzeug raises it while reading)."""
    if max_bytes is not None:
        request.max_content_length = max_bytes
    raw = request.get_data(cache=False)
    g.request_body = raw
    return raw


def decode(raw: bytes, charset: str | None) -> str:
    encoding = charset or "utf-8"
    try:
        return raw.decode("utf-8-sig" if encoding.lower().replace("_", "-") == "utf-8" else encoding)
    except LookupError:
        raise InputError(f"unknown charset {charset!r}") from None
    except UnicodeDecodeError as exc:
        raise InputError(f"the body is not valid {encoding} text (byte {exc.start})") from None


def parse_json(raw: bytes, charset: str | None = None) -> object:
    """Strict JSON with an error that names the problem and where it is."""
    if not raw.strip():
        raise InputError("the body is empty; send a JSON object")
    try:
        return strict_json.loads(decode(raw, charset))
    except strict_json.JSONError as exc:
        raise InputError(str(exc)) from None


def json_object(types: frozenset[str] = JSON_TYPES, max_bytes: int | None = None) -> dict:
    """The body as a JSON object: 415 for another content type, 400 for anything but an object."""
    if request.mimetype not in types:
        raise InputError(f"unsupported content type {request.mimetype or '(none)'!r}; send application/json", 415)
    data = parse_json(raw_body(max_bytes), request.mimetype_params.get("charset"))
    if not isinstance(data, dict):
        raise InputError(f"the body must be a JSON object, not a JSON {type(data).__name__}")
    return data
