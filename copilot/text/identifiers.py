"""People's names, street addresses, phone numbers and dates in clinical text.

For the grounding check: a draft that gives a name, a street, a phone number or a date the encounter
never gave has invented it. Precise patterns only (a title or cue before a name, a given name before a
capitalised surname, a house number before a street suffix), so a mark on a draft is rarely wrong; the
exhaustive de-identification scrubber lives in finetune.deid, which copilot may not import.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path

import yaml

DATA = Path(__file__).parent / "data"
NAME, ADDRESS, PHONE, DATE = "name", "address", "phone", "date"


@dataclass(frozen=True)
class Identifier:
    kind: str  # name | address | phone | date
    start: int
    end: int
    text: str
    key: str  # normalised: lower-case name words, digits of a phone, month-day of a date


@dataclass(frozen=True)
class _Patterns:
    name_after_title: re.Pattern
    name_after_cue: re.Pattern
    given_surname: re.Pattern
    given: frozenset[str]
    not_names: frozenset[str]
    address: re.Pattern
    zh_address: re.Pattern
    zh_name: re.Pattern
    phone: re.Pattern
    dates: tuple[re.Pattern, ...]
    months: dict[str, int]


_TOKEN = r"(?:Mc|Mac|O'|D')?[A-Z][a-z]+(?:-[A-Z][a-z]+)?"


@lru_cache(maxsize=1)
def _patterns() -> _Patterns:
    data = yaml.safe_load((DATA / "identifiers.yaml").read_text(encoding="utf-8"))
    given = frozenset(line.split("\t")[0].strip().lower()
                      for line in (DATA / "given_names.txt").read_text(encoding="utf-8").splitlines()
                      if line.strip() and not line.startswith("#"))
    titles = "|".join(map(re.escape, data["titles"]))
    cues = "|".join(re.escape(c).replace(r"\ ", r"\s+") for c in data["name_cues"])
    suffixes = "|".join(map(re.escape, sorted(data["street_suffixes"], key=len, reverse=True)))
    month_names = sorted(data["months"], key=len, reverse=True)
    months = {m: i + 1 for i, m in enumerate(data["months"][:12])}
    months.update({m: months[next(full for full in data["months"][:12] if full.startswith(m[:3]))]
                   for m in data["months"][12:]})
    month = "|".join(month_names)
    return _Patterns(
        name_after_title=re.compile(rf"\b(?:{titles})\.?\s+({_TOKEN}(?:\s+{_TOKEN})?)"),
        name_after_cue=re.compile(rf"(?i:\b(?:{cues}))\s+({_TOKEN}(?:\s+{_TOKEN})?)"),
        given_surname=re.compile(rf"\b(?=({_TOKEN})\s+({_TOKEN})\b)"),
        given=given,
        not_names=frozenset(w.lower() for w in data["not_names"] + data["titles"]),
        address=re.compile(rf"\b\d{{1,6}}\s+(?:[A-Z][a-z]+\s+){{1,3}}(?:{suffixes})\b\.?"),
        zh_address=re.compile(data["zh_address"]),
        zh_name=re.compile(rf"(?:{'|'.join(data['zh_name_cues'])})[:：\s]*([\u4e00-\u9fff]{{2,3}})"),
        phone=re.compile(r"(?<![\d-])(?:\+?\d{1,3}[\s.-]?)?(?:\(\d{3}\)\s?|\d{3}[\s.-])\d{3}[\s.-]\d{4}(?!\d)|(?<!\d)1[3-9]\d{9}(?!\d)"),
        dates=(re.compile(rf"(?i)\b({month})\.?\s+(\d{{1,2}})(?:st|nd|rd|th)?(?:,?\s+(\d{{4}}))?\b"),
               re.compile(rf"(?i)\b(\d{{1,2}})(?:st|nd|rd|th)?\s+(?:of\s+)?({month})\b\.?(?:,?\s+(\d{{4}}))?"),
               re.compile(r"(?<![\d/])(\d{1,2})/(\d{1,2})/(\d{2,4})(?![\d/])"),
               re.compile(r"(?<!\d)(\d{4})-(\d{1,2})-(\d{1,2})(?!\d)"),
               re.compile(r"(?:(\d{4})年)?(\d{1,2})月(\d{1,2})[日号]")),
        months=months)


def find_identifiers(text: str) -> list[Identifier]:
    """Names, addresses, phones and dates in ``text``, not overlapping, in order."""
    p = _patterns()
    found: list[Identifier] = []

    def add(kind: str, start: int, end: int, key: str) -> None:
        if not any(start < f.end and f.start < end for f in found):
            found.append(Identifier(kind, start, end, text[start:end], key))

    for match in p.phone.finditer(text):
        add(PHONE, match.start(), match.end(), re.sub(r"\D", "", match.group())[-10:])
    for match in p.address.finditer(text):
        add(ADDRESS, match.start(), match.end(), " ".join(match.group().lower().rstrip(".").split()[:2]))
    for match in p.zh_address.finditer(text):
        street = re.search(r"[\u4e00-\u9fff]{1,8}(?:路|街|巷|大道)\d*号?", match.group())
        add(ADDRESS, match.start(), match.end(), street.group() if street else match.group())
    for pattern in p.dates:
        for match in pattern.finditer(text):
            key = _date_key(match, p.months)
            if key and not re.match(r"(?:may|mar)\b", match.group()):  # "you may 2", "mar 5": words, not dates
                add(DATE, match.start(), match.end(), key)
    for pattern in (p.name_after_title, p.name_after_cue):
        for match in pattern.finditer(text):
            words = [w for w in match.group(1).split() if w.lower() not in p.not_names]
            if words and match.group(1).split()[0].lower() not in p.not_names:
                start = match.start(1)
                end = start + len(" ".join(match.group(1).split()[:len(words)]))
                add(NAME, start, end, " ".join(w.lower() for w in words))
    for match in p.given_surname.finditer(text):
        first, last = match.group(1), match.group(2)
        if (first.lower() in p.given and first.lower() not in p.not_names and last.lower() not in p.not_names
                and not _sentence_start_pair(text, match.start(), last, p)):
            add(NAME, match.start(1), match.end(2), f"{first.lower()} {last.lower()}")
    for match in p.zh_name.finditer(text):
        add(NAME, match.start(1), match.end(1), match.group(1))
    return sorted(found, key=lambda f: f.start)


def _sentence_start_pair(text: str, start: int, last: str, p: _Patterns) -> bool:
    """"Will Continue" at a sentence start is not a name; a surname must not be a given name used as a word."""
    return last.lower() in p.given and last.lower() in p.not_names


def _date_key(match: re.Match, months: dict[str, int]) -> str | None:
    groups = match.groups()
    try:
        if groups[0] and groups[0].isalpha():  # "March 5"
            month, day = months[groups[0].lower().rstrip(".")], int(groups[1])
        elif len(groups) == 3 and groups[1] and groups[1].isalpha():  # "5 March"
            month, day = months[groups[1].lower().rstrip(".")], int(groups[0])
        elif "/" in match.group():
            month, day = int(groups[0]), int(groups[1])
        elif "-" in match.group():
            month, day = int(groups[1]), int(groups[2])
        else:  # 2024年3月5日
            month, day = int(groups[1]), int(groups[2])
    except (KeyError, ValueError, TypeError):
        return None
    return f"{month:02d}-{day:02d}" if 1 <= month <= 12 and 1 <= day <= 31 else None
