"""Single-disease and VTE indicators: which records they apply to, and the QC findings they become.
(Each indicator's statuses on 34 hand-computed charts: tests/benchmarks/test_office_eval.py.)"""

from __future__ import annotations

import pytest

from copilot.qc.indicators import Evaluation, IndicatorError, compliance, indicator_set
from copilot.records.loaders import record_from_json

STROKE_CHART = {
    "id": "stroke-1", "as_of": "2026-11-10T10:00:00+08:00",
    "patient": {"sex": "male", "age": 77},
    "encounter": {"type": "inpatient", "admitted_at": "2026-11-01T08:00:00+08:00",
                  "discharged_at": "2026-11-09T10:00:00+08:00", "department": "神经内科", "attending": "dr.qian"},
    "documents": [{"id": "adm", "type": "admission_note", "authored_at": "2026-11-01T10:00:00+08:00",
                   "text": "主诉：左侧肢体无力。\n体格检查：左侧偏瘫，卧床。\n初步诊断：急性脑梗死\n"},
                  {"id": "dis", "type": "discharge_summary", "authored_at": "2026-11-09T09:00:00+08:00",
                   "text": "出院诊断：急性脑梗死\n出院带药：阿司匹林100mg每日一次。\n"}],
    "diagnoses": [{"text": "急性脑梗死", "code": "I63.9"}],
}


def test_only_whole_inpatient_charts_are_evaluated(graph):
    assert {r.indicator.id for r in Evaluation(record_from_json(STROKE_CHART), graph).results()} >= {
        "qi.stroke.statin_discharge", "qi.vte.prophylaxis_high_risk"}
    one_note = {k: v for k, v in STROKE_CHART.items() if k != "as_of"}
    assert Evaluation(record_from_json(one_note), graph).results() == []
    clinic = dict(STROKE_CHART, encounter={"type": "outpatient"})
    evaluation = Evaluation(record_from_json(clinic), graph)
    assert evaluation.results() == [] and evaluation.vte is None


def test_not_met_indicators_become_cited_findings(qc_runner):
    findings = {f["rule_id"]: f for f in qc_runner.check(record_from_json(STROKE_CHART))}
    statin = findings["single_disease.stroke_statin_discharge"]
    assert statin["category"] == "single_disease" and "no HMG-CoA reductase inhibitors (statins) among the discharge" in statin["message"]
    assert statin["knowledge"][0]["id"] == "qi.stroke.statin_discharge"
    assert "STK-6" in statin["knowledge"][0]["source"]["title"]
    prophylaxis = findings["vte.prophylaxis_high_risk"]
    assert prophylaxis["severity"] == "critical"
    assert "Padua prediction score 5" in prophylaxis["message"] and "Reduced mobility" in prophylaxis["message"]
    assert "single_disease.stroke_antithrombotic_discharge" not in findings  # aspirin at discharge
    assert "timeliness.first_course_record_missing" in findings  # a whole chart without one


def test_compliance_rates_leave_out_excused_and_inapplicable_records():
    rows = [{"indicator": "qi.x", "disease": "ami", "status": s}
            for s in ("met", "met", "not_met", "contraindicated", "not_applicable")]
    assert compliance(rows)["qi.x"] == {"disease": "ami", "met": 2, "not_met": 1, "contraindicated": 1,
                                        "not_applicable": 1, "rate": 0.667}
    assert compliance([{"indicator": "qi.y", "disease": "cap", "status": "not_applicable"}])["qi.y"]["rate"] is None


def test_inconsistent_indicator_knowledge_is_refused(graph, monkeypatch):
    from knowledge.schema import QualityIndicator

    bad = QualityIndicator.model_validate({
        "id": "qi.test.bad", "kind": "quality_indicator", "version": "1", "reviewed": "2026-11-01",
        "effective": "2026-11-01", "review_by": "2027-04-30", "status": "active",
        "source": {"title": "Test", "issuer": "Test", "url": "https://example.org"}, "disease": "gout",
        "name": "x", "name_zh": "x", "measure": "given", "drugs": ["unobtainium"]})
    real = graph.snapshot.active

    def active(today=None, kind=None):
        items = real(today, kind)
        return items + [bad] if kind == "quality_indicator" else items

    indicator_set.cache_clear()
    monkeypatch.setattr(graph.snapshot, "active", active)
    try:
        with pytest.raises(IndicatorError, match="unknown disease 'gout'.*unknown drug 'unobtainium'"):
            indicator_set(graph)
    finally:
        monkeypatch.undo()
        indicator_set.cache_clear()
