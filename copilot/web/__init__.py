"""The Flask application factory: one blueprint per concern, state under the instance dir."""

from __future__ import annotations

import logging
import threading
import uuid
from collections.abc import Mapping

from flask import Flask, jsonify, request
from werkzeug.exceptions import HTTPException

from copilot.config import Settings
from knowledge.snapshot import NoSnapshot

log = logging.getLogger(__name__)


def resolve_settings(config: Settings | Mapping | None) -> tuple[Settings, dict]:
    """``config`` is a Settings, or a mapping whose lower-case keys override settings (``home``,
    ``max_queue``, ...) and whose upper-case keys are Flask config (``TESTING``)."""
    if isinstance(config, Settings):
        return config, {}
    config = dict(config or {})
    overrides = {k: v for k, v in config.items() if k in Settings.model_fields}
    flask_config = {k: v for k, v in config.items() if k not in overrides}
    unknown = [k for k in flask_config if not k.isupper()]
    if unknown:
        raise ValueError(f"create_app: unknown settings {', '.join(sorted(unknown))} "
                         f"(settings are: {', '.join(Settings.model_fields)})")
    return Settings(**overrides), flask_config


def create_app(config: Settings | Mapping | None = None, *, engine=None) -> Flask:
    """Build the app from the deployment's settings (``Settings()`` when ``config`` is None).

    ``engine``: an already-loaded engine (tests pass a scripted fake, or share one real engine);
    without it the settings' model is loaded, and a model that cannot be loaded leaves the app
    up in degraded mode (``/health`` says why, generation answers 503)."""
    settings, flask_config = resolve_settings(config)
    settings.home.mkdir(parents=True, exist_ok=True)
    app = Flask(__name__, instance_path=str(settings.home))
    app.config.update(
        MAX_CONTENT_LENGTH=settings.max_body_bytes,
        SECRET_KEY=settings.session_secret(),
        SESSION_COOKIE_HTTPONLY=True,
        SESSION_COOKIE_SAMESITE=settings.cookie_samesite,
        SESSION_COOKIE_SECURE=settings.secure_cookies,
        REMEMBER_COOKIE_DURATION=0,
        WTF_CSRF_CHECK_DEFAULT=False,
        WTF_CSRF_TIME_LIMIT=12 * 3600,
    )
    app.config.update(flask_config)
    app.extensions["copilot.settings"] = settings
    if settings.proxy_hops:
        from werkzeug.middleware.proxy_fix import ProxyFix

        app.wsgi_app = ProxyFix(app.wsgi_app, x_for=settings.proxy_hops, x_proto=settings.proxy_hops)

    from copilot.audit.shared import open_audit_log
    from copilot.users.store import open_user_store

    app.extensions["copilot.users"] = open_user_store(settings)
    app.extensions["copilot.audit"] = open_audit_log(settings)
    app.extensions["copilot.engine"] = engine if engine is not None else _load_engine(app, settings)

    from copilot.web import (admission, audit_api, auditing, auth, cds_auth, cds_hooks, draft, generate, ground, health,
                             metrics, qc_api, qc_office, sidebar)

    cds_auth.init_app(app)
    admission.init_app(app)
    metrics.init_app(app)
    auth.init_app(app)
    for module in (health, metrics, auth, sidebar, generate, draft, ground, qc_api, qc_office, cds_hooks, audit_api):
        app.register_blueprint(module.bp)
    qc_api.init_app(app)
    app.after_request(auditing.ensure_audited)
    qc_office.init_app(app)
    app.after_request(_security_headers)
    app.register_error_handler(NoSnapshot, _no_knowledge)
    app.register_error_handler(auditing.AuditUnavailable, lambda exc: auditing.unavailable_response())
    app.register_error_handler(Exception, _unexpected)
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
    from copilot.files import without_paths

    log.error("%s", exc)
    return jsonify(error=f"{without_paths(str(exc))} (the service needs its knowledge base to draft or check "
                         "records)"), 503


def _unexpected(exc: Exception):
    """The last line of defence: an error nobody anticipated is logged with an incident id and
    answered as JSON (never a traceback, never a server path); the audit hook still records it."""
    if isinstance(exc, HTTPException):
        if request.path.startswith(("/api/", "/cds-services")) and exc.code is not None:
            return jsonify(error=exc.description), exc.code
        return exc
    incident = uuid.uuid4().hex[:12]
    log.exception("unexpected error in %s %s (incident %s)", request.method, request.path, incident)
    return jsonify(error=f"internal error (incident {incident}; the server log has the details)"), 500


def _security_headers(response):
    from copilot.web import state

    csp = ("default-src 'self'; img-src 'self' data:; object-src 'none'; base-uri 'self'; form-action 'self'; "
           f"frame-ancestors {state.settings().frame_ancestors}")
    response.headers.setdefault("Content-Security-Policy", csp)
    response.headers.setdefault("X-Content-Type-Options", "nosniff")
    response.headers.setdefault("Referrer-Policy", "no-referrer")
    if request.path.startswith(("/api/", "/cds-services")):
        response.headers["Cache-Control"] = "no-store"  # patient data: never kept by a browser or proxy
    return response


def _load_engine(app: Flask, settings: Settings):
    from copilot.engine.errors import EngineError

    try:
        from copilot.engine.pipeline import Engine

        return Engine(
            settings.served_model_dir,
            device=settings.device,
            max_queue=settings.max_queue,
            prompt_lookup=settings.prompt_lookup,
            inference_threads=settings.inference_threads,
            cache_dir=settings.cache_dir / "openvino",
        )
    except EngineError as exc:
        app.extensions["copilot.engine_error"] = str(exc)
        log.error("%s", exc)
        return None
