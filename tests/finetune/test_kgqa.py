"""Knowledge-graph QA: facts only the graph supports, several phrasings, EN and ZH, every answer cited."""

from __future__ import annotations

import copy
import re
from collections import Counter

import pytest

from finetune.kgqa import KGQAError, generate


@pytest.fixture(scope="module")
def qa(graph):
    return generate(graph, variants=2)


def test_every_answer_cites_a_servable_item(qa, graph):
    assert len({e.id for e in qa}) == len(qa)
    for example in qa:
        assert example.citations, example.id
        primary = example.citations[0]
        item = graph.snapshot.get(primary["id"], graph.today)
        assert item is not None and item.version == primary["version"]
        assert primary["title"] == item.source.title and primary["url"] == item.source.url
        assert example.answer.endswith(f"[{primary['id']} v{primary['version']}]")
        assert example.encounter_id == f"kg:{primary['id']}"


def test_kinds_languages_and_phrasings(qa):
    kinds = Counter((e.id.split(":")[1], e.language) for e in qa)
    for kind in ("drug_class", "max_daily_dose", "interaction", "allergy_cross_reactivity", "allergy_same_group",
                 "duplicate_therapy", "required_sections", "time_limit"):
        assert kinds[(kind, "en")] and kinds[(kind, "zh")], kind
    for kind in ("abbreviation", "contraindication", "caution", "brand_generic"):
        assert kinds[(kind, "en")], kind
    per_fact = Counter(e.id.rsplit(":", 1)[0] for e in qa)
    assert max(per_fact.values()) == 2  # kgqa_variants questions per fact and language
    questions = {e.source_text for e in qa if e.id.startswith("kg:drug_class:warfarin:en")}
    assert len(questions) == 2
    zh = next(e for e in qa if e.id.startswith("kg:drug_class:warfarin:zh"))
    assert "华法林" in zh.source_text and "华法林" in zh.answer
    assert zh.answer.splitlines()[-1].startswith("来源：")


def test_answers_state_what_the_graph_concludes(qa, graph):
    for example in qa:
        kind, *key = example.id.split(":")[1:-2]
        if kind == "interaction":
            interaction_id, a, b = key
            assert interaction_id in {i.id for i in graph.interactions_between(a, b)}
            assert f" {a} " in f" {example.source_text} " or graph.resolve_drug(a).names_zh[0] in example.source_text
        elif kind == "max_daily_dose" and example.language == "en":
            dose, drug = graph.max_daily_dose(key[0])
            assert f"{dose.value:g} {dose.unit} per day" in example.answer
        elif kind == "allergy_cross_reactivity":
            allergen_class, _, drug = key
            conflicts = graph.allergy_conflicts(drug, graph.classes[allergen_class].name)
            assert any(c["type"] == "cross_reactivity" for c in conflicts)
        elif kind == "duplicate_therapy":
            class_id, a, b = key
            assert class_id in {c.id.split(".", 1)[1] for c in graph.duplicate_classes(a, b)}
    warfarin = next(e for e in qa if e.id.startswith("kg:drug_class:warfarin:en"))
    assert "Anticoagulants" in warfarin.answer or "anticoagulant" in warfarin.answer.lower()
    time_limit = [e for e in qa if e.id.startswith("kg:time_limit:time_limit.cn.") and e.language == "zh"]
    assert time_limit and all(re.search(r"\d+小时", e.answer) for e in time_limit)


def test_generation_is_deterministic(qa, graph):
    again = generate(graph, variants=2)
    assert [(e.id, e.source_text, e.answer) for e in again] == [(e.id, e.source_text, e.answer) for e in qa]
    assert len(generate(graph, variants=1)) < len(qa)


def test_a_template_with_an_unknown_field_is_refused(graph, monkeypatch):
    import finetune.kgqa as kgqa

    broken = copy.deepcopy(kgqa.templates())
    broken["kinds"]["drug_class"]["en"]["answer"] = "{drug} is a {no_such_field}."
    monkeypatch.setattr(kgqa, "templates", lambda: broken)
    with pytest.raises(KGQAError, match="no_such_field"):
        generate(graph, variants=1)


def test_the_gate_never_trains_altered_knowledge(scrubber, qa):
    """Knowledge text the gate would change is dropped, not trained with a surrogate in a drug name."""
    from finetune.deid import ScrubResult
    from finetune.gate import Gate

    class ClaimsAlpha:
        """The real scrubber, except that it also claims the word 'Alpha' as a name (a known false positive)."""

        def name_words(self, text):
            return scrubber.name_words(text)

        def gate(self, text, surrogates=None, where=""):
            result = scrubber.gate(text, surrogates, where=where)
            if "Alpha" in text:
                return ScrubResult(text.replace("Alpha", "Fiona"), {**result.counts, "NAME": 1})
            return result

    gate = Gate(ClaimsAlpha())
    acarbose = next(e for e in qa if e.id.startswith("kg:drug_class:acarbose:en"))
    assert "Alpha" in acarbose.answer
    assert gate.example(acarbose) is None
    summary = gate.summary()
    assert summary["refused"] == {"knowledge-graph": 1} and summary["knowledge_altered_types"] == {"NAME": 1}
    plain = next(e for e in qa if e.id.startswith("kg:abbreviation:") and "Alpha" not in e.answer + e.source_text
                 and not scrubber.scrub(e.source_text).counts and not scrubber.scrub(e.reference).counts)
    kept = gate.example(plain)
    assert kept is not None and kept.answer == plain.answer
