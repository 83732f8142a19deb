"""Who is calling: API bearer tokens, or a sidebar session (cookie) with CSRF protection.

Every view that touches patient data is wrapped in ``require_role``. Unauthenticated calls get
401 before any patient data is read; a known user without the role gets 403 (and an audit entry).

Sessions: the cookie names the user and the user's session version; signing out, a new password
or token, and disabling the user bump the version, so every earlier cookie stops working (the
cookie is signed, not stored: this is how it is revoked). Signing in starts a new session, with
a new CSRF token. Failed sign-ins are limited per user name and per address (login_limits).
"""

from __future__ import annotations

from functools import wraps
from urllib.parse import urlsplit

from flask import Blueprint, current_app, g, jsonify, redirect, render_template, request, session, url_for
from flask_login import LoginManager, current_user, login_user, logout_user
from flask_wtf.csrf import CSRFError, CSRFProtect

from copilot.users import NAME
from copilot.web import cds_auth, state
from copilot.web.login_limits import LoginLimits

bp = Blueprint("auth", __name__)
login_manager = LoginManager()
csrf = CSRFProtect()


LIMITS = "copilot.login_limits"


def init_app(app) -> None:
    login_manager.init_app(app)
    csrf.init_app(app)
    settings = app.extensions["copilot.settings"]
    app.extensions[LIMITS] = LoginLimits(settings.login_limit_per_user, settings.login_limit_per_address)
    app.before_request(_authenticate)
    app.register_error_handler(CSRFError, _csrf_error)


@login_manager.user_loader
def _load_user(session_id: str):
    return state.users().session_user(session_id)


def _authenticate() -> None:
    """Resolve the caller once per request; check CSRF for cookie-authenticated writes.

    Bearer requests carry no ambient credential, so CSRF does not apply to them."""
    g.user, g.auth, g.auth_error = None, None, None
    header = request.headers.get("Authorization", "")
    if header[:7].lower() == "bearer ":
        token = header[7:].strip()
        if request.blueprint == "cds_hooks" and cds_auth.looks_like_jwt(token):
            g.user, g.auth_error = cds_auth.user_for(token, (request.view_args or {}).get("service_id"))
            g.auth = "jwt" if g.user else "bad-token"
            return
        g.user = state.users().by_token(token)
        g.auth = "bearer" if g.user else "bad-token"
        return
    if current_user.is_authenticated:
        g.user, g.auth = current_user._get_current_object(), "session"
        if request.endpoint == "qc_api.submit":  # the CSRF check reads the form: allow a batch-sized one
            request.max_content_length = state.settings().qc_job_max_bytes
    if request.method not in ("GET", "HEAD", "OPTIONS") and (g.user is not None or request.endpoint == "auth.login"):
        csrf.protect()


def wants_html() -> bool:
    return not request.path.startswith(("/api/", "/cds-services")) and request.accept_mimetypes.accept_html


def require_role(*roles: str):
    def decorate(view):
        @wraps(view)
        def wrapped(*args, **kwargs):
            if g.get("user") is None:
                if wants_html():
                    return redirect(url_for("auth.login", next=request.full_path.rstrip("?")))
                if g.get("auth") != "bad-token":
                    return jsonify(error="authentication required"), 401, {"WWW-Authenticate": 'Bearer realm="copilot"'}
                reason = g.get("auth_error") or "invalid or revoked token"
                return (jsonify(error=reason), 401,
                        {"WWW-Authenticate": 'Bearer realm="copilot", error="invalid_token"'})
            if roles and g.user.role not in roles:
                from copilot.web.auditing import record

                record(f"denied:{request.endpoint}", outcome="denied", detail=f"role {g.user.role} not allowed")
                return jsonify(error=f"role {g.user.role!r} may not do this; needs {' or '.join(roles)}"), 403
            return view(*args, **kwargs)
        return wrapped
    return decorate


def _safe_next(target: str | None) -> str:
    """Only same-site relative paths: a login page must not become an open redirect."""
    if not target:
        return url_for("sidebar.page")
    parts = urlsplit(target)
    if parts.scheme or parts.netloc or not target.startswith("/") or target.startswith("//") or "\\" in target:
        return url_for("sidebar.page")
    return target


@bp.route("/login", methods=["GET", "POST"])
def login():
    error, status, headers = None, 200, {}
    if request.method == "POST":
        name = request.form.get("username", "").strip()[:128]
        limits: LoginLimits = current_app.extensions[LIMITS]
        address = request.remote_addr or "unknown"
        wait = limits.retry_after(name, address)
        if wait is not None:
            minutes = max(1, round(wait / 60))
            error, status = f"Too many failed sign-ins. Try again in about {minutes} minute(s).", 429
            headers["Retry-After"] = str(wait)
        else:
            user = state.users().check_login(name, request.form.get("password", ""))
            if user is not None:
                limits.succeeded(name)
                session.clear()  # a new session: nothing of the signed-out one (its CSRF token) carries over
                login_user(user)
                return redirect(_safe_next(request.form.get("next")))
            error, status = "Unknown user name or wrong password.", 401
            for lockout in limits.failed(name, address):
                _audit_lockout(name, address, lockout)
    return render_template("login.html", error=error, next=request.args.get("next", "")), status, headers


def _audit_lockout(name: str, address: str, lockout) -> None:
    from copilot.web.auditing import AuditUnavailable, record

    who = name if NAME.match(name) else "(not a user name)"
    target = f"user {who}" if lockout.kind == "user" else f"address {address}"
    try:
        record("login-lockout", outcome="denied", detail=f"sign-in locked for {target} from {address}: "
                                                         f"{lockout.limit} failed sign-ins")
    except AuditUnavailable:
        pass  # logged; the lockout itself holds


@bp.post("/logout")
def logout():
    if current_user.is_authenticated:
        state.users().end_sessions(current_user.name)  # this cookie, and any copy of it, stops working
    logout_user()
    session.clear()
    return redirect(url_for("auth.login"))


@bp.get("/api/me")
@require_role()
def me():
    return jsonify(name=g.user.name, role=g.user.role)


def _csrf_error(exc: CSRFError):
    if request.path.startswith("/api/") or not request.accept_mimetypes.accept_html:
        return jsonify(error=f"CSRF check failed: {exc.description}"), 400
    return render_template("login.html", error="Your form expired; please sign in again.", next=""), 400
