"""The de-identification gate: detection quality on the labelled set, surrogates, gate, record helper."""

from __future__ import annotations

import json
import logging
import re
import socket
import sys
from datetime import date, datetime
from pathlib import Path

import pytest
import yaml

from finetune.deid import PHIRefused, Scrubber, ScrubResult, SurrogateMap, deidentify_record
from finetune.deid.dates import parse
from finetune.deid.identifiers import cn_resident_id_valid

REPO = Path(__file__).resolve().parents[2]
EVAL_SET = REPO / "finetune" / "data" / "phi_eval.jsonl"
sys.path.insert(0, str(REPO / "benchmarks"))


@pytest.fixture(scope="module")
def scrubber():
    """Loaded with every socket refused: loading and scrubbing make no network call (no model download)."""
    def refuse(*args, **kwargs):
        raise AssertionError("the de-identification scrubber tried to open a network connection")

    patches = [(socket.socket, "connect"), (socket.socket, "connect_ex"), (socket, "create_connection")]
    saved = [(obj, name, getattr(obj, name)) for obj, name in patches]
    for obj, name in patches:
        setattr(obj, name, refuse)
    try:
        scrubber = Scrubber()
        scrubber.gate("Seen by Dr. Lee; e-mail jane.roe@gmail.com, www.example-clinic.org, 10.1.2.3.",
                      SurrogateMap(seed="offline"))
        yield scrubber
    finally:
        for obj, name, original in saved:
            setattr(obj, name, original)


def _rows() -> list[dict]:
    return [json.loads(line) for line in EVAL_SET.read_text(encoding="utf-8").splitlines() if line.strip()]


# ---------------------------------------------------------------------------------------- the labelled set

def test_labelled_set_offsets_are_valid():
    types = yaml.safe_load((REPO / "finetune" / "deid" / "recognizers.yaml").read_text())["types"]
    rows = _rows()
    assert len(rows) >= 30 and len({r["id"] for r in rows}) == len(rows)
    per_type: dict[str, int] = {}
    for row in rows:
        text = row["text"]
        marks = sorted(row["spans"] + row.get("lookalikes", []), key=lambda s: s["start"])
        for mark in marks:
            value = text[mark["start"]:mark["end"]]
            assert value == mark["text"] and value == value.strip() and value, (row["id"], mark)
            before = text[mark["start"] - 1] if mark["start"] else " "
            after = text[mark["end"]] if mark["end"] < len(text) else " "
            assert not (before.isalnum() and value[0].isalnum()), (row["id"], value)  # never mid-word
            assert not (after.isalnum() and value[-1].isalnum()), (row["id"], value)
        for a, b in zip(marks, marks[1:]):
            assert a["end"] <= b["start"], (row["id"], a, b)  # labels never overlap
        for span in row["spans"]:
            assert span["type"] in types
            per_type[span["type"]] = per_type.get(span["type"], 0) + 1
    assert sum(per_type.values()) >= 120 and set(per_type) == set(types)
    assert min(per_type.values()) >= 5, per_type
    assert sum(len(r.get("lookalikes", [])) for r in rows) >= 100


def test_recall_and_precision_on_the_labelled_set(scrubber):
    from deid_eval import evaluate

    report = evaluate(scrubber, _rows())
    assert report["overall"]["recall"] >= 0.95, report["overall"]
    assert report["type_agnostic"]["recall"] >= 0.95
    assert report["overall"]["precision"] >= 0.9
    assert report["lookalikes"]["detected"] <= 0.02 * report["lookalikes"]["total"], report["lookalikes"]
    for type_, figures in report["matching"]["overlap"]["per_type"].items():
        assert figures["recall"] >= 0.8, (type_, figures)


def test_every_labelled_snippet_passes_the_gate(scrubber):
    """Surrogates never trip the gate: scrubbed text is re-detected and only surrogates are found."""
    replaced = labelled = 0
    for row in _rows():
        result = scrubber.gate(row["text"], SurrogateMap(seed=row["id"]))
        labelled += len(row["spans"])
        replaced += sum(result.counts.values())
        for span, placed in zip(result.spans, result.surrogate_spans):
            assert row["text"][span.start:span.end] != result.text[placed.start:placed.end] or span.type == "AGE"
    assert replaced >= 0.95 * labelled


# ---------------------------------------------------------------------------------------- surrogates

NOTE = ("Patient: Maria Alvarez   MRN: 00482913\nMs. Alvarez was admitted on 03/14/2023 and discharged "
        "03/19/2023. Call her daughter Rosa Alvarez at (617) 555-0142 or e-mail maria.alvarez@gmail.com. "
        "ALVAREZ, MARIA signed the consent.")


def test_same_original_same_surrogate_across_fields(scrubber):
    surrogates = SurrogateMap(seed="enc-1")
    first = scrubber.scrub(NOTE, surrogates)
    second = scrubber.scrub("Follow-up: Mrs. Alvarez (MRN 00482913) doing well.", surrogates)
    surname = re.search(r"Ms\. (\w+) was admitted", first.text).group(1)
    assert surname != "Alvarez" and "Alvarez" not in first.text and "ALVAREZ" not in first.text
    assert f"Mrs. {surname} (MRN" in second.text
    assert first.text.count(surname) + first.text.count(surname.upper()) >= 4  # every mention, any case
    mrn = re.search(r"MRN: (\S+)", first.text).group(1)
    assert mrn != "00482913" and f"MRN {mrn})" in second.text and len(mrn) == 8
    # deterministic for a seed, different for another seed
    assert scrubber.scrub(NOTE, SurrogateMap(seed="enc-1")).text == first.text
    assert scrubber.scrub(NOTE, SurrogateMap(seed="enc-2")).text != first.text
    assert scrubber.scrub(NOTE, SurrogateMap(seed="enc-1", key="secret")).text != first.text


def test_surrogates_keep_the_format(scrubber):
    result = scrubber.scrub(NOTE, SurrogateMap(seed="enc-3"))
    assert re.search(r"\(\d{3}\) 555-01\d\d", result.text)
    email = re.search(r"\S+@\S+", result.text).group().rstrip(".")
    assert email.split("@")[1] in ("example.com", "example.org", "example.net", "mail.example.com")
    ip = scrubber.scrub("Login from 73.162.44.219 today.", SurrogateMap(seed="x")).text
    assert re.search(r"(192\.0\.2|198\.51\.100|203\.0\.113)\.\d+", ip)
    cn = scrubber.scrub("Mobile 13912345678, resident ID 110105196503071231.", SurrogateMap(seed="x"))
    new_id = re.search(r"\d{17}[\dX]", cn.text).group()
    assert new_id != "110105196503071231" and cn_resident_id_valid(new_id)
    assert cn.counts == {"ID": 1, "PHONE": 1} and "13912345678" not in cn.text


def test_date_shift_preserves_intervals(scrubber):
    text = "Admitted 03/14/2023, operated on March 16th, 2023, discharged 2023-03-21; follow-up 28 Mar 2023."
    surrogates = SurrogateMap(seed="enc-4")
    result = scrubber.scrub(text, surrogates)
    assert result.counts == {"DATE": 4}
    originals = [parse(text[s.start:s.end]).value for s in result.spans]
    shifted = [parse(result.text[s.start:s.end]).value for s in result.surrogate_spans]
    assert shifted != originals
    def intervals(days):
        return [(b - a).days for a, b in zip(days, days[1:])]

    assert intervals(originals) == intervals(shifted)
    assert all((new - old).days == surrogates.date_offset_days < 0 for old, new in zip(originals, shifted))
    assert re.fullmatch(r"\d\d/\d\d/\d{4}", result.text[result.surrogate_spans[0].start:result.surrogate_spans[0].end])
    assert surrogates.shift_date(date(2023, 3, 14)) == shifted[0]


def test_ages_over_89_only(scrubber):
    result = scrubber.scrub("A 92-year-old man; his wife, age 54, and son (a 67 yo) at bedside. Sister aged 101.",
                            SurrogateMap(seed="enc-5"))
    assert result.counts == {"AGE": 2}
    assert "90-year-old" in result.text and "age 54" in result.text and "67 yo" in result.text
    assert "92" not in result.text and "101" not in result.text


def test_clinical_content_is_kept(scrubber):
    text = ("Lasix 40 mg PO daily, metformin 500 mg BID, Norco 5/325 q6h PRN. BP 142/88, HR 88, SpO2 97%. "
            "Hgb 10.4, INR 2.4, eGFR 34. ICD-10 E11.65, I48.91. Parkinson disease; Foley catheter placed "
            "3 days ago. Murphy sign negative, Babinski downgoing, strength 5/5, 2/6 systolic murmur. "
            "A 54-year-old man, age 54. Diagnosed with diabetes in 2009. Glasgow Coma Scale 15.")
    result = scrubber.scrub(text, SurrogateMap(seed="enc-6"))
    assert result.text == text and result.counts == {} and scrubber.detect(text) == []


def test_counts_spans_and_logs_never_hold_the_original(scrubber, caplog):
    caplog.set_level(logging.DEBUG, logger="finetune.deid")
    result = scrubber.scrub(NOTE, SurrogateMap(seed="enc-7"))
    assert result.counts == {"DATE": 2, "EMAIL": 1, "MRN": 1, "NAME": 5, "PHONE": 1}
    assert sum(result.counts.values()) == len(result.spans) == len(result.surrogate_spans)
    for span, placed in zip(result.spans, result.surrogate_spans):
        assert span.type == placed.type and NOTE[span.start:span.end] != result.text[placed.start:placed.end]
    assert NOTE[result.spans[0].start:result.spans[0].end] == "Maria Alvarez"
    assert caplog.records and not any("Alvarez" in r.getMessage() or "0142" in r.getMessage() for r in caplog.records)


# ---------------------------------------------------------------------------------------- the gate

def test_gate_refuses_residual_phi(scrubber, monkeypatch):
    text = "Seen by Dr. Okafor today. Return in 2 weeks."
    assert "Okafor" not in scrubber.gate(text, SurrogateMap(seed="g")).text
    # A scrubber that replaces only detections scoring 0.95+ leaves "Dr. Okafor" (0.9): the gate,
    # re-detecting at its own threshold, finds it and refuses the text.
    monkeypatch.setattr(scrubber, "score_threshold", 0.95)
    monkeypatch.setattr(scrubber, "gate_threshold", 0.5)
    assert "Okafor" in scrubber.scrub(text, SurrogateMap(seed="g")).text
    with pytest.raises(PHIRefused) as refused:
        scrubber.gate(text, SurrogateMap(seed="g"), where="documents/0/text")
    assert refused.value.types == ["NAME"] and refused.value.counts == {"NAME": 1}
    assert "documents/0/text" in str(refused.value) and "Okafor" not in str(refused.value)


def test_gate_refuses_when_a_recogniser_misses(scrubber, monkeypatch):
    """If the replacement step loses a detection (here: e-mail), the re-detection still sees it."""
    real_detect = scrubber.detect

    def scrub_without_email(text, **kwargs):
        found = real_detect(text, **kwargs)
        return found if kwargs.get("threshold") else [d for d in found if d.type != "EMAIL"]

    monkeypatch.setattr(scrubber, "detect", scrub_without_email)
    with pytest.raises(PHIRefused, match="EMAIL x1"):
        scrubber.gate("Results to jane.roe@gmail.com please.", SurrogateMap(seed="g2"))


def test_a_scrubber_with_a_recogniser_disabled_leaves_what_the_full_one_finds(scrubber):
    partial = Scrubber(disabled=["EMAIL", "UrlRecognizer", "url_explicit"])  # a type, or recogniser names
    text = "Dr. Okafor asked that results go to jane.roe@gmail.com by 03/14/2023."
    result = partial.scrub(text, SurrogateMap(seed="p"))
    assert "jane.roe@gmail.com" in result.text and "Okafor" not in result.text
    assert result.counts == {"DATE": 1, "NAME": 1}
    assert [d.type for d in scrubber.residual(result)] == ["EMAIL"]


# ---------------------------------------------------------------------------------------- records

def _record() -> dict:
    return {
        "id": "MRN00482913-enc7",
        "patient": {"sex": "female", "age": 95, "birth_date": "1928-04-17", "allergies": ["penicillin"]},
        "encounter": {"type": "inpatient", "admitted_at": "2023-03-14T08:30:00",
                      "discharged_at": "2023-03-19T12:00:00"},
        "documents": [
            {"id": "dc-1", "type": "discharge_summary", "authored_at": "2023-03-19T11:00:00",
             "signed_at": "2023-03-19T11:30:00",
             "text": "Patient: Maria Alvarez  MRN: 00482913  DOB: 04/17/1928\nMs. Alvarez, a 95-year-old woman, was "
                     "admitted on 03/14/2023 with pneumonia; ceftriaxone 1 g IV daily. BP 142/88."},
            {"id": "pn-2", "type": "progress_note", "text": "[doctor] hi , maria . how's the cough ?\n"
                                                            "[patient] better , thanks ."},
        ],
        "medications": [{"name": "ceftriaxone", "dose": 1, "unit": "g", "route": "IV", "frequency": "daily"}],
        "diagnoses": [{"code": "J18.9", "text": "Pneumonia"}],
    }


def test_record_helper_on_a_project_record(scrubber):
    from copilot.records.loaders import record_from_json

    original = _record()
    clean, counts = deidentify_record(original, scrubber)
    record_from_json(clean)  # still a valid project record
    dump = json.dumps(clean)
    for value in ("Alvarez", "maria", "Maria", "00482913", "1928-04-17", "04/17/1928", "MRN00482913"):
        assert value not in dump, value
    assert not re.search(r"\b95\b", dump), "the age over 89 survived"  # a surrogate id may contain the digits 95
    assert clean["patient"]["age"] == 90 and counts["AGE"] == 2 and counts["NAME"] >= 3
    offset = (date.fromisoformat(clean["patient"]["birth_date"]) - date(1928, 4, 17)).days
    assert offset < 0
    admitted = datetime.fromisoformat(clean["encounter"]["admitted_at"])
    assert (admitted - datetime(2023, 3, 14, 8, 30)).days == offset
    assert datetime.fromisoformat(clean["documents"][0]["signed_at"]) - admitted \
        == datetime(2023, 3, 19, 11, 30) - datetime(2023, 3, 14, 8, 30)
    assert clean["id"].startswith("rec-") and {d["id"][:4] for d in clean["documents"]} == {"doc-"}
    assert "ceftriaxone 1 g IV daily. BP 142/88." in clean["documents"][0]["text"]
    assert clean["medications"] == original["medications"] and clean["diagnoses"][0]["text"] == "Pneumonia"
    # the transcript's "maria" got the same surrogate as "Maria Alvarez" in the summary
    given = re.search(r"Patient: (\w+) ", clean["documents"][0]["text"]).group(1)
    assert f"hi , {given.lower()} ." in clean["documents"][1]["text"]
    assert deidentify_record(original, scrubber) == (clean, counts) and original == _record()


def test_record_helper_refuses_residual_phi(scrubber, monkeypatch):
    monkeypatch.setattr(scrubber, "score_threshold", 0.95)
    monkeypatch.setattr(scrubber, "gate_threshold", 0.5)
    with pytest.raises(PHIRefused, match="documents/0/text"):
        deidentify_record(_record(), scrubber)


# ---------------------------------------------------------------------------------------- bad input, offline

def test_bad_input(scrubber):
    from copilot.records.loaders import RecordError

    assert scrubber.scrub("") == ScrubResult(text="")
    assert scrubber.gate("", SurrogateMap(seed="e")).text == "" and scrubber.detect("   ") == []
    for bad in (None, 42, b"bytes", ["text"]):
        with pytest.raises(TypeError, match="must be str"):
            scrubber.scrub(bad)
        with pytest.raises(TypeError):
            scrubber.detect(bad)
    with pytest.raises(ValueError, match="seed"):
        SurrogateMap(seed="")
    with pytest.raises(TypeError, match="dict"):
        deidentify_record("not a record", scrubber)
    with pytest.raises(RecordError, match="documents"):
        deidentify_record({"id": "x"}, scrubber)


def test_models_are_never_downloaded(monkeypatch):
    import spacy

    from finetune.deid.nlp import InstalledSpacyNlpEngine, ModelMissing

    monkeypatch.setattr(spacy.cli, "download", lambda *a, **k: pytest.fail("spacy.cli.download was called"))
    engine = InstalledSpacyNlpEngine("no_such_spacy_pipeline_pkg", {"PERSON": "NAME"})
    with pytest.raises(ModelMissing, match="not installed"):
        engine.load()
    with pytest.raises(ModelMissing):
        engine._download_spacy_model_if_needed("en_core_web_lg")


def test_benchmark_writes_a_report_without_phi(scrubber, monkeypatch, tmp_path, capsys):
    import deid_eval

    import finetune.deid.scrubber as scrubber_module

    monkeypatch.setattr(scrubber_module, "Scrubber", lambda: scrubber)  # reuse the loaded scrubber
    aci = tmp_path / "aci.json"
    aci.write_text(json.dumps({"data": [{"src": "[doctor] hi , gloria . any chest pain since march 3rd ?\n"
                                                "[patient] no , none ."}]}))
    out = tmp_path / "report.json"
    assert deid_eval.main(["--out", str(out), "--aci", str(aci)]) == 0
    report = json.loads(out.read_text())
    assert set(report["matching"]) == {"overlap", "exact"} and report["gold_spans"] >= 120
    assert set(report["by_split"]) == {"dev", "heldout"}
    assert report["speed"]["aci_bench"]["texts"] == 1 and report["speed"]["aci_bench"]["scrub"]["mean_s"] > 0
    assert "Alvarez" not in out.read_text() and "gloria" not in out.read_text()
    assert "micro" in capsys.readouterr().out


@pytest.mark.parametrize("text", [
    "Alpha-glucosidase inhibitors such as acarbose lower postprandial glucose.",
    "Bisphosphonates can cause osteonecrosis of the jaw.",
    "Proton pump inhibitors and H2 receptor antagonists both reduce gastric acid.",
])
def test_drug_classes_are_not_names_or_places(scrubber, text):
    """Knowledge-graph QA states facts about drug classes; scrubbing them would teach nonsense."""
    assert scrubber.scrub(text).text == text


def test_an_eponymous_surname_is_still_a_name(scrubber):
    result = scrubber.scrub("Mr. John Parkinson was seen today for Parkinson disease.")
    assert "John Parkinson" not in result.text and "Parkinson disease" in result.text
