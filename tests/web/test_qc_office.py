"""The QC office over HTTP: filing record versions, the queue and its exports, the reviewers' moves on the record
page, who sees what, batch jobs filed when done, reminders, dashboard, rule precision; every step audited."""

from __future__ import annotations

import csv
import io
import json
from datetime import datetime, timedelta, timezone

import pytest

from tests.helpers import csrf_from, wait_for

ADMITTED = datetime(2026, 11, 30, 0, 0, tzinfo=timezone.utc)


def stroke_chart(record_id="zh-stroke-9", discharge="阿司匹林100mg每日一次。", department="神经内科",
                 attending="dr.qian", **extra) -> dict:
    return {
        "id": record_id, "as_of": "2026-12-01T10:00:00+00:00",
        "patient": {"sex": "male", "age": 77},
        "encounter": {"type": "inpatient", "admitted_at": ADMITTED.isoformat(),
                      "discharged_at": "2026-12-01T08:00:00+00:00", "department": department, "attending": attending},
        "documents": [{"id": "adm", "type": "admission_note", "authored_at": "2026-11-30T02:00:00+00:00",
                       "text": "主诉：左侧肢体无力。\n体格检查：左侧偏瘫，卧床。\n初步诊断：急性脑梗死\n"
                               "诊疗计划：VTE风险评估：Padua评分5分，高危。双下肢间歇充气加压治疗。\n"},
                      {"id": "fcr", "type": "first_course_record", "authored_at": "2026-11-30T05:00:00+00:00",
                       "text": "病例特点：男，77岁。\n"},
                      {"id": "dis", "type": "discharge_summary", "authored_at": "2026-12-01T07:00:00+00:00",
                       "text": f"出院诊断：急性脑梗死\n出院带药：{discharge}\n"}],
        "diagnoses": [{"text": "急性脑梗死", "code": "I63.9"}], **extra}


@pytest.fixture
def people(app):
    users = app.extensions["copilot.users"]
    tokens = {"qc": users.add("qc.office", "qc_staff"), "dept": users.add("neuro.qc", "dept_qc", department="神经内科"),
              "doctor": users.add("dr.qian", "doctor", department="神经内科"), "other": users.add("dr.li", "doctor"),
              "clinician": users.add("nurse.wu", "clinician")}
    return tokens


def bearer(token):
    return {"Authorization": f"Bearer {token}"}


def file(client, token, data):
    response = client.post("/api/qc/office/records", json=data, headers=bearer(token))
    assert response.status_code == 200, response.get_data(as_text=True)
    return response.get_json()


def sign_in(client, name, token) -> str:
    page = client.get("/login")
    response = client.post("/login", data={"username": name, "password": token,
                                           "csrf_token": csrf_from(page.get_data(as_text=True))})
    assert response.status_code == 302
    return csrf_from(client.get("/qc/findings").get_data(as_text=True))


def entries(app, action=None):
    return [e for e in app.extensions["copilot.audit"].entries() if action is None or e.action == action]


def test_filing_a_record_then_a_new_version_closes_what_was_fixed(app, client, people):
    first = file(client, people["qc"], stroke_chart())
    rules = {f["rule_id"] for f in first["findings"]}
    assert "single_disease.stroke_statin_discharge" in rules and first["version"] == 1
    assert first["grade"] in ("甲", "乙", "丙") and first["score"] < 100
    again = file(client, people["qc"], stroke_chart())
    assert (again["version"], again["new_version"], again["opened"], again["closed"]) == (1, False, 0, 0)
    fixed = file(client, people["qc"], stroke_chart(discharge="阿司匹林100mg每日一次，阿托伐他汀20mg每晚一次。"))
    assert (fixed["version"], fixed["closed"]) == (2, 1) and fixed["score"] > first["score"]
    assert "single_disease.stroke_statin_discharge" not in {f["rule_id"] for f in fixed["findings"]}
    audited = entries(app, "qc-office:file")
    assert len(audited) == 3 and audited[0].patient_ref == "Record/zh-stroke-9"
    bad = client.post("/api/qc/office/records", json={"id": "x"}, headers=bearer(people["qc"]))
    assert bad.status_code == 400 and "record:" in bad.get_json()["error"]
    assert client.post("/api/qc/office/records", json=stroke_chart(), headers=bearer(people["doctor"])).status_code == 403


def test_who_sees_the_queue(app, client, people):
    file(client, people["qc"], stroke_chart())
    file(client, people["qc"], stroke_chart("resp-1", department="呼吸科", attending="dr.li"))
    totals = {}
    for who in ("qc", "dept", "doctor", "other"):
        totals[who] = client.get("/api/qc/office/findings", headers=bearer(people[who])).get_json()["total"]
    assert totals["qc"] == totals["dept"] + totals["other"] and totals["dept"] == totals["doctor"] > 0
    assert client.get("/api/qc/office/findings", headers=bearer(people["clinician"])).status_code == 403
    assert entries(app, "denied:qc_office.api_findings")[0].user == "nurse.wu"
    assert client.get("/api/qc/office/records/resp-1", headers=bearer(people["doctor"])).status_code == 404
    assert client.get("/qc/findings", headers={"Accept": "text/html"}).status_code == 302  # to the sign-in page


def test_the_queue_page_filters_counts_and_exports(app, client, people):
    file(client, people["qc"], stroke_chart())
    file(client, people["qc"], stroke_chart("resp-1", department="呼吸科", attending="dr.li"))
    sign_in(client, "qc.office", people["qc"])
    page = client.get("/qc/findings?department=神经内科&per_page=25")
    html = page.get_data(as_text=True)
    assert page.status_code == 200 and "resp-1" not in html and "zh-stroke-9" in html
    assert "default-src 'self'" in page.headers["Content-Security-Policy"] and "<script>" not in html
    total = client.get("/api/qc/office/findings?department=神经内科", headers=bearer(people["qc"])).get_json()["total"]
    assert f'<span id="total">{total}</span>' in html
    assert client.get("/qc/findings?severity=huge").status_code == 400

    exported = client.get("/qc/findings.csv?department=神经内科")
    assert exported.headers["Content-Type"].startswith("text/csv")
    rows = list(csv.DictReader(io.StringIO(exported.get_data(as_text=True).lstrip("\ufeff"))))
    assert len(rows) == total and {r["department"] for r in rows} == {"神经内科"}
    workbook = client.get("/qc/findings.xlsx?severity=major")
    from openpyxl import load_workbook

    sheet = load_workbook(io.BytesIO(workbook.get_data())).active
    values = list(sheet.values)
    assert values[0][0] == "id" and len(values) > 1 and {v[7] for v in values[1:]} == {"major"}
    assert [e.detail for e in entries(app, "qc-office:export-findings")] == [
        f"export findings csv: {total} rows", f"export findings xlsx: {len(values) - 1} rows"]


def test_formula_like_text_is_exported_as_text():
    from copilot.qc.office.export import FINDING_COLUMNS, csv_lines, xlsx_bytes

    row = {"id": 1, "message": "=HYPERLINK(\"http://x\")", "reason": "-5 mg", "evidence": {"text": "@cmd"}}
    text = "".join(csv_lines([row], FINDING_COLUMNS))
    assert "'=HYPERLINK" in text and "'-5 mg" in text and "'@cmd" in text
    from openpyxl import load_workbook

    sheet = load_workbook(io.BytesIO(xlsx_bytes([row], FINDING_COLUMNS, "findings"))).active
    message = sheet.cell(row=2, column=FINDING_COLUMNS.index("message") + 1)
    assert message.data_type == "s" and message.value.startswith("=HYPERLINK")


def test_reviewing_on_the_record_page(app, client, people):
    file(client, people["qc"], stroke_chart())
    csrf = sign_in(client, "neuro.qc", people["dept"])
    page = client.get("/qc/records/zh-stroke-9").get_data(as_text=True)
    assert "Show in note" in page or "急性脑梗死" in page
    findings = {f["rule_id"]: f["id"] for f in client.get(
        "/api/qc/office/findings", headers=bearer(people["qc"])).get_json()["findings"]}
    statin = findings["single_disease.stroke_statin_discharge"]
    response = client.post(f"/qc/findings/{statin}/act", data={"csrf_token": csrf, "action": "assign",
                                                              "assignee_type": "doctor", "assignee": "dr.qian"})
    assert response.status_code == 302 and response.headers["Location"].endswith(f"#finding-{statin}")
    refused = client.post(f"/qc/findings/{statin}/act", data={"csrf_token": csrf, "action": "dismiss"})
    assert refused.status_code == 302
    assert "cannot be dismissed" in client.get("/qc/records/zh-stroke-9").get_data(as_text=True)
    other = next(i for r, i in findings.items() if r != "single_disease.stroke_statin_discharge")
    client.post(f"/qc/findings/{other}/act", data={"csrf_token": csrf, "action": "dismiss", "reason": "written in the EMR"})
    assert client.post(f"/qc/findings/{other}/act", data={"action": "confirm"}).status_code == 400  # no CSRF token

    doctor = app.test_client()
    sign_in(doctor, "dr.qian", people["doctor"])
    page = doctor.get("/qc/records/zh-stroke-9").get_data(as_text=True)
    assert "Mark fixed" in page and ">Dismiss<" not in page
    api = doctor.post(f"/api/qc/office/findings/{statin}", json={"action": "fix"},
                      headers={"X-CSRFToken": csrf_from(page)})
    assert api.status_code == 200 and api.get_json()["state"] == "fixed"
    assert doctor.post(f"/api/qc/office/findings/{other}", json={"action": "reopen", "reason": "x"},
                       headers={"X-CSRFToken": csrf_from(page)}).status_code == 409
    actions = [(e.action, e.user, e.outcome) for e in entries(app) if e.action.startswith("qc-office:")
               and e.action not in ("qc-office:file", "qc-office:record", "qc-office:queue")]
    assert actions == [("qc-office:assign", "neuro.qc", "success"), ("qc-office:dismiss", "neuro.qc", "error"),
                       ("qc-office:dismiss", "neuro.qc", "success"), ("qc-office:fix", "dr.qian", "success"),
                       ("qc-office:reopen", "dr.qian", "error")]
    assert all(e.patient_ref == "Record/zh-stroke-9" for e in entries(app, "qc-office:assign"))


def test_a_finished_job_is_filed_and_audited(app, client, people):
    lines = "\n".join(json.dumps(stroke_chart(f"job-{n}"), ensure_ascii=False) for n in range(3)) + "\n"
    response = client.post("/api/qc/jobs", data=lines.encode("utf-8"), headers={**bearer(people["qc"]),
                                                                                "Content-Type": "application/x-ndjson"})
    assert response.status_code == 202
    job_id = response.get_json()["id"]
    listed = wait_for(lambda: next((j for j in client.get("/api/qc/office/jobs", headers=bearer(people["qc"]))
                                    .get_json()["jobs"] if j["id"] == job_id and j["filed"]), None))
    assert listed["status"] == "done"
    queue = client.get("/api/qc/office/findings?rule=single_disease.stroke_statin_discharge",
                       headers=bearer(people["qc"])).get_json()
    assert {f["record_id"] for f in queue["findings"]} == {"job-0", "job-1", "job-2"}
    intake = entries(app, "qc-office:job-intake")
    assert len(intake) == 1 and intake[0].user == "system" and "3 records filed" in intake[0].detail
    from copilot.web.qc_office import file_job

    file_job(app, job_id)  # a second call (a restart) files nothing again
    assert len(entries(app, "qc-office:job-intake")) == 1


def test_reminders_follow_the_clock(app, client, people):
    chart = stroke_chart("stay-1")
    del chart["encounter"]["discharged_at"]
    chart["documents"] = chart["documents"][:1]
    chart["as_of"] = (ADMITTED + timedelta(hours=1)).isoformat()
    file(client, people["qc"], chart)
    app.extensions["copilot.clock"] = lambda: ADMITTED + timedelta(hours=5)
    assert client.get("/api/qc/office/reminders", headers=bearer(people["doctor"])).get_json()["reminders"] == []
    app.extensions["copilot.clock"] = lambda: ADMITTED + timedelta(hours=6, minutes=30)
    due = client.get("/api/qc/office/reminders", headers=bearer(people["doctor"])).get_json()["reminders"]
    assert [(r["deadline_id"], r["status"], r["hours_left"]) for r in due] == [("first_course_record", "due_soon", 1.5)]
    app.extensions["copilot.clock"] = lambda: ADMITTED + timedelta(hours=9)
    sign_in(client, "dr.qian", people["doctor"])
    page = client.get("/qc/reminders").get_data(as_text=True)
    assert "stay-1" in page and "overdue" in page


def test_dashboard_and_rules_pages(app, client, people):
    file(client, people["qc"], stroke_chart())
    file(client, people["qc"], stroke_chart("resp-1", department="呼吸科", attending="dr.li"))
    sign_in(client, "qc.office", people["qc"])
    dashboard = client.get("/qc/dashboard")
    html = dashboard.get_data(as_text=True)
    assert dashboard.status_code == 200 and "<svg" in html and "神经内科" in html and "Statin at discharge" in html
    assert 'style="' not in html  # CSP default-src 'self': no inline styles
    rules = client.get("/qc/rules").get_data(as_text=True)
    assert "single_disease.stroke_statin_discharge" in rules
    report = client.get("/qc/rules.csv").get_data(as_text=True)
    assert report.lstrip("\ufeff").startswith("rule_id,category,findings,confirmed,dismissed")
