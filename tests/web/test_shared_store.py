"""Two servers (replicas) on one PostgreSQL instance database: the same users and sign-outs, and one
audit chain that holds every request of both, concurrently, and verifies."""

from __future__ import annotations

import json
import shutil
from concurrent.futures import ThreadPoolExecutor

import pytest

from copilot.audit.shared import SharedAuditLog
from copilot.users.store import SharedUserStore
from tests.helpers import NOTE, make_record

pytestmark = pytest.mark.postgres


@pytest.fixture
def replicas(postgres_server, fake_engine, shipped_home, tmp_path, monkeypatch):
    from copilot.web import create_app
    from copilot.web.qc_api import EXTENSION

    monkeypatch.setenv("COPILOT_DATABASE_URL", postgres_server())
    apps = []
    for name in ("a", "b"):
        home = tmp_path / name
        if apps:  # the second server gets the first one's audit key, as a deployment copies it
            (home / "audit").mkdir(parents=True)
            shutil.copy2(tmp_path / "a" / "audit" / "audit.key", home / "audit" / "audit.key")
        apps.append(create_app({"TESTING": True, "home": home, "knowledge_home": shipped_home}, engine=fake_engine))
    yield apps
    for app in apps:
        app.extensions[EXTENSION].stop()
        app.extensions["copilot.audit"].close()


def test_replicas_share_users_and_one_audit_chain(replicas):
    one, two = replicas
    assert isinstance(one.extensions["copilot.users"], SharedUserStore)
    assert isinstance(two.extensions["copilot.audit"], SharedAuditLog)
    token = one.extensions["copilot.users"].add("clin", "clinician")  # added on one, signs in on both
    headers = {"Authorization": f"Bearer {token}"}
    raw = json.dumps(make_record(NOTE)).encode()

    def call(index: int) -> int:
        client = replicas[index % 2].test_client()
        return client.post("/api/qc", data=raw, content_type="application/json", headers=headers).status_code

    with ThreadPoolExecutor(8) as pool:
        statuses = list(pool.map(call, range(40)))
    assert statuses == [200] * 40
    log = one.extensions["copilot.audit"]
    entries = list(log.entries())
    assert [e.seq for e in entries] == list(range(1, 41))
    assert all((e.action, e.user, e.outcome) == ("qc", "clin", "success") for e in entries)
    assert log.verify().ok and two.extensions["copilot.audit"].verify().ok

    two.extensions["copilot.users"].set_disabled("clin", True)  # disabled on two: refused on one
    refused = one.test_client().post("/api/qc", data=raw, content_type="application/json", headers=headers)
    assert refused.status_code == 401
