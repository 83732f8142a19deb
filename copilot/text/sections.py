"""Sections, sentences and language of a clinical note.

Kept deliberately simple and predictable (regular expressions over known vocabularies)
so every finding can be explained by the span it points at.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

_CJK = re.compile(r"[\u3400-\u9fff]")
_SENTENCE = re.compile(r"[^.!?\n。！？；;]+[.!?。！？；;]?", re.UNICODE)


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
