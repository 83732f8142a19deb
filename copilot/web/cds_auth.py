"""CDS Hooks callers that sign each call with a JWT (copilot.cds.jwt_auth), resolved to the copilot
user their issuer acts as. The static bearer token of a clinician or admin service account keeps
working beside it, for EHRs that cannot sign."""

from __future__ import annotations

import logging

from flask import current_app

from copilot.cds.jwt_auth import TokenRejected, TrustedIssuers
from copilot.users import TOKEN_PREFIX, User
from copilot.web import state

log = logging.getLogger(__name__)
EXTENSION = "copilot.cds_issuers"


def init_app(app) -> None:
    """Load the issuers file now, so that a wrong one stops the server at start, not at the first call."""
    path = app.extensions["copilot.settings"].cds_issuers_path
    app.extensions[EXTENSION] = TrustedIssuers(path) if path is not None else None


def looks_like_jwt(token: str) -> bool:
    return not token.startswith(TOKEN_PREFIX) and token.count(".") == 2


def user_for(token: str, service_id: str | None) -> tuple[User | None, str | None]:
    """(the user the token's issuer acts as, None), or (None, why the token is refused)."""
    issuers: TrustedIssuers | None = current_app.extensions.get(EXTENSION)
    if issuers is None:
        return None, "this server accepts no signed JWTs (COPILOT_CDS_ISSUERS is not set); use a copilot token"
    public = state.settings().public_url
    if public is None:
        return None, "COPILOT_PUBLIC_URL is not set, so no JWT audience can be checked"
    audiences = [f"{public}/cds-services/{service_id}", f"{public}/cds-services"]
    try:
        issuer, claims = issuers.verify(token, audiences)
    except TokenRejected as exc:
        log.warning("CDS Hooks JWT refused: %s", exc)
        return None, str(exc)
    user = state.users().get(issuer.user)
    if user is None or not user.is_active:
        log.warning("CDS Hooks JWT of %s refused: its user %r is missing or disabled", issuer.iss, issuer.user)
        return None, f"the account that {issuer.iss} acts as is missing or disabled"
    return user, None
