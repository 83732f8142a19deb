"""Batch QC: thousands of records, resumable, with progress, one JSONL line per record.

Each line is written and flushed as its record completes, so a killed run loses at most
the record in flight; ``resume`` drops a torn last line, skips every record already
written and appends the rest. Work is fed to the workers in bounded windows, so memory
stays flat however large the batch.
"""

from __future__ import annotations

import json
import multiprocessing
import os
import sys
from dataclasses import dataclass, field
from itertools import islice
from pathlib import Path
from typing import Iterable

from copilot.records.loaders import Loaded, iter_paths, iter_records

WINDOW = 256

_runner = None  # per worker process


class BatchError(RuntimeError):
    pass


@dataclass
class Summary:
    records: int = 0
    errors: int = 0
    skipped: int = 0
    findings: int = 0
    by_category: dict = field(default_factory=dict)


def _init_worker(home: str, jurisdiction: str) -> None:
    global _runner
    from copilot.qc.runner import QCRunner
    from knowledge.snapshot import Snapshot

    _runner = QCRunner(Snapshot.current(Path(home)), jurisdiction=jurisdiction)


def _check(loaded: Loaded) -> dict:
    if loaded.error is not None:
        return {"record_id": loaded.key, "status": "error", "error": f"{loaded.origin}: {loaded.error}", "findings": []}
    try:
        return {"record_id": loaded.key, "status": "ok", "error": None, "findings": _runner.check(loaded.record)}
    except Exception as exc:  # one bad record must not stop the batch
        return {"record_id": loaded.key, "status": "error", "error": f"{loaded.origin}: QC failed: {exc}", "findings": []}


def completed_keys(out: Path) -> set[str]:
    """Record ids already written; a torn last line (killed mid-write) is cut off first."""
    if not out.is_file():
        return set()
    with out.open("rb+") as handle:
        data = handle.read()
        cut = data.rfind(b"\n") + 1
        if cut != len(data):
            handle.truncate(cut)
    keys = set()
    for line in data[:cut].splitlines():
        if line.strip():
            keys.add(json.loads(line)["record_id"])
    return keys


def count_inputs(paths: Iterable[Path]) -> int:
    total = 0
    for path in iter_paths(paths):
        if path.suffix == ".jsonl" and path.is_file():
            with path.open("rb") as handle:
                total += sum(1 for line in handle if line.strip())
        else:
            total += 1
    return total


def run_batch(paths: list[Path], out: Path, home: Path, workers: int = 1, resume: bool = False,
              overwrite: bool = False, encoding: str | None = None, jurisdiction: str = "CN",
              model_pass=None, show_progress: bool = True) -> Summary:
    out = Path(out)
    if out.exists() and not (resume or overwrite):
        raise BatchError(f"{out} exists; pass --resume to continue it or --overwrite to replace it")
    if overwrite and not resume and out.exists():
        out.unlink()
    done = completed_keys(out) if resume else set()
    out.parent.mkdir(parents=True, exist_ok=True)

    from tqdm import tqdm

    summary = Summary()
    seen: dict[str, str] = {}

    def pending():
        for loaded in iter_records(paths, encoding):
            if loaded.key in done:
                summary.skipped += 1
                bar.update(1)
                continue
            if loaded.key in seen:
                loaded = Loaded(f"{loaded.key}@{loaded.origin}", loaded.origin,
                                error=f"duplicate record id {loaded.key!r} (first read from {seen[loaded.key]})")
            seen.setdefault(loaded.key, loaded.origin)
            yield loaded

    bar = tqdm(total=count_inputs(paths), disable=not show_progress, unit="record", file=sys.stderr, desc="QC")
    pool = None
    if workers > 1:
        pool = multiprocessing.get_context("fork").Pool(workers, _init_worker, (str(home), jurisdiction))
    else:
        _init_worker(str(home), jurisdiction)
    try:
        with out.open("a", encoding="utf-8") as handle:
            items = pending()
            while True:
                window = list(islice(items, WINDOW))
                if not window:
                    break
                results = pool.imap_unordered(_check, window, chunksize=8) if pool else map(_check, window)
                by_key = {loaded.key: loaded for loaded in window} if model_pass else {}
                for result in results:
                    if model_pass and result["status"] == "ok":
                        result["findings"] += model_pass(by_key[result["record_id"]].record)
                    handle.write(json.dumps(result, ensure_ascii=False) + "\n")
                    handle.flush()
                    summary.records += 1
                    summary.errors += result["status"] == "error"
                    summary.findings += len(result["findings"])
                    for finding in result["findings"]:
                        summary.by_category[finding["category"]] = summary.by_category.get(finding["category"], 0) + 1
                    bar.update(1)
            os.fsync(handle.fileno())
    finally:
        bar.close()
        if pool:
            pool.close()
            pool.join()
    return summary
