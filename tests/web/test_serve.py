"""`copilot serve` as a process: clients that hang up mid-response must not end it.

The issue: `GET /static/sidebar.js` closed by the client before reading it (or an SSE stream
dropped mid-way) ended the server with exit status 141 and no log line, because the CLI set
SIGPIPE to its default action for every command. The server here is the real entry point
(`copilot.cli.main`, argv from the command line, waitress) with the scripted engine in place of
the model, and its clients reset their connections at the worst moments.
"""

from __future__ import annotations

import http.client
import json
import os
import socket
import struct
import subprocess
import sys
import time
from pathlib import Path

import pytest

from copilot.audit import AuditLog
from copilot.users import UserStore

REPO = Path(__file__).resolve().parents[2]
SERVE = """
import sys
from pathlib import Path

import copilot.web
from tests.fake_engine import FakeEngine

engine = FakeEngine(" ".join(str(n) for n in range(3000)), token_delay=0.002).write_manifest(Path(sys.argv[1]))
copilot.web._load_engine = lambda app, settings: engine
from copilot.cli import main

sys.argv = ["copilot", "serve", "--host", "127.0.0.1", "--port", sys.argv[2]]
sys.exit(main())
"""


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


@pytest.fixture
def server(tmp_path):
    home = tmp_path / "home"
    token = UserStore(home / "users.db").add("doc", "clinician")
    port = free_port()
    env = {**os.environ, "COPILOT_HOME": str(home), "COPILOT_KNOWLEDGE_HOME": str(tmp_path / "no-knowledge"),
           "PYTHONPATH": str(REPO)}
    process = subprocess.Popen([sys.executable, "-c", SERVE, str(tmp_path / "model"), str(port)], env=env,
                               stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    deadline = time.monotonic() + 120
    while True:
        assert process.poll() is None, process.stderr.read().decode()[-2000:]
        try:
            connection = http.client.HTTPConnection("127.0.0.1", port, timeout=5)
            connection.request("GET", "/health")
            if connection.getresponse().status == 200:
                break
        except OSError:
            pass
        assert time.monotonic() < deadline, "the server did not start"
        time.sleep(0.2)
    yield process, port, token, home
    process.terminate()
    process.wait(timeout=30)


def reset(sock: socket.socket) -> None:
    """Close with a TCP reset: every later write by the server fails (EPIPE, SIGPIPE if not ignored)."""
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
    sock.close()


def send(port: int, raw: bytes) -> socket.socket:
    sock = socket.create_connection(("127.0.0.1", port), timeout=30)
    sock.sendall(raw)
    return sock


def generate_request(token: str) -> bytes:
    body = json.dumps({"prompt": "Count.", "max_new_tokens": 3000}).encode()
    return (b"POST /api/generate HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
            + f"Authorization: Bearer {token}\r\nContent-Length: {len(body)}\r\n\r\n".encode() + body)


def test_clients_hanging_up_mid_response_never_end_the_server(server):
    process, port, token, home = server
    static = b"GET /static/sidebar.js HTTP/1.1\r\nHost: x\r\n\r\n"
    for _ in range(20):  # gone before reading a byte
        reset(send(port, static))
    for _ in range(5):  # gone after the first bytes of the file
        sock = send(port, static)
        sock.recv(100)
        reset(sock)
    for _ in range(3):  # gone in the middle of a stream
        sock = send(port, generate_request(token))
        received = b""
        while received.count(b"event: token") < 3:
            received += sock.recv(4096)
        reset(sock)
    for _ in range(3):  # gone before the body it announced
        reset(send(port, generate_request(token)[:-10]))
    time.sleep(1.0)
    assert process.poll() is None, f"the server died (exit status {process.returncode})"
    connection = http.client.HTTPConnection("127.0.0.1", port, timeout=30)
    connection.request("GET", "/health")
    assert connection.getresponse().status == 200
    deadline = time.monotonic() + 30
    while True:  # each dropped stream is audited once, as cancelled
        entries = [e.outcome for e in AuditLog.for_home(home, create=False).entries() if e.action == "generate"]
        if len(entries) >= 3 or time.monotonic() > deadline:
            break
        time.sleep(0.2)
    assert entries == ["cancelled"] * 3
