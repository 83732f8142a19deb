"""CDS Hooks patient-view: the VTE risk card (score, factors with evidence, prophylaxis)."""

from __future__ import annotations

import base64
import uuid

from markdown_it import MarkdownIt

SERVICE = "/cds-services/copilot-vte-risk"


def request(note: str, encounter_class: str = "IMP", medications=None) -> dict:
    patient = {"resourceType": "Patient", "id": "pat-77", "gender": "female", "birthDate": "1950-03-02"}
    encounter = {"resourceType": "Encounter", "id": "enc-77", "status": "in-progress",
                 "class": {"system": "http://terminology.hl7.org/CodeSystem/v3-ActCode", "code": encounter_class},
                 "subject": {"reference": "Patient/pat-77"}, "period": {"start": "2026-11-30T08:00:00+08:00"},
                 "serviceProvider": {"display": "神经内科"},
                 "participant": [{"type": [{"coding": [{"code": "ATND"}]}],
                                  "individual": {"reference": "Practitioner/dr.qian"}}]}
    condition = {"resourceType": "Condition", "id": "c1", "subject": {"reference": "Patient/pat-77"},
                 "code": {"coding": [{"system": "http://hl7.org/fhir/sid/icd-10-cm", "code": "I63.9",
                                      "display": "Cerebral infarction, unspecified"}]}}
    document = {"resourceType": "DocumentReference", "id": "doc-1", "status": "current",
                "subject": {"reference": "Patient/pat-77"},
                "type": {"coding": [{"system": "http://loinc.org", "code": "34117-2"}]},
                "date": "2026-11-30T10:00:00+08:00",
                "content": [{"attachment": {"contentType": "text/plain",
                                            "data": base64.b64encode(note.encode("utf-8")).decode()}}]}
    bundle = lambda *resources: {"resourceType": "Bundle", "type": "searchset",  # noqa: E731
                                 "entry": [{"resource": r} for r in resources]}
    return {"hookInstance": str(uuid.uuid4()), "hook": "patient-view",
            "context": {"userId": "Practitioner/dr.qian", "patientId": "pat-77", "encounterId": "enc-77"},
            "prefetch": {"patient": patient, "encounter": encounter, "conditions": bundle(condition),
                         "medications": bundle(*(medications or [])), "documents": bundle(document)}}


def test_a_high_risk_stay_without_prophylaxis_gets_a_warning_card(app, client, auth):
    response = client.post(SERVICE, json=request("主诉：右侧肢体无力。\n体格检查：右侧偏瘫，卧床。\n"),
                           headers=auth("clinician"))
    assert response.status_code == 200, response.get_data(as_text=True)
    [card] = response.get_json()["cards"]
    assert card["indicator"] == "warning" and len(card["summary"]) < 140
    assert card["summary"].startswith("VTE risk high (Padua prediction score 5)")
    assert "+3" in card["detail"] and "卧床" in card["detail"] and "Cerebral infarction" in card["detail"]
    assert card["source"]["url"].startswith("https://doi.org/") and "Padua" in card["source"]["label"]
    MarkdownIt("commonmark").render(card["detail"])
    entry = [e for e in app.extensions["copilot.audit"].entries() if e.action == "cds:copilot-vte-risk"][-1]
    assert entry.patient_ref == "Patient/pat-77" and entry.outcome == "success"


def test_prophylaxis_turns_the_card_to_info_and_an_outpatient_gets_none(client, auth):
    enoxaparin = {"resourceType": "MedicationRequest", "id": "m1", "status": "active", "intent": "order",
                  "subject": {"reference": "Patient/pat-77"}, "medicationCodeableConcept": {"text": "Enoxaparin 40 mg"}}
    response = client.post(SERVICE, json=request("体格检查：右侧偏瘫，卧床。\n", medications=[enoxaparin]),
                           headers=auth("clinician"))
    [card] = response.get_json()["cards"]
    assert card["indicator"] == "info" and "prophylaxis documented" in card["summary"]
    outpatient = client.post(SERVICE, json=request("Clinic visit.", encounter_class="AMB"), headers=auth("clinician"))
    assert outpatient.status_code == 200 and outpatient.get_json()["cards"] == []
