"""The app's long-lived services, built once per app and shared by the blueprints."""

from __future__ import annotations

import threading
from pathlib import Path

from flask import current_app

_lock = threading.RLock()  # services build on each other (the drafter needs the retriever)


def _lazy(key: str, build):
    """Build a service on first use (once, under a lock), so start-up stays fast and tests that
    never touch it never pay for it."""
    extensions = current_app.extensions
    if key not in extensions:
        with _lock:
            if key not in extensions:
                extensions[key] = build()
    return extensions[key]


def settings():
    """The deployment's settings (copilot.config.Settings) the app was built from."""
    return current_app.extensions["copilot.settings"]


def home() -> Path:
    return settings().home


def knowledge_home() -> Path:
    return settings().knowledge_dir


def engine():
    return current_app.extensions.get("copilot.engine")


def engine_error() -> str:
    """Why no model is loaded (for 503 answers and /health, so without server paths)."""
    from copilot.files import without_paths

    return without_paths(current_app.extensions.get("copilot.engine_error", "no model loaded"))


def snapshot():
    from knowledge.snapshot import Snapshot

    return _lazy("copilot.snapshot", lambda: Snapshot.current(knowledge_home()))


def graph():
    from knowledge.graph import KnowledgeGraph

    return _lazy("copilot.graph", lambda: KnowledgeGraph(snapshot()))


def retriever():
    from knowledge.retrieval import Retriever

    return _lazy("copilot.retriever", lambda: Retriever(snapshot()))


def qc_runner():
    from copilot.qc.runner import QCRunner

    return _lazy("copilot.qc", lambda: QCRunner(snapshot(), jurisdiction=settings().qc_jurisdiction))


def users():
    return current_app.extensions["copilot.users"]


def audit_log():
    return current_app.extensions["copilot.audit"]


def model_info() -> dict:
    """Model id and version for the audit log and responses: the export manifest's name, and its
    weight format with the source fingerprint (a re-export of other weights is a new version)."""
    import json

    from copilot.engine.prepare import MANIFEST

    eng = engine()
    if eng is None:
        return {"id": None, "version": None}

    def build():
        manifest_file = Path(eng.model_dir) / MANIFEST
        manifest = json.loads(manifest_file.read_text()) if manifest_file.is_file() else {}
        return {"id": manifest.get("name", Path(eng.model_dir).parent.name),
                "version": f"{manifest.get('weight_format', 'unknown')}:{str(manifest.get('source_fingerprint', ''))[:16]}"}

    return _lazy("copilot.model_info", build)
