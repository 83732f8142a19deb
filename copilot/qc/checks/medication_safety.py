"""Medication safety: allergies (with class cross-reactivity), duplicates, interactions, doses."""

from __future__ import annotations

import re

from copilot.qc.registry import Context, Hit, Rule, check
from copilot.text.allergies import note_allergies
from copilot.text.medications import Mention, convert


def _hit(params: dict, mention: Mention, context: Context, items, severity=None) -> Hit:
    document = next((d for d in context.record.documents if d.id == mention.document_id), None)
    return Hit(params, document, mention.start, mention.end, list(items), severity)


def _first_by_drug(mentions: list[Mention]) -> dict[str, Mention]:
    first: dict[str, Mention] = {}
    for mention in mentions:
        first.setdefault(mention.drug.name, mention)
    return first


def _allergies(context: Context) -> list[str]:
    """The structured list, then allergens written on the notes' allergy lines (过敏史：…)."""
    allergies = list(context.record.patient.allergies)
    known = {a.strip().lower() for a in allergies}
    for document in context.record.documents:
        for allergen in note_allergies(document.text or ""):
            if allergen.lower() not in known:
                known.add(allergen.lower())
                allergies.append(allergen)
    return allergies


@check("allergy_conflict")
def allergy_conflict(context: Context, rule: Rule):
    allergies = _allergies(context)
    for name, mention in _first_by_drug(context.mentions).items():
        for allergy in allergies:
            for conflict in context.graph.allergy_conflicts(mention.drug, allergy)[:1]:
                reason = {"same_drug": "the same drug",
                          "same_class": "same class: " + ", ".join(c.replace("_", " ") for c in conflict.get("classes", [])),
                          "cross_reactivity": "cross-reactivity " + " / ".join(c.replace("_", " ") for c in conflict.get("classes", []))
                          + (f" - {conflict['note']}" if conflict.get("note") else "")}[conflict["type"]]
                yield _hit({"drug": name, "allergen": allergy, "reason": reason}, mention, context, conflict["items"])


@check("allergen_unrecognised")
def allergen_unrecognised(context: Context, rule: Rule):
    """An allergy that resolves to no drug or class would silently check nothing: say so."""
    not_drugs = {n.lower() for n in rule.params.get("not_drugs", [])}
    for allergy in context.record.patient.allergies:
        head = re.split(r"\s*[(\[:,;]|\s+-\s+", allergy.strip(), maxsplit=1)[0].strip().lower()
        if not head or head in not_drugs or allergy.strip().lower() in not_drugs:
            continue
        drugs, classes = context.graph.resolve_allergen(allergy)
        if not drugs and not classes:
            yield Hit({"allergen": allergy})


@check("duplicate_drug")
def duplicate_drug(context: Context, rule: Rule):
    seen: dict[str, Mention] = {}
    for mention in (m for m in context.mentions if m.document_id is None):
        if mention.drug.name in seen:
            yield _hit({"drug": mention.drug.name}, mention, context, [mention.drug])
        seen.setdefault(mention.drug.name, mention)


@check("duplicate_therapy")
def duplicate_therapy(context: Context, rule: Rule):
    """Only drugs actually ordered count: the structured list, or a mention that carries a dose.

    Notes name past and switched drugs freely ("changed her furosemide to torsemide 20 mg");
    a bare name is not evidence that both are taken."""
    first = _first_by_drug([m for m in context.mentions if m.document_id is None or m.dose is not None])
    names = sorted(first)
    reported = set()
    for i, a in enumerate(names):
        for b in names[i + 1:]:
            for drug_class in context.graph.duplicate_classes(first[a].drug, first[b].drug)[:1]:
                key = (drug_class.id, a)
                if key in reported:
                    continue
                reported.add(key)
                later = max(first[a], first[b], key=lambda m: (m.document_id is not None, m.start or 0))
                yield _hit({"first": a, "second": b, "drug_class": drug_class.name}, later, context,
                           [drug_class, first[a].drug, first[b].drug])


@check("interaction")
def interaction(context: Context, rule: Rule):
    first = _first_by_drug(context.mentions)
    names = sorted(first)
    levels = rule.params.get("severity_by_level", {})
    seen = set()
    for i, a in enumerate(names):
        for b in names[i + 1:]:
            for item in context.graph.interactions_between(first[a].drug, first[b].drug):
                if item.id in seen:
                    continue
                seen.add(item.id)
                later = max(first[a], first[b], key=lambda m: (m.document_id is not None, m.start or 0))
                yield _hit({"first": a, "second": b, "level": item.severity, "effect": item.effect,
                            "management": item.management}, later, context, [item], levels.get(item.severity))


@check("dose_above_max")
def dose_above_max(context: Context, rule: Rule):
    reported = set()
    for mention in context.mentions:
        limit = mention.drug.max_daily_dose
        if limit is None or mention.daily_amount is None or mention.unit is None or mention.drug.name in reported:
            continue
        amount = convert(mention.daily_amount, mention.unit, limit.unit)
        if amount is not None and amount > limit.value * 1.0001:
            reported.add(mention.drug.name)
            yield _hit({"drug": mention.drug.name, "amount": amount, "unit": limit.unit, "limit": limit.value},
                       mention, context, [mention.drug])
