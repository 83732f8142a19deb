"""`copilot audit ...` through argparse: exit codes and what is printed."""

from __future__ import annotations

import json
import sqlite3

import pytest
from fhir.resources.R4B.auditevent import AuditEvent
from fhir.resources.R4B.bundle import Bundle

from copilot.audit import AuditIntegrityError, AuditLog, hash_payload
from copilot.cli import main


def run(*argv: str) -> int:
    return main(list(argv))


@pytest.fixture
def home(tmp_path, monkeypatch):
    monkeypatch.setenv("COPILOT_HOME", str(tmp_path))
    return tmp_path


@pytest.fixture
def log(home) -> AuditLog:
    audit = AuditLog.for_home(home)
    for i in range(1, 6):
        audit.append(user=f"dr.{i}", role="clinician", action="draft", patient_ref=f"Patient/{i}",
                     model_id="smollm2-135m-instruct", model_version="int8", knowledge_snapshot="kb-1",
                     input_hash=hash_payload(i), output_hash=hash_payload(-i), sources=["drug.warfarin"],
                     tokens=10 * i, latency_ms=100.25 * i)
    audit.flush_anchors()
    return audit


def break_entry(audit: AuditLog, seq: int) -> None:
    conn = sqlite3.connect(audit.path, isolation_level=None)
    conn.execute("DROP TRIGGER entries_no_update")
    conn.execute("UPDATE entries SET user = 'mallory' WHERE seq = ?", (seq,))
    conn.close()


def test_verify_ok_and_failed(log, capsys):
    assert run("audit", "verify") == 0
    seq, digest = log.head()
    assert capsys.readouterr().out.strip() == f"ok: 5 entries, head 5:{digest}"
    break_entry(log, 3)
    assert run("audit", "verify") == 1
    out = capsys.readouterr().out
    assert out.startswith("FAILED: entry 3: ") and "edited" in out


def test_verify_truncated_tail_names_the_first_missing_entry(log, capsys):
    conn = sqlite3.connect(log.path, isolation_level=None)
    conn.execute("DROP TRIGGER entries_no_delete")
    conn.execute("DELETE FROM entries WHERE seq = 5")
    conn.close()
    assert run("audit", "verify") == 1
    assert "FAILED: entry 5: " in capsys.readouterr().out


def test_head_and_expect_head(log, capsys):
    assert run("audit", "head") == 0
    head = capsys.readouterr().out.strip()
    assert head == "{}:{}".format(*log.head())
    assert run("audit", "head", "--json") == 0
    assert json.loads(capsys.readouterr().out)["seq"] == 5
    assert run("audit", "verify", "--expect-head", head) == 0
    assert run("audit", "verify", "--expect-head", f"9:{'a' * 64}") == 1
    assert "truncated" in capsys.readouterr().out
    with pytest.raises(SystemExit) as exc:
        run("audit", "verify", "--expect-head", "five")
    assert exc.value.code == 2


def test_no_log_is_a_usage_error(home, capsys):
    assert run("audit", "verify") == 2
    assert "no audit log" in capsys.readouterr().err
    assert not (home / "audit" / "audit.db").exists()
    assert run("audit") == 2


def test_export_fhir_ndjson_and_bundle(log, home, capsys):
    out = home / "audit.ndjson"
    assert run("audit", "export", "--format", "fhir", "--out", str(out)) == 0
    lines = out.read_text().splitlines()
    assert len(lines) == 5
    events = [AuditEvent.model_validate_json(line) for line in lines]
    assert [e.entity[0].what.reference for e in events] == [f"Patient/{i}" for i in range(1, 6)]
    assert "exported 5 entries" in capsys.readouterr().err
    assert run("audit", "export", "--format", "fhir", "--bundle", "--since", "3") == 0
    bundle = Bundle.model_validate(json.loads(capsys.readouterr().out))
    assert bundle.type == "collection" and len(bundle.entry) == 2


def test_export_jsonl(log, capsys):
    assert run("audit", "export", "--format", "jsonl", "--since", "2") == 0
    rows = [json.loads(line) for line in capsys.readouterr().out.splitlines()]
    assert [r["seq"] for r in rows] == [3, 4, 5]
    assert rows[0] == next(log.entries(after_seq=2)).to_dict()
    with pytest.raises(SystemExit):
        run("audit", "export", "--format", "xml")
    assert run("audit", "export", "--format", "jsonl", "--bundle") == 2


def test_export_refuses_a_tampered_log_unless_told(log, capsys):
    break_entry(log, 2)
    assert run("audit", "export", "--format", "fhir") == 1
    captured = capsys.readouterr()
    assert captured.out == "" and "entry 2" in captured.err
    assert run("audit", "export", "--format", "jsonl", "--unverified") == 0
    assert len(capsys.readouterr().out.splitlines()) == 5


def test_show_last(log, capsys):
    assert run("audit", "show", "--last", "2") == 0
    lines = capsys.readouterr().out.splitlines()
    assert lines[0].split()[:5] == ["seq", "timestamp", "user", "role", "action"]
    assert [line.split()[0] for line in lines[1:]] == ["4", "5"]
    assert "Patient/5" in lines[2] and "dr.5" in lines[2] and "501.2" in lines[2]


# -- a damaged, deleted or replaced log: always a clear FAILED (exit 1), never a traceback -------


def checkpointed(log: AuditLog) -> bytes:
    """The database with every entry in the main file (as after a clean shutdown)."""
    log.close()
    conn = sqlite3.connect(log.path, isolation_level=None)
    conn.execute("PRAGMA wal_checkpoint(TRUNCATE)")
    conn.close()
    return log.path.read_bytes()


@pytest.mark.parametrize("cut", [0, 100, 4096, 0.5, -1])
def test_verify_reports_a_truncated_database_file(log, capsys, cut):
    data = checkpointed(log)
    log.path.write_bytes(data[:int(len(data) * cut) if isinstance(cut, float) else cut])
    status = run("audit", "verify")
    out = capsys.readouterr().out
    assert status == 1 and out.startswith("FAILED: ") and "Traceback" not in out
    assert any(word in out for word in ("damaged", "truncated", "ends at seq")), out


@pytest.mark.parametrize("command", [("audit", "show"), ("audit", "head"), ("audit", "export", "--format", "jsonl")])
def test_every_command_reports_a_damaged_database_clearly(log, capsys, command):
    data = checkpointed(log)
    log.path.write_bytes(data[:100] + b"\xff" * (len(data) - 100))
    assert run(*command) == 1
    out = capsys.readouterr().out
    assert out.startswith("FAILED: ") and "damaged" in out


def test_a_deleted_audit_folder_is_reported_not_restarted(log, home, capsys):
    import shutil

    log.close()
    shutil.rmtree(home / "audit")
    assert run("audit", "verify") == 1
    out = capsys.readouterr().out
    assert out.startswith("FAILED: ") and "external anchor" in out and "5 entries" in out
    with pytest.raises(AuditIntegrityError, match="deleted or moved"):  # what `copilot serve` meets at start
        AuditLog.for_home(home)
    assert not (home / "audit" / "audit.db").exists()


def test_a_replaced_log_is_reported(log, home, capsys):
    import shutil

    log.close()
    shutil.rmtree(home / "audit")
    fresh = AuditLog(home / "audit" / "audit.db")  # a new log made without the external anchor
    for i in range(8):
        fresh.append(user="mallory", role="admin", action="draft")
    assert run("audit", "verify") == 1
    assert "entry 5 does not match the external anchor" in capsys.readouterr().out


def test_an_emptied_database_is_not_extended(log, home, capsys):
    checkpointed(log)
    log.path.write_bytes(b"")
    with pytest.raises(AuditIntegrityError, match="ends at entry 0"):
        AuditLog.for_home(home)
    assert run("audit", "verify") == 1
    assert "FAILED: entry 1: the log ends at seq 0" in capsys.readouterr().out


def test_a_kept_head_reports_a_missing_log(home, capsys):
    assert run("audit", "verify", "--expect-head", f"7:{'a' * 64}") == 1
    assert "the expected head records 7 entries" in capsys.readouterr().out


def test_the_external_anchor_follows_the_settings(log, home, tmp_path, monkeypatch, capsys):
    elsewhere = tmp_path / "other-volume" / "copilot.anchor"
    monkeypatch.setenv("COPILOT_AUDIT_ANCHOR", str(elsewhere))
    from copilot.config import Settings

    moved = AuditLog(log.path, anchor_path=Settings().audit_anchor_path)  # the server's first start with it
    assert json.loads(elsewhere.read_text())["seq"] == 5
    moved.append(user="dr.6", role="clinician", action="draft")
    assert moved.flush_anchors()
    assert json.loads(elsewhere.read_text())["seq"] == 6
    assert run("audit", "verify") == 0 and "head 6:" in capsys.readouterr().out
