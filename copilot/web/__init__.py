"""The Flask application factory: one blueprint per concern, state under the instance dir."""

from __future__ import annotations

import logging
import os
import secrets
import threading
from pathlib import Path

from flask import Flask, request

from copilot.config import Settings
from knowledge.snapshot import NoSnapshot

log = logging.getLogger(__name__)


def create_app(config: dict | None = None) -> Flask:
    """Build the app. ``config`` may carry ``ENGINE`` (an already-loaded engine, as tests do),
    ``MODEL_DIR`` (an exported model to load) or neither (the configured default);
    ``KNOWLEDGE_HOME`` (where the knowledge snapshot lives, default COPILOT_HOME)."""
    settings = Settings()
    config = dict(config or {})
    home = Path(config.get("COPILOT_HOME") or settings.home)
    home.mkdir(parents=True, exist_ok=True)
    app = Flask(__name__, instance_path=str(home), instance_relative_config=True)
    app.config.update(
        MODEL_DIR=str(settings.model_dir()),
        PROMPT_LOOKUP=False,
        INFERENCE_THREADS=int(os.environ.get("COPILOT_INFERENCE_THREADS", "0")),
        MAX_QUEUE=settings.max_queue,
        MAX_CONTENT_LENGTH=2 * 1024 * 1024,
        QC_JOB_MAX_BYTES=int(os.environ.get("COPILOT_QC_JOB_MAX_BYTES", 256 * 1024 * 1024)),
        CDS_MAX_BYTES=int(os.environ.get("COPILOT_CDS_MAX_BYTES", 16 * 1024 * 1024)),  # prefetch carries notes
        QC_JURISDICTION=os.environ.get("COPILOT_QC_JURISDICTION", "CN"),
        FRAME_ANCESTORS=os.environ.get("COPILOT_FRAME_ANCESTORS", "'self'"),
        SECRET_KEY=_secret_key(home),
        SESSION_COOKIE_HTTPONLY=True,
        SESSION_COOKIE_SAMESITE=os.environ.get("COPILOT_COOKIE_SAMESITE", "Lax"),
        SESSION_COOKIE_SECURE=os.environ.get("COPILOT_COOKIE_SECURE", "") == "1",
        REMEMBER_COOKIE_DURATION=0,
        WTF_CSRF_CHECK_DEFAULT=False,
        WTF_CSRF_TIME_LIMIT=12 * 3600,
    )
    app.config.update(config)

    from copilot.audit import AuditLog
    from copilot.users import UserStore

    app.extensions["copilot.users"] = UserStore(home / "users.db")
    app.extensions["copilot.audit"] = AuditLog(home / "audit" / "audit.db")
    engine = app.config.pop("ENGINE", None)
    if engine is None:
        engine = _load_engine(app)
    app.extensions["copilot.engine"] = engine

    from copilot.web import audit_api, auth, cds_hooks, draft, generate, health, metrics, qc_api, sidebar

    metrics.init_app(app)
    auth.init_app(app)
    for module in (health, metrics, auth, sidebar, generate, draft, qc_api, cds_hooks, audit_api):
        app.register_blueprint(module.bp)
    qc_api.init_app(app)
    app.after_request(_security_headers)
    app.register_error_handler(NoSnapshot, _no_knowledge)
    if not app.testing:
        threading.Thread(target=_warm_up, args=(app,), name="draft-warm-up", daemon=True).start()
    return app


def _warm_up(app: Flask) -> None:
    """Load the knowledge graph and retrieval index (embedder included) now, not during the first
    clinician's draft (about 9 s on two cores)."""
    from copilot.web import draft

    try:
        with app.app_context():
            draft._drafter()
    except Exception as exc:  # no knowledge snapshot yet: the first draft will say so
        log.warning("drafting warm-up skipped: %s", exc)


def _no_knowledge(exc: NoSnapshot):
    from flask import jsonify

    return jsonify(error=f"{exc} (the service needs its knowledge base to draft or check records)"), 503


def _secret_key(home: Path) -> str:
    """Signs session cookies; kept in the instance dir so sessions survive a restart."""
    path = home / "secret.key"
    if not path.is_file():
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        with os.fdopen(fd, "w") as handle:
            handle.write(secrets.token_hex(32))
    return path.read_text().strip()


def _security_headers(response):
    from flask import current_app

    csp = ("default-src 'self'; img-src 'self' data:; object-src 'none'; base-uri 'self'; form-action 'self'; "
           f"frame-ancestors {current_app.config['FRAME_ANCESTORS']}")
    response.headers.setdefault("Content-Security-Policy", csp)
    response.headers.setdefault("X-Content-Type-Options", "nosniff")
    response.headers.setdefault("Referrer-Policy", "no-referrer")
    if request.path.startswith(("/api/", "/cds-services")):
        response.headers.setdefault("Cache-Control", "no-store")
    return response


def _load_engine(app: Flask):
    from copilot.engine.pipeline import Engine, EngineError

    try:
        return Engine(
            app.config["MODEL_DIR"],
            max_queue=app.config["MAX_QUEUE"],
            prompt_lookup=app.config["PROMPT_LOOKUP"],
            inference_threads=app.config["INFERENCE_THREADS"],
            cache_dir=Path(app.instance_path) / "cache" / "openvino",
        )
    except EngineError as exc:
        app.config["ENGINE_ERROR"] = str(exc)
        log.error("%s", exc)
        return None
