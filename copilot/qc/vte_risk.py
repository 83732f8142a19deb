"""VTE risk scores from the record: Caprini for surgical stays, Padua for medical ones.

The models are knowledge items (``knowledge/sources/vte_risk_models.yaml``, kind ``risk_model``): each
factor with its points, what shows it (words, ICD-10 codes, an age range, a measurement, a procedure
and its length) and, within a group (age bands, kinds of surgery, mobility), only the highest-scoring
factor counts. Every factor found comes with its evidence, so a reviewer sees why the score is what it
is. A surgery whose end time is not recorded counts as minor: the score is then a lower bound.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from functools import lru_cache

from copilot.qc.record_facts import Evidence, RecordFacts, hours_between
from copilot.records.model import Record
from knowledge.graph import KnowledgeGraph
from knowledge.schema import RiskBand, RiskFactor, RiskModel


@dataclass(frozen=True)
class FactorHit:
    factor: RiskFactor
    evidence: Evidence

    def to_json(self) -> dict:
        return {"id": self.factor.id, "name": self.factor.name, "name_zh": self.factor.name_zh,
                "points": self.factor.points, "evidence": self.evidence.to_json()}


@dataclass
class VTEAssessment:
    model: RiskModel
    score: int
    band: RiskBand
    factors: list[FactorHit] = field(default_factory=list)

    @property
    def high_risk(self) -> bool:
        return self.band.name == "high"

    def to_json(self) -> dict:
        return {"model": self.model.id, "name": self.model.name, "name_zh": self.model.name_zh,
                "population": self.model.population, "score": self.score, "risk": self.band.name,
                "risk_zh": self.band.name_zh, "high_risk": self.high_risk,
                "factors": [hit.to_json() for hit in self.factors]}

    def summary(self) -> str:
        parts = ", ".join(f"{h.factor.name} ({h.factor.points})" for h in self.factors) or "no risk factor found"
        return f"{self.model.name} {self.score} ({self.band.name.replace('_', ' ')} risk): {parts}"


@lru_cache(maxsize=4)
def risk_models(graph: KnowledgeGraph) -> dict[str, RiskModel]:
    """The servable risk models by population (surgical, medical)."""
    models = {}
    for item in sorted(graph.snapshot.active(graph.today, kind="risk_model"), key=lambda i: i.id):
        models.setdefault(item.population, item)
    return models


def choose_model(facts: RecordFacts, models: dict[str, RiskModel]) -> RiskModel | None:
    """Surgical (Caprini) when the stay has an operative note or a procedure the surgical model names;
    otherwise medical (Padua)."""
    surgical = models.get("surgical")
    if surgical is not None:
        operated = any(d.type == "operative_note" for d in facts.record.documents)
        if operated or facts.procedures(surgical.population_terms):
            return surgical
    return models.get("medical") or surgical


def _found(factor: RiskFactor, facts: RecordFacts) -> Evidence | None:
    record = facts.record
    if factor.sex is not None and record.patient.sex != factor.sex:
        return None
    if factor.age_min is not None or factor.age_max is not None:
        age = facts.age
        if age is None or (factor.age_min is not None and age < factor.age_min) or (
                factor.age_max is not None and age > factor.age_max):
            return None
        return Evidence("patient.age", f"age {age}", value=float(age))
    if factor.procedure is not None:
        for procedure, evidence in facts.procedures(factor.procedure):
            hours = hours_between(procedure.performed_at, procedure.ended_at)
            minutes = None if hours is None else hours * 60
            if factor.min_minutes is not None and (minutes is None or minutes <= factor.min_minutes):
                continue
            if factor.max_minutes is not None and minutes is not None and minutes > factor.max_minutes:
                continue
            return evidence if minutes is None else Evidence(evidence.where, f"{evidence.text} ({minutes:.0f} min)",
                                                             at=evidence.at, value=minutes)
        return None
    if factor.threshold is not None:
        found = facts.measurement(factor.threshold)
        if found is not None:
            return found
    if not factor.terms.empty():
        hits = facts.stated(factor.terms, family=factor.family)
        return hits[0] if hits else None
    return None


def assess(record: Record, graph: KnowledgeGraph, facts: RecordFacts | None = None) -> VTEAssessment | None:
    """The record's VTE risk; None outside an inpatient stay, or when no model is servable."""
    facts = facts or RecordFacts(record, graph)
    if not facts.inpatient:
        return None
    model = choose_model(facts, risk_models(graph))
    if model is None:
        return None
    best: dict[str, FactorHit] = {}
    hits: list[FactorHit] = []
    for factor in model.factors:
        evidence = _found(factor, facts)
        if evidence is None:
            continue
        hit = FactorHit(factor, evidence)
        if factor.group is None:
            hits.append(hit)
        elif factor.group not in best or factor.points > best[factor.group].factor.points:
            best[factor.group] = hit
    hits += best.values()
    hits.sort(key=lambda h: [f.id for f in model.factors].index(h.factor.id))
    score = sum(h.factor.points for h in hits)
    band = max((b for b in model.bands if b.min_score <= score), key=lambda b: b.min_score)
    return VTEAssessment(model, score, band, hits)
