"""CDS Hooks clients authenticated as the specification asks: an EHR-signed JWT per call (RS384 or
ES384), checked for issuer, signature, audience, expiry and jti replay. The static token stays."""

from __future__ import annotations

import http.server
import json
import threading
import time
import uuid
from pathlib import Path

import jwt
import pytest
from cryptography.hazmat.primitives.asymmetric import ec, rsa

from copilot.cds.jwt_auth import IssuerConfigError

DATA = Path(__file__).resolve().parent / "data"
PUBLIC = "https://copilot.hospital.example"
SERVICE = "copilot-medication-safety"
PATH = f"/cds-services/{SERVICE}"
EHR = "https://ehr.hospital.example"


def jwk(key, kid: str, alg: str) -> dict:
    return {**json.loads(jwt.algorithms.get_default_algorithms()[alg].to_jwk(key.public_key())), "kid": kid,
            "alg": alg, "use": "sig"}


@pytest.fixture(scope="module")
def keys():
    return {"rsa": rsa.generate_private_key(public_exponent=65537, key_size=2048),
            "ec": ec.generate_private_key(ec.SECP384R1()),
            "other": rsa.generate_private_key(public_exponent=65537, key_size=2048)}


def write_issuers(folder: Path, keys, **extra) -> Path:
    (folder / "ehr-jwks.json").write_text(json.dumps({"keys": [jwk(keys["rsa"], "rsa-1", "RS384"),
                                                               jwk(keys["ec"], "ec-1", "ES384")]}))
    issuer = {"iss": EHR, "jwks_file": "ehr-jwks.json", "user": "ehr-cds", **extra}
    path = folder / "cds-issuers.yaml"
    path.write_text(json.dumps({"issuers": [issuer]}))  # JSON is YAML
    return path


def make(fake_engine, shipped_home, home: Path, issuers: Path | None):
    from copilot.web import create_app

    config = {"TESTING": True, "home": home, "knowledge_home": shipped_home, "public_url": PUBLIC}
    if issuers is not None:
        config["cds_issuers"] = issuers
    app = create_app(config, engine=fake_engine)
    app.extensions["copilot.users"].add("ehr-cds", "clinician")
    return app


@pytest.fixture
def jwt_app(fake_engine, shipped_home, tmp_path, keys):
    app = make(fake_engine, shipped_home, tmp_path / "home", write_issuers(tmp_path, keys))
    yield app
    app.extensions["copilot.qc_jobs"].stop()


def token(keys, key="rsa", kid="rsa-1", alg="RS384", headers=None, **claims) -> str:
    now = int(time.time())
    body = {"iss": EHR, "aud": f"{PUBLIC}{PATH}", "exp": now + 240, "iat": now, "jti": str(uuid.uuid4()),
            "sub": "copilot-cds", **claims}
    body = {k: v for k, v in body.items() if v is not None}
    return jwt.encode(body, keys[key], algorithm=alg, headers={"kid": kid, **(headers or {})})


def call(app, bearer: str):
    data = json.loads((DATA / "cds_order_sign_allergy.json").read_text())
    return app.test_client().post(PATH, json=data, headers={"Authorization": f"Bearer {bearer}"})


@pytest.mark.parametrize("key, kid, alg", [("rsa", "rsa-1", "RS384"), ("ec", "ec-1", "ES384")])
def test_a_signed_call_is_answered_and_audited_as_the_issuers_account(jwt_app, keys, key, kid, alg):
    response = call(jwt_app, token(keys, key=key, kid=kid, alg=alg))
    assert response.status_code == 200, response.get_json()
    assert response.get_json()["cards"]
    [entry] = jwt_app.extensions["copilot.audit"].entries()
    assert (entry.user, entry.action, entry.outcome) == ("ehr-cds", f"cds:{SERVICE}", "success")


def test_the_discovery_url_is_an_accepted_audience(jwt_app, keys):
    assert call(jwt_app, token(keys, aud=f"{PUBLIC}/cds-services")).status_code == 200


def test_a_replayed_token_is_refused(jwt_app, keys):
    signed = token(keys)
    assert call(jwt_app, signed).status_code == 200
    again = call(jwt_app, signed)
    assert again.status_code == 401 and "already used" in again.get_json()["error"]


def hs256_with_the_public_key(keys) -> str:
    """The classic confusion attack: HMAC-sign with the issuer's *public* key as the secret."""
    import base64
    import hashlib
    import hmac

    from cryptography.hazmat.primitives import serialization

    def b64(data: bytes) -> str:
        return base64.urlsafe_b64encode(data).rstrip(b"=").decode()

    public = keys["rsa"].public_key().public_bytes(serialization.Encoding.PEM,
                                                   serialization.PublicFormat.SubjectPublicKeyInfo)
    now = int(time.time())
    head = b64(json.dumps({"alg": "HS256", "typ": "JWT", "kid": "rsa-1"}).encode())
    body = b64(json.dumps({"iss": EHR, "aud": f"{PUBLIC}{PATH}", "exp": now + 60, "jti": "x"}).encode())
    signature = hmac.new(public, f"{head}.{body}".encode(), hashlib.sha256).digest()
    return f"{head}.{body}.{b64(signature)}"


@pytest.mark.parametrize("make_token, message", [
    (lambda k: token(k, exp=int(time.time()) - 600), "expired"),
    (lambda k: token(k, exp=int(time.time()) + 3600), "more than 5 minutes ahead"),
    (lambda k: token(k, aud=f"{PUBLIC}/cds-services/copilot-qc-summary"), "aud is not this service"),
    (lambda k: token(k, aud="https://evil.example/cds-services/copilot-medication-safety"), "aud is not"),
    (lambda k: token(k, iss="https://ehr.elsewhere.example"), "is not trusted"),
    (lambda k: token(k, key="other"), "Signature verification failed"),
    (lambda k: token(k, kid="nope"), "no key 'nope'"),
    (lambda k: token(k, jti=None), "jti"),
    (lambda k: token(k, alg="RS256"), "algorithm 'RS256' is not accepted"),
    (lambda k: jwt.encode({"iss": EHR, "aud": f"{PUBLIC}{PATH}", "exp": int(time.time()) + 60, "jti": "n"}, None,
                          algorithm="none"), "algorithm 'none' is not accepted"),
    (hs256_with_the_public_key, "algorithm 'HS256' is not accepted"),
    (lambda k: token(k, headers={"jku": "https://evil.example/jwks.json"}), "jku"),
    (lambda k: "not.a.jwt", "not a JWT"),
])
def test_bad_tokens_are_refused_with_the_reason(jwt_app, keys, make_token, message):
    response = call(jwt_app, make_token(keys))
    assert response.status_code == 401 and message in response.get_json()["error"], response.get_json()
    assert 'error="invalid_token"' in response.headers["WWW-Authenticate"]
    assert list(jwt_app.extensions["copilot.audit"].entries()) == []


def test_the_client_id_and_the_account_are_checked(fake_engine, shipped_home, tmp_path, keys):
    app = make(fake_engine, shipped_home, tmp_path / "home", write_issuers(tmp_path, keys, client_id="copilot-cds"))
    try:
        assert call(app, token(keys)).status_code == 200
        assert "sub is not the client" in call(app, token(keys, sub="someone-else")).get_json()["error"]
        app.extensions["copilot.users"].set_disabled("ehr-cds", True)
        refused = call(app, token(keys))
        assert refused.status_code == 401 and "missing or disabled" in refused.get_json()["error"]
    finally:
        app.extensions["copilot.qc_jobs"].stop()


def test_the_static_token_still_works_and_jwts_need_configuration(fake_engine, shipped_home, tmp_path, keys):
    app = make(fake_engine, shipped_home, tmp_path / "home", None)
    try:
        static = app.extensions["copilot.users"].add("ehr-static", "clinician")
        assert call(app, static).status_code == 200
        refused = call(app, token(keys))
        assert refused.status_code == 401 and "COPILOT_CDS_ISSUERS is not set" in refused.get_json()["error"]
    finally:
        app.extensions["copilot.qc_jobs"].stop()


def test_keys_from_a_jwks_url_inside_the_hospital(fake_engine, shipped_home, tmp_path, keys):
    jwks = json.dumps({"keys": [jwk(keys["rsa"], "rsa-1", "RS384")]}).encode()
    requests = []

    class JWKS(http.server.BaseHTTPRequestHandler):
        def do_GET(self):
            requests.append(self.path)
            self.send_response(200)
            self.send_header("Content-Type", "application/json")
            self.end_headers()
            self.wfile.write(jwks)

        def log_message(self, *args):
            pass

    server = http.server.HTTPServer(("127.0.0.1", 0), JWKS)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    url = f"http://127.0.0.1:{server.server_port}/jwks.json"
    issuers = tmp_path / "url-issuers.yaml"
    issuers.write_text(json.dumps({"issuers": [{"iss": EHR, "jwks_url": url, "user": "ehr-cds"}]}))
    app = make(fake_engine, shipped_home, tmp_path / "home", issuers)
    try:
        assert requests == []  # nothing is fetched before a call needs a key
        assert call(app, token(keys, headers={"jku": url})).status_code == 200
        assert call(app, token(keys)).status_code == 200
        assert requests == ["/jwks.json"]  # cached
    finally:
        server.shutdown()
        app.extensions["copilot.qc_jobs"].stop()


@pytest.mark.parametrize("content, message", [
    ("issuers: [{iss: x, user: y}]", "exactly one of jwks_file or jwks_url"),
    ("issuers: [{iss: x, user: y, jwks_file: missing.json}]", "missing.json"),
    ("issuers: [{iss: x, user: y, jwks_url: https://e/j, algorithms: [HS256]}]", "algorithms"),
    ("issuers: [{iss: x, user: y, jwks_url: https://e/j, secret: s}]", "secret"),
    ("{{{", "CDS issuers file"),
])
def test_a_wrong_issuers_file_stops_the_start(fake_engine, shipped_home, tmp_path, content, message):
    from copilot.web import create_app

    path = tmp_path / "issuers.yaml"
    path.write_text(content)
    with pytest.raises(IssuerConfigError, match=message):
        create_app({"TESTING": True, "home": tmp_path / "home", "knowledge_home": shipped_home, "cds_issuers": path},
                   engine=fake_engine)
