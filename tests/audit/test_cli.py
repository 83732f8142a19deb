"""`copilot audit ...` through argparse: exit codes and what is printed."""

from __future__ import annotations

import json
import sqlite3

import pytest
from fhir.resources.R4B.auditevent import AuditEvent
from fhir.resources.R4B.bundle import Bundle

from copilot.audit import AuditLog, hash_payload
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
