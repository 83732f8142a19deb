"""What a record says, with evidence: the one place the QC office's clinical checks read text.

Single-disease indicators and VTE scores ask a few questions of a record: is this stated (and not
negated, not about a relative)? was this drug given, and when? prescribed at discharge? is the patient
allergic to it? what is the LVEF? which procedures, how long? ``RecordFacts`` answers them from the
structured fields and the notes, each answer with the evidence a reviewer can check (where, the text,
its offsets, and when). It reads today's text layer (``copilot.text``: sections, negation, drug names);
when that layer grows richer (medspaCy context, dates in text) only this module changes.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from datetime import datetime, timezone
from functools import cached_property, lru_cache
from pathlib import Path

import yaml

from copilot.records.model import Document, Procedure, Record
from copilot.text.medications import find_names
from copilot.text.negation import negated
from copilot.text.sections import split_sections
from knowledge.graph import KnowledgeGraph
from knowledge.schema import Terms, Threshold

LAYOUT = yaml.safe_load(Path(__file__).with_name("record_facts.yaml").read_text(encoding="utf-8"))
_CJK = re.compile(r"[\u3400-\u9fff]")
_NOT_THIS = re.compile(r"(?:\bnon[- ]?|非)$", re.I)  # "non-ST-elevation", "非ST段抬高": another concept
_CLAUSE = "，,：:"  # Chinese clauses end at a comma; negation does not reach past one
_NUMBER = r"\s*(?:[:：=]|为|是|约|of|is|was)?\s*(?:约)?\s*(\d+(?:\.\d+)?)"


@dataclass(frozen=True)
class Evidence:
    """Where a fact was found: a span of a note, or a structured field ("medications[2]")."""
    where: str
    text: str
    document: Document | None = None
    start: int | None = None
    end: int | None = None
    at: datetime | None = None  # when: the field's own time, or when the note saying it was written
    value: float | None = None

    def to_json(self) -> dict:
        data = {"where": self.where, "text": self.text[:200]}
        if self.document is not None:
            data.update(document_id=self.document.id, start=self.start, end=self.end)
        if self.at is not None:
            data["at"] = self.at.isoformat()
        if self.value is not None:
            data["value"] = self.value
        return data


@lru_cache(maxsize=4096)
def term_pattern(term: str) -> re.Pattern:
    """Chinese terms match as substrings; others as whole words, any case."""
    if _CJK.search(term):
        return re.compile(re.escape(term))
    return re.compile(r"(?<![A-Za-z0-9])" + re.escape(term) + r"(?![A-Za-z0-9])", re.I)


@lru_cache(maxsize=64)
def _cue_pattern(cues: tuple[str, ...]) -> re.Pattern:
    parts = [re.escape(c) if _CJK.search(c) else r"\b" + re.escape(c) for c in cues]
    return re.compile("|".join(parts), re.I)


def _headers(key: str) -> set[str]:
    return {h.lower() for h in LAYOUT[key]}


def _family_cue() -> re.Pattern:
    return _cue_pattern(tuple(h for h in LAYOUT["family_history"] if len(h) > 2))


ALL_HEADERS = frozenset(h.lower() for key in ("family_history", "discharge_medications", "diagnosis_sections",
                                               "other_headers") for h in LAYOUT[key])


def code_matches(code: str | None, prefixes: list[str]) -> bool:
    code = (code or "").upper().replace(" ", "")
    return bool(code) and any(code.startswith(p.upper()) for p in prefixes)


def as_utc(moment: datetime | None) -> datetime | None:
    """A record time in UTC; a time without a zone is taken as the server's local time."""
    if moment is None:
        return None
    return moment.astimezone(timezone.utc)


def hours_between(start: datetime | None, end: datetime | None) -> float | None:
    if start is None or end is None:
        return None
    return (as_utc(end) - as_utc(start)).total_seconds() / 3600


class RecordFacts:
    """Questions about one record (cheap to build; each note's sections are read once)."""

    def __init__(self, record: Record, graph: KnowledgeGraph):
        self.record = record
        self.graph = graph
        self._section_cache: dict[str, list] = {}

    # -- the stay --------------------------------------------------------------------------
    @property
    def admitted_at(self) -> datetime | None:
        return self.record.encounter.admitted_at

    @property
    def inpatient(self) -> bool:
        return self.record.encounter.type == "inpatient"

    @property
    def discharged(self) -> bool:
        return self.record.encounter.discharged_at is not None

    @property
    def whole_chart(self) -> bool:
        """A record that says when it was taken from the EMR (``as_of``) is the whole chart up to then, so
        what it lacks is missing. A record without it may be one note (the sidebar's QC, a partial
        export): nothing is concluded from what it does not contain."""
        return self.record.as_of is not None

    @cached_property
    def reference_time(self) -> datetime | None:
        """The time the record describes: when it was taken from the EMR, else discharge, else its newest
        note (a record is at least as new as the latest thing written in it)."""
        if self.record.as_of is not None:
            return self.record.as_of
        if self.record.encounter.discharged_at is not None:
            return self.record.encounter.discharged_at
        times = [t for d in self.record.documents for t in (d.signed_at, d.authored_at) if t is not None]
        return max(times, key=as_utc) if times else None

    def hours_since_admission(self) -> float | None:
        return hours_between(self.admitted_at, self.reference_time)

    @cached_property
    def age(self) -> int | None:
        patient = self.record.patient
        if patient.age is not None:
            return patient.age
        if patient.birth_date is not None and self.admitted_at is not None:
            on, birth = self.admitted_at.date(), patient.birth_date
            return on.year - birth.year - ((on.month, on.day) < (birth.month, birth.day))
        return None

    # -- notes ------------------------------------------------------------------------------
    @staticmethod
    def written_at(document: Document) -> datetime | None:
        return document.authored_at or document.signed_at

    def _sections(self, document_id: str):
        if document_id not in self._section_cache:
            document = next(d for d in self.record.documents if d.id == document_id)
            self._section_cache[document_id] = split_sections(document.text, set(ALL_HEADERS))
        return self._section_cache[document_id]

    def _section_key(self, document: Document, offset: int) -> str | None:
        for section in self._sections(document.id):
            if section.start <= offset < section.end:
                return section.key
        return None

    def in_family_history(self, document: Document, start: int, end: int | None = None) -> bool:
        """Under a family-history header, or on a line that says "family history" / "家族史" before the
        mention ends ("family history of DVT")."""
        if self._section_key(document, start) in _headers("family_history"):
            return True
        line = document.text[document.text.rfind("\n", 0, start) + 1:end or start]
        return bool(_family_cue().search(line))

    @staticmethod
    def _clause_start(text: str, start: int) -> int:
        return max(text.rfind(c, 0, start) for c in _CLAUSE + "\n.;。；!?！？") + 1

    def is_negated(self, text: str, start: int) -> bool:
        """The text layer's negation cue test, kept to the clause of the mention (Chinese lists and
        clauses are joined by commas: "未诉胸痛，予阿司匹林" gives aspirin) and stopped by a termination
        term ("not started because of hyperkalemia" states the hyperkalemia)."""
        scope = 0
        if _CJK.search(text[max(0, start - 20):start + 1]):
            scope = self._clause_start(text, start)
        sentence = max(text.rfind(c, 0, start) for c in ".\n;!?。；") + 1
        ends = list(_cue_pattern(tuple(LAYOUT["negation_ends"])).finditer(text, max(scope, sentence), start))
        if ends:
            scope = max(scope, ends[-1].end())
        return negated(text[scope:], start - scope)

    def _affirmed(self, document: Document, start: int, end: int, family: bool) -> bool:
        text = document.text
        if _NOT_THIS.search(text[max(0, start - 4):start]):
            return False
        if self.is_negated(text, start):
            return False
        return self.in_family_history(document, start, end) == family

    def text_mentions(self, terms: Terms, family: bool = False) -> list[Evidence]:
        """Affirmed mentions of any term in the notes (longest first where two overlap)."""
        found: list[Evidence] = []
        words = terms.en + terms.zh
        for document in self.record.documents:
            spans: list[tuple[int, int]] = []
            for term in sorted(words, key=len, reverse=True):
                for match in term_pattern(term).finditer(document.text):
                    start, end = match.span()
                    if any(s < end and start < e for s, e in spans):
                        continue
                    spans.append((start, end))
                    if self._affirmed(document, start, end, family):
                        found.append(Evidence(f"documents[{document.id}]", match.group(), document, start, end,
                                              self.written_at(document)))
        return sorted(found, key=lambda e: (as_utc(e.at) or datetime.max.replace(tzinfo=timezone.utc),
                                            e.document.id, e.start))

    # -- structured fields --------------------------------------------------------------------
    def diagnosis_mentions(self, terms: Terms, exclude: Terms | None = None, principal: bool = False) -> list[Evidence]:
        found = []
        diagnoses = self.record.diagnoses[:1] if principal else self.record.diagnoses
        for index, diagnosis in enumerate(diagnoses):
            text = diagnosis.text
            if exclude is not None and any(term_pattern(t).search(text) for t in exclude.en + exclude.zh):
                continue
            by_code = code_matches(diagnosis.code, terms.codes)
            by_text = any(self.mentions_term(text, t) for t in terms.en + terms.zh)
            if by_code or by_text:
                label = f"{diagnosis.code} {text}" if diagnosis.code else text
                found.append(Evidence(f"diagnoses[{index}]", label, at=self.admitted_at))
        return found

    @staticmethod
    def mentions_term(text: str, term: str) -> bool:
        """Whether ``term`` is in a short text (a diagnosis, a procedure name), and not as "non-..."."""
        return any(not _NOT_THIS.search(text[max(0, m.start() - 4):m.start()]) for m in term_pattern(term).finditer(text))

    def principal_diagnosis_text(self) -> Evidence | None:
        """The first line under a diagnosis header of the notes, when the record lists no diagnoses."""
        for document in self.record.documents:
            for section in self._sections(document.id):
                if section.key in _headers("diagnosis_sections"):
                    body = document.text[section.body_start:section.end]
                    for line in body.splitlines():
                        stripped = line.strip().lstrip("0123456789.、)） ").strip()
                        if stripped:
                            start = document.text.index(stripped, section.body_start)
                            return Evidence(f"documents[{document.id}]", stripped, document, start,
                                            start + len(stripped), self.written_at(document))
        return None

    def stated(self, terms: Terms, family: bool = False) -> list[Evidence]:
        """Anywhere in the record: diagnoses, procedures, observation names and the notes."""
        found = [] if family else self.diagnosis_mentions(terms)
        if not family:
            for index, procedure in enumerate(self.record.procedures):
                if any(self.mentions_term(procedure.name, t) for t in terms.en + terms.zh) or code_matches(procedure.code, terms.codes):
                    found.append(Evidence(f"procedures[{index}]", procedure.name, at=procedure.performed_at))
            for index, observation in enumerate(self.record.observations):
                if any(self.mentions_term(observation.name, t) for t in terms.en + terms.zh):
                    found.append(Evidence(f"observations[{index}]", f"{observation.name}: {observation.value}",
                                          at=observation.observed_at))
        return found + self.text_mentions(terms, family)

    def procedures(self, terms: Terms) -> list[tuple[Procedure, Evidence]]:
        """Structured procedures whose name holds one of the terms (a substring, any case: procedure names are
        labels such as "Laparoscopic cholecystectomy", where "ectomy" or "laparoscop" should match)."""
        found = []
        words = [t.lower() for t in terms.en + terms.zh]
        for index, procedure in enumerate(self.record.procedures):
            name = procedure.name.lower()
            if any(w in name for w in words) or code_matches(procedure.code, terms.codes):
                found.append((procedure, Evidence(f"procedures[{index}]", procedure.name, at=procedure.performed_at)))
        return found

    def measurement(self, threshold: Threshold) -> Evidence | None:
        """The first value of one of the threshold's names that meets it: structured observations first,
        then "LVEF 35%" / "射血分数35%" / "BMI 31.2" in the notes."""
        names = {n.lower() for n in threshold.names}
        for index, observation in enumerate(self.record.observations):
            value = _number(observation.value)
            if observation.name.strip().lower() in names and value is not None and _meets(value, threshold):
                return Evidence(f"observations[{index}]", f"{observation.name} {observation.value}"
                                f"{observation.unit or ''}", at=observation.observed_at, value=value)
        for document in self.record.documents:
            for name in threshold.names:
                pattern = re.compile(term_pattern(name).pattern + _NUMBER, re.I)
                for match in pattern.finditer(document.text):
                    value = float(match.group(1))
                    if _meets(value, threshold) and not self.is_negated(document.text, match.start()):
                        return Evidence(f"documents[{document.id}]", match.group(), document, match.start(),
                                        match.end(), self.written_at(document), value)
        return None

    # -- drugs --------------------------------------------------------------------------------
    def _drug_matches(self, name: str, drugs: set[str], classes: set[str]):
        drug = self.graph.resolve_drug(name)
        if drug is None:
            first = next(find_names(name, self.graph), None)
            drug = self.graph.drugs.get(first[2]) if first else None
        if drug is None:
            return None
        return drug if drug.name in drugs or self.graph.classes_of(drug) & classes else None

    def given(self, drugs: list[str], classes: list[str]) -> list[Evidence]:
        """The drugs (or members of the classes) the record shows as given: the structured list (with
        its start time) and affirmed mentions in the notes that are not stopped, refused or allergies."""
        drugs_set, classes_set = set(drugs), set(classes)
        found = []
        for index, medication in enumerate(self.record.medications):
            drug = self._drug_matches(medication.name, drugs_set, classes_set)
            if drug is not None:
                found.append(Evidence(f"medications[{index}]", medication.name, at=medication.started_at))
        not_given = _cue_pattern(tuple(LAYOUT["not_given"]))
        for document in self.record.documents:
            text = document.text
            for start, end, generic in find_names(text, self.graph):
                drug = self.graph.drugs.get(generic)
                if drug is None or not (drug.name in drugs_set or self.graph.classes_of(drug) & classes_set):
                    continue
                clause = text[self._clause_start(text, start):min(len(text), end + 12)]
                if not_given.search(clause) or not self._affirmed(document, start, end, family=False):
                    continue
                found.append(Evidence(f"documents[{document.id}]", text[start:end], document, start, end,
                                      self.written_at(document)))
        return found

    def discharge_prescriptions(self, drugs: list[str], classes: list[str]) -> list[Evidence]:
        """Drugs prescribed at discharge: structured ``at_discharge`` entries, and drugs named under a
        discharge-medication header (出院带药, Discharge medications)."""
        given = self.given(drugs, classes)
        found = []
        for evidence in given:
            if evidence.document is None:
                index = int(evidence.where[len("medications["):-1])
                if self.record.medications[index].at_discharge:
                    found.append(evidence)
            elif self._section_key(evidence.document, evidence.start) in _headers("discharge_medications"):
                found.append(evidence)
        return found

    def excluded_drug(self, drugs: list[str], classes: list[str], allergies: bool = True) -> Evidence | None:
        """An allergy to the drugs (or to a whole class the indicator asks for: an allergy to one beta-blocker
        leaves the others), or the drug or class named beside "contraindicated", "过敏", "不耐受" in a note."""
        if allergies:
            for index, allergy in enumerate(self.record.patient.allergies):
                allergen_drugs, allergen_classes = self.graph.resolve_allergen(allergy)
                if allergen_drugs & set(drugs) or allergen_classes & set(classes):
                    return Evidence(f"patient.allergies[{index}]", allergy)
        cues = _cue_pattern(tuple(LAYOUT["contraindication_cues"]))
        names = set(drugs)
        for class_id in classes:
            drug_class = self.graph.classes.get(class_id)
            if drug_class is not None:
                names.update([drug_class.name, *drug_class.names_zh])
        for document in self.record.documents:
            text = document.text
            spans = [(m.start(), m.end()) for n in names for m in term_pattern(n).finditer(text)]
            spans += [(s, e) for s, e, g in find_names(text, self.graph)
                      if g in drugs or self.graph.classes_of(g) & set(classes)]
            for start, end in sorted(spans):
                clause_start = self._clause_start(text, start)
                clause_end = min([i for i in (text.find(c, end) for c in _CLAUSE + "\n.;。；") if i != -1] or [len(text)])
                if cues.search(text[clause_start:clause_end]) and not self.is_negated(text, start):
                    return Evidence(f"documents[{document.id}]", text[clause_start:clause_end].strip(), document,
                                    start, end, self.written_at(document))
        return None


def _number(value) -> float | None:
    if isinstance(value, (int, float)) and not isinstance(value, bool):
        return float(value)
    if isinstance(value, str):
        match = re.search(r"\d+(?:\.\d+)?", value)
        return float(match.group()) if match else None
    return None


def _meets(value: float, threshold: Threshold) -> bool:
    if threshold.above is not None:
        return value > threshold.above
    if threshold.at_least is not None:
        return value >= threshold.at_least
    return value < threshold.below
