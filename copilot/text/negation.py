"""Whether a mention is negated ("denies chest pain", "无发热")."""

from __future__ import annotations

import re

NEGATION_CUES = re.compile(
    r"\b(?:denies|denied|deny|no|not|negative for|without|free of|absence of|never had|rules? out|ruled out)\b|无|否认|未见|未",
    re.IGNORECASE)


def negated(text: str, start: int, window: int = 40) -> bool:
    """Whether the mention at ``start`` follows a negation cue in the same sentence."""
    sentence_start = max(text.rfind(ch, 0, start) for ch in ".\n;!?。；")
    before = text[max(sentence_start + 1, start - window):start]
    return bool(NEGATION_CUES.search(before))
