import pytest

from copilot.drafting.draft import DraftError, DraftRequest, Drafter, note_types
from tests.helpers import TRANSCRIPT, scripted_sections

REPLIES = {
    "CHIEF COMPLAINT": "Right knee pain for two weeks.",
    "HISTORY OF PRESENT ILLNESS": " slipped on the stairs two weeks ago and has had right knee pain since. Ibuprofen "
                                  "400 mg twice a day helps a little. He also takes lisinopril 10 mg every morning "
                                  "for high blood pressure and metformin 500 mg for diabetes.",
    "ASSESSMENT AND PLAN": "Medial meniscus strain of the right knee. X-ray of the right knee. Continue ibuprofen "
                           "with food. Follow up in two weeks.",
}


@pytest.fixture
def drafter(fake_engine, graph, retriever):
    fake_engine.script = scripted_sections(REPLIES)
    return Drafter(fake_engine, graph, retriever)


def test_note_types_are_data():
    types = note_types()
    assert {"soap", "brief", "outpatient_zh"} <= set(types)
    for spec in types.values():
        assert all({"id", "title", "instruction", "query"} <= set(s) for s in spec["sections"])


@pytest.mark.parametrize("request_, message", [
    (DraftRequest(), "transcript, a record"),
    (DraftRequest(transcript="[doctor] hi", note_type="nope"), "unknown note_type"),
    (DraftRequest(transcript="[doctor] hi", sections=["hpi", "bogus"]), "unknown sections"),
])
def test_bad_requests(request_, message):
    with pytest.raises(DraftError, match=message):
        request_.plan()


def test_draft_streams_sections_and_checks_grounding(drafter):
    events = list(drafter.draft(DraftRequest(transcript=TRANSCRIPT, sections=["chief_complaint", "assessment_plan"],
                                             max_new_tokens=80)))
    names = [e for e, _ in events]
    assert names[0] == "start" and names[-1] == "done"
    assert names.count("section_start") == names.count("section_end") == 2
    done = events[-1][1]
    for section in done["sections"]:
        streamed = "".join(d["text"] for e, d in events if e == "token" and d["section"] == section["id"])
        assert section["text"] == streamed.strip()
        for mark in section["unsupported"]:
            assert section["text"][mark["start"]:mark["end"]] == mark["text"] and mark["reason"]
    for mark in done["unsupported"]:
        assert done["note"][mark["start"]:mark["end"]] == mark["text"]
    assert done["metrics"]["tokens"] > 0 and done["metrics"]["ttft_ms"] > 0
    assert any(c["kind"] == "patient" for c in done["citations"])
    assert any(c["kind"] == "knowledge" and c["source"]["title"] for c in done["citations"])


def test_invented_facts_are_marked_and_stated_ones_are_not(drafter):
    done = list(drafter.draft(DraftRequest(transcript=TRANSCRIPT, sections=["hpi"])))[-1][1]
    marked = {m["text"] for m in done["unsupported"]}
    assert {"metformin", "500 mg", "diabetes"} <= marked, marked
    assert not marked & {"400 mg", "lisinopril", "10 mg", "right knee", "Ibuprofen"}, marked


def test_cancel_stops_between_tokens(drafter):
    import threading

    cancel = threading.Event()
    seen = 0
    for event, _ in drafter.draft(DraftRequest(transcript=TRANSCRIPT, sections=["hpi", "assessment_plan"]), cancel):
        if event == "token":
            seen += 1
            if seen == 3:
                cancel.set()
        last = event
    assert last == "done" and seen < 40


def test_every_section_is_drafted(drafter):
    """The engine sets the cancel event it is handed when a stream ends; a later section must
    not inherit that and come back empty."""
    done = list(drafter.draft(DraftRequest(transcript=TRANSCRIPT, sections=["chief_complaint", "hpi", "assessment_plan"],
                                           max_new_tokens=24)))[-1][1]
    assert len(done["sections"]) == 3
    assert all(len(s["text"]) > 10 for s in done["sections"]), [s["text"] for s in done["sections"]]


def test_the_real_model_drafts_a_grounded_section(embedded_engine, graph, retriever):
    """End to end on the embedded model: real tokens stream, and every mark points at real text."""
    events = list(Drafter(embedded_engine, graph, retriever).draft(
        DraftRequest(transcript=TRANSCRIPT, sections=["assessment_plan"], max_new_tokens=60)))
    done = events[-1][1]
    streamed = "".join(d["text"] for e, d in events if e == "token")
    assert done["sections"][0]["text"] == streamed.strip() and len(streamed.split()) > 5
    for mark in done["unsupported"]:
        assert done["note"][mark["start"]:mark["end"]] == mark["text"] and mark["reason"]
    assert done["metrics"]["tokens"] > 5 and done["metrics"]["tokens_per_s"] > 0
