"""The Flask application factory: one blueprint per concern, state under the instance dir."""

from __future__ import annotations

import logging
from pathlib import Path

from flask import Flask

from copilot.config import Settings

log = logging.getLogger(__name__)


def create_app(config: dict | None = None) -> Flask:
    """Build the app. ``config`` may carry ``ENGINE`` (an already-loaded engine, as tests do),
    ``MODEL_DIR`` (an exported model to load) or neither (the configured default)."""
    settings = Settings()
    config = dict(config or {})
    home = Path(config.get("COPILOT_HOME") or settings.home)
    app = Flask(__name__, instance_path=str(home), instance_relative_config=True)
    app.config.update(
        MODEL_DIR=str(settings.model_dir()),
        PROMPT_LOOKUP=False,
        MAX_QUEUE=settings.max_queue,
        MAX_CONTENT_LENGTH=2 * 1024 * 1024,
    )
    app.config.update(config)
    home.mkdir(parents=True, exist_ok=True)

    engine = app.config.pop("ENGINE", None)
    if engine is None:
        engine = _load_engine(app)
    app.extensions["copilot.engine"] = engine

    from copilot.web import generate, health

    app.register_blueprint(health.bp)
    app.register_blueprint(generate.bp)
    return app


def _load_engine(app: Flask):
    from copilot.engine.pipeline import Engine, EngineError

    try:
        return Engine(
            app.config["MODEL_DIR"],
            max_queue=app.config["MAX_QUEUE"],
            prompt_lookup=app.config["PROMPT_LOOKUP"],
            cache_dir=Path(app.instance_path) / "cache" / "openvino",
        )
    except EngineError as exc:
        app.config["ENGINE_ERROR"] = str(exc)
        log.error("%s", exc)
        return None
