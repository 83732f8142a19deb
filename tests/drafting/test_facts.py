from copilot.drafting.facts import SourceFacts, extract_facts, normalize_spoken, unsupported


def kinds(text, graph=None):
    return [(f.kind, f.key) for f in extract_facts(text, graph)]


def test_spoken_numbers_become_digits():
    text = normalize_spoken("i take lisinopril twenty milligrams and my pressure was one forty over ninety, two days")
    assert "20 milligrams" in text and "140/90" in text and "2 days" in text


def test_facts_have_offsets_and_normalised_keys(graph):
    text = "Continue Lipitor 20 mg daily for hyperlipidemia. BP 142/88. Pain in the left knee for 3 weeks."
    facts = extract_facts(text, graph)
    for fact in facts:
        assert text[fact.start:fact.end] == fact.text
    keys = {f.key for f in facts}
    assert {"drug:atorvastatin", "dose:20 mg", "number:142/88", "laterality:left:knee", "number:3"} <= keys
    assert any(k.startswith("diagnosis:") for k in keys)


def test_units_are_normalised():
    assert ("dose", "dose:500 mg") in kinds("metformin 500 milligrams")
    assert ("dose", "dose:0.5 mg") in kinds("0.50 mg")
    assert ("dose", "dose:1000 mg") in kinds("1,000 mg")


def test_list_numbers_are_not_facts():
    assert kinds("1. Hypertension.\n2. Follow up.") == [k for k in kinds("1. Hypertension.\n2. Follow up.")
                                                      if k[0] != "number"]


def test_grounding_marks_what_the_source_does_not_say(graph):
    source = SourceFacts(["[doctor] how is the right knee?\n[patient] it hurts, i take ibuprofen four hundred "
                          "milligrams twice a day for about two weeks. my blood pressure is one thirty over eighty."],
                         graph)
    draft = ("Right knee pain for 2 weeks, taking ibuprofen 400 mg twice daily. BP 130/80. "
             "Started warfarin 5 mg. Left knee swelling. Temperature 38.5.")
    marks = {m["text"]: m["reason"] for m in unsupported(draft, source, graph)}
    assert "warfarin" in marks and "5 mg" in marks and "38.5" in marks
    assert "right" in marks["Left knee"]
    for supported in ("Right knee", "ibuprofen", "400 mg", "130/80", "2"):
        assert supported not in marks


def test_chinese_facts(graph):
    keys = {f.key for f in extract_facts("右膝疼痛3天，阿司匹林100毫克，高血压", graph)}
    assert "laterality:right:膝" in keys
    assert "dose:100 mg" in keys and "drug:aspirin" in keys


SOURCE = ("[doctor] any history of diabetes?\n[patient] no, I don't have diabetes. i take lisinopril twenty milligrams "
          "once a day and metformin 500 mg twice a day for three days. my blood pressure was one forty over ninety. "
          "i hurt my left elbow.")


def marks(draft, source=SOURCE, graph=None, **kw):
    return {m["text"]: (m["kind"], m["reason"]) for m in unsupported(draft, SourceFacts([source], graph), graph, **kw)}


def test_a_faithful_paraphrase_is_unmarked(graph):
    draft = ("No history of diabetes. Takes lisinopril 20 mg daily and metformin 500 mg BID for 3 days. "
             "Blood pressure 140/90. Left elbow pain.")
    assert marks(draft, graph=graph) == {}
    assert marks("Elbow pain for 3 weeks.", graph=graph) == {"3 weeks": ("duration", "transcript says 3 days")}


def test_negated_finding_does_not_support_the_assertion(graph):
    assert marks("History of diabetes.", graph=graph)["diabetes"] == ("finding", "transcript says no diabetes")
    assert marks("History of diabetes.", "my mother has diabetes", graph)["diabetes"][1] \
        == "transcript gives diabetes in the family, not the patient"


def test_dose_frequency_and_duration_belong_to_their_drug(graph):
    found = marks("Lisinopril 500 mg twice daily and metformin 20 mg once a day for 3 weeks.", graph=graph)
    assert found["500 mg"] == ("dose", "transcript says 20 mg of Lisinopril")
    assert found["20 mg"] == ("dose", "transcript says 500 mg of metformin")
    assert found["twice daily"][0] == "frequency" and "once daily" in found["twice daily"][1]
    assert found["for 3 weeks"] == ("duration", "transcript says 3 days of metformin")
    assert not marks("Lisinopril 20 mg once daily; metformin 500 mg twice daily.", graph=graph)


def test_sides_need_a_body_site_and_small_bare_numbers_are_not_claims(graph):
    found = marks("Right elbow pain. Left behind 1 day.", graph=graph)
    assert found == {"Right elbow": ("side", "transcript gives the elbow as left, not right")}


def test_invented_people_places_drugs_and_self_talk(graph):
    found = marks("As an AI language model, I cannot diagnose. Patient John Smith lives at 42 Maple Street. "
                  "Started Zorvastatin. The task involves writing a note.", graph=graph)
    kinds = sorted(kind for kind, _ in found.values())
    assert kinds == ["address", "medication", "name", "self_talk", "self_talk"]
    assert found["John Smith"][1] == "name not in the encounter"


def test_procedures_and_truncation(graph):
    found = marks("Plan: surgery next week.", graph=graph)
    assert found["surgery"][0] == "procedure"
    cut = marks("Elbow pain after a fall, and the patient was advised to", graph=graph)
    assert [k for k, _ in cut.values()] == ["truncated"]
    assert marks("Left elbow pain.", graph=graph, truncated=True)["Left elbow pain."][0] == "truncated"


def test_chinese_negation_dose_and_side(graph):
    source = "患者否认糖尿病史，有高血压10年，服用氨氯地平5mg每日一次。左膝疼痛3天。"
    found = marks("既往糖尿病史。高血压10年，氨氯地平10mg每日两次。右膝疼痛3天。", source, graph)
    assert found["糖尿病"] == ("finding", "transcript says no 糖尿病")
    assert found["10mg"][0] == "dose" and found["每日两次"][0] == "frequency" and found["右膝"][0] == "side"
    assert not marks("否认糖尿病。高血压病史10年，口服氨氯地平5mg，每日1次。左膝痛3天。", source, graph)
