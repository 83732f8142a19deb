"""`copilot ground`: the grounding check from the command line, JSON out, clear errors (exit 2)."""

from __future__ import annotations

import json

from copilot.cli import main


def test_ground_prints_marks_as_json(shipped_home, tmp_path, capsys, monkeypatch):
    monkeypatch.setenv("COPILOT_HOME", str(shipped_home))
    (tmp_path / "t.txt").write_text("[doctor] any diabetes?\n[patient] no. i take lisinopril 20 mg daily.\n")
    draft = "History of diabetes. Lisinopril 40 mg daily. Seen by Dr. Jane Roe."
    (tmp_path / "d.txt").write_text(draft)
    record = {"id": "r1", "patient": {"sex": "female", "age": 60}, "documents": [], "medications": []}
    (tmp_path / "r.json").write_text(json.dumps(record))
    assert main(["ground", "--source", str(tmp_path / "t.txt"), "--draft", str(tmp_path / "d.txt"),
                 "--record", str(tmp_path / "r.json"), "--json"]) == 0
    marks = json.loads(capsys.readouterr().out)["unsupported"]
    assert [(m["kind"], draft[m["start"]:m["end"]]) for m in marks] == [("finding", "diabetes"), ("dose", "40 mg"),
                                                                         ("name", "Jane Roe")]
    assert marks[1]["reason"] == "transcript says 20 mg of Lisinopril"


def test_ground_refuses_unreadable_input(shipped_home, tmp_path, capsys, monkeypatch):
    monkeypatch.setenv("COPILOT_HOME", str(shipped_home))
    (tmp_path / "d.txt").write_bytes(b"\xff\xfe\x00bad")
    assert main(["ground", "--source", str(tmp_path / "absent.txt"), "--draft", str(tmp_path / "d.txt")]) == 2
    assert "cannot read source" in capsys.readouterr().err
    (tmp_path / "t.txt").write_text("x")
    (tmp_path / "r.json").write_text("{not json")
    assert main(["ground", "--source", str(tmp_path / "t.txt"), "--draft", str(tmp_path / "t.txt"),
                 "--record", str(tmp_path / "r.json")]) == 2
    assert "record" in capsys.readouterr().err
