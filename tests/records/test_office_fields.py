"""Fields the QC office reads: responsible department and doctor, timed and discharge medications,
procedures, observations and as_of; FHIR Encounter.participant / serviceProvider; labelled lines."""

from __future__ import annotations

from datetime import datetime

import pytest

from copilot.records.fhir import bundle_to_record
from copilot.records.loaders import record_from_json
from copilot.records.model import RecordError

CHART = {
    "id": "chart-1", "as_of": "2026-11-30T18:00:00+08:00",
    "encounter": {"type": "inpatient", "admitted_at": "2026-11-30T08:00:00+08:00", "department": "心内科",
                  "attending": "dr.wang"},
    "documents": [{"id": "d1", "type": "admission_note", "text": "主诉：胸痛。"}],
    "medications": [{"name": "aspirin", "dose": 300, "unit": "mg", "started_at": "2026-11-30T08:20:00+08:00"},
                    {"name": "atorvastatin", "at_discharge": True}],
    "procedures": [{"name": "Primary PCI", "code": "92941", "performed_at": "2026-11-30T09:00:00+08:00",
                    "ended_at": "2026-11-30T09:40:00+08:00"}],
    "observations": [{"name": "LVEF", "value": 35, "unit": "%", "observed_at": "2026-12-01T10:00:00+08:00"},
                     {"name": "洼田饮水试验", "value": "1级"}],
}


def test_the_new_fields_read_and_write_back():
    record = record_from_json(CHART)
    assert (record.encounter.department, record.encounter.attending) == ("心内科", "dr.wang")
    assert record.as_of == datetime.fromisoformat("2026-11-30T18:00:00+08:00")
    assert record.medications[0].started_at.minute == 20 and record.medications[1].at_discharge
    assert record.procedures[0].ended_at.minute == 40 and record.observations[1].value == "1级"
    assert record_from_json(record.to_json()).to_json() == record.to_json()
    plain = record_from_json({"id": "p", "documents": [{"id": "d", "type": "progress_note", "text": "x"}]}).to_json()
    assert not {"as_of", "procedures", "observations"} & set(plain)
    assert not {"department", "attending"} & set(plain["encounter"])
    with pytest.raises(RecordError, match="procedures/0/performed_at"):
        record_from_json({**CHART, "procedures": [{"name": "x", "performed_at": "yesterday"}]})


def test_a_labelled_line_is_read_as_its_record():
    record = record_from_json({"record": CHART, "expected": [], "clean": True, "source": {"dataset": "x"}})
    assert record.id == "chart-1"


def test_fhir_encounter_names_the_department_and_the_attending():
    bundle = {"resourceType": "Bundle", "id": "b1", "type": "collection", "entry": [
        {"resource": {"resourceType": "Encounter", "id": "e1", "status": "in-progress",
                      "class": {"code": "IMP"}, "serviceProvider": {"reference": "Organization/cardio", "display": "心内科"},
                      "participant": [
                          {"type": [{"coding": [{"code": "PART"}]}], "individual": {"reference": "Practitioner/nurse-1"}},
                          {"type": [{"coding": [{"code": "ATND"}]}],
                           "individual": {"identifier": {"value": "dr.wang"}, "display": "王医生"}}]}},
        {"resource": {"resourceType": "DocumentReference", "id": "d1", "status": "current",
                      "content": [{"attachment": {"contentType": "text/plain", "data": "5Li76K+J77ya6IO455eb44CC"}}]}}]}
    record = bundle_to_record(bundle)
    assert (record.encounter.department, record.encounter.attending) == ("cardio", "dr.wang")
