"""Checkable facts in clinical text: drugs, doses, numbers, diagnoses and laterality.

Each fact has a normalised ``key`` so that a draft's facts can be compared with the source's:
"twenty milligrams" in a transcript and "20 mg" in a note share the key ``dose:20 mg``. Used by
the drafting grounding check and by the fine-tuning evaluation (fact coverage).
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
_LATERAL_WORDS = {"left": "left", "right": "right", "bilateral": "bilateral", "左": "left", "右": "right", "双": "bilateral"}
_SMALL = {w: str(i) for i, w in enumerate("zero one two three four five six seven eight nine ten eleven twelve".split())}
_SMALL_WORD = re.compile(r"\b(" + "|".join(_SMALL) + r")\b", re.I)
_SPOKEN_BP = re.compile(r"\b(\d) (\d\d) over (\d+)\b")
_OVER = re.compile(r"\b(\d+) over (\d+)\b")


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


class SourceFacts:
    """What the patient's own material states, for checking a draft against it."""

    def __init__(self, texts: list[str], graph=None):
        self.keys: set[str] = set()
        self.numbers: set[str] = set()
        self.sides: dict[str, set[str]] = {}
        self.doses_by_value: set[str] = set()
        for text in texts:
            for fact in extract_facts(normalize_spoken(text), graph):
                self.keys.add(fact.key)
                if fact.kind == "number":
                    value = fact.key.split(":", 1)[1]
                    self.numbers.add(value)
                    self.numbers.update(value.split("/"))
                elif fact.kind == "dose":
                    value = fact.key.split(":", 1)[1].split()[0]
                    self.numbers.add(value)
                    self.doses_by_value.add(value)
                elif fact.kind == "laterality":
                    _, side, part = fact.key.split(":")
                    self.sides.setdefault(part, set()).add(side)

    def check(self, fact: Fact) -> str | None:
        """None when the source supports the fact, else the reason it does not."""
        if fact.key in self.keys:
            return None
        value = fact.key.split(":", 1)[1]
        if fact.kind == "number":
            if all(part in self.numbers for part in value.split("/")):
                return None
            return f"the number {fact.text} does not appear in the transcript or record"
        if fact.kind == "dose":
            amount, unit = value.split(" ", 1)
            if amount in self.doses_by_value or amount in self.numbers:
                return f"the source states {amount} but not in {unit}" if unit not in ("tablets", "puffs") else None
            return f"the dose {fact.text} is not stated in the transcript or record"
        if fact.kind == "drug":
            return f"{fact.text} is not mentioned in the transcript or record"
        if fact.kind == "diagnosis":
            return f"the diagnosis '{fact.text}' is not stated in the transcript or record"
        if fact.kind == "laterality":
            _, side, part = fact.key.split(":")
            stated = self.sides.get(part)
            if stated:
                return f"the source gives the {part} as {' and '.join(sorted(stated))}, not {side}"
            return f"the source does not say which side ({side} {part})"
        return "not found in the source"


def unsupported(draft: str, source: SourceFacts, graph=None) -> list[dict]:
    """Spans of the draft the source does not support: [{start, end, text, kind, reason}]."""
    found = []
    for fact in extract_facts(draft, graph):
        reason = source.check(fact)
        if reason:
            found.append({"start": fact.start, "end": fact.end, "text": fact.text, "kind": fact.kind, "reason": reason})
    return found
