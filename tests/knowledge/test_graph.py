from knowledge.graph import RELATIONS, icd10_title


def test_names_resolve_to_generics(graph):
    assert graph.resolve_drug("Coumadin").name == "warfarin"
    assert graph.resolve_drug("华法林").name == "warfarin"
    assert graph.resolve_drug("HCTZ").name == "hydrochlorothiazide"
    assert graph.resolve_drug("LIPITOR").name == "atorvastatin"
    assert graph.resolve_drug("not-a-drug") is None


def test_class_membership_includes_ancestors(graph):
    classes = graph.classes_of("amoxicillin")
    assert {"penicillin", "beta_lactam"} <= classes
    assert "omeprazole" in {d.name for d in graph.members("ppi")}


def test_interactions_match_by_drug_or_class_in_either_order(graph):
    forward = {i.id for i in graph.interactions_between("warfarin", "ibuprofen")}
    backward = {i.id for i in graph.interactions_between("Advil", "Coumadin")}
    assert forward and forward == backward
    assert any(i.severity in {"major", "contraindicated"} for i in graph.interactions_between("sertraline", "linezolid"))
    assert graph.interactions_between("amlodipine", "acetaminophen") == []


def test_allergy_cross_reactivity(graph):
    cross = graph.allergy_conflicts("cephalexin", "penicillin")
    assert any(f["type"] == "cross_reactivity" and f["classes"][1] == "cephalosporin" for f in cross)
    assert any(f["type"] == "same_class" for f in graph.allergy_conflicts("amoxicillin", "Penicillins"))
    assert graph.allergy_conflicts("metformin", "penicillin") == []
    assert graph.allergy_conflicts("amoxicillin", "cats") == []


def test_duplicate_therapy_and_doses(graph):
    assert [c.id for c in graph.duplicate_classes("omeprazole", "pantoprazole")] == ["drug_class.ppi"]
    assert graph.duplicate_classes("lisinopril", "amlodipine") == []
    dose, drug = graph.max_daily_dose("Tylenol")
    assert (drug.name, dose.value, dose.unit) == ("acetaminophen", 4000, "mg")


def test_documentation_rules(graph):
    sections = {s.name for _, s in graph.required_sections("admission_note", "CN")}
    assert {"主诉", "现病史", "体格检查"} <= sections
    assert [t.hours for t in graph.time_limits("first_course_record", "CN")] == [8]
    assert any(a.abbreviation.startswith("U") for a in graph.abbreviations())


def test_triples_cover_the_relations_and_cite_items(graph):
    seen = set()
    for triple in graph.triples():
        seen.add(triple.relation)
        assert triple.item.id and triple.item.version
    assert seen == set(RELATIONS)


def test_icd10_titles():
    assert icd10_title("E11.9") == "Type 2 diabetes mellitus without complications"
    assert icd10_title("i10") == "Essential (primary) hypertension"
    assert icd10_title("Q99.99.9") is None and icd10_title("") is None
