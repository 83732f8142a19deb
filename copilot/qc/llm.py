"""The optional model pass (``copilot qc --llm``): free-text inconsistencies, as JSON.

Off by default. Its findings carry ``origin: "model"`` and the rule id ``model.inconsistency``
so they are never mistaken for rule findings, and a finding is kept only if the sentence
it quotes really is in the note: the model may point, but it may not invent evidence.
"""

from __future__ import annotations

import json
import re

from copilot.engine.generation import GenerationRequest
from copilot.records.model import Record

PROMPT = (
    "You review clinical notes for internal contradictions (e.g. a symptom both denied and reported, "
    "left vs right, sex or age that does not fit). Answer ONLY with a JSON array. Each element: "
    '{"quote": "<exact sentence copied from the note>", "problem": "<one short sentence>"}. '
    "If there is no contradiction, answer [].\n\nNOTE:\n"
)
MAX_NOTE_CHARS = 6000


def parse_findings(output: str) -> list[dict]:
    """The first JSON array in the model's answer; anything unparsable yields nothing."""
    match = re.search(r"\[.*\]", output, re.S)
    if not match:
        return []
    try:
        items = json.loads(match.group())
    except json.JSONDecodeError:
        return []
    return [i for i in items if isinstance(i, dict) and isinstance(i.get("quote"), str) and isinstance(i.get("problem"), str)]


class ModelReviewer:
    def __init__(self, engine, max_new_tokens: int = 256):
        self.engine = engine
        self.max_new_tokens = max_new_tokens

    def review(self, record: Record) -> list[dict]:
        findings = []
        for document in record.documents:
            note = document.text[:MAX_NOTE_CHARS]
            result = self.engine.generate(GenerationRequest(
                messages=[{"role": "user", "content": PROMPT + note}], max_new_tokens=self.max_new_tokens))
            for item in parse_findings(result.text)[:5]:
                quote = item["quote"].strip()
                start = document.text.find(quote) if len(quote) >= 12 else -1
                if start < 0:
                    continue
                findings.append({
                    "record_id": record.id, "rule_id": "model.inconsistency", "category": "consistency",
                    "severity": "minor", "message": f"[model-generated] {item['problem'].strip()[:300]}",
                    "evidence": {"document_id": document.id, "start": start, "end": start + len(quote), "text": quote},
                    "knowledge": [], "origin": "model"})
        return findings
