import json

import pytest

from copilot.records.loaders import RecordError, iter_records, record_from_json
from tests.helpers import make_record


def load(paths, **kwargs):
    return list(iter_records(paths, **kwargs))


def test_project_json_round_trip(tmp_path):
    data = make_record(diagnoses=[{"code": "I10", "text": "hypertension"}],
                       medications=[{"name": "lisinopril", "dose": 20, "unit": "mg", "route": "oral", "frequency": "daily"}])
    (tmp_path / "r.json").write_text(json.dumps(data))
    [loaded] = load([tmp_path / "r.json"])
    assert loaded.error is None and loaded.key == "rec-1"
    record = loaded.record
    assert record.patient.sex == "male" and record.documents[0].signed_at.hour == 10
    assert record.to_json()["medications"][0]["dose"] == 20
    assert record_from_json(record.to_json()).to_json() == record.to_json()


@pytest.mark.parametrize("mutate, message", [
    (lambda d: d.pop("id"), "'id' is a required property"),
    (lambda d: d["patient"].update(sex="M"), "patient/sex"),
    (lambda d: d["documents"][0].update(type="memo"), "documents/0/type"),
    (lambda d: d["medications"].append({"name": "x", "dose": -1}), "medications/0/dose"),
    (lambda d: d["encounter"].update(admitted_at="yesterday"), "encounter/admitted_at"),
    (lambda d: d.update(extra=1), "Additional properties"),
    (lambda d: d["documents"].append(dict(d["documents"][0])), "unique"),
])
def test_schema_errors_are_clear(mutate, message):
    data = make_record()
    mutate(data)
    with pytest.raises(RecordError, match=message):
        record_from_json(data)


def test_text_notes_and_encodings(tmp_path):
    (tmp_path / "a.txt").write_text("CHIEF COMPLAINT\n\nCough.\n", encoding="utf-8")
    (tmp_path / "b.txt").write_bytes("主诉：咳嗽3天。\n".encode("gb18030"))
    (tmp_path / "empty.txt").write_text("   \n")
    results = {r.key: r for r in load([tmp_path])}
    assert results["a"].record.documents[0].text.startswith("CHIEF")
    assert "--encoding" in results["b"].error and "UTF-8" in results["b"].error
    assert results["empty"].error == "the note is empty"
    [gb] = load([tmp_path / "b.txt"], encoding="gb18030")
    assert gb.record.documents[0].text.startswith("主诉")


def test_jsonl_keeps_going_past_bad_lines(tmp_path):
    good = json.dumps(make_record())
    other = json.dumps(make_record(id="rec-2"))
    (tmp_path / "batch.jsonl").write_text(good + "\n{broken\n\n" + json.dumps({"id": "rec-3"}) + "\n" + other + "\n")
    results = load([tmp_path / "batch.jsonl"])
    assert [r.key for r in results] == ["rec-1", f"{tmp_path / 'batch.jsonl'}:2", "rec-3", "rec-2"]
    assert [r.error is None for r in results] == [True, False, False, True]
    assert "malformed JSON" in results[1].error and "documents" in results[2].error


def test_unsupported_and_missing_paths(tmp_path):
    (tmp_path / "x.pdf").write_bytes(b"%PDF")
    [pdf] = load([tmp_path / "x.pdf"])
    assert "unsupported file type .pdf" in pdf.error
    [missing] = load([tmp_path / "nope.json"])
    assert missing.error == "no such file"


def test_huge_document_is_refused(tmp_path):
    data = make_record("x" * (3 * 1024 * 1024))
    with pytest.raises(RecordError, match="larger than"):
        record_from_json(data)


def test_directory_order_is_stable(tmp_path):
    for name in ("b", "a", "c"):
        (tmp_path / f"{name}.json").write_text(json.dumps(make_record(id=name)))
    (tmp_path / "notes.md").write_text("ignored")
    assert [r.key for r in load([tmp_path])] == ["a", "b", "c"]
