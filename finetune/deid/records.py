"""De-identify one project JSON record (or FHIR R4 Bundle) with one SurrogateMap.

Every free-text field goes through the gate; structured dates move by the record's offset; the
record and document ids become opaque ids; ages over 89 become 90. The result is a valid project
JSON record (record.schema.json), so the dataset builder reads it like any other.
"""

from __future__ import annotations

import logging
from collections import Counter
from datetime import date, datetime

from copilot.records.loaders import record_from_json
from finetune.deid.scrubber import Scrubber
from finetune.deid.surrogates import SurrogateMap

log = logging.getLogger(__name__)
AGE_CAP = 90


def _free_texts(data: dict):
    """(path, getter, setter) for every free-text field of a project JSON record."""
    for i, doc in enumerate(data.get("documents") or []):
        yield f"documents/{i}/text", doc, "text"
    for i, diagnosis in enumerate(data.get("diagnoses") or []):
        yield f"diagnoses/{i}/text", diagnosis, "text"
    allergies = (data.get("patient") or {}).get("allergies") or []
    for i in range(len(allergies)):
        yield f"patient/allergies/{i}", allergies, i


def deidentify_record(record: dict, scrubber: Scrubber, *, seed: str | None = None,
                      key: str | None = None) -> tuple[dict, dict[str, int]]:
    """(de-identified record, PHI counts per type); raises PHIRefused on residual PHI.

    ``seed`` defaults to the record id (one SurrogateMap per record); ``key`` is the secret mixed
    into every surrogate (default: $COPILOT_DEID_KEY). Invalid records raise RecordError.
    """
    if not isinstance(record, dict):
        raise TypeError(f"record must be a dict (project JSON or FHIR Bundle), not {type(record).__name__}")
    parsed = record_from_json(record)
    data = parsed.to_json()
    surrogates = SurrogateMap(seed=seed or parsed.id, key=key)
    counts: Counter[str] = Counter()

    fields = list(_free_texts(data))
    for _, container, slot in fields:  # names anywhere in the record, so every mention is found
        surrogates.remember_names(scrubber.name_words(container[slot]))
    for where, container, slot in fields:
        result = scrubber.gate(container[slot], surrogates, where=where)
        container[slot] = result.text
        counts.update(result.counts)

    data["id"] = surrogates.opaque_id(parsed.id, "rec")
    for doc in data["documents"]:
        doc["id"] = surrogates.opaque_id(f"{parsed.id}\x1f{doc['id']}", "doc")
        for field in ("authored_at", "signed_at"):
            if doc.get(field):
                doc[field] = surrogates.shift_date(datetime.fromisoformat(doc[field])).isoformat()
                counts["DATE"] += 1
    encounter = data.get("encounter") or {}
    for field in ("admitted_at", "discharged_at"):
        if encounter.get(field):
            encounter[field] = surrogates.shift_date(datetime.fromisoformat(encounter[field])).isoformat()
            counts["DATE"] += 1
    patient = data.get("patient") or {}
    if patient.get("birth_date"):
        patient["birth_date"] = surrogates.shift_date(date.fromisoformat(patient["birth_date"])).isoformat()
        counts["DATE"] += 1
    if patient.get("age") is not None and patient["age"] > AGE_CAP - 1:
        patient["age"] = AGE_CAP
        counts["AGE"] += 1

    record_from_json(data)  # the output must still be a valid record
    result_counts = dict(sorted(counts.items()))
    log.info("de-identified record %s: %s", data["id"], result_counts)
    return data, result_counts
