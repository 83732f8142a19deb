"""FHIR R4 Bundle -> Record.

Parsing goes through fhir.resources' R4B models (wire-compatible with R4 for every resource
read here) so a malformed export is rejected with the path of the first bad element instead
of surfacing later as a wrong note. Only the resource types mapped below are validated:
a bundle from a real EHR carries Observations, Practitioners and vendor resources that the
copilot never reads, and one bad Observation must not stop the QC of a good note.
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from datetime import date, datetime, time
from html.parser import HTMLParser
from typing import Any

from fhir.resources.R4B import get_fhir_model_class
from pydantic import ValidationError

from copilot.records.model import (MAX_TEXT_BYTES, SEXES, Diagnosis, Document, Encounter, Medication, Patient, Record,
                                   RecordError)

MAPPED_TYPES = frozenset({"Patient", "Encounter", "AllergyIntolerance", "MedicationRequest", "MedicationStatement",
                          "Medication", "Condition", "DocumentReference", "Composition"})
LOINC = "http://loinc.org"
ICD10_SYSTEMS = frozenset({"http://hl7.org/fhir/sid/icd-10-cm", "http://hl7.org/fhir/sid/icd-10"})
DOCUMENT_TYPE_BY_LOINC = {
    "11506-3": "progress_note",
    "34117-2": "admission_note",
    "47039-3": "admission_note",
    "18842-5": "discharge_summary",
    "11504-8": "operative_note",
}
ATTENDING_TYPES = frozenset({"ATND", "PPRF"})  # v3 ParticipationType: attender, primary performer
ENCOUNTER_TYPE_BY_CLASS = {"IMP": "inpatient", "ACUTE": "inpatient", "NONAC": "inpatient", "EMER": "emergency"}
# A medication that was never given, or an entry recorded by mistake, is not on the patient's list.
SKIPPED_MEDICATION_STATUSES = frozenset({"entered-in-error", "cancelled", "not-taken"})
DOSAGE_FIELD = {"MedicationRequest": "dosageInstruction", "MedicationStatement": "dosage"}
SKIPPED_VERIFICATION = frozenset({"refuted", "entered-in-error"})
SIGNED_STATUSES = frozenset({"final", "amended"})
# SNOMED CT "no known ... allergy" codes (as the IPS uses them): they assert an absence, so
# listing them as allergies would turn "NKDA" into an allergen.
NO_KNOWN_ALLERGY_CODES = frozenset({"716186003", "409137002", "429625007", "428607008"})

Resource = Any  # a fhir.resources model instance


def bundle_to_record(data: dict, origin: str = "") -> Record:
    """A FHIR R4 Bundle (parsed JSON) -> Record; RecordError says what is wrong and where."""
    bundle, entries = _parse(data)
    resources = _Resources(bundle, entries)
    documents = _documents(resources)
    if not documents:
        raise RecordError("bundle has no clinical document (DocumentReference or Composition)"
                          + _documents_hint(resources))
    encounter = _encounter(resources)
    return Record(
        id=_record_id(bundle, resources),
        patient=_patient(resources, encounter.admitted_at),
        encounter=encounter,
        documents=documents,
        medications=_medications(resources),
        diagnoses=_diagnoses(resources),
        origin=origin,
    )


# Parsing -----------------------------------------------------------------------------------


def _parse(data: object) -> tuple[Resource, list[tuple[int, Resource]]]:
    """Validate the bundle's own elements, then each mapped resource on its own.

    Resources are validated one by one (rather than the whole bundle at once) so that unknown
    or unmapped types can be skipped and an error names the entry it came from.
    """
    if not isinstance(data, dict) or data.get("resourceType") != "Bundle":
        raise RecordError("a FHIR Bundle (a JSON object with resourceType \"Bundle\") is expected")
    entries = data.get("entry")
    if entries is None:
        entries = []
    if not isinstance(entries, list):
        raise RecordError("FHIR Bundle entry: expected a list of entries")
    shell = {**data, "entry": [_without_resource(entry) for entry in entries]} if entries else data
    bundle = _validate("Bundle", shell, "")
    parsed = []
    for index, entry in enumerate(entries):
        resource = entry.get("resource")
        if resource is None:
            continue
        where = f"entry/{index}/resource"
        if not isinstance(resource, dict):
            raise RecordError(f"FHIR {where}: a resource must be a JSON object")
        kind = resource.get("resourceType")
        if not isinstance(kind, str) or not kind:
            raise RecordError(f"FHIR {where}: resourceType is missing")
        if kind in MAPPED_TYPES:
            parsed.append((index, _validate(kind, resource, where)))
    return bundle, parsed


def _without_resource(entry: object) -> object:
    return {k: v for k, v in entry.items() if k != "resource"} if isinstance(entry, dict) else entry


def _validate(kind: str, data: dict, where: str) -> Resource:
    try:
        return get_fhir_model_class(kind).model_validate(data)
    except ValidationError as exc:
        raise RecordError(_describe(exc, kind, where)) from None
    except (KeyError, TypeError, ValueError) as exc:
        # fhir.resources raises KeyError for an unknown type nested in `contained`.
        raise RecordError(f"FHIR {kind} {where or '(bundle)'}: not valid FHIR R4 "
                          f"({type(exc).__name__}: {exc})") from None


def _describe(exc: ValidationError, kind: str, where: str) -> str:
    errors = exc.errors()
    first = errors[0]
    path = "/".join([where] * bool(where) + [str(p) for p in first["loc"] if p != "root"]) or "(resource)"
    message = first["msg"].removeprefix("Value error, ")
    more = f" (and {len(errors) - 1} more)" if len(errors) > 1 else ""
    return f"FHIR {kind} {path}: {message}{more}"


class _Resources:
    """The bundle's mapped resources in entry order, plus every name a reference may use."""

    def __init__(self, bundle: Resource, entries: list[tuple[int, Resource]]):
        self.entries = entries
        self.by_reference: dict[str, Resource] = {}
        for index, resource in entries:
            if resource.id:
                self.by_reference[f"{resource.get_resource_type()}/{resource.id}"] = resource
            full_url = bundle.entry[index].fullUrl
            if full_url:
                self.by_reference[full_url] = resource

    def of_type(self, kind: str) -> Iterator[tuple[int, Resource]]:
        return ((i, r) for i, r in self.entries if r.get_resource_type() == kind)

    def first(self, kind: str) -> Resource | None:
        return next((r for _, r in self.of_type(kind)), None)

    def resolve(self, reference: str | None, holder: Resource) -> Resource | None:
        """A literal reference -> the resource: contained (#id), a fullUrl, or Type/id."""
        if not reference:
            return None
        if reference.startswith("#"):
            return next((c for c in holder.contained or [] if c.id == reference[1:]), None)
        if reference in self.by_reference:
            return self.by_reference[reference]
        return self.by_reference.get("/".join(reference.rstrip("/").split("/")[-2:]))


# Small readers -----------------------------------------------------------------------------


def _concept_text(concept: Resource | None) -> str | None:
    """What a clinician would read: CodeableConcept.text, else the first coding's display."""
    if concept is None:
        return None
    if concept.text and concept.text.strip():
        return concept.text.strip()
    return next((c.display.strip() for c in concept.coding or [] if c.display and c.display.strip()), None)


def _codes(concept: Resource | None) -> set[str]:
    return {c.code for c in (concept.coding or []) if c.code} if concept is not None else set()


def _datetime(value: date | datetime | str | None) -> datetime | None:
    """FHIR dateTime -> datetime. A date alone is midnight; a partial date (year, year-month)
    is too vague to act on as a time, so it maps to None."""
    if isinstance(value, datetime):
        return value
    if isinstance(value, date):
        return datetime.combine(value, time())
    return None


def _number(value) -> str:
    return format(value.normalize(), "f") if hasattr(value, "normalize") else str(value)


# Record id, patient, encounter ---------------------------------------------------------------


def _record_id(bundle: Resource, resources: _Resources) -> str:
    candidates = [bundle.id] + [getattr(resources.first(kind), "id", None)
                                for kind in ("Encounter", "Composition", "Patient")]
    found = next((c for c in candidates if c), None)
    if not found:
        raise RecordError("bundle has no id")
    return found


def _patient(resources: _Resources, encounter_start: datetime | None) -> Patient:
    found = next(resources.of_type("Patient"), None)
    patient = Patient(allergies=_allergies(resources))
    if found is None:
        return patient
    index, resource = found
    if resource.gender is not None:
        if resource.gender not in SEXES:
            raise RecordError(f"FHIR Patient entry/{index}/resource/gender: {resource.gender!r} is not one of "
                              + ", ".join(SEXES))
        patient.sex = resource.gender
    if isinstance(resource.birthDate, date):
        patient.birth_date = resource.birthDate
        patient.age = _age(resource.birthDate, encounter_start)
    return patient


def _age(birth: date, at: datetime | None) -> int | None:
    """Whole years at the encounter start; unknown without one rather than "today", which
    would make a re-run of an old record disagree with the note."""
    if at is None or at.date() < birth:
        return None
    on = at.date()
    return on.year - birth.year - ((on.month, on.day) < (birth.month, birth.day))


def _encounter(resources: _Resources) -> Encounter:
    resource = resources.first("Encounter")
    if resource is None:
        return Encounter()
    code = resource.class_fhir.code if resource.class_fhir else None
    period = resource.period
    return Encounter(type=ENCOUNTER_TYPE_BY_CLASS.get(code, "outpatient"),
                     admitted_at=_datetime(period.start) if period else None,
                     discharged_at=_datetime(period.end) if period else None,
                     department=_reference_name(resource.serviceProvider),
                     attending=_attending(resource))


def _reference_name(reference: Resource | None) -> str | None:
    """Who a Reference names, as the QC office files it: the identifier's value, else the id in
    ``Type/id``, else the display text."""
    if reference is None:
        return None
    if reference.identifier is not None and reference.identifier.value:
        return reference.identifier.value.strip()[:100]
    if reference.reference and "/" in reference.reference and not reference.reference.startswith("#"):
        return reference.reference.rstrip("/").split("/")[-1][:100]
    return reference.display.strip()[:100] if reference.display and reference.display.strip() else None


def _attending(encounter: Resource) -> str | None:
    """The responsible doctor: the participant typed attender (ATND), else primary performer (PPRF)."""
    by_type = {}
    for participant in encounter.participant or []:
        for kind in participant.type or []:
            for code in _codes(kind) & ATTENDING_TYPES:
                by_type.setdefault(code, participant.individual)
    for code in ("ATND", "PPRF"):
        name = _reference_name(by_type.get(code))
        if name:
            return name
    return None


def _allergies(resources: _Resources) -> list[str]:
    allergies = []
    for _, resource in resources.of_type("AllergyIntolerance"):
        if _codes(resource.verificationStatus) & SKIPPED_VERIFICATION:
            continue
        if _codes(resource.code) & NO_KNOWN_ALLERGY_CODES:
            continue
        name = _concept_text(resource.code)
        if name and name not in allergies:
            allergies.append(name)
    return allergies


# Medications -----------------------------------------------------------------------------


def _medications(resources: _Resources) -> list[Medication]:
    """Orders and statements together, in bundle order."""
    medications = []
    for index, resource in resources.entries:
        kind = resource.get_resource_type()
        dosage_field = DOSAGE_FIELD.get(kind)
        if dosage_field is None or resource.status in SKIPPED_MEDICATION_STATUSES:
            continue
        name = _medication_name(resource, resources)
        if not name:
            continue
        dosages = getattr(resource, dosage_field) or []
        where = f"FHIR {kind} entry/{index}/resource/{dosage_field}/0"
        medications.append(_with_dosage(Medication(name=name), dosages[0] if dosages else None, where))
    return medications


def _medication_name(resource: Resource, resources: _Resources) -> str | None:
    """The coded medication, or the Medication it references inside the bundle (contained or
    an entry); a reference that leaves the bundle falls back to its display."""
    if resource.medicationCodeableConcept is not None:
        return _concept_text(resource.medicationCodeableConcept)
    reference = resource.medicationReference
    if reference is None:
        return None
    target = resources.resolve(reference.reference, resource)
    if target is not None and target.get_resource_type() == "Medication":
        name = _concept_text(target.code)
        if name:
            return name
    return reference.display.strip() if reference.display and reference.display.strip() else None


def _with_dosage(medication: Medication, dosage: Resource | None, where: str) -> Medication:
    if dosage is None:
        return medication
    quantity = dosage.doseAndRate[0].doseQuantity if dosage.doseAndRate else None
    if quantity is not None and quantity.value is not None:
        if quantity.value <= 0:
            raise RecordError(f"{where}/doseAndRate/0/doseQuantity/value: a dose must be positive, "
                              f"got {_number(quantity.value)}")
        medication.dose = float(quantity.value)
        medication.unit = quantity.unit or quantity.code
    medication.route = _concept_text(dosage.route)
    medication.frequency = _frequency(dosage.timing)
    return medication


def _frequency(timing: Resource | None) -> str | None:
    """Timing.code as written (e.g. "TID"), else Timing.repeat rendered as "3 per 1 d"."""
    if timing is None:
        return None
    if timing.code is not None:
        named = _concept_text(timing.code) or next(iter(sorted(_codes(timing.code))), None)
        if named:
            return named
    repeat = timing.repeat
    if repeat is None or repeat.period is None or not repeat.periodUnit:
        return None
    count = _number(repeat.frequency if repeat.frequency is not None else 1)
    if repeat.frequencyMax is not None:
        count += f"-{_number(repeat.frequencyMax)}"
    period = _number(repeat.period)
    if repeat.periodMax is not None:
        period += f"-{_number(repeat.periodMax)}"
    return f"{count} per {period} {repeat.periodUnit}"


# Diagnoses -------------------------------------------------------------------------------


def _diagnoses(resources: _Resources) -> list[Diagnosis]:
    diagnoses = []
    for _, resource in resources.of_type("Condition"):
        if _codes(resource.verificationStatus) & SKIPPED_VERIFICATION or resource.code is None:
            continue
        icd = next((c for c in resource.code.coding or [] if c.system in ICD10_SYSTEMS and c.code), None)
        text = _diagnosis_text(resource.code, icd)
        if text:
            diagnoses.append(Diagnosis(text=text, code=icd.code if icd else None))
    return diagnoses


def _diagnosis_text(concept: Resource, icd: Resource | None) -> str | None:
    """code.text, else the ICD coding's own display so that text and code agree, else any
    display, else the bare code."""
    candidates = (concept.text, icd.display if icd else None, _concept_text(concept), icd.code if icd else None)
    return next((c.strip() for c in candidates if c and c.strip()), None)


# Documents -------------------------------------------------------------------------------


def _documents(resources: _Resources) -> list[Document]:
    documents: list[Document] = []
    for index, resource in resources.entries:
        kind = resource.get_resource_type()
        if kind == "DocumentReference":
            document = _from_document_reference(resource, index)
        elif kind == "Composition":
            document = _from_composition(resource, index)
        else:
            continue
        if document is not None:
            if any(d.id == document.id for d in documents):
                document.id = f"{kind}-{document.id}"
            documents.append(document)
    return documents


def _documents_hint(resources: _Resources) -> str:
    """Why a bundle that does carry document resources still yielded none."""
    if not any(r.get_resource_type() in ("DocumentReference", "Composition") for _, r in resources.entries):
        return ""
    return ("; the DocumentReference/Composition resources present have no inline text/plain attachment "
            "or narrative section text, or are entered-in-error")


def _document_type(concept: Resource | None) -> str:
    for coding in (concept.coding or []) if concept is not None else []:
        if coding.system in (LOINC, None) and coding.code in DOCUMENT_TYPE_BY_LOINC:
            return DOCUMENT_TYPE_BY_LOINC[coding.code]
    return "progress_note"


def _document_id(resource: Resource, index: int) -> str:
    return resource.id or f"entry-{index}"


def _checked_size(text: str, where: str) -> str:
    if len(text.encode("utf-8")) > MAX_TEXT_BYTES:
        raise RecordError(f"{where}: text is larger than {MAX_TEXT_BYTES // 1024} KiB")
    return text


def _from_document_reference(resource: Resource, index: int) -> Document | None:
    """The first inline text/plain attachment; other content (PDF, a URL to fetch) is not
    readable here, and further text/plain attachments are alternative renderings."""
    if resource.status == "entered-in-error":
        return None
    for number, content in enumerate(resource.content or []):
        attachment = content.attachment
        media_type = (attachment.contentType or "").split(";")[0].strip().lower()
        if media_type != "text/plain" or attachment.data is None:
            continue
        where = f"FHIR DocumentReference entry/{index}/resource/content/{number}/attachment/data"
        try:
            text = attachment.data.decode("utf-8-sig")
        except UnicodeDecodeError as exc:
            raise RecordError(f"{where}: the decoded attachment is not UTF-8 text ({exc.reason} at byte "
                              f"{exc.start})") from None
        authored = _datetime(resource.date)
        return Document(id=_document_id(resource, index), type=_document_type(resource.type),
                        text=_checked_size(text, where), authored_at=authored,
                        signed_at=authored if resource.docStatus in SIGNED_STATUSES else None)
    return None


def _from_composition(resource: Resource, index: int) -> Document | None:
    if resource.status == "entered-in-error":
        return None
    text = "\n\n".join(_section_blocks(resource.section))
    if not text.strip():
        return None
    authored = _datetime(resource.date)
    signed = authored if resource.status in SIGNED_STATUSES else None
    legal = next((a.time for a in resource.attester or [] if a.mode == "legal" and a.time), None)
    return Document(id=_document_id(resource, index), type=_document_type(resource.type),
                    text=_checked_size(text, f"FHIR Composition entry/{index}/resource/section"),
                    authored_at=authored, signed_at=_datetime(legal) if legal else signed)


def _section_blocks(sections: list | None) -> Iterator[str]:
    """Each section as "Title\\n\\ntext", nested sections following their parent."""
    for section in sections or []:
        body = xhtml_to_text(section.text.div) if section.text is not None and section.text.div else ""
        nested = list(_section_blocks(section.section))
        if not body and not nested:
            continue
        block = "\n\n".join(part for part in (section.title and section.title.strip(), body) if part)
        if block:
            yield block
        yield from nested


class _NarrativeText(HTMLParser):
    PARAGRAPHS = frozenset({"p", "div", "table", "ul", "ol", "dl", "pre", "blockquote",
                            "h1", "h2", "h3", "h4", "h5", "h6"})
    LINES = frozenset({"br", "li", "tr", "dt", "dd"})

    def __init__(self):
        super().__init__(convert_charrefs=True)
        self.parts: list[str] = []
        self.hidden = 0

    def handle_starttag(self, tag, attrs):
        if tag in ("script", "style"):
            self.hidden += 1
        elif tag in self.PARAGRAPHS:
            self.parts.append("\n\n")
        elif tag in self.LINES:
            self.parts.append("\n- " if tag == "li" else "\n")
        elif tag in ("td", "th"):
            self.parts.append(" ")

    def handle_endtag(self, tag):
        if tag in ("script", "style"):
            self.hidden = max(0, self.hidden - 1)
        elif tag in self.PARAGRAPHS:
            self.parts.append("\n\n")

    def handle_data(self, data):
        if not self.hidden:
            self.parts.append(re.sub(r"\s+", " ", data))


def xhtml_to_text(div: str) -> str:
    """Narrative XHTML -> plain text: block elements become line breaks, entities are
    decoded, and source indentation is dropped so the note reads as the clinician wrote it."""
    parser = _NarrativeText()
    parser.feed(div)
    parser.close()
    lines = (re.sub(" {2,}", " ", line).strip() for line in "".join(parser.parts).split("\n"))
    return re.sub(r"\n{3,}", "\n\n", "\n".join(lines)).strip()
