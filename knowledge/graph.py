"""The knowledge graph: typed entities and cited relations built from a snapshot.

Nodes are ``drug:<name>``, ``class:<id>``, ``condition:<text>``, ``population:<name>``,
``abbreviation:<text>``, ``note_type:<id>``, ``section:<id>``, ``document_type:<type>``,
``rule:<item id>``. Every edge carries the item it came from (id, version), so the QC
engine and the fine-tuning QA generator can cite what they use. Only items servable on
the graph's date are included.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from datetime import date
from functools import cached_property

import networkx as nx

from knowledge.schema import Abbreviation, Drug, DrugClass, Interaction, Item, NoteType, TimeLimit
from knowledge.snapshot import Snapshot

RELATIONS = ("belongs_to_class", "subclass_of", "interacts_with", "cross_reacts_with", "allergy_group",
             "contraindicated_in", "caution_in", "max_daily_dose", "requires_section", "time_limit",
             "documents", "error_prone_abbreviation")


@dataclass(frozen=True)
class Triple:
    subject: str
    relation: str
    object: str
    item: Item
    attributes: dict


def _norm(text: str) -> str:
    return " ".join(text.lower().replace("-", " ").split())


class KnowledgeGraph:
    def __init__(self, snapshot: Snapshot, today: date | None = None):
        self.snapshot = snapshot
        self.today = today or date.today()
        self.graph = nx.MultiDiGraph()
        self.drugs: dict[str, Drug] = {}
        self.classes: dict[str, DrugClass] = {}
        self.interactions: list[Interaction] = []
        self.note_types: list[NoteType] = []
        self.time_limit_items: list[TimeLimit] = []
        self.abbreviation_items: list[Abbreviation] = []
        self._names: dict[str, str] = {}
        for item in snapshot.active(self.today):
            getattr(self, f"_add_{item.kind}", lambda _: None)(item)

    # -- construction -----------------------------------------------------------------
    def _edge(self, subject: str, relation: str, obj: str, item: Item, **attributes) -> None:
        self.graph.add_edge(subject, obj, key=f"{relation}:{item.id}", relation=relation, item=item, **attributes)

    def _add_drug(self, drug: Drug) -> None:
        self.drugs[drug.name] = drug
        node = f"drug:{drug.name}"
        self.graph.add_node(node, kind="drug", item=drug)
        for name in [drug.name, *drug.brands, *drug.synonyms, *drug.names_zh]:
            self._names.setdefault(_norm(name), drug.name)
        for class_id in drug.classes:
            self._edge(node, "belongs_to_class", f"class:{class_id}", drug)
        for class_id in drug.allergy_groups:
            self._edge(node, "allergy_group", f"class:{class_id}", drug)
        for condition in drug.contraindicated_in:
            self._edge(node, "contraindicated_in", f"condition:{_norm(condition)}", drug, text=condition)
        for caution in drug.cautions:
            self._edge(node, "caution_in", f"population:{caution.population}", drug, text=caution.text)
        if drug.max_daily_dose:
            dose = drug.max_daily_dose
            self._edge(node, "max_daily_dose", f"dose:{dose.value:g} {dose.unit}", drug, value=dose.value,
                       unit=dose.unit, route=dose.route, note=dose.note)

    def _add_drug_class(self, drug_class: DrugClass) -> None:
        class_id = drug_class.id.split(".", 1)[1]
        self.classes[class_id] = drug_class
        self.graph.add_node(f"class:{class_id}", kind="drug_class", item=drug_class)
        if drug_class.parent:
            self._edge(f"class:{class_id}", "subclass_of", f"class:{drug_class.parent}", drug_class)
        for cross in drug_class.cross_reacts_with:
            self._edge(f"class:{class_id}", "cross_reacts_with", f"class:{cross.class_}", drug_class, note=cross.note)

    def _add_interaction(self, interaction: Interaction) -> None:
        self.interactions.append(interaction)
        for left in self._party_nodes(interaction.a):
            for right in self._party_nodes(interaction.b):
                self._edge(left, "interacts_with", right, interaction, severity=interaction.severity)
                self._edge(right, "interacts_with", left, interaction, severity=interaction.severity)

    @staticmethod
    def _party_nodes(party) -> list[str]:
        return [f"drug:{d}" for d in party.drugs] + [f"class:{c}" for c in party.classes]

    def _add_note_type(self, note_type: NoteType) -> None:
        self.note_types.append(note_type)
        node = f"note_type:{note_type.id.split('.', 1)[1]}"
        self.graph.add_node(node, kind="note_type", item=note_type)
        self._edge(node, "documents", f"document_type:{note_type.document_type}", note_type)
        for section in note_type.required_sections:
            self._edge(node, "requires_section", f"section:{section.id}", note_type, name=section.name,
                       headers=section.headers)

    def _add_time_limit(self, limit: TimeLimit) -> None:
        self.time_limit_items.append(limit)
        self._edge(f"document_type:{limit.document_type}", "time_limit", f"rule:{limit.id}", limit,
                   hours=limit.hours, anchor=limit.anchor, jurisdiction=limit.jurisdiction)

    def _add_abbreviation(self, abbreviation: Abbreviation) -> None:
        self.abbreviation_items.append(abbreviation)
        self._edge(f"abbreviation:{abbreviation.abbreviation}", "error_prone_abbreviation", f"rule:{abbreviation.id}",
                   abbreviation, intended=abbreviation.intended)

    # -- queries ----------------------------------------------------------------------
    def resolve_drug(self, name: str) -> Drug | None:
        """Generic, brand, synonym or Chinese name -> the drug (case- and hyphen-insensitive)."""
        generic = self._names.get(_norm(name))
        return self.drugs.get(generic) if generic else None

    @cached_property
    def drug_names(self) -> dict[str, str]:
        """Every known name (normalised) -> generic name; for finding drugs in free text."""
        return dict(self._names)

    def class_ancestors(self, class_id: str) -> list[str]:
        chain, seen = [], set()
        while class_id and class_id not in seen and class_id in self.classes:
            seen.add(class_id)
            chain.append(class_id)
            class_id = self.classes[class_id].parent
        return chain

    def classes_of(self, drug: str | Drug) -> set[str]:
        drug = self.resolve_drug(drug) if isinstance(drug, str) else drug
        if drug is None:
            return set()
        return {a for c in drug.classes for a in self.class_ancestors(c)}

    def members(self, class_id: str) -> list[Drug]:
        return sorted((d for d in self.drugs.values() if class_id in self.classes_of(d)), key=lambda d: d.name)

    def resolve_allergen(self, text: str) -> tuple[set[str], set[str]]:
        """An allergy entry -> (drug names, class ids) it names: 'Penicillin (hives)' -> class penicillin.

        Allergy lists carry the reaction too ("sulfa - rash", "penicillin (hives)"), so the
        part before a bracket, dash, colon or comma is tried as well as the whole entry."""
        candidates = [text] + [re.split(r"\s*[(\[:,;]|\s+-\s+|\s+--\s*", text, maxsplit=1)[0]]
        candidates += [re.sub(r"^(?:对|有)|\s*(?:allerg(?:y|ies|ic)|intolerance|sensitivity|过敏史?)$", "", c, flags=re.I)
                       for c in candidates]  # "sulfa allergy", "青霉素过敏"
        for candidate in dict.fromkeys(c for c in candidates if c.strip()):
            key = _norm(candidate)
            drug = self.resolve_drug(key)
            drugs = {drug.name} if drug else set()
            classes = {cid for cid, c in self.classes.items()
                       if key in {_norm(cid.replace("_", " ")), _norm(c.name), *map(_norm, c.names_zh), *map(_norm, c.synonyms)}
                       or key.rstrip("s") == _norm(cid.replace("_", " "))}
            if drug:
                classes |= set(drug.allergy_groups)
            if drugs or classes:
                return drugs, classes
        return set(), set()

    def allergy_conflicts(self, drug: str | Drug, allergy: str) -> list[dict]:
        """Why giving ``drug`` to a patient allergic to ``allergy`` is a problem, with the backing items."""
        drug = self.resolve_drug(drug) if isinstance(drug, str) else drug
        if drug is None:
            return []
        allergen_drugs, allergen_classes = self.resolve_allergen(allergy)
        if not allergen_drugs and not allergen_classes:
            return []
        findings = []
        if drug.name in allergen_drugs:
            findings.append({"type": "same_drug", "drug": drug.name, "allergen": allergy, "items": [drug]})
        groups = set(drug.allergy_groups) | self.classes_of(drug)
        shared = sorted(groups & allergen_classes)
        if shared and drug.name not in allergen_drugs:
            findings.append({"type": "same_class", "drug": drug.name, "allergen": allergy, "classes": shared,
                             "items": [drug] + [self.classes[c] for c in shared if c in self.classes]})
        for allergen_class in sorted(allergen_classes):
            for ancestor in self.class_ancestors(allergen_class) or [allergen_class]:
                item = self.classes.get(ancestor)
                for cross in (item.cross_reacts_with if item else []):
                    if cross.class_ in groups and cross.class_ not in allergen_classes:
                        findings.append({"type": "cross_reactivity", "drug": drug.name, "allergen": allergy,
                                         "classes": [ancestor, cross.class_], "note": cross.note,
                                         "items": [item, drug]})
        return findings

    def interactions_between(self, first: str | Drug, second: str | Drug) -> list[Interaction]:
        a = self.resolve_drug(first) if isinstance(first, str) else first
        b = self.resolve_drug(second) if isinstance(second, str) else second
        names_a = {a.name} if a else {_norm(first)} if isinstance(first, str) else set()
        names_b = {b.name} if b else {_norm(second)} if isinstance(second, str) else set()
        classes_a = self.classes_of(a) if a else set()
        classes_b = self.classes_of(b) if b else set()

        def matches(party, names, classes):
            return bool(set(party.drugs) & names or set(party.classes) & classes)

        return [i for i in self.interactions
                if (matches(i.a, names_a, classes_a) and matches(i.b, names_b, classes_b))
                or (matches(i.a, names_b, classes_b) and matches(i.b, names_a, classes_a))]

    def duplicate_classes(self, first: str | Drug, second: str | Drug) -> list[DrugClass]:
        """Classes shared by two different drugs where sharing is a recognised duplication."""
        shared = self.classes_of(first) & self.classes_of(second)
        return [self.classes[c] for c in sorted(shared) if self.classes[c].duplicate_therapy]

    def max_daily_dose(self, drug: str | Drug):
        drug = self.resolve_drug(drug) if isinstance(drug, str) else drug
        return (drug.max_daily_dose, drug) if drug and drug.max_daily_dose else (None, drug)

    def required_sections(self, document_type: str, jurisdiction: str | None = None) -> list[tuple[NoteType, object]]:
        return [(n, s) for n in self.note_types
                if n.document_type == document_type and (jurisdiction is None or n.jurisdiction in (None, jurisdiction))
                for s in n.required_sections]

    def time_limits(self, document_type: str, jurisdiction: str | None = None) -> list[TimeLimit]:
        return [t for t in self.time_limit_items
                if t.document_type == document_type and (jurisdiction is None or t.jurisdiction == jurisdiction)]

    def abbreviations(self) -> list[Abbreviation]:
        return list(self.abbreviation_items)

    def triples(self, relation: str | None = None):
        """Every (subject, relation, object) with its backing item: the raw material for QA generation."""
        for subject, obj, data in self.graph.edges(data=True):
            if relation is None or data["relation"] == relation:
                attributes = {k: v for k, v in data.items() if k not in ("relation", "item")}
                yield Triple(subject, data["relation"], obj, data["item"], attributes)


def icd10_title(code: str) -> str | None:
    """ICD-10-CM title for a code (with or without the dot), from the simple-icd-10-cm package."""
    import simple_icd_10_cm as cm

    code = code.strip().upper()
    return cm.get_description(code) if code and cm.is_valid_item(code) else None


def icd10_release() -> str:
    from importlib import metadata

    return f"ICD-10-CM (simple-icd-10-cm {metadata.version('simple-icd-10-cm')}, CDC/NCHS code set)"
