"""What a QC check is, and the registry the check modules add themselves to.

This module imports no check: each module in ``copilot/qc/checks/`` imports ``check`` from
here and registers its functions by name; the rule files (``rules/*.yaml``) name the check
each rule runs. Adding a rule is one YAML entry and, when no existing check fits, one
decorated function in the category's checks module.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from functools import cached_property
from typing import Callable, Iterator

from pydantic import BaseModel, ConfigDict, Field

from copilot.records.model import Document, Record
from knowledge.graph import KnowledgeGraph
from knowledge.schema import Item

CATEGORIES = ("completeness", "timeliness", "consistency", "medication_safety", "documentation", "coding",
              "single_disease", "vte")
SEVERITIES = ("critical", "major", "minor")


class RuleError(ValueError):
    """The rule files are invalid, or cite knowledge the snapshot lacks."""


class Rule(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)
    id: str = Field(pattern=r"^[a-z_]+\.[a-z0-9_]+$")
    category: str
    check: str
    severity: str
    message: str
    knowledge: list[str] = []
    cite: list[str] = []  # item ids cited by every finding of the rule (the rule's own basis)
    params: dict = {}
    enabled: bool = True


@dataclass
class Hit:
    """What a check found; the runner adds the rule's id, category and message."""
    params: dict
    document: Document | None = None
    start: int | None = None
    end: int | None = None
    items: list[Item] = field(default_factory=list)
    severity: str | None = None
    citations: list[dict] = field(default_factory=list)  # sources outside the snapshot (e.g. ICD-10-CM)


@dataclass
class Context:
    """One record being checked, with what the checks share (read once, on first use)."""
    record: Record
    graph: KnowledgeGraph
    jurisdiction: str

    @cached_property
    def mentions(self):
        from copilot.text.medications import mentions

        return mentions(self.record, self.graph)


Check = Callable[[Context, Rule], Iterator[Hit]]
CHECKS: dict[str, Check] = {}


def check(name: str):
    """Register a check under ``name`` (the ``check:`` field of a rule)."""
    def register(function: Check) -> Check:
        if name in CHECKS and CHECKS[name] is not function:
            raise RuleError(f"two checks are registered as {name!r}")
        CHECKS[name] = function
        return function
    return register
