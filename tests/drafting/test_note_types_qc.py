"""Each drafting note type carries every section QC's completeness rules require of its note type, so a
note drafted from the template (section titles as headings) draws no completeness finding."""

from datetime import date

import pytest

from copilot.drafting.draft import note_types
from tests.helpers import make_record

TYPES = note_types()


@pytest.fixture(scope="module")
def qc(shipped_snapshot):
    from copilot.qc.runner import QCRunner

    return QCRunner(shipped_snapshot, today=date(2026, 12, 1))


def _note(spec: dict) -> str:
    body = "患者诉相关情况，已记录。" if spec.get("language") == "zh" else "Stated in the encounter and recorded."
    return "\n\n".join(f"{s['title']}\n{body}" for s in spec["sections"]) + "\n"


def test_every_type_names_a_qc_note_type(graph):
    known = {n.id for n in graph.note_types}
    assert {name: spec.get("qc_note_type") in known for name, spec in TYPES.items()} == {n: True for n in TYPES}


@pytest.mark.parametrize("name", sorted(TYPES))
def test_a_note_written_from_the_template_passes_completeness(qc, name):
    from copilot.records.loaders import record_from_json

    findings = qc.check(record_from_json(make_record(_note(TYPES[name]))))
    assert [f["message"] for f in findings if f["category"] == "completeness"] == []


def test_a_missing_template_section_is_caught(qc):
    spec = dict(TYPES["brief"], sections=[s for s in TYPES["brief"]["sections"] if s["id"] != "physical_exam"])
    from copilot.records.loaders import record_from_json

    findings = qc.check(record_from_json(make_record(_note(spec))))
    assert [f["rule_id"] for f in findings if f["category"] == "completeness"] == ["completeness.section_missing"]
