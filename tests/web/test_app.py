import http.client
import json
import threading
import time

import pytest

from copilot.web import create_app
from tests.helpers import parse_sse


@pytest.fixture
def client(app, tokens):
    """A clinician's API client."""
    client = app.test_client()
    client.environ_base["HTTP_AUTHORIZATION"] = f"Bearer {tokens['clinician']}"
    return client


def test_health_reports_the_model(client):
    response = client.get("/health")
    assert response.status_code == 200
    body = response.get_json()
    assert body["status"] == "ok"
    assert body["model"]["name"] == "fake-engine"
    assert body["model"]["weight_format"] == "fake"


def test_health_without_a_model_is_503(tmp_path):
    app = create_app({"TESTING": True, "home": tmp_path, "model_dir": tmp_path / "missing"})
    response = app.test_client().get("/health")
    assert response.status_code == 503
    assert "copilot model prepare" in response.get_json()["error"]
    assert str(tmp_path) not in response.get_data(as_text=True)  # /health answers anyone: no server paths
    token = app.extensions["copilot.users"].add("doc", "clinician")
    assert app.test_client().post("/api/generate", json={"prompt": "x"},
                                  headers={"Authorization": f"Bearer {token}"}).status_code == 503


def test_generate_streams_server_sent_events(client):
    response = client.post("/api/generate", json={
        "messages": [{"role": "user", "content": "What does BID mean on a prescription?"}], "max_new_tokens": 32})
    assert response.status_code == 200
    assert response.mimetype == "text/event-stream"
    events = parse_sse(response.get_data(as_text=True))
    kinds = [kind for kind, _ in events]
    assert kinds[-1] == "done" and set(kinds[:-1]) == {"token"}
    done = events[-1][1]
    assert "".join(data["text"] for kind, data in events[:-1]) == done["text"]
    for key in ("prompt_tokens", "generated_tokens", "ttft_s", "decode_tokens_per_s"):
        assert key in done["metrics"]


def test_generate_without_streaming(client):
    response = client.post("/api/generate", json={"prompt": "Aspirin is", "max_new_tokens": 8, "stream": False})
    assert response.status_code == 200
    body = response.get_json()
    assert body["metrics"]["generated_tokens"] <= 8 and body["text"]


@pytest.mark.parametrize("payload, message", [
    ("not json", "malformed JSON"),
    ([1, 2], "JSON object"),
    ({"prompt": "x", "evil": 1}, "unknown fields"),
    ({"prompt": ""}, "non-empty"),
    ({"prompt": "x", "max_new_tokens": "lots"}, "max_new_tokens"),
])
def test_bad_requests_are_400(client, payload, message):
    if isinstance(payload, str):
        response = client.post("/api/generate", data=payload, content_type="application/json")
    else:
        response = client.post("/api/generate", json=payload)
    assert response.status_code == 400
    assert message in response.get_json()["error"]


def test_oversized_body_is_refused(client):
    response = client.post("/api/generate", json={"prompt": "x" * (3 * 1024 * 1024)})
    assert response.status_code == 413


def test_production_server_streams_before_generation_ends(app, tokens, fake_engine):
    """Through waitress itself: the first token must arrive well before the last."""
    from waitress.server import create_server

    fake_engine.script = " ".join(str(n) for n in range(4, 200))
    fake_engine.token_delay = 0.005
    server = create_server(app, host="127.0.0.1", port=0, threads=2)
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    try:
        connection = http.client.HTTPConnection("127.0.0.1", server.effective_port, timeout=120)
        connection.request("POST", "/api/generate", body=json.dumps({"prompt": "Counting: 1, 2, 3,", "max_new_tokens": 120}),
                           headers={"Content-Type": "application/json",
                                    "Authorization": f"Bearer {tokens['clinician']}"})
        response = connection.getresponse()
        assert response.status == 200
        arrivals = []
        while True:
            line = response.fp.readline()
            if not line:
                break
            if line.startswith(b"event: "):
                arrivals.append((line[7:].strip().decode(), time.monotonic()))
        kinds = [kind for kind, _ in arrivals]
        assert kinds[-1] == "done" and kinds.count("token") > 10
        first_token, done = arrivals[0][1], arrivals[-1][1]
        assert done - first_token > 0.2, "events were buffered until the end"
    finally:
        server.close()
