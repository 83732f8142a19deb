"""Shared reading of clinical text: sections, sentences, negation, language.

Kept deliberately simple and predictable (regular expressions over known vocabularies)
so every finding can be explained by the span it points at.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

_CJK = re.compile(r"[\u3400-\u9fff]")
_SENTENCE = re.compile(r"[^.!?\n。！？；;]+[.!?。！？；;]?", re.UNICODE)
NEGATION_CUES = re.compile(
    r"\b(?:denies|denied|deny|no|not|negative for|without|free of|absence of|never had|rules? out|ruled out)\b|无|否认|未见|未",
    re.IGNORECASE)


def is_chinese(text: str, threshold: float = 0.1) -> bool:
    letters = [c for c in text if c.isalpha()]
    return bool(letters) and sum(1 for c in letters if _CJK.match(c)) / len(letters) >= threshold


@dataclass(frozen=True)
class Section:
    key: str  # normalised header text
    header: str
    start: int  # of the header
    body_start: int
    end: int

    def body(self, text: str) -> str:
        return text[self.body_start:self.end]


def _norm_header(line: str) -> str:
    line = line.strip().strip("#*_ ").strip()
    line = re.sub(r"^\d+[.)]\s*", "", line)
    return line.rstrip(":：").strip().lower()


def split_sections(text: str, known_headers: set[str]) -> list[Section]:
    """Sections by header lines: a known header alone on its line (``CHIEF COMPLAINT``,
    ``Chief Complaint:``, ``## HPI``) or at the start of a line followed by a colon
    (``主诉：胸痛3天``). Any other all-capital line also ends the previous section."""
    known = {h.lower() for h in known_headers}
    starts: list[tuple[int, int, str, str]] = []
    offset = 0
    for line in text.splitlines(keepends=True):
        stripped = line.strip()
        key = _norm_header(line)
        if stripped and key in known:
            starts.append((offset, offset + len(line), key, stripped))
        elif stripped:
            inline = re.match(r"\s*([^:：\n]{1,40})[:：]", line)
            if inline and _norm_header(inline.group(1)) in known:
                starts.append((offset, offset + inline.end(), _norm_header(inline.group(1)), inline.group(1).strip()))
            elif stripped.isupper() and len(stripped) <= 60 and re.fullmatch(r"[A-Z][A-Z /&-]+:?", stripped):
                starts.append((offset, offset + len(line), key, stripped))
        offset += len(line)
    sections = []
    for index, (start, body_start, key, header) in enumerate(starts):
        end = starts[index + 1][0] if index + 1 < len(starts) else len(text)
        sections.append(Section(key, header, start, body_start, end))
    return sections


def sentences(text: str):
    """(start, end, sentence) for each sentence or line fragment."""
    for match in _SENTENCE.finditer(text):
        if match.group().strip():
            yield match.start(), match.end(), match.group()


def negated(text: str, start: int, window: int = 40) -> bool:
    """Whether the mention at ``start`` follows a negation cue in the same sentence."""
    sentence_start = max(text.rfind(ch, 0, start) for ch in ".\n;!?。；")
    before = text[max(sentence_start + 1, start - window):start]
    return bool(NEGATION_CUES.search(before))


WORD = re.compile(r"[A-Za-z0-9]+(?:'[A-Za-z]+)?")


def longest_matches(text: str, terms: dict[str, str], longest: int):
    """(start, end, value) for each longest run of words that is a key of ``terms`` (keys: lower-case
    words joined by one space). Word n-grams looked up in a dictionary: linear in the text,
    whatever the size of the vocabulary (a regular-expression alternation of 1,500 names was
    100x slower)."""
    words = [(m.start(), m.end(), m.group().lower()) for m in WORD.finditer(text)]
    i = 0
    while i < len(words):
        for n in range(min(longest, len(words) - i), 0, -1):
            found = terms.get(" ".join(w for _, _, w in words[i:i + n]))
            if found:
                yield words[i][0], words[i + n - 1][1], found
                i += n
                break
        else:
            i += 1
