"""The QC office's whole cycle in a real browser (Debian's chromium), against the real app on a real socket:

batch upload -> findings queue -> confirm one, dismiss one with a reason (by keyboard), assign one -> the doctor
marks it fixed -> the edited record comes in a second batch and is re-checked -> the fixed finding closes, the
score rises, the dashboard and the rule precision change; every step has its audit entry. Screenshots in
test-artifacts/browser/qc-office-*.png; the record page is also checked at 360 px (no horizontal scroll).
"""

from __future__ import annotations

import json
import re

import pytest

from tests.helpers import BROWSER_ARTIFACTS, no_horizontal_scroll, sign_in, wait_until

pytestmark = pytest.mark.browser
PASSWORD = "office password 2026"
STATIN = "single_disease.stroke_statin_discharge"
SECTION = "completeness.section_missing"


def chart(record_id: str, discharge: str, attending: str = "dr.qian") -> dict:
    return {
        "id": record_id, "as_of": "2026-12-01T10:00:00+00:00", "patient": {"sex": "male", "age": 77},
        "encounter": {"type": "inpatient", "admitted_at": "2026-11-30T00:00:00+00:00",
                      "discharged_at": "2026-12-01T08:00:00+00:00", "department": "神经内科", "attending": attending},
        "documents": [
            {"id": "adm", "type": "admission_note", "authored_at": "2026-11-30T02:00:00+00:00",
             "text": "主诉：左侧肢体无力6小时。\n体格检查：左侧偏瘫，卧床。\n初步诊断：急性脑梗死\n"
                     "诊疗计划：吞咽功能筛查通过。VTE风险评估：Padua评分5分，高危。双下肢间歇充气加压治疗。\n"},
            {"id": "fcr", "type": "first_course_record", "authored_at": "2026-11-30T05:00:00+00:00",
             "text": "病例特点：男，77岁。\n"},
            {"id": "dis", "type": "discharge_summary", "authored_at": "2026-12-01T07:00:00+00:00",
             "text": f"出院诊断：急性脑梗死\n出院带药：{discharge}\n"}],
        "diagnoses": [{"text": "急性脑梗死", "code": "I63.9"}]}


@pytest.fixture(scope="module")
def office(server):
    users = server.app.extensions["copilot.users"]
    for name, role, department in (("qc.chen", "qc_staff", None), ("dr.qian", "doctor", "神经内科")):
        users.add(name, role, department=department)
        users.set_password(name, PASSWORD)
    return server


@pytest.fixture
def open_page(browser):
    """A new browser context at a given width; fails the test on script errors or CSP violations."""
    contexts, problems = [], []

    def make(width: int = 1100):
        context = browser.new_context(viewport={"width": width, "height": 900})
        contexts.append(context)
        tab = context.new_page()
        tab.on("pageerror", lambda error: problems.append(f"page error: {error}"))
        tab.on("console", lambda message: problems.append(f"console: {message.text}")
               if message.type == "error" and "Content Security Policy" in message.text else None)
        return tab
    yield make
    for context in contexts:
        context.close()
    assert problems == [], problems


def shot(page, name: str) -> None:
    BROWSER_ARTIFACTS.mkdir(parents=True, exist_ok=True)
    page.screenshot(path=str(BROWSER_ARTIFACTS / f"qc-office-{name}.png"), full_page=True)


def upload(page, tmp_path, name: str, records: list[dict]) -> None:
    path = tmp_path / f"{name}.jsonl"
    path.write_text("".join(json.dumps(r, ensure_ascii=False) + "\n" for r in records), encoding="utf-8")
    page.goto(page.url.split("/qc/")[0] + "/qc/jobs")
    page.set_input_files("#upload-file", str(path))
    page.click("#upload-button")
    wait_until(page, "() => document.getElementById('upload-status').textContent.includes('queued')", what="upload")
    wait_until(page, "() => { const j = document.querySelector('#jobs li'); "
                     "return j && j.dataset.status === 'done' && j.dataset.filed === 'true'; }", timeout=120,
               what="the job to finish and be filed")


def finding_id(page, rule: str, nth: int = 0) -> str:
    return page.locator(f"li.finding[data-rule='{rule}']").nth(nth).get_attribute("id").split("-")[1]


def score(page) -> float:
    return float(page.text_content("#score"))


def rule_cells(page, rule: str) -> tuple[str, str, str]:
    row = page.locator(f"tr[id='rule-{rule}'] td")
    return row.nth(2).inner_text(), row.nth(3).inner_text(), row.nth(4).inner_text()


def test_the_whole_qc_office_cycle(office, open_page, tmp_path):
    reviewer = open_page()
    reviewer.goto(f"{office.url}/qc/jobs")
    sign_in(reviewer, "qc.chen", PASSWORD)
    reviewer.wait_for_url(re.compile(r".*/qc/jobs$"))
    upload(reviewer, tmp_path, "first", [chart("stroke-a", "阿司匹林100mg每日一次。"),
                                          chart("stroke-b", "阿司匹林100mg每日一次，阿托伐他汀20mg每晚一次。", "dr.li"),
                                          chart("stroke-c", "氯吡格雷75mg每日一次。", "dr.li")])
    shot(reviewer, "1-jobs")

    # the queue: every record's findings, filtered to one department, with its counts
    reviewer.goto(f"{office.url}/qc/findings?department=神经内科")
    total = int(reviewer.text_content("#total"))
    assert total >= 4 and reviewer.locator(f"tr[data-rule='{STATIN}']").count() == 2
    shot(reviewer, "2-queue")
    reviewer.goto(f"{office.url}/qc/dashboard")
    statin_row = reviewer.locator("#compliance tr", has_text="Statin at discharge")
    assert statin_row.locator("td").nth(5).inner_text() == "33%"
    reviewer.goto(f"{office.url}/qc/rules")
    assert rule_cells(reviewer, SECTION)[2] == "—"

    # one record in context: confirm, dismiss with a reason (by keyboard), assign
    reviewer.goto(f"{office.url}/qc/findings?record=stroke-a")
    reviewer.click("td a[href*='/qc/records/stroke-a']")
    reviewer.wait_for_url(re.compile(r".*/qc/records/stroke-a.*"))
    before = score(reviewer)
    confirm_id, dismiss_id, statin_id = finding_id(reviewer, SECTION, 0), finding_id(reviewer, SECTION, 1), \
        finding_id(reviewer, STATIN)
    reviewer.click(f"#finding-{confirm_id} .move-confirm button")
    assert reviewer.get_attribute(f"#finding-{confirm_id}", "data-state") == "confirmed"
    reviewer.focus(f"#reason-dismiss-{dismiss_id}")
    reviewer.keyboard.type("该内容记录在护理记录中")
    reviewer.keyboard.press("Enter")
    reviewer.wait_for_selector(f"#finding-{dismiss_id}[data-state='dismissed']")
    assert score(reviewer) >= before  # a dismissed finding no longer counts (here its item was already at its cap)
    after_dismiss = score(reviewer)
    reviewer.fill(f"#assignee-{statin_id}", "dr.qian")
    reviewer.click(f"#finding-{statin_id} .move-assign button")
    assert reviewer.get_attribute(f"#finding-{statin_id}", "data-state") == "assigned"
    shot(reviewer, "3-record-reviewed")
    reviewer.goto(f"{office.url}/qc/rules")
    confirmed, dismissed, precision = rule_cells(reviewer, SECTION)
    assert (confirmed, dismissed, precision) == ("1", "1", "50%")
    assert rule_cells(reviewer, STATIN)[2] == "100%"  # assigning confirms

    # the doctor sees their finding and marks it fixed
    doctor = open_page()
    doctor.goto(f"{office.url}/qc/records/stroke-a")
    sign_in(doctor, "dr.qian", PASSWORD)
    doctor.wait_for_url(re.compile(r".*/qc/records/stroke-a.*"))
    assert doctor.locator(f"#finding-{statin_id} .move-dismiss").count() == 0
    doctor.click(f"#finding-{statin_id} .move-fix button")
    assert doctor.get_attribute(f"#finding-{statin_id}", "data-state") == "fixed"

    # the edited record comes in the next batch: re-checked, the fixed finding closes, the score rises
    reviewer.goto(f"{office.url}/qc/jobs")
    upload(reviewer, tmp_path, "second", [chart("stroke-a", "阿司匹林100mg每日一次，阿托伐他汀20mg每晚一次。")])
    reviewer.goto(f"{office.url}/qc/records/stroke-a")
    assert reviewer.get_attribute(f"#finding-{statin_id}", "data-state") == "closed"
    history = reviewer.text_content(f"#finding-{statin_id} .history")
    assert "recheck" in history and "autoclose" in history and "version 2" in history
    assert score(reviewer) > after_dismiss
    shot(reviewer, "4-record-rechecked")
    reviewer.goto(f"{office.url}/qc/dashboard")
    statin_row = reviewer.locator("#compliance tr", has_text="Statin at discharge")
    assert statin_row.locator("td").nth(5).inner_text() == "67%"
    shot(reviewer, "5-dashboard")

    # at 360 px the record page fits the screen, its tables scroll in their own boxes
    narrow = open_page(360)
    narrow.goto(f"{office.url}/qc/records/stroke-a")
    sign_in(narrow, "qc.chen", PASSWORD)
    narrow.wait_for_url(re.compile(r".*/qc/records/stroke-a.*"))
    assert no_horizontal_scroll(narrow)
    shot(narrow, "6-record-360px")

    # every step is in the audit log, in order, with who did it
    steps = [(e.action, e.user) for e in office.app.extensions["copilot.audit"].entries()
             if e.action.startswith(("qc:job-submit", "qc-office:"))]
    wanted = [("qc:job-submit", "qc.chen"), ("qc-office:job-intake", "system"), ("qc-office:queue", "qc.chen"),
              ("qc-office:confirm", "qc.chen"), ("qc-office:dismiss", "qc.chen"), ("qc-office:assign", "qc.chen"),
              ("qc-office:fix", "dr.qian"), ("qc:job-submit", "qc.chen"), ("qc-office:job-intake", "system"),
              ("qc-office:dashboard", "qc.chen")]
    cursor = 0
    for step in wanted:  # each wanted step appears after the one before it
        assert step in steps[cursor:], (step, steps[cursor:])
        cursor = steps.index(step, cursor) + 1
