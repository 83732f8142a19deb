"""In-stay deadlines (环节质控): an inpatient document the time limit requires and that is still missing when
the limit has passed.

Only whole charts (records with ``as_of``) are checked: a single note lacks every other document. The
limit is the jurisdiction's time_limit knowledge item for the document type (CN first course record:
8 h after admission). The record is judged at the time it describes (when it was taken from the EMR,
else discharge, else its newest note), so the check needs no clock and a re-check of the same record
gives the same answer; reminders before a limit passes are the QC office's (copilot/qc/office/levels.py).
"""

from __future__ import annotations

from copilot.qc.record_facts import RecordFacts
from copilot.qc.registry import Context, Hit, Rule, RuleError, check


@check("document_overdue")
def document_overdue(context: Context, rule: Rule):
    document_type = rule.params.get("document_type")
    if not document_type:
        raise RuleError(f"{rule.id}: params.document_type names the document the deadline is for")
    record = context.record
    facts = RecordFacts(record, context.graph)
    if not (facts.inpatient and facts.whole_chart) or any(d.type == document_type for d in record.documents):
        return
    limits = [t for t in (context.graph.time_limits(document_type, context.jurisdiction)
                          or context.graph.time_limits(document_type)) if t.anchor == "admitted_at" and t.hours > 0]
    if not limits:
        return
    limit = min(limits, key=lambda t: t.hours)
    elapsed = facts.hours_since_admission()
    if elapsed is not None and elapsed > limit.hours:
        yield Hit({"document_type": document_type.replace("_", " "), "elapsed_h": elapsed, "limit_h": limit.hours,
                   "jurisdiction": limit.jurisdiction}, items=[limit])
