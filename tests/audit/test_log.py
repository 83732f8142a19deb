"""The audit log: appends, the chain, each kind of tampering verify() must name, concurrency."""

from __future__ import annotations

import hashlib
import hmac
import json
import os
import sqlite3
import stat
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest

from copilot.audit import GENESIS_HASH, AuditIntegrityError, AuditLog, NoAuditLog, hash_payload
from copilot.audit.log import canonical_json

REPO = Path(__file__).resolve().parents[2]


def append(log: AuditLog, i: int = 0, **overrides):
    values = dict(user="dr.lee", role="clinician", action="draft", patient_ref=f"Patient/{100 + i}",
                  model_id="smollm2-135m-instruct", model_version="int8-2026.4", knowledge_snapshot="kb-1a2b3c",
                  input_hash=hash_payload({"note": f"request {i}"}), output_hash=hash_payload(f"draft {i}"),
                  sources=["drug.warfarin", "interaction.warfarin-nsaid"], tokens=100 + i, latency_ms=450 + i,
                  outcome="success")
    values.update(overrides)
    return log.append(**values)


@pytest.fixture
def log(tmp_path) -> AuditLog:
    audit = AuditLog.for_home(tmp_path)
    for i in range(1, 11):
        append(audit, i)
    audit.flush_anchors()  # as any time after the appends: tampering comes later
    return audit


def tamper(log: AuditLog, *statements: tuple[str, tuple]) -> None:
    """Run SQL through a raw connection with the append-only triggers dropped, as an attacker would."""
    conn = sqlite3.connect(log.path, isolation_level=None)
    try:
        for trigger in ("entries_no_update", "entries_no_delete", "entries_append_at_head"):
            conn.execute(f"DROP TRIGGER IF EXISTS {trigger}")
        for sql, params in statements:
            conn.execute(sql, params)
    finally:
        conn.close()


def row(log: AuditLog, seq: int) -> dict:
    return next(log.entries(after_seq=seq - 1, limit=1)).to_dict()


def insert_sql(entry: dict) -> tuple[str, tuple]:
    entry = {**entry, "sources": json.dumps(entry["sources"])}
    return f"INSERT INTO entries ({', '.join(entry)}) VALUES ({', '.join('?' * len(entry))})", tuple(entry.values())


# -- happy path ---------------------------------------------------------------------------


def test_append_and_verify(tmp_path):
    audit = AuditLog.for_home(tmp_path)
    assert audit.path == tmp_path / "audit" / "audit.db"
    assert audit.verify().ok and audit.verify().count == 0 and audit.head() == (0, GENESIS_HASH)
    first = append(audit, 1, latency_ms=456)  # an int latency must hash the same after the REAL round trip
    second = append(audit, 2, patient_ref=None, user="李医生", outcome="denied", detail="role may not draft",
                    sources=[], tokens=None, latency_ms=None, output_hash=None)
    assert (first.seq, second.seq) == (1, 2)
    assert first.prev_hash == GENESIS_HASH and second.prev_hash == first.hash
    assert first.timestamp <= second.timestamp
    stored = list(audit.entries())
    assert [e.to_dict() for e in stored] == [first.to_dict(), second.to_dict()]
    assert stored[0].latency_ms == 456.0 and stored[0].sources == ("drug.warfarin", "interaction.warfarin-nsaid")
    assert stored[1].user == "李医生" and stored[1].patient_ref is None and stored[1].sources == ()
    result = audit.verify()
    assert (result.ok, result.count, result.first_bad, result.head) == (True, 2, None, (2, second.hash))
    assert audit.head() == (2, second.hash)
    assert json.loads(audit.head_path.read_text()) == {"seq": 2, "hash": second.hash}
    assert [e.seq for e in audit.entries(after_seq=1)] == [2] and [e.seq for e in audit.entries(limit=1)] == [1]
    with sqlite3.connect(audit.path) as raw:
        assert raw.execute("PRAGMA journal_mode").fetchone()[0] == "wal"


def test_hash_is_keyed_hmac_over_every_field(log):
    entry = row(log, 4)
    key = log.key_path.read_bytes()
    unsigned = {k: v for k, v in entry.items() if k != "hash"}
    assert entry["hash"] == hmac.new(key, canonical_json(unsigned), hashlib.sha256).hexdigest()
    assert entry["hash"] != hashlib.sha256(canonical_json(unsigned)).hexdigest()


def test_key_and_anchor_are_private(log):
    assert len(log.key_path.read_bytes()) == 32
    assert stat.S_IMODE(log.key_path.stat().st_mode) == 0o600
    assert stat.S_IMODE(log.path.stat().st_mode) == 0o600
    reopened = AuditLog(log.path)
    assert reopened.verify().ok and append(reopened, 11).seq == 11


def test_hash_payload():
    assert hash_payload(b"\x00\xff") == "sha256:" + hashlib.sha256(b"\x00\xff").hexdigest()
    assert hash_payload("胸痛") == "sha256:" + hashlib.sha256("胸痛".encode()).hexdigest()
    assert hash_payload({"b": 1, "a": [1, "x"]}) == hash_payload({"a": [1, "x"], "b": 1})
    assert hash_payload({"a": 1}) == "sha256:" + hashlib.sha256(b'{"a":1}').hexdigest()
    with pytest.raises(TypeError):
        hash_payload({"a": object()})


@pytest.mark.parametrize("field, value", [
    ("input_hash", "chest pain for 3 days"),
    ("output_hash", "sha256:1234"),
    ("input_hash", hashlib.sha256(b"x").hexdigest()),
    ("patient_ref", "John Smith"),
    ("patient_ref", "Patient/12 3"),
    ("sources", "drug.warfarin"),
    ("sources", ["drug warfarin with a sentence"]),
    ("model_id", "a model\nwith lines"),
    ("tokens", -1),
    ("tokens", True),
    ("latency_ms", float("nan")),
    ("outcome", "ok"),
    ("user", ""),
    ("role", "x" * 200),
    ("detail", "line one\nline two"),
])
def test_rejects_values_that_could_carry_patient_text(tmp_path, field, value):
    audit = AuditLog.for_home(tmp_path)
    with pytest.raises(ValueError, match=field):
        append(audit, **{field: value})
    assert audit.head()[0] == 0


# -- append-only triggers -----------------------------------------------------------------


def test_triggers_refuse_update_delete_and_out_of_chain_insert(log):
    conn = sqlite3.connect(log.path, isolation_level=None)
    with pytest.raises(sqlite3.IntegrityError, match="append-only"):
        conn.execute("UPDATE entries SET user = 'mallory' WHERE seq = 3")
    with pytest.raises(sqlite3.IntegrityError, match="append-only"):
        conn.execute("DELETE FROM entries WHERE seq = 10")
    forged = {**row(log, 5), "seq": 11}  # right seq, wrong prev_hash
    with pytest.raises(sqlite3.IntegrityError, match="append-only"):
        conn.execute(*insert_sql(forged))
    conn.close()
    assert log.verify().ok


# -- tampering ----------------------------------------------------------------------------


@pytest.mark.parametrize("column, value", [
    ("user", "mallory"), ("patient_ref", "Patient/999"), ("sources", '["drug.aspirin"]'), ("tokens", 1),
    ("latency_ms", 1.5), ("timestamp", "2020-01-01T00:00:00.000000+00:00"), ("outcome", "error"),
    ("output_hash", "sha256:" + "0" * 64)])
def test_edit_a_field(log, column, value):
    tamper(log, (f"UPDATE entries SET {column} = ? WHERE seq = 4", (value,)))
    result = log.verify()
    assert (result.ok, result.first_bad) == (False, 4)
    assert "edited" in result.reason


def test_drop_the_triggers_and_update(log):
    tamper(log, ("UPDATE entries SET action = 'read' WHERE seq = 7", ()))
    result = log.verify()
    assert not result.ok and result.first_bad == 7 and "edited" in result.reason


def test_edit_and_rehash_without_the_key(log):
    entry = row(log, 6)
    entry["user"] = "mallory"
    forged_hash = hashlib.sha256(canonical_json({k: v for k, v in entry.items() if k != "hash"})).hexdigest()
    tamper(log, ("UPDATE entries SET user = 'mallory', hash = ? WHERE seq = 6", (forged_hash,)))
    result = log.verify()
    assert not result.ok and result.first_bad == 6


def test_delete_a_middle_entry(log):
    tamper(log, ("DELETE FROM entries WHERE seq = 5", ()))
    result = log.verify()
    assert (result.ok, result.first_bad) == (False, 5)
    assert "entry 5 is missing" in result.reason and "deleted" in result.reason


def test_delete_a_middle_entry_and_renumber(log):
    tamper(log, ("DELETE FROM entries WHERE seq = 5", ()),
           *[("UPDATE entries SET seq = ? WHERE seq = ?", (seq - 1, seq)) for seq in range(6, 11)])
    result = log.verify()
    assert (result.ok, result.first_bad) == (False, 5)
    assert "does not link to entry 4" in result.reason


def test_insert_a_forged_entry(log):
    forged = {**row(log, 3), "seq": 4, "user": "mallory", "prev_hash": row(log, 3)["hash"],
              "hash": hmac.new(os.urandom(32), b"guess", hashlib.sha256).hexdigest()}
    tamper(log, *[("UPDATE entries SET seq = ? WHERE seq = ?", (seq + 1, seq)) for seq in range(10, 3, -1)],
           insert_sql(forged))
    result = log.verify()
    assert (result.ok, result.count) == (False, 4)
    assert result.first_bad == 4 and "forged" in result.reason


def test_insert_a_forged_entry_at_the_head_with_triggers_intact(log):
    last = row(log, 10)
    forged = {**last, "seq": 11, "prev_hash": last["hash"], "user": "mallory",
              "hash": hashlib.sha256(b"forged").hexdigest()}
    conn = sqlite3.connect(log.path, isolation_level=None)
    conn.execute(*insert_sql(forged))  # the trigger only checks the link; the key is what it lacks
    conn.close()
    result = log.verify()
    assert (result.ok, result.first_bad) == (False, 11) and "forged" in result.reason


def test_insert_before_the_first_entry(log):
    tamper(log, insert_sql({**row(log, 1), "seq": 0}))
    result = log.verify()
    assert (result.ok, result.first_bad) == (False, 0) and "inserted" in result.reason


def test_swap_two_entries(log):
    third, fourth = row(log, 3), row(log, 4)
    columns = [c for c in third if c != "seq"]
    assignments = ", ".join(f"{c} = ?" for c in columns)
    values = lambda entry: tuple(json.dumps(entry[c]) if c == "sources" else entry[c] for c in columns)  # noqa: E731
    tamper(log, (f"UPDATE entries SET {assignments} WHERE seq = 3", (*values(fourth),)),
           (f"UPDATE entries SET {assignments} WHERE seq = 4", (*values(third),)))
    result = log.verify()
    assert (result.ok, result.first_bad) == (False, 3)
    assert "reordered" in result.reason and "seq 4" in result.reason


def test_swap_seq_numbers(log):
    tamper(log, ("UPDATE entries SET seq = 100 WHERE seq = 8", ()), ("UPDATE entries SET seq = 8 WHERE seq = 9", ()),
           ("UPDATE entries SET seq = 9 WHERE seq = 100", ()))
    result = log.verify()
    assert (result.ok, result.first_bad) == (False, 8) and "reordered" in result.reason


def test_truncate_the_tail(log):
    tamper(log, ("DELETE FROM entries WHERE seq > 8", ()))
    result = log.verify()
    assert (result.ok, result.first_bad, result.count) == (False, 9, 8)
    assert "tail truncated" in result.reason and "9..10" in result.reason


def test_truncate_everything(log):
    tamper(log, ("DELETE FROM entries", ()))
    result = log.verify()
    assert (result.ok, result.first_bad) == (False, 1) and "tail truncated" in result.reason


def test_anchor_rewritten_or_deleted(log):
    log.head_path.write_text(json.dumps({"seq": 10, "hash": "f" * 64}))
    result = log.verify()
    assert (result.ok, result.first_bad) == (False, 10) and "head anchor" in result.reason
    log.head_path.unlink()
    result = log.verify()
    assert not result.ok and "anchor" in result.reason and "missing" in result.reason
    append(log, 11)
    assert log.flush_anchors() and not log.head_path.exists(), "a deleted anchor must not be silently re-created"


def test_truncation_with_a_rewritten_anchor_needs_a_head_kept_elsewhere(log):
    kept = log.head()
    tamper(log, ("DELETE FROM entries WHERE seq > 8", ()))
    log.head_path.write_text(json.dumps({"seq": 8, "hash": row(log, 8)["hash"]}))
    result = log.verify()  # the copy outside the audit folder still says 10
    assert (result.ok, result.first_bad) == (False, 9) and "external anchor" in result.reason
    log.anchor_path.write_text(log.head_path.read_text())
    assert log.verify().ok  # the documented limit: the files alone are consistent again
    result = log.verify(expect_head=kept)
    assert (result.ok, result.first_bad) == (False, 9) and "truncated" in result.reason
    assert not log.verify(expect_head=(5, "a" * 64)).ok
    assert log.verify(expect_head=(5, row(log, 5)["hash"])).ok


def test_wrong_or_missing_key(log):
    log.key_path.write_bytes(os.urandom(32))
    result = AuditLog(log.path).verify()
    assert (result.ok, result.first_bad) == (False, 1)
    log.key_path.unlink()
    with pytest.raises(AuditIntegrityError, match="key"):
        AuditLog(log.path)


def test_missing_database(log, tmp_path):
    log.close()
    for suffix in ("", "-wal", "-shm"):
        Path(f"{log.path}{suffix}").unlink(missing_ok=True)
    with pytest.raises(AuditIntegrityError, match="missing"):
        AuditLog(log.path)
    with pytest.raises(NoAuditLog):
        AuditLog.for_home(tmp_path / "elsewhere", create=False)


# -- concurrency --------------------------------------------------------------------------

CHILD = """
import sys, time
from pathlib import Path
from copilot.audit import AuditLog, hash_payload
path, name, count = sys.argv[1], sys.argv[2], int(sys.argv[3])
go = Path(path).parent.parent / "go"
Path(path).parent.parent.joinpath(f"ready-{name}").touch()
while not go.exists():
    time.sleep(0.005)
log = AuditLog(path)
for i in range(count):
    log.append(user=name, role="clinician", action="draft", patient_ref=f"Patient/{i}",
               input_hash=hash_payload([name, i]), output_hash=hash_payload(i), sources=["drug.warfarin"])
"""


def _children(path: Path, names: list[str], count: int) -> list[subprocess.Popen]:
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    return [subprocess.Popen([sys.executable, "-c", CHILD, str(path), name, str(count)], env=env) for name in names]


def _wait_ready(home: Path, names: list[str]) -> None:
    deadline = time.monotonic() + 30
    while not all((home / f"ready-{n}").exists() for n in names):
        assert time.monotonic() < deadline, "child processes did not start"
        time.sleep(0.01)


def test_concurrent_threads_and_processes_lose_nothing(tmp_path):
    path = tmp_path / "audit" / "audit.db"
    processes = ["proc-0", "proc-1"]
    children = _children(path, processes, 50)
    _wait_ready(tmp_path, processes)
    (tmp_path / "go").touch()  # the processes race the threads to create the fresh log
    log = AuditLog(path)
    errors: list[BaseException] = []

    def worker(n: int) -> None:
        try:
            for i in range(50):
                append(log, i, user=f"thread-{n}")
        except BaseException as exc:  # noqa: BLE001
            errors.append(exc)

    threads = [threading.Thread(target=worker, args=(n,)) for n in range(8)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert [child.wait(timeout=120) for child in children] == [0, 0]
    assert not errors, errors
    entries = list(log.entries())
    assert [e.seq for e in entries] == list(range(1, 501))
    by_writer: dict[str, int] = {}
    for entry in entries:
        by_writer[entry.user] = by_writer.get(entry.user, 0) + 1
    assert by_writer == {**{f"thread-{n}": 50 for n in range(8)}, **{name: 50 for name in processes}}
    for writer in by_writer:  # group commits keep each writer's appends in the order it made them
        refs = [int(e.patient_ref.split("/")[1]) for e in entries if e.user == writer]
        assert refs == sorted(refs), writer
    assert log.verify().ok
    result = log.verify()
    assert (result.ok, result.count) == (True, 500), result.reason
    assert json.loads(log.head_path.read_text()) == {"seq": 500, "hash": entries[-1].hash}


def test_anchors_follow_the_appends_and_never_lead_the_log(tmp_path):
    """Anchors are written behind the commits (an append costs one fsynced commit, not three
    fsynced files), coalescing bursts: after a flush they hold the newest entry."""
    log = AuditLog.for_home(tmp_path)
    for i in range(50):
        append(log, i)
        anchored = json.loads(log.head_path.read_text())["seq"]
        assert anchored <= i + 1  # behind or level, never ahead of what was committed
    assert log.flush_anchors()
    for path in (log.head_path, log.anchor_path):
        assert json.loads(path.read_text()) == {"seq": 50, "hash": log.head()[1]}
    log.close()
