import pytest

from tests.helpers import csrf_from


def test_login_sets_a_session_and_csrf_guards_posts(app, client, login, tokens):
    csrf = login(client, "clinician")
    assert client.get("/api/me").get_json() == {"name": "clin", "role": "clinician"}
    without = client.post("/api/draft", json={"transcript": "[doctor] hi"})
    assert without.status_code == 400 and "CSRF" in without.get_json()["error"]
    response = client.post("/api/draft", json={"transcript": "[doctor] hi"}, headers={"X-CSRFToken": "forged"})
    assert response.status_code == 400
    signed = client.post("/api/draft", json={"transcript": "[doctor] hi", "sections": ["chief_complaint"]},
                         headers={"X-CSRFToken": csrf})
    assert signed.status_code == 200 and signed.mimetype == "text/event-stream"


def test_wrong_password_and_unknown_user(client, tokens):
    page = client.get("/login").get_data(as_text=True)
    for name, secret in (("clin", "wrong-password"), ("nobody", tokens["clinician"])):
        response = client.post("/login", data={"username": name, "password": secret, "csrf_token": csrf_from(page)})
        assert response.status_code == 401 and "wrong password" in response.get_data(as_text=True)
    assert client.get("/api/me").status_code == 401


def test_login_without_csrf_is_refused(client, tokens):
    response = client.post("/login", data={"username": "clin", "password": tokens["clinician"]})
    assert response.status_code == 400


def test_password_login_and_no_open_redirect(app, client, tokens):
    app.extensions["copilot.users"].set_password("clin", "correct horse battery")
    page = client.get("/login").get_data(as_text=True)
    response = client.post("/login", data={"username": "clin", "password": "correct horse battery",
                                           "next": "https://evil.example/", "csrf_token": csrf_from(page)})
    assert response.status_code == 302 and response.headers["Location"].startswith("/")
    assert "evil" not in response.headers["Location"]


def test_disabled_user_loses_token_and_session(app, client, auth, login):
    login(client, "clinician")
    app.extensions["copilot.users"].set_disabled("clin", True)
    assert client.get("/api/me").status_code == 401
    assert app.test_client().get("/api/me", headers=auth("clinician")).status_code == 401


def test_only_admin_reads_the_audit_log(client, auth):
    assert client.get("/api/audit", headers=auth("clinician")).status_code == 403
    assert client.get("/api/audit", headers=auth("qc_staff")).status_code == 403
    response = client.get("/api/audit", headers=auth("admin"))
    assert response.status_code == 200
    actions = [e["action"] for e in response.get_json()["entries"]]
    assert actions.count("denied:audit_api.entries") == 2
    assert client.get("/api/audit/verify", headers=auth("admin")).get_json()["ok"] is True


@pytest.mark.parametrize("path", ["/api/audit", "/api/me", "/api/draft/note-types"])
def test_unauthenticated_api_is_401_with_challenge(client, path):
    response = client.get(path)
    assert response.status_code == 401 and response.headers["WWW-Authenticate"].startswith("Bearer")


def test_security_headers(client):
    response = client.get("/login")
    assert "frame-ancestors" in response.headers["Content-Security-Policy"]
    assert response.headers["X-Content-Type-Options"] == "nosniff"


def test_metrics_count_requests_without_patient_data(client, auth):
    client.get("/api/me", headers=auth("clinician"))
    client.get("/api/me")
    text = client.get("/metrics").get_data(as_text=True)
    assert 'copilot_http_requests_total{endpoint="auth.me",method="GET",status="200"} 1.0' in text
    assert 'status="401"' in text and "copilot_engine_queue_depth" in text


# -- sessions end when they should ---------------------------------------------------------------


def session_cookie(client) -> str:
    return client.get_cookie("session").value


def replayed(app, cookie: str):
    """A fresh client presenting a copied session cookie."""
    other = app.test_client()
    other.set_cookie("session", cookie)
    return other.get("/api/me")


@pytest.mark.parametrize("end", ["logout", "password", "token", "disable"])
def test_a_copied_session_cookie_stops_working(app, client, login, end):
    csrf = login(client, "clinician")
    cookie = session_cookie(client)
    assert replayed(app, cookie).status_code == 200
    store = app.extensions["copilot.users"]
    if end == "logout":
        assert client.post("/logout", headers={"X-CSRFToken": csrf}).status_code == 302
    elif end == "password":
        store.set_password("clin", "a brand new passphrase")
    elif end == "token":
        store.rotate_token("clin")
    else:
        store.set_disabled("clin", True)
    assert replayed(app, cookie).status_code == 401
    assert client.get("/api/me").status_code == 401


def test_signing_in_rotates_the_csrf_token(client, tokens):
    page = client.get("/login").get_data(as_text=True)
    before = csrf_from(page)
    response = client.post("/login", data={"username": "clin", "password": tokens["clinician"], "csrf_token": before})
    assert response.status_code == 302
    after = csrf_from(client.get("/login").get_data(as_text=True))
    assert after != before
    stale = client.post("/api/draft", json={"transcript": "[doctor] hi"}, headers={"X-CSRFToken": before})
    assert stale.status_code == 400 and "CSRF" in stale.get_json()["error"]


# -- sign-in limits ----------------------------------------------------------------------------------


def attempt(client, name: str, password: str, address: str = "10.0.0.1"):
    csrf = csrf_from(client.get("/login").get_data(as_text=True))
    return client.post("/login", data={"username": name, "password": password, "csrf_token": csrf},
                       environ_base={"REMOTE_ADDR": address})


def limited(app, per_user: str, per_address: str) -> None:
    from copilot.web.auth import LIMITS
    from copilot.web.login_limits import LoginLimits

    app.extensions[LIMITS] = LoginLimits(per_user, per_address)


def test_failed_sign_ins_lock_the_user_name_and_the_lockout_is_audited_once(app, client, tokens):
    limited(app, "3 per 15 minutes", "100 per 15 minutes")
    assert [attempt(client, "clin", "wrong").status_code for _ in range(3)] == [401] * 3
    locked = attempt(client, "clin", tokens["clinician"])  # even the right secret waits
    assert locked.status_code == 429 and int(locked.headers["Retry-After"]) > 0
    assert "Too many failed sign-ins" in locked.get_data(as_text=True)
    assert attempt(client, "CLIN", "wrong").status_code == 429
    assert attempt(client, "qc", tokens["qc_staff"]).status_code == 302  # other users are not affected
    entries = list(app.extensions["copilot.audit"].entries())
    assert [(e.action, e.outcome) for e in entries] == [("login-lockout", "denied")]
    assert "user clin" in entries[0].detail and "10.0.0.1" in entries[0].detail


def test_failed_sign_ins_lock_the_client_address_whatever_the_name(app, client, tokens):
    limited(app, "100 per 15 minutes", "4 per 15 minutes")
    for name in ("alice", "bob", "carol", "dave"):
        assert attempt(client, name, "guess").status_code == 401
    assert attempt(client, "clin", tokens["clinician"]).status_code == 429
    assert attempt(client, "clin", tokens["clinician"], address="10.0.0.2").status_code == 302
    [entry] = app.extensions["copilot.audit"].entries()
    assert entry.action == "login-lockout" and "address 10.0.0.1" in entry.detail


def test_a_success_clears_the_user_names_count(app, client, tokens):
    limited(app, "3 per 15 minutes", "100 per 15 minutes")
    for _ in range(2):
        attempt(client, "clin", "wrong")
    assert attempt(client, "clin", tokens["clinician"]).status_code == 302
    assert [attempt(app.test_client(), "clin", "wrong").status_code for _ in range(3)] == [401] * 3


def test_sign_in_costs_one_password_verification_whoever_asks(app, monkeypatch, tokens):
    """Login time revealed whether a user exists and has a password (5 ms vs 130-290 ms): every
    path now verifies exactly one scrypt hash with the same parameters."""
    from copilot.users import store as store_module

    store = app.extensions["copilot.users"]
    store.add("with.password", "clinician")
    store.set_password("with.password", "a long enough passphrase")
    store.add("disabled.one", "clinician")
    store.set_disabled("disabled.one", True)
    calls = []
    real = store_module.check_password_hash

    def counting(hashed, secret):
        calls.append(hashed.split("$")[0])
        return real(hashed, secret)

    monkeypatch.setattr(store_module, "check_password_hash", counting)
    for name, secret in (("nobody", "x"), ("clin", "wrong"), ("clin", tokens["clinician"]),
                         ("with.password", "wrong"), ("with.password", "a long enough passphrase"),
                         ("disabled.one", "x")):
        calls.clear()
        store.check_login(name, secret)
        assert len(calls) == 1, (name, calls)
        assert calls[0] == store_module.generate_password_hash("x").split("$")[0], (name, calls)


@pytest.mark.parametrize("public_url, secure", [(None, False), ("http://copilot.local", False),
                                                ("https://copilot.hospital.example", True)])
def test_session_cookies_are_secure_when_the_public_url_is_https(fake_engine, shipped_home, tmp_path, public_url,
                                                                 secure):
    from copilot.web import create_app

    config = {"TESTING": True, "home": tmp_path, "knowledge_home": shipped_home}
    if public_url:
        config["public_url"] = public_url
    app = create_app(config, engine=fake_engine)
    try:
        token = app.extensions["copilot.users"].add("doc", "clinician")
        client = app.test_client()
        response = attempt(client, "doc", token)
        assert response.status_code == 302
        cookie = response.headers["Set-Cookie"]
        assert ("Secure" in cookie) is secure and "HttpOnly" in cookie
    finally:
        app.extensions["copilot.qc_jobs"].stop()
