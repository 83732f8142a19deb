"""Admission control: generations have their own slots, a caller beyond them gets 503 at once, and
health checks and QC keep their threads while every generation slot streams (the issue: the 9th
concurrent generation hung up to 35 s and /health waited 16-21 s behind it)."""

from __future__ import annotations

import http.client
import json
import socket
import struct
import threading
import time

import pytest

from copilot.web.admission import Gate, capacity
from tests.helpers import NOTE, make_app, make_record


def test_the_gate_admits_up_to_its_slots_and_never_waits():
    gate = Gate(2)
    first, second = gate.enter(), gate.enter()
    assert first and second and gate.enter() is None and gate.in_use == 2
    first.release()
    first.release()  # idempotent: the stream's end and its close both release
    assert gate.in_use == 1 and gate.enter() is not None


def test_capacity_comes_from_the_engine_when_it_declares_one():
    class Declared:
        capacity = 48

    assert capacity(Declared(), max_queue=16) == 48
    assert capacity(object(), max_queue=16) == 17  # one running plus the queue
    assert capacity(None, max_queue=3) == 4


@pytest.fixture
def served(shipped_home, tmp_path, tokens_for):
    """The app under waitress itself (as `copilot serve` builds it): 2 generation slots, 2 other threads."""
    from copilot.web.cli import make_server
    from tests.fake_engine import FakeEngine

    engine = FakeEngine(" ".join(str(n) for n in range(400)), token_delay=0.01, max_queue=1)
    engine.write_manifest(tmp_path / "model")
    from copilot.web import create_app

    app = create_app({"TESTING": True, "home": tmp_path / "home", "knowledge_home": shipped_home, "max_queue": 1,
                      "threads": 2}, engine=engine)
    server = make_server(app, host="127.0.0.1", port=0)
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    try:
        yield app, server.effective_port, tokens_for(app)
    finally:
        server.close()
        app.extensions["copilot.qc_jobs"].stop()


@pytest.fixture
def tokens_for():
    def make(app):
        return app.extensions["copilot.users"].add("clin", "clinician")
    return make


def request(port: int, method: str, path: str, token: str | None = None, body: dict | None = None,
            timeout: float = 60) -> tuple[int, dict, bytes, float]:
    started = time.monotonic()
    connection = http.client.HTTPConnection("127.0.0.1", port, timeout=timeout)
    headers = {"Content-Type": "application/json"}
    if token:
        headers["Authorization"] = f"Bearer {token}"
    connection.request(method, path, body=json.dumps(body) if body is not None else None, headers=headers)
    response = connection.getresponse()
    data = response.read()
    connection.close()
    return response.status, dict(response.getheaders()), data, time.monotonic() - started


def test_excess_generations_are_refused_at_once_while_health_and_qc_answer(served):
    app, port, token = served
    assert app.extensions["copilot.admission"].slots == 2
    streams = []

    def generate():
        streams.append(request(port, "POST", "/api/generate", token, {"prompt": "Count.", "max_new_tokens": 400}))

    running = [threading.Thread(target=generate) for _ in range(2)]
    for thread in running:
        thread.start()
    deadline = time.monotonic() + 30
    while app.extensions["copilot.admission"].in_use < 2:
        assert time.monotonic() < deadline, "the two generations did not start"
        time.sleep(0.01)

    status, headers, body, elapsed = request(port, "POST", "/api/generate", token, {"prompt": "One more."})
    assert status == 503 and int(headers["Retry-After"]) > 0 and "slot" in json.loads(body)["error"]
    assert elapsed < 2.0, f"refused after {elapsed:.2f} s, not at once"  # the streams last about 4 s
    for path in ("/health", "/metrics"):
        status, _, _, elapsed = request(port, "GET", path)
        assert status == 200 and elapsed < 2.0
    status, _, _, _ = request(port, "POST", "/api/qc", token, make_record(NOTE))
    assert status == 200
    assert app.extensions["copilot.admission"].in_use == 2, "the streams were still running throughout"

    for thread in running:
        thread.join()
    assert [s[0] for s in streams] == [200, 200] and all(b"event: done" in s[2] for s in streams)
    assert app.extensions["copilot.admission"].in_use == 0
    assert request(port, "POST", "/api/generate", token, {"prompt": "Now.", "max_new_tokens": 3})[0] == 200
    outcomes = [e.outcome for e in app.extensions["copilot.audit"].entries() if e.action == "generate"]
    assert sorted(outcomes) == ["error", "success", "success", "success"]  # the refusal is audited too


def test_a_client_that_drops_a_stream_gives_its_slot_back(served):
    app, port, token = served
    body = json.dumps({"prompt": "Count.", "max_new_tokens": 400}).encode()
    with socket.create_connection(("127.0.0.1", port), timeout=30) as sock:
        sock.sendall(b"POST /api/generate HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
                     + f"Authorization: Bearer {token}\r\nContent-Length: {len(body)}\r\n\r\n".encode() + body)
        received = b""
        while b"event: token" not in received:
            received += sock.recv(4096)
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))  # reset, as a crash would
    deadline = time.monotonic() + 30
    while app.extensions["copilot.admission"].in_use:
        assert time.monotonic() < deadline, "the dropped stream kept its slot"
        time.sleep(0.05)
    [entry] = [e for e in app.extensions["copilot.audit"].entries() if e.action == "generate"]
    assert entry.outcome == "cancelled"


def test_the_server_has_a_thread_per_slot_on_top_of_the_others(fake_engine, shipped_home, tmp_path):
    from copilot.web.cli import make_server

    app = make_app(fake_engine, shipped_home, tmp_path / "home")
    server = make_server(app, host="127.0.0.1", port=0)
    try:
        settings = app.extensions["copilot.settings"]
        assert server.adj.threads == settings.threads + settings.max_queue + 1
    finally:
        server.close()
        app.extensions["copilot.qc_jobs"].stop()
