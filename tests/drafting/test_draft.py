import pytest

from copilot.drafting.draft import DraftError, DraftRequest, Drafter, note_types

TRANSCRIPT = """[doctor] hi mister jones, what brings you in today?
[patient] my right knee has been hurting for about two weeks, since i slipped on the stairs.
[doctor] have you taken anything for it?
[patient] ibuprofen, four hundred milligrams, twice a day. it helps a little.
[doctor] any other medical problems?
[patient] i have high blood pressure, i take lisinopril ten milligrams every morning.
[doctor] on exam there is mild swelling of the right knee and tenderness along the medial joint line.
[doctor] i think this is a medial meniscus strain. we will get an x-ray of the right knee, continue ibuprofen
with food, and i will see you back in two weeks.
[patient] okay, thank you."""


@pytest.fixture(scope="module")
def drafter(embedded_engine, graph, retriever):
    return Drafter(embedded_engine, graph, retriever)


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
