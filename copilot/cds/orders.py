"""Which QC findings a draft order brings about (order-sign).

A finding involves a draft order's drug when it disappears once that drug is taken off the
record (the draft and any active order of the same drug). That asks the QC rules themselves
instead of guessing from message text, and keeps findings that predate the order (an old
interaction between two active drugs) off the prescriber's screen.
"""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass, replace

from copilot.cds.hook_request import HookRequest, bundle_record
from copilot.qc.runner import QCRunner
from copilot.text.medications import mentions
from copilot.records.model import Medication, Record
from knowledge.graph import KnowledgeGraph

SKIPPED_STATUSES = frozenset({"entered-in-error", "cancelled", "completed", "stopped", "revoked"})


@dataclass
class DraftOrder:
    reference: str | None  # "MedicationRequest/<id>", for a suggestion to remove it
    name: str  # as ordered
    drug: str | None  # generic name in the knowledge base; None when the drug is unknown to it


def generic(medication: Medication, graph: KnowledgeGraph) -> str | None:
    found = mentions(Record(id="order", medications=[medication]), graph)
    return found[0].drug.name if found else None


def draft_orders(request: HookRequest, graph: KnowledgeGraph) -> list[DraftOrder]:
    """Each MedicationRequest among the draft orders, read by the same FHIR mapper as the record
    (Medication resources in the draft Bundle resolve references)."""
    medications = [e for e in request.draft_orders if e["resource"].get("resourceType") == "Medication"]
    orders = []
    for index, entry in enumerate(request.draft_orders):
        resource = entry["resource"]
        status = resource.get("status")
        if resource.get("resourceType") != "MedicationRequest" or (isinstance(status, str) and
                                                                     status in SKIPPED_STATUSES):
            continue
        record = bundle_record([entry] + medications, f"order-{index}", "cds:draftOrders")
        for medication in record.medications:
            rid = resource.get("id")
            orders.append(DraftOrder(f"MedicationRequest/{rid}" if isinstance(rid, str) else None,
                                     medication.name, generic(medication, graph)))
    return orders


def _key(finding: dict) -> tuple[str, str]:
    return finding["rule_id"], finding["message"]


def involved(runner: QCRunner, record: Record, orders: list[DraftOrder], categories: list[str]
             ) -> list[tuple[dict, list[DraftOrder]]]:
    """The findings (of ``categories``) on ``record`` that involve a draft order, each with its orders."""
    def findings(subject: Record) -> list[dict]:
        return [f for f in runner.check(subject) if f["category"] in categories]

    full = findings(record)
    by_finding: dict[tuple[str, str], list[DraftOrder]] = {}
    generics = {id(m): generic(m, runner.graph) for m in record.medications}
    for drug in sorted({o.drug for o in orders if o.drug}):
        without = replace(record, medications=[m for m in record.medications if generics[id(m)] != drug])
        remaining = Counter(_key(f) for f in findings(without))
        for finding in full:
            key = _key(finding)
            if remaining[key] > 0:
                remaining[key] -= 1
                continue
            by_finding.setdefault(key, []).extend(o for o in orders if o.drug == drug)
    return [(f, by_finding[_key(f)]) for f in full if _key(f) in by_finding]
