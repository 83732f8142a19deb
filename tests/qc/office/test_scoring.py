"""The record score: deductions by rule and severity, capped per item, grades and vetoes, from data."""

from __future__ import annotations

import pytest

from copilot.qc.office.scoring import ScoringError, load, table


def f(rule_id, severity="major", category=None):
    return {"rule_id": rule_id, "category": category or rule_id.split(".")[0], "severity": severity}


def test_the_shipped_table_is_cited_and_complete():
    shipped = table()
    assert "病历书写基本规范" in shipped.standard.basis and shipped.total == 100
    assert [(g.grade, g.min) for g in shipped.grades] == [("甲", 90), ("乙", 75), ("丙", 0)]
    from copilot.qc.registry import CATEGORIES

    assert {c for item in shipped.items for c in item.categories} == set(CATEGORIES)


def test_deductions_caps_rule_overrides_and_grades():
    shipped = table()
    assert shipped.score([]).score == 100 and shipped.score([]).grade == "甲"
    # documentation: 1 per major finding, capped at 5
    many = shipped.score([f("documentation.do_not_use")] * 9)
    assert (many.score, many.deductions) == (95.0, {"documentation": 5})
    # a rule's own deduction wins over its severity's (first course record missing: 10, though critical is 10 too;
    # admission note missing: 10 though it is major, 5)
    override = shipped.score([f("timeliness.admission_note_missing", "major")])
    assert override.deductions == {"timeliness": 10}
    mixed = shipped.score([f("completeness.section_missing")] * 3 + [f("medication_safety.interaction", "critical")]
                          + [f("brand_new.rule", "minor", "brand_new")])
    assert (mixed.score, mixed.grade) == (100 - 6 - 10 - 1, "乙")
    assert shipped.score([f("medication_safety.x", "critical")] * 3).score == 80.0  # capped at 20
    assert shipped.score([f("medication_safety.x", "critical")] * 3).grade == "乙"


def test_a_veto_caps_the_grade_whatever_the_score():
    shipped = table()
    vetoed = shipped.score([f("timeliness.first_course_record_missing", "critical")])
    assert (vetoed.score, vetoed.grade, vetoed.vetoes) == (90.0, "丙", ["缺首次病程记录"])
    assert shipped.score([f("vte.prophylaxis_high_risk", "critical")]).grade == "乙"


def test_a_broken_table_is_refused(tmp_path):
    path = tmp_path / "scoring.yaml"
    path.write_text(table_text := (
        "standard: {title: t, issuer: i, basis: b, version: '1'}\ntotal: 100\n"
        "grades: [{grade: A, min: 0}, {grade: B, min: 50}]\n"
        "items: [{id: x, name: x, name_zh: x, categories: [coding], deduction: {critical: 1, major: 1, minor: 1}, cap: 5}]\n"
        "other: {id: o, name: o, name_zh: o, deduction: {critical: 1, major: 1, minor: 1}, cap: 5}\n"), encoding="utf-8")
    with pytest.raises(ScoringError, match="highest minimum"):
        load(path)
    path.write_text(table_text.replace("{grade: A, min: 0}, {grade: B, min: 50}", "{grade: A, min: 50}, {grade: B, min: 0}")
                    .replace("{critical: 1, major: 1, minor: 1}, cap: 5}]", "{critical: 1, major: 1}, cap: 5}]"))
    with pytest.raises(ScoringError, match="deduction"):
        load(path)
