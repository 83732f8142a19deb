"""The three levels, and in-stay deadlines with reminders before they pass (first course record: due 8 h
after admission, warned at 6 h), on a clock the test sets."""

from __future__ import annotations

from datetime import datetime, timedelta, timezone

from copilot.qc.office.levels import deadlines, level_of
from copilot.records.loaders import record_from_json

ADMITTED = datetime(2026, 11, 30, 8, 0, tzinfo=timezone.utc)


def stay(documents=(), **encounter) -> dict:
    return {"id": "stay", "encounter": {"type": "inpatient", "admitted_at": ADMITTED.isoformat(), **encounter},
            "documents": [{"id": f"d{i}", "type": kind, "text": text, "authored_at": ADMITTED.isoformat()}
                          for i, (kind, text) in enumerate(documents)] or
            [{"id": "d0", "type": "progress_note", "text": "Admitted."}]}


def test_levels():
    assert level_of(record_from_json(stay())) == "in_stay"
    assert level_of(record_from_json(stay(discharged_at="2026-12-03T10:00:00+00:00"))) == "terminal"
    assert level_of(record_from_json(stay(type="outpatient"))) == "outpatient"


def test_first_course_record_is_warned_at_6_h_and_overdue_after_8_h(graph):
    found = {d.id: d for d in deadlines(record_from_json(stay()), graph, "CN")}
    first = found["first_course_record"]
    assert (first.due_at, first.warn_at, first.basis) == (ADMITTED + timedelta(hours=8), ADMITTED + timedelta(hours=6),
                                                          "time_limit.cn.first-course-record")
    assert first.status(ADMITTED + timedelta(hours=5, minutes=59)) is None
    assert first.status(ADMITTED + timedelta(hours=6)) == "due_soon"
    assert first.status(ADMITTED + timedelta(hours=8, minutes=1)) == "overdue"
    assert found["admission_note"].due_at == ADMITTED + timedelta(hours=24)
    vte = found["vte_assessment"]
    assert (vte.due_at, vte.warn_at, vte.done) == (ADMITTED + timedelta(hours=24), ADMITTED + timedelta(hours=18), False)


def test_a_written_document_or_assessment_ends_its_deadline(graph):
    record = record_from_json(stay([("first_course_record", "病例特点：……"),
                                    ("admission_note", "诊疗计划：VTE风险评估：Padua评分2分，低危。")]))
    found = {d.id: d for d in deadlines(record, graph, "CN")}
    assert all(d.done for d in found.values())
    assert found["first_course_record"].status(ADMITTED + timedelta(hours=9)) is None
    assert deadlines(record_from_json(stay(type="outpatient")), graph, "CN") == []
