"""Dataset building: split by encounter, answer-only labels, truncation, the gate, the manifest."""

from __future__ import annotations

import hashlib
import json
import random
from pathlib import Path

import pytest

from finetune.chat_format import IGNORE_INDEX, encode_example, encode_messages
from finetune.prompts import Example
from finetune.split import TRAIN, VALIDATION, assign


def _example(i: int, encounter: str, hint=None, task="section") -> Example:
    return Example(id=f"{encounter}:{i}", encounter_id=encounter, source="test", task=task, language="en",
                   source_text=f"Doctor: question {i}\nPatient: answer {i}", reference=f"Answer {i}.",
                   fields={"section": "plan"}, split_hint=hint)


def test_split_is_deterministic_by_encounter_and_keeps_held_out_encounters():
    examples = [_example(i, f"enc-{i // 3}") for i in range(900)]  # three examples per encounter
    examples += [_example(0, "held-out-a", hint=VALIDATION), _example(1, "held-out-a")]
    first = assign(examples, 0.2, "salt")
    shuffled = examples[:]
    random.Random(1).shuffle(shuffled)
    second = assign(shuffled, 0.2, "salt")
    assert {e.id for e in first[VALIDATION]} == {e.id for e in second[VALIDATION]}
    train_encounters = {e.encounter_id for e in first[TRAIN]}
    validation_encounters = {e.encounter_id for e in first[VALIDATION]}
    assert not train_encounters & validation_encounters
    assert "held-out-a" in validation_encounters  # one pinned example holds the whole encounter out
    assert 0.12 < len(validation_encounters) / 301 < 0.28
    other_salt = assign(examples, 0.2, "another salt")
    assert {e.id for e in other_salt[VALIDATION]} != {e.id for e in first[VALIDATION]}


@pytest.fixture(scope="module")
def tokenizer(tiny_checkpoint):
    from finetune.dataset import load_tokenizer

    return load_tokenizer(tiny_checkpoint)


def test_loss_is_on_the_answer_tokens_only(tokenizer):
    example = Example(id="q", encounter_id="kg:x", source="knowledge-graph", task="kg_qa", language="en",
                      source_text="What is the maximum daily dose of lisinopril?",
                      reference="80 mg per day.", suffix="\nSource: label [drug.lisinopril v1]")
    encoded = encode_messages(tokenizer, example.messages())
    first = next(i for i, label in enumerate(encoded.labels) if label != IGNORE_INDEX)
    assert all(label == IGNORE_INDEX for label in encoded.labels[:first])
    assert all(label == token for label, token in zip(encoded.labels[first:], encoded.input_ids[first:]))
    prompt = tokenizer.apply_chat_template(example.messages(with_answer=False), tokenize=False,
                                           add_generation_prompt=True)
    assert first == len(tokenizer(prompt, add_special_tokens=False)["input_ids"])
    answer = tokenizer.decode(encoded.input_ids[first:])
    assert answer.startswith(example.answer) and answer[len(example.answer):].strip() == "<|im_end|>"
    assert encoded.prompt_tokens == first and encoded.answer_tokens == len(encoded.input_ids) - first


def test_long_pairs_lose_dialogue_middle_not_the_note(tokenizer):
    dialogue = "\n".join(f"[doctor] question number {i} about the headache ?\n[patient] answer number {i} ."
                         for i in range(60))
    note = "ASSESSMENT AND PLAN\n\nTension headache. Ibuprofen 400 mg as needed."
    example = Example(id="n", encounter_id="e", source="aci-bench", task="note", language="en",
                      source_text=dialogue, reference=note)
    encoded = encode_example(tokenizer, example, max_length=700, min_prompt_tokens=520)
    assert encoded.truncated == "source" and len(encoded.input_ids) <= 700
    text = tokenizer.decode(encoded.input_ids)
    assert "question number 0 " in text and "answer number 59 ." in text and "lines omitted" in text
    assert "question number 30 " not in text
    first = next(i for i, label in enumerate(encoded.labels) if label != IGNORE_INDEX)
    assert tokenizer.decode(encoded.input_ids[first:]).startswith(note)

    long_note = Example(id="m", encounter_id="e", source="aci-bench", task="note", language="en",
                        source_text=dialogue, reference=note * 30)
    encoded = encode_example(tokenizer, long_note, max_length=700, min_prompt_tokens=520)
    assert encoded.truncated == "source+answer" and len(encoded.input_ids) == 700
    assert encoded.prompt_tokens >= 520 and encoded.answer_tokens > 0


def test_record_without_transcript_becomes_a_grounded_continuation(sample_notes):
    from finetune.sources import record_examples

    RECORD_NOTE, ZH_NOTE, _record = sample_notes["record_note"], sample_notes["zh_note"], sample_notes["record"]

    (example,) = record_examples(_record("r1", RECORD_NOTE), "records:r1", None, "test")
    assert example.task == "record_note" and example.reference.startswith("ASSESSMENT AND PLAN")
    assert "HISTORY OF PRESENT ILLNESS" in example.source_text and "ASSESSMENT AND PLAN" not in example.source_text
    assert "lisinopril 10 mg oral daily" in example.source_text and "Allergies: penicillin" in example.source_text
    (zh,) = record_examples(_record("r2", ZH_NOTE, "first_course_record"), "records:r2", None, "test")
    assert zh.language == "zh" and zh.reference.startswith("初步诊断") and "首次病程记录" in zh.user_text()
    assert record_examples(_record("r3", "PLAN\n\nnothing before the plan"), "records:r3", None, "test") == []


def test_prepared_dataset_manifest_split_and_gate(tiny_run, tiny_sources, finetune_settings):
    from datasets import load_from_disk

    from knowledge.snapshot import Snapshot

    run, manifest = tiny_run
    data = load_from_disk(str(run.dataset))
    train, validation = data["train"], data["validation"]
    assert not set(train["encounter_id"]) & set(validation["encounter_id"])
    assert {"aci-bench:D2N951-virtassist", "aci-bench:D2N952-virtassist"} <= set(validation["encounter_id"])
    # A record derived from an ACI-Bench encounter shares that encounter's side.
    for split in (train, validation):
        ids = set(split["encounter_id"])
        if "aci-bench:D2N901-virtassist" in ids:
            assert any(i.startswith("aci-bench:D2N901-virtassist:") and t == "record_note"
                       for i, t in zip(split["id"], split["task"]))
    records = manifest["sources"]["records"]
    assert records["read"] == 6 and records["errors"] == 1 and records["without_assessment_heading"] == 1
    assert records["skipped"] == {"labelled with planted defects (expected findings)": 1}
    assert records["kept"] == 3
    files = {f["path"]: f["sha256"] for f in manifest["sources"]["aci-bench"]["files"]}
    train_json = str(tiny_sources["aci"] / "train.json")
    assert files[train_json] == hashlib.sha256(Path(train_json).read_bytes()).hexdigest()
    for name, digest in manifest["files"].items():
        assert hashlib.sha256((run.dataset / name).read_bytes()).hexdigest() == digest
    counts = manifest["counts"]
    assert sum(counts[TRAIN].values()) == len(train) and sum(counts[VALIDATION].values()) == len(validation)
    assert counts[TRAIN]["kg_qa"] + counts[VALIDATION].get("kg_qa", 0) > 0

    # The gate: names are replaced, consistently between a dialogue and its note, and counted.
    deid = manifest["deidentification"]
    assert deid["phi_replaced"].get("NAME", 0) >= 4 and deid["records_passed"] == 4
    everything = json.dumps([train[i]["messages"] for i in range(len(train))]
                            + [validation[i]["messages"] for i in range(len(validation))], ensure_ascii=False)
    for name in ("Martha Collins", "martha collins", "James Walker", "Peter Hall", "Walter Green", "Anna Smith"):
        assert name not in everything
    rows = {r["id"]: r for split in (train, validation) for r in split}
    note = rows["aci-bench:D2N901-virtassist:note"]
    surrogate = note["reference"].split("HISTORY OF PRESENT ILLNESS\n\n")[1].split(" reports")[0]
    assert surrogate and surrogate.lower() in note["source_text"].lower()

    # Labels, lengths, citations.
    snapshot = Snapshot.current(finetune_settings.home)
    for row in rows.values():
        assert len(row["input_ids"]) <= 640 and len(row["labels"]) == len(row["input_ids"])
        assert sum(label != IGNORE_INDEX for label in row["labels"]) == row["answer_tokens"] > 0
        if row["task"] == "kg_qa":
            cited = row["citations"][0]
            assert cited["id"] in snapshot.items and cited["title"] and cited["issuer"]
            assert row["messages"][-1]["content"].endswith(f"[{cited['id']} v{cited['version']}]")
    assert manifest["truncation"].get(f"{TRAIN}:source", 0) + manifest["truncation"].get(f"{VALIDATION}:source", 0) > 0


def test_refused_examples_are_counted_and_left_out(scrubber):
    from finetune.deid import PHIRefused
    from finetune.gate import Gate

    class RefusesMarked:
        """The real scrubber, except that it refuses texts carrying a marker (to reach the refusal path)."""

        def name_words(self, text):
            return scrubber.name_words(text)

        def gate(self, text, surrogates=None, where=""):
            if "REFUSE-ME" in text:
                raise PHIRefused({"NAME": 1}, where)
            return scrubber.gate(text, surrogates, where=where)

    gate = Gate(RefusesMarked())
    kept = gate.example(_example(1, "enc-1"))
    refused = gate.example(Example(id="x", encounter_id="enc-2", source="test", task="section", language="en",
                                   source_text="Doctor: hi REFUSE-ME", reference="Fine."))
    assert kept is not None and refused is None
    summary = gate.summary()
    assert summary["refused"] == {"test": 1} and summary["passed"] == {"test": 1}
    assert summary["refusals"][0]["id"] == "x" and "NAME" in summary["refusals"][0]["reason"]


def test_cli_errors_are_clear(tmp_path, monkeypatch, capsys, tiny_checkpoint):
    from copilot.cli import main

    monkeypatch.setenv("COPILOT_HOME", str(tmp_path / "home"))
    assert main(["finetune", "train", "--config", "tiny", "--work-dir", str(tmp_path / "w")]) == 2
    assert "no prepared dataset" in capsys.readouterr().err
    assert main(["finetune", "prepare", "--no-public", "--no-kgqa"]) == 2
    assert "copilot model prepare" in capsys.readouterr().err
    assert main(["finetune", "prepare", "--config", "tiny", "--base", str(tiny_checkpoint), "--no-public",
                 "--no-kgqa", "--aci-bench", str(tmp_path / "missing")]) == 2
    assert "folder not found" in capsys.readouterr().err
    bad = tmp_path / "bad.yaml"
    bad.write_text("name: bad\ntrain:\n  learning_rat: 0.1\n")
    assert main(["finetune", "prepare", "--config", str(bad)]) == 2
    assert "learning_rat" in capsys.readouterr().err
    with pytest.raises(SystemExit) as exit_info:
        main(["finetune", "--help"])
    assert exit_info.value.code == 0
    text = capsys.readouterr().out
    assert all(word in text for word in ("prepare", "train", "export", "eval", "run", "de-identify"))
