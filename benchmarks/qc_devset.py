#!/usr/bin/env python3
"""Build the labelled development set for the record QC engine from ACI-Bench notes.

    python benchmarks/qc_devset.py --out benchmarks/data/qc_devset.jsonl            # train split
    python benchmarks/qc_devset.py --split valid --out /tmp/qc_devset_valid.jsonl   # second set

Each output line is one JSON object:

    {"record":   <project record, copilot/records/record.schema.json>,
     "expected": [{"category": ..., "kind": ..., "evidence": <planted text, field path or null>}],
     "clean":    <true when nothing was planted; expected is then []>,
     "source":   {"dataset": "aci-bench", "split": ..., "file": <ACI-Bench note id>, "sanitized": [...]}}

How it works (details in benchmarks/data/QC_DEVSET.md):

1. Baseline. Only ACI-Bench notes that are already clean are used: the patient's sex is read from
   the note's pronouns (notes with both he/his and she/her, or neither, are skipped); the note must
   already hold the four required sections of `note_type.us.outpatient-progress-note` as whole-line
   headers; text matched by a TJC "Do Not Use" or ISMP error-prone pattern (abbreviations.yaml) is
   rewritten when a safe rewrite exists ("2000 IU" -> "2,000 units") and the note is skipped
   otherwise; notes whose own medications already collide (interaction, duplicate class, allergy,
   dose above the label maximum), that list a drug allergy, that use a sex-specific term of the
   other sex, or that both deny and assert a symptom or name both sides of one body part are
   skipped. A built-in lint (`lint_record`) re-checks every record against the same knowledge
   files and the build fails if a record shows anything other than what was planted.
2. Clean records (about a third) are baseline copies: outpatient progress note signed within an
   hour, medications/allergies empty, some with correctly coded diagnoses, plus a few inpatient
   controls (admission note, first course record, discharge summary) signed well within limits.
3. Defective records carry exactly one planted defect, spread evenly over the six QC categories.

Deterministic: the same --seed, split and knowledge files give the same bytes.
Data: ACI-Bench (Yim et al., Scientific Data 2023), CC BY 4.0.
"""

from __future__ import annotations

import argparse
import collections
import datetime as dt
import itertools
import json
import random
import re
import sys
from pathlib import Path

import yaml

from copilot.config import Settings  # noqa: E402

ROOT = Path(__file__).resolve().parents[1]
KNOWLEDGE = ROOT / "knowledge" / "sources"
DATASET_DIRS = [Settings().datasets_dir / "aci-bench"]
CATEGORIES = ["completeness", "timeliness", "consistency", "medication_safety", "documentation", "coding"]
DEFAULT_SEED = 20261101

# Defects per category and kind (train default: 36 per category = 216, plus 108 clean = 324).
PLAN = {
    "completeness": {"missing_physical_exam": 10, "missing_assessment_plan": 10, "missing_chief_complaint": 5,
                     "missing_hpi": 5, "empty_section": 6},
    "timeliness": {"admission_note_late": 14, "first_course_record_late": 11, "discharge_summary_late": 11},
    "consistency": {"sex_mismatch_female_terms": 9, "sex_mismatch_prostate": 9, "denied_and_asserted": 9,
                    "laterality_conflict": 9},
    "medication_safety": {"allergy_conflict": 9, "duplicate_therapy": 9, "drug_interaction": 9,
                          "dose_above_max": 9},
    "documentation": {"dnu_u": 5, "dnu_iu": 5, "dnu_qd": 5, "dnu_qod": 5, "dnu_trailing_zero": 4,
                      "dnu_leading_zero": 4, "dnu_ms": 4, "dnu_mso4": 4},
    "coding": {"code_text_mismatch": 30, "invalid_code": 6},
}
N_CLEAN_OUTPATIENT = 99
N_CLEAN_INPATIENT = {"admission_note": 3, "first_course_record": 3, "discharge_summary": 3}
CLEAN_WITH_DIAGNOSES = 0.6   # share of clean outpatient records (of notes naming a known condition) given coded diagnoses
OTHER_WITH_DIAGNOSES = 0.25  # share of non-coding defective records given correctly coded diagnoses

# --------------------------------------------------------------------------------------------
# Knowledge
# --------------------------------------------------------------------------------------------


def _items(name: str) -> list[dict]:
    return [i for i in yaml.safe_load((KNOWLEDGE / name).read_text(encoding="utf-8"))["items"]
            if i.get("status", "active") != "retired"]


class Knowledge:
    def __init__(self) -> None:
        self.drugs = {d["name"]: d for d in _items("drugs.yaml")}
        self.classes = {c["id"].split(".", 1)[1]: c for c in _items("drug_classes.yaml")}
        self.interactions = _items("interactions.yaml")
        self.abbreviations = _items("abbreviations.yaml")
        self.note_types = _items("note_types.yaml")
        self.time_limits = _items("time_limits.yaml")
        lex: dict[str, str] = {}
        for d in self.drugs.values():
            for n in [d["name"], *d.get("brands", []), *d.get("synonyms", [])]:
                if len(n) >= 3:
                    lex.setdefault(n.lower(), d["name"])
        self.lexicon = lex
        alt = "|".join(re.escape(n) for n in sorted(lex, key=len, reverse=True))
        self.drug_re = re.compile(r"(?<![\w-])(" + alt + r")(?![\w-])", re.I)
        self.tjc = [(a["id"], re.compile(a["pattern"])) for a in self.abbreviations if a["list"] == "tjc_do_not_use"]
        self.ismp = [(a["id"], re.compile(a["pattern"])) for a in self.abbreviations if a["list"] != "tjc_do_not_use"]
        self.outpatient = next(n for n in self.note_types if n["id"] == "note_type.us.outpatient-progress-note")
        headers = set()
        for n in self.note_types:
            for s in n["required_sections"]:
                headers.update(h.upper() for h in s["headers"])
        self.all_headers = headers

    def required_sections(self, document_type: str) -> list[tuple[str, dict]]:
        """(note type id, section) pairs the record must satisfy for a document type.

        progress_note: the US outpatient progress note only (the brief of this set); inpatient types:
        every US and CN item of that document type, so no jurisdiction setting can see a gap."""
        if document_type == "progress_note":
            return [(self.outpatient["id"], s) for s in self.outpatient["required_sections"]]
        return [(n["id"], s) for n in self.note_types if n["document_type"] == document_type
                for s in n["required_sections"]]

    def limits(self, document_type: str) -> list[dict]:
        return [t for t in self.time_limits if t["document_type"] == document_type
                and t["anchor"] in ("admitted_at", "discharged_at")]

    # ---- medications ----
    def drug(self, name: str) -> dict | None:
        n = self.lexicon.get(name.lower())
        return self.drugs.get(n) if n else None

    def allergy_classes(self, allergen: str) -> set[str]:
        a = allergen.lower().strip()
        a = re.sub(r"\s*\(.*\)$", "", a)
        out: set[str] = set()
        d = self.drug(a)
        if d:
            out.update(d.get("allergy_groups") or d["classes"])
            out.add("drug:" + d["name"])
        for cid, c in self.classes.items():
            names = {cid, cid.replace("_", " "), c["name"].lower(), (cid + "s").replace("_", " ")}
            if a in names or a.rstrip("s") in names:
                out.add(cid)
        for cid in list(out):
            for x in self.classes.get(cid, {}).get("cross_reacts_with") or []:
                out.add(x["class"])
        return out


def _side_hits(drug: dict, side: dict) -> bool:
    return drug["name"] in (side.get("drugs") or []) or bool(set(side.get("classes") or []) & set(drug["classes"]))


# --------------------------------------------------------------------------------------------
# Notes: parse, render, sections
# --------------------------------------------------------------------------------------------

EXTRA_HEADERS = {"REVIEW OF SYSTEMS", "RESULTS", "INSTRUCTIONS", "SOCIAL HISTORY", "VITALS", "VITALS REVIEWED",
                 "MEDICATIONS", "CURRENT MEDICATIONS", "MEDICAL HISTORY", "FAMILY HISTORY", "PAST HISTORY",
                 "ALLERGIES", "SURGICAL HISTORY", "PAST MEDICAL HISTORY", "PAST SURGICAL HISTORY", "PROCEDURE",
                 "BIRTH HISTORY", "HPI", "CC"}


class Note:
    def __init__(self, preamble: str, sections: list[list[str]]):
        self.preamble = preamble
        self.sections = sections  # [header line, body]

    @classmethod
    def parse(cls, text: str, known: set[str]) -> "Note":
        pre: list[str] = []
        secs: list[list] = []
        for line in text.replace("\r\n", "\n").split("\n"):
            s = line.strip()
            key = s.rstrip(":：").strip()
            if s and key.upper() in known and key == key.upper() and len(key) > 1:
                secs.append([s, []])
            elif secs:
                secs[-1][1].append(line.rstrip())
            else:
                pre.append(line.rstrip())
        return cls("\n".join(pre).strip(), [[h, "\n".join(b).strip()] for h, b in secs])

    def render(self) -> str:
        parts = [self.preamble] if self.preamble else []
        for h, b in self.sections:
            parts.append(h + ("\n\n" + b if b else ""))
        return "\n\n".join(parts).strip() + "\n"

    def key(self, i: int) -> str:
        return self.sections[i][0].rstrip(":：").strip().upper()

    def find(self, names: set[str] | list[str]) -> list[int]:
        names = {n.upper() for n in names}
        return [i for i in range(len(self.sections)) if self.key(i) in names]

    def copy(self) -> "Note":
        return Note(self.preamble, [list(s) for s in self.sections])


def group_headers(kn: Knowledge, group: str) -> list[str]:
    return next(s["headers"] for s in kn.outpatient["required_sections"] if s["id"] == group)


# A&P headers of the outpatient note type, used to place planted plan text.
PLAN_TARGETS = ["PLAN", "ASSESSMENT AND PLAN", "ASSESSMENT & PLAN", "IMPRESSION AND PLAN", "IMPRESSION/PLAN",
                "A&P", "A/P", "ASSESSMENT", "IMPRESSION"]


def header_line_re(variants: list[str], loose: bool) -> re.Pattern:
    alt = "|".join(re.escape(v) for v in sorted(variants, key=len, reverse=True))
    tail = r"(?![\w/&])" if loose else r"\s*[:：]?\s*$"
    return re.compile(r"(?im)^[ \t]*(?:" + alt + r")" + tail)


# --------------------------------------------------------------------------------------------
# Lint: what a careful QC engine would see in a record (used to prove each record is what we say)
# --------------------------------------------------------------------------------------------

SYMPTOMS = {
    "chest pain": r"chest (?:pain|discomfort|pressure|tightness)",
    "shortness of breath": r"shortness of breath|dyspnea|\bSOB\b|short of breath",
    "fever": r"fevers?|febrile|afebrile",
    "nausea": r"nausea|nauseous|nauseated",
    "headache": r"headaches?",
    "abdominal pain": r"abdominal pain|abdomen pain|stomach pain|belly pain",
    "dizziness": r"dizz(?:y|iness)|lightheaded(?:ness)?|vertigo",
    "palpitations": r"palpitations?",
    "cough": r"cough(?:ing|s)?",
    "vomiting": r"vomit(?:ing|s)?",
}
NEG = r"\b(?:denies|denied|deny|no|not|negative for|without|never|free of)\b"
POS = r"\b(?:reports|reported|endorses|endorsed|complains of|complaining of|presents with|positive for|notes|c/o)\b"
BODY_PARTS = ["knee", "shoulder", "ankle", "wrist", "hip", "elbow", "foot", "hand", "eye", "ear", "leg", "arm",
              "finger", "toe", "thumb", "breast", "kidney", "lung"]
FEMALE_TERMS = r"\b(?:pregnan\w*|menstrua\w*|LMP|uterus|uterine|ovar(?:y|ian|ies)|cervix|vagina\w*|hysterectomy|pap smear)\b"
MALE_TERMS = r"\b(?:prostat\w*|testic\w*|testes|scrot\w*|penile|penis|erectile|vasectomy|PSA)\b"
PRONOUN_M = r"\b(?:he|him|his|himself)\b"
PRONOUN_F = r"\b(?:she|her|hers|herself)\b"
SEX_WORDS_M = r"\b(?:male|man|gentleman|Mr\.)(?![\w-])"
SEX_WORDS_F = r"\b(?:female|woman|lady|Ms\.|Mrs\.|Miss)(?![\w-])"

FREQ = [  # (regex, administrations per day); first match within the window wins
    (r"every 4 hours|q\.?\s?4\s?h\b|q4hr?", 6), (r"every 6 to 8 hours", 4),
    (r"every 6 hours|q\.?\s?6\s?h\b|four times (?:a day|daily)|4 times (?:a day|daily)|\bQID\b|q\.i\.d\.", 4),
    (r"every 8 hours|q\.?\s?8\s?h\b|three times (?:a day|daily)|3 times (?:a day|daily)|\bTID\b|t\.i\.d\.", 3),
    (r"every 12 hours|q\.?\s?12\s?h\b|twice (?:a day|daily)|2 times (?:a day|daily)|\bBID\b|b\.i\.d\.", 2),
    (r"every other day|\bQOD\b|q\.o\.d\.", 0.5),
    (r"once (?:a day|daily)|\bdaily\b|a day\b|per day|every (?:morning|evening|night)|at bedtime|nightly|\bQD\b|q\.d\.|once at night|\bweekly\b", 1),
]
UNIT_MG = {"mg": 1.0, "g": 1000.0, "mcg": 0.001, "gram": 1000.0, "grams": 1000.0}


def mentions(kn: Knowledge, text: str) -> list[tuple[str, int, int]]:
    return [(kn.lexicon[m.group(1).lower()], m.start(), m.end()) for m in kn.drug_re.finditer(text)]


def text_doses(kn: Knowledge, text: str) -> list[tuple[str, float, str]]:
    """(drug, mg per day, snippet) for 'drug N mg <frequency>' in running text."""
    out = []
    for name, s, e in mentions(kn, text):
        window = text[e:e + 70]
        m = re.match(r"[^.\n;]{0,25}?(\d[\d,]*(?:\.\d+)?)\s?(mg|mcg|g|grams?)\b", window)
        if not m:
            continue
        amount = float(m.group(1).replace(",", "")) * UNIT_MG[m.group(2)]
        rest = window[m.end():m.end() + 45]
        mult = re.match(r"\s*,?\s*(\d)\s+(?:tablets?|tabs?|capsules?)", rest)
        if mult:
            amount *= int(mult.group(1))
        rest = rest.split(".")[0]
        for rx, per_day in FREQ:
            if re.search(rx, rest, re.I):
                out.append((name, amount * per_day, text[s:e + m.end()] + rest))
                break
    return out


def structured_mg_per_day(med: dict) -> float | None:
    if med.get("dose") is None or (med.get("unit") or "").lower() not in UNIT_MG:
        return None
    f = med.get("frequency") or ""
    for rx, per_day in FREQ:
        if re.search(rx, f, re.I):
            return med["dose"] * UNIT_MG[med["unit"].lower()] * per_day
    return None


def section_body(text: str, variants: list[str], kn: Knowledge) -> str:
    """Body text of the first section whose header is in variants (whole-line match)."""
    m = header_line_re(variants, loose=False).search(text)
    if not m:
        return ""
    rest = text[m.end():]
    nxt = header_line_re(sorted(kn.all_headers | EXTRA_HEADERS), loose=False).search(rest)
    return rest[: nxt.start()] if nxt else rest


def text_allergens(kn: Knowledge, text: str) -> list[str]:
    """Drug or drug-class allergies written in an ALLERGIES section."""
    body = section_body(text, ["ALLERGIES", "Allergies", "ALLERGY", "Drug Allergies"], kn)
    out = [n for n, _s, _e in mentions(kn, body)]
    for item in re.split(r"[\n,;.]+", body):
        if item.strip() and kn.allergy_classes(item):
            out.append(item.strip())
    return out


def lint_record(kn: Knowledge, rec: dict) -> set[tuple[str, str]]:
    """Every issue our heuristics see in a record, as (category, kind)."""
    issues: set[tuple[str, str]] = set()
    text_all = "\n".join(d["text"] for d in rec["documents"])
    patient = rec.get("patient", {})
    sex = patient.get("sex")
    any_header = header_line_re(sorted(kn.all_headers | EXTRA_HEADERS), loose=False)

    # completeness
    for doc in rec["documents"]:
        for _nt, sec in kn.required_sections(doc["type"]):
            strict = header_line_re(sec["headers"], loose=False)
            loose = header_line_re(sec["headers"], loose=True)
            hits = list(strict.finditer(doc["text"]))
            if not hits:
                if loose.search(doc["text"]):
                    issues.add(("completeness", "ambiguous_header:" + sec["id"]))
                issues.add(("completeness", "missing:" + sec["id"]))
                continue
            nonempty = False
            for h in hits:
                rest = doc["text"][h.end():]
                nxt = any_header.search(rest)
                body = rest[: nxt.start()] if nxt else rest
                if body.strip():
                    nonempty = True
            if not nonempty:
                issues.add(("completeness", "empty:" + sec["id"]))

    # timeliness
    enc = rec.get("encounter", {})
    for doc in rec["documents"]:
        for lim in kn.limits(doc["type"]):
            anchor = enc.get(lim["anchor"])
            for field in ("authored_at", "signed_at"):
                if anchor and doc.get(field):
                    hours = (parse_ts(doc[field]) - parse_ts(anchor)).total_seconds() / 3600
                    if hours > lim["hours"]:
                        issues.add(("timeliness", doc["type"] + "_late"))
                    if hours < 0 and lim["anchor"] == "admitted_at":
                        issues.add(("timeliness", "before_anchor"))
        if not doc.get("signed_at"):
            issues.add(("documentation", "unsigned"))
        if doc.get("authored_at") and doc.get("signed_at") and doc["signed_at"] < doc["authored_at"]:
            issues.add(("timeliness", "signed_before_authored"))

    # documentation
    for _id, rx in kn.tjc:
        if rx.search(text_all):
            issues.add(("documentation", "dnu_" + _id.split(".")[-1].replace("-", "_")))
    for _id, rx in kn.ismp:
        if rx.search(text_all):
            issues.add(("documentation", "ismp:" + _id))
    for m in rec.get("medications", []):
        for _id, rx in kn.tjc + kn.ismp:
            if rx.search(" ".join(str(v) for v in m.values() if v is not None)):
                issues.add(("documentation", "structured:" + _id))

    # medication safety
    drugs = {n for n, _s, _e in mentions(kn, text_all)}
    for m in rec.get("medications", []):
        d = kn.drug(m["name"])
        if d is None:
            issues.add(("medication_safety", "unknown_drug:" + m["name"]))
        else:
            drugs.add(d["name"])
    items = [kn.drugs[n] for n in sorted(drugs)]
    allergens = list(patient.get("allergies", []))
    allergens += text_allergens(kn, text_all)
    for a in allergens:
        cls = kn.allergy_classes(a)
        for d in items:
            if "drug:" + d["name"] in cls or set(d.get("allergy_groups") or []) & cls or set(d["classes"]) & cls:
                issues.add(("medication_safety", "allergy_conflict"))
    for a, b in itertools.combinations(items, 2):
        for it in kn.interactions:
            if (_side_hits(a, it["a"]) and _side_hits(b, it["b"])) or (_side_hits(b, it["a"]) and _side_hits(a, it["b"])):
                issues.add(("medication_safety", "drug_interaction"))
        for c in set(a["classes"]) & set(b["classes"]):
            if kn.classes.get(c, {}).get("duplicate_therapy"):
                issues.add(("medication_safety", "duplicate_therapy"))
    for name, mg, _snip in text_doses(kn, text_all):
        mx = kn.drugs[name].get("max_daily_dose")
        if mx and mx["unit"] in UNIT_MG and mg > mx["value"] * UNIT_MG[mx["unit"]] + 1e-9:
            issues.add(("medication_safety", "dose_above_max"))
    for m in rec.get("medications", []):
        d = kn.drug(m["name"])
        mg = structured_mg_per_day(m)
        mx = d and d.get("max_daily_dose")
        if mg is not None and mx and mx["unit"] in UNIT_MG and mg > mx["value"] * UNIT_MG[mx["unit"]] + 1e-9:
            issues.add(("medication_safety", "dose_above_max"))
    pregnant = bool(re.search(r"\bpregnan", text_all, re.I))
    age = patient.get("age")
    for d in items:
        pops = {c["population"] for c in d.get("cautions") or []}
        sex_block = any(c["population"] == sex and re.search(r"not indicated|men only|women only", c["text"], re.I)
                        for c in d.get("cautions") or [])
        if (pregnant and "pregnancy" in pops) or sex_block:
            issues.add(("medication_safety", "caution:" + d["name"]))

    # consistency
    n_m = len(re.findall(PRONOUN_M, text_all, re.I))
    n_f = len(re.findall(PRONOUN_F, text_all, re.I))
    if (sex == "male" and n_f) or (sex == "female" and n_m):
        issues.add(("consistency", "pronoun_sex_mismatch"))
    if (sex == "male" and re.search(SEX_WORDS_F, text_all)) or (sex == "female" and re.search(SEX_WORDS_M, text_all)):
        issues.add(("consistency", "sex_word_mismatch"))
    if sex == "male" and re.search(FEMALE_TERMS, text_all, re.I):
        issues.add(("consistency", "female_term_in_male"))
    if sex == "female" and re.search(MALE_TERMS, text_all, re.I):
        issues.add(("consistency", "male_term_in_female"))
    if age is not None:
        ages = {int(a) for a in re.findall(r"\b(\d{1,3})[- ]year[- ]old\b", text_all)}
        if ages and ages != {age}:
            issues.add(("consistency", "age_mismatch"))
    for sym, rx in SYMPTOMS.items():
        neg = pos = False
        for sent in re.split(r"(?<=[.!?])\s+|\n", text_all):
            if re.search(rx, sent, re.I):
                head = sent[: re.search(rx, sent, re.I).start()]
                if re.search(NEG, head, re.I):
                    neg = True
                elif re.search(POS, head, re.I):
                    pos = True
        if neg and pos:
            issues.add(("consistency", "denied_and_asserted"))
    for part in BODY_PARTS:
        sides = {m.group(1).lower() for m in re.finditer(r"\b(left|right)\s+" + part + r"s?\b", text_all, re.I)}
        if len(sides) == 2:
            issues.add(("consistency", "laterality_conflict"))

    # coding
    for dx in rec.get("diagnoses", []):
        code = dx.get("code")
        if code is None:
            continue
        if code not in ICD:
            issues.add(("coding", "invalid_code" if code in INVALID_CODES else "unknown_code"))
        elif dx["text"].lower() not in {t.lower() for t in ICD[code][1]}:
            issues.add(("coding", "code_text_mismatch"))
    return issues


# lint kinds each planted kind must produce, and nothing else
LINT_FOR_PLANT = {
    "missing_physical_exam": {("completeness", "missing:physical_exam")},
    "missing_assessment_plan": {("completeness", "missing:assessment_plan")},
    "missing_chief_complaint": {("completeness", "missing:chief_complaint")},
    "missing_hpi": {("completeness", "missing:history")},
    "sex_mismatch_female_terms": {("consistency", "pronoun_sex_mismatch"), ("consistency", "female_term_in_male")},
    "sex_mismatch_prostate": {("consistency", "male_term_in_female")},
}


def expected_lint(expected: list[dict]) -> set[tuple[str, str]]:
    out: set[tuple[str, str]] = set()
    for e in expected:
        k = e["kind"]
        if k in LINT_FOR_PLANT:
            out |= LINT_FOR_PLANT[k]
        elif k == "empty_section":
            out.add(("completeness", "empty:" + e["section_id"]))
        else:
            out.add((e["category"], k))
    return out


# --------------------------------------------------------------------------------------------
# ICD-10-CM pairs (titles from the CDC/NCHS ICD-10-CM April 2026 release; checked against
# simple_icd_10_cm when it is installed)
# --------------------------------------------------------------------------------------------

# code -> (official title, accepted diagnosis texts, note keyword regex that supports the diagnosis)
ICD = {
    "I10": ("Essential (primary) hypertension", ["essential hypertension", "hypertension", "essential (primary) hypertension"],
            r"\bhypertension\b"),
    "E11.9": ("Type 2 diabetes mellitus without complications",
              ["type 2 diabetes mellitus without complications", "type 2 diabetes mellitus"],
              r"\b(?:type 2 diabetes|diabetes|diabetic)\b"),
    "J45.909": ("Unspecified asthma, uncomplicated", ["asthma", "unspecified asthma, uncomplicated"], r"\basthma\b"),
    "F32.A": ("Depression, unspecified", ["depression", "depression, unspecified"], r"\bdepression\b"),
    "M10.9": ("Gout, unspecified", ["gout", "gout, unspecified"], r"\bgout\b"),
    "K21.9": ("Gastro-esophageal reflux disease without esophagitis",
              ["gastro-esophageal reflux disease without esophagitis", "gastroesophageal reflux disease"],
              r"\b(?:reflux|GERD)\b"),
    "E03.9": ("Hypothyroidism, unspecified", ["hypothyroidism", "hypothyroidism, unspecified"], r"\bhypothyroidism\b"),
    "I50.9": ("Heart failure, unspecified", ["heart failure", "congestive heart failure", "heart failure, unspecified"],
              r"\bheart failure\b"),
    "E78.5": ("Hyperlipidemia, unspecified", ["hyperlipidemia", "hyperlipidemia, unspecified"],
              r"\b(?:hyperlipidemia|high cholesterol)\b"),
    "I48.91": ("Unspecified atrial fibrillation", ["atrial fibrillation", "unspecified atrial fibrillation"],
               r"\batrial fibrillation\b"),
    "G43.909": ("Migraine, unspecified, not intractable, without status migrainosus", ["migraine"], r"\bmigraines?\b"),
    "J44.9": ("Chronic obstructive pulmonary disease, unspecified", ["chronic obstructive pulmonary disease"],
              r"\b(?:COPD|chronic obstructive pulmonary disease)\b"),
    "F41.9": ("Anxiety disorder, unspecified", ["anxiety disorder", "anxiety"], r"\banxiety\b"),
    "E66.9": ("Obesity, unspecified", ["obesity"], r"\bobesity\b"),
    "N20.0": ("Calculus of kidney", ["kidney stone", "nephrolithiasis", "calculus of kidney"],
              r"\b(?:kidney stones?|nephrolithiasis|renal calcul\w+)\b"),
    "J30.9": ("Allergic rhinitis, unspecified", ["allergic rhinitis"], r"\b(?:allergic rhinitis|seasonal allergies)\b"),
    "N39.0": ("Urinary tract infection, site not specified", ["urinary tract infection"],
              r"\b(?:urinary tract infection|UTI)\b"),
    "J18.9": ("Pneumonia, unspecified organism", ["pneumonia"], r"\bpneumonia\b"),
    "M54.50": ("Low back pain, unspecified", ["low back pain"], r"\b(?:low back pain|lower back pain)\b"),
    "G47.33": ("Obstructive sleep apnea (adult) (pediatric)", ["obstructive sleep apnea"], r"\bsleep apnea\b"),
    "N18.9": ("Chronic kidney disease, unspecified", ["chronic kidney disease"], r"\bchronic kidney disease\b"),
    "E55.9": ("Vitamin D deficiency, unspecified", ["vitamin D deficiency"], r"\bvitamin D deficiency\b"),
    "F17.210": ("Nicotine dependence, cigarettes, uncomplicated", ["nicotine dependence, cigarettes"],
                r"\b(?:smok(?:es|er|ing) cigarettes|cigarette smok\w+|pack[- ]a[- ]day)\b"),
    "D64.9": ("Anemia, unspecified", ["anemia", "anemia, unspecified"], r"\banemia\b"),
    "B18.2": ("Chronic viral hepatitis C", ["chronic viral hepatitis C", "hepatitis C"], r"\bhepatitis C\b"),
    "K20.90": ("Esophagitis, unspecified without bleeding", ["esophagitis", "esophagitis without bleeding"],
               r"\besophagitis\b"),
    "M77.11": ("Lateral epicondylitis, right elbow", ["lateral epicondylitis, right elbow",
                                                     "right elbow lateral epicondylitis"],
               r"\bright elbow lateral epicondylitis\b|\blateral epicondylitis,? (?:of the )?right elbow\b"),
    "M77.01": ("Medial epicondylitis, right elbow", ["medial epicondylitis, right elbow", "right medial epicondylitis"],
               r"\bright medial epicondylitis\b|\bmedial epicondylitis,? (?:of the )?right elbow\b"),
    "M25.512": ("Pain in left shoulder", ["pain in left shoulder", "left shoulder pain"], r"\bleft shoulder pain\b"),
    "I25.10": ("Atherosclerotic heart disease of native coronary artery without angina pectoris",
               ["coronary artery disease", "atherosclerotic heart disease of native coronary artery"],
               r"\bcoronary artery disease\b"),
    "R19.7": ("Diarrhea, unspecified", ["diarrhea", "diarrhea, unspecified"], r"\bdiarrhea\b"),
}
# well-formed but absent from ICD-10-CM (checked against simple_icd_10_cm when installed)
INVALID_CODES = {"E11.99": "E11.9", "I10.0": "I10", "I10.9": "I10", "J45.9099": "J45.909", "E11.90": "E11.9",
                 "K21.90": "K21.9", "I10.1": "I10", "D64.90": "D64.9", "B18.20": "B18.2", "F32.A0": "F32.A",
                 "I50.90": "I50.9", "N20.00": "N20.0", "M10.90": "M10.9", "F41.90": "F41.9", "I25.100": "I25.10"}


def check_icd_table() -> None:
    try:
        import simple_icd_10_cm as cm  # noqa: PLC0415
    except ImportError:
        return
    for code, (title, _t, _r) in ICD.items():
        assert cm.is_valid_item(code) and cm.is_leaf(code), code
        assert cm.get_description(code) == title, (code, cm.get_description(code))
    for code in INVALID_CODES:
        assert not cm.is_valid_item(code), code


def note_conditions(text: str) -> list[str]:
    """ICD codes whose condition the note asserts for this patient.

    Negated and family-history sentences are ignored; a condition named anywhere as suspected, possible
    or in a differential is not used at all; type 2 diabetes needs "type 2" or metformin in the note
    (insulin alone could be type 1); "anemia" is not used for a note about iron deficiency anemia."""
    sentences = re.split(r"(?<=[.!?])\s+|\n", text)
    hedged = [s for s in sentences if re.search(r"possible|etiolog|rule out|differential|suspect|concern|likely|suggest",
                                                 s, re.I)]
    kept = [s for s in sentences if s not in hedged and not re.search(NEG + r"|family history", s, re.I)]
    body = "\n".join(kept)
    out = []
    for code, (_title, _texts, rx) in ICD.items():
        if not re.search(rx, body, re.I) or any(re.search(rx, s, re.I) for s in hedged):
            continue
        if code == "E11.9" and (re.search(r"type (?:1|I)\b|prediabet|gestational|neuropathy|nephropathy|"
                                          r"retinopathy", text, re.I) or not re.search(r"type 2|metformin", text, re.I)):
            continue
        if code == "D64.9" and re.search(r"iron deficiency|sickle|thalass|aplastic", text, re.I):
            continue
        out.append(code)
    return out


# --------------------------------------------------------------------------------------------
# Baseline selection
# --------------------------------------------------------------------------------------------

SANITIZERS = [  # (regex, replacement) applied in order; only meaning-preserving rewrites
    (re.compile(r"(?<![\d,.])(\d[\d,]*(?:\.\d+)?)\s?I\.?U\.?(?![\w/])"), r"\1 units"),
    (re.compile(r"(?<![\d,.])(\d{1,3})(\d{3})(\s?(?:[Uu]nits?|mcg|mg)\b)"), r"\1,\2\3"),
    (re.compile(r"(?<![\d.])(\d+)\.0\s?cc\b"), r"\1 mL"),
    (re.compile(r"(\d)\s?cc\b"), r"\1 mL"),
    (re.compile(r"(?<![\w.])(\d+(?:\.\d+)?)(mg|mcg|mL)\b"), r"\1 \2"),
]


class Baseline:
    def __init__(self, file: str, note: Note, sex: str, age: int | None, sanitized: list[str], text: str):
        self.file, self.note, self.sex, self.age, self.sanitized, self.text = file, note, sex, age, sanitized, text
        self.conditions = note_conditions(text)
        self.uses = 0


def pronoun_sex(text: str) -> str | None:
    m = len(re.findall(PRONOUN_M, text, re.I))
    f = len(re.findall(PRONOUN_F, text, re.I))
    if m and not f:
        return "male"
    if f and not m:
        return "female"
    return None


def build_baselines(kn: Knowledge, rows: list[dict], log: list[str]) -> list[Baseline]:
    known = kn.all_headers | EXTRA_HEADERS
    out = []
    for row in rows:
        fid, text = row["file"], row["tgt"].replace("\r\n", "\n").strip() + "\n"
        sex = pronoun_sex(text)
        if sex is None:
            log.append(f"{fid}: skipped, mixed or no he/she pronouns")
            continue
        note = Note.parse(text, known)
        missing = [s["id"] for s in kn.outpatient["required_sections"]
                   if not note.find(s["headers"]) or not any(note.sections[i][1].strip() for i in note.find(s["headers"]))]
        if missing:
            log.append(f"{fid}: skipped, required section(s) absent as ACI-Bench headers: {', '.join(missing)}")
            continue
        sanitized = []
        rendered = note.render()
        for rx, rep in SANITIZERS:
            for m in rx.finditer(rendered):
                sanitized.append(f"{m.group(0)!r} -> {m.expand(rep)!r}")
            rendered = rx.sub(rep, rendered)
        note = Note.parse(rendered, known)
        ages = {int(a) for a in re.findall(r"\b(\d{1,3})[- ]year[- ]old\b", rendered)}
        age = ages.pop() if len(ages) == 1 else None
        if len(ages) > 0:
            log.append(f"{fid}: skipped, several ages in the note")
            continue
        if text_allergens(kn, rendered):
            log.append(f"{fid}: skipped, documents a drug allergy in its text ({', '.join(text_allergens(kn, rendered))})")
            continue
        probe = make_record(kn, "probe", Baseline(fid, note, sex, age, sanitized, rendered), [], [], [],
                            dt.datetime(2025, 1, 6, 9), "outpatient")
        issues = lint_record(kn, probe)
        if issues:
            log.append(f"{fid}: skipped, baseline lint: {sorted(k for _c, k in issues)}")
            continue
        if sanitized:
            log.append(f"{fid}: sanitized {sanitized}")
        out.append(Baseline(fid, note, sex, age, sanitized, rendered))
    return out


# --------------------------------------------------------------------------------------------
# Record assembly
# --------------------------------------------------------------------------------------------

def iso(t: dt.datetime) -> str:
    return t.strftime("%Y-%m-%dT%H:%M:00Z")


def parse_ts(s: str) -> dt.datetime:
    return dt.datetime.fromisoformat(s.replace("Z", "+00:00")).replace(tzinfo=None)


def make_record(kn: Knowledge, rid: str, base: Baseline, meds: list[dict], diagnoses: list[dict],
                allergies: list[str], visit: dt.datetime, setting: str, text: str | None = None,
                doc_type: str = "progress_note", times: dict | None = None) -> dict:
    times = times or {}
    authored = times.get("authored", visit + dt.timedelta(minutes=20))
    signed = times.get("signed", authored + dt.timedelta(minutes=15))
    return {
        "id": rid,
        "patient": {"sex": base.sex, "age": base.age, "birth_date": None, "allergies": list(allergies)},
        "encounter": {"type": setting, "admitted_at": iso(times["admitted"]) if "admitted" in times else None,
                      "discharged_at": iso(times["discharged"]) if "discharged" in times else None},
        "documents": [{"id": rid + "-doc1", "type": doc_type, "authored_at": iso(authored), "signed_at": iso(signed),
                       "text": text if text is not None else base.note.render()}],
        "medications": meds,
        "diagnoses": diagnoses,
    }


def random_visit(rng: random.Random) -> dt.datetime:
    day = dt.date(2025, 1, 6) + dt.timedelta(days=rng.randrange(0, 500))
    while day.weekday() >= 5:
        day += dt.timedelta(days=1)
    return dt.datetime.combine(day, dt.time(8, 0)) + dt.timedelta(minutes=15 * rng.randrange(0, 35))


def outpatient_times(rng: random.Random, visit: dt.datetime) -> dict:
    authored = visit + dt.timedelta(minutes=rng.randrange(10, 45))
    return {"authored": authored, "signed": authored + dt.timedelta(minutes=rng.randrange(3, 56))}


def matching_diagnoses(rng: random.Random, base: Baseline, k: int | None = None) -> list[dict]:
    codes = list(base.conditions)
    rng.shuffle(codes)
    k = k if k is not None else rng.randint(1, min(3, len(codes)))
    return [{"code": c, "text": rng.choice(ICD[c][1])} for c in codes[:k]]


# ---- text helpers ----

def paragraphs(body: str) -> list[str]:
    return [p for p in body.split("\n\n") if p.strip()]


def insert_paragraph(body: str, new: str, pos: str, rng: random.Random) -> str:
    paras = paragraphs(body)
    if pos == "start":
        i = 0
    elif pos == "end":
        i = len(paras)
    else:
        i = rng.randint(1, max(1, len(paras)))
    paras.insert(i, new)
    return "\n\n".join(paras)


def append_to_paragraph(body: str, sentence: str, rng: random.Random) -> str:
    """Append a sentence to a prose paragraph (not a bullet list); falls back to a new paragraph."""
    paras = paragraphs(body)
    prose = [i for i, p in enumerate(paras) if "\n" not in p and not p.lstrip().startswith(("•", "-", "*"))
             and p.rstrip().endswith(".") and len(p) > 60]
    if not prose:
        return insert_paragraph(body, sentence, "end", rng)
    i = rng.choice(prose)
    paras[i] = paras[i].rstrip() + " " + sentence
    return "\n\n".join(paras)


def bullet_style(body: str) -> str | None:
    for line in body.split("\n"):
        s = line.lstrip()
        if s.startswith("• "):
            return "• "
        if s.startswith("- "):
            return "- "
    return None


def plan_index(note: Note) -> int | None:
    for h in PLAN_TARGETS:
        idx = note.find([h])
        if idx:
            return idx[-1]
    return None


def add_plan_text(note: Note, sentence: str, rng: random.Random) -> None:
    """Place a medication sentence in the plan, in the note's own style, at a varied position."""
    i = plan_index(note)
    body = note.sections[i][1]
    style = bullet_style(body)
    mode = rng.choice(["bullet", "paragraph", "append"]) if style else rng.choice(["paragraph", "append"])
    if mode == "bullet":
        line = f"{style}{rng.choice(['Medical Treatment', 'Medications', 'Plan'])}: {sentence}"
        paras = paragraphs(body)
        cand = [j for j, p in enumerate(paras) if style.strip() in p]
        j = rng.choice(cand)
        paras[j] = paras[j].rstrip() + "\n" + line
        note.sections[i][1] = "\n\n".join(paras)
    elif mode == "paragraph":
        note.sections[i][1] = insert_paragraph(body, sentence, rng.choice(["start", "middle", "end"]), rng)
    else:
        note.sections[i][1] = append_to_paragraph(body, sentence, rng)


def hpi_index(note: Note, kn: Knowledge) -> int:
    return note.find(group_headers(kn, "history"))[0]


def exam_index(note: Note, kn: Knowledge) -> int:
    return note.find(group_headers(kn, "physical_exam"))[0]


def sentence_case(s: str) -> str:
    return s[0].upper() + s[1:]


# --------------------------------------------------------------------------------------------
# Planting: one function per category; each returns (record, expected) or None when the
# baseline does not suit the variant. The caller lints and retries with the next baseline.
# --------------------------------------------------------------------------------------------

class Ctx:
    def __init__(self, kn: Knowledge, rng: random.Random):
        self.kn, self.rng = kn, rng


def pron(sex: str) -> tuple[str, str]:
    return ("He", "his") if sex == "male" else ("She", "her")


_REASON = re.compile(r",?\s*(?:and\s+|who\s+|which\s+)?(?:is\s+|was\s+)?(?:presents?|presenting|here|seen|evaluated|referred|"
                     r"comes?|coming|complains?|complaining|c/o)\b[^.]*\.", re.I)


def plant_completeness(ctx: Ctx, base: Baseline, kind: str, rid: str, variant: int):
    kn, rng = ctx.kn, ctx.rng
    note = base.note.copy()
    group = {"missing_physical_exam": "physical_exam", "missing_assessment_plan": "assessment_plan",
             "missing_chief_complaint": "chief_complaint", "missing_hpi": "history"}.get(kind)
    if kind == "empty_section":
        group = ["physical_exam", "assessment_plan", "history", "chief_complaint", "physical_exam",
                 "assessment_plan"][variant % 6]
        idx = note.find(group_headers(kn, group))
        if len(idx) != 1:
            return None
        header = note.sections[idx[0]][0]
        note.sections[idx[0]][1] = ""
        exp = [{"category": "completeness", "kind": "empty_section", "evidence": header.rstrip(":"),
                "section_id": group}]
    else:
        idx = note.find(group_headers(kn, group))
        headers = [note.sections[i][0].rstrip(":") for i in idx]
        for i in sorted(idx, reverse=True):
            del note.sections[i]
        if header_line_re(group_headers(kn, group), loose=True).search(note.render()):
            return None  # a body line would still read as that header
        if group == "chief_complaint":
            # a reason for the visit in the history's opening line states the chief complaint (QC accepts it,
            # copilot/qc/rules/completeness.yaml stated_in_opening): take it out so the defect is real
            for section in note.sections:
                if section[0].strip().rstrip(":").upper() in ("HISTORY OF PRESENT ILLNESS", "HPI"):
                    first, _, rest = section[1].lstrip("\n").partition("\n")
                    first = _REASON.sub(".", first, count=1)
                    section[1] = first + ("\n" + rest if rest else "")
        exp = [{"category": "completeness", "kind": kind, "evidence": " + ".join(headers)}]
    text = note.render()
    visit = random_visit(rng)
    rec = make_record(kn, rid, base, [], [], [], visit, "outpatient", text=text,
                      times=outpatient_times(rng, visit))
    return rec, exp


# ---- timeliness / inpatient documents ----

def problems(note: Note, kn: Knowledge) -> list[str]:
    out = []
    for h in ["ASSESSMENT", "IMPRESSION", "ASSESSMENT AND PLAN", "ASSESSMENT & PLAN", "IMPRESSION AND PLAN"]:
        for i in note.find([h]):
            for line in note.sections[i][1].split("\n"):
                s = line.strip()
                m = re.match(r"^(?:\d+\.\s*)?([A-Z][A-Za-z0-9 ,'/()-]{2,80}?)\.?$", s)
                if m and len(m.group(1).split()) <= 9 and "year-old" not in s and ":" not in s:
                    out.append(m.group(1).strip())
    if not out:
        cc = note.find(group_headers(kn, "chief_complaint"))
        if cc:
            first = note.sections[cc[0]][1].split("\n")[0].strip().rstrip(".")
            out.append(first)
    seen, uniq = set(), []
    for p in out:
        if p.lower() not in seen:
            seen.add(p.lower())
            uniq.append(p)
    return uniq[:4]


def body_of(note: Note, names: list[str]) -> str:
    idx = note.find(names)
    return "\n\n".join(note.sections[i][1] for i in idx if note.sections[i][1].strip())


def to_inpatient(kn: Knowledge, base: Baseline, doc_type: str, admitted: dt.datetime,
                 discharged: dt.datetime | None) -> str | None:
    n = base.note
    cc = body_of(n, group_headers(kn, "chief_complaint"))
    hpi = body_of(n, group_headers(kn, "history"))
    pe = body_of(n, group_headers(kn, "physical_exam"))
    vitals = body_of(n, ["VITALS", "VITALS REVIEWED"])
    ros = body_of(n, ["REVIEW OF SYSTEMS"])
    results = body_of(n, ["RESULTS"])
    assess = body_of(n, ["ASSESSMENT AND PLAN", "ASSESSMENT & PLAN", "ASSESSMENT", "IMPRESSION", "IMPRESSION AND PLAN"])
    plan = body_of(n, ["PLAN"])
    instructions = body_of(n, ["INSTRUCTIONS"])
    probs = problems(n, kn)
    if not (cc and hpi and pe and assess and probs):
        return None
    dx = "\n".join(f"{i}. {p}." for i, p in enumerate(probs, 1))
    if doc_type == "admission_note":
        if not ros:
            return None
        pmh = body_of(n, ["PAST MEDICAL HISTORY", "PAST HISTORY", "MEDICAL HISTORY", "PAST SURGICAL HISTORY",
                          "SURGICAL HISTORY"]) or "As documented in the history of present illness."
        meds = body_of(n, ["MEDICATIONS", "CURRENT MEDICATIONS"]) or "As documented in the history of present illness."
        social = body_of(n, ["SOCIAL HISTORY"]) or "Noncontributory."
        family = body_of(n, ["FAMILY HISTORY"]) or "Noncontributory."
        parts = [("CHIEF COMPLAINT", cc), ("HISTORY OF PRESENT ILLNESS", hpi), ("PAST MEDICAL HISTORY", pmh),
                 ("MEDICATIONS", meds), ("ALLERGIES", "No known drug allergies."), ("SOCIAL HISTORY", social),
                 ("FAMILY HISTORY", family), ("MARITAL AND REPRODUCTIVE HISTORY", "Noncontributory."),
                 ("REVIEW OF SYSTEMS", ros), ("PHYSICAL EXAMINATION", (vitals + "\n\n" + pe).strip()),
                 ("SPECIALTY EXAMINATION", "Focused findings as documented in the physical examination above."),
                 ("RESULTS", results or "No results available at the time of admission."),
                 ("ADMITTING DIAGNOSIS", dx),
                 ("ASSESSMENT AND PLAN", (assess + ("\n\n" + plan if plan else "")).strip())]
    elif doc_type == "first_course_record":
        case = "\n\n".join(x for x in [cc, hpi, "Examination: " + pe.replace("\n", " ") if pe else "",
                                       "Results: " + results.replace("\n", " ") if results else ""] if x)
        parts = [("CASE CHARACTERISTICS", case), ("DIAGNOSTIC DISCUSSION", assess),
                 ("PLAN", plan or "Admit for further evaluation and management as outlined in the diagnostic "
                                  "discussion above. Reassess on morning rounds.")]
    else:
        assert discharged is not None
        course = "\n\n".join(x for x in [pe, results, assess, plan] if x)
        parts = [("ADMISSION DATE", admitted.strftime("%Y-%m-%d")), ("DISCHARGE DATE", discharged.strftime("%Y-%m-%d")),
                 ("CONDITION ON ADMISSION", (cc + "\n\n" + hpi).strip()), ("ADMISSION DIAGNOSIS", dx),
                 ("HOSPITAL COURSE", course), ("DISCHARGE DIAGNOSIS", dx),
                 ("CONDITION AT DISCHARGE", "Stable."), ("DISPOSITION", "Discharged home."),
                 ("DISCHARGE INSTRUCTIONS", instructions or "Continue the plan outlined in the hospital course. "
                                                           "Return for new or worsening symptoms."),
                 ("FOLLOW-UP", "Follow up with the primary care provider in 1 to 2 weeks.")]
    text = "\n\n".join(h + "\n\n" + b for h, b in parts).strip() + "\n"
    # the source notes are clinic notes: say "admitted" where they say "presents to the clinic today"
    return re.sub(r"\bpresents (?:to the clinic )?(?:today )?(?:for|with)\b", "was admitted for", text)


def inpatient_record(ctx: Ctx, base: Baseline, rid: str, doc_type: str, late: bool):
    kn, rng = ctx.kn, ctx.rng
    admitted = random_visit(rng).replace(hour=rng.randrange(0, 24), minute=rng.choice([0, 10, 20, 35, 45, 50]))
    discharged = None
    times: dict = {"admitted": admitted}
    if doc_type == "admission_note":
        hours = rng.uniform(30, 72) if late else rng.uniform(2, 12)
        anchor = admitted
    elif doc_type == "first_course_record":
        hours = rng.uniform(10, 20) if late else rng.uniform(1, 6)
        anchor = admitted
    else:
        discharged = admitted + dt.timedelta(days=rng.randint(2, 7), hours=rng.randint(-4, 6))
        times["discharged"] = discharged
        hours = rng.uniform(30, 60) if late else rng.uniform(1, 18)
        anchor = discharged
    signed = anchor + dt.timedelta(minutes=round(hours * 60))
    gap = dt.timedelta(minutes=rng.randrange(10, 60) if late else rng.randrange(5, 50))
    authored = max(signed - gap, anchor + dt.timedelta(minutes=5))
    times.update(authored=authored, signed=signed)
    text = to_inpatient(kn, base, doc_type, admitted, discharged)
    if text is None:
        return None
    rec = make_record(kn, rid, base, [], [], [], admitted, "inpatient", text=text, doc_type=doc_type, times=times)
    anchor_name = "admission" if doc_type != "discharge_summary" else "discharge"
    limit = {"admission_note": 24, "first_course_record": 8, "discharge_summary": 24}[doc_type]
    exp = [{"category": "timeliness", "kind": doc_type + "_late",
            "evidence": f"documents[0].signed_at ({(signed - anchor).total_seconds() / 3600:.1f} h after "
                        f"{anchor_name}; limit {limit} h)"}] if late else []
    return rec, exp


def plant_timeliness(ctx: Ctx, base: Baseline, kind: str, rid: str, variant: int):
    return inpatient_record(ctx, base, rid, kind[: -len("_late")], late=True)


# ---- consistency ----

FEMALE_SENTENCES = [
    "She reports that her last menstrual period was about three weeks ago.",
    "She states that she is currently 12 weeks pregnant.",
    "Her last menstrual period was 10 days ago, and she is not trying to become pregnant.",
    "She mentions that her last menstrual period was two weeks ago and was normal.",
    "She is 20 weeks pregnant and her pregnancy has been uncomplicated so far.",
]
PROSTATE_SENTENCES = [
    "Genitourinary: Prostate is smooth, nontender, and not enlarged.",
    "Digital rectal examination reveals a smooth, mildly enlarged prostate without nodules.",
    "Rectal: Normal sphincter tone. Prostate is firm and symmetric, without tenderness.",
    "Genitourinary: Prostate is enlarged to approximately 40 grams, without nodularity.",
]
SYMPTOM_PHRASES = {  # (HPI assertion, ROS denial)
    "chest pain": ("reports intermittent chest pain over the past week", "Denies chest pain."),
    "shortness of breath": ("endorses shortness of breath when climbing stairs", "Denies shortness of breath."),
    "fever": ("reports fevers up to 101 degrees at home for the last three days", "Denies fever."),
    "nausea": ("reports nausea after meals for several days", "Denies nausea."),
    "headache": ("complains of a daily headache for the past two weeks", "Denies headache."),
    "dizziness": ("reports episodes of dizziness when standing up", "Denies dizziness."),
    "palpitations": ("endorses palpitations in the evenings", "Denies palpitations."),
    "cough": ("reports a dry cough for the last ten days", "Denies cough."),
}
ROS_SYSTEM = {"chest pain": "Cardiovascular", "shortness of breath": "Respiratory", "fever": "Constitutional",
              "nausea": "Gastrointestinal", "headache": "Neurological", "dizziness": "Neurological",
              "palpitations": "Cardiovascular", "cough": "Respiratory"}
LATERAL_PARTS = {
    "knee": ("{P} also reports {side} knee pain since a fall two weeks ago.",
             "{Side} knee: moderate swelling with tenderness along the medial joint line."),
    "shoulder": ("{P} additionally complains of {side} shoulder pain, worse with overhead activity.",
                 "{Side} shoulder: swelling over the anterior joint with painful abduction."),
    "ankle": ("{P} reports {side} ankle pain after rolling it last weekend.",
              "{Side} ankle: swelling and ecchymosis over the lateral malleolus."),
    "wrist": ("{P} also notes {side} wrist pain since lifting boxes at work.",
              "{Side} wrist: swelling and tenderness over the dorsal aspect."),
    "elbow": ("{P} reports {side} elbow pain for the past month.",
              "{Side} elbow: swelling and tenderness over the lateral epicondyle."),
    "hip": ("{P} also reports {side} hip pain when walking long distances.",
            "{Side} hip: tenderness over the greater trochanter with pain on internal rotation."),
}


def plant_consistency(ctx: Ctx, base: Baseline, kind: str, rid: str, variant: int):
    kn, rng = ctx.kn, ctx.rng
    note = base.note.copy()
    text0 = base.text
    sex = base.sex
    P, _poss = pron(sex)
    if kind == "sex_mismatch_female_terms":
        if sex != "male":
            return None
        s = FEMALE_SENTENCES[variant % len(FEMALE_SENTENCES)]
        i = hpi_index(note, kn)
        if rng.random() < 0.5:
            note.sections[i][1] = append_to_paragraph(note.sections[i][1], s, rng)
        else:
            note.sections[i][1] = insert_paragraph(note.sections[i][1], s, rng.choice(["middle", "end"]), rng)
        evidence = s
    elif kind == "sex_mismatch_prostate":
        if sex != "female":
            return None
        s = PROSTATE_SENTENCES[variant % len(PROSTATE_SENTENCES)]
        i = exam_index(note, kn)
        body = note.sections[i][1]
        style = bullet_style(body)
        line = (style + s) if style and ":" in s and rng.random() < 0.7 else s
        note.sections[i][1] = insert_paragraph(body, line, rng.choice(["middle", "end"]), rng)
        evidence = s
    elif kind == "denied_and_asserted":
        ros = note.find(["REVIEW OF SYSTEMS"])
        if not ros:
            return None
        syms = list(SYMPTOM_PHRASES)
        start = variant % len(syms)
        for sym in syms[start:] + syms[:start]:
            if not re.search(SYMPTOMS[sym], text0, re.I):
                break
        else:
            return None
        assert_phrase, deny = SYMPTOM_PHRASES[sym]
        hpi_sentence = rng.choice([f"{P} {assert_phrase}.", f"The patient {assert_phrase}."])
        i = hpi_index(note, kn)
        note.sections[i][1] = append_to_paragraph(note.sections[i][1], hpi_sentence, rng) if rng.random() < 0.5 \
            else insert_paragraph(note.sections[i][1], hpi_sentence, rng.choice(["middle", "end"]), rng)
        body = note.sections[ros[0]][1]
        style = bullet_style(body)
        system = ROS_SYSTEM[sym]
        lines = body.split("\n")
        same = [k for k, ln in enumerate(lines) if re.match(r"^\W*" + system + r"\s*:", ln.strip())]
        if same and rng.random() < 0.7:
            k = same[0]
            lines[k] = lines[k].rstrip().rstrip(".") + ". " + deny
        else:
            line = f"{style or ''}{system}: {deny}" if (style or ":" in body) else deny
            lines.insert(rng.randint(0, len(lines)), line)
        note.sections[ros[0]][1] = "\n".join(lines)
        evidence = f"{hpi_sentence} | {deny}"
    elif kind == "laterality_conflict":
        parts = list(LATERAL_PARTS)
        start = variant % len(parts)
        for part in parts[start:] + parts[:start]:
            if not re.search(r"\b" + part + r"s?\b", text0, re.I):
                break
        else:
            return None
        side_a, side_b = ("left", "right") if rng.random() < 0.5 else ("right", "left")
        hpi_t, exam_t = LATERAL_PARTS[part]
        hpi_sentence = hpi_t.format(P=rng.choice([P, "The patient"]), side=side_a)
        exam_sentence = exam_t.format(Side=side_b.capitalize())
        i = hpi_index(note, kn)
        note.sections[i][1] = append_to_paragraph(note.sections[i][1], hpi_sentence, rng) if rng.random() < 0.5 \
            else insert_paragraph(note.sections[i][1], hpi_sentence, "end", rng)
        j = exam_index(note, kn)
        style = bullet_style(note.sections[j][1])
        exam_line = (style + "Musculoskeletal: " + exam_sentence) if style else exam_sentence
        note.sections[j][1] = insert_paragraph(note.sections[j][1], exam_line, rng.choice(["middle", "end"]), rng)
        evidence = f"{hpi_sentence} | {exam_sentence}"
    else:
        raise ValueError(kind)
    visit = random_visit(rng)
    rec = make_record(kn, rid, base, [], [], [], visit, "outpatient", text=note.render(),
                      times=outpatient_times(rng, visit))
    return rec, [{"category": "consistency", "kind": kind, "evidence": evidence}]


# ---- medication safety ----

def M(name, dose, unit, freq, texts, route="oral", text_name=None, sex=None):
    return {"name": name, "dose": dose, "unit": unit, "route": route, "frequency": freq, "texts": texts,
            "text_name": text_name or name, "sex": sex}


ALLERGY_DRUGS = [
    M("amoxicillin", 500, "mg", "three times daily", ["500 mg three times daily for 10 days", "500 mg TID for 10 days",
                                                       "500 mg q8h for 10 days"]),
    M("amoxicillin-clavulanate", 875, "mg", "twice daily", ["875 mg twice daily for 7 days", "875 mg BID for 7 days"],
      text_name="Augmentin"),
    M("cephalexin", 500, "mg", "four times daily", ["500 mg four times daily for 7 days", "500 mg every 6 hours",
                                                     "500 mg QID for 10 days"]),
    M("penicillin v potassium", 500, "mg", "every 6 hours", ["500 mg every 6 hours for 10 days"],
      text_name="penicillin V potassium"),
    M("cefadroxil", 500, "mg", "twice daily", ["500 mg twice daily for 10 days", "500 mg BID"]),
]
DUPLICATE_PAIRS = [
    (M("omeprazole", 20, "mg", "daily", ["20 mg daily", "20 mg once daily"]),
     M("pantoprazole", 40, "mg", "daily", ["40 mg daily", "40 mg every morning"])),
    (M("sertraline", 50, "mg", "daily", ["50 mg daily"]), M("fluoxetine", 20, "mg", "daily", ["20 mg daily"])),
    (M("lansoprazole", 30, "mg", "daily", ["30 mg daily"]), M("esomeprazole", 40, "mg", "daily", ["40 mg daily"])),
    (M("paroxetine", 20, "mg", "daily", ["20 mg daily"]), M("sertraline", 100, "mg", "daily", ["100 mg daily"])),
    (M("atorvastatin", 40, "mg", "daily", ["40 mg daily"]), M("rosuvastatin", 10, "mg", "daily", ["10 mg daily"])),
]
INTERACTION_PAIRS = [
    (M("warfarin", 5, "mg", "daily", ["5 mg daily", "5 mg every evening"]),
     M("ibuprofen", 400, "mg", "every 8 hours", ["400 mg every 8 hours as needed", "400 mg TID"])),
    (M("simvastatin", 40, "mg", "daily", ["40 mg daily", "40 mg at bedtime"]),
     M("clarithromycin", 500, "mg", "twice daily", ["500 mg BID for 10 days", "500 mg twice daily for 7 days"])),
    (M("sertraline", 50, "mg", "daily", ["50 mg daily"]),
     M("linezolid", 600, "mg", "twice daily", ["600 mg every 12 hours", "600 mg BID for 10 days"])),
    (M("sildenafil", 50, "mg", "daily", ["50 mg once daily as needed"], sex="male"),
     M("nitroglycerin", 0.4, "mg", "as needed", ["0.4 mg sublingually as needed for angina"], route="sublingual",
       sex="male")),
    (M("warfarin", 5, "mg", "daily", ["5 mg daily"]), M("naproxen", 500, "mg", "twice daily", ["500 mg twice daily"])),
]
HIGH_DOSES = [
    M("acetaminophen", 1, "g", "every 4 hours", ["1 g every 4 hours", "1,000 mg every 4 hours", "1 g q4h"],
      text_name="acetaminophen"),
    M("lisinopril", 100, "mg", "daily", ["100 mg daily", "100 mg once a day"]),
    M("atorvastatin", 120, "mg", "daily", ["120 mg daily", "120 mg nightly"]),
    M("metformin", 1500, "mg", "three times daily", ["1,500 mg three times daily", "1,500 mg TID"]),
    M("sertraline", 150, "mg", "twice daily", ["150 mg BID", "150 mg twice daily"]),
    M("amlodipine", 20, "mg", "daily", ["20 mg daily"]),
    M("acetaminophen", 1, "g", "every 4 hours", ["1 g every 4 hours as needed for pain"], text_name="Tylenol"),
]
TEXT_FRAMES = ["Start {m}.", "We will start {m}.", "I have prescribed {m}.", "Continue {m}.",
               "Prescription for {m} provided.", "{M}.", "The patient will take {m}.", "Initiate {m}."]


def as_written(text: str, part: str) -> str:
    """The planted phrase exactly as it stands in the text (a frame may have capitalised it)."""
    i = text.lower().find(part.lower())
    return text[i:i + len(part)] if i >= 0 else part


def structured(spec: dict) -> dict:
    return {k: spec[k] for k in ("name", "dose", "unit", "route", "frequency")}


def med_text(spec: dict, rng: random.Random) -> str:
    return f"{spec['text_name']} {rng.choice(spec['texts'])}"


def frame(rng: random.Random, m: str) -> str:
    f = rng.choice(TEXT_FRAMES)
    return f.format(m=m, M=sentence_case(m))


def plant_medication(ctx: Ctx, base: Baseline, kind: str, rid: str, variant: int):
    kn, rng = ctx.kn, ctx.rng
    note = base.note.copy()
    if plan_index(note) is None:
        return None
    allergies: list[str] = []
    if kind == "allergy_conflict":
        specs = [ALLERGY_DRUGS[variant % len(ALLERGY_DRUGS)]]
        allergies = [rng.choice(["penicillin", "Penicillin", "penicillin (hives)"])]
    elif kind == "duplicate_therapy":
        specs = list(DUPLICATE_PAIRS[variant % len(DUPLICATE_PAIRS)])
    elif kind == "drug_interaction":
        specs = list(INTERACTION_PAIRS[variant % len(INTERACTION_PAIRS)])
    elif kind == "dose_above_max":
        specs = [HIGH_DOSES[variant % len(HIGH_DOSES)]]
    else:
        raise ValueError(kind)
    if any(s["sex"] and s["sex"] != base.sex for s in specs):
        return None
    # none of the planted drugs may already be named in the note
    present = {n for n, _s, _e in mentions(kn, base.text)}
    if any(kn.drug(s["name"])["name"] in present for s in specs):
        return None
    mode = ["structured", "text", "both"][(variant // 3 + variant) % 3] if len(specs) == 1 else \
        ["structured", "text", "mixed"][(variant // 3 + variant) % 3]
    meds, texts = [], []
    for j, spec in enumerate(specs):
        as_struct = mode in ("structured", "both") or (mode == "mixed" and j == 0)
        as_text = mode in ("text", "both") or (mode == "mixed" and j == 1)
        if as_struct:
            meds.append(structured(spec))
        if as_text:
            t = med_text(spec, rng) if not (mode == "both" and kind == "dose_above_max") else \
                f"{spec['text_name']} {spec['texts'][0]}"
            texts.append(t)
    if len(texts) == 2 and rng.random() < 0.5:
        add_plan_text(note, frame(rng, f"{texts[0]} and {texts[1]}"), rng)
    else:
        for t in texts:
            add_plan_text(note, frame(rng, t), rng)
    visit = random_visit(rng)
    rec = make_record(kn, rid, base, meds, [], allergies, visit, "outpatient", text=note.render(),
                      times=outpatient_times(rng, visit))
    ev_parts = [("patient.allergies: " + allergies[0])] if allergies else []
    for j, spec in enumerate(specs):
        t = next((x for x in texts if x.startswith(spec["text_name"])), None)
        if t:
            ev_parts.append(as_written(rec["documents"][0]["text"], t))
        else:
            k = next(i for i, m in enumerate(meds) if m["name"] == spec["name"])
            ev_parts.append(f"medications[{k}] ({spec['name']} {spec['dose']:g} {spec['unit']} {spec['frequency']})")
    return rec, [{"category": "medication_safety", "kind": kind, "evidence": " | ".join(ev_parts)}]


# ---- documentation ----

DNU = {
    "dnu_u": ["insulin glargine 10 U at bedtime", "insulin glargine 12 U at bedtime", "insulin lispro 4 U with meals",
              "insulin glargine 20 U every morning"],
    "dnu_iu": ["vitamin E 400 IU daily", "cholecalciferol 50,000 IU weekly", "vitamin D3 2,000 IU daily",
               "ergocalciferol 50,000 IU once weekly"],
    "dnu_qd": ["Lasix 40 mg QD", "amlodipine 5 mg qd", "lisinopril 10 mg q.d.", "metoprolol 25 mg PO QD",
               "atorvastatin 20 mg QD"],
    "dnu_qod": ["furosemide 20 mg PO QOD", "prednisone 10 mg q.o.d.", "Lasix 20 mg QOD", "aspirin 81 mg QOD"],
    "dnu_trailing_zero": ["colchicine 1.0 mg daily", "warfarin 5.0 mg daily", "atorvastatin 40.0 mg daily",
                          "amlodipine 5.0 mg daily"],
    "dnu_leading_zero": ["warfarin .5 mg daily", "levothyroxine .05 mg daily", "digoxin .125 mg daily",
                         "colchicine .6 mg daily"],
    "dnu_ms": ["MS 4 mg IV every 4 hours as needed for severe pain", "MS 15 mg PO every 12 hours",
               "MS 2 mg IV once for pain"],
    "dnu_mso4": ["MSO4 2 mg IV every 4 hours as needed for pain", "MSO4 15 mg PO every 12 hours",
                 "MSO4 4 mg IV once"],
}


def plant_documentation(ctx: Ctx, base: Baseline, kind: str, rid: str, variant: int):
    kn, rng = ctx.kn, ctx.rng
    note = base.note.copy()
    if plan_index(note) is None:
        return None
    line = DNU[kind][variant % len(DNU[kind])]
    present = {n for n, _s, _e in mentions(kn, base.text)}
    if any(n in present for n, _s, _e in mentions(kn, line)):
        return None
    add_plan_text(note, frame(rng, line), rng)
    visit = random_visit(rng)
    rec = make_record(kn, rid, base, [], [], [], visit, "outpatient", text=note.render(),
                      times=outpatient_times(rng, visit))
    return rec, [{"category": "documentation", "kind": kind, "evidence": as_written(rec["documents"][0]["text"], line)}]


# ---- coding ----

def plant_coding(ctx: Ctx, base: Baseline, kind: str, rid: str, variant: int):
    kn, rng = ctx.kn, ctx.rng
    if not base.conditions:
        return None
    dxs = matching_diagnoses(rng, base)
    k = rng.randrange(len(dxs))
    true_code = dxs[k]["code"]
    if kind == "code_text_mismatch":
        others = [c for c in ICD if c != true_code and c not in base.conditions]
        # prefer the classic confusions of the brief for the first few
        classic = {"I10": "E11.9", "E11.9": "I10", "J45.909": "J18.9"}
        wrong = classic.get(true_code) if variant % 3 == 0 and classic.get(true_code) in others else rng.choice(others)
        dxs[k] = {"code": wrong, "text": dxs[k]["text"]}
    else:
        cands = [c for c, right in INVALID_CODES.items() if right == true_code]
        if not cands:
            return None
        dxs[k] = {"code": rng.choice(cands), "text": dxs[k]["text"]}
    visit = random_visit(rng)
    rec = make_record(kn, rid, base, [], dxs, [], visit, "outpatient", times=outpatient_times(rng, visit))
    return rec, [{"category": "coding", "kind": kind,
                  "evidence": f"diagnoses[{k}] ({dxs[k]['code']} {dxs[k]['text']})"}]


PLANTERS = {"completeness": plant_completeness, "timeliness": plant_timeliness, "consistency": plant_consistency,
            "medication_safety": plant_medication, "documentation": plant_documentation, "coding": plant_coding}


# --------------------------------------------------------------------------------------------
# Driver
# --------------------------------------------------------------------------------------------

def load_rows(split: str, data_dir: Path | None) -> list[dict]:
    dirs = [data_dir] if data_dir else DATASET_DIRS
    for d in dirs:
        p = d / f"{split}.json"
        if p.is_file():
            return json.loads(p.read_text(encoding="utf-8"))["data"]
    raise SystemExit(f"ACI-Bench {split}.json not found in {', '.join(map(str, dirs))}")


def pick(bases: list[Baseline], rng: random.Random, tried: set[str]) -> list[Baseline]:
    """Candidates ordered least-used first, ties broken by the seeded rng."""
    order = sorted((b for b in bases if b.file not in tried), key=lambda b: (b.uses, rng.random()))
    return order


def scaled_plan(scale: float) -> tuple[dict, int, dict]:
    """PLAN, clean outpatient count and inpatient controls multiplied by scale (each kind kept >= 1)."""
    plan = {c: {k: max(1, round(n * scale)) for k, n in kinds.items()} for c, kinds in PLAN.items()}
    inpatient = {k: max(1, round(n * scale)) for k, n in N_CLEAN_INPATIENT.items()}
    return plan, max(1, round(N_CLEAN_OUTPATIENT * scale)), inpatient


def build(split: str, seed: int, data_dir: Path | None = None, log: list[str] | None = None,
          scale: float = 1.0) -> list[dict]:
    kn = Knowledge()
    check_icd_table()
    log = log if log is not None else []
    rng = random.Random(seed)
    ctx = Ctx(kn, rng)
    bases = build_baselines(kn, load_rows(split, data_dir), log)
    if len(bases) < 5:
        raise SystemExit(f"only {len(bases)} usable notes in split {split}")
    prefix = "devset" if split == "train" else f"devset-{split}"
    lines: dict[str, list[dict]] = collections.defaultdict(list)

    def finish(rec: dict, exp: list[dict], base: Baseline, category: str) -> dict | None:
        want = expected_lint(exp)
        got = lint_record(kn, rec)
        if got != want:
            log.append(f"{rec['id']} <- {base.file}: rejected, lint {sorted(got)} != {sorted(want)}")
            return None
        for e in exp:
            e.pop("section_id", None)
        base.uses += 1
        return {"record": rec, "expected": exp, "clean": not exp,
                "source": {"dataset": "aci-bench", "split": split, "file": base.file, "sanitized": base.sanitized}}

    # defective records
    plan, n_clean_out, n_clean_in = scaled_plan(scale)
    for category in CATEGORIES:
        n = 0
        for kind, count in plan[category].items():
            for variant in range(count):
                n += 1
                rid = f"{prefix}-{category}-{n}"
                tried: set[str] = set()
                made = None
                while made is None:
                    cands = pick(bases, rng, tried)
                    if not cands:
                        raise SystemExit(f"no baseline note suits {category}/{kind} variant {variant}")
                    base = cands[0]
                    tried.add(base.file)
                    out = PLANTERS[category](ctx, base, kind, rid, variant)
                    if out is None:
                        continue
                    rec, exp = out
                    if category != "coding" and base.conditions and rng.random() < OTHER_WITH_DIAGNOSES:
                        rec["diagnoses"] = matching_diagnoses(rng, base)
                    made = finish(rec, exp, base, category)
                lines[category].append(made)

    # clean records: outpatient copies, some with matching diagnoses, plus inpatient controls
    n = 0
    clean_plan = ["outpatient"] * n_clean_out + [t for t, c in n_clean_in.items() for _ in range(c)]
    for what in clean_plan:
        n += 1
        rid = f"{prefix}-clean-{n}"
        tried = set()
        made = None
        while made is None:
            cands = pick(bases, rng, tried)
            if not cands:
                raise SystemExit(f"no baseline note suits clean/{what}")
            base = cands[0]
            tried.add(base.file)
            if what == "outpatient":
                visit = random_visit(rng)
                dxs = matching_diagnoses(rng, base) if base.conditions and rng.random() < CLEAN_WITH_DIAGNOSES else []
                rec = make_record(kn, rid, base, [], dxs, [], visit, "outpatient", times=outpatient_times(rng, visit))
            else:
                out = inpatient_record(ctx, base, rid, what, late=False)
                if out is None:
                    continue
                rec = out[0]
            made = finish(rec, [], base, "clean")
        lines["clean"].append(made)

    # spread every category evenly through the file, so that any prefix of it is balanced
    return rebalance(lines, CATEGORIES + ["clean"])


def rebalance(lines: dict[str, list[dict]], order: list[str]) -> list[dict]:
    """Merge the per-category lists so that every category is spread evenly through the file."""
    keyed = []
    for c in order:
        n = len(lines[c])
        for i, row in enumerate(lines[c]):
            keyed.append(((i + 0.5) / n, order.index(c), row))
    keyed.sort(key=lambda t: (t[0], t[1]))
    return [row for _p, _c, row in keyed]


def summarize(rows: list[dict]) -> str:
    cat = collections.Counter()
    kinds = collections.Counter()
    for r in rows:
        if r["clean"]:
            doc = r["record"]["documents"][0]["type"]
            cat["clean"] += 1
            kinds[("clean", doc + (" +diagnoses" if r["record"]["diagnoses"] else ""))] += 1
        for e in r["expected"]:
            cat[e["category"]] += 1
            kinds[(e["category"], e["kind"])] += 1
    files = collections.Counter(r["source"]["file"] for r in rows)
    lines = [f"records: {len(rows)}  (clean {cat['clean']}, defective {len(rows) - cat['clean']}, "
             f"from {len(files)} ACI-Bench notes)"]
    for c in CATEGORIES + ["clean"]:
        lines.append(f"  {c:18s} {cat[c]:4d}")
        for (cc, k), v in sorted(kinds.items()):
            if cc == c:
                lines.append(f"      {k:34s} {v:4d}")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--out", type=Path, default=ROOT / "benchmarks" / "data" / "qc_devset.jsonl")
    ap.add_argument("--split", choices=["train", "valid"], default="train")
    ap.add_argument("--seed", type=int, default=DEFAULT_SEED)
    ap.add_argument("--data-dir", type=Path, default=None, help="folder holding ACI-Bench train.json/valid.json")
    ap.add_argument("--scale", type=float, default=None,
                    help="multiply the per-kind counts (default 1 for train; 1/3 for valid, which has only "
                         "9 usable notes)")
    ap.add_argument("--verbose", action="store_true", help="print skipped notes, sanitizations and rejections")
    args = ap.parse_args(argv)
    log: list[str] = []
    scale = args.scale if args.scale is not None else (1.0 if args.split == "train" else 1 / 3)
    rows = build(args.split, args.seed, args.data_dir, log, scale)
    args.out.parent.mkdir(parents=True, exist_ok=True)
    with args.out.open("w", encoding="utf-8") as f:
        for r in rows:
            f.write(json.dumps(r, ensure_ascii=False, sort_keys=False) + "\n")
    if args.verbose:
        print("\n".join(log), file=sys.stderr)
    print(summarize(rows))
    print(f"wrote {args.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
