"""The QC runner: rules from data files, checks from the registry, findings out.

A rule file names, for each rule, the check that implements it, its severity, its
message template and the knowledge it rests on. The runner runs every enabled rule on a
record and turns each hit into a finding that names the rule, the evidence span, the
severity and the knowledge items (id, version, source) that back it.
"""

from __future__ import annotations

from datetime import date
from pathlib import Path

import yaml
from pydantic import ValidationError

import copilot.qc.checks  # noqa: F401  (registers every check)
from copilot.qc.registry import CATEGORIES, CHECKS, SEVERITIES, Context, Hit, Rule, RuleError
from copilot.records.model import Record
from knowledge.graph import KnowledgeGraph
from knowledge.snapshot import Snapshot, citation

__all__ = ["CATEGORIES", "SEVERITIES", "QCRunner", "RuleError", "load_rules"]

RULES_DIR = Path(__file__).with_name("rules")
CONTEXT = 80  # characters of note text kept around each evidence span, for reviewers


def load_rules(folder: Path = RULES_DIR) -> list[Rule]:
    rules, problems, seen = [], [], {}
    for path in sorted(Path(folder).glob("*.yaml")):
        try:
            document = yaml.safe_load(path.read_text(encoding="utf-8"))
        except (yaml.YAMLError, UnicodeDecodeError) as exc:
            problems.append(f"{path.name}: {exc}")
            continue
        category = document.get("category") if isinstance(document, dict) else None
        if category not in CATEGORIES:
            problems.append(f"{path.name}: category must be one of {', '.join(CATEGORIES)}")
            continue
        for raw in document.get("rules", []):
            try:
                rule = Rule.model_validate({"category": category, **raw})
            except ValidationError as exc:
                problems.append(f"{path.name}: {raw.get('id', '?')}: {exc.errors()[0]['loc']}: {exc.errors()[0]['msg']}")
                continue
            if rule.severity not in SEVERITIES:
                problems.append(f"{path.name}: {rule.id}: severity must be one of {', '.join(SEVERITIES)}")
            elif rule.check not in CHECKS:
                problems.append(f"{path.name}: {rule.id}: no check named {rule.check!r}")
            elif rule.id in seen:
                problems.append(f"{path.name}: duplicate rule id {rule.id} (also in {seen[rule.id]})")
            else:
                seen[rule.id] = path.name
                rules.append(rule)
    if problems:
        raise RuleError("invalid QC rules:\n  " + "\n  ".join(problems))
    return rules


class QCRunner:
    """Built once (rules, snapshot, graph); ``check`` is then cheap and side-effect free."""

    def __init__(self, snapshot: Snapshot, rules: list[Rule] | None = None, jurisdiction: str = "CN",
                 today: date | None = None):
        self.snapshot = snapshot
        self.graph = KnowledgeGraph(snapshot, today=today)
        self.rules = [r for r in (rules if rules is not None else load_rules()) if r.enabled]
        self.jurisdiction = jurisdiction
        unknown = sorted({i for r in self.rules for i in r.cite} - set(snapshot.items))
        if unknown:
            raise RuleError(f"rules cite items missing from knowledge snapshot {snapshot.id}: {', '.join(unknown)}")
        # What each rule cites as its own basis, limited to items servable on the engine's date.
        self.basis = {r.id: [i for i in (snapshot.get(c, self.graph.today) for c in r.cite) if i is not None]
                      for r in self.rules}

    def check(self, record: Record) -> list[dict]:
        context = Context(record, self.graph, self.jurisdiction)
        findings = []
        for rule in self.rules:
            for hit in CHECKS[rule.check](context, rule):
                hit.items = hit.items + self.basis[rule.id]
                findings.append(self._finding(record, rule, hit))
        return findings

    @staticmethod
    def _finding(record: Record, rule: Rule, hit: Hit) -> dict:
        evidence = None
        if hit.document is not None and hit.start is not None:
            text = hit.document.text
            evidence = {"document_id": hit.document.id, "start": hit.start, "end": hit.end,
                        "text": text[hit.start:hit.end],
                        "context": {"before": text[max(0, hit.start - CONTEXT):hit.start],
                                    "after": text[hit.end:hit.end + CONTEXT]}}
        knowledge, seen = [], set()
        for item in hit.items:
            if item.id not in seen:
                seen.add(item.id)
                knowledge.append(citation(item))
        knowledge += hit.citations
        return {"record_id": record.id, "rule_id": rule.id, "category": rule.category,
                "severity": hit.severity or rule.severity, "message": rule.message.format(**hit.params),
                "evidence": evidence, "knowledge": knowledge, "origin": "rule"}
