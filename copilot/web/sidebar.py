"""The EMR sidebar: one page (embeddable in the EHR's iframe) and the sample encounters it offers.

The page is static markup plus ``static/sidebar.js``; everything patient-related goes through
the JSON/SSE APIs, so the page itself carries no patient data and needs no audit entry.
Samples are public, role-played ACI-Bench encounters (see ``samples/SOURCES.md``).
"""

from __future__ import annotations

import json
import re
from functools import lru_cache
from pathlib import Path

from flask import Blueprint, g, jsonify, redirect, render_template, url_for

from copilot.web.auth import require_role

bp = Blueprint("sidebar", __name__)

SAMPLES_DIR = Path(__file__).with_name("samples")
_SAMPLE_ID = re.compile(r"^[a-z0-9][a-z0-9-]{0,63}$")
_REQUIRED = {"id": str, "title": str, "transcript": str, "note_type": str}


class SampleError(ValueError):
    pass


@lru_cache(maxsize=4)
def load_samples(folder: Path = SAMPLES_DIR) -> dict[str, dict]:
    """Every sample in ``folder``, by id, checked once: a malformed shipped file is a packaging
    error and should fail loudly, not show up as a half-empty form."""
    samples: dict[str, dict] = {}
    for path in sorted(Path(folder).glob("*.json")):
        try:
            data = json.loads(path.read_text(encoding="utf-8"))
        except (OSError, json.JSONDecodeError) as exc:
            raise SampleError(f"{path.name}: {exc}") from None
        if not isinstance(data, dict):
            raise SampleError(f"{path.name}: a sample is a JSON object")
        for key, kind in _REQUIRED.items():
            if not isinstance(data.get(key), kind) or not data[key].strip():
                raise SampleError(f"{path.name}: {key!r} must be a non-empty string")
        if not _SAMPLE_ID.match(data["id"]):
            raise SampleError(f"{path.name}: id {data['id']!r} must be lower-case letters, digits and '-'")
        if "record" in data and not isinstance(data["record"], dict):
            raise SampleError(f"{path.name}: 'record' must be a project JSON record (an object)")
        if data["id"] in samples:
            raise SampleError(f"{path.name}: duplicate sample id {data['id']!r}")
        samples[data["id"]] = data
    return samples


@bp.get("/")
def index():
    return redirect(url_for("sidebar.page"))


@bp.get("/sidebar")
@require_role()
def page():
    return render_template("sidebar.html", user=g.user)


@bp.get("/api/samples")
@require_role()
def samples():
    return jsonify(samples=[{"id": s["id"], "title": s["title"], "note_type": s["note_type"],
                             "has_record": "record" in s} for s in load_samples().values()])


@bp.get("/api/samples/<sample_id>")
@require_role()
def sample(sample_id: str):
    found = load_samples().get(sample_id)
    if found is None:
        return jsonify(error=f"no sample {sample_id!r}"), 404
    return jsonify(found)
