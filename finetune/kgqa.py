"""Question/answer pairs generated from the knowledge graph, each answer citing its items.

Facts come from the graph's own queries (classes_of, interactions_between, allergy_conflicts,
duplicate_classes, max_daily_dose, required_sections, time_limits, abbreviations), so a QA pair
can only state what the QC engine itself would conclude, and only from items servable today.
Wording lives in templates/kg_qa.yaml, English and Chinese where the knowledge has both.
"""

from __future__ import annotations

import hashlib
import itertools
from dataclasses import dataclass, field
from functools import lru_cache
from pathlib import Path
from typing import Iterator

import yaml

from finetune.prompts import Example
from knowledge.graph import KnowledgeGraph
from knowledge.snapshot import citation

TEMPLATE_FILE = Path(__file__).parent / "templates" / "kg_qa.yaml"


class KGQAError(ValueError):
    pass


@lru_cache(maxsize=1)
def templates() -> dict:
    return yaml.safe_load(TEMPLATE_FILE.read_text(encoding="utf-8"))


@dataclass
class QAFact:
    kind: str
    key: str
    items: list  # knowledge items used; the first is the one the answer cites inline
    en: dict
    zh: dict | None = None
    extra: dict = field(default_factory=dict)


def flat_citation(item) -> dict:
    """citation(item) flattened to strings, for a fixed dataset schema."""
    data = citation(item)
    source = data["source"]
    return {"id": data["id"], "version": data["version"], "title": source.get("title", ""),
            "issuer": source.get("issuer", ""), "section": source.get("section") or "", "url": source.get("url", "")}


def _cap(text: str) -> str:
    return text[:1].upper() + text[1:]


def _sentence(text: str | None) -> str:
    return f" {text.strip().rstrip('.')}." if text else ""


def _name(mapping: dict, key: str, language: str) -> str | None:
    entry = mapping.get(key)
    return entry.get(language) if isinstance(entry, dict) else None


def _zh(names: list[str]) -> str | None:
    return names[0] if names else None


def _is_cjk(text: str) -> bool:
    return any("\u4e00" <= c <= "\u9fff" for c in text)


class FactCollector:
    def __init__(self, graph: KnowledgeGraph):
        self.graph = graph
        self.spec = templates()
        self.names = self.spec["names"]
        self.limits = self.spec["limits"]

    def class_names(self, class_ids, language: str) -> list[str] | None:
        names = []
        for class_id in class_ids:
            item = self.graph.classes.get(class_id)
            if item is None:
                continue
            name = item.name if language == "en" else _zh(item.names_zh)
            if name is None:
                return None
            names.append(name)
        return names or None

    def all(self) -> Iterator[QAFact]:
        yield from self.drugs()
        yield from self.interactions()
        yield from self.allergies()
        yield from self.duplicates()
        yield from self.note_types()
        yield from self.time_limits()
        yield from self.abbreviations()

    def drugs(self) -> Iterator[QAFact]:
        routes = self.names["routes"]
        for drug in sorted(self.graph.drugs.values(), key=lambda d: d.name):
            base = {"drug": drug.name, "Drug": _cap(drug.name)}
            base_zh = {**base, "drug_zh": _zh(drug.names_zh)} if drug.names_zh else None
            classes_en = self.class_names(drug.classes, "en")
            classes_zh = self.class_names(drug.classes, "zh")
            class_items = [self.graph.classes[c] for c in drug.classes if c in self.graph.classes]
            if classes_en:
                zh = {**base_zh, "classes_zh": "、".join(classes_zh)} if base_zh and classes_zh else None
                yield QAFact("drug_class", drug.name, [drug, *class_items], {**base, "classes": ", ".join(classes_en)},
                             zh)
                for brand in drug.brands:
                    yield QAFact("brand_generic", f"{drug.name}:{brand}", [drug],
                                 {**base, "brand": brand, "classes": ", ".join(classes_en)},
                                 {**base_zh, "brand": brand} if base_zh else None)
            dose, _ = self.graph.max_daily_dose(drug)
            if dose is not None:
                route_en = _name(routes, dose.route, "en") or dose.route
                route_zh = _name(routes, dose.route, "zh")
                fields = {**base, "value": f"{dose.value:g}", "unit": dose.unit, "route": route_en,
                          "note": _sentence(f"Note: {dose.note}" if dose.note else None)}
                zh = {**base_zh, "value": f"{dose.value:g}", "unit": dose.unit, "route_zh": route_zh} \
                    if base_zh and route_zh else None
                yield QAFact("max_daily_dose", drug.name, [drug], fields, zh)
            elif drug.note:
                yield QAFact("no_fixed_max_dose", drug.name, [drug], {**base, "note": drug.note.strip()})
            if drug.contraindicated_in:
                yield QAFact("contraindication", drug.name, [drug],
                             {**base, "conditions": "; ".join(drug.contraindicated_in)})
            for number, caution in enumerate(drug.cautions):
                population = _name(self.names["populations"], caution.population, "en")
                if population:
                    yield QAFact("caution", f"{drug.name}:{caution.population}:{number}", [drug],
                                 {**base, "population": population, "text": caution.text.strip()})

    def _party_drugs(self, party) -> list:
        names = list(party.drugs) + [d.name for c in party.classes for d in self.graph.members(c)]
        drugs = [self.graph.resolve_drug(n) for n in dict.fromkeys(names)]
        return [d for d in drugs if d is not None]

    def interactions(self) -> Iterator[QAFact]:
        severities = self.names["severities"]
        for interaction in sorted(self.graph.interactions, key=lambda i: i.id):
            taken = 0
            for a, b in itertools.product(self._party_drugs(interaction.a), self._party_drugs(interaction.b)):
                if taken >= self.limits["pairs_per_interaction"]:
                    break
                if a.name == b.name or interaction.id not in {i.id for i in self.graph.interactions_between(a, b)}:
                    continue
                taken += 1
                fields = {"a": a.name, "b": b.name, "severity": _name(severities, interaction.severity, "en"),
                          "effect": interaction.effect.strip(), "management": interaction.management.strip()}
                zh = None
                if a.names_zh and b.names_zh:
                    zh = {**fields, "a_zh": a.names_zh[0], "b_zh": b.names_zh[0],
                          "severity_zh": _name(severities, interaction.severity, "zh")}
                yield QAFact("interaction", f"{interaction.id}:{a.name}:{b.name}", [interaction, a, b], fields, zh)

    @staticmethod
    def _allergen_text(name: str) -> str:
        return name if name[:2].isupper() else name[:1].lower() + name[1:]

    def allergies(self) -> Iterator[QAFact]:
        graph = self.graph
        for class_id, allergen_class in sorted(graph.classes.items()):
            for cross in allergen_class.cross_reacts_with:
                target = graph.classes.get(cross.class_)
                if target is None:
                    continue
                taken = 0
                for drug in graph.members(cross.class_):
                    if taken >= self.limits["drugs_per_cross_reaction"]:
                        break
                    findings = [f for f in graph.allergy_conflicts(drug, allergen_class.name)
                                if f["type"] == "cross_reactivity" and cross.class_ in f["classes"]]
                    if not findings:
                        continue
                    taken += 1
                    fields = {"drug": drug.name, "allergen": self._allergen_text(allergen_class.name),
                              "drug_class": target.name, "allergen_class": allergen_class.name,
                              "note": cross.note.strip()}
                    zh = None
                    if drug.names_zh and allergen_class.names_zh and target.names_zh:
                        zh = {**fields, "drug_zh": drug.names_zh[0], "allergen_zh": allergen_class.names_zh[0],
                              "drug_class_zh": target.names_zh[0], "allergen_class_zh": allergen_class.names_zh[0]}
                    yield QAFact("allergy_cross_reactivity", f"{class_id}:{cross.class_}:{drug.name}",
                                 [allergen_class, drug], fields, zh)
        groups: dict[str, list] = {}
        for drug in sorted(graph.drugs.values(), key=lambda d: d.name):
            for group in drug.allergy_groups:
                groups.setdefault(group, []).append(drug)
        for group, drugs in sorted(groups.items()):
            taken = 0
            for allergen, drug in zip(drugs, drugs[1:]):
                if taken >= self.limits["pairs_per_allergy_group"]:
                    break
                findings = [f for f in graph.allergy_conflicts(drug, allergen.name) if f["type"] == "same_class"]
                if not findings:
                    continue
                taken += 1
                shared = findings[0]["classes"]
                names_en = self.class_names(shared, "en")
                names_zh = self.class_names(shared, "zh")
                if not names_en:
                    continue
                fields = {"drug": drug.name, "allergen": allergen.name, "groups": ", ".join(names_en)}
                zh = None
                if drug.names_zh and allergen.names_zh and names_zh:
                    zh = {**fields, "drug_zh": drug.names_zh[0], "allergen_zh": allergen.names_zh[0],
                          "groups_zh": "、".join(names_zh)}
                yield QAFact("allergy_same_group", f"{group}:{allergen.name}:{drug.name}",
                             [drug, *[graph.classes[c] for c in shared if c in graph.classes]], fields, zh)

    def duplicates(self) -> Iterator[QAFact]:
        graph = self.graph
        for class_id, drug_class in sorted(graph.classes.items()):
            if not drug_class.duplicate_therapy:
                continue
            members = graph.members(class_id)
            taken = 0
            for a, b in zip(members[::2], members[1::2]):
                if taken >= self.limits["pairs_per_duplicate_class"]:
                    break
                if class_id not in {c.id.split(".", 1)[1] for c in graph.duplicate_classes(a, b)}:
                    continue
                taken += 1
                fields = {"a": a.name, "b": b.name, "drug_class": drug_class.name, "note": _sentence(drug_class.note)}
                zh = None
                if a.names_zh and b.names_zh and drug_class.names_zh:
                    zh = {**fields, "a_zh": a.names_zh[0], "b_zh": b.names_zh[0],
                          "drug_class_zh": drug_class.names_zh[0]}
                yield QAFact("duplicate_therapy", f"{class_id}:{a.name}:{b.name}", [drug_class, a, b], fields, zh)

    def note_types(self) -> Iterator[QAFact]:
        jurisdictions = self.names["jurisdictions"]
        for note_type in sorted(self.graph.note_types, key=lambda n: n.id):
            code = note_type.jurisdiction
            sections_en, sections_zh = [], []
            for section in note_type.required_sections:
                sections_en.append(section.name if not _is_cjk(section.name)
                                   else next((h for h in section.headers if not _is_cjk(h)), section.name))
                sections_zh.append(section.name if _is_cjk(section.name)
                                   else next((h for h in section.headers if _is_cjk(h)), None))
            fields = {"note_type": note_type.name, "sections": "; ".join(sections_en),
                      "jurisdiction": _name(jurisdictions, code, "en") if code else "general"}
            zh = None
            if note_type.names_zh and code and all(sections_zh):
                zh = {**fields, "note_type_zh": note_type.names_zh[0], "sections_zh": "、".join(sections_zh),
                      "jurisdiction_zh": _name(jurisdictions, code, "zh")}
            yield QAFact("required_sections", note_type.id, [note_type], fields, zh)

    def time_limits(self) -> Iterator[QAFact]:
        names = self.names
        for limit in sorted(self.graph.time_limit_items, key=lambda t: t.id):
            text_is_zh = _is_cjk(limit.text)
            fields = {"document": _name(names["document_types"], limit.document_type, "en") or limit.document_type,
                      "jurisdiction": _name(names["jurisdictions"], limit.jurisdiction, "en"),
                      "hours": f"{limit.hours:g}", "anchor": _name(names["anchors"], limit.anchor, "en"),
                      "text": "" if text_is_zh else f" {limit.text.strip()}"}
            zh = None
            if text_is_zh:
                zh = {**fields, "document_zh": _name(names["document_types"], limit.document_type, "zh"),
                      "jurisdiction_zh": _name(names["jurisdictions"], limit.jurisdiction, "zh"),
                      "anchor_zh": _name(names["anchors"], limit.anchor, "zh"), "text_zh": limit.text.strip()}
            yield QAFact("time_limit", limit.id, [limit], fields, zh)

    def abbreviations(self) -> Iterator[QAFact]:
        lists = self.names["abbreviation_lists"]
        for item in sorted(self.graph.abbreviations(), key=lambda a: a.id):
            yield QAFact("abbreviation", item.id, [item], {
                "abbreviation": item.abbreviation, "intended": item.intended, "list": lists.get(item.list, item.list),
                "problem": item.problem.strip(), "use_instead": item.use_instead.strip()})


def _pick(questions: list[str], key: str, n: int) -> list[tuple[int, str]]:
    ranked = sorted(enumerate(questions), key=lambda q: hashlib.sha256(f"{key}\x00{q[1]}".encode()).hexdigest())
    return ranked[:n]


def _format(template: str, fields: dict, kind: str) -> str:
    try:
        return template.format(**fields)
    except (KeyError, IndexError) as exc:
        raise KGQAError(f"kg_qa.yaml: kind {kind!r}: template {template!r} uses unknown field {exc}") from None


def generate(graph: KnowledgeGraph, variants: int = 2) -> list[Example]:
    """Every fact the graph supports, as up to ``variants`` questions per language, answers with citations."""
    spec = templates()
    examples = []
    for fact in FactCollector(graph).all():
        kind_spec = spec["kinds"].get(fact.kind)
        if kind_spec is None:
            raise KGQAError(f"kg_qa.yaml has no templates for kind {fact.kind!r}")
        primary = fact.items[0]
        citations = [flat_citation(item) for item in {item.id: item for item in fact.items}.values()]
        for language, fields in (("en", fact.en), ("zh", fact.zh)):
            if fields is None or language not in kind_spec:
                continue
            block = kind_spec[language]
            cite = spec["citation"][language].format(**citations[0])
            answer = _format(block["answer"], fields, fact.kind).strip()
            for index, question in _pick(block["questions"], f"{fact.kind}:{fact.key}:{language}", variants):
                examples.append(Example(
                    id=f"kg:{fact.kind}:{fact.key}:{language}:{index}", encounter_id=f"kg:{primary.id}",
                    source="knowledge-graph", task="kg_qa", language=language,
                    source_text=_format(question, fields, fact.kind), reference=answer, suffix="\n" + cite,
                    fields={}, citations=citations, origin=f"knowledge snapshot {graph.snapshot.id}"))
    return examples
