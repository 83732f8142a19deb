"""The false alarms and misses issue 12 found on real notes: one test per case, each with the true
positive it must keep."""

from __future__ import annotations

from tests.helpers import NOTE, make_record


def hits(findings, rule_id):
    return [f for f in findings if f["rule_id"] == rule_id]


def test_chief_complaint_stated_in_the_first_line_of_the_history_is_not_missing(run_qc):
    without = NOTE.split("HISTORY OF PRESENT ILLNESS")[1]
    stated = "HISTORY OF PRESENT ILLNESS" + without
    assert hits(run_qc(make_record(stated)), "completeness.section_missing") == []
    unstated = "HISTORY OF PRESENT ILLNESS\n\nMr. Lee is a 58-year-old man.\n" + without.split("\n\n", 2)[2]
    missing = hits(run_qc(make_record(unstated)), "completeness.section_missing")
    assert len(missing) == 1 and "chief complaint" in missing[0]["message"].lower()


def test_a_qualified_denial_is_not_the_finding_denied(run_qc):
    text = NOTE.replace("He denies chest pain and shortness of breath.",
                        "Positive for cough. No barky cough. Denies other joint pain. Reports joint pain in the knee.")
    assert hits(run_qc(make_record(text)), "consistency.asserted_and_denied") == []
    both = NOTE.replace("He denies chest pain and shortness of breath.", "Positive for cough. No cough or fever.")
    assert len(hits(run_qc(make_record(both)), "consistency.asserted_and_denied")) == 1


def test_a_dose_belongs_to_the_drug_it_is_written_with(run_qc):
    text = NOTE.replace("Continue lisinopril 20 mg daily.", "Continue Crestor, metoprolol 50 mg daily.")
    assert hits(run_qc(make_record(text)), "medication_safety.dose_above_max") == []
    # the same dose written with rosuvastatin is above its 40 mg/day maximum
    text = NOTE.replace("Continue lisinopril 20 mg daily.", "Continue Crestor 50 mg daily, metoprolol.")
    assert len(hits(run_qc(make_record(text)), "medication_safety.dose_above_max")) == 1


def test_a_replacement_is_not_duplicate_therapy(run_qc):
    text = NOTE.replace("Continue lisinopril 20 mg daily.", "Start Nexium 40 mg daily to replace her omeprazole 20 mg.")
    assert hits(run_qc(make_record(text)), "medication_safety.duplicate_therapy") == []
    both = NOTE.replace("Continue lisinopril 20 mg daily.", "Start Nexium 40 mg daily. Continue omeprazole 20 mg daily.")
    assert len(hits(run_qc(make_record(both)), "medication_safety.duplicate_therapy")) == 1


def test_an_allergy_history_is_not_an_order(run_qc, graph):
    from copilot.records.loaders import record_from_json
    from copilot.text.medications import mentions

    text = "主诉：咳嗽3天。\n既往史：有青霉素过敏史。\n诊疗计划：阿莫西林胶囊0.5g，每日3次。\n"
    found = mentions(record_from_json(make_record(text)), graph)
    assert [(m.drug.name, m.dose, m.unit, m.per_day) for m in found] == [("amoxicillin", 0.5, "g", 3.0)]


def test_chinese_dose_straight_after_the_form(graph):
    from copilot.records.loaders import record_from_json
    from copilot.text.medications import mentions

    found = mentions(record_from_json(make_record("阿莫西林胶囊2g，每日3次口服。")), graph)
    assert [(m.dose, m.unit, m.per_day) for m in found] == [(2.0, "g", 3.0)]


def test_allergy_classes_and_synonyms_resolve_to_cited_classes(graph):
    for allergen, cls in [("sulfa", "sulfonamide_antibiotic"), ("Sulfa drugs", "sulfonamide_antibiotic"),
                          ("sulfonamides", "sulfonamide_antibiotic"), ("磺胺类", "sulfonamide_antibiotic"),
                          ("PCN", "penicillin"), ("青霉素类", "penicillin"), ("头孢类", "cephalosporin"),
                          ("NSAIDs", "nsaid"), ("sulfa allergy", "sulfonamide_antibiotic")]:
        drugs, classes = graph.resolve_allergen(allergen)
        assert cls in classes, allergen
        assert graph.classes[cls].source.url


def test_bactrim_with_a_sulfa_allergy_is_caught(run_qc):
    for name in ("Bactrim DS", "trimethoprim-sulfamethoxazole"):
        text = NOTE.replace("Continue lisinopril 20 mg daily.", f"Start {name} 1 tablet twice daily.")
        found = hits(run_qc(make_record(text, patient={"allergies": ["sulfa"]})), "medication_safety.allergy")
        assert len(found) == 1 and any(k["id"] == "drug_class.sulfonamide_antibiotic" for k in found[0]["knowledge"]), name


def test_an_allergen_not_recognised_is_reported_not_dropped(run_qc):
    found = run_qc(make_record(patient={"allergies": ["Zyphorexin (hives)", "NKDA", "peanuts", "penicillin"]}))
    unrecognised = hits(found, "medication_safety.allergen_unrecognised")
    assert [f["message"] for f in unrecognised] == [
        "Allergy 'Zyphorexin (hives)' is not recognised as a drug or drug class, so orders are not checked against it."]


def test_units_abbreviated_u_in_chinese(run_qc):
    text = "主诉：血糖升高1年。\n诊疗计划：胰岛素10U皮下注射，每日3次。\n"
    found = hits(run_qc(make_record(text)), "documentation.do_not_use")
    assert [f["evidence"]["text"] for f in found] == ["10U"]
    assert hits(run_qc(make_record("诊疗计划：胰岛素10单位皮下注射。")), "documentation.do_not_use") == []


def test_an_allergy_written_only_in_the_notes_allergy_line_is_checked(run_qc):
    note = ("门诊病历\n主诉：咳嗽咳痰伴发热5天。\n过敏史：磺胺类药物过敏。\n"
            "治疗意见：复方新诺明2片 每日2次，口服7天。")
    conflicts = hits(run_qc(make_record(note)), "medication_safety.allergy")
    assert len(conflicts) == 1 and conflicts[0]["evidence"]["text"] == "复方新诺明"
    denied = note.replace("磺胺类药物过敏", "否认药物过敏史")
    assert hits(run_qc(make_record(denied)), "medication_safety.allergy") == []
