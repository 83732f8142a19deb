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


MODELS: dict[str, type[Item]] = {
    "drug": Drug, "drug_class": DrugClass, "interaction": Interaction, "abbreviation": Abbreviation,
    "note_type": NoteType, "time_limit": TimeLimit, "passage": Passage,
}
