"""Completeness: the note type's required sections are there and not empty."""

from __future__ import annotations

from functools import lru_cache

from copilot.qc.registry import Context, Hit, Rule, check
from copilot.text.sections import is_chinese, split_sections


def note_types_for(context: Context, document):
    jurisdiction = "CN" if is_chinese(document.text) else "US"
    setting = "inpatient" if context.record.encounter.type == "inpatient" else "outpatient"
    candidates = [n for n in context.graph.note_types if n.document_type == document.type]
    preferred = [n for n in candidates if n.jurisdiction == jurisdiction and n.setting in (None, setting)]
    return preferred or [n for n in candidates if n.jurisdiction == jurisdiction] or candidates[:1]


@lru_cache(maxsize=4)
def _all_headers(graph) -> frozenset[str]:
    return frozenset(h for n in graph.note_types for s in n.required_sections for h in s.headers)


def _sections(context: Context, document, note_type):
    found = split_sections(document.text, _all_headers(context.graph))
    by_section = {}
    for section in note_type.required_sections:
        variants = {h.lower() for h in section.headers}
        by_section[section.id] = [s for s in found if s.key in variants]
    return by_section


_OPENING_SECTIONS = ("history of present illness", "hpi", "history", "现病史", "subjective")


def _opening(context: Context, document) -> str:
    """The first line of the note's history (or of the note): where a reason for the visit is often
    stated instead of under a Chief Complaint header."""
    found = split_sections(document.text, _all_headers(context.graph) | set(_OPENING_SECTIONS))
    history = next((s for s in found if s.key in _OPENING_SECTIONS), None)
    text = history.body(document.text) if history else document.text
    first = next((line for line in text.splitlines() if line.strip()), "")
    return first[:300]


@lru_cache(maxsize=16)
def _compiled(patterns: tuple[str, ...]):
    import re

    return [re.compile(p, re.I) for p in patterns]


@check("section_missing")
def section_missing(context: Context, rule: Rule):
    stated = rule.params.get("stated_in_opening", {})
    for document in context.record.documents:
        for note_type in note_types_for(context, document):
            located = _sections(context, document, note_type)
            for section in note_type.required_sections:
                if not located[section.id]:
                    cues = _compiled(tuple(stated.get(section.id, ())))
                    if cues and any(c.search(_opening(context, document)) for c in cues):
                        continue  # stated in the history's opening sentence
                    yield Hit({"note_type": note_type.name, "section": section.name}, items=[note_type])


@check("section_empty")
def section_empty(context: Context, rule: Rule):
    empty = {e.lower() for e in rule.params.get("empty_bodies", [""])}
    for document in context.record.documents:
        for note_type in note_types_for(context, document):
            located = _sections(context, document, note_type)
            for section in note_type.required_sections:
                spans = located[section.id]
                if spans and all(s.body(document.text).strip().strip(".").lower() in empty for s in spans):
                    first = spans[0]
                    start = document.text.find(first.header, first.start)
                    yield Hit({"note_type": note_type.name, "section": section.name}, document,
                              start, start + len(first.header), [note_type])
