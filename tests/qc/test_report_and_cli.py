"""`copilot qc` on wrapped (labelled) lines, its summary line, the report's clean records, filtered-row count and
CSV download, and `copilot qc rules-report` beside `copilot qc PATH`."""

from __future__ import annotations

import json
from pathlib import Path

from copilot.cli import main

REPO = Path(__file__).resolve().parents[2]


def test_labelled_lines_are_checked_and_the_summary_adds_up(shipped_home, tmp_path, monkeypatch, capsys):
    monkeypatch.setenv("COPILOT_HOME", str(shipped_home))
    lines = (REPO / "benchmarks" / "data" / "qc_devset.jsonl").read_text(encoding="utf-8").splitlines()[:12]
    wrapped = tmp_path / "wrapped.jsonl"
    wrapped.write_text("\n".join(lines) + "\n" + json.dumps({"record": {"id": "broken"}}) + "\n", encoding="utf-8")
    out = tmp_path / "out.jsonl"
    assert main(["qc", str(wrapped), "--out", str(out), "--html", str(tmp_path / "r.html"), "--quiet"]) == 1
    err = capsys.readouterr().err
    assert "12 records checked, 1 not checked;" in err
    results = [json.loads(line) for line in out.read_text().splitlines()]
    assert [r["status"] for r in results].count("ok") == 12 and results[-1]["record_id"] == "broken"
    page = (tmp_path / "r.html").read_text(encoding="utf-8")
    clean = [r["record_id"] for r in results if r["status"] == "ok" and not r["findings"]]
    assert f"Clean records ({len(clean)})" in page and all(f"<li>{c}</li>" in page for c in clean)
    shown = sum(len(r["findings"]) for r in results)
    assert f"{shown} of {shown} findings shown" in page and 'id="f-csv"' in page


def test_rules_report_is_an_action_and_paths_stay_paths(shipped_home, tmp_path, monkeypatch, capsys):
    monkeypatch.setenv("COPILOT_HOME", str(tmp_path))
    monkeypatch.setenv("COPILOT_KNOWLEDGE_HOME", str(shipped_home))
    assert main(["qc", "rules-report"]) == 0
    assert "no findings in the QC office yet" in capsys.readouterr().out
    assert main(["qc", "rules-report", "more.jsonl"]) == 2
    assert "write ./rules-report" in capsys.readouterr().err
    assert main(["qc", "./rules-report", "--out", str(tmp_path / "o.jsonl"), "--quiet"]) == 1  # a path: no such file
    assert "0 records checked, 1 not checked" in capsys.readouterr().err
    assert main(["qc", "notes/"]) == 2 and "--out is required" in capsys.readouterr().err


def test_rules_report_prints_precision_and_flags(tmp_path, monkeypatch, capsys):
    from copilot.config import Settings
    from copilot.db import open_database
    from copilot.qc.office.store import Filters, OfficeStore, Viewer

    monkeypatch.setenv("COPILOT_HOME", str(tmp_path))
    store = OfficeStore(open_database(Settings().database))
    reviewer = Viewer("qc", "qc_staff")
    finding = {"rule_id": "documentation.do_not_use", "category": "documentation", "severity": "major",
               "message": '"qd" is on the list', "evidence": None, "knowledge": []}
    for n in range(4):
        store.ingest({"id": f"r{n}", "encounter": {"type": "inpatient"}, "documents": []}, [finding],
                     level="in_stay", source="api")
    for n, row in enumerate(store.page(reviewer, Filters()).rows):
        store.act(row["id"], "dismiss" if n < 3 else "confirm", reviewer, reason="house style")
    assert main(["qc", "rules-report", "--min-reviews", "4", "--floor", "0.5"]) == 0
    out = capsys.readouterr().out
    assert "documentation.do_not_use" in out and "25%" in out and "RETUNE" in out and "house style" in out
    assert main(["qc", "rules-report", "--json"]) == 0
    report = json.loads(capsys.readouterr().out)
    assert report["rules"][0]["precision"] == 0.25 and report["rules"][0]["retune"] is False  # 4 < 20 reviews
