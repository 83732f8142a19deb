"""The grounding check offered on its own: any tool's draft against its encounter.

``copilot ground`` and ``POST /api/ground`` both call ``ground``; the drafter calls the same
``copilot.drafting.facts`` check on each section it writes.
"""

from __future__ import annotations

from copilot.drafting.context import record_chunks
from copilot.drafting.facts import SourceFacts, unsupported
from copilot.records.model import Record

MAX_SOURCE_CHARS = 200_000  # as a draft request's transcript (copilot/web/draft.py)
MAX_DRAFT_CHARS = 50_000


class GroundingError(ValueError):
    """Input the check cannot use (empty, too long, not text)."""


def ground(source: str, draft: str, record: Record | None = None, graph=None) -> list[dict]:
    """Unsupported spans of ``draft``: [{start, end, text, reason, kind}], offsets in characters of ``draft``.
    ``source`` is the transcript (or any text the draft was written from); ``record`` adds its
    structured facts and notes. Without ``graph`` drug names are not recognised."""
    if not isinstance(source, str) or not isinstance(draft, str):
        raise GroundingError("'source' and 'draft' must be strings")
    if not draft.strip():
        raise GroundingError("the draft is empty")
    if not source.strip() and record is None:
        raise GroundingError("give the source (transcript) or a record to check the draft against")
    if len(source) > MAX_SOURCE_CHARS:
        raise GroundingError(f"the source is longer than {MAX_SOURCE_CHARS} characters")
    if len(draft) > MAX_DRAFT_CHARS:
        raise GroundingError(f"the draft is longer than {MAX_DRAFT_CHARS} characters")
    texts = [source] + ([c.text for c in record_chunks(record)] if record is not None else [])
    marks = unsupported(draft, SourceFacts(texts, graph), graph)
    return [{k: m[k] for k in ("start", "end", "text", "reason", "kind")} for m in marks]
