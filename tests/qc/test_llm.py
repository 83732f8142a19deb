"""The model pass keeps only findings whose quoted sentence really is in the note."""

from types import SimpleNamespace

from copilot.qc.llm import ModelReviewer, parse_findings
from copilot.records.loaders import record_from_json
from tests.helpers import NOTE, make_record


class ScriptedEngine:
    """Answers every request with a fixed text, standing in for the model's output format."""

    def __init__(self, answer):
        self.answer = answer

    def generate(self, request):
        return SimpleNamespace(text=self.answer)


def test_parse_findings_tolerates_noise():
    assert parse_findings('Sure! [{"quote": "a b c", "problem": "x"}] done') == [{"quote": "a b c", "problem": "x"}]
    assert parse_findings("no json here") == [] and parse_findings("[{broken") == []
    assert parse_findings('[{"quote": 5, "problem": "x"}, "text"]') == []


def test_only_verifiable_quotes_become_model_findings():
    record = record_from_json(make_record())
    real = "He denies chest pain and shortness of breath."
    answer = ('[{"quote": "%s", "problem": "Contradicts the HPI."}, '
              '{"quote": "The patient has a fractured femur.", "problem": "invented"}]' % real)
    findings = ModelReviewer(ScriptedEngine(answer)).review(record)
    assert len(findings) == 1
    finding = findings[0]
    assert finding["origin"] == "model" and finding["rule_id"] == "model.inconsistency"
    assert finding["message"].startswith("[model-generated]")
    start, end = finding["evidence"]["start"], finding["evidence"]["end"]
    assert NOTE[start:end] == real


def test_real_model_pass_runs_end_to_end(embedded_engine):
    findings = ModelReviewer(embedded_engine, max_new_tokens=48).review(record_from_json(make_record()))
    for finding in findings:  # whatever the small model says, nothing unverifiable gets through
        assert finding["evidence"]["text"] in NOTE and finding["origin"] == "model"
