"""The patient's own material, cut into citable chunks, and the chunks relevant to a section.

Sources are the encounter transcript (groups of turns), the structured record (allergies,
medications, diagnoses, demographics) and the record's documents (paragraphs). Ranking is
BM25 over this one encounter, built per request: tens of chunks, well under a millisecond.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

from copilot.records.model import Record
from knowledge.retrieval import tokenize

TURN = re.compile(r"^\s*\[(doctor|patient|patient_guest|guest_family|guest_clinician|nurse|[a-z_]+)\]\s*", re.I | re.M)
CHUNK_CHARS = 700


@dataclass(frozen=True)
class Chunk:
    id: str
    title: str
    text: str
    order: int


def transcript_chunks(transcript: str) -> list[Chunk]:
    """Whole turns, grouped up to ~CHUNK_CHARS, so no sentence is cut in half."""
    starts = [m.start() for m in TURN.finditer(transcript)]
    if not starts or starts[0] != 0:
        starts = [0] + starts
    turns = [transcript[a:b].strip() for a, b in zip(starts, starts[1:] + [len(transcript)])]
    turns = [t for t in turns if t]
    chunks, current = [], []
    for turn in turns:
        for piece in _split_long(turn):
            if current and sum(len(t) for t in current) + len(piece) > CHUNK_CHARS:
                chunks.append(current)
                current = []
            current.append(piece)
    if current:
        chunks.append(current)
    return [Chunk(f"transcript:{i + 1}", f"transcript part {i + 1}", "\n".join(c), i) for i, c in enumerate(chunks)]


def _split_long(text: str) -> list[str]:
    if len(text) <= CHUNK_CHARS:
        return [text]
    pieces, current = [], ""
    for sentence in re.split(r"(?<=[.!?。！？])\s+", text):
        if current and len(current) + len(sentence) > CHUNK_CHARS:
            pieces.append(current)
            current = ""
        while len(sentence) > CHUNK_CHARS:
            pieces.append(sentence[:CHUNK_CHARS])
            sentence = sentence[CHUNK_CHARS:]
        current = f"{current} {sentence}".strip()
    if current:
        pieces.append(current)
    return pieces


def record_chunks(record: Record, start: int = 0) -> list[Chunk]:
    chunks: list[str | tuple[str, str, str]] = []
    p = record.patient
    facts = [f"sex {p.sex}" if p.sex != "unknown" else "", f"age {p.age}" if p.age is not None else ""]
    if any(facts):
        chunks.append(("record:patient", "record: patient", ", ".join(f for f in facts if f)))
    if p.allergies:
        chunks.append(("record:allergies", "record: allergies", "Allergies: " + "; ".join(p.allergies)))
    if record.medications:
        lines = []
        for m in record.medications:
            dose = f" {m.dose:g} {m.unit}" if m.dose is not None and m.unit else ""
            extra = " ".join(x for x in (m.route, m.frequency) if x)
            lines.append(f"{m.name}{dose} {extra}".strip())
        chunks.append(("record:medications", "record: medications", "Medications: " + "; ".join(lines)))
    if record.diagnoses:
        chunks.append(("record:diagnoses", "record: diagnoses",
                       "Diagnoses: " + "; ".join(f"{d.text} ({d.code})" if d.code else d.text for d in record.diagnoses)))
    for doc in record.documents:
        paragraphs = [q for part in re.split(r"\n\s*\n", doc.text) for q in _split_long(part.strip()) if q]
        for i, paragraph in enumerate(paragraphs):
            chunks.append((f"document:{doc.id}:{i + 1}", f"{doc.type.replace('_', ' ')} {doc.id} part {i + 1}", paragraph))
    return [Chunk(cid, title, text, start + i) for i, (cid, title, text) in enumerate(chunks)]


class PatientContext:
    def __init__(self, transcript: str | None, record: Record | None):
        self.chunks = transcript_chunks(transcript) if transcript else []
        if record is not None:
            self.chunks += record_chunks(record, start=len(self.chunks))
        self._index = None
        if self.chunks:
            import bm25s

            self._index = bm25s.BM25()
            self._index.index([tokenize(c.text) or ["_"] for c in self.chunks], show_progress=False)

    @property
    def texts(self) -> list[str]:
        return [c.text for c in self.chunks]

    def select(self, query: str, budget_chars: int) -> list[Chunk]:
        """The best-matching chunks within the budget, in their original order (the story's order).

        Structured record chunks (allergies, medications) are short and always relevant to a
        clinical note, so they go first; the first transcript chunk (the visit's opening) too."""
        if not self.chunks:
            return []
        ranked = []
        tokens = tokenize(query)
        if tokens and len(self.chunks) > 1:
            rows, scores = self._index.retrieve([tokens], k=len(self.chunks), show_progress=False, n_threads=1)
            ranked = [self.chunks[int(r)] for r, s in zip(rows[0], scores[0]) if s > 0]
        pinned = [c for c in self.chunks if c.id.startswith("record:")] + self.chunks[:1]
        chosen, used = [], 0
        for chunk in pinned + ranked + self.chunks:
            if chunk in chosen or used + len(chunk.text) > budget_chars:
                continue
            chosen.append(chunk)
            used += len(chunk.text)
        return sorted(chosen, key=lambda c: c.order)
