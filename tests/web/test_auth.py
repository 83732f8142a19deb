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
