"""The audit log over HTTP, for admins only: entries (no patient text is in them) and a verify."""

from __future__ import annotations

from flask import Blueprint, jsonify, request

from copilot.web import state
from copilot.web.auth import require_role

bp = Blueprint("audit_api", __name__, url_prefix="/api/audit")


@bp.get("")
@require_role("admin")
def entries():
    try:
        after = int(request.args.get("after", 0))
        limit = min(int(request.args.get("limit", 100)), 1000)
    except ValueError:
        return jsonify(error="'after' and 'limit' must be integers"), 400
    rows = [e.to_dict() for e in state.audit_log().entries(after_seq=after, limit=limit)]
    return jsonify(entries=rows, next_after=rows[-1]["seq"] if rows else after)


@bp.get("/verify")
@require_role("admin")
def verify():
    result = state.audit_log().verify()
    return jsonify(ok=result.ok, count=result.count, first_bad=result.first_bad, reason=result.reason), (200 if result.ok else 409)
