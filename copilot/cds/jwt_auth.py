"""EHR-signed JWTs for CDS Hooks calls, as the CDS Hooks specification asks
(https://cds-hooks.hl7.org/2.0/#trusting-cds-clients).

The EHR signs a short-lived JWT for each call and sends it as ``Authorization: Bearer <jwt>``.
It is accepted only when: its issuer (``iss``) is listed in the issuers file; it is signed with
one of that issuer's keys and algorithms (RS384 or ES384 unless the file narrows or widens them;
never ``none`` or a shared-secret HS*); ``aud`` is this service's URL (COPILOT_PUBLIC_URL +
/cds-services/<id>, or the discovery URL); ``exp`` has not passed and is at most five minutes
ahead; ``jti`` has not been seen before (replays are refused until the token would have expired
anyway); and ``sub``, where the file names a client id, is that client. A ``jku`` header is
honoured only when it is the issuer's configured JWKS URL: keys are never fetched from where a
token says. The calls act as the copilot user the file names for the issuer (role and audit
entries), so disabling that user cuts the EHR off at once.

Keys come from a JWKS file, or from a JWKS URL that the hospital configures (inside its network;
nothing is fetched unless an issuer names a URL), cached for ten minutes.

Issuers file (YAML)::

    issuers:
      - iss: https://ehr.hospital.example
        jwks_file: ehr-jwks.json              # relative to this file; or jwks_url: https://...
        user: ehr-cds                         # a copilot user with role clinician or admin
        client_id: copilot-cds                # optional: the JWT's sub must be this
        algorithms: [RS384, ES384]            # optional
"""

from __future__ import annotations

import json
import threading
import time
from pathlib import Path
from typing import Literal

import jwt
import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, model_validator

ALGORITHMS = ("RS384", "ES384", "RS256", "ES256", "RS512", "ES512", "PS384", "PS256", "PS512")
MAX_LIFETIME_S = 300  # the specification: exp SHALL NOT be more than five minutes in the future
LEEWAY_S = 60  # clock skew between the EHR and this server
JWKS_CACHE_S = 600
MAX_REMEMBERED = 200_000  # jti values kept for replay detection (each for at most MAX_LIFETIME_S + LEEWAY_S)


class IssuerConfigError(ValueError):
    """The issuers file is unreadable or wrong; the server does not start with it."""


class TokenRejected(ValueError):
    """The JWT is not accepted; the message says which check failed (safe to tell the EHR)."""


class Issuer(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    iss: str = Field(min_length=1)
    user: str = Field(min_length=1)
    jwks_file: Path | None = None
    jwks_url: str | None = Field(None, pattern=r"^https?://")
    client_id: str | None = None
    algorithms: list[Literal[ALGORITHMS]] = ["RS384", "ES384"]  # type: ignore[valid-type]

    @model_validator(mode="after")
    def _one_key_source(self):
        if (self.jwks_file is None) == (self.jwks_url is None):
            raise ValueError("give exactly one of jwks_file or jwks_url")
        return self


class IssuersFile(BaseModel):
    model_config = ConfigDict(extra="forbid")

    issuers: list[Issuer]


class Keys:
    """An issuer's public keys: a JWKS file (read once) or a JWKS URL (fetched on demand, cached)."""

    def __init__(self, issuer: Issuer, folder: Path):
        self.issuer = issuer
        self._client = None
        self._set = None
        if issuer.jwks_file is not None:
            path = issuer.jwks_file if issuer.jwks_file.is_absolute() else folder / issuer.jwks_file
            try:
                self._set = jwt.PyJWKSet.from_dict(json.loads(path.read_text(encoding="utf-8")))
            except (OSError, ValueError, jwt.PyJWKError, jwt.PyJWKSetError) as exc:
                raise IssuerConfigError(f"JWKS of {issuer.iss} ({path}): {exc}") from None
        else:
            self._client = jwt.PyJWKClient(issuer.jwks_url, cache_keys=True, lifespan=JWKS_CACHE_S, timeout=5)

    def key(self, kid: str | None):
        if self._client is not None:
            try:
                return self._client.get_signing_key(kid).key if kid else self._only(self._client.get_signing_keys())
            except jwt.PyJWKClientError as exc:
                raise TokenRejected(f"no key {kid!r} from the JWKS of {self.issuer.iss}: {exc}") from None
        keys = [k for k in self._set.keys if kid is None or k.key_id == kid]
        if kid is not None and not keys:
            raise TokenRejected(f"no key {kid!r} in the JWKS of {self.issuer.iss}")
        return self._only(keys)

    def _only(self, keys):
        if len(keys) != 1:
            raise TokenRejected(f"the token names no key id (kid) and the JWKS of {self.issuer.iss} holds "
                                f"{len(keys)} keys")
        return keys[0].key


class Replays:
    """jti values already used, per issuer, kept until the token would have expired anyway."""

    def __init__(self, limit: int = MAX_REMEMBERED):
        self._seen: dict[tuple[str, str], float] = {}
        self._lock = threading.Lock()
        self._limit = limit

    def first_use(self, iss: str, jti: str, expires: float, now: float) -> bool:
        with self._lock:
            if len(self._seen) >= self._limit:
                self._seen = {k: t for k, t in self._seen.items() if t > now}
                if len(self._seen) >= self._limit:
                    raise TokenRejected("too many tokens in flight; try again shortly")
            key = (iss, jti)
            if self._seen.get(key, 0) > now:
                return False
            self._seen[key] = expires + LEEWAY_S
            return True


class TrustedIssuers:
    """The issuers file, loaded once; ``verify`` checks one token."""

    def __init__(self, path: Path):
        self.path = Path(path)
        try:
            data = yaml.safe_load(self.path.read_text(encoding="utf-8"))
            issuers = IssuersFile.model_validate(data).issuers
        except (OSError, yaml.YAMLError) as exc:
            raise IssuerConfigError(f"CDS issuers file {self.path}: {exc}") from None
        except ValidationError as exc:
            first = exc.errors()[0]
            raise IssuerConfigError(f"CDS issuers file {self.path}: {'/'.join(map(str, first['loc']))}: "
                                    f"{first['msg']}") from None
        names = [i.iss for i in issuers]
        if len(set(names)) != len(names):
            raise IssuerConfigError(f"CDS issuers file {self.path}: an iss is listed twice")
        self.keys = {i.iss: Keys(i, self.path.parent) for i in issuers}
        self.replays = Replays()

    def verify(self, token: str, audiences: list[str], now: float | None = None) -> tuple[Issuer, dict]:
        """The issuer and the claims of an acceptable token; TokenRejected says why not."""
        now = time.time() if now is None else now
        try:
            header = jwt.get_unverified_header(token)
            unverified = jwt.decode(token, options={"verify_signature": False})
        except jwt.PyJWTError as exc:
            raise TokenRejected(f"not a JWT: {exc}") from None
        keys = self.keys.get(unverified.get("iss")) if isinstance(unverified.get("iss"), str) else None
        if keys is None:
            raise TokenRejected(f"issuer {str(unverified.get('iss'))[:100]!r} is not trusted")
        issuer = keys.issuer
        if header.get("alg") not in issuer.algorithms:
            raise TokenRejected(f"algorithm {header.get('alg')!r} is not accepted from {issuer.iss} "
                                f"(accepted: {', '.join(issuer.algorithms)})")
        if "jku" in header and header["jku"] != issuer.jwks_url:
            raise TokenRejected("the token's jku is not the JWKS URL configured for its issuer")
        try:
            claims = jwt.decode(token, keys.key(header.get("kid")), algorithms=issuer.algorithms,
                                audience=audiences, issuer=issuer.iss, leeway=LEEWAY_S,
                                options={"require": ["iss", "aud", "exp", "jti"]})
        except jwt.ExpiredSignatureError:
            raise TokenRejected("the token has expired") from None
        except jwt.InvalidAudienceError:
            raise TokenRejected(f"the token's aud is not this service ({audiences[0]})") from None
        except jwt.PyJWTError as exc:
            raise TokenRejected(f"the token is not valid: {exc}") from None
        exp = claims["exp"]
        if exp - now > MAX_LIFETIME_S + LEEWAY_S:
            raise TokenRejected(f"the token's exp is more than {MAX_LIFETIME_S // 60} minutes ahead")
        if issuer.client_id is not None and claims.get("sub") != issuer.client_id:
            raise TokenRejected("the token's sub is not the client configured for its issuer")
        jti = claims["jti"]
        if not isinstance(jti, str) or not jti or len(jti) > 256:
            raise TokenRejected("the token's jti must be a non-empty string")
        if not self.replays.first_use(issuer.iss, jti, exp, now):
            raise TokenRejected("the token was already used (jti replay)")
        return issuer, claims
