"""POST /api/ground: a draft from any tool checked against its encounter, bad input refused clearly,
every call audited."""

from __future__ import annotations

from tests.helpers import make_record

SOURCE = "[doctor] any diabetes?\n[patient] no. i take lisinopril 20 mg once a day. my left knee hurts."


def entries(app) -> list:
    return list(app.extensions["copilot.audit"].entries())


def test_marks_with_offsets_reasons_and_kinds(app, client, auth):
    draft = "History of diabetes. Lisinopril 40 mg once daily. Left knee pain. Seen by Dr. Jane Roe."
    response = client.post("/api/ground", json={"source": SOURCE, "draft": draft}, headers=auth("clinician"))
    assert response.status_code == 200, response.get_json()
    marks = response.get_json()["unsupported"]
    for mark in marks:
        assert set(mark) == {"start", "end", "text", "reason", "kind"}
        assert draft[mark["start"]:mark["end"]] == mark["text"]
    assert [(m["text"], m["kind"]) for m in marks] == [("diabetes", "finding"), ("40 mg", "dose"), ("Jane Roe", "name")]
    assert marks[0]["reason"] == "transcript says no diabetes"
    assert [(e.action, e.outcome) for e in entries(app)] == [("ground", "success")]


def test_chinese_and_a_record_as_support(app, client, auth):
    source = "患者否认糖尿病，左膝疼痛3天。"
    response = client.post("/api/ground", json={"source": source, "draft": "糖尿病史。右膝疼痛3天。"}, headers=auth("clinician"))
    assert [m["kind"] for m in response.get_json()["unsupported"]] == ["finding", "side"]
    record = make_record("Assessment: hypertension, on amlodipine 5 mg daily.")
    response = client.post("/api/ground", json={"source": "", "draft": "Hypertension on amlodipine 5 mg daily.",
                                                "record": record}, headers=auth("clinician"))
    assert response.status_code == 200 and response.get_json()["unsupported"] == []
    assert entries(app)[-1].patient_ref is not None


def test_bad_input_is_refused_and_audited(app, client, auth):
    for body, message in [({"source": SOURCE}, "'draft' is required"), ({"draft": 5}, "'draft' must be a string"),
                          ({"source": "", "draft": "x"}, "give the source"), ({"draft": "x", "evil": 1}, "unknown fields"),
                          ({"source": "x", "draft": " "}, "the draft is empty")]:
        response = client.post("/api/ground", json=body, headers=auth("clinician"))
        assert response.status_code == 400 and message in response.get_json()["error"], body
    assert [e.outcome for e in entries(app)] == ["invalid"] * 5
