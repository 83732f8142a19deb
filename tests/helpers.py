"""Helpers shared by test modules: sample records and transcripts, SSE parsing, waiting, sign-in.

Fixtures live in conftest files; plain functions and data that several test packages use live
here, so no test imports another test module or a conftest.
"""

from __future__ import annotations

import json
import re
import textwrap
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
BROWSER_ARTIFACTS = REPO / "test-artifacts" / "browser"
BROWSER_USER, BROWSER_PASSWORD = "dr.browser", "correct horse battery staple"

NOTE = """CHIEF COMPLAINT

Follow-up of hypertension.

HISTORY OF PRESENT ILLNESS

Mr. Lee is a 58-year-old man who presents for follow-up of hypertension. He reports good adherence to his
medications and checks his blood pressure at home. He denies chest pain and shortness of breath.

PHYSICAL EXAMINATION

Blood pressure 132/84. Heart regular rate and rhythm. Lungs clear bilaterally.

ASSESSMENT AND PLAN

Hypertension, controlled. Continue lisinopril 20 mg daily. Recheck a basic metabolic panel in 6 months.
"""

TRANSCRIPT = """[doctor] hi mister jones, what brings you in today?
[patient] my right knee has been hurting for about two weeks, since i slipped on the stairs.
[doctor] have you taken anything for it?
[patient] ibuprofen, four hundred milligrams, twice a day. it helps a little.
[doctor] any other medical problems?
[patient] i have high blood pressure, i take lisinopril ten milligrams every morning.
[doctor] on exam there is mild swelling of the right knee and tenderness along the medial joint line.
[doctor] i think this is a medial meniscus strain. we will get an x-ray of the right knee, continue ibuprofen
with food, and i will see you back in two weeks.
[patient] okay, thank you."""


def make_record(text: str = NOTE, **overrides) -> dict:
    """A project JSON record around ``text``; ``overrides`` replace (or, for dicts, update) fields."""
    record = {
        "id": "rec-1",
        "patient": {"sex": "male", "age": 58, "allergies": []},
        "encounter": {"type": "outpatient"},
        "documents": [{"id": "note-1", "type": "progress_note", "authored_at": "2026-11-02T10:00:00",
                       "signed_at": "2026-11-02T10:30:00", "text": text}],
        "medications": [],
        "diagnoses": [],
    }
    for key, value in overrides.items():
        if isinstance(value, dict) and isinstance(record.get(key), dict):
            record[key] = {**record[key], **value}
        else:
            record[key] = value
    return record


def scripted_sections(replies: dict[str, str], otherwise: str = "Not stated in the encounter."):
    """A fake-engine script that answers a drafting prompt with the reply for its section, found
    by the section title in the prompt's task line ("Task: write the HISTORY OF PRESENT ILLNESS ...")."""
    def script(prompt: str, request) -> str:
        task = prompt[prompt.rfind("Task: write the "):]
        return next((reply for title, reply in replies.items() if task.startswith(f"Task: write the {title} ")),
                    otherwise)
    return script


def make_app(engine, knowledge_home, home):
    """The app as tests build it: TESTING, a given instance directory, shipped knowledge, an engine."""
    from copilot.web import create_app

    return create_app({"TESTING": True, "home": home, "knowledge_home": knowledge_home}, engine=engine)


def wait_for(predicate, timeout: float = 90.0):
    """Poll until ``predicate`` returns something true (and return it), or fail."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = predicate()
        if value:
            return value
        time.sleep(0.05)
    raise AssertionError("condition not reached in time")


def parse_sse(body: str) -> list[tuple[str, dict]]:
    """[(event, data)] of a complete Server-Sent Events body."""
    events = []
    for block in body.strip().split("\n\n"):
        fields = dict(line.split(": ", 1) for line in block.splitlines())
        events.append((fields["event"], json.loads(fields["data"])))
    return events


def events_of(response) -> list[tuple[str, dict]]:
    return parse_sse(response.get_data(as_text=True))


def csrf_from(html: str) -> str:
    match = re.search(r'name="csrf[-_]token"[^>]*(?:content|value)="([^"]+)"', html)
    assert match, "page carries no CSRF token"
    return match.group(1)


# Knowledge sources for build tests -----------------------------------------------------------------

DEFAULTS = """\
defaults:
  version: "1"
  reviewed: 2026-11-01
  effective: 2026-11-01
  review_by: 2027-04-30
  status: active
  source: {title: Test source document, issuer: Test issuer, url: https://example.org/doc}
"""


def write_sources(folder: Path, files: dict[str, str]) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    for name, body in files.items():
        (folder / name).write_text(textwrap.dedent(body), encoding="utf-8")
    return folder


MINI = {
    "classes.yaml": "kind: drug_class\n" + DEFAULTS + """
items:
  - {id: drug_class.beta_lactam, name: beta-lactam, parent: null}
  - id: drug_class.penicillin
    name: penicillins
    parent: beta_lactam
    cross_reacts_with: [{class: cephalosporin, note: low risk}]
  - {id: drug_class.cephalosporin, name: cephalosporins, parent: beta_lactam}
""",
    "drugs.yaml": "kind: drug\n" + DEFAULTS + """
items:
  - id: drug.amoxicillin
    name: amoxicillin
    brands: [Amoxil]
    classes: [penicillin, beta_lactam]
    allergy_groups: [penicillin]
    max_daily_dose: {value: 3000, unit: mg, route: oral}
  - id: drug.cephalexin
    name: cephalexin
    brands: [Keflex]
    classes: [cephalosporin, beta_lactam]
    allergy_groups: [cephalosporin]
    max_daily_dose: {value: 4000, unit: mg, route: oral}
""",
    "passages.yaml": "kind: passage\n" + DEFAULTS + """
items:
  - id: passage.test.sepsis
    title: Sepsis bundle
    text: Obtain blood cultures before antibiotics, measure lactate, and give broad-spectrum antibiotics within one hour of recognizing septic shock in adult patients.
    topics: [sepsis]
  - id: passage.test.old-advice
    title: Old screening advice
    text: This outdated recommendation about screening intervals was replaced by a newer statement and must never be shown to clinicians again in any search.
    topics: [screening]
    status: retired
    retired_reason: Superseded by the newer statement
""",
}


# Browser helpers (Playwright pages) -----------------------------------------------------------------

def wait_until(page, predicate: str, timeout: float = 30.0, what: str = "") -> None:
    """Poll a JS predicate (a function expression) until it is truthy."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if page.evaluate(predicate):
            return
        time.sleep(0.1)
    raise AssertionError(f"timed out after {timeout:.0f} s waiting for {what or predicate}")


def sign_in(page, user: str, password: str) -> None:
    page.fill("#username", user)
    page.fill("#password", password)
    page.click("button[type=submit]")


def no_horizontal_scroll(page) -> bool:
    return page.evaluate("() => document.documentElement.scrollWidth <= window.innerWidth")
