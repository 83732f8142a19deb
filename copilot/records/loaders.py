"""Read records from .txt notes, project JSON (validated against record.schema.json),
.jsonl files of many records, FHIR R4 Bundles, and directories of any of these.

Loading never raises for one bad record: each yields a ``Loaded`` with either a record
or an error, so a batch reports it and goes on. Each ``Loaded`` says where it was read (file and
line): a batch resumes by position, because record ids may repeat and some lines have none.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from datetime import date, datetime
from functools import lru_cache
from pathlib import Path
from typing import Iterable, Iterator

from copilot import strict_json
from copilot.records.model import (MAX_TEXT_BYTES, Diagnosis, Document, Encounter, Medication, Observation, Patient,
                                   Procedure, Record, RecordError)

SCHEMA_FILE = Path(__file__).with_name("record.schema.json")
MAX_FILE_BYTES = 64 * 1024 * 1024  # one .json/.txt file (a .jsonl is streamed line by line)
SUFFIXES = {".txt", ".json", ".jsonl"}


@dataclass
class Loaded:
    source: str  # the file, as the caller named it (relative to ``relative_to`` when given)
    line: int | None  # 1-based line in a .jsonl; None for a record that is a whole file
    record: Record | None = None
    error: str | None = None
    record_id: str | None = None  # the record's id, when the input names one

    @property
    def position(self) -> str:
        """Where the record was read: ``source:line`` or ``source``; what batch resume keys on."""
        return f"{self.source}:{self.line}" if self.line is not None else self.source

    @property
    def key(self) -> str:
        """How results name the record: its id when known, else its position."""
        return self.record_id or self.position


@lru_cache(maxsize=1)
def _validator():
    from jsonschema import Draft202012Validator, FormatChecker

    return Draft202012Validator(json.loads(SCHEMA_FILE.read_text()), format_checker=FormatChecker())


def _datetime(value: str | None, where: str) -> datetime | None:
    if value in (None, ""):
        return None
    try:
        return datetime.fromisoformat(value.replace("Z", "+00:00"))
    except ValueError:
        raise RecordError(f"{where}: not an ISO-8601 date-time: {value!r}") from None


def record_from_json(data: object, origin: str = "") -> Record:
    """A project JSON record or a FHIR R4 Bundle -> Record; RecordError says what is wrong."""
    if isinstance(data, dict) and data.get("resourceType") == "Bundle":
        from copilot.records.fhir import bundle_to_record

        return bundle_to_record(data, origin)
    if isinstance(data, dict) and "resourceType" in data:
        raise RecordError(f"FHIR {data['resourceType']} given; a Bundle is expected")
    if _is_labelled(data):
        return record_from_json(data["record"], origin)
    errors = sorted(_validator().iter_errors(data), key=lambda e: list(e.absolute_path))
    if errors:
        first = errors[0]
        where = "/".join(str(p) for p in first.absolute_path) or "(record)"
        more = f" (and {len(errors) - 1} more)" if len(errors) > 1 else ""
        raise RecordError(f"schema: {where}: {first.message}{more}")
    patient = data.get("patient") or {}
    encounter = data.get("encounter") or {}
    documents = []
    for index, doc in enumerate(data["documents"]):
        if len(doc["text"].encode("utf-8")) > MAX_TEXT_BYTES:
            raise RecordError(f"documents/{index}: text is larger than {MAX_TEXT_BYTES // 1024} KiB")
        documents.append(Document(id=doc["id"], type=doc["type"], text=doc["text"],
                                  authored_at=_datetime(doc.get("authored_at"), f"documents/{index}/authored_at"),
                                  signed_at=_datetime(doc.get("signed_at"), f"documents/{index}/signed_at")))
    ids = [d.id for d in documents]
    if len(set(ids)) != len(ids):
        raise RecordError("documents: document ids must be unique within a record")
    birth = patient.get("birth_date")
    return Record(
        id=data["id"],
        patient=Patient(sex=patient.get("sex", "unknown"), age=patient.get("age"),
                        birth_date=date.fromisoformat(birth) if birth else None,
                        allergies=list(patient.get("allergies", []))),
        encounter=Encounter(type=encounter.get("type", "outpatient"),
                            admitted_at=_datetime(encounter.get("admitted_at"), "encounter/admitted_at"),
                            discharged_at=_datetime(encounter.get("discharged_at"), "encounter/discharged_at"),
                            department=encounter.get("department"), attending=encounter.get("attending")),
        documents=documents,
        medications=[Medication(**{**m, "started_at": _datetime(m.get("started_at"), f"medications/{i}/started_at")})
                     for i, m in enumerate(data.get("medications", []))],
        diagnoses=[Diagnosis(text=d["text"], code=d.get("code")) for d in data.get("diagnoses", [])],
        origin=origin,
        procedures=[Procedure(name=p["name"], code=p.get("code"),
                              performed_at=_datetime(p.get("performed_at"), f"procedures/{i}/performed_at"),
                              ended_at=_datetime(p.get("ended_at"), f"procedures/{i}/ended_at"))
                    for i, p in enumerate(data.get("procedures", []))],
        observations=[Observation(name=o["name"], value=o.get("value"), unit=o.get("unit"),
                                  observed_at=_datetime(o.get("observed_at"), f"observations/{i}/observed_at"))
                      for i, o in enumerate(data.get("observations", []))],
        as_of=_datetime(data.get("as_of"), "as_of"),
    )


def _is_labelled(data: object) -> bool:
    """A labelled line, {"record": {...}, "expected": ..., "source": ...} (benchmarks/data/qc_devset.jsonl):
    the record is checked and the labels beside it are not part of it."""
    return (isinstance(data, dict) and isinstance(data.get("record"), dict) and "documents" not in data
            and "id" not in data)


def decode(raw: bytes, encoding: str | None, where: str) -> str:
    try:
        return raw.decode(encoding) if encoding else raw.decode("utf-8-sig")
    except (UnicodeDecodeError, LookupError) as exc:
        hint = "" if encoding else "; pass --encoding (e.g. gb18030 or latin-1) if the file is not UTF-8"
        raise RecordError(f"{where}: cannot decode as {encoding or 'UTF-8'} ({exc}){hint}") from None


def record_from_text(text: str, record_id: str, origin: str, document_type: str = "progress_note") -> Record:
    if not text.strip():
        raise RecordError("the note is empty")
    if len(text.encode("utf-8")) > MAX_TEXT_BYTES:
        raise RecordError(f"the note is larger than {MAX_TEXT_BYTES // 1024} KiB")
    return Record(id=record_id, documents=[Document(id=record_id, type=document_type, text=text)], origin=origin)


def _id_hint(data: object) -> str | None:
    if _is_labelled(data):
        data = data["record"]
    return data.get("id") if isinstance(data, dict) and isinstance(data.get("id"), str) and data.get("id") else None


def parse_json(text: str) -> object:
    """Strict, depth-limited JSON (copilot.strict_json) as a RecordError."""
    try:
        return strict_json.loads(text)
    except strict_json.JSONError as exc:
        raise RecordError(str(exc)) from None


def load_file(path: Path, encoding: str | None = None, source: str | None = None) -> Iterator[Loaded]:
    """The records of one file; ``source`` is the name errors and positions use (default: the path)."""
    source = source or str(path)
    try:
        if path.suffix == ".jsonl":
            yield from _load_jsonl(path, encoding, source)
            return
        if path.stat().st_size > MAX_FILE_BYTES:
            raise RecordError(f"file is larger than {MAX_FILE_BYTES // 2**20} MiB")
        text = decode(path.read_bytes(), encoding, source)
        if path.suffix == ".txt":
            yield Loaded(source, None, record=record_from_text(text, path.stem, source), record_id=path.stem)
            return
        data = parse_json(text)
        record = record_from_json(data, source)
        yield Loaded(source, None, record=record, record_id=record.id)
    except RecordError as exc:
        yield Loaded(source, None, error=str(exc), record_id=path.stem)
    except OSError as exc:  # the message, without the server path it would repeat
        yield Loaded(source, None, error=f"cannot read the file: {exc.strerror or exc}", record_id=path.stem)


def _load_jsonl(path: Path, encoding: str | None, source: str) -> Iterator[Loaded]:
    with path.open("rb") as handle:
        for number, raw in enumerate(handle, 1):
            if not raw.strip():
                continue
            data = None
            try:
                data = parse_json(decode(raw, encoding, f"{source}:{number}"))
                record = record_from_json(data, f"{source}:{number}")
                yield Loaded(source, number, record=record, record_id=record.id)
            except RecordError as exc:
                yield Loaded(source, number, error=str(exc), record_id=_id_hint(data))


def iter_paths(paths: Iterable[Path]) -> Iterator[Path]:
    """Files to read, directories expanded recursively in sorted (stable) order."""
    for path in paths:
        path = Path(path)
        if path.is_dir():
            yield from sorted(p for p in path.rglob("*") if p.is_file() and p.suffix in SUFFIXES)
        else:
            yield path


def source_name(path: Path, relative_to: Path | None = None) -> str:
    """How results and errors name a file: relative to ``relative_to`` when it is inside it (a job's
    folder: users see "input.jsonl", never the server's path), else as given."""
    if relative_to is not None:
        try:
            return Path(path).resolve().relative_to(Path(relative_to).resolve()).as_posix()
        except ValueError:
            pass
    return str(path)


def iter_records(paths: Iterable[Path], encoding: str | None = None,
                 relative_to: Path | None = None) -> Iterator[Loaded]:
    for path in iter_paths(paths):
        source = source_name(path, relative_to)
        if not path.exists():
            yield Loaded(source, None, error="no such file")
        elif path.suffix not in SUFFIXES:
            yield Loaded(source, None, error=f"unsupported file type {path.suffix or '(none)'}; "
                                             "expected .txt, .json, .jsonl or a directory")
        else:
            yield from load_file(path, encoding, source)
