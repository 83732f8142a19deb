"""A record's score out of 100 and its grade (甲/乙/丙), from a scoring table kept as data (scoring.yaml).

Each finding present in the record's latest version and not dismissed takes its deduction (by rule, else
by severity) from its scoring item; an item never takes more than its cap. A veto rule (单项否决) caps the
grade whatever the score.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from functools import lru_cache
from pathlib import Path
from typing import Iterable

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, model_validator

from copilot.qc.registry import SEVERITIES

TABLE = Path(__file__).with_name("scoring.yaml")


class ScoringError(ValueError):
    pass


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class Item(_Strict):
    id: str
    name: str
    name_zh: str
    categories: list[str] = []
    deduction: dict[str, float]
    rules: dict[str, float] = {}
    cap: float = Field(gt=0)

    @model_validator(mode="after")
    def _severities(self):
        if set(self.deduction) != set(SEVERITIES):
            raise ValueError(f"deduction must give points for exactly {', '.join(SEVERITIES)}")
        return self


class Grade(_Strict):
    grade: str
    min: float = Field(ge=0)


class Veto(_Strict):
    rule: str
    grade: str
    why: str


class Standard(_Strict):
    title: str
    issuer: str
    basis: str
    version: str


class Table(_Strict):
    standard: Standard
    total: float = Field(gt=0)
    grades: list[Grade] = Field(min_length=1)
    items: list[Item] = Field(min_length=1)
    other: Item
    vetoes: list[Veto] = []

    @model_validator(mode="after")
    def _consistent(self):
        minimums = [g.min for g in self.grades]
        if minimums != sorted(minimums, reverse=True) or minimums[-1] != 0:
            raise ValueError("grades must run from the highest minimum down to 0")
        names = [g.grade for g in self.grades]
        unknown = {v.grade for v in self.vetoes} - set(names)
        if unknown:
            raise ValueError(f"vetoes name unknown grades: {', '.join(sorted(unknown))}")
        categories = [c for i in self.items for c in i.categories]
        if len(categories) != len(set(categories)):
            raise ValueError("a category is scored by two items")
        return self

    def item_for(self, rule_id: str, category: str) -> Item:
        for item in self.items:
            if rule_id in item.rules:
                return item
        for item in self.items:
            if category in item.categories:
                return item
        return self.other

    def grade_of(self, score: float) -> str:
        return next(g.grade for g in self.grades if score >= g.min)

    def rank(self, grade: str) -> int:
        return [g.grade for g in self.grades].index(grade)

    def score(self, findings: Iterable[dict]) -> "Score":
        """``findings``: dicts with rule_id, category and severity (present, not dismissed)."""
        taken: dict[str, float] = {}
        vetoed: list[Veto] = []
        for finding in findings:
            item = self.item_for(finding["rule_id"], finding["category"])
            points = item.rules.get(finding["rule_id"], item.deduction.get(finding["severity"], 0))
            taken[item.id] = taken.get(item.id, 0) + points
            vetoed += [v for v in self.vetoes if v.rule == finding["rule_id"]]
        caps = {i.id: i.cap for i in [*self.items, self.other]}
        deductions = {item_id: min(points, caps[item_id]) for item_id, points in taken.items()}
        score = round(max(0.0, self.total - sum(deductions.values())), 1)
        grade = self.grade_of(score)
        for veto in vetoed:
            if self.rank(veto.grade) > self.rank(grade):
                grade = veto.grade
        return Score(score, grade, deductions, sorted({v.why for v in vetoed}))


@dataclass(frozen=True)
class Score:
    score: float
    grade: str
    deductions: dict[str, float] = field(default_factory=dict)  # item id -> points taken (capped)
    vetoes: list[str] = field(default_factory=list)


def load(path: Path = TABLE) -> Table:
    try:
        return Table.model_validate(yaml.safe_load(Path(path).read_text(encoding="utf-8")))
    except (OSError, yaml.YAMLError) as exc:
        raise ScoringError(f"{path}: {exc}") from None
    except ValidationError as exc:
        first = exc.errors()[0]
        raise ScoringError(f"{path}: {'/'.join(map(str, first['loc']))}: {first['msg']}") from None


@lru_cache(maxsize=1)
def table() -> Table:
    return load()
