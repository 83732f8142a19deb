"""Single-disease (单病种) and VTE quality indicators, evaluated on one record.

Indicators are knowledge items (``knowledge/sources/quality_indicators.yaml``, kind
``quality_indicator``), each cited to its national indicator set, CMS measure or guideline; the
diseases they are about are ``disease`` items (ICD-10 code prefixes and words). Only whole inpatient charts (records with ``as_of``, see
``RecordFacts.whole_chart``) are evaluated. A record is in a disease's denominator when its principal diagnosis (the first structured diagnosis, else the first
line under a diagnosis header) is that disease; ``inpatient`` indicators (VTE) apply to every stay.

Each applicable indicator ends as one of:

- ``not_applicable``: a condition of the indicator does not hold (not STEMI, LVEF not below 40 %,
  not discharged yet, VTE risk not high, the 24 h window not over yet);
- ``met``: done, with the evidence that shows it (a measure met despite a contraindication is met);
- ``contraindicated``: not done, and a contraindication (or an allergy) is documented;
- ``not_met``: not done and nothing excuses it: a QC finding.

Compliance of a disease's indicator = met / (met + not_met).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from functools import lru_cache

from copilot.qc.record_facts import Evidence, RecordFacts, as_utc, hours_between
from copilot.qc.vte_risk import VTEAssessment, assess
from copilot.records.model import Record
from knowledge.graph import KnowledgeGraph
from knowledge.schema import Disease, QualityIndicator

STATUSES = ("met", "not_met", "contraindicated", "not_applicable")
BUILT_IN_CONDITIONS = ("discharged", "vte_high_risk")
INPATIENT = "inpatient"
ORAL_ROUTES = ("po", "oral", "by mouth", "口服")


class IndicatorError(ValueError):
    """The indicator knowledge is inconsistent (an unknown disease, drug or class)."""


@dataclass
class IndicatorResult:
    indicator: QualityIndicator
    status: str
    reason: str
    evidence: list[Evidence] = field(default_factory=list)

    def to_json(self) -> dict:
        return {"indicator": self.indicator.id, "disease": self.indicator.disease, "name": self.indicator.name,
                "name_zh": self.indicator.name_zh, "status": self.status, "reason": self.reason,
                "evidence": [e.to_json() for e in self.evidence]}


@dataclass(frozen=True)
class IndicatorSet:
    diseases: dict[str, Disease]
    indicators: tuple[QualityIndicator, ...]


@lru_cache(maxsize=4)
def indicator_set(graph: KnowledgeGraph) -> IndicatorSet:
    """The servable diseases and indicators, checked against each other and the drug knowledge."""
    today = graph.today
    diseases = {d.id.split(".", 1)[1]: d for d in graph.snapshot.active(today, kind="disease")}
    indicators = tuple(sorted(graph.snapshot.active(today, kind="quality_indicator"), key=lambda i: i.id))
    problems = []
    for indicator in indicators:
        if indicator.disease != INPATIENT and indicator.disease not in diseases:
            problems.append(f"{indicator.id}: unknown disease {indicator.disease!r}")
        for condition in indicator.applies_when:
            if condition not in diseases and condition not in BUILT_IN_CONDITIONS:
                problems.append(f"{indicator.id}: unknown condition {condition!r}")
        problems += [f"{indicator.id}: unknown drug {d!r}" for d in indicator.drugs if d not in graph.drugs]
        problems += [f"{indicator.id}: unknown drug class {c!r}" for c in indicator.classes if c not in graph.classes]
    if problems:
        raise IndicatorError("inconsistent quality indicators: " + "; ".join(problems))
    return IndicatorSet(diseases, indicators)


class Evaluation:
    """One record's indicators, computed once and shared by the QC checks and the QC office."""

    def __init__(self, record: Record, graph: KnowledgeGraph):
        self.record = record
        self.graph = graph
        self.facts = RecordFacts(record, graph)
        self.knowledge = indicator_set(graph)
        self._vte: VTEAssessment | None = None
        self._vte_done = False

    @property
    def vte(self) -> VTEAssessment | None:
        if not self._vte_done:
            self._vte, self._vte_done = assess(self.record, self.graph, self.facts), True
        return self._vte

    def principal_disease(self) -> tuple[Disease, Evidence] | None:
        """The indicator disease the stay is about, from its principal diagnosis."""
        if self.record.diagnoses:
            for disease in self.knowledge.diseases.values():
                if not disease.terms.empty():
                    hits = self.facts.diagnosis_mentions(disease.terms, principal=True)
                    if hits and self._is_indicator_disease(disease):
                        return disease, hits[0]
            return None
        line = self.facts.principal_diagnosis_text()
        if line is None:
            return None
        for disease in self.knowledge.diseases.values():
            if self._is_indicator_disease(disease) and any(self.facts.mentions_term(line.text, t)
                                                           for t in disease.terms.en + disease.terms.zh):
                return disease, line
        return None

    def _is_indicator_disease(self, disease: Disease) -> bool:
        key = disease.id.split(".", 1)[1]
        return any(i.disease == key for i in self.knowledge.indicators)

    def results(self) -> list[IndicatorResult]:
        """The indicators of an inpatient stay's whole chart (``as_of`` set): single-disease indicators of
        its principal disease, and the VTE ones. Nothing for outpatients or for a record that may be a
        single note, where an absence proves nothing."""
        if not hasattr(self, "_results"):
            self._results = []
            if not (self.facts.inpatient and self.facts.whole_chart):
                return self._results
            principal = self.principal_disease()
            disease = principal[0].id.split(".", 1)[1] if principal else None
            for indicator in self.knowledge.indicators:
                if indicator.disease == INPATIENT or indicator.disease == disease:
                    self._results.append(self.evaluate(indicator, principal[1] if principal else None))
        return self._results

    def done(self, indicator_id: str) -> bool:
        """Whether the record shows what the indicator asks for, whether or not it applies (a patient at
        low VTE risk may still have prophylaxis)."""
        indicator = next((i for i in self.knowledge.indicators if i.id == indicator_id), None)
        return indicator is not None and self._measure(indicator)[0]

    # -- one indicator ---------------------------------------------------------------------------
    def evaluate(self, indicator: QualityIndicator, diagnosis: Evidence | None = None) -> IndicatorResult:
        """Applicable? done? excused? still time (the window after admission not over yet)? else not met."""
        for condition in indicator.applies_when:
            holds, why = self._condition(condition)
            if not holds:
                return IndicatorResult(indicator, "not_applicable", why)
        done, why, evidence = self._measure(indicator)
        if done:
            return IndicatorResult(indicator, "met", why, evidence)
        excuse = self._contraindication(indicator)
        if excuse is not None:
            return IndicatorResult(indicator, "contraindicated", f"contraindication documented: {excuse.text}",
                                   [excuse])
        window = indicator.within_hours
        if indicator.measure == "reperfusion":
            window = max(a.within_minutes for a in indicator.alternatives) / 60
        elapsed = self.facts.hours_since_admission()
        if window is not None and elapsed is not None and elapsed < window:
            return IndicatorResult(indicator, "not_applicable",
                                   f"{elapsed:.1f} h since admission; due within {window:g} h")
        return IndicatorResult(indicator, "not_met", why, [diagnosis] if diagnosis else [])

    def _condition(self, condition: str) -> tuple[bool, str]:
        if condition == "discharged":
            return self.facts.discharged, "not discharged yet (checked again at the terminal check)"
        if condition == "vte_high_risk":
            vte = self.vte
            if vte is None:
                return False, "no VTE risk model applies"
            return vte.high_risk, vte.summary()
        disease = self.knowledge.diseases[condition]
        if disease.threshold is not None and self.facts.measurement(disease.threshold) is not None:
            return True, ""
        if not disease.terms.empty() and self.facts.stated(disease.terms):
            return True, ""
        return False, f"no {disease.name} documented"

    def _contraindication(self, indicator: QualityIndicator) -> Evidence | None:
        if not indicator.contraindications.empty():
            hits = self.facts.stated(indicator.contraindications)
            if hits:
                return hits[0]
        if indicator.drugs or indicator.classes:
            return self.facts.excluded_drug(indicator.drugs, indicator.classes, indicator.allergy_contraindicates)
        return None

    def _window(self, indicator: QualityIndicator, evidence: list[Evidence]) -> list[Evidence]:
        """The evidence timed within the indicator's window after admission (an untimed structured entry
        does not count when a window applies)."""
        if indicator.within_hours is None:
            return evidence
        admitted = self.facts.admitted_at
        kept = []
        for item in evidence:
            elapsed = hours_between(admitted, item.at)
            if elapsed is not None and elapsed <= indicator.within_hours:
                kept.append(item)
        return kept

    def _measure(self, indicator: QualityIndicator) -> tuple[bool, str, list[Evidence]]:
        """(done, why or why not, evidence)."""
        facts, window = self.facts, indicator.within_hours
        when = f" within {window:g} h of admission" if window else ""
        classes = [self.graph.classes[c].name if c in self.graph.classes else c for c in indicator.classes]
        what = " or ".join(indicator.drugs + classes + indicator.terms.en[:2]) or indicator.name
        if indicator.measure == "discharge_prescription":
            found = facts.discharge_prescriptions(indicator.drugs, indicator.classes)
            if found:
                return True, f"prescribed at discharge: {found[0].text}", found[:3]
            return False, f"no {what} among the discharge prescriptions", []
        if indicator.measure in ("given", "documented"):
            if indicator.measure == "given":
                verb, found = "given", facts.given(indicator.drugs, indicator.classes)
                found += facts.stated(indicator.terms) if not indicator.terms.empty() else []
            else:
                verb, found, what = "documented", facts.stated(indicator.terms), indicator.name.lower()
            timed = self._window(indicator, found)
            if timed:
                return True, f"{verb}{when}: {timed[0].text}", timed[:3]
            if found and window:
                return False, f"{what} documented, but not{when}", found[:1]
            return False, f"no {what} documented{when}", []
        if indicator.measure == "reperfusion":
            return self._reperfusion(indicator)
        return self._screen_before_oral(indicator)

    def _reperfusion(self, indicator: QualityIndicator) -> tuple[bool, str, list[Evidence]]:
        late = []
        for alternative in indicator.alternatives:
            for procedure, evidence in self.facts.procedures(alternative.terms):
                hours = hours_between(self.facts.admitted_at, procedure.performed_at)
                if hours is None:
                    late.append(f"{procedure.name} (no time recorded)")
                elif hours * 60 <= alternative.within_minutes:
                    return True, f"{alternative.name} {hours * 60:.0f} min after arrival", [evidence]
                else:
                    late.append(f"{procedure.name} {hours * 60:.0f} min after arrival "
                                f"(limit {alternative.within_minutes} min)")
        if late:
            return False, "reperfusion not in time: " + "; ".join(late), []
        return False, "no reperfusion (PCI or fibrinolysis) recorded", []

    def _screen_before_oral(self, indicator: QualityIndicator) -> tuple[bool, str, list[Evidence]]:
        """The screen documented, and not after the first oral medication (when one has a start time)."""
        screens = self.facts.stated(indicator.terms)
        if not screens:
            return False, f"no {indicator.name.lower()} documented", []
        oral = [m.started_at for m in self.record.medications
                if m.started_at is not None and (m.route or "").strip().lower() in ORAL_ROUTES]
        timed = sorted((s for s in screens if s.at is not None), key=lambda s: as_utc(s.at))
        if not oral:
            return True, f"documented: {screens[0].text}", screens[:1]
        first_oral = min(oral, key=as_utc)
        if not timed:
            return False, "the screen's time is not recorded, so it cannot be shown to precede oral intake", screens[:1]
        if as_utc(timed[0].at) > as_utc(first_oral):
            return False, (f"first oral medication at {first_oral:%Y-%m-%d %H:%M}, before the screen "
                           f"({timed[0].at:%Y-%m-%d %H:%M})"), timed[:1]
        return True, f"documented before oral intake: {timed[0].text}", timed[:1]


def compliance(results: list[dict]) -> dict:
    """Per indicator: counts by status and the rate met / (met + not_met) (None with no eligible record).

    ``results``: dicts with ``indicator``, ``disease`` and ``status`` (as stored or as ``to_json`` gives)."""
    table: dict[str, dict] = {}
    for row in results:
        entry = table.setdefault(row["indicator"], {"disease": row["disease"], **{s: 0 for s in STATUSES}})
        entry[row["status"]] += 1
    for entry in table.values():
        eligible = entry["met"] + entry["not_met"]
        entry["rate"] = round(entry["met"] / eligible, 3) if eligible else None
    return table
