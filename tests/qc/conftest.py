from __future__ import annotations

import pytest

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


def make_record(text: str = NOTE, **overrides) -> dict:
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


@pytest.fixture(scope="session")
def qc_engine(shipped_snapshot):
    from datetime import date

    from copilot.qc.engine import QCEngine

    return QCEngine(shipped_snapshot, today=date(2026, 12, 1))


@pytest.fixture
def run_qc(qc_engine):
    from copilot.records.loaders import record_from_json

    def run(data: dict) -> list[dict]:
        return qc_engine.check(record_from_json(data))

    return run


@pytest.fixture
def paced_records(monkeypatch):
    """Each batch record takes at least 2 ms: a job of thousands of small records would otherwise
    finish between two progress polls on an idle machine, and the tests of stopping, cancelling
    and resuming a job mid-way would test nothing."""
    import time

    from copilot.qc import batch

    check = batch._check

    def paced(loaded):
        time.sleep(0.002)
        return check(loaded)

    monkeypatch.setattr(batch, "_check", paced)


def wait_for(predicate, timeout: float = 90.0):
    """Poll until ``predicate`` returns something true (and return it), or fail."""
    import time

    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = predicate()
        if value:
            return value
        time.sleep(0.05)
    raise AssertionError("condition not reached in time")
