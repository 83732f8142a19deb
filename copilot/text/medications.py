"""Find the drugs a record gives: its structured medication list and mentions in the notes.

Names come from the knowledge graph (generic, brand, synonym, Chinese), so a drug the
knowledge base does not know is not guessed at. A mention in an allergy list, or one
that is stopped, held or denied, is not a prescription and is left out.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from functools import lru_cache

from copilot.text.lookup import WORD as _WORD
from copilot.text.lookup import longest_matches
from copilot.text.negation import negated
from copilot.records.model import Record
from knowledge.graph import KnowledgeGraph
from knowledge.schema import Drug

_DOSE = re.compile(r"(?<![A-Za-z0-9_.])(\d+(?:,\d{3})*(?:\.\d+)?|\.\d+)\s*(mg|mcg|µg|ug|g|grams?|units?|u|iu|meq|ml)(?![A-Za-z])",
                   re.I)
_FREQUENCIES = [
    (r"\bq\.?\s?4\s?h(?:ours?)?\b|every 4 hours", 6), (r"\bq\.?\s?3\s?h|every 3 hours", 8), (r"\bq\.?\s?2\s?h|every 2 hours", 12),
    (r"\bq\.?\s?6\s?h|every 6 hours|\bq\.?i\.?d\.?\b|four times (?:a |per )?day|four times daily", 4),
    (r"\bq\.?\s?8\s?h|every 8 hours|\bt\.?i\.?d\.?\b|three times (?:a |per )?day|three times daily", 3),
    (r"\bq\.?\s?12\s?h|every 12 hours|\bb\.?i\.?d\.?\b|twice (?:a |per )?day|twice daily|two times (?:a |per )?day", 2),
    (r"\bq\.?o\.?d\.?\b|every other day", 0.5),
    (r"\bweekly\b|once (?:a |per )?week", 1 / 7),
    (r"\bq\.?d\.?\b|\bdaily\b|once (?:a |per )?day|once daily|every day|\bq\.?am\b|\bq\.?hs\b|at bedtime|nightly|every morning|every night", 1),
]
_FREQUENCY = [(re.compile(p, re.I), n) for p, n in _FREQUENCIES]
_NOT_GIVEN = re.compile(r"allerg|intoleran|\bstop(?:ped)?\b|discontinu|\bd/c\b|\bhold\b|\bheld\b|\bavoid|instead of|"
                        r"\bswitch|\bchang(?:e|ed|ing)\b|\bwean|\btaper(?:ed)? off|no longer|previously|in the past|"
                        r"\breplac(?:e|es|ed|ing)\b|in place of|过敏|停用|停药|替换|改为|换用", re.I)
# after the name: "有青霉素过敏史" (an allergy history), "penicillin allergy", "omeprazole was replaced"
_NOT_GIVEN_AFTER = re.compile(r"\s*(?:类|类药物|药物)?\s*(?:过敏|allerg|intoleran|(?:was|is|were)\s+(?:stopped|replaced|"
                              r"discontinued|held|switched))", re.I)
# a Chinese dosage form between the name and its dose: "阿莫西林胶囊2g", "硝苯地平缓释片30mg"
_FORM_ZH = re.compile(r"(?:缓释|控释|肠溶|分散|口腔崩解)?(?:胶囊|片|颗粒|注射液|注射剂|针|滴丸|口服液|混悬液|糖浆|栓|贴|粉针|干混悬剂)")
_TO_MG = {"mg": 1.0, "g": 1000.0, "gram": 1000.0, "grams": 1000.0, "mcg": 0.001, "µg": 0.001, "ug": 0.001}


@dataclass
class Mention:
    drug: Drug
    document_id: str | None  # None: the structured medication list
    start: int | None
    end: int | None
    text: str
    dose: float | None = None
    unit: str | None = None
    per_day: float | None = None

    @property
    def daily_amount(self) -> float | None:
        """Dose x frequency (a single dose when the frequency is unknown: a lower bound)."""
        if self.dose is None:
            return None
        return self.dose * (self.per_day if self.per_day is not None else 1)


_ZH_COUNT = {"一": 1, "二": 2, "两": 2, "三": 3, "四": 4, "五": 5, "六": 6}
_COUNT_PER_DAY = re.compile(r"(\d+|one|two|three|four|five|six)\s*(?:x|times)\s*(?:a|per|/|each|every)\s*day", re.I)
_EVERY_HOURS = re.compile(r"every\s+(\d+)\s*hours?|\bq\s?(\d+)\s?h\b", re.I)
_ZH_PER_DAY = re.compile(r"(?:每日|每天|一日|一天|日)\s*([一二两三四五六\d])\s*次")
_ZH_ONCE = re.compile(r"每晚|睡前|每早|晨起")
_WORD_COUNT = {"one": 1, "two": 2, "three": 3, "four": 4, "five": 5, "six": 6}


def find_frequency(text: str | None) -> tuple[int, int, float] | None:
    """(start, end, doses per day) of the first frequency expression in ``text``: q6h, BID, twice daily,
    3 times a day, 每日3次, 一天两次."""
    if not text:
        return None
    hits = [(m.start(), m.end(), per_day) for pattern, per_day in _FREQUENCY for m in [pattern.search(text)] if m]
    for match in _COUNT_PER_DAY.finditer(text):
        count = match.group(1).lower()
        hits.append((match.start(), match.end(), float(_WORD_COUNT.get(count) or count)))
    for match in _EVERY_HOURS.finditer(text):
        hours = int(match.group(1) or match.group(2))
        if hours:
            hits.append((match.start(), match.end(), 24 / hours))
    for match in _ZH_PER_DAY.finditer(text):
        count = match.group(1)
        hits.append((match.start(), match.end(), float(_ZH_COUNT.get(count) or count)))
    for match in _ZH_ONCE.finditer(text):
        hits.append((match.start(), match.end(), 1.0))
    if not hits:
        return None
    start = min(h[0] for h in hits)
    return max((h for h in hits if h[0] == start), key=lambda h: h[1] - h[0])


def frequency_per_day(text: str | None) -> float | None:
    """The first frequency expression in ``text`` (as given after a dose) in doses per day."""
    found = find_frequency(text)
    return found[2] if found else None


def convert(amount: float, unit: str, target: str) -> float | None:
    unit, target = unit.lower(), target.lower()
    if unit in _TO_MG and target in _TO_MG:
        return amount * _TO_MG[unit] / _TO_MG[target]
    same = {"u": "units", "unit": "units", "iu": "units", "meq": "meq", "ml": "ml", "units": "units"}
    return amount if same.get(unit, unit) == same.get(target, target) else None


_TEST_OR_LEVEL = re.compile(r"\s*(?:suppression\s+)?(?:test|tests|level|levels|assay|screen|challenge)\b", re.I)


@dataclass(frozen=True)
class _NameIndex:
    latin: dict  # normalised word sequence -> generic name
    longest: int
    other: re.Pattern | None  # names in other scripts (Chinese), matched as substrings


@lru_cache(maxsize=4)
def _index(graph: KnowledgeGraph) -> _NameIndex:
    latin, other = {}, []
    for name, generic in graph.drug_names.items():
        if name.isascii():
            latin[" ".join(_WORD.findall(name.lower()))] = generic
        else:
            other.append(name)
    pattern = re.compile("|".join(map(re.escape, sorted(other, key=len, reverse=True)))) if other else None
    return _NameIndex(latin, max(len(k.split()) for k in latin), pattern)


def find_names(text: str, graph: KnowledgeGraph):
    """(start, end, generic) for each drug name in the text, longest match first."""
    index = _index(graph)
    yield from longest_matches(text, index.latin, index.longest)
    if index.other is not None and not text.isascii():
        for match in index.other.finditer(text):
            yield match.start(), match.end(), graph.drug_names[match.group()]


def _dose_after(text: str, end: int, limit: int | None = None) -> tuple[float | None, str | None, float | None]:
    """The dose written after a drug name, never past ``limit`` (the next drug name: in "Crestor, metoprolol
    50 mg" the 50 mg is metoprolol's)."""
    line_end = min(x for x in (text.find("\n", end), text.find(". ", end), text.find("。", end), end + 80,
                               limit if limit is not None else -1) if x != -1)
    form = _FORM_ZH.match(text, end)
    window = text[end:line_end]
    if form:
        window = " " * (form.end() - end) + text[form.end():line_end]
    dose = _DOSE.search(window[:50])
    if not dose:
        return None, None, None
    unit = dose.group(2).lower()
    unit = {"u": "units", "iu": "units", "unit": "units", "meq": "mEq", "ml": "mL"}.get(unit, unit)
    return float(dose.group(1).replace(",", "")), unit, frequency_per_day(window[dose.end():dose.end() + 40])


def mentions(record: Record, graph: KnowledgeGraph) -> list[Mention]:
    found: list[Mention] = []
    for index, med in enumerate(record.medications):
        drug = graph.resolve_drug(med.name) or _longest_known(med.name, graph)
        if drug is None:
            continue
        found.append(Mention(drug, None, None, None, f"medications[{index}]: {med.name}"
                             + (f" {med.dose:g} {med.unit or ''}" if med.dose else "") + (f" {med.frequency}" if med.frequency else ""),
                             dose=med.dose, unit=med.unit, per_day=frequency_per_day(med.frequency)))
    for document in record.documents:
        text = document.text
        names = sorted(find_names(text, graph))
        for index, (start, end, generic) in enumerate(names):
            drug = graph.drugs.get(generic)
            if drug is None:
                continue
            line_start = text.rfind("\n", 0, start) + 1
            sentence_start = max(line_start, max(text.rfind(c, 0, start) for c in ".;。") + 1)
            context = text[sentence_start:start]
            header = text[line_start:start].lower()
            if (_NOT_GIVEN.search(context) or "allerg" in header or "过敏" in header or negated(text, start)
                    or _TEST_OR_LEVEL.match(text, end) or _NOT_GIVEN_AFTER.match(text, end)):
                continue
            following = next((s for s, _, _ in names[index + 1:] if s >= end), None)
            dose, unit, per_day = _dose_after(text, end, following)
            found.append(Mention(drug, document.id, start, end, text[start:end], dose, unit, per_day))
    return found


def _longest_known(name: str, graph: KnowledgeGraph) -> Drug | None:
    first = next(find_names(name, graph), None)
    return graph.drugs.get(first[2]) if first else None
