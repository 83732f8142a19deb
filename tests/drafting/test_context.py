from copilot.drafting.context import CHUNK_CHARS, PatientContext, transcript_chunks
from copilot.records.loaders import record_from_json

TRANSCRIPT = "\n".join(
    f"[doctor] question {i} about the knee pain and how long it has been going on\n[patient] answer {i}, "
    "it started two weeks ago after a fall" for i in range(30)) + "\n[doctor] we will order an x-ray and start meloxicam"


def test_turns_are_never_cut_and_chunks_are_bounded():
    chunks = transcript_chunks(TRANSCRIPT)
    assert len(chunks) > 3
    assert all(len(c.text) <= CHUNK_CHARS for c in chunks)
    assert "\n".join(c.text for c in chunks) == TRANSCRIPT.strip()
    assert all(c.text.startswith("[") for c in chunks)


def test_selection_keeps_story_order_budget_and_relevance():
    context = PatientContext(TRANSCRIPT, None)
    chosen = context.select("plan order x-ray start medication", 800)
    assert sum(len(c.text) for c in chosen) <= 800
    assert [c.order for c in chosen] == sorted(c.order for c in chosen)
    assert any("meloxicam" in c.text for c in chosen)


def test_record_chunks_are_pinned():
    record = record_from_json({"id": "r1", "patient": {"sex": "female", "age": 70, "allergies": ["penicillin"]},
                               "medications": [{"name": "warfarin", "dose": 5, "unit": "mg", "frequency": "daily"}],
                               "documents": [{"id": "d1", "type": "progress_note", "text": "Seen for AF.\n\nINR 2.4."}]})
    context = PatientContext(TRANSCRIPT, record)
    chosen = context.select("knee", 1500)
    ids = [c.id for c in chosen]
    assert "record:allergies" in ids and "record:medications" in ids
    assert any("warfarin 5 mg daily" in c.text for c in chosen)


def test_nothing_to_draft_from():
    assert PatientContext("", None).select("anything", 1000) == []
