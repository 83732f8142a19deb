"""The QC office's one view of the text layer: stated / negated / given / at discharge / excused, with evidence."""

from __future__ import annotations

from copilot.qc.record_facts import RecordFacts
from copilot.records.loaders import record_from_json
from knowledge.schema import Terms, Threshold


def facts(graph, text: str, **record) -> RecordFacts:
    data = {"id": "r", "encounter": {"type": "inpatient", "admitted_at": "2026-11-03T08:00:00+08:00"},
            "documents": [{"id": "d1", "type": "admission_note", "authored_at": "2026-11-03T09:00:00+08:00",
                           "text": text}], **record}
    return RecordFacts(record_from_json(data), graph)


def test_stated_skips_negated_family_and_non_mentions(graph):
    text = ("现病史：患者无心力衰竭病史，未诉胸痛，予阿司匹林300mg嚼服。\n家族史：母亲有深静脉血栓。\n"
            "诊断：急性非ST段抬高型心肌梗死\nHPI: denies heart failure. Non-ST-elevation myocardial infarction.")
    found = facts(graph, text)
    assert found.stated(Terms(zh=["心力衰竭"], en=["heart failure"])) == []
    assert found.stated(Terms(zh=["ST段抬高型心肌梗死"], en=["ST-elevation myocardial infarction"])) == []
    assert found.stated(Terms(zh=["深静脉血栓"])) == []
    family = found.stated(Terms(zh=["深静脉血栓"]), family=True)
    assert [e.text for e in family] == ["深静脉血栓"] and family[0].document.id == "d1"
    # "未诉胸痛，予阿司匹林" gives aspirin: a negation does not reach past the comma of its clause
    given = found.given(["aspirin"], [])
    assert [e.text for e in given] == ["阿司匹林"] and given[0].at.hour == 9


def test_structured_fields_give_evidence_with_times(graph):
    found = facts(graph, "Plan: continue.", medications=[
        {"name": "Aspirin", "dose": 300, "unit": "mg", "started_at": "2026-11-03T08:20:00+08:00"},
        {"name": "metoprolol succinate", "at_discharge": True}, {"name": "atorvastatin", "frequency": "qn"}],
        diagnoses=[{"text": "Acute ST elevation myocardial infarction", "code": "I21.0"}],
        observations=[{"name": "LVEF", "value": 35, "unit": "%"}])
    aspirin = found.given(["aspirin"], [])
    assert [(e.where, e.at.minute) for e in aspirin] == [("medications[0]", 20)]
    assert [e.where for e in found.discharge_prescriptions([], ["beta_blocker"])] == ["medications[1]"]
    assert found.discharge_prescriptions([], ["statin"]) == []  # given, but not marked at discharge
    assert found.diagnosis_mentions(Terms(codes=["I21.0"]), principal=True)[0].where == "diagnoses[0]"
    assert found.measurement(Threshold(names=["LVEF"], below=40)).value == 35
    assert found.measurement(Threshold(names=["LVEF"], below=30)) is None


def test_discharge_sections_measurements_in_text_and_excuses(graph):
    text = ("出院诊断：急性心肌梗死\n治疗经过：心脏彩超示LVEF 32%，BMI 31.5。住院期间曾用氯吡格雷。\n"
            "出院带药：阿司匹林100mg每日一次，瑞舒伐他汀10mg每晚。\n患者对β受体阻滞剂不耐受（哮喘）。")
    found = facts(graph, text, patient={"allergies": ["Lisinopril (angioedema)", "clopidogrel"]})
    discharge = found.discharge_prescriptions([], ["statin", "antiplatelet"])
    assert [e.text for e in discharge] == ["阿司匹林", "瑞舒伐他汀"]  # clopidogrel was not prescribed at discharge
    assert found.measurement(Threshold(names=["LVEF", "射血分数"], below=40)).value == 32
    assert found.measurement(Threshold(names=["BMI"], at_least=30)).value == 31.5
    intolerant = found.excluded_drug([], ["beta_blocker"])
    assert "不耐受" in intolerant.text and intolerant.document.id == "d1"
    assert found.excluded_drug(["lisinopril"], []).where == "patient.allergies[0]"
    assert found.excluded_drug([], ["ace_inhibitor"]).where == "patient.allergies[0]"  # the class's allergy group
    assert found.excluded_drug([], ["antiplatelet"]) is None  # a clopidogrel allergy leaves aspirin
    assert [e.text for e in found.given(["clopidogrel"], [])] == ["氯吡格雷"]


def test_the_time_a_record_describes(graph):
    chart = facts(graph, "note", as_of="2026-11-03T14:00:00+08:00")
    assert chart.whole_chart and chart.hours_since_admission() == 6
    note = facts(graph, "note")
    assert not note.whole_chart and note.hours_since_admission() == 1  # its newest note
