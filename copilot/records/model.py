"""The internal record every loader produces and every consumer (QC, drafting) reads.

Plain dataclasses: the loaders do the validating, so code downstream can trust types.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from datetime import date, datetime

SEXES = ("male", "female", "other", "unknown")
ENCOUNTER_TYPES = ("outpatient", "inpatient", "emergency")
DOCUMENT_TYPES = ("progress_note", "admission_note", "discharge_summary", "operative_note", "first_course_record")
MAX_TEXT_BYTES = 2 * 1024 * 1024  # one document; a larger "note" is an export error, not a note


class RecordError(ValueError):
    """Input that cannot become a record; the message says what is wrong and where."""


@dataclass
class Patient:
    sex: str = "unknown"
    age: int | None = None
    birth_date: date | None = None
    allergies: list[str] = field(default_factory=list)


@dataclass
class Encounter:
    type: str = "outpatient"
    admitted_at: datetime | None = None
    discharged_at: datetime | None = None


@dataclass
class Document:
    id: str
    type: str
    text: str
    authored_at: datetime | None = None
    signed_at: datetime | None = None


@dataclass
class Medication:
    name: str
    dose: float | None = None
    unit: str | None = None
    route: str | None = None
    frequency: str | None = None


@dataclass
class Diagnosis:
    text: str
    code: str | None = None


@dataclass
class Record:
    id: str
    patient: Patient = field(default_factory=Patient)
    encounter: Encounter = field(default_factory=Encounter)
    documents: list[Document] = field(default_factory=list)
    medications: list[Medication] = field(default_factory=list)
    diagnoses: list[Diagnosis] = field(default_factory=list)
    origin: str = ""  # where it was read from (file, file:line), for error messages

    def to_json(self) -> dict:
        """The project JSON form (see record.schema.json)."""

        def plain(value):
            if isinstance(value, (date, datetime)):
                return value.isoformat()
            if isinstance(value, dict):
                return {k: plain(v) for k, v in value.items()}
            if isinstance(value, list):
                return [plain(v) for v in value]
            return value

        data = plain(asdict(self))
        data.pop("origin")
        return data
