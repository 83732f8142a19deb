"""Each category: a clean record gives no finding, a planted defect gives exactly the expected one."""

import pytest

from copilot.qc.registry import CATEGORIES
from copilot.qc.runner import load_rules
from tests.helpers import NOTE, make_record


def rules_hit(findings, category=None):
    return sorted(f["rule_id"] for f in findings if category is None or f["category"] == category)


def test_clean_record_has_no_findings(run_qc):
    assert run_qc(make_record()) == []


def test_every_finding_has_the_documented_shape(run_qc):
    text = NOTE.replace("lisinopril 20 mg daily", "lisinopril 20 mg QD")
    findings = run_qc(make_record(text, patient={"allergies": ["penicillin"]},
                                  medications=[{"name": "Augmentin", "dose": 875, "unit": "mg", "frequency": "BID"}]))
    assert {f["category"] for f in findings} == {"documentation", "medication_safety"}
    for finding in findings:
        assert set(finding) == {"record_id", "rule_id", "category", "severity", "message", "evidence", "knowledge", "origin"}
        assert finding["category"] in CATEGORIES and finding["severity"] in {"critical", "major", "minor"}
        assert finding["origin"] == "rule" and finding["knowledge"]
        for cited in finding["knowledge"]:
            assert set(cited) == {"id", "version", "source"} and cited["source"]["url"]
    qd = next(f for f in findings if f["category"] == "documentation")
    assert qd["evidence"]["text"].startswith("QD") and text[qd["evidence"]["start"]:qd["evidence"]["end"]] == qd["evidence"]["text"]


# -- completeness ----------------------------------------------------------------------------
def test_missing_section(run_qc):
    text = NOTE.split("PHYSICAL EXAMINATION")[0] + "ASSESSMENT AND PLAN" + NOTE.split("ASSESSMENT AND PLAN")[1]
    findings = run_qc(make_record(text))
    assert rules_hit(findings) == ["completeness.section_missing"]
    assert "Physical" in findings[0]["message"] and findings[0]["knowledge"][0]["id"].startswith("note_type.")


def test_empty_section(run_qc):
    text = NOTE.replace("Blood pressure 132/84. Heart regular rate and rhythm. Lungs clear bilaterally.", "N/A")
    findings = run_qc(make_record(text))
    assert rules_hit(findings) == ["completeness.section_empty"]
    assert findings[0]["evidence"]["text"] == "PHYSICAL EXAMINATION"


def test_header_variants_count_as_present(run_qc):
    text = (NOTE.replace("CHIEF COMPLAINT\n", "Chief Complaint:").replace("HISTORY OF PRESENT ILLNESS", "HPI:")
            .replace("PHYSICAL EXAMINATION", "Physical Exam").replace("ASSESSMENT AND PLAN", "Assessment & Plan"))
    assert rules_hit(run_qc(make_record(text)), "completeness") == []


def test_chinese_admission_record_sections(run_qc):
    text = "主诉：胸痛3天。\n现病史：患者3天前出现胸痛。\n体格检查：血压130/80mmHg。\n初步诊断：胸痛待查。\n"
    data = make_record(text, encounter={"type": "inpatient", "admitted_at": "2026-11-02T08:00:00"})
    data["documents"][0]["type"] = "admission_note"
    missing = {f["message"] for f in run_qc(data) if f["rule_id"] == "completeness.section_missing"}
    assert any("既往史" in m or "Past" in m for m in missing)
    assert not any("主诉" in m or "现病史" in m for m in missing)


# -- timeliness ------------------------------------------------------------------------------
@pytest.mark.parametrize("doc_type, anchor, hours, late", [
    ("admission_note", "admitted_at", 23.5, False), ("admission_note", "admitted_at", 30, True),
    ("first_course_record", "admitted_at", 7, False), ("first_course_record", "admitted_at", 12, True),
    ("discharge_summary", "discharged_at", 20, False), ("discharge_summary", "discharged_at", 50, True),
])
def test_signed_within_the_time_limit(run_qc, doc_type, anchor, hours, late):
    from datetime import datetime, timedelta

    start = datetime(2026, 11, 2, 8, 0)
    signed = (start + timedelta(hours=hours)).isoformat()
    data = make_record(encounter={"type": "inpatient", "admitted_at": start.isoformat(),
                                  "discharged_at": start.isoformat() if anchor == "discharged_at" else None})
    data["documents"][0].update(type=doc_type, authored_at=signed, signed_at=signed)
    findings = [f for f in run_qc(data) if f["category"] == "timeliness"]
    assert bool(findings) == late
    if late:
        assert findings[0]["knowledge"][0]["id"].startswith("time_limit.cn.")
        assert f"{hours:.1f} h" in findings[0]["message"]


# -- consistency -----------------------------------------------------------------------------
def test_pregnancy_in_a_male_patient(run_qc):
    findings = run_qc(make_record(NOTE.replace("Lungs clear bilaterally.", "Lungs clear bilaterally. Pregnancy test pending.")))
    assert rules_hit(findings) == ["consistency.sex_specific_term"]


def test_relatives_are_not_the_patient(run_qc):
    text = NOTE.replace("checks his blood pressure at home.", "checks his blood pressure at home. His mother had ovarian cancer.")
    assert run_qc(make_record(text)) == []


def as_woman(text):
    import re

    text = text.replace("Mr. Lee", "Ms. Lee").replace(" man ", " woman ")
    return re.sub(r"\b(He|his)\b", lambda m: {"He": "She", "his": "her"}[m.group()], text)


def test_prostate_in_a_female_patient(run_qc):
    text = as_woman(NOTE)
    assert run_qc(make_record(text, patient={"sex": "female"})) == []
    text = text.replace("Lungs clear bilaterally.", "Lungs clear bilaterally. Prostate nontender.")
    assert rules_hit(run_qc(make_record(text, patient={"sex": "female"}))) == ["consistency.sex_specific_term"]


def test_pronouns_against_recorded_sex(run_qc):
    text = as_woman(NOTE)
    findings = run_qc(make_record(text, patient={"sex": "male"}))
    assert rules_hit(findings) == ["consistency.pronoun_sex"]


def test_finding_denied_and_reported(run_qc):
    text = NOTE.replace("He denies chest pain and shortness of breath.",
                        "He reports chest pain on exertion. Review of systems: denies chest pain.")
    assert rules_hit(run_qc(make_record(text))) == ["consistency.asserted_and_denied"]
    uncertain = NOTE.replace("He denies chest pain and shortness of breath.",
                             "He reports chest pain on exertion. He is not sure whether the chest pain is new.")
    assert rules_hit(run_qc(make_record(uncertain))) == []


def test_left_right_conflict(run_qc):
    text = (NOTE.replace("for follow-up of hypertension.", "with left knee pain for two weeks.")
            .replace("Lungs clear bilaterally.", "Right knee with effusion and tenderness."))
    findings = run_qc(make_record(text))
    assert rules_hit(findings) == ["consistency.laterality_conflict"]
    both = text.replace("Right knee with effusion", "Left knee with effusion; right knee normal")
    assert rules_hit(run_qc(make_record(both))) == []


# -- medication safety -----------------------------------------------------------------------
def test_allergy_same_class_and_cross_reactivity(run_qc):
    same = run_qc(make_record(NOTE.replace("Continue lisinopril 20 mg daily.", "Start amoxicillin 500 mg three times daily."),
                              patient={"allergies": ["Penicillin"]}))
    assert rules_hit(same) == ["medication_safety.allergy"] and same[0]["severity"] == "critical"
    cross = run_qc(make_record(NOTE.replace("Continue lisinopril 20 mg daily.", "Start Keflex 500 mg four times daily."),
                               patient={"allergies": ["penicillin"]}))
    assert rules_hit(cross) == ["medication_safety.allergy"] and "cross-reactivity" in cross[0]["message"]
    assert run_qc(make_record(patient={"allergies": ["penicillin"]})) == []


def test_allergy_list_in_the_note_is_not_a_prescription(run_qc):
    text = NOTE.replace("PHYSICAL EXAMINATION", "ALLERGIES: amoxicillin (rash).\n\nPHYSICAL EXAMINATION")
    assert rules_hit(run_qc(make_record(text, patient={"allergies": ["amoxicillin"]})), "medication_safety") == []


def test_duplicate_therapy(run_qc):
    text = NOTE.replace("Continue lisinopril 20 mg daily.", "Continue lisinopril 20 mg daily. Omeprazole 20 mg daily and pantoprazole 40 mg daily.")
    assert rules_hit(run_qc(make_record(text))) == ["medication_safety.duplicate_therapy"]
    switched = NOTE.replace("Continue lisinopril 20 mg daily.", "We changed omeprazole to pantoprazole 40 mg daily.")
    assert rules_hit(run_qc(make_record(switched))) == []


def test_same_drug_twice_in_the_list(run_qc):
    meds = [{"name": "lisinopril", "dose": 20, "unit": "mg", "frequency": "daily"},
            {"name": "Zestril", "dose": 10, "unit": "mg", "frequency": "daily"}]
    assert "medication_safety.duplicate_drug" in rules_hit(run_qc(make_record(medications=meds)))


@pytest.mark.parametrize("plan, level", [
    ("Continue warfarin 5 mg daily. Ibuprofen 400 mg every 8 hours for knee pain.", "major"),
    ("Simvastatin 40 mg nightly. Start clarithromycin 500 mg twice daily.", "critical"),
])
def test_interactions(run_qc, plan, level):
    findings = run_qc(make_record(NOTE.replace("Continue lisinopril 20 mg daily.", plan)))
    assert rules_hit(findings) == ["medication_safety.interaction"]
    assert findings[0]["severity"] == level and findings[0]["knowledge"][0]["id"].startswith("ddi.")


@pytest.mark.parametrize("plan, over", [
    ("Acetaminophen 1000 mg every 4 hours as needed.", True),
    ("Acetaminophen 1 g every 6 hours as needed.", False),
    ("Lisinopril 100 mg daily.", True),
    ("Metformin 500mg q8h.", False),
    ("Metformin 1000 mg three times daily.", True),
])
def test_dose_above_label_maximum(run_qc, plan, over):
    findings = run_qc(make_record(NOTE.replace("Continue lisinopril 20 mg daily.", plan)))
    assert (rules_hit(findings) == ["medication_safety.dose_above_max"]) == over
    assert over or findings == []


def test_structured_dose_is_checked(run_qc):
    meds = [{"name": "atorvastatin", "dose": 120, "unit": "mg", "route": "oral", "frequency": "once daily"}]
    findings = run_qc(make_record(medications=meds))
    assert rules_hit(findings) == ["medication_safety.dose_above_max"] and findings[0]["evidence"] is None


def test_unknown_drugs_are_ignored(run_qc):
    assert run_qc(make_record(NOTE.replace("lisinopril", "zorbaflaxin"))) == []


# -- documentation ---------------------------------------------------------------------------
@pytest.mark.parametrize("written, flagged", [
    ("insulin glargine 10 U at bedtime", "10 U"), ("colchicine 1.0 mg daily", "1.0 mg"), ("warfarin .5 mg daily", ".5 mg"),
    ("MSO4 2 mg IV every 4 hours", "MSO4"), ("vitamin D 2000 IU daily", "2000 IU"), ("aspirin 81 mg QOD", "QOD"),
])
def test_do_not_use_abbreviations(run_qc, written, flagged):
    findings = run_qc(make_record(NOTE.replace("Recheck a basic metabolic panel in 6 months.", f"Also {written}.")))
    documentation = [f for f in findings if f["category"] == "documentation"]
    assert [f["evidence"]["text"].strip().rstrip(".") for f in documentation] == [flagged]
    assert documentation[0]["knowledge"][0]["id"].startswith("abbr.tjc.")


def test_safe_spellings_are_not_flagged(run_qc):
    text = NOTE.replace("Recheck", "Insulin glargine 10 units at bedtime, colchicine 1 mg daily, warfarin 0.5 mg. Recheck")
    assert rules_hit(run_qc(make_record(text))) == []


# -- coding ----------------------------------------------------------------------------------
def test_code_title_must_match_the_diagnosis(run_qc):
    good = [{"code": "I10", "text": "hypertension"}, {"code": "E11.9", "text": "DM2 without complications"}]
    assert run_qc(make_record(diagnoses=good)) == []
    bad = run_qc(make_record(diagnoses=[{"code": "E11.9", "text": "essential hypertension"}]))
    assert rules_hit(bad) == ["coding.title_mismatch"]
    assert bad[0]["knowledge"][0]["id"] == "icd10cm.E11.9"
    unknown = run_qc(make_record(diagnoses=[{"code": "Q99.999", "text": "something"}]))
    assert rules_hit(unknown) == ["coding.unknown_code"]


def test_rules_are_data_and_invalid_rules_are_refused(tmp_path):
    rules = load_rules()
    assert {r.category for r in rules} == set(CATEGORIES)
    (tmp_path / "bad.yaml").write_text("category: coding\nrules:\n  - {id: coding.x, check: nope, severity: major, message: m}\n")
    with pytest.raises(ValueError, match="no check named 'nope'"):
        load_rules(tmp_path)


def test_allergy_entries_with_reactions(run_qc):
    plan = NOTE.replace("Continue lisinopril 20 mg daily.", "Start cephalexin 500 mg four times daily.")
    for allergy in ("penicillin (hives)", "Penicillin - rash", "penicillins: anaphylaxis"):
        assert rules_hit(run_qc(make_record(plan, patient={"allergies": [allergy]}))) == ["medication_safety.allergy"], allergy


def test_negated_words_in_code_titles_do_not_count(run_qc):
    bad = run_qc(make_record(diagnoses=[{"code": "K21.9", "text": "esophagitis"}]))
    assert rules_hit(bad) == ["coding.title_mismatch"]
    assert run_qc(make_record(diagnoses=[{"code": "K21.9", "text": "GERD"}, {"code": "N20.0", "text": "nephrolithiasis"}])) == []
