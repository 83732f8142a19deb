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
    department: str | None = None  # the responsible department (科室), for the QC office
    attending: str | None = None  # the responsible doctor's staff id (their user name in the QC office)


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
    started_at: datetime | None = None  # first given (an order's start, an administration time)
    at_discharge: bool = False  # prescribed at discharge (出院带药)


@dataclass
class Procedure:
    """An operation or intervention (PCI, thrombolysis, surgery), with its times where known."""
    name: str
    code: str | None = None
    performed_at: datetime | None = None
    ended_at: datetime | None = None


@dataclass
class Observation:
    """A measurement or assessment: a lab value, BMI, LVEF, a score, a screening result."""
    name: str
    value: float | str | None = None
    unit: str | None = None
    observed_at: datetime | None = None


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
    procedures: list[Procedure] = field(default_factory=list)
    observations: list[Observation] = field(default_factory=list)
    as_of: datetime | None = None  # when this copy was taken from the EMR: in-stay deadlines are judged then

    def to_json(self) -> dict:
        """The project JSON form (see record.schema.json). Fields added for the QC office are left out
        while they hold nothing, so a record without them reads and writes as before."""

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
        _drop_empty(data, OPTIONAL_FIELDS)
        _drop_empty(data["encounter"], OPTIONAL_FIELDS["encounter"])
        for medication in data["medications"]:
            _drop_empty(medication, OPTIONAL_FIELDS["medications"])
        return data


# Optional fields added after the first schema, with the value that means "not given".
OPTIONAL_FIELDS = {"as_of": None, "procedures": [], "observations": [],
                   "encounter": {"department": None, "attending": None},
                   "medications": {"started_at": None, "at_discharge": False}}


def _drop_empty(data: dict, empty: dict) -> None:
    for key, nothing in empty.items():
        if not isinstance(nothing, dict) and key in data and data[key] == nothing:
            del data[key]
