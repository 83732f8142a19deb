"""Checkable facts in clinical text, and the grounding check of a draft against its encounter.

``extract_facts`` gives flat facts with a normalised ``key`` ("twenty milligrams" and "20 mg" share
``dose:20 mg``): the fine-tuning evaluation counts them. ``SourceFacts`` + ``unsupported`` are the
grounding check: claims are read with their context (a dose belongs to the drug it is written with,
"no, I don't have diabetes" is a negated diabetes, a side belongs to a body site, a name is a person's)
and each draft claim the encounter does not support becomes a span with a kind and a reason a
clinician can read ("transcript says no diabetes", "transcript says 20 mg of lisinopril").
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path

import yaml

from copilot.text.lookup import WORD as _WORD
from copilot.text.lookup import longest_matches

DATA = Path(__file__).parent / "data"

_UNITS = {
    "mg": "mg", "milligram": "mg", "milligrams": "mg", "mgs": "mg",
    "mcg": "mcg", "µg": "mcg", "ug": "mcg", "microgram": "mcg", "micrograms": "mcg",
    "g": "g", "gram": "g", "grams": "g",
    "ml": "ml", "milliliter": "ml", "milliliters": "ml", "millilitre": "ml", "millilitres": "ml", "cc": "ml",
    "unit": "units", "units": "units", "u": "units", "iu": "units",
    "meq": "meq", "mmol": "mmol", "mg/kg": "mg/kg", "%": "%", "puff": "puffs", "puffs": "puffs",
    "tablet": "tablets", "tablets": "tablets", "tab": "tablets", "tabs": "tablets", "capsule": "capsules",
    "capsules": "capsules", "毫克": "mg", "克": "g", "毫升": "ml", "微克": "mcg", "单位": "units", "片": "tablets",
}
_NUM = r"\d+(?:,\d{3})*(?:\.\d+)?|\.\d+"
_DOSE = re.compile(rf"(?<![A-Za-z0-9_.])({_NUM})\s*({'|'.join(sorted(map(re.escape, _UNITS), key=len, reverse=True))})(?![A-Za-z])",
                   re.I)
_NUMBER = re.compile(rf"(?<![A-Za-z0-9_.,/-])({_NUM})(?:\s*/\s*({_NUM}))?(?![A-Za-z0-9_])")
_ENUMERATION = re.compile(r"^\s*\d+[.)]\s", re.M)
_LATERALITY = re.compile(r"\b(left|right|bilateral)(?:[\s-]+(?:sided?|upper|lower|side\s+of\s+(?:the|his|her|my)))?"
                         r"[\s-]+([a-z]+)", re.I)
_LATERALITY_ZH = re.compile(r"(左|右|双)侧?(上肢|下肢|上臂|前臂|大腿|小腿|乳房|肩|肘|腕|手|髋|膝|踝|足|眼|耳|肺|肾|腿|臂|胸|腹|腰|颈|"
                            r"[\u4e00-\u9fff])")
_LATERAL_WORDS = {"left": "left", "right": "right", "bilateral": "bilateral", "both": "bilateral", "左": "left", "右": "right", "双": "bilateral"}
_SMALL = {w: str(i) for i, w in enumerate("zero one two three four five six seven eight nine ten eleven twelve".split())}
_SMALL_WORD = re.compile(r"\b(" + "|".join(_SMALL) + r")\b", re.I)
_SPOKEN_BP = re.compile(r"\b(\d) (\d\d) over (\d+)\b")
_OVER = re.compile(r"\b(\d+) over (\d+)\b")
_SPOKEN_YEAR = re.compile(r"\b(19|20) ([1-9]\d)\b")
_SPELLED_MG = re.compile(r"\b(\d+(?:\.\d+)?)\s*M\.?\s?G\b\.?", re.I)
_SPELLED_LETTERS = re.compile(r"\b[A-Z](?: [A-Z]){1,3}\b(?! [a-z])|\b[A-Z](?: [A-Z]){1,3}(?= scan| test)")


@dataclass(frozen=True)
class Fact:
    kind: str  # drug | dose | number | diagnosis | laterality
    start: int
    end: int
    text: str
    key: str


def normalize_spoken(text: str) -> str:
    """Spoken numbers to digits ("twenty milligrams" -> "20 milligrams", "one forty over ninety" ->
    "140/90"). For the source side only: it changes offsets."""
    from text_to_num import alpha2digit

    try:
        text = alpha2digit(text, "en")
    except Exception:  # the parser is best effort; the raw text is still usable
        pass
    text = _SMALL_WORD.sub(lambda m: _SMALL[m.group(1).lower()], text)
    text = _SPOKEN_YEAR.sub(r"\1\2", text)  # "nineteen ninety nine" -> "19 99" -> "1999"
    text = _SPELLED_MG.sub(r"\1 mg", text)  # "ten M G"
    text = _SPELLED_LETTERS.sub(lambda m: m.group().replace(" ", ""), text)  # "C T scan", "E K G"
    text = _SPOKEN_BP.sub(r"\1\2/\3", text)
    return _OVER.sub(r"\1/\2", text)


def _number_key(value: str) -> str:
    value = value.replace(",", "")
    if "." in value:
        value = value.rstrip("0").rstrip(".")
    whole, dot, fraction = value.partition(".")
    return (whole.lstrip("0") or "0") + (dot + fraction if fraction else "")


@dataclass
class _Lexicon:
    terms: dict[str, str]
    longest: int
    zh_terms: dict[str, str]
    zh: re.Pattern | None


@lru_cache(maxsize=1)
def _diagnoses() -> _Lexicon:
    data = yaml.safe_load((DATA / "diagnoses.yaml").read_text(encoding="utf-8"))
    terms, zh = {}, {}
    for entry in data["conditions"]:
        for term in entry.get("terms", []):
            terms[" ".join(w.lower() for w in _WORD.findall(term))] = entry["id"]
        for term in entry.get("zh", []) or []:
            zh[term] = entry["id"]
    pattern = re.compile("|".join(sorted(map(re.escape, zh), key=len, reverse=True))) if zh else None
    return _Lexicon(terms, max(len(k.split()) for k in terms), zh, pattern)


def extract_facts(text: str, graph=None) -> list[Fact]:
    """Facts in ``text`` with offsets into it. Without a knowledge graph, drugs are not found."""
    facts: list[Fact] = []
    taken: list[tuple[int, int]] = []

    def add(kind: str, start: int, end: int, key: str) -> None:
        facts.append(Fact(kind, start, end, text[start:end], key))
        taken.append((start, end))

    if graph is not None:
        from copilot.text.medications import find_names

        for start, end, generic in find_names(text, graph):
            add("drug", start, end, f"drug:{generic.lower()}")
    lexicon = _diagnoses()
    for start, end, condition in longest_matches(text, lexicon.terms, lexicon.longest):
        if not _overlaps(start, end, taken):
            add("diagnosis", start, end, f"diagnosis:{condition}")
    if lexicon.zh is not None and not text.isascii():
        for match in lexicon.zh.finditer(text):
            if not _overlaps(match.start(), match.end(), taken):
                add("diagnosis", match.start(), match.end(), f"diagnosis:{lexicon.zh_terms[match.group()]}")
    for match in _DOSE.finditer(text):
        unit = _UNITS[match.group(2).lower()]
        add("dose", match.start(), match.end(), f"dose:{_number_key(match.group(1))} {unit}")
    for pattern in (_LATERALITY, _LATERALITY_ZH):
        for match in pattern.finditer(text):
            side = _LATERAL_WORDS[match.group(1).lower()]
            part = _stem(match.group(2))
            add("laterality", match.start(), match.end(), f"laterality:{side}:{part}")
    enumerations = {m.end() - 2 for m in _ENUMERATION.finditer(text)}
    for match in _NUMBER.finditer(text):
        start, end = match.span()
        if _overlaps(start, end, taken) or any(start <= e <= end for e in enumerations):
            continue
        key = _number_key(match.group(1)) + (f"/{_number_key(match.group(2))}" if match.group(2) else "")
        facts.append(Fact("number", start, end, text[start:end], f"number:{key}"))
    facts.sort(key=lambda f: (f.start, f.end))
    return facts


def _stem(word: str) -> str:
    word = word.lower()
    return word[:-1] if word.endswith("s") and len(word) > 3 and not word.endswith("ss") else word


def _overlaps(start: int, end: int, spans: list[tuple[int, int]]) -> bool:
    return any(start < e and s < end for s, e in spans)


# ----------------------------------------------------------------------------------------- grounding

_CLAUSE_END = re.compile(r"[.;\n。；!?！？]|,\s+(?:and\s+)?(?=[a-z]+\s+(?:was|is|has|will)\b)")
_DURATION = re.compile(r"(?:\b(?:for|x|×|over|lasting|past|last|in)\s+(?:the\s+)?(?:next\s+|past\s+|last\s+)?|(?:共|连续|持续|疗程)\s*)"
                       r"(\d+(?:\.\d+)?)\s*(days?|weeks?|wks?|months?|years?|天|日|周|星期|个月|月|年)(?![A-Za-z])", re.I)
_DAYS = {"day": 1, "days": 1, "天": 1, "日": 1, "week": 7, "weeks": 7, "wk": 7, "wks": 7, "周": 7, "星期": 7,
         "month": 30, "months": 30, "个月": 30, "月": 30, "year": 365, "years": 365, "年": 365}
_MED_DOSE = re.compile(rf"(?<![A-Za-z0-9_.])({_NUM})\s*(mg|mcg|µg|ug|g|grams?|milligrams?|micrograms?|units?|iu|u|meq|ml|"
                       r"毫克|克|微克|毫升|单位|U)(?![A-Za-z])", re.I)
_ANY_DURATION = re.compile(r"(?<![\d.])(\d+(?:\.\d+)?)[\s-]*(days?|weeks?|wks?|months?|years?|天|周|星期|个月|年)(?![A-Za-z])"
                           r"(?![\s-]*old)", re.I)
_SMALL_BARE = 12  # a bare integer up to this, with no unit, is a count or a list number, not a claim


@dataclass
class MedicationFact:
    generic: str
    start: int
    end: int
    text: str
    dose: tuple[int, int, str] | None = None  # (start, end, "20 mg")
    frequency: tuple[int, int, float] | None = None  # (start, end, doses per day)
    duration: tuple[int, int, float] | None = None  # (start, end, days)
    polarity: str = "affirmed"


@lru_cache(maxsize=1)
def _vocabulary() -> dict:
    data = yaml.safe_load((DATA / "grounding.yaml").read_text(encoding="utf-8"))
    procedures, zh_procedures = {}, {}
    for pid, terms in data["procedures"].items():
        for term in terms:
            term = str(term)
            if term.isascii():
                procedures[" ".join(w.lower() for w in _WORD.findall(term))] = pid
            else:
                zh_procedures[term] = pid
    sites = "|".join(sorted(map(re.escape, data["body_sites"]), key=len, reverse=True))
    fillers = "|".join(sorted((re.escape(f) for f in data["side_fillers"] if f != "-"), key=len, reverse=True))
    return {
        "procedures": procedures, "procedures_longest": max(len(k.split()) for k in procedures),
        "zh_procedures": re.compile("|".join(sorted(map(re.escape, zh_procedures), key=len, reverse=True))),
        "zh_procedure_ids": zh_procedures,
        "side": re.compile(rf"\b(left|right|bilateral|both)\b(?:[\s-]+(?:{fillers})){{0,3}}[\s-]+({sites})\b", re.I),
        "side_zh": re.compile(r"(左|右|双)侧?(" + "|".join(sorted(map(re.escape, data["body_sites_zh"]), key=len, reverse=True))
                              + ")"),
        "suffixes": tuple(data["drug_suffixes"]),
        "not_drugs": frozenset(data["not_drugs"]),
        "self_talk": [re.compile(p, re.I) for p in data["self_talk"]],
        "dangling": frozenset(str(w) for w in data["dangling"]),
        "loose": {str(k): frozenset(map(str, v)) for k, v in (data.get("loose_equivalents") or {}).items()},
    }


def _days(match: re.Match) -> float:
    return float(match.group(1)) * _DAYS[match.group(2).lower()]


def _dose_key(amount: str, unit: str) -> str:
    return f"{_number_key(amount)} {_UNITS.get(unit.lower(), _UNITS.get(unit, unit.lower()))}"


def _in_mg(key: str) -> float | None:
    amount, unit = key.split(" ", 1)
    factor = {"mg": 1.0, "g": 1000.0, "mcg": 0.001}.get(unit)
    return float(amount) * factor if factor else None


def _same_dose(a: str, b: str) -> bool:
    if a == b:
        return True
    ma, mb = _in_mg(a), _in_mg(b)
    return ma is not None and mb is not None and abs(ma - mb) < 1e-9


def medication_facts(text: str, graph) -> list[MedicationFact]:
    """Drug mentions with the dose, frequency and duration written with them: each attribute is looked
    for after the name, up to the end of its clause or the next drug name (a neighbour's dose is never
    taken), else just before the name in the same clause ("20 mg of lisinopril")."""
    from copilot.text.medications import find_frequency, find_names
    from copilot.text.negation import polarity

    names = sorted(find_names(text, graph))
    found = []
    for i, (start, end, generic) in enumerate(names):
        limit = names[i + 1][0] if i + 1 < len(names) else len(text)
        stop = _CLAUSE_END.search(text, end)
        # a dose can follow its name across a comma or colon ("lisinopril, 20 mg"), not across a clause
        right = min(limit, stop.start() if stop else len(text), end + 90)
        window = text[end:right]
        fact = MedicationFact(generic.lower(), start, end, text[start:end], polarity=polarity(text, start, end))
        dose = _MED_DOSE.search(window)
        if dose is None:
            before_start = max((names[i - 1][1] if i else 0), max(text.rfind(c, 0, start) for c in ".;\n。；,，") + 1)
            before = list(_MED_DOSE.finditer(text[before_start:start]))
            if before and re.fullmatch(r"\s*(?:of\s+)?", text[before_start + before[-1].end():start], re.I):
                b = before[-1]
                fact.dose = (before_start + b.start(), before_start + b.end(), _dose_key(b.group(1), b.group(2)))
        else:
            fact.dose = (end + dose.start(), end + dose.end(), _dose_key(dose.group(1), dose.group(2)))
        frequency = find_frequency(window)
        if frequency:
            fact.frequency = (end + frequency[0], end + frequency[1], frequency[2])
        duration = _DURATION.search(window)
        if duration:
            days = float(duration.group(1)) * _DAYS[duration.group(2).lower()]
            fact.duration = (end + duration.start(), end + duration.end(), days)
        found.append(fact)
    return found


@dataclass(frozen=True)
class Finding:
    kind: str  # finding | procedure
    id: str
    start: int
    end: int
    text: str
    polarity: str


def findings(text: str) -> list[Finding]:
    """Diagnoses, symptoms (diagnoses.yaml) and procedures (grounding.yaml) with their polarity."""
    from copilot.text.negation import polarity

    vocab, lexicon = _vocabulary(), _diagnoses()
    spans = [("finding", s, e, i) for s, e, i in longest_matches(text, lexicon.terms, lexicon.longest)]
    spans += [("procedure", s, e, i) for s, e, i in longest_matches(text, vocab["procedures"], vocab["procedures_longest"])]
    if not text.isascii():
        if lexicon.zh is not None:
            spans += [("finding", m.start(), m.end(), lexicon.zh_terms[m.group()]) for m in lexicon.zh.finditer(text)]
        spans += [("procedure", m.start(), m.end(), vocab["zh_procedure_ids"][m.group()])
                  for m in vocab["zh_procedures"].finditer(text)]
    found: list[Finding] = []
    for kind, start, end, ident in sorted(spans, key=lambda x: (x[1], -(x[2] - x[1]))):
        if any(start < f.end and f.start < end for f in found):
            continue
        found.append(Finding(kind, ident, start, end, text[start:end], polarity(text, start, end)))
    return found


def sides(text: str) -> list[tuple[int, int, str, str]]:
    """(start, end, side, site) for each side written with a body site; "left behind" is not one."""
    vocab = _vocabulary()
    found = []
    for match in vocab["side"].finditer(text):
        found.append((match.start(), match.end(), match.group(1).lower(), _stem(match.group(2))))
    for match in vocab["side_zh"].finditer(text):
        found.append((match.start(), match.end(), _LATERAL_WORDS[match.group(1)], match.group(2)))
    return found


class SourceFacts:
    """What the encounter (transcript and record) states, read once, for checking drafts against it."""

    def __init__(self, texts: list[str], graph=None):
        self.graph = graph
        text = normalize_spoken("\n\n".join(t for t in texts if t))
        self.text = text
        self.words = {w.lower() for w in re.findall(r"[^\W_]+", text)}
        self.drugs: dict[str, list[MedicationFact]] = {}
        if graph is not None:
            for fact in medication_facts(text, graph):
                self.drugs.setdefault(fact.generic, []).append(fact)
        self.doses = {_dose_key(m.group(1), m.group(2)) for m in _MED_DOSE.finditer(text)}
        self.numbers: set[str] = set()
        for fact in extract_facts(text):
            if fact.kind in ("number", "dose"):
                value = fact.key.split(":", 1)[1].split()[0]
                self.numbers.add(value)
                self.numbers.update(value.split("/"))
        from copilot.text.medications import find_frequency

        self.frequencies: set[float] = set()
        rest = 0
        while (hit := find_frequency(text[rest:])) is not None:
            self.frequencies.add(hit[2])
            rest += hit[1]
        self.durations = {float(m.group(1)) * _DAYS[m.group(2).lower()] for m in _DURATION.finditer(text)}
        self.durations |= {_days(m) for m in _ANY_DURATION.finditer(text)}
        self.durations |= {_DAYS[m.group(1).lower()] for m in re.finditer(r"\ban? (day|week|month|year)\b", text, re.I)}
        self.findings: dict[str, set[str]] = {}
        self.finding_text: dict[str, str] = {}
        for finding in findings(text):
            self.findings.setdefault(finding.id, set()).add(finding.polarity)
            self.finding_text.setdefault(finding.id, finding.text)
        self.sides: dict[str, set[str]] = {}
        for _, _, side, site in sides(text):
            self.sides.setdefault(site, set()).add(side)
        from copilot.text.identifiers import find_identifiers

        self.identifiers = {(i.kind, i.key) for i in find_identifiers(text)}
        self.digits = re.sub(r"\D", "", text)


def _mark(start: int, end: int, text: str, kind: str, reason: str) -> dict:
    return {"start": start, "end": end, "text": text[start:end], "kind": kind, "reason": reason}


def _frequency_words(per_day: float) -> str:
    return {1: "once daily", 2: "twice daily", 3: "three times daily", 4: "four times daily", 0.5: "every other day"}.get(
        per_day, f"{per_day:g} times a day")


def _medication_marks(draft: str, source: SourceFacts) -> tuple[list[dict], list[tuple[int, int]]]:
    marks, spans = [], []
    for med in medication_facts(draft, source.graph):
        spans.append((med.start, med.end))
        stated = source.drugs.get(med.generic, [])
        if not stated:
            marks.append(_mark(med.start, med.end, draft, "medication", f"{med.text} is not mentioned in the encounter"))
            continue
        if med.polarity == "affirmed" and all(s.polarity == "negated" for s in stated):
            marks.append(_mark(med.start, med.end, draft, "medication", f"the encounter says the patient is not on {med.text}"))
        if med.dose:
            spans.append(med.dose[:2])
            linked = [s.dose[2] for s in stated if s.dose]
            if linked and not any(_same_dose(med.dose[2], d) for d in linked):
                said = ", ".join(sorted(set(linked)))
                marks.append(_mark(*med.dose[:2], draft, "dose", f"transcript says {said} of {med.text}"))
            elif not linked and not any(_same_dose(med.dose[2], d) for d in source.doses) \
                    and med.dose[2].split()[0] not in source.numbers:
                marks.append(_mark(*med.dose[:2], draft, "dose", f"the dose {med.dose[2]} is not stated in the encounter"))
        if med.frequency:
            spans.append(med.frequency[:2])
            linked = {s.frequency[2] for s in stated if s.frequency}
            if linked and med.frequency[2] not in linked:
                said = " or ".join(_frequency_words(f) for f in sorted(linked))
                marks.append(_mark(*med.frequency[:2], draft, "frequency", f"transcript says {said} for {med.text}"))
            elif not linked and med.frequency[2] not in source.frequencies:
                marks.append(_mark(*med.frequency[:2], draft, "frequency", "this frequency is not stated in the encounter"))
        if med.duration:
            spans.append(med.duration[:2])
            linked = {s.duration[2] for s in stated if s.duration}
            if linked and med.duration[2] not in linked:
                said = " or ".join(f"{d:g} days" for d in sorted(linked))
                marks.append(_mark(*med.duration[:2], draft, "duration", f"transcript says {said} of {med.text}"))
            elif not linked and med.duration[2] not in source.durations:
                marks.append(_mark(*med.duration[:2], draft, "duration", "this duration is not stated in the encounter"))
    return marks, spans


def _unknown_drug_marks(draft: str, source: SourceFacts, taken: list[tuple[int, int]]) -> list[dict]:
    vocab = _vocabulary()
    known = source.graph.drug_names if source.graph is not None else {}
    marks = []
    for match in re.finditer(r"\b[A-Za-z][a-z]{5,}\b", draft):
        word = match.group().lower()
        if (word.endswith(vocab["suffixes"]) and word not in vocab["not_drugs"] and word not in source.words
                and word not in known and match.group() not in known and not _overlaps(*match.span(), taken)):
            marks.append(_mark(*match.span(), draft, "medication",
                               f"{match.group()} is not a drug in the knowledge base and not in the encounter"))
    return marks


def _loosely_stated(term: str, source: SourceFacts) -> bool:
    """Every word of ``term`` (or a plain-language equivalent) is in the encounter: "elbow pain" from
    "my elbow hurts", "膝痛" from "左膝疼痛"."""
    loose = _vocabulary()["loose"]
    if term.isascii():
        words = [_stem(w) for w in _WORD.findall(term.lower()) if w.lower() not in ("of", "the", "in", "on", "and")]
        stems = {_stem(w) for w in source.words}
        return bool(words) and all(w in stems or any(e in source.words for e in loose.get(w, ())) for w in words)
    return all(ch in source.text or any(e in source.text for e in loose.get(ch, ())) for ch in term)


def _finding_marks(draft: str, source: SourceFacts, taken) -> list[dict]:
    marks = []
    for finding in findings(draft):
        taken.append((finding.start, finding.end))
        stated = source.findings.get(finding.id)
        noun = "procedure" if finding.kind == "procedure" else "finding"
        if not stated and not _loosely_stated(finding.text, source):
            marks.append(_mark(finding.start, finding.end, draft, finding.kind,
                               f"the {noun} '{finding.text}' is not in the encounter"))
            continue
        answered = (stated or set()) - {"asked"}  # a question counts only when nothing else is said
        if not stated or not answered or finding.polarity in answered:
            continue
        stated = answered
        said = source.finding_text.get(finding.id, finding.text)
        if finding.polarity == "affirmed" and "negated" in stated:
            reason = f"transcript says no {said}"
        elif finding.polarity == "affirmed" and "family" in stated:
            reason = f"transcript gives {said} in the family, not the patient"
        elif finding.polarity == "negated":
            reason = f"transcript says {said} is present"
        elif finding.polarity == "family":
            reason = f"transcript does not give {said} as family history"
        else:
            continue
        marks.append(_mark(finding.start, finding.end, draft, finding.kind, reason))
    return marks


def _side_marks(draft: str, source: SourceFacts, taken) -> list[dict]:
    marks = []
    for start, end, side, site in sides(draft):
        taken.append((start, end))
        stated = source.sides.get(site)
        if stated and side not in stated:
            marks.append(_mark(start, end, draft, "side", f"transcript gives the {site} as {' and '.join(sorted(stated))}, not {side}"))
        elif not stated and side == "bilateral" and (site + "s" in source.words or site + "es" in source.words):
            continue  # "both knees" from "these old knees"
        elif not stated and side not in source.words and {"left": "左", "right": "右", "bilateral": "双"}[side] not in source.text:
            marks.append(_mark(start, end, draft, "side", f"the encounter does not say which side ({side} {site})"))
    return marks


def _identifier_marks(draft: str, source: SourceFacts, taken) -> list[dict]:
    from copilot.text.identifiers import find_identifiers

    marks = []
    for ident in find_identifiers(draft):
        taken.append((ident.start, ident.end))
        if (ident.kind, ident.key) in source.identifiers:
            continue
        if ident.kind == "name" and (all(w in source.words for w in ident.key.split()) or ident.key in source.text):
            continue
        if ident.kind == "phone" and ident.key in source.digits:
            continue
        if ident.kind == "address" and (ident.key in source.text.lower()
                                        or all(w in source.words for w in ident.key.split())):
            continue
        what = {"name": "name", "address": "address", "phone": "phone number", "date": "date"}[ident.kind]
        marks.append(_mark(ident.start, ident.end, draft, ident.kind, f"{what} not in the encounter"))
    return marks


def _self_talk_marks(draft: str) -> list[dict]:
    from copilot.text.sections import sentences

    marks = []
    for start, end, sentence in sentences(draft):
        if any(p.search(sentence) for p in _vocabulary()["self_talk"]):
            lead = len(sentence) - len(sentence.lstrip())
            marks.append(_mark(start + lead, end, draft, "self_talk",
                               "the model is talking about itself or its instructions, not the patient"))
    return marks


def _truncation_mark(draft: str, truncated: bool | None) -> list[dict]:
    body = draft.rstrip()
    if not body:
        return []
    last = max(body.rfind(c) for c in ".!?。！？\n") + 1
    if truncated and last == len(body):  # told it was cut: the last sentence is the incomplete one
        last = max(body.rfind(c, 0, len(body) - 1) for c in ".!?。！？\n") + 1
    tail = body[last:]
    words = re.findall(r"[\w']+|[，、和及与]", tail.lower())
    cut = truncated if truncated is not None else bool(words) and (words[-1] in _vocabulary()["dangling"]
                                                                     or body[-1] in ",，、(:")
    if not cut or not tail.strip():
        return []
    lead = len(tail) - len(tail.lstrip())
    return [_mark(last + lead, len(body), draft, "truncated", "the text stops mid-sentence (cut off at the length limit)")]


def unsupported(draft: str, source: SourceFacts, graph=None, truncated: bool | None = None) -> list[dict]:
    """Spans of the draft the encounter does not support: [{start, end, text, kind, reason}], in order.
    ``truncated``: whether generation stopped at the token limit (None: judge from the text)."""
    if graph is not None and source.graph is None:
        source.graph = graph
    taken: list[tuple[int, int]] = []
    marks = _self_talk_marks(draft)
    marks += _identifier_marks(draft, source, taken)
    med_marks, med_spans = _medication_marks(draft, source) if source.graph is not None else ([], [])
    taken += med_spans
    marks += med_marks
    marks += _unknown_drug_marks(draft, source, taken)
    marks += _finding_marks(draft, source, taken)
    marks += _side_marks(draft, source, taken)
    for match in _MED_DOSE.finditer(draft):  # doses not written with a drug
        if _overlaps(*match.span(), taken):
            continue
        taken.append(match.span())
        key = _dose_key(match.group(1), match.group(2))
        if not any(_same_dose(key, d) for d in source.doses) and key.split()[0] not in source.numbers:
            marks.append(_mark(*match.span(), draft, "dose", f"the dose {match.group().strip()} is not stated in the encounter"))
    for match in _ANY_DURATION.finditer(draft):  # "three days" -> "3 weeks", for symptoms as for drugs
        if _overlaps(*match.span(), taken):
            continue
        taken.append(match.span())
        if _days(match) not in source.durations:
            same_number = [f"{d / _DAYS[u]:g} {u}s" for d in sorted(source.durations) for u in ("day", "week", "month", "year")
                           if abs(d / _DAYS[u] - float(match.group(1))) < 1e-9 and _DAYS[u] != _DAYS[match.group(2).lower()]]
            reason = (f"transcript says {same_number[0]}" if same_number
                      else f"the duration {match.group()} is not stated in the encounter")
            marks.append(_mark(*match.span(), draft, "duration", reason))
    enumerations = {m.end() - 2 for m in _ENUMERATION.finditer(draft)}
    for match in _NUMBER.finditer(draft):
        start, end = match.span()
        if _overlaps(start, end, taken) or any(start <= e <= end for e in enumerations):
            continue
        value = _number_key(match.group(1)) + (f"/{_number_key(match.group(2))}" if match.group(2) else "")
        if "/" not in value and "." not in value and int(value) <= _SMALL_BARE:
            continue  # a bare "1" is a count or a list number, not a claim
        if all(part in source.numbers for part in value.split("/")):
            continue
        marks.append(_mark(start, end, draft, "number", f"the number {match.group()} is not in the encounter"))
    marks += _truncation_mark(draft, truncated)
    marks.sort(key=lambda m: (m["start"], m["end"]))
    kept: list[dict] = []
    for mark in marks:  # a self-talk sentence or a wrong name already covers what is inside it
        if kept and mark["start"] < kept[-1]["end"]:
            if mark["end"] > kept[-1]["end"] and mark["kind"] in ("self_talk", "truncated"):
                kept[-1] = mark
            continue
        kept.append(mark)
    return kept
