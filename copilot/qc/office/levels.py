"""The three QC levels, and the deadlines of a stay that is still going on.

- in-stay (环节质控): an inpatient record without a discharge time, checked while the patient is in
  hospital; its deadlines (deadlines.yaml) give reminders before a limit passes;
- terminal (终末质控): an inpatient record after discharge, checked as a whole;
- outpatient: clinic and emergency records, outside the inpatient levels.

Deadlines are computed when a record version is checked and stored; whether one is due soon or overdue
depends on the clock, which the caller passes (the web app's clock, or a fixed one in tests).
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta
from functools import lru_cache
from pathlib import Path

import yaml
from pydantic import BaseModel, ConfigDict, Field, model_validator

from copilot.qc.indicators import Evaluation
from copilot.qc.record_facts import as_utc
from copilot.records.model import Record
from knowledge.graph import KnowledgeGraph

LEVELS = ("in_stay", "terminal", "outpatient")
LEVEL_NAMES = {"in_stay": "In-stay (环节质控)", "terminal": "Terminal (终末质控)", "outpatient": "Outpatient"}
DEADLINES_FILE = Path(__file__).with_name("deadlines.yaml")


def level_of(record: Record) -> str:
    if record.encounter.type != "inpatient":
        return "outpatient"
    return "terminal" if record.encounter.discharged_at is not None else "in_stay"


class DeadlineRule(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)
    id: str = Field(pattern=r"^[a-z0-9_]+$")
    name: str
    name_zh: str
    document_type: str | None = None
    indicator: str | None = None
    warn_before_hours: float = Field(gt=0)

    @model_validator(mode="after")
    def _one_source(self):
        if (self.document_type is None) == (self.indicator is None):
            raise ValueError("a deadline names either a document_type or an indicator")
        return self


@lru_cache(maxsize=1)
def rules() -> tuple[DeadlineRule, ...]:
    data = yaml.safe_load(DEADLINES_FILE.read_text(encoding="utf-8"))
    return tuple(DeadlineRule.model_validate(d) for d in data["deadlines"])


@dataclass(frozen=True)
class Deadline:
    id: str
    name: str
    name_zh: str
    due_at: datetime  # UTC
    warn_at: datetime  # UTC
    done: bool
    basis: str  # the knowledge item that sets the limit

    def status(self, now: datetime) -> str | None:
        """None (done, or not yet in the warning window), 'due_soon' or 'overdue'."""
        if self.done:
            return None
        now = as_utc(now)
        if now >= self.due_at:
            return "overdue"
        if now >= self.warn_at:
            return "due_soon"
        return None


def deadlines(record: Record, graph: KnowledgeGraph, jurisdiction: str,
              evaluation: Evaluation | None = None) -> list[Deadline]:
    """The deadlines of an inpatient stay with a known admission time (empty otherwise)."""
    admitted = record.encounter.admitted_at
    if record.encounter.type != "inpatient" or admitted is None:
        return []
    evaluation = evaluation or Evaluation(record, graph)
    found = []
    for rule in rules():
        if rule.document_type is not None:
            limits = [t for t in (graph.time_limits(rule.document_type, jurisdiction)
                                  or graph.time_limits(rule.document_type)) if t.anchor == "admitted_at" and t.hours > 0]
            if not limits:
                continue
            limit = min(limits, key=lambda t: t.hours)
            hours, basis = limit.hours, limit.id
            done = any(d.type == rule.document_type for d in record.documents)
        else:
            indicator = next((i for i in evaluation.knowledge.indicators if i.id == rule.indicator), None)
            if indicator is None or indicator.within_hours is None:
                continue
            hours, basis = indicator.within_hours, indicator.id
            done = evaluation.evaluate(indicator).status == "met"
        due = as_utc(admitted) + timedelta(hours=hours)
        found.append(Deadline(rule.id, rule.name, rule.name_zh, due, due - timedelta(hours=rule.warn_before_hours),
                              done, basis))
    return found
