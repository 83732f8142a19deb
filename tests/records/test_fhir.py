"""FHIR R4 Bundle -> Record, with hand-written bundles shaped like real EHR exports."""

from __future__ import annotations

import base64
import copy
import json
from datetime import date, datetime, timedelta, timezone

import pytest

from copilot.records.fhir import bundle_to_record, xhtml_to_text
from copilot.records.loaders import RecordError, iter_records, record_from_json

CST = timezone(timedelta(hours=8))
LOINC = "http://loinc.org"
SNOMED = "http://snomed.info/sct"
RXNORM = "http://www.nlm.nih.gov/research/umls/rxnorm"
ICD10CM = "http://hl7.org/fhir/sid/icd-10-cm"
ACT_CODE = "http://terminology.hl7.org/CodeSystem/v3-ActCode"
ALLERGY_CLINICAL = "http://terminology.hl7.org/CodeSystem/allergyintolerance-clinical"
ALLERGY_VERIFICATION = "http://terminology.hl7.org/CodeSystem/allergyintolerance-verification"
CONDITION_VERIFICATION = "http://terminology.hl7.org/CodeSystem/condition-ver-status"

HP_TEXT = (
    "HISTORY AND PHYSICAL\n\n"
    "Chief complaint: fever and productive cough for 4 days.\n"
    "HPI: 65-year-old man with type 2 diabetes, SpO2 91% on room air, crackles at the right base.\n"
    "Allergies: penicillin (hives).\n"
    "Assessment: community-acquired pneumonia, right lower lobe.\n"
    "Plan: admit to medicine; amoxicillin 500 mg PO TID; continue metformin."
)


def b64(text: str) -> str:
    return base64.b64encode(text.encode("utf-8")).decode("ascii")


def entry(resource: dict, full_url: str | None = None) -> dict:
    return {"fullUrl": full_url or f"urn:uuid:{resource['resourceType'].lower()}-{resource.get('id', 'x')}",
            "resource": resource}


def patient(**overrides) -> dict:
    return {"resourceType": "Patient", "id": "pat-1042",
            "identifier": [{"system": "urn:oid:2.16.840.1.113883.19.5", "value": "MRN1042"}],
            "name": [{"family": "Chen", "given": ["Wei"]}], "gender": "male", "birthDate": "1958-07-14",
            **overrides}


def encounter(code: str = "IMP", **overrides) -> dict:
    return {"resourceType": "Encounter", "id": "enc-2024-0311", "status": "finished",
            "class": {"system": ACT_CODE, "code": code},
            "subject": {"reference": "Patient/pat-1042"},
            "period": {"start": "2024-03-04T09:15:00+08:00", "end": "2024-03-09T11:00:00+08:00"},
            **overrides}


def allergy(text: str, code: str, verification: str = "confirmed", rid: str = "alg-1") -> dict:
    return {"resourceType": "AllergyIntolerance", "id": rid,
            "clinicalStatus": {"coding": [{"system": ALLERGY_CLINICAL, "code": "active"}]},
            "verificationStatus": {"coding": [{"system": ALLERGY_VERIFICATION, "code": verification}]},
            "type": "allergy", "category": ["medication"],
            "code": {"coding": [{"system": SNOMED, "code": code, "display": text}]},
            "patient": {"reference": "Patient/pat-1042"},
            "reaction": [{"manifestation": [{"coding": [{"system": SNOMED, "code": "247472004",
                                                         "display": "Hives"}]}]}]}


def amoxicillin_request(**overrides) -> dict:
    return {"resourceType": "MedicationRequest", "id": "medrx-amox", "status": "active", "intent": "order",
            "medicationCodeableConcept": {"coding": [{"system": RXNORM, "code": "308191",
                                                      "display": "amoxicillin 500 MG Oral Capsule"}],
                                          "text": "Amoxicillin 500 mg capsule"},
            "subject": {"reference": "Patient/pat-1042"},
            "encounter": {"reference": "Encounter/enc-2024-0311"},
            "authoredOn": "2024-03-04T10:02:00+08:00",
            "dosageInstruction": [{
                "text": "500 mg by mouth three times daily",
                "timing": {"repeat": {"frequency": 3, "period": 1, "periodUnit": "d"}},
                "route": {"coding": [{"system": SNOMED, "code": "26643006", "display": "Oral route"}], "text": "PO"},
                "doseAndRate": [{"doseQuantity": {"value": 500, "unit": "mg", "system": "http://unitsofmeasure.org",
                                                  "code": "mg"}}],
            }],
            **overrides}


def condition(code: str, display: str, rid: str, verification: str = "confirmed", text: str | None = None) -> dict:
    concept = {"coding": [{"system": SNOMED, "code": "000000", "display": f"SNOMED {display}"},
                          {"system": ICD10CM, "code": code, "display": display}]}
    if text:
        concept["text"] = text
    return {"resourceType": "Condition", "id": rid,
            "clinicalStatus": {"coding": [{"system": "http://terminology.hl7.org/CodeSystem/condition-clinical",
                                           "code": "active"}]},
            "verificationStatus": {"coding": [{"system": CONDITION_VERIFICATION, "code": verification}]},
            "category": [{"coding": [{"code": "encounter-diagnosis"}]}],
            "code": concept, "subject": {"reference": "Patient/pat-1042"}}


def document_reference(text: str = HP_TEXT, loinc: str = "34117-2", doc_status: str | None = "final",
                       rid: str = "doc-hp-1", **overrides) -> dict:
    resource = {"resourceType": "DocumentReference", "id": rid, "status": "current",
                "type": {"coding": [{"system": LOINC, "code": loinc}]},
                "subject": {"reference": "Patient/pat-1042"},
                "date": "2024-03-04T14:30:00+08:00",
                "author": [{"reference": "Practitioner/prac-7"}],
                "content": [{"attachment": {"contentType": "application/pdf", "url": "Binary/pdf-1"}},
                            {"attachment": {"contentType": "text/plain; charset=utf-8", "data": b64(text)}}],
                "context": {"encounter": [{"reference": "Encounter/enc-2024-0311"}]},
                **overrides}
    if doc_status:
        resource["docStatus"] = doc_status
    return resource


def inpatient_bundle() -> dict:
    return {
        "resourceType": "Bundle", "id": "adm-2024-0311", "type": "collection",
        "timestamp": "2024-03-09T12:00:00+08:00",
        "entry": [
            entry(patient()),
            entry(encounter()),
            entry({"resourceType": "Practitioner", "id": "prac-7", "name": [{"family": "Li"}]}),
            entry(allergy("Penicillin", "764146007")),
            entry(allergy("Latex", "111088007", verification="refuted", rid="alg-2")),
            entry(allergy("No known drug allergy", "409137002", rid="alg-3")),
            entry(amoxicillin_request()),
            entry(amoxicillin_request(id="medrx-old", status="cancelled",
                                      medicationCodeableConcept={"text": "Cefuroxime 250 mg tablet"})),
            entry(condition("J18.9", "Pneumonia, unspecified organism", "cond-1")),
            entry(condition("E11.9", "Type 2 diabetes mellitus without complications", "cond-2",
                            text="Type 2 diabetes")),
            entry(condition("J45.909", "Unspecified asthma, uncomplicated", "cond-3", verification="refuted")),
            entry({"resourceType": "Observation", "id": "obs-spo2", "status": "final",
                   "code": {"coding": [{"system": LOINC, "code": "59408-5"}]}, "valueQuantity": {"value": 91}}),
            entry(document_reference()),
        ],
    }


def test_inpatient_admission_bundle_maps_every_field():
    record = bundle_to_record(inpatient_bundle(), origin="adm.json")

    assert record.origin == "adm.json"
    assert record.to_json() == {
        "id": "adm-2024-0311",
        "patient": {"sex": "male", "age": 65, "birth_date": "1958-07-14", "allergies": ["Penicillin"]},
        "encounter": {"type": "inpatient", "admitted_at": "2024-03-04T09:15:00+08:00",
                      "discharged_at": "2024-03-09T11:00:00+08:00"},
        "documents": [{"id": "doc-hp-1", "type": "admission_note", "text": HP_TEXT,
                       "authored_at": "2024-03-04T14:30:00+08:00", "signed_at": "2024-03-04T14:30:00+08:00"}],
        "medications": [{"name": "Amoxicillin 500 mg capsule", "dose": 500.0, "unit": "mg", "route": "PO",
                         "frequency": "3 per 1 d"}],
        "diagnoses": [{"text": "Pneumonia, unspecified organism", "code": "J18.9"},
                      {"text": "Type 2 diabetes", "code": "E11.9"}],
    }
    assert record.patient.birth_date == date(1958, 7, 14)
    assert record.encounter.admitted_at == datetime(2024, 3, 4, 9, 15, tzinfo=CST)
    assert record.documents[0].authored_at.utcoffset() == timedelta(hours=8)


def test_age_is_whole_years_at_encounter_start():
    bundle = inpatient_bundle()
    bundle["entry"][0]["resource"]["birthDate"] = "1958-03-05"  # birthday the day after admission
    assert bundle_to_record(bundle).patient.age == 65
    bundle["entry"][0]["resource"]["birthDate"] = "1958-03-04"
    assert bundle_to_record(bundle).patient.age == 66


def test_age_is_unknown_without_an_encounter_start_or_a_full_birth_date():
    bundle = inpatient_bundle()
    del bundle["entry"][1]
    record = bundle_to_record(bundle)
    assert (record.patient.birth_date, record.patient.age) == (date(1958, 7, 14), None)
    assert record.encounter.type == "outpatient" and record.encounter.admitted_at is None

    bundle = inpatient_bundle()
    bundle["entry"][0]["resource"]["birthDate"] = "1958-07"
    assert (bundle_to_record(bundle).patient.birth_date, bundle_to_record(bundle).patient.age) == (None, None)


@pytest.mark.parametrize("code, expected", [("IMP", "inpatient"), ("ACUTE", "inpatient"), ("NONAC", "inpatient"),
                                            ("EMER", "emergency"), ("AMB", "outpatient"), ("HH", "outpatient"),
                                            ("VR", "outpatient")])
def test_encounter_class_maps_to_encounter_type(code, expected):
    bundle = inpatient_bundle()
    bundle["entry"][1]["resource"]["class"]["code"] = code
    assert bundle_to_record(bundle).encounter.type == expected


def outpatient_composition_bundle() -> dict:
    composition = {
        "resourceType": "Composition", "id": "comp-op-88", "status": "final",
        "type": {"coding": [{"system": LOINC, "code": "11506-3", "display": "Progress note"}]},
        "subject": {"reference": "urn:uuid:patient-pat-2201"},
        "encounter": {"reference": "urn:uuid:encounter-enc-op-88"},
        "date": "2024-05-20T10:40:00+08:00",
        "author": [{"reference": "Practitioner/prac-9", "display": "Dr. Zhang"}],
        "title": "Outpatient follow-up",
        "attester": [{"mode": "professional", "time": "2024-05-20T10:45:00+08:00"},
                     {"mode": "legal", "time": "2024-05-20T17:05:00+08:00"}],
        "section": [
            {"title": "Chief complaint",
             "text": {"status": "generated",
                      "div": '<div xmlns="http://www.w3.org/1999/xhtml"><p>Follow-up of\n        '
                             'hypertension.</p></div>'}},
            {"title": "History of present illness",
             "text": {"status": "generated",
                      "div": '<div xmlns="http://www.w3.org/1999/xhtml"><p>Home BP 150/95 &amp; '
                             'occasional headache.<br/>No chest pain.</p><p>Adherent to amlodipine.</p></div>'}},
            {"title": "Empty section", "emptyReason": {"text": "nil known"}},
            {"title": "Plan",
             "text": {"status": "generated",
                      "div": '<div xmlns="http://www.w3.org/1999/xhtml"><ul><li>Increase amlodipine to 10 mg '
                             'daily</li><li>Recheck in 4 weeks</li></ul></div>'},
             "section": [{"title": "Patient education",
                          "text": {"status": "generated",
                                   "div": '<div xmlns="http://www.w3.org/1999/xhtml">Low-salt diet.</div>'}}]},
        ],
    }
    return {
        "resourceType": "Bundle", "type": "document", "timestamp": "2024-05-20T17:06:00+08:00",
        "identifier": {"system": "urn:ietf:rfc:3986", "value": "urn:uuid:0c3151bd-1cbf-4d64-b04d-cd9187a4c6e0"},
        "entry": [
            entry(composition, "urn:uuid:composition-comp-op-88"),
            entry({"resourceType": "Patient", "id": "pat-2201", "gender": "female", "birthDate": "1971-11-30"}),
            entry({"resourceType": "Encounter", "id": "enc-op-88", "status": "finished",
                   "class": {"system": ACT_CODE, "code": "AMB"},
                   "period": {"start": "2024-05-20T10:00:00+08:00", "end": "2024-05-20T10:30:00+08:00"}}),
            entry({"resourceType": "MedicationStatement", "id": "ms-aml", "status": "active",
                   "medicationCodeableConcept": {"coding": [{"system": RXNORM, "code": "329528",
                                                             "display": "amlodipine 5 MG Oral Tablet"}]},
                   "subject": {"reference": "urn:uuid:patient-pat-2201"},
                   "dosage": [{"timing": {"code": {"coding": [{"code": "QD"}], "text": "once daily"}},
                               "route": {"coding": [{"system": SNOMED, "code": "26643006",
                                                     "display": "Oral route"}]},
                               "doseAndRate": [{"doseQuantity": {"value": 5, "unit": "mg"}}]}]}),
            entry({"resourceType": "Condition", "id": "cond-htn",
                   "code": {"coding": [{"system": "http://hl7.org/fhir/sid/icd-10", "code": "I10",
                                        "display": "Essential (primary) hypertension"}]},
                   "subject": {"reference": "urn:uuid:patient-pat-2201"}}),
        ],
    }


def test_outpatient_composition_bundle():
    record = bundle_to_record(outpatient_composition_bundle())

    assert record.to_json() == {
        "id": "enc-op-88",  # no Bundle.id: the Encounter's id names the record
        "patient": {"sex": "female", "age": 52, "birth_date": "1971-11-30", "allergies": []},
        "encounter": {"type": "outpatient", "admitted_at": "2024-05-20T10:00:00+08:00",
                      "discharged_at": "2024-05-20T10:30:00+08:00"},
        "documents": [{
            "id": "comp-op-88", "type": "progress_note",
            "text": ("Chief complaint\n\nFollow-up of hypertension.\n\n"
                     "History of present illness\n\nHome BP 150/95 & occasional headache.\nNo chest pain.\n\n"
                     "Adherent to amlodipine.\n\n"
                     "Plan\n\n- Increase amlodipine to 10 mg daily\n- Recheck in 4 weeks\n\n"
                     "Patient education\n\nLow-salt diet."),
            "authored_at": "2024-05-20T10:40:00+08:00",
            "signed_at": "2024-05-20T17:05:00+08:00",  # the legal attester's time, not Composition.date
        }],
        "medications": [{"name": "amlodipine 5 MG Oral Tablet", "dose": 5.0, "unit": "mg", "route": "Oral route",
                         "frequency": "once daily"}],
        "diagnoses": [{"text": "Essential (primary) hypertension", "code": "I10"}],
    }


def test_composition_signed_at_falls_back_to_date_and_is_none_while_preliminary():
    bundle = outpatient_composition_bundle()
    composition = bundle["entry"][0]["resource"]
    del composition["attester"]
    assert bundle_to_record(bundle).documents[0].signed_at == datetime(2024, 5, 20, 10, 40, tzinfo=CST)
    composition["status"] = "preliminary"
    document = bundle_to_record(bundle).documents[0]
    assert document.signed_at is None and document.authored_at == datetime(2024, 5, 20, 10, 40, tzinfo=CST)


def test_composition_date_without_time_is_midnight():
    bundle = outpatient_composition_bundle()
    bundle["entry"][0]["resource"]["date"] = "2024-05-20"
    assert bundle_to_record(bundle).documents[0].authored_at == datetime(2024, 5, 20)


def emergency_collection_bundle() -> dict:
    summary = ("DISCHARGE SUMMARY\n\nDiagnosis: acute gastroenteritis with dehydration.\n"
               "Treated with IV fluids and ondansetron 4 mg IV once. Tolerating oral intake at discharge.\n"
               "Follow-up with primary care in 1 week. 患者出院。")
    return {
        "resourceType": "Bundle", "id": "ed-visit-5512", "type": "collection",
        "entry": [
            entry({"resourceType": "Patient", "id": "pat-5512", "gender": "other", "birthDate": "2001-01-09"}),
            entry({"resourceType": "Encounter", "id": "enc-ed-5512", "status": "finished",
                   "class": {"system": ACT_CODE, "code": "EMER", "display": "emergency"},
                   "period": {"start": "2024-02-29T23:10:00Z", "end": "2024-03-01T06:45:00Z"}}),
            entry({"resourceType": "MedicationStatement", "id": "ms-ond", "status": "completed",
                   "medicationCodeableConcept": {"text": "Ondansetron 4 mg/2 mL injection"},
                   "subject": {"reference": "Patient/pat-5512"},
                   "dosage": [{"route": {"text": "IV"},
                               "doseAndRate": [{"doseQuantity": {"value": 4, "code": "mg",
                                                                 "system": "http://unitsofmeasure.org"}}]}]}),
            entry({"resourceType": "MedicationStatement", "id": "ms-err", "status": "entered-in-error",
                   "medicationCodeableConcept": {"text": "Ondansetron 8 mg tablet"},
                   "subject": {"reference": "Patient/pat-5512"}}),
            entry(document_reference(text=summary, loinc="18842-5", doc_status="preliminary", rid="ed-dc-1",
                                     date="2024-03-01T06:30:00Z")),
        ],
    }


def test_collection_bundle_through_record_from_json():
    record = record_from_json(emergency_collection_bundle(), "ed.jsonl:3")

    assert record.origin == "ed.jsonl:3"
    data = record.to_json()
    assert data["id"] == "ed-visit-5512"
    assert data["patient"] == {"sex": "other", "age": 23, "birth_date": "2001-01-09", "allergies": []}
    assert data["encounter"] == {"type": "emergency", "admitted_at": "2024-02-29T23:10:00+00:00",
                                 "discharged_at": "2024-03-01T06:45:00+00:00"}
    assert data["medications"] == [{"name": "Ondansetron 4 mg/2 mL injection", "dose": 4.0, "unit": "mg",
                                    "route": "IV", "frequency": None}]
    assert data["diagnoses"] == []
    [document] = record.documents
    assert (document.id, document.type) == ("ed-dc-1", "discharge_summary")
    assert document.text.endswith("患者出院。")
    assert document.authored_at == datetime(2024, 3, 1, 6, 30, tzinfo=timezone.utc)
    assert document.signed_at is None  # docStatus preliminary: not signed


@pytest.mark.parametrize("loinc, expected", [("11506-3", "progress_note"), ("34117-2", "admission_note"),
                                             ("47039-3", "admission_note"), ("18842-5", "discharge_summary"),
                                             ("11504-8", "operative_note"), ("28570-0", "progress_note")])
def test_document_type_from_loinc(loinc, expected):
    bundle = inpatient_bundle()
    bundle["entry"][-1]["resource"]["type"]["coding"][0]["code"] = loinc
    assert bundle_to_record(bundle).documents[0].type == expected


def test_document_without_type_is_a_progress_note_and_without_id_gets_one():
    bundle = inpatient_bundle()
    resource = bundle["entry"][-1]["resource"]
    del resource["type"], resource["id"]
    [document] = bundle_to_record(bundle).documents
    assert (document.id, document.type) == (f"entry-{len(bundle['entry']) - 1}", "progress_note")


def test_documents_keep_bundle_order_and_unique_ids():
    bundle = inpatient_bundle()
    bundle["entry"].append(entry(document_reference(text="Day 2: afebrile.", loinc="11506-3", rid="doc-hp-1")))
    bundle["entry"].append(entry(document_reference(text="Entered on the wrong patient.", rid="doc-err",
                                                    status="entered-in-error")))
    documents = bundle_to_record(bundle).documents
    assert [(d.id, d.type, d.text) for d in documents] == [
        ("doc-hp-1", "admission_note", HP_TEXT),
        ("DocumentReference-doc-hp-1", "progress_note", "Day 2: afebrile."),
    ]


@pytest.mark.parametrize("reference, full_url", [
    ("Medication/med-amox", "https://ehr.example.org/fhir/Medication/med-amox"),
    ("urn:uuid:9b0f7a5e-5c1e-4a7b-9d0a-2f6f0a1b7c11", "urn:uuid:9b0f7a5e-5c1e-4a7b-9d0a-2f6f0a1b7c11"),
    ("https://ehr.example.org/fhir/Medication/med-amox", "https://ehr.example.org/fhir/Medication/med-amox"),
])
def test_medication_request_referencing_a_medication_in_the_bundle(reference, full_url):
    bundle = inpatient_bundle()
    request = bundle["entry"][6]["resource"]
    del request["medicationCodeableConcept"]
    request["medicationReference"] = {"reference": reference}
    bundle["entry"].append(entry({"resourceType": "Medication", "id": "med-amox",
                                  "code": {"coding": [{"system": RXNORM, "code": "308191",
                                                       "display": "amoxicillin 500 MG Oral Capsule"}]}},
                                 full_url))
    [medication] = bundle_to_record(bundle).medications
    assert (medication.name, medication.dose, medication.unit, medication.route, medication.frequency) == \
        ("amoxicillin 500 MG Oral Capsule", 500.0, "mg", "PO", "3 per 1 d")


def test_medication_request_referencing_a_contained_medication():
    bundle = inpatient_bundle()
    request = bundle["entry"][6]["resource"]
    del request["medicationCodeableConcept"]
    request["contained"] = [{"resourceType": "Medication", "id": "m1", "code": {"text": "Amoxicillin 500 mg cap"}}]
    request["medicationReference"] = {"reference": "#m1"}
    assert [m.name for m in bundle_to_record(bundle).medications] == ["Amoxicillin 500 mg cap"]


def test_medication_reference_outside_the_bundle_uses_its_display_or_is_left_out():
    bundle = inpatient_bundle()
    request = bundle["entry"][6]["resource"]
    del request["medicationCodeableConcept"]
    request["medicationReference"] = {"reference": "Medication/not-here", "display": "Amoxicillin 500 mg"}
    assert [m.name for m in bundle_to_record(bundle).medications] == ["Amoxicillin 500 mg"]
    del request["medicationReference"]["display"]
    assert bundle_to_record(bundle).medications == []


@pytest.mark.parametrize("timing, expected", [
    ({"code": {"text": "TID"}}, "TID"),
    ({"code": {"coding": [{"system": "http://terminology.hl7.org/CodeSystem/v3-GTSAbbreviation", "code": "BID"}]}},
     "BID"),
    ({"repeat": {"frequency": 2, "period": 1, "periodUnit": "d"}}, "2 per 1 d"),
    ({"repeat": {"period": 8, "periodUnit": "h"}}, "1 per 8 h"),
    ({"repeat": {"frequency": 1, "period": 4, "periodMax": 6, "periodUnit": "h"}}, "1 per 4-6 h"),
    ({"repeat": {"frequency": 1, "frequencyMax": 2, "period": 0.5, "periodUnit": "wk"}}, "1-2 per 0.5 wk"),
    ({"repeat": {"boundsPeriod": {"start": "2024-03-04"}}}, None),
])
def test_frequency_from_timing(timing, expected):
    bundle = inpatient_bundle()
    bundle["entry"][6]["resource"]["dosageInstruction"][0]["timing"] = timing
    assert bundle_to_record(bundle).medications[0].frequency == expected


def test_orders_and_statements_keep_bundle_order():
    bundle = inpatient_bundle()
    statement = emergency_collection_bundle()["entry"][2]
    bundle["entry"].insert(0, statement)
    names = [m.name for m in bundle_to_record(bundle).medications]
    assert names == ["Ondansetron 4 mg/2 mL injection", "Amoxicillin 500 mg capsule"]


def test_medication_without_dosage_has_only_a_name():
    bundle = inpatient_bundle()
    del bundle["entry"][6]["resource"]["dosageInstruction"]
    [medication] = bundle_to_record(bundle).medications
    assert (medication.name, medication.dose, medication.unit, medication.route, medication.frequency) == \
        ("Amoxicillin 500 mg capsule", None, None, None, None)


def test_bundle_without_patient_is_allowed():
    bundle = inpatient_bundle()
    del bundle["entry"][0]
    record = bundle_to_record(bundle)
    assert (record.patient.sex, record.patient.age, record.patient.birth_date) == ("unknown", None, None)
    assert record.patient.allergies == ["Penicillin"]


def test_record_id_falls_back_to_composition_then_patient():
    bundle = outpatient_composition_bundle()
    del bundle["entry"][2]  # the Encounter
    assert bundle_to_record(bundle).id == "comp-op-88"
    del bundle["entry"][0]["resource"]["id"]
    assert bundle_to_record(bundle).id == "pat-2201"


def test_unknown_resource_types_are_ignored():
    bundle = inpatient_bundle()
    bundle["entry"].insert(0, {"fullUrl": "urn:uuid:x1", "resource": {"resourceType": "AcmeVendorThing", "foo": [1]}})
    bundle["entry"].insert(0, {"fullUrl": "urn:uuid:x2", "resource": {"resourceType": "Observation", "status": 7}})
    bundle["entry"].insert(0, {"fullUrl": "urn:uuid:x3", "request": {"method": "DELETE", "url": "Patient/old"}})
    assert bundle_to_record(bundle).to_json() == bundle_to_record(inpatient_bundle()).to_json()


def test_xhtml_to_text():
    div = ('<div xmlns="http://www.w3.org/1999/xhtml">\n  <h3>Vitals</h3>\n  <table><tr><td>BP</td><td>120/80'
           '</td></tr><tr><td>HR</td><td>72</td></tr></table>\n  <p>T &gt; 38&#160;&#176;C<br/>at night</p>'
           '<script>alert(1)</script></div>')
    assert xhtml_to_text(div) == "Vitals\n\nBP 120/80\nHR 72\n\nT > 38 °C\nat night"


# Bad input ---------------------------------------------------------------------------------


def assert_rejected(bundle: object, *fragments: str) -> str:
    with pytest.raises(RecordError) as caught:
        bundle_to_record(bundle)
    message = str(caught.value)
    for fragment in fragments:
        assert fragment in message, message
    assert caught.value.__suppress_context__ or caught.value.__context__ is None
    return message


@pytest.mark.parametrize("field, value, fragments", [
    ("gender", 5, ("FHIR Patient entry/0/resource/gender", "valid string")),
    ("birthDate", "yesterday", ("FHIR Patient entry/0/resource/birthDate", "does not match")),
    ("gender", "M", ("entry/0/resource/gender", "'M' is not one of male, female, other, unknown")),
    ("name", "Chen Wei", ("entry/0/resource/name",)),
    ("deceased", True, ("entry/0/resource/deceased", "not permitted")),
])
def test_malformed_patient_is_rejected_with_its_location(field, value, fragments):
    bundle = inpatient_bundle()
    bundle["entry"][0]["resource"][field] = value
    assert_rejected(bundle, *fragments)


def test_malformed_fhir_elsewhere_is_rejected():
    bundle = inpatient_bundle()
    bundle["entry"][1]["resource"]["period"]["start"] = "2024-03-04T09:15:00"  # a time needs a zone in FHIR
    assert_rejected(bundle, "FHIR Encounter entry/1/resource/period/start")

    bundle = inpatient_bundle()
    del bundle["entry"][6]["resource"]["intent"]
    assert_rejected(bundle, "FHIR MedicationRequest entry/6/resource/intent", "required")

    bundle = inpatient_bundle()
    del bundle["type"]
    assert_rejected(bundle, "FHIR Bundle type", "required")

    bundle = inpatient_bundle()
    bundle["entry"][6]["resource"]["contained"] = [{"resourceType": "NoSuchType"}]
    assert_rejected(bundle, "FHIR MedicationRequest entry/6/resource", "not valid FHIR R4")


def test_structurally_wrong_bundles_are_rejected():
    assert_rejected([inpatient_bundle()], "a FHIR Bundle")
    assert_rejected({**inpatient_bundle(), "entry": {"resource": patient()}}, "entry: expected a list")
    bundle = inpatient_bundle()
    del bundle["entry"][0]["resource"]["resourceType"]
    assert_rejected(bundle, "entry/0/resource: resourceType is missing")
    bundle["entry"][0]["resource"] = "Patient/pat-1042"
    assert_rejected(bundle, "entry/0/resource: a resource must be a JSON object")


def test_bare_patient_is_not_a_bundle():
    with pytest.raises(RecordError, match="FHIR Patient given; a Bundle is expected"):
        record_from_json(patient())


def test_bundle_without_documents_is_rejected():
    bundle = inpatient_bundle()
    bundle["entry"].pop()
    message = assert_rejected(bundle, "bundle has no clinical document (DocumentReference or Composition)")
    assert "attachment" not in message

    bundle = inpatient_bundle()
    bundle["entry"][-1]["resource"]["content"].pop()  # only the PDF is left
    assert_rejected(bundle, "bundle has no clinical document", "no inline text/plain attachment")


def test_attachment_that_is_not_utf8_is_rejected():
    bundle = inpatient_bundle()
    gb18030 = base64.b64encode("患者主诉胸痛3天".encode("gb18030")).decode("ascii")
    bundle["entry"][-1]["resource"]["content"][1]["attachment"]["data"] = gb18030
    assert_rejected(bundle, "DocumentReference entry/12/resource/content/1/attachment/data", "not UTF-8")


def test_attachment_that_is_not_base64_is_rejected():
    bundle = inpatient_bundle()
    bundle["entry"][-1]["resource"]["content"][1]["attachment"]["data"] = "this is not base64!"
    assert_rejected(bundle, "entry/12/resource/content/1/attachment/data")


def test_non_positive_dose_is_rejected():
    bundle = inpatient_bundle()
    bundle["entry"][6]["resource"]["dosageInstruction"][0]["doseAndRate"][0]["doseQuantity"]["value"] = 0
    assert_rejected(bundle, "entry/6/resource/dosageInstruction/0/doseAndRate/0/doseQuantity/value",
                    "must be positive")


def test_bundle_without_any_id_is_rejected():
    bundle = outpatient_composition_bundle()
    for item in bundle["entry"]:
        item["resource"].pop("id", None)
    assert_rejected(bundle, "bundle has no id")


# Through the loaders -----------------------------------------------------------------------


def test_jsonl_with_a_fhir_bundle_line_and_a_project_json_line(tmp_path):
    project = {"id": "proj-7", "patient": {"sex": "female", "age": 40},
               "documents": [{"id": "n1", "type": "progress_note", "text": "Stable."}]}
    path = tmp_path / "mixed.jsonl"
    path.write_text(json.dumps(inpatient_bundle()) + "\n" + json.dumps(project, ensure_ascii=False) + "\n",
                    encoding="utf-8")

    loaded = list(iter_records([path]))

    assert [(item.key, item.error) for item in loaded] == [("adm-2024-0311", None), ("proj-7", None)]
    assert loaded[0].position == f"{path}:1" and loaded[0].record.origin == f"{path}:1"
    assert loaded[0].record.medications[0].name == "Amoxicillin 500 mg capsule"
    assert loaded[1].record.patient.sex == "female"


def test_a_bad_bundle_line_is_reported_not_raised(tmp_path):
    bad = inpatient_bundle()
    bad["entry"][0]["resource"]["birthDate"] = "yesterday"
    path = tmp_path / "batch.jsonl"
    path.write_text(json.dumps(bad) + "\n" + json.dumps(emergency_collection_bundle()) + "\n", encoding="utf-8")

    first, second = iter_records([path])

    assert first.record is None and first.key == "adm-2024-0311"
    assert first.error.startswith("FHIR Patient entry/0/resource/birthDate:")
    assert "Traceback" not in first.error
    assert second.error is None and second.record.id == "ed-visit-5512"


def test_bundle_file_through_load_file(tmp_path):
    path = tmp_path / "adm.json"
    path.write_text(json.dumps(copy.deepcopy(inpatient_bundle())), encoding="utf-8")
    [loaded] = iter_records([path])
    assert loaded.error is None and loaded.record.to_json() == bundle_to_record(inpatient_bundle()).to_json()
