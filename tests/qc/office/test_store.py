"""Findings as work items: versions, re-checks that close and reopen, the reviewers' moves, who sees what,
the queue's filters and counts, rule precision, reminders and the dashboard; on SQLite and PostgreSQL."""

from __future__ import annotations

from datetime import date, datetime, timedelta, timezone

import pytest

from copilot.qc.office.store import Filters, NotFound, OfficeStore, StoreError, Viewer
from copilot.qc.office.workflow import WorkflowError

QC = Viewer("qc1", "qc_staff")
DEPT = Viewer("cardio.qc", "dept_qc", "心内科")
OTHER_DEPT = Viewer("resp.qc", "dept_qc", "呼吸科")
DOCTOR = Viewer("dr.wang", "doctor", "心内科")
OTHER_DOCTOR = Viewer("dr.li", "doctor", "心内科")
CLINICIAN = Viewer("nurse", "clinician")
T0 = datetime(2026, 11, 3, 9, 0, tzinfo=timezone.utc)


class Clock:
    def __init__(self):
        self.now = T0

    def __call__(self):
        return self.now


@pytest.fixture
def clock():
    return Clock()


@pytest.fixture
def store(database_url, clock):
    from copilot.db import open_database

    return OfficeStore(open_database(database_url), clock=clock)


def record(record_id="rec-1", text="note", department="心内科", attending="dr.wang", **encounter) -> dict:
    return {"id": record_id, "encounter": {"type": "inpatient", "department": department, "attending": attending,
                                           "admitted_at": "2026-11-03T08:00:00+00:00", **encounter},
            "documents": [{"id": "d1", "type": "progress_note", "text": text}]}


def finding(rule_id, message, severity="major", category=None, evidence=None) -> dict:
    return {"rule_id": rule_id, "category": category or rule_id.split(".")[0], "severity": severity,
            "message": message, "evidence": {"document_id": "d1", "start": 0, "end": len(evidence), "text": evidence,
                                             "context": {"before": "", "after": ""}} if evidence else None,
            "knowledge": [], "origin": "rule"}


ABBREVIATION = finding("documentation.do_not_use", '"qd" is on the Do Not Use list', "major", evidence="qd")
LATE = finding("timeliness.signed_late", "The admission note was signed 30.5 h after admission; the limit is 24 h.",
               "major")
ACEI = finding("single_disease.ami_acei_arb_lvsd", "ACE inhibitor or ARB at discharge not met.", "major")
PROPHYLAXIS = finding("vte.prophylaxis_high_risk", "VTE high risk with no prophylaxis.", "critical")


def by_rule(store, viewer=QC, **filters):
    return {row["rule_id"]: row for row in store.page(viewer, Filters(**filters)).rows}


def test_a_new_record_files_open_findings_with_their_history_and_a_score(store):
    result = store.ingest(record(), [ABBREVIATION, LATE, PROPHYLAXIS], level="in_stay", source="api")
    assert (result.version, result.new_version, len(result.opened)) == (1, True, 3)
    # documentation 1 + timeliness 5 + vte 5 = 11 points off (scoring.yaml)
    assert (result.score, result.grade) == (89.0, "乙")
    page = store.page(QC, Filters())
    assert page.total == 3 and page.by_state["open"] == 3 and page.by_severity == {"critical": 1, "major": 2, "minor": 0}
    history = store.history([r["id"] for r in page.rows])
    assert all([e["action"] for e in events] == ["found"] for events in history.values())
    assert {r["department"] for r in page.rows} == {"心内科"}


def test_the_same_content_again_is_the_same_version_and_changes_nothing(store):
    store.ingest(record(), [ABBREVIATION, LATE], level="in_stay", source="job:a")
    again = store.ingest(record(), [ABBREVIATION, LATE], level="in_stay", source="job:a")
    assert (again.version, again.new_version, again.opened, again.closed) == (1, False, [], [])
    # the numbers in a message do not make it a new finding (signed 31.0 h instead of 30.5 h)
    later = dict(LATE, message=LATE["message"].replace("30.5", "31.0"))
    third = store.ingest(record(text="note v2"), [ABBREVIATION, later], level="in_stay", source="api")
    assert (third.version, third.opened, third.closed) == (2, [], [])


def test_the_full_cycle_confirm_dismiss_assign_fix_recheck_close(store, clock):
    store.ingest(record(), [ABBREVIATION, LATE, ACEI, PROPHYLAXIS], level="terminal", source="api")
    rows = by_rule(store)
    clock.now = T0 + timedelta(hours=1)
    confirmed = store.act(rows["timeliness.signed_late"]["id"], "confirm", QC)
    assert confirmed["state"] == "confirmed" and confirmed["updated_by"] == "qc1"
    dismissed = store.act(rows["documentation.do_not_use"]["id"], "dismiss", DEPT, reason="qd is our house style")
    assert (dismissed["state"], dismissed["reason"]) == ("dismissed", "qd is our house style")
    assigned = store.act(rows["single_disease.ami_acei_arb_lvsd"]["id"], "assign", QC, assignee_type="doctor",
                         assignee="dr.wang")
    assert (assigned["state"], assigned["assignee"]) == ("assigned", "dr.wang")
    before = store.record("rec-1", QC)["record"]["score"]
    assert before == 100 - 5 - 3 - 5  # the dismissed abbreviation no longer counts

    fixed = store.act(rows["single_disease.ami_acei_arb_lvsd"]["id"], "fix", DOCTOR)
    assert fixed["state"] == "fixed"
    clock.now = T0 + timedelta(days=1)
    recheck = store.ingest(record(text="note with valsartan"), [ABBREVIATION, LATE, PROPHYLAXIS], level="terminal",
                           source="api")
    assert recheck.version == 2 and recheck.closed == [rows["single_disease.ami_acei_arb_lvsd"]["id"]]
    assert recheck.score == before + 3
    view = store.record("rec-1", QC)
    closed = next(f for f in view["findings"] if f["rule_id"] == "single_disease.ami_acei_arb_lvsd")
    assert (closed["state"], closed["present"]) == ("closed", False)
    assert [e["action"] for e in closed["history"]] == ["found", "confirm", "assign", "fix", "recheck", "autoclose"]
    assert [(e["actor"], e["version"]) for e in closed["history"]][-2:] == [("system", 2), ("system", 2)]
    assert [v["score"] for v in view["versions"]] == [before, before + 3]
    dismissed_now = next(f for f in view["findings"] if f["rule_id"] == "documentation.do_not_use")
    assert dismissed_now["state"] == "dismissed"  # a dismissal stands on the next version

    # the finding comes back in version 3: reopened; a fixed one still there goes back to its assignee
    late_id = rows["timeliness.signed_late"]["id"]
    store.act(late_id, "assign", QC, assignee_type="department", assignee="心内科")
    store.act(late_id, "fix", DEPT)
    third = store.ingest(record(text="note v3"), [ABBREVIATION, LATE, ACEI, PROPHYLAXIS], level="terminal",
                         source="api")
    assert third.reopened == [rows["single_disease.ami_acei_arb_lvsd"]["id"]] and third.still_present == [late_id]
    assert store.finding(late_id, QC)["state"] == "assigned"
    reopened = store.finding(rows["single_disease.ami_acei_arb_lvsd"]["id"], QC)
    assert (reopened["state"], reopened["reopened"], reopened["present"]) == ("open", 1, True)


def test_moves_the_workflow_forbids(store):
    store.ingest(record(), [ABBREVIATION, LATE], level="terminal", source="api")
    rows = by_rule(store)
    with pytest.raises(WorkflowError, match="needs a reason"):
        store.act(rows["documentation.do_not_use"]["id"], "dismiss", QC, reason="  ")
    with pytest.raises(WorkflowError, match="cannot be fixed"):
        store.act(rows["documentation.do_not_use"]["id"], "fix", QC)
    with pytest.raises(WorkflowError, match="only mark findings fixed"):
        store.act(rows["documentation.do_not_use"]["id"], "confirm", DOCTOR)
    with pytest.raises(WorkflowError, match="assignee_type"):
        store.act(rows["documentation.do_not_use"]["id"], "assign", QC, assignee="dr.wang")
    with pytest.raises(WorkflowError, match="may not recheck"):
        store.act(rows["documentation.do_not_use"]["id"], "recheck", QC)
    assert store.finding(rows["documentation.do_not_use"]["id"], QC)["state"] == "open"


def test_each_role_sees_its_own_part(store):
    store.ingest(record("rec-1"), [ABBREVIATION], level="terminal", source="api")
    store.ingest(record("rec-2", department="呼吸科", attending="dr.zhao"), [LATE], level="terminal", source="api")
    store.ingest(record("rec-3", attending="dr.li"), [ACEI], level="terminal", source="api")
    assert store.page(QC, Filters()).total == 3
    assert {r["record_id"] for r in store.page(DEPT, Filters()).rows} == {"rec-1", "rec-3"}
    assert {r["record_id"] for r in store.page(OTHER_DEPT, Filters()).rows} == {"rec-2"}
    assert {r["record_id"] for r in store.page(DOCTOR, Filters()).rows} == {"rec-1"}
    assert store.page(CLINICIAN, Filters()).total == 0
    other = by_rule(store, QC)["timeliness.signed_late"]["id"]
    with pytest.raises(NotFound):
        store.act(other, "confirm", DEPT)
    with pytest.raises(NotFound):
        store.record("rec-2", DOCTOR)
    # an assignment makes the finding (and its record) visible to the assignee
    store.act(other, "assign", QC, assignee_type="doctor", assignee="dr.wang")
    assert {r["record_id"] for r in store.page(DOCTOR, Filters()).rows} == {"rec-1", "rec-2"}
    assert store.record("rec-2", DOCTOR)["record"]["record_id"] == "rec-2"
    assert store.act(other, "fix", DOCTOR)["state"] == "fixed"
    with pytest.raises(NotFound):
        store.act(by_rule(store, QC)["single_disease.ami_acei_arb_lvsd"]["id"], "fix", DOCTOR)


def test_filters_counts_pages_and_orders(store, clock):
    for day in range(30):
        clock.now = T0 + timedelta(days=day)
        department = "心内科" if day % 3 else "呼吸科"
        store.ingest(record(f"rec-{day:02d}", department=department, attending=f"dr.{day % 4}"),
                     [ABBREVIATION, PROPHYLAXIS] if day % 2 else [LATE], level="terminal", source="api")
    everything = store.page(QC, Filters(), per_page=25)
    assert (everything.total, everything.pages, len(everything.rows)) == (45, 2, 25)
    assert everything.rows[0]["record_id"] == "rec-29"  # newest first
    second = store.page(QC, Filters(), page=2, per_page=25)
    assert len(second.rows) == 20 and not {r["id"] for r in second.rows} & {r["id"] for r in everything.rows}
    critical = store.page(QC, Filters(severity="critical"))
    assert critical.total == 15 and critical.by_severity == {"critical": 15, "major": 30, "minor": 0}
    assert store.page(QC, Filters(department="呼吸科")).total == 15
    assert store.page(QC, Filters(doctor="dr.1")).total == 16
    assert store.page(QC, Filters(rule="timeliness.signed_late", state="open")).total == 15
    dated = store.page(QC, Filters(date_from=date(2026, 11, 5), date_to=date(2026, 11, 6)))
    assert {r["record_id"] for r in dated.rows} == {"rec-02", "rec-03"}
    assert store.page(QC, Filters(record="rec-03")).total == 2
    assert store.page(QC, Filters(), order="severity").rows[0]["severity"] == "critical"
    assert store.page(QC, Filters(), order="oldest").rows[0]["record_id"] == "rec-00"
    assert len(list(store.export_rows(QC, Filters(department="心内科")))) == 30
    assert Filters.parse({"severity": "major", "date_from": "2026-11-05", "state": "active"}).query_args() == {
        "severity": "major", "state": "active", "date_from": "2026-11-05"}
    for bad in ({"severity": "huge"}, {"date_from": "yesterday"}, {"state": "lost"}):
        with pytest.raises(StoreError):
            Filters.parse(bad)
    with pytest.raises(StoreError):
        store.page(QC, Filters(), per_page=7)


def test_rule_precision_counts_each_findings_latest_decision(store):
    for n in range(6):
        store.ingest(record(f"rec-{n}"), [ABBREVIATION, LATE], level="terminal", source="api")
    rows = store.page(QC, Filters(rule="documentation.do_not_use"), per_page=25).rows
    for row in rows[:4]:
        store.act(row["id"], "dismiss", QC, reason="house style")
    store.act(rows[4]["id"], "confirm", QC)
    store.act(rows[0]["id"], "confirm", QC)  # changed mind: confirmed after all
    late = store.page(QC, Filters(rule="timeliness.signed_late")).rows[0]
    store.act(late["id"], "assign", QC, assignee_type="doctor", assignee="dr.wang")  # assigning confirms
    report = {r["rule_id"]: r for r in store.rule_precision(floor=0.7, min_reviews=5)}
    abbreviation = report["documentation.do_not_use"]
    assert (abbreviation["confirmed"], abbreviation["dismissed"], abbreviation["reviews"]) == (2, 3, 5)
    assert abbreviation["precision"] == 0.4 and abbreviation["retune"] is True
    assert abbreviation["reasons"] == [{"reason": "house style", "count": 3}]
    assert (report["timeliness.signed_late"]["precision"], report["timeliness.signed_late"]["retune"]) == (1.0, False)
    assert store.rule_precision(floor=0.7, min_reviews=6)[0]["retune"] is False  # not enough reviews yet


def test_reminders_for_in_stay_deadlines(store):
    from copilot.qc.office.levels import Deadline

    due = datetime(2026, 11, 3, 16, 0, tzinfo=timezone.utc)
    first = Deadline("first_course_record", "First course record", "首次病程记录", due, due - timedelta(hours=2), False,
                     "time_limit.cn.first-course-record")
    done = Deadline("admission_note", "Admission note", "入院记录", due, due - timedelta(hours=4), True, "x")
    store.ingest(record(), [], level="in_stay", source="api", deadlines=[first, done])
    store.ingest(record("rec-2", department="呼吸科"), [], level="terminal", source="api", deadlines=[first])
    assert store.reminders(QC, due - timedelta(hours=3)) == []
    soon = store.reminders(QC, due - timedelta(hours=1))
    assert [(r["record_id"], r["status"], r["hours_left"]) for r in soon] == [("rec-1", "due_soon", 1.0)]
    assert [r["status"] for r in store.reminders(DOCTOR, due + timedelta(minutes=30))] == ["overdue"]
    assert store.reminders(OTHER_DEPT, due + timedelta(minutes=30)) == []


def test_the_dashboard_counts_findings_per_100_records(store, clock):
    for n in range(4):
        store.ingest(record(f"rec-{n}", department="心内科" if n < 3 else "呼吸科"),
                     [ABBREVIATION] if n < 2 else [], level="terminal", source="api",
                     indicators=[{"indicator": "qi.ami.aspirin_24h", "disease": "ami", "status": s, "name": "x",
                                  "name_zh": "x", "reason": "", "evidence": []}
                                 for s in (["met"] if n else ["not_met"])])
    board = store.dashboard(QC)
    assert board["months"] == ["2026-11"]
    assert board["per_100_by_department"] == {"心内科": {"2026-11": 66.7}}
    assert board["per_100_by_rule"] == {"documentation.do_not_use": {"2026-11": 50.0}}
    assert board["compliance"]["qi.ami.aspirin_24h"]["rate"] == 0.75
    assert board["grades"]["甲"] == 4 and sorted(board["scores"]) == [99.0, 99.0, 100.0, 100.0]
    assert {d["department"]: d["records"] for d in board["per_department"]} == {"呼吸科": 1, "心内科": 3}
    assert store.dashboard(OTHER_DEPT)["per_100_by_department"] == {}


def test_a_job_is_taken_in_once(store):
    assert store.mark_job("a" * 32, 3, 0) is True
    assert store.mark_job("a" * 32, 3, 0) is False
    assert store.job_ingested("a" * 32) and not store.job_ingested("b" * 32)


def test_a_move_racing_another_reviewer_is_refused_not_lost(store, monkeypatch):
    from copilot.qc.office import workflow

    store.ingest(record(), [ABBREVIATION], level="terminal", source="api")
    finding_id = store.page(QC, Filters()).rows[0]["id"]
    real = workflow.check_move

    def meanwhile(*args, **kwargs):  # another reviewer dismisses it between our read and our write
        monkeypatch.setattr(workflow, "check_move", real)
        store.act(finding_id, "dismiss", DEPT, reason="another reviewer, first")
        return real(*args, **kwargs)

    monkeypatch.setattr(workflow, "check_move", meanwhile)
    with pytest.raises(WorkflowError, match="someone else"):
        store.act(finding_id, "confirm", QC)
    after = store.finding(finding_id, QC)
    assert (after["state"], after["reason"]) == ("dismissed", "another reviewer, first")
    assert [e["action"] for e in store.history([finding_id])[finding_id]] == ["found", "dismiss"]
