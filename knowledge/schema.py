"""What a knowledge item must look like, kind by kind (pydantic models).

Unknown keys are refused: a misspelt field in a clinical source must fail the build,
not be silently ignored.
"""

from __future__ import annotations

import re
from datetime import date
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

MAX_REVIEW_DAYS = 183  # "a review cycle of at most six months"
ID_PATTERN = r"^[a-z0-9][a-z0-9._-]*$"
POPULATIONS = Literal["pregnancy", "lactation", "pediatric", "geriatric", "male", "female", "renal", "hepatic"]
DOCUMENT_TYPES = Literal["progress_note", "admission_note", "discharge_summary", "operative_note", "first_course_record",
                         "rescue_record", "death_record"]


class Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", str_strip_whitespace=True, frozen=True)


class Source(Strict):
    title: str = Field(min_length=3)
    issuer: str = Field(min_length=2)
    section: str | None = None
    url: str = Field(min_length=5)


class Item(Strict):
    id: str = Field(pattern=ID_PATTERN)
    kind: str
    version: str
    reviewed: date
    effective: date
    review_by: date
    status: Literal["active", "retired"]
    retired_reason: str | None = None
    retired_by: str | None = None
    retired_at: str | None = None
    source: Source
    note: str | None = None

    @model_validator(mode="after")
    def _dates_and_status(self):
        if self.review_by <= self.reviewed:
            raise ValueError(f"review_by {self.review_by} is not after reviewed {self.reviewed}")
        if (self.review_by - self.reviewed).days > MAX_REVIEW_DAYS:
            raise ValueError(f"review_by {self.review_by} is more than six months ({MAX_REVIEW_DAYS} days) "
                             f"after reviewed {self.reviewed}")
        if self.effective > self.review_by:
            raise ValueError(f"effective {self.effective} is after review_by {self.review_by}")
        if self.status == "retired" and not self.retired_reason:
            raise ValueError("a retired item needs retired_reason")
        prefix = self.id.split(".", 1)[0]
        if prefix not in PREFIXES.get(self.kind, (self.kind,)):
            raise ValueError(f"id {self.id!r} must start with {' or '.join(PREFIXES.get(self.kind, (self.kind,)))}.")
        return self


PREFIXES = {"abbreviation": ("abbr",), "interaction": ("ddi",)}


class Dose(Strict):
    value: float = Field(gt=0)
    unit: Literal["mg", "mcg", "g", "units", "mEq", "mL", "mmol"]
    route: str
    note: str | None = None


class Caution(Strict):
    population: POPULATIONS
    text: str


class Drug(Item):
    name: str = Field(pattern=r"^[a-z0-9][a-z0-9 ,/()+-]*$")
    names_zh: list[str] = []
    brands: list[str] = []
    synonyms: list[str] = []
    classes: list[str] = Field(min_length=1)
    max_daily_dose: Dose | None
    allergy_groups: list[str] = []
    cautions: list[Caution] = []
    contraindicated_in: list[str] = []


class CrossReaction(Strict):
    model_config = ConfigDict(extra="forbid", populate_by_name=True, frozen=True)
    class_: str = Field(alias="class")
    note: str


class DrugClass(Item):
    name: str
    names_zh: list[str] = []
    synonyms: list[str] = []  # how allergy lists name the class: "sulfa", "PCN", "NSAIDs"
    parent: str | None = None
    duplicate_therapy: bool = False
    cross_reacts_with: list[CrossReaction] = []


class Party(Strict):
    drugs: list[str] = []
    classes: list[str] = []

    @model_validator(mode="after")
    def _not_empty(self):
        if not self.drugs and not self.classes:
            raise ValueError("an interaction side needs drugs or classes")
        return self


class Interaction(Item):
    a: Party
    b: Party
    severity: Literal["contraindicated", "major"]
    effect: str
    management: str


class Abbreviation(Item):
    abbreviation: str
    pattern: str
    intended: str
    problem: str
    use_instead: str
    list: Literal["tjc_do_not_use", "ismp_error_prone"]
    examples_match: list[str] = []
    examples_nomatch: list[str] = []

    @model_validator(mode="after")
    def _pattern_works(self):
        try:
            compiled = re.compile(self.pattern)
        except re.error as exc:
            raise ValueError(f"pattern does not compile: {exc}") from exc
        for text in self.examples_match:
            if not compiled.search(text):
                raise ValueError(f"pattern misses its own example {text!r}")
        for text in self.examples_nomatch:
            if compiled.search(text):
                raise ValueError(f"pattern matches its counter-example {text!r}")
        return self


class Section(Strict):
    id: str = Field(pattern=ID_PATTERN)
    name: str
    headers: list[str] = Field(min_length=1)


class NoteType(Item):
    name: str
    names_zh: list[str] = []
    document_type: DOCUMENT_TYPES
    setting: str | None = None
    jurisdiction: Literal["CN", "US"] | None = None
    required_sections: list[Section] = Field(min_length=1)


class TimeLimit(Item):
    document_type: DOCUMENT_TYPES
    jurisdiction: Literal["CN", "US"]
    hours: float = Field(ge=0)
    anchor: Literal["admitted_at", "discharged_at", "encounter_start", "procedure_end", "event_time"]
    text: str


class Passage(Item):
    title: str
    text: str
    topics: list[str] = Field(min_length=1)

    @field_validator("text")
    @classmethod
    def _length(cls, text: str) -> str:
        words = len(text.split())
        if not 20 <= words <= 400:
            raise ValueError(f"passage text has {words} words; expected 20 to 400")
        return text


class Terms(Strict):
    """How a concept shows in a record: words in English and Chinese notes, and ICD-10 code prefixes
    (``I21`` matches I21.0-I21.9) of structured diagnoses."""
    en: list[str] = []
    zh: list[str] = []
    codes: list[str] = []

    def empty(self) -> bool:
        return not (self.en or self.zh or self.codes)

    def words(self) -> str:
        return ", ".join(self.en[:4] + self.zh[:4] + self.codes[:4])


class Threshold(Strict):
    """A measurement that makes a concept true: one of ``names`` (observation names, or words in the
    note followed by the number) with a value above/at least/below the limit."""
    names: list[str] = Field(min_length=1)
    above: float | None = None
    at_least: float | None = None
    below: float | None = None

    @model_validator(mode="after")
    def _one_limit(self):
        if sum(x is not None for x in (self.above, self.at_least, self.below)) != 1:
            raise ValueError("a threshold needs exactly one of above, at_least, below")
        return self


class Disease(Item):
    """A disease or state a QC indicator or risk factor is about, as the record shows it."""
    name: str
    name_zh: str
    terms: Terms = Terms()
    threshold: Threshold | None = None

    @model_validator(mode="after")
    def _recognisable(self):
        if self.terms.empty() and self.threshold is None:
            raise ValueError("a disease needs terms or a threshold to be recognised")
        return self

    def index_text(self) -> str:
        return f"{self.name} ({self.name_zh}): {self.terms.words()}"


class TimedProcedure(Strict):
    terms: Terms
    within_minutes: int = Field(gt=0)
    name: str


class QualityIndicator(Item):
    """A single-disease (单病种) or VTE quality indicator: which patients it applies to, what must be
    documented or done (and by when), and what documented contraindication excuses it."""
    disease: str  # a disease id without its prefix, or "inpatient" (every inpatient stay)
    name: str
    name_zh: str
    measure: Literal["given", "discharge_prescription", "documented", "reperfusion", "screen_before_oral"]
    drugs: list[str] = []  # generic names (knowledge drugs)
    classes: list[str] = []  # drug class ids
    terms: Terms = Terms()  # words that show it was done (an assessment, a non-drug measure)
    within_hours: float | None = Field(None, gt=0)  # of admission (arrival)
    alternatives: list[TimedProcedure] = []  # reperfusion: any one of these, in time
    applies_when: list[str] = []  # disease ids that must also be present, or: discharged, vte_high_risk
    contraindications: Terms = Terms()
    allergy_contraindicates: bool = True  # an allergy to the drugs (or their classes) excuses it

    @model_validator(mode="after")
    def _measurable(self):
        if self.measure in ("given", "discharge_prescription") and not (self.drugs or self.classes or self.terms.en
                                                                        or self.terms.zh):
            raise ValueError(f"measure {self.measure} needs drugs, classes or terms")
        if self.measure in ("documented", "screen_before_oral") and self.terms.empty():
            raise ValueError(f"measure {self.measure} needs terms")
        if self.measure == "reperfusion" and not self.alternatives:
            raise ValueError("measure reperfusion needs alternatives")
        return self

    def index_text(self) -> str:
        return f"Quality indicator for {self.disease.replace('_', ' ')}: {self.name} ({self.name_zh})."


class RiskFactor(Strict):
    id: str = Field(pattern=r"^[a-z0-9_]+$")
    name: str
    name_zh: str
    points: int = Field(ge=1, le=10)
    group: str | None = None  # only the highest-scoring factor of a group counts
    terms: Terms = Terms()
    family: bool = False  # found only in the family history
    age_min: int | None = None
    age_max: int | None = None
    sex: Literal["female", "male"] | None = None
    threshold: Threshold | None = None
    procedure: Terms | None = None  # a structured procedure with one of these names
    min_minutes: int | None = None  # ... lasting longer than this
    max_minutes: int | None = None  # ... or at most this long

    @model_validator(mode="after")
    def _detectable(self):
        if self.terms.empty() and self.age_min is None and self.threshold is None and self.procedure is None:
            raise ValueError(f"risk factor {self.id} needs terms, an age range, a threshold or a procedure")
        return self


class RiskBand(Strict):
    name: Literal["very_low", "low", "moderate", "high"]
    name_zh: str
    min_score: int = Field(ge=0)


class RiskModel(Item):
    """A VTE risk assessment model (Caprini for surgical, Padua for medical inpatients)."""
    name: str
    name_zh: str
    population: Literal["surgical", "medical"]
    population_terms: Terms = Terms()  # procedures that make a stay surgical
    factors: list[RiskFactor] = Field(min_length=1)
    bands: list[RiskBand] = Field(min_length=2)

    @model_validator(mode="after")
    def _bands(self):
        if min(b.min_score for b in self.bands) != 0:
            raise ValueError("the lowest risk band must start at 0")
        if len({f.id for f in self.factors}) != len(self.factors):
            raise ValueError("factor ids must be unique")
        return self

    def index_text(self) -> str:
        return (f"{self.name} ({self.name_zh}) VTE risk score for {self.population} inpatients: "
                + "; ".join(f"{f.name} {f.points}" for f in self.factors[:30]))


PREFIXES["quality_indicator"] = ("qi",)
PREFIXES["risk_model"] = ("risk_model",)

MODELS: dict[str, type[Item]] = {
    "drug": Drug, "drug_class": DrugClass, "interaction": Interaction, "abbreviation": Abbreviation,
    "note_type": NoteType, "time_limit": TimeLimit, "passage": Passage,
    "disease": Disease, "quality_indicator": QualityIndicator, "risk_model": RiskModel,
}
