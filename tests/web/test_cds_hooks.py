"""CDS Hooks: discovery, patient-view and order-sign with requests shaped like an EHR's."""

from __future__ import annotations

import base64
import copy
import json
import uuid
from pathlib import Path

import pytest
from markdown_it import MarkdownIt

from copilot.audit import hash_payload

DATA = Path(__file__).with_name("data")
SUMMARY = "/cds-services/copilot-qc-summary"
SAFETY = "/cds-services/copilot-medication-safety"


@pytest.fixture
def cds(app, client):
    return client


def request_data(name: str) -> dict:
    return json.loads((DATA / f"{name}.json").read_text())


def searchset(*resources) -> dict:
    return {"resourceType": "Bundle", "type": "searchset",
            "entry": [{"resource": r, "search": {"mode": "match"}} for r in resources]}


def medications(data: dict) -> dict[str, dict]:
    return {e["resource"]["id"]: e["resource"] for e in data["prefetch"]["medications"]["entry"]}


def draft(data: dict, resource: dict) -> dict:
    data = copy.deepcopy(data)
    data["context"]["draftOrders"]["entry"] = [{"resource": resource}]
    return data


def renamed(order: dict, rid: str, text: str) -> dict:
    order = copy.deepcopy(order)
    order["id"], order["status"] = rid, "draft"
    order["medicationCodeableConcept"] = {"text": text}
    return order


def assert_valid_cards(cards: list[dict]) -> None:
    """What CDS Hooks 2.0 requires of a card, and nothing empty."""
    for card in cards:
        assert card["indicator"] in ("info", "warning", "critical")
        assert 0 < len(card["summary"]) < 140 and "\n" not in card["summary"]
        assert card["source"]["label"] and card["detail"].strip()
        uuid.UUID(card["uuid"])
        assert all(value not in (None, "", [], {}) for value in card.values())
        if "url" in card["source"]:
            assert card["source"]["url"].startswith("https://")
        for suggestion in card.get("suggestions", []):
            assert card["selectionBehavior"] == "at-most-one" and suggestion["label"]
            assert all(a["type"] == "delete" and a["resourceId"].startswith("MedicationRequest/")
                       for a in suggestion["actions"])


def test_discovery_lists_both_services_without_auth(cds):
    response = cds.get("/cds-services")
    assert response.status_code == 200
    services = {s["id"]: s for s in response.get_json()["services"]}
    assert set(services) == {"copilot-qc-summary", "copilot-medication-safety", "copilot-vte-risk"}
    summary, safety = services["copilot-qc-summary"], services["copilot-medication-safety"]
    assert summary["hook"] == "patient-view" and safety["hook"] == "order-sign"
    assert summary["prefetch"] == {
        "patient": "Patient/{{context.patientId}}",
        "conditions": "Condition?patient={{context.patientId}}",
        "medications": "MedicationRequest?patient={{context.patientId}}&status=active",
        "allergies": "AllergyIntolerance?patient={{context.patientId}}",
        "documents": "DocumentReference?patient={{context.patientId}}"}
    assert all(set(s) == {"hook", "id", "title", "description", "prefetch"} for s in services.values())


def test_patient_view_summarises_the_record_and_is_audited(cds, app, auth):
    raw = (DATA / "cds_patient_view.json").read_bytes()
    response = cds.post(SUMMARY, data=raw, content_type="application/json", headers=auth("clinician"))
    assert response.status_code == 200, response.get_json()
    cards = response.get_json()["cards"]
    assert_valid_cards(cards)
    [card] = cards  # the note's one defect: "QD" (a major finding -> warning)
    assert card["indicator"] == "warning" and "QD" in card["summary"]
    assert "lisinopril 20 mg" in card["detail"] and "jointcommission.org" in card["detail"]
    [entry] = app.extensions["copilot.audit"].entries()
    assert (entry.action, entry.patient_ref, entry.outcome) == ("cds:copilot-qc-summary", "Patient/pat-1042", "success")
    assert entry.input_hash == hash_payload(raw) and entry.output_hash == hash_payload(response.get_json())
    assert entry.sources == ("abbr.tjc.qd",)


def test_patient_view_gives_critical_findings_their_own_cards(cds, auth):
    data = request_data("cds_patient_view")
    amoxicillin = renamed(medications(data)["medrx-warfarin"], "medrx-amox", "Amoxicillin 500 mg capsule")
    amoxicillin["status"] = "active"
    data["prefetch"]["medications"]["entry"].append({"resource": amoxicillin})
    cards = cds.post(SUMMARY, json=data, headers=auth("admin")).get_json()["cards"]
    assert_valid_cards(cards)
    assert [c["indicator"] for c in cards] == ["critical", "warning"]
    assert "amoxicillin" in cards[0]["summary"] and "Penicillin" in cards[0]["summary"]
    assert cards[0]["source"]["label"].startswith("Drug allergy") and cards[0]["source"]["topic"]["code"] == \
        "medication_safety"


def test_order_sign_warns_of_an_interaction_with_an_active_drug(cds, app, auth):
    response = cds.post(SAFETY, json=request_data("cds_order_sign_interaction"), headers=auth("clinician"))
    assert response.status_code == 200, response.get_json()
    [card] = response.get_json()["cards"]
    assert_valid_cards([card])
    assert card["indicator"] in ("critical", "warning")
    assert "ibuprofen" in card["summary"] and "warfarin" in card["summary"]
    assert "COUMADIN" in card["source"]["label"] and "dailymed" in card["source"]["url"]
    assert card["suggestions"][0]["actions"][0]["resourceId"] == "MedicationRequest/medrx-draft-ibu"
    entry = list(app.extensions["copilot.audit"].entries())[-1]
    assert entry.action == "cds:copilot-medication-safety" and entry.sources == ("ddi.warfarin-nsaid",)


def test_order_sign_flags_an_allergy_conflict_as_critical(cds, auth):
    cards = cds.post(SAFETY, json=request_data("cds_order_sign_allergy"), headers=auth("clinician")).get_json()["cards"]
    assert_valid_cards(cards)
    [card] = cards
    assert card["indicator"] == "critical" and "amoxicillin" in card["summary"] and "Penicillin" in card["summary"]
    assert card["source"]["label"].startswith("Drug allergy")
    assert "Amoxicillin 500 mg capsule" in card["detail"] and "drug_class.penicillin" in card["detail"]


def test_order_sign_shows_only_what_the_draft_order_brings(cds, auth):
    """Warfarin + ibuprofen both active already: signing lisinopril raises no interaction card; ordering
    more ibuprofen does (duplicate and interaction)."""
    data = request_data("cds_order_sign_interaction")
    ibuprofen = data["context"]["draftOrders"]["entry"][0]["resource"]
    active = copy.deepcopy(ibuprofen) | {"id": "medrx-ibu", "status": "active"}
    data["prefetch"]["medications"]["entry"].append({"resource": active})
    lisinopril = renamed(medications(data)["medrx-lisinopril"], "medrx-draft-lis", "Lisinopril 10 mg tablet")
    quiet = cds.post(SAFETY, json=draft(data, lisinopril), headers=auth("clinician"))
    assert quiet.status_code == 200 and all("ibuprofen" not in c["summary"] for c in quiet.get_json()["cards"])
    loud = cds.post(SAFETY, json=data, headers=auth("clinician")).get_json()["cards"]
    assert_valid_cards(loud)
    assert {"interaction", "listed more than once"} <= {
        "interaction" if "Interaction" in c["summary"] else "listed more than once" for c in loud}


def test_order_sign_says_when_a_drug_is_unknown(cds, auth):
    data = request_data("cds_order_sign_interaction")
    unknown = renamed(data["context"]["draftOrders"]["entry"][0]["resource"], "medrx-draft-x", "Zorblaxin 5 mg")
    [card] = cds.post(SAFETY, json=draft(data, unknown), headers=auth("clinician")).get_json()["cards"]
    assert card["indicator"] == "info" and card["summary"].startswith("Not checked: Zorblaxin")


def test_no_drafts_and_null_prefetch_mean_no_cards(cds, auth):
    data = request_data("cds_order_sign_allergy")
    data["context"]["draftOrders"]["entry"] = []
    assert cds.post(SAFETY, json=data, headers=auth("clinician")).get_json() == {"cards": []}
    view = request_data("cds_patient_view")
    view["prefetch"].update(documents=None, medications=None, allergies=None, conditions=None)
    response = cds.post(SUMMARY, json=view, headers=auth("clinician"))
    assert response.status_code == 200 and response.get_json() == {"cards": []}


def test_missing_required_prefetch_is_412(cds, app, auth):
    data = request_data("cds_patient_view")
    del data["prefetch"]["documents"]
    response = cds.post(SUMMARY, json=data, headers=auth("clinician"))
    assert response.status_code == 412 and "documents" in response.get_json()["error"]
    failed = request_data("cds_order_sign_allergy")
    failed["prefetch"]["allergies"] = {"resourceType": "OperationOutcome",
                                       "issue": [{"severity": "error", "code": "timeout"}]}
    assert cds.post(SAFETY, json=failed, headers=auth("clinician")).status_code == 412
    entries = list(app.extensions["copilot.audit"].entries())
    assert [(e.outcome, e.patient_ref) for e in entries] == [("invalid", "Patient/pat-1042")] * 2


@pytest.mark.parametrize("change, status, message", [
    (lambda d: d.update(hook="order-select"), 400, "answers the order-sign hook"),
    (lambda d: d.pop("hookInstance"), 400, "hookInstance"),
    (lambda d: d["context"].pop("patientId"), 400, "patientId"),
    (lambda d: d["context"].update(patientId="../etc/passwd"), 400, "patientId"),
    (lambda d: d["context"].pop("draftOrders"), 400, "draftOrders"),
    (lambda d: d["context"].update(draftOrders=[1]), 400, "draftOrders must be a FHIR Bundle"),
    (lambda d: d["prefetch"].update(patient={"resourceType": "Patient", "id": "someone-else"}), 400,
     "not the patient"),
    (lambda d: d["prefetch"].update(medications="MedicationRequest?patient=pat-1042"), 400, "prefetch.medications"),
    (lambda d: d["prefetch"]["medications"]["entry"][0]["resource"].update(
        subject={"reference": "https://ehr.example.org/fhir/Patient/pat-2077"}), 400, "belongs to another patient"),
    (lambda d: d["context"]["draftOrders"]["entry"][0]["resource"].update(subject={"reference": "Patient/x"}), 400,
     "belongs to another patient"),
    (lambda d: d["context"]["draftOrders"]["entry"][0]["resource"].update(status=7), 400, "MedicationRequest"),
])
def test_bad_requests_are_400_naming_the_problem(cds, auth, change, status, message):
    data = request_data("cds_order_sign_allergy")
    change(data)
    response = cds.post(SAFETY, json=data, headers=auth("clinician"))
    assert response.status_code == status and message in response.get_json()["error"]


def test_transport_errors(cds, auth):
    body = (DATA / "cds_order_sign_allergy.json").read_bytes()
    assert cds.post("/cds-services/no-such-service", data=body, content_type="application/json",
                    headers=auth("clinician")).status_code == 404
    malformed = cds.post(SAFETY, data=body[:-20], content_type="application/json", headers=auth("clinician"))
    assert malformed.status_code == 400 and "malformed JSON" in malformed.get_json()["error"]
    assert cds.post(SAFETY, data=body, content_type="text/plain", headers=auth("clinician")).status_code == 415
    anonymous = cds.post(SAFETY, data=body, content_type="application/json")
    assert anonymous.status_code == 401 and set(anonymous.get_json()) == {"error"} and b"pat-1042" not in anonymous.data
    denied = cds.post(SAFETY, data=body, content_type="application/json", headers=auth("qc_staff"))
    assert denied.status_code == 403


def test_note_text_cannot_inject_markup_into_cards(cds, auth):
    data = request_data("cds_patient_view")
    note = base64.b64decode(data["prefetch"]["documents"]["entry"][0]["resource"]["content"][0]["attachment"]["data"])
    hostile = note.decode().replace(
        "Continue lisinopril 20 mg QD.",
        "[click](https://evil.example) <script>alert(1)</script> lisinopril 20 mg QD. "
        "![x](https://evil.example/p.png) <https://evil.example> `` ` <img src=x onerror=alert(1)>")
    data["prefetch"]["documents"]["entry"][0]["resource"]["content"][0]["attachment"]["data"] = \
        base64.b64encode(hostile.encode()).decode()
    [card] = cds.post(SUMMARY, json=data, headers=auth("clinician")).get_json()["cards"]
    html = MarkdownIt("commonmark", {"html": True}).render(card["detail"])
    assert "<script" not in html and "<img" not in html and "evil.example\"" not in html
    assert [href for href in html.split('href="')[1:] if not href.startswith("https://www.jointcommission.org")] == []
    assert "QD" in html and "lisinopril" in html


def first_medication(data: dict) -> dict:
    return data["prefetch"]["medications"]["entry"][0]["resource"]


def with_patient_entry(data: dict, patient_id: str, full_url: str) -> dict:
    data["prefetch"]["medications"]["entry"].append(
        {"fullUrl": full_url, "resource": {"resourceType": "Patient", "id": patient_id}, "search": {"mode": "include"}})
    return data


@pytest.mark.parametrize("subject, extra, message", [
    ({"reference": "urn:uuid:5c5d7a2e-7b0b-4a8a-9d4e-0e6a1c7f2b11"}, None, "cannot be checked"),  # the escape
    ({"reference": "urn:uuid:9f3e"}, ("pat-2077", "urn:uuid:9f3e"), "not Patient/pat-1042"),
    ({"reference": "#p1"}, None, "cannot be checked"),
    ({"identifier": {"system": "urn:oid:2.16.840.1.113883.19.5", "value": "MRN2077"}}, None, "cannot be checked"),
    ({"reference": "Group/ward-7"}, None, "cannot be checked"),
    ({"reference": "https://other-hospital.example/fhir/Patient/pat-1042"}, None, "cannot be checked"),
    ({"reference": "Patient/pat-2077/_history/3"}, None, "belongs to another patient"),
    ("Patient/pat-1042", None, "cannot be checked"),
])
def test_every_reference_form_is_checked_for_the_same_patient(cds, auth, subject, extra, message):
    data = request_data("cds_order_sign_allergy")
    first_medication(data)["subject"] = subject
    if extra:
        with_patient_entry(data, *extra)
    response = cds.post(SAFETY, json=data, headers=auth("clinician"))
    assert response.status_code == 400 and message in response.get_json()["error"], response.get_json()


@pytest.mark.parametrize("subject, extra", [
    ({"reference": "urn:uuid:0b7c"}, ("pat-1042", "urn:uuid:0b7c")),
    ({"reference": "https://ehr.example.org/fhir/Patient/pat-1042/_history/2"}, None),  # fhirServer's own
    ({"reference": "Patient/pat-1042", "display": "Chen, Wei"}, None),
])
def test_references_that_resolve_to_the_patient_in_context_are_accepted(cds, auth, subject, extra):
    data = request_data("cds_order_sign_allergy")
    first_medication(data)["subject"] = subject
    if extra:
        with_patient_entry(data, *extra)
    assert cds.post(SAFETY, json=data, headers=auth("clinician")).status_code == 200
