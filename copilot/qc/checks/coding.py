"""Coding: a stated diagnosis code exists and its ICD-10-CM title matches the stated text."""

from __future__ import annotations

import re

from copilot.qc.registry import Context, Hit, Rule, check
from knowledge.graph import icd10_release, icd10_title

_STOP = {"of", "the", "and", "with", "without", "in", "to", "a", "an", "or", "unspecified", "other", "nos", "due",
         "type", "disease", "disorder", "acute", "chronic", "primary", "essential", "history", "status"}


def _words(text: str, synonyms: dict[str, str]) -> set[str]:
    text = re.sub(r"\bwithout\b.*", "", text.lower())  # "reflux without esophagitis" does not cover esophagitis
    for short, long in sorted(synonyms.items(), key=lambda pair: -len(pair[0])):
        text = re.sub(rf"(?<![\w-]){re.escape(short)}(?![\w-])", long, text)
    words = set(re.findall(r"[a-z0-9]+", text))
    return {w.rstrip("s") if len(w) > 4 else w for w in words - _STOP}


def code_citation(code: str) -> dict:
    return {"id": f"icd10cm.{code.strip().upper()}", "version": icd10_release(),
            "source": {"title": "ICD-10-CM Tabular List of Diseases and Injuries", "issuer":
                       "CDC National Center for Health Statistics", "url": "https://www.cdc.gov/nchs/icd/icd-10-cm/"}}


def _ancestor_titles(code: str) -> list[str]:
    import simple_icd_10_cm as cm

    try:
        return [cm.get_description(a) for a in cm.get_ancestors(code)]
    except ValueError:
        return []


@check("unknown_code")
def unknown_code(context: Context, rule: Rule):
    for diagnosis in context.record.diagnoses:
        if diagnosis.code and icd10_title(diagnosis.code) is None:
            yield Hit({"code": diagnosis.code, "text": diagnosis.text}, citations=[code_citation(diagnosis.code)])


@check("title_mismatch")
def title_mismatch(context: Context, rule: Rule):
    synonyms = rule.params.get("synonyms", {})
    for diagnosis in context.record.diagnoses:
        if not diagnosis.code:
            continue
        title = icd10_title(diagnosis.code)
        if title is None:
            continue
        stated = _words(diagnosis.text, synonyms)
        if not stated:
            continue
        titles = [title, *_ancestor_titles(diagnosis.code.strip().upper())]
        covered = set().union(*(_words(t, synonyms) for t in titles))
        if len(stated & covered) / len(stated) < rule.params.get("min_overlap", 0.5):
            yield Hit({"code": diagnosis.code, "title": title, "text": diagnosis.text},
                      citations=[code_citation(diagnosis.code)])
