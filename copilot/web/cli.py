"""`copilot serve`: the sidebar and APIs under waitress, a production WSGI server."""

from __future__ import annotations

import logging
import sys
from pathlib import Path

log = logging.getLogger("copilot.serve")


class ServeError(RuntimeError):
    """The server cannot start; the message says what to do."""


def cmd_serve(args) -> int:
    from copilot.logs import configure
    from copilot.web import create_app

    overrides = {key: value for key, value in (("host", args.host), ("port", args.port), ("threads", args.threads),
                                               ("model_dir", args.model_dir), ("log_file", args.log_file),
                                               ("inference_threads", args.inference_threads))
                 if value is not None}
    if args.prompt_lookup:
        overrides["prompt_lookup"] = True
    settings = type(args.settings)(**overrides)  # validated like the environment's values
    configure("DEBUG" if args.verbose else settings.log_level, settings.log_path)
    from copilot.audit.log import AuditError
    from copilot.cds.jwt_auth import IssuerConfigError

    try:
        app = create_app(settings)
    except AuditError as exc:
        raise ServeError(f"the audit log cannot be used: {exc}\nNothing was served. Run `copilot audit verify` "
                         "and restore the audit directory from backup.") from None
    except IssuerConfigError as exc:
        raise ServeError(f"{exc}\nNothing was served; fix COPILOT_CDS_ISSUERS (README: CDS Hooks security).") from None
    if app.extensions.get("copilot.engine") is None:
        print(f"copilot serve: error: {app.extensions['copilot.engine_error']}", file=sys.stderr)
        return 2
    users = app.extensions["copilot.users"]
    if not users.list():
        token = users.add("admin", "admin")
        print("first start: created user 'admin' (role admin). Its token, shown only now, signs in to the sidebar\n"
              f"and the API (Authorization: Bearer ...):\n\n    {token}\n\n"
              "Add people with `copilot users add NAME --role clinician|qc_staff|admin`.", flush=True)
    server = make_server(app)
    log.info("serving on http://%s:%d (sidebar: /sidebar, health: /health); home %s; %d threads (%d for "
             "generation)", settings.host, server.effective_port, settings.home, server.adj.threads,
             app.extensions["copilot.admission"].slots)
    print(f"copilot serving on http://{settings.host}:{server.effective_port} (sidebar: /sidebar, health: /health)",
          flush=True)
    try:
        server.run()
    except KeyboardInterrupt:
        pass
    finally:
        server.close()
    return 0


def make_server(app, host: str | None = None, port: int | None = None):
    """The waitress server for ``app``: one thread per generation slot on top of COPILOT_THREADS, so
    streaming generations never take the threads health checks, QC and the sidebar need."""
    from waitress.server import create_server

    from copilot.web.admission import server_threads

    settings = app.extensions["copilot.settings"]
    return create_server(app, host=settings.host if host is None else host,
                         port=settings.port if port is None else port, threads=server_threads(app),
                         channel_timeout=300, ident="copilot")


def register(commands) -> None:
    from pydantic import ValidationError

    serve = commands.add_parser("serve", help="serve the sidebar and APIs (production WSGI server)",
                                description="Serve the copilot over HTTP with waitress. Binds to localhost "
                                            "by default; put it behind the hospital's TLS proxy for wider access. "
                                            "Options default to their COPILOT_* settings (`copilot config show`).")
    serve.add_argument("--host", help="address to bind (default: $COPILOT_HOST, else 127.0.0.1)")
    serve.add_argument("--port", type=int, help="port (default: $COPILOT_PORT, else 8000)")
    serve.add_argument("--threads", type=int, help="HTTP worker threads for all but generation (default: "
                                                   "$COPILOT_THREADS, else 8); one per generation slot is added")
    serve.add_argument("--model-dir", type=Path, help="exported OpenVINO model to serve (default: the prepared "
                                                      "$COPILOT_MODEL)")
    serve.add_argument("--prompt-lookup", action="store_true", help="prompt-lookup (n-gram) decoding")
    serve.add_argument("--inference-threads", type=int, default=None, metavar="N",
                       help="cap the model's CPU threads, leaving cores for QC and the web tier "
                            "(default: all cores, or $COPILOT_INFERENCE_THREADS)")
    serve.add_argument("--log-file", type=Path, help="also log to this file, rotated (default: $COPILOT_LOG_FILE)")
    serve.set_defaults(func=cmd_serve, user_errors=(ServeError, ValidationError))
