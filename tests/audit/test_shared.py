"""The audit log on the shared PostgreSQL store: one gap-free chain across processes and threads,
tampering named by verify, the key kept outside the database and checked, `copilot audit verify`."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import psycopg
import pytest

from copilot.audit import AuditIntegrityError, AuditLog, hash_payload
from copilot.audit.shared import SharedAuditLog, _connect_kwargs, open_audit_log

pytestmark = pytest.mark.postgres
REPO = Path(__file__).resolve().parents[2]


def append(log: AuditLog, i: int = 0, **overrides):
    values = dict(user="dr.lee", role="clinician", action="draft", patient_ref=f"Patient/{100 + i}",
                  model_id="smollm2-135m-instruct", knowledge_snapshot="kb-1a2b3c",
                  input_hash=hash_payload({"note": f"request {i}"}), output_hash=hash_payload(f"draft {i}"),
                  sources=["drug.warfarin"], tokens=100 + i, latency_ms=450.125 + i, outcome="success")
    values.update(overrides)
    return log.append(**values)


@pytest.fixture
def pg_url(postgres_server):
    return postgres_server()


@pytest.fixture
def shared(pg_url, tmp_path) -> SharedAuditLog:
    log = SharedAuditLog.for_home(tmp_path, url=pg_url)
    yield log
    log.close()


def sql(url: str, statement: str, params=()):
    with psycopg.connect(autocommit=True, **_connect_kwargs(url)) as conn:
        cursor = conn.execute(statement, params or None)
        return cursor.fetchall() if cursor.description else None


def test_appends_chain_and_verify(shared, pg_url):
    first = append(shared, 1)
    second = append(shared, 2, patient_ref=None, sources=[], tokens=None, latency_ms=None, detail="ok")
    assert (first.seq, second.seq, second.prev_hash) == (1, 2, first.hash)
    assert [e.to_dict() for e in shared.entries()] == [first.to_dict(), second.to_dict()]
    assert shared.head() == (2, second.hash) and shared.count() == 2
    result = shared.verify(expect_head=(1, first.hash))
    assert result.ok and result.count == 2 and result.head == (2, second.hash), result
    assert sql(pg_url, "SELECT seq, hash FROM audit_head") == [(2, second.hash)]
    assert sql(pg_url, "SELECT key_id FROM audit_head")[0][0] not in (None, "")
    assert not list(Path(shared.key_path).parent.glob("*.db"))  # nothing of the log on disk but the key


def test_the_database_refuses_edits_deletions_and_inserts_off_the_chain(shared, pg_url):
    entry = append(shared, 1)
    for statement in ("UPDATE audit_entries SET \"user\" = 'x'", "DELETE FROM audit_entries",
                      "TRUNCATE audit_entries", "DELETE FROM audit_head",
                      "UPDATE audit_head SET seq = 0, hash = repeat('0', 64)"):
        with pytest.raises(psycopg.errors.RaiseException, match="append-only|only moves"):
            sql(pg_url, statement)
    columns = ", ".join(f'"{c}"' for c in entry.to_dict())
    values = {**entry.to_dict(), "seq": 5, "sources": "[]"}
    with pytest.raises(psycopg.errors.RaiseException, match="extend the chain"):
        sql(pg_url, f"INSERT INTO audit_entries ({columns}) VALUES ({', '.join(['%s'] * len(values))})",
            tuple(values.values()))
    assert shared.verify().ok


def test_verify_names_an_edit_and_a_truncation_made_with_the_triggers_disabled(shared, pg_url, tmp_path):
    for i in range(1, 6):
        append(shared, i)
    shared.flush_anchors()
    sql(pg_url, "ALTER TABLE audit_entries DISABLE TRIGGER USER")
    sql(pg_url, "UPDATE audit_entries SET tokens = 9999 WHERE seq = 3")
    result = shared.verify()
    assert not result.ok and result.first_bad == 3 and "edited" in result.reason
    sql(pg_url, "DELETE FROM audit_entries WHERE seq >= 3")  # the head row still says 5
    result = shared.verify()
    assert not result.ok and result.first_bad == 3 and "deleted" in result.reason, result
    sql(pg_url, "ALTER TABLE audit_head DISABLE TRIGGER USER")
    two = sql(pg_url, "SELECT hash FROM audit_entries WHERE seq = 2")[0][0]
    sql(pg_url, "UPDATE audit_head SET seq = 2, hash = %s", (two,))  # the head rewritten too: the local anchor knows
    result = shared.verify()
    assert not result.ok and "external anchor" in result.reason, result
    with pytest.raises(AuditIntegrityError, match="cut off"):
        SharedAuditLog.for_home(tmp_path, url=pg_url)


def test_a_replica_with_another_key_refuses_to_open(shared, pg_url, tmp_path):
    append(shared, 1)
    other = tmp_path / "other"
    other.mkdir()
    with pytest.raises(AuditIntegrityError, match="key .* is missing"):
        SharedAuditLog.for_home(other, url=pg_url)
    (other / "audit").mkdir()
    (other / "audit" / "audit.key").write_bytes(b"\x01" * 32)
    (other / "audit" / "audit.key").chmod(0o600)
    with pytest.raises(AuditIntegrityError, match="not the key"):
        SharedAuditLog.for_home(other, url=pg_url)
    (other / "audit" / "audit.key").write_bytes(Path(shared.key_path).read_bytes())
    (other / "audit" / "audit.key").chmod(0o600)
    replica = SharedAuditLog.for_home(other, url=pg_url)  # a second machine with the copied key
    assert append(replica, 2).seq == 2 and shared.verify().ok and replica.verify().ok
    replica.close()


APPENDER = r"""
import sys, threading
from copilot.audit import hash_payload
from copilot.audit.shared import SharedAuditLog
url, home, name, threads, each = sys.argv[1], sys.argv[2], sys.argv[3], int(sys.argv[4]), int(sys.argv[5])
log = SharedAuditLog.for_home(home, url=url)
failures = []
def work(t):
    for i in range(each):
        try:
            log.append(user=f"{name}-{t}", role="clinician", action="draft", detail=f"{i}",
                       input_hash=hash_payload(f"{name} {t} {i}"))
        except Exception as exc:
            failures.append(repr(exc))
workers = [threading.Thread(target=work, args=(t,)) for t in range(threads)]
[w.start() for w in workers]
[w.join() for w in workers]
log.close()
print(len(failures), failures[:3])
sys.exit(1 if failures else 0)
"""


def test_two_processes_of_eight_threads_append_one_gap_free_chain(shared, pg_url, tmp_path):
    """Two servers (processes, each with its own anchor folder) share one chain through the head-row lock."""
    key = Path(shared.key_path).read_bytes()
    homes = []
    for name in ("a", "b"):
        home = tmp_path / name
        (home / "audit").mkdir(parents=True)
        (home / "audit" / "audit.key").write_bytes(key)
        (home / "audit" / "audit.key").chmod(0o600)
        homes.append(home)
    each = 25
    processes = [subprocess.Popen([sys.executable, "-c", APPENDER, pg_url, str(home), home.name, "8", str(each)],
                                  cwd=REPO, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
                 for home in homes]
    results = [p.communicate(timeout=300) for p in processes]
    assert [p.returncode for p in processes] == [0, 0], results
    total = 2 * 8 * each
    entries = list(shared.entries())
    assert [e.seq for e in entries] == list(range(1, total + 1))
    assert len({(e.user, e.detail) for e in entries}) == total  # every append present exactly once
    result = shared.verify()
    assert result.ok and result.count == total, result
    for home in homes:  # each machine's anchor verifies against the one chain
        assert SharedAuditLog.for_home(home, url=pg_url, create=False).verify().ok


def test_the_settings_pick_the_backend_and_the_cli_verifies_either(pg_url, tmp_path, monkeypatch):
    from copilot.config import Settings

    sqlite_home, pg_home = tmp_path / "sqlite", tmp_path / "pg"
    assert type(open_audit_log(Settings(home=sqlite_home))) is AuditLog
    monkeypatch.setenv("COPILOT_DATABASE_URL", pg_url)
    log = open_audit_log(Settings(home=pg_home))
    assert isinstance(log, SharedAuditLog)
    head = append(log, 1)
    log.close()
    monkeypatch.delenv("COPILOT_DATABASE_URL")
    for home, url in ((sqlite_home, None), (pg_home, pg_url)):
        env = {k: v for k, v in os.environ.items() if k != "COPILOT_DATABASE_URL"}
        env.update({"COPILOT_HOME": str(home)}, **({"COPILOT_DATABASE_URL": url} if url else {}))
        done = subprocess.run([sys.executable, "-m", "copilot", "audit", "verify"], cwd=REPO, capture_output=True,
                              text=True, timeout=120, env=env)
        assert done.returncode == 0, done.stdout + done.stderr
        assert done.stdout.startswith("ok: 1 entries" if url else "ok: 0 entries")
    assert f"head 1:{head.hash}" in done.stdout
    exported = subprocess.run([sys.executable, "-m", "copilot", "audit", "export", "--format", "jsonl"], cwd=REPO, capture_output=True,
                              text=True, timeout=120, env=env)
    assert exported.returncode == 0 and json.loads(exported.stdout.splitlines()[0])["hash"] == head.hash, exported
