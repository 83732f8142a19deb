"""Caprini and Padua: which model, each factor with its evidence, one factor per group.
(34 hand-scored charts: tests/benchmarks/test_office_eval.py.)"""

from __future__ import annotations

from copilot.qc.vte_risk import assess
from copilot.records.loaders import record_from_json


def chart(text="", procedures=(), documents=(), **patient) -> dict:
    return {"id": "v", "patient": {"sex": "female", "age": 76, **patient},
            "encounter": {"type": "inpatient", "admitted_at": "2026-11-01T08:00:00+00:00"},
            "documents": [{"id": "d1", "type": "admission_note", "text": text}, *documents],
            "procedures": list(procedures)}


def test_a_surgical_stay_gets_caprini_with_one_factor_per_group(graph):
    record = record_from_json(chart(
        "HPI: confined to bed for a week, bed rest ordered. Family history: sister had a DVT.",
        procedures=[{"name": "Total knee replacement", "performed_at": "2026-11-02T08:00:00+00:00",
                     "ended_at": "2026-11-02T10:00:00+00:00"},
                    {"name": "Wound excision", "performed_at": "2026-11-05T08:00:00+00:00"}]))
    result = assess(record, graph)
    factors = {h.factor.id: h for h in result.factors}
    assert result.model.id == "risk_model.caprini"
    # age 76 (3; not 41-60 or 61-74), arthroplasty 5 (beats major open surgery 2 and minor surgery 1),
    # confined to bed 2 (beats bed rest 1), family history of VTE 3
    assert set(factors) == {"age_75_plus", "arthroplasty", "confined_to_bed", "family_history_vte"}
    assert (result.score, result.band.name, result.high_risk) == (13, "high", True)
    assert factors["arthroplasty"].evidence.text == "Total knee replacement (120 min)"
    assert factors["family_history_vte"].evidence.document.id == "d1"


def test_a_medical_stay_gets_padua_and_a_surgery_without_an_end_is_minor(graph):
    medical = assess(record_from_json(chart("Pneumonia. No history of DVT.")), graph)
    assert medical.model.id == "risk_model.padua"
    assert {h.factor.id for h in medical.factors} == {"age_70_plus", "acute_infection_rheumatologic"}
    assert (medical.score, medical.band.name) == (2, "low")
    untimed = assess(record_from_json(chart(procedures=[{"name": "Laparoscopic appendectomy"}], age=30)), graph)
    assert [(h.factor.id, h.factor.points) for h in untimed.factors] == [("minor_surgery", 1)]
    assert assess(record_from_json(dict(chart(), encounter={"type": "outpatient"})), graph) is None
