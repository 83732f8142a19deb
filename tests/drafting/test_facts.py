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
