"""Drafting pairs from the public sets (ACI-Bench, MTS-Dialog) and from project JSON records.

Readers return raw examples; nothing here is trained on before the de-identification gate
(finetune/gate.py) has passed it. Encounter ids are prefixed by their dataset so ids from
different sources never collide, and a project record derived from an ACI-Bench encounter
(the QC dev set records carry ``source.file``) shares that encounter's id and split side.
"""

from __future__ import annotations

import csv
import json
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Iterator

from finetune.prompts import Example, language_of, prompts
from finetune.split import VALIDATION

ACI_FILES = {"train.json": None, "valid.json": VALIDATION}
MTS_FILES = {"train.csv": None, "valid.csv": VALIDATION}


class SourceError(ValueError):
    pass


def read_aci_bench(folder: Path) -> list[Example]:
    """ACI-Bench ``{"data": [{"src": dialogue, "tgt": note, "file": id}]}`` -> dialogue -> full note."""
    folder = Path(folder)
    found = [name for name in ACI_FILES if (folder / name).is_file()]
    if not found:
        raise SourceError(f"no ACI-Bench train.json/valid.json in {folder}")
    examples = []
    for name in found:
        try:
            rows = json.loads((folder / name).read_text(encoding="utf-8"))["data"]
        except (json.JSONDecodeError, KeyError, TypeError) as exc:
            raise SourceError(f"{folder / name}: not an ACI-Bench file ({exc})") from None
        for index, row in enumerate(rows):
            if not (row.get("src") or "").strip() or not (row.get("tgt") or "").strip():
                raise SourceError(f"{folder / name}: row {index} lacks src or tgt")
            encounter = f"aci-bench:{row['file']}"
            examples.append(Example(id=f"{encounter}:note", encounter_id=encounter, source="aci-bench", task="note",
                                    language="en", source_text=row["src"].strip(), reference=row["tgt"].strip(),
                                    split_hint=ACI_FILES[name], origin=f"{folder / name}#{index}"))
    return examples


def read_mts_dialog(folder: Path) -> list[Example]:
    """MTS-Dialog CSV (ID, section_header, section_text, dialogue) -> dialogue -> one note section."""
    folder = Path(folder)
    found = [name for name in MTS_FILES if (folder / name).is_file()]
    if not found:
        raise SourceError(f"no MTS-Dialog train.csv/valid.csv in {folder}")
    titles = prompts()["mts_sections"]
    examples = []
    for name in found:
        split = name.split(".")[0]
        with (folder / name).open(encoding="utf-8", newline="") as handle:
            reader = csv.DictReader(handle)
            missing = {"ID", "section_header", "section_text", "dialogue"} - set(reader.fieldnames or [])
            if missing:
                raise SourceError(f"{folder / name}: missing column(s) {', '.join(sorted(missing))}")
            for row in reader:
                if not row["dialogue"].strip() or not row["section_text"].strip():
                    continue
                header = row["section_header"].strip().upper()
                encounter = f"mts-dialog:{split}:{row['ID']}"
                examples.append(Example(
                    id=f"{encounter}:section", encounter_id=encounter, source="mts-dialog", task="section",
                    language="en", source_text=row["dialogue"].strip(), reference=row["section_text"].strip(),
                    fields={"section": titles.get(header, header.lower().replace("_", " "))},
                    split_hint=MTS_FILES[name], origin=f"{folder / name}#ID={row['ID']}"))
    return examples


@dataclass
class RecordInput:
    """One project record as read, before de-identification."""

    origin: str
    data: dict | None = None
    encounter_id: str = ""
    split_hint: str | None = None
    error: str | None = None
    skipped: str | None = None  # why a readable record is deliberately not used
    meta: dict = field(default_factory=dict)


def _record_input(data: object, origin: str) -> RecordInput:
    from copilot.records.loaders import RecordError, record_from_json

    hint, source = None, {}
    if isinstance(data, dict) and isinstance(data.get("record"), dict):
        # A labelled line ({"record", "expected", "source"}) such as benchmarks/data/qc_devset.jsonl.
        if data.get("expected"):
            return RecordInput(origin, skipped="labelled with planted defects (expected findings)")
        source = data.get("source") or {}
        data = data["record"]
    try:
        record_from_json(data, origin)  # schema validation; the dict itself is what the gate scrubs
    except RecordError as exc:
        return RecordInput(origin, error=str(exc))
    if source.get("dataset") and source.get("file"):
        encounter = f"{source['dataset']}:{source['file']}"
        hint = VALIDATION if source.get("split") in ("valid", "validation", "test") else None
    else:
        encounter = f"records:{data['id']}"
    return RecordInput(origin, data=data, encounter_id=encounter, split_hint=hint, meta={"source": source})


def read_records(paths: list[Path]) -> Iterator[RecordInput]:
    """Project JSON records from .json / .jsonl files and folders (FHIR Bundles are not used for training)."""
    from copilot.records.loaders import iter_paths

    for path in iter_paths(paths):
        if not path.exists():
            raise SourceError(f"records path does not exist: {path}")
        if path.suffix == ".jsonl":
            with path.open(encoding="utf-8") as handle:
                for number, line in enumerate(handle, 1):
                    if not line.strip():
                        continue
                    try:
                        data = json.loads(line)
                    except json.JSONDecodeError as exc:
                        yield RecordInput(f"{path}:{number}", error=f"malformed JSON: {exc.msg}")
                        continue
                    yield _record_input(data, f"{path}:{number}")
        elif path.suffix == ".json":
            try:
                data = json.loads(path.read_text(encoding="utf-8"))
            except json.JSONDecodeError as exc:
                yield RecordInput(str(path), error=f"malformed JSON: {exc.msg}")
                continue
            yield _record_input(data, str(path))


def _split_note(text: str, language: str) -> tuple[str, str, str] | None:
    """(before, heading, rest-with-heading) at the first assessment/diagnosis/plan heading."""
    spec = prompts()
    headings = sorted(spec["record_split_headings"], key=len, reverse=True)
    pattern = re.compile(r"^[ \t]*(" + "|".join(map(re.escape, headings)) + r")[ \t]*[:：]?[ \t]*$", re.M | re.I)
    minimum = spec["record_min_chars"][language]
    for match in pattern.finditer(text):
        before, rest = text[:match.start()].strip(), text[match.start():].strip()
        if len(before) >= minimum and len(rest) >= minimum // 4:
            return before, match.group(1).strip(), rest
    return None


def _material(record: dict, language: str, before: str, document_type: str, earlier: list[dict]) -> str:
    spec = prompts()
    labels = spec["record_material"][language]
    names = spec["document_types"]
    patient, encounter = record.get("patient") or {}, record.get("encounter") or {}
    sex = spec["sexes"][patient.get("sex", "unknown")][language]
    age = patient.get("age") if patient.get("age") is not None else "?"
    kind = spec["encounter_types"][encounter.get("type", "outpatient")][language]
    lines = [labels["title"], labels["patient"].format(sex=sex, age=age, encounter=kind)]
    allergies = patient.get("allergies") or []
    lines.append(labels["allergies"].format(items="; ".join(allergies)) if allergies else labels["no_allergies"])
    medications = []
    for m in record.get("medications") or []:
        dose = f" {m['dose']:g} {m.get('unit') or ''}".rstrip() if m.get("dose") is not None else ""
        extra = " ".join(x for x in (m.get("route"), m.get("frequency")) if x)
        medications.append(f"{m['name']}{dose} {extra}".strip())
    if medications:
        lines.append(labels["medications"].format(items="; ".join(medications)))
    diagnoses = [d["text"] + (f" ({d['code']})" if d.get("code") else "") for d in record.get("diagnoses") or []]
    if diagnoses:
        lines.append(labels["diagnoses"].format(items="; ".join(diagnoses)))
    for document in earlier:
        lines += ["", labels["earlier"].format(document=names[document["type"]][language]), document["text"].strip()]
    lines += ["", labels["document"].format(document=names[document_type][language]), before]
    return "\n".join(lines)


def record_examples(record: dict, encounter_id: str, split_hint: str | None, origin: str) -> list[Example]:
    """A de-identified project record -> one example per document that has an assessment/plan part."""
    names = prompts()["document_types"]
    documents = sorted(record["documents"], key=lambda d: (d.get("authored_at") or "", record["documents"].index(d)))
    examples = []
    for index, document in enumerate(documents):
        language = language_of(document["text"])
        cut = _split_note(document["text"], language)
        if cut is None:
            continue
        before, heading, rest = cut
        examples.append(Example(
            id=f"{encounter_id}:{record['id']}:{document['id']}", encounter_id=encounter_id, source="records",
            task="record_note", language=language,
            source_text=_material(record, language, before, document["type"], documents[:index]),
            reference=rest, fields={"document": names[document["type"]][language], "heading": heading},
            split_hint=split_hint, origin=origin))
    return examples
