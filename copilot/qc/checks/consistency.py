"""Consistency: the record agrees with itself.

Sex-specific terms against the recorded sex (skipping sentences about relatives), the
patient's pronouns, a finding both denied and reported, and left/right disagreements for
the same body part between sections.
"""

from __future__ import annotations

import re
from functools import lru_cache

from copilot.qc.registry import Context, Hit, Rule, check
from copilot.text.sections import sentences, split_sections

# A denial that governs the finding itself ("denies any chest pain", "no fever", "negative
# for cough"), not a negation elsewhere in the sentence ("not sure if it is her back pain").
_DENIAL = re.compile(r"\b(?:denies|denied|deny|denying|negative for|no|without|not (?:having|experiencing|had|have))"
                     r"\s+(?:any\s+|recent\s+|further\s+|significant\s+|new\s+)?((?:[a-z]+\s+){0,2})$|(?:无|否认)$", re.I)
# words between a denial and the finding that do not change what is denied ("no fever or chills")
_LIST_WORDS = {"or", "and", "nor", "any", "recent", "further", "significant", "new", "acute", "current"}
_FEMALE = re.compile(r"\b(she|her|hers|herself)\b", re.I)
_MALE = re.compile(r"\b(he|him|his|himself)\b", re.I)


@lru_cache(maxsize=64)
def _terms(terms: tuple[str, ...]) -> re.Pattern:
    latin = [t for t in terms if t.isascii()]
    other = [t for t in terms if not t.isascii()]
    parts = [r"\b" + re.escape(t) + r"\b" for t in sorted(latin, key=len, reverse=True)] + [re.escape(t) for t in other]
    return re.compile("|".join(parts), re.I)


@check("sex_specific_term")
def sex_specific_term(context: Context, rule: Rule):
    sex = context.record.patient.sex
    if sex not in ("male", "female"):
        return
    terms = _terms(tuple(rule.params["female_only" if sex == "male" else "male_only"]))
    family = _terms(tuple(rule.params.get("family_cues", [])))
    for document in context.record.documents:
        for start, _, sentence in sentences(document.text):
            if family.search(sentence):
                continue
            match = terms.search(sentence)
            if match:
                yield Hit({"sex": sex, "term": match.group()}, document, start + match.start(), start + match.end())
                break


@check("pronoun_sex")
def pronoun_sex(context: Context, rule: Rule):
    sex = context.record.patient.sex
    if sex not in ("male", "female"):
        return
    wrong, right = (_FEMALE, _MALE) if sex == "male" else (_MALE, _FEMALE)
    for document in context.record.documents:
        found = list(wrong.finditer(document.text))
        if len(found) >= rule.params.get("min_count", 3) and not right.search(document.text):
            yield Hit({"sex": sex, "pronoun": found[0].group().lower(), "count": len(found),
                       "expected": "he" if sex == "male" else "she"}, document, found[0].start(), found[0].end())


@check("asserted_and_denied")
def asserted_and_denied(context: Context, rule: Rule):
    findings = _terms(tuple(rule.params["findings"]))
    assert_cues = _terms(tuple(rule.params["assert_cues"]))
    for document in context.record.documents:
        denied, asserted = {}, {}
        for start, _, sentence in sentences(document.text):
            for match in findings.finditer(sentence):
                before = sentence[:match.start()]
                key = match.group().lower().rstrip("s")
                denial = _DENIAL.search(before[-60:])
                if denial:
                    words = (denial.group(1) or "").split()
                    if words and not set(w.lower() for w in words) & {"or", "and", "nor"}:
                        # "no barky cough", "denies other joint pain": a qualified finding is not the finding
                        key = " ".join(w.lower() for w in words if w.lower() not in _LIST_WORDS) + " " + key
                    denied.setdefault(key.strip(), (start + match.start(), start + match.end(), sentence.strip()))
                elif assert_cues.search(before[-60:]) and not re.search(r"\b(if|any|return|call|should|when|whether)\b", before, re.I):
                    asserted.setdefault(key, (start + match.start(), start + match.end(), sentence.strip()))
        for key in sorted(set(denied) & set(asserted)):
            first = min(denied[key], asserted[key])
            yield Hit({"finding": key, "denied": denied[key][2][:80], "asserted": asserted[key][2][:80]},
                      document, first[0], first[1])


SECTION_GROUPS = {
    "history": ("chief complaint", "cc", "history of present illness", "hpi", "history", "主诉", "现病史"),
    "examination": ("physical examination", "physical exam", "exam", "examination", "pe", "体格检查", "专科检查"),
    "assessment and plan": ("assessment and plan", "assessment & plan", "a/p", "assessment", "impression", "plan",
                            "诊断", "初步诊断", "诊疗计划"),
}


@check("laterality_conflict")
def laterality_conflict(context: Context, rule: Rule):
    parts = "|".join(re.escape(p) for p in rule.params["body_parts"])
    pattern = re.compile(rf"\b(left|right|bilateral|both)\s+(?:\w+\s+){{0,2}}?({parts})s?\b", re.I)
    headers = {h for group in SECTION_GROUPS.values() for h in group}
    for document in context.record.documents:
        sides: dict[str, dict[str, tuple[set, tuple]]] = {}
        for section in split_sections(document.text, headers):
            group = next((g for g, names in SECTION_GROUPS.items() if section.key in names), None)
            if group is None:
                continue
            body = section.body(document.text)
            for match in pattern.finditer(body):
                part = match.group(2).lower()
                side = match.group(1).lower()
                entry = sides.setdefault(part, {}).setdefault(group, (set(), (section.body_start + match.start(),
                                                                             section.body_start + match.end())))
                entry[0].add("both" if side == "bilateral" else side)
        for part, groups in sorted(sides.items()):
            names = sorted(groups)
            for i, a in enumerate(names):
                for b in names[i + 1:]:
                    side_a, side_b = groups[a][0], groups[b][0]
                    if "both" in side_a | side_b or side_a & side_b:
                        continue
                    span = groups[b][1]
                    yield Hit({"part": part, "side_a": "/".join(sorted(side_a)), "section_a": a,
                               "side_b": "/".join(sorted(side_b)), "section_b": b}, document, span[0], span[1])
