"""`copilot finetune prepare`: de-identified drafting pairs + knowledge-graph QA -> a tokenised dataset on disk.

Output (``<work-dir>/dataset``): a ``datasets`` DatasetDict (train / validation) with the chat
messages, the de-identified source and reference texts, citations, and the token ids and
answer-only labels for the base model's own chat template; and ``manifest.json`` with the
sources (files and SHA-256), counts per split and task, PHI replaced per type, refused and
skipped inputs, truncation, and the hashes of the saved files. The folder is replaced only
when the whole build succeeded.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import time
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable

from copilot.config import Settings
from copilot.files import sha256_file
from finetune.chat_format import encode_example
from finetune.config import FinetuneConfig
from finetune.gate import Gate
from finetune.paths import RunDir, resolve_base
from finetune.prompts import Example
from finetune.sources import SourceError, read_aci_bench, read_mts_dialog, read_records, record_examples
from finetune.split import TRAIN, VALIDATION, assign, bucket

Progress = Callable[[str], None]

@dataclass
class SourceOptions:
    aci_bench: Path | None = None
    mts_dialog: Path | None = None
    records: list[Path] = field(default_factory=list)
    kgqa: bool = True
    public: bool = True  # use ACI-Bench / MTS-Dialog from the default folder when not given

    def resolved(self, root: Path) -> "SourceOptions":
        """Fill in ACI-Bench and MTS-Dialog from ``root`` (COPILOT_DATASETS) where not given."""
        aci, mts = self.aci_bench, self.mts_dialog
        if self.public:
            aci = aci or (root / "aci-bench" if (root / "aci-bench").is_dir() else None)
            mts = mts or (root / "mts-dialog" if (root / "mts-dialog").is_dir() else None)
        return SourceOptions(aci, mts, list(self.records), self.kgqa, self.public)


class DatasetError(RuntimeError):
    pass


def _files_entry(paths: list[Path]) -> list[dict]:
    return [{"path": str(p), "sha256": sha256_file(p), "bytes": p.stat().st_size} for p in paths]


def load_tokenizer(checkpoint: Path):
    from transformers import AutoTokenizer

    tokenizer = AutoTokenizer.from_pretrained(str(checkpoint))
    if tokenizer.pad_token_id is None:
        tokenizer.pad_token = tokenizer.eos_token
    return tokenizer


def keep(example_id: str, weight: float, salt: str) -> bool:
    """Deterministic subsample: the same ids are kept on every rebuild."""
    return weight >= 1 or bucket(example_id, salt + ":keep") < weight


def _gated(examples: list[Example], gate: Gate, progress: Progress, label: str) -> list[Example]:
    kept, started = [], time.monotonic()
    for index, example in enumerate(examples, 1):
        clean = gate.example(example)
        if clean is not None:
            kept.append(clean)
        if index % 200 == 0 or index == len(examples):
            progress(f"  gate {label}: {index}/{len(examples)} ({time.monotonic() - started:.0f} s)")
    return kept


def collect(options: SourceOptions, gate: Gate, settings: Settings, config: FinetuneConfig, progress: Progress,
            manifest: dict) -> list[Example]:
    """Read every source, keep each task's configured share, pass it through the gate, note it in the manifest."""
    weights, salt = config.data.task_weights, config.data.split_salt
    examples: list[Example] = []
    sources = manifest["sources"]
    for name, folder, reader, pattern in (("aci-bench", options.aci_bench, read_aci_bench, "*.json"),
                                          ("mts-dialog", options.mts_dialog, read_mts_dialog, "*.csv")):
        if folder is None:
            continue
        folder = Path(folder)
        if not folder.is_dir():
            raise DatasetError(f"{name} folder not found: {folder}")
        raw = reader(folder)
        chosen = [e for e in raw if keep(e.id, weights.get(e.task, 1.0), salt)]
        progress(f"{name}: {len(raw)} pairs in {folder}, {len(chosen)} selected; de-identifying")
        kept = _gated(chosen, gate, progress, name)
        examples += kept
        sources[name] = {"folder": str(folder), "files": _files_entry(sorted(folder.glob(pattern))),
                         "read": len(raw), "selected": len(chosen), "kept": len(kept), "license": "CC BY 4.0"}
    if options.records:
        read = errors = not_selected = no_pairs = 0
        skipped, error_list, kept = Counter(), [], []
        weight = weights.get("record_note", 1.0)
        for item in read_records(options.records):
            read += 1
            if item.error:
                errors += 1
                error_list.append({"origin": item.origin, "error": item.error})
            elif item.skipped:
                skipped[item.skipped] += 1
            elif not keep(item.origin, weight, salt):
                not_selected += 1
            else:
                clean = gate.record(item.data, item.origin)
                if clean is None:
                    continue
                pairs = record_examples(clean, item.encounter_id, item.split_hint, item.origin)
                no_pairs += not pairs
                gate.count_passed("records", len(pairs))
                kept += pairs
        files = []
        for path in map(Path, options.records):
            files += [path] if path.is_file() else sorted(p for p in path.rglob("*") if p.suffix in (".json", ".jsonl"))
        progress(f"records: {read} read, {errors} unreadable, {sum(skipped.values())} skipped, {not_selected} not "
                 f"selected, {len(kept)} record->note pairs")
        examples += kept
        sources["records"] = {"paths": [str(p) for p in options.records], "files": _files_entry(files), "read": read,
                              "errors": errors, "error_list": error_list[:50], "skipped": dict(skipped),
                              "not_selected": not_selected, "without_assessment_heading": no_pairs,
                              "kept": len(kept)}
    if options.kgqa:
        from knowledge.graph import KnowledgeGraph
        from knowledge.snapshot import NoSnapshot, Snapshot

        from finetune.kgqa import TEMPLATE_FILE, generate

        try:
            snapshot = Snapshot.current(settings.knowledge_dir)
        except NoSnapshot as exc:
            raise DatasetError(f"{exc} (or pass --no-kgqa to build without knowledge-graph QA)") from None
        raw = generate(KnowledgeGraph(snapshot), variants=config.data.kgqa_variants)
        chosen = [e for e in raw if keep(e.id, weights.get("kg_qa", 1.0), salt)]
        progress(f"knowledge-graph QA: {len(raw)} pairs from snapshot {snapshot.id}, {len(chosen)} selected; "
                 "passing the gate")
        kept = _gated(chosen, gate, progress, "knowledge-graph QA")
        examples += kept
        sources["knowledge-graph"] = {"snapshot": snapshot.id, "templates": _files_entry([TEMPLATE_FILE]),
                                      "variants": config.data.kgqa_variants, "generated": len(raw),
                                      "selected": len(chosen), "kept": len(kept)}
    if not examples:
        raise DatasetError("no training examples: give --aci-bench, --mts-dialog or --records, or enable KG QA")
    return examples


def _features():
    from datasets import Features, Sequence, Value

    citation = {k: Value("string") for k in ("id", "version", "title", "issuer", "section", "url")}
    return Features({
        "id": Value("string"), "encounter_id": Value("string"), "source": Value("string"), "task": Value("string"),
        "language": Value("string"), "origin": Value("string"),
        "messages": [{"role": Value("string"), "content": Value("string")}],
        "source_text": Value("string"), "reference": Value("string"), "answer_suffix": Value("string"),
        "fields_json": Value("string"),
        "citations": [citation],
        "input_ids": Sequence(Value("int32")), "labels": Sequence(Value("int32")),
        "prompt_tokens": Value("int32"), "answer_tokens": Value("int32"), "truncated": Value("string"),
    })


def example_from_row(row: dict) -> Example:
    """The Example a dataset row was built from (for evaluation prompts)."""
    return Example(id=row["id"], encounter_id=row["encounter_id"], source=row["source"], task=row["task"],
                   language=row["language"], source_text=row["source_text"], reference=row["reference"],
                   fields=json.loads(row["fields_json"]), citations=list(row["citations"]), origin=row["origin"],
                   suffix=row["answer_suffix"])


def _rows(tokenizer, examples: list[Example], config: FinetuneConfig, progress: Progress,
          label: str) -> tuple[list, Counter]:
    rows, truncation = [], Counter()
    started = time.monotonic()
    for index, example in enumerate(examples, 1):
        encoded = encode_example(tokenizer, example, config.data.max_seq_length, config.data.min_prompt_tokens)
        truncation[encoded.truncated or "none"] += 1
        rows.append({
            "id": example.id, "encounter_id": example.encounter_id, "source": example.source, "task": example.task,
            "language": example.language, "origin": example.origin, "messages": example.messages(),
            "source_text": example.source_text, "reference": example.reference, "answer_suffix": example.suffix,
            "fields_json": json.dumps(example.fields, ensure_ascii=False), "citations": example.citations,
            "input_ids": encoded.input_ids, "labels": encoded.labels, "prompt_tokens": encoded.prompt_tokens,
            "answer_tokens": encoded.answer_tokens, "truncated": encoded.truncated,
        })
        if index % 1000 == 0 or index == len(examples):
            progress(f"tokenised {label}: {index}/{len(examples)} ({time.monotonic() - started:.0f} s)")
    return rows, truncation


def prepare_dataset(config: FinetuneConfig, settings: Settings, run: RunDir, options: SourceOptions,
                    base_model: str | None = None, scrubber=None, progress: Progress = print) -> dict:
    """Build and save the dataset; returns the manifest."""
    from datasets import Dataset, DatasetDict

    started = time.monotonic()
    base = resolve_base(settings, base_model or config.base_model, config.export.weight_format)
    checkpoint = base.require_checkpoint()
    tokenizer = load_tokenizer(checkpoint)
    options = options.resolved(settings.datasets_dir)
    manifest: dict = {"created_at": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()), "config": config.name,
                      "config_file": str(config.path) if config.path else None,
                      "base_model": {"name": base.name, "checkpoint": str(checkpoint)}, "sources": {}}
    gate = Gate(scrubber)
    try:
        examples = collect(options, gate, settings, config, progress, manifest)
    except SourceError as exc:
        raise DatasetError(str(exc)) from None
    ids = Counter(e.id for e in examples)
    duplicates = [i for i, n in ids.items() if n > 1]
    if duplicates:
        raise DatasetError(f"duplicate example ids (the same input given twice?): {', '.join(duplicates[:5])}")
    sides = assign(examples, config.data.validation_fraction, config.data.split_salt)
    overlap = {e.encounter_id for e in sides[TRAIN]} & {e.encounter_id for e in sides[VALIDATION]}
    if overlap:
        raise DatasetError(f"encounters on both sides of the split: {sorted(overlap)[:5]}")
    splits, truncation = {}, Counter()
    for side in (TRAIN, VALIDATION):
        rows, counts = _rows(tokenizer, sides[side], config, progress, side)
        truncation.update({f"{side}:{k}": v for k, v in counts.items()})
        splits[side] = Dataset.from_list(rows, features=_features())
    data = DatasetDict(splits)

    run.root.mkdir(parents=True, exist_ok=True)
    staging = run.dataset.with_name(run.dataset.name + f".tmp-{os.getpid()}")
    shutil.rmtree(staging, ignore_errors=True)
    data.save_to_disk(str(staging))
    manifest.update({
        "split": {"method": "sha256(salt, encounter_id) < validation_fraction; dataset-held-out encounters pinned "
                            "to validation", "validation_fraction": config.data.validation_fraction,
                  "salt": config.data.split_salt, "encounters_on_both_sides": 0},
        "counts": {side: dict(sorted(Counter(e.task for e in sides[side]).items())) for side in (TRAIN, VALIDATION)},
        "counts_by_source": {side: dict(sorted(Counter(e.source for e in sides[side]).items()))
                             for side in (TRAIN, VALIDATION)},
        "encounters": {side: len({e.encounter_id for e in sides[side]}) for side in (TRAIN, VALIDATION)},
        "languages": dict(Counter(e.language for e in examples)),
        "deidentification": gate.summary(),
        "tokenizer": {"checkpoint": str(checkpoint), "chat_template_sha256":
                      hashlib.sha256((tokenizer.chat_template or "").encode()).hexdigest()},
        "max_seq_length": config.data.max_seq_length,
        "truncation": dict(sorted(truncation.items())),
        "tokens": {side: {"total": int(sum(len(x) for x in splits[side]["input_ids"])),
                          "answer": int(sum(splits[side]["answer_tokens"]))} for side in (TRAIN, VALIDATION)},
        "files": {str(p.relative_to(staging)): sha256_file(p) for p in sorted(staging.rglob("*")) if p.is_file()},
        "seconds": round(time.monotonic() - started, 1),
    })
    (staging / "manifest.json").write_text(json.dumps(manifest, indent=2, ensure_ascii=False), encoding="utf-8")
    old = run.dataset.with_name(run.dataset.name + f".old-{os.getpid()}")
    if run.dataset.exists():
        run.dataset.rename(old)
    staging.rename(run.dataset)
    shutil.rmtree(old, ignore_errors=True)
    progress(f"dataset: {len(splits[TRAIN])} train / {len(splits[VALIDATION])} validation examples -> {run.dataset}")
    return manifest


def load_dataset_dir(run: RunDir):
    from datasets import load_from_disk

    run.require_dataset()
    return load_from_disk(str(run.dataset)), json.loads(run.manifest.read_text(encoding="utf-8"))
