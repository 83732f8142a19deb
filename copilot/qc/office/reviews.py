"""The QC office's reviews as an evaluation set that grows with use: each reviewed finding with the
reviewer's verdict (confirmed, or dismissed and why), ready for the fine-tuning pipeline.

Identifiers are replaced by keyed pseudonyms (HMAC with the deployment's de-identification key, so the
same record keeps the same pseudonym and nobody without the key can reverse it); departments, doctors,
assignees and every date are left out. The free text (the rule's message, the quoted evidence and its
context, the dismissal reason) is note text and may hold PHI: each example names those fields in
``text_fields``, and the fine-tuning pipeline (`copilot finetune reviews`) passes them through its
de-identification gate before anything is written. Nothing here writes free text anywhere.
"""

from __future__ import annotations

import hashlib
import hmac
import json
from typing import Iterator

from copilot.qc.office.store import OfficeStore

TEXT_FIELDS = ("message", "reason", "evidence_text", "evidence_before", "evidence_after")


def pseudonym(key: str, kind: str, value: object) -> str:
    digest = hmac.new(key.encode("utf-8"), f"qc-office\x1f{kind}\x1f{value}".encode("utf-8"), hashlib.sha256)
    return f"{kind}-{digest.hexdigest()[:16]}"


def examples(store: OfficeStore, key: str, limit: int = 100_000) -> Iterator[dict]:
    """One example per reviewed finding (its latest confirm or dismiss)."""
    if not key:
        raise ValueError("a de-identification key is needed for the pseudonyms")
    for row in store.reviews(limit=limit):
        evidence = json.loads(row["evidence"]) if row["evidence"] else {}
        context = evidence.get("context") or {}
        label = "confirmed" if row["action"] == "confirm" else "dismissed"
        yield {
            "id": pseudonym(key, "finding", row["id"]),
            "record": pseudonym(key, "record", row["record_id"]),
            "version": row["last_version"],
            "rule_id": row["rule_id"], "category": row["category"], "severity": row["severity"],
            "origin": row["origin"], "label": label,
            "message": row["message"],
            "reason": row["reason"] if label == "dismissed" else None,
            "evidence_text": evidence.get("text"),
            "evidence_before": context.get("before"),
            "evidence_after": context.get("after"),
            "knowledge": [k.get("id") for k in json.loads(row["knowledge"] or "[]") if isinstance(k, dict)],
            "text_fields": [f for f in TEXT_FIELDS if evidence or not f.startswith("evidence")],
        }
