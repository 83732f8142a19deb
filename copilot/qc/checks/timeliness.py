"""Timeliness: each document signed within its type's limit after the anchoring event.

Limits come from the deployment's jurisdiction (``COPILOT_QC_JURISDICTION``, default CN,
the 《病历书写基本规范》); a document type with no limit there falls back to the other
jurisdiction's. A limit of 0 h ("immediately") cannot be checked by the clock and is skipped.
"""

from __future__ import annotations

from copilot.qc.registry import Context, Hit, Rule, check

ANCHOR_NAMES = {"admitted_at": "admission", "discharged_at": "discharge", "procedure_end": "the end of the procedure",
                "encounter_start": "the start of the encounter", "event_time": "the event"}


def _limits(context: Context, document_type: str):
    limits = context.graph.time_limits(document_type, context.jurisdiction) or context.graph.time_limits(document_type)
    return [limit for limit in limits if limit.hours > 0]


def _anchor(context: Context, anchor: str):
    encounter = context.record.encounter
    return {"admitted_at": encounter.admitted_at, "discharged_at": encounter.discharged_at,
            "encounter_start": encounter.admitted_at}.get(anchor)


def _elapsed_hours(context: Context, document, limit):
    anchor = _anchor(context, limit.anchor)
    signed = document.signed_at or document.authored_at
    if anchor is None or signed is None:
        return None
    if (anchor.tzinfo is None) != (signed.tzinfo is None):
        anchor, signed = anchor.replace(tzinfo=None), signed.replace(tzinfo=None)
    return (signed - anchor).total_seconds() / 3600


@check("signed_late")
def signed_late(context: Context, rule: Rule):
    for document in context.record.documents:
        late = []
        for limit in _limits(context, document.type):
            elapsed = _elapsed_hours(context, document, limit)
            if elapsed is not None and elapsed > limit.hours:
                late.append((limit, elapsed))
        if late:
            limit, elapsed = min(late, key=lambda pair: pair[0].hours)
            yield Hit({"document_type": document.type.replace("_", " "), "elapsed_h": elapsed,
                       "anchor": ANCHOR_NAMES.get(limit.anchor, limit.anchor), "limit_h": limit.hours,
                       "jurisdiction": limit.jurisdiction}, items=[item for item, _ in late])


@check("signed_before_anchor")
def signed_before_anchor(context: Context, rule: Rule):
    for document in context.record.documents:
        for limit in _limits(context, document.type)[:1]:
            elapsed = _elapsed_hours(context, document, limit)
            if elapsed is not None and elapsed < -1 and limit.anchor != "admitted_at":
                yield Hit({"document_type": document.type.replace("_", " "), "early_h": -elapsed,
                           "anchor": ANCHOR_NAMES.get(limit.anchor, limit.anchor)}, items=[limit])
