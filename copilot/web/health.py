"""Liveness and readiness for IT monitoring; reveals no patient data."""

from __future__ import annotations

import json
from pathlib import Path

from flask import Blueprint, jsonify

from copilot import __version__
from copilot.engine.prepare import MANIFEST
from copilot.web import state

bp = Blueprint("health", __name__)


@bp.get("/health")
def health():
    engine = state.engine()
    body = {"status": "ok" if engine is not None else "degraded", "version": __version__}
    if engine is None:
        body["error"] = state.engine_error()
        return jsonify(body), 503
    manifest_file = Path(engine.model_dir) / MANIFEST
    manifest = json.loads(manifest_file.read_text()) if manifest_file.is_file() else {}
    body["model"] = {
        "name": manifest.get("name", Path(engine.model_dir).parent.name),
        "weight_format": manifest.get("weight_format"),
        "device": engine.device,
        "prompt_lookup": engine.prompt_lookup,
    }
    body["queue_depth"] = engine.queue_depth
    return jsonify(body)
