"""Documentation: dangerous abbreviations, matched by each knowledge item's own pattern."""

from __future__ import annotations

import re
from functools import lru_cache

from copilot.qc.registry import Context, Hit, Rule, check


@lru_cache(maxsize=256)
def _compiled(pattern: str) -> re.Pattern:
    return re.compile(pattern)


@check("abbreviation")
def abbreviation(context: Context, rule: Rule):
    wanted = rule.params.get("list")
    items = [a for a in context.graph.abbreviations() if a.list == wanted]
    for document in context.record.documents:
        taken: list[tuple[int, int]] = []
        for item in items:
            for match in _compiled(item.pattern).finditer(document.text):
                if any(start < match.end() and match.start() < end for start, end in taken):
                    continue  # one finding per span, from the first (most specific) list entry
                taken.append((match.start(), match.end()))
                yield Hit({"text": match.group().strip(), "intended": item.intended, "problem": item.problem,
                           "use_instead": item.use_instead}, document, match.start(), match.end(), [item])
