"""Batch QC: thousands of records, resumable, with progress, one JSONL line per record.

Each line is written and flushed as its record completes, so a killed run loses at most
the record in flight. Every result names its input position (``source`` and ``line``), and
``resume`` keys on that position, never on the record id: ids repeat in real exports (the
second one is reported as a duplicate, never dropped) and unreadable lines have none. Resume
drops a torn last line (and any line damaged in the middle, whose record is checked again),
skips every position already written and appends the rest. Work is fed to the workers in
bounded windows, so memory stays flat however large the batch.
"""

from __future__ import annotations

import json
import logging
import multiprocessing
import os
import sys
from dataclasses import dataclass, field
from itertools import islice
from pathlib import Path
from typing import Iterable, Iterator

from copilot.files import write_atomically
from copilot.records.loaders import Loaded, iter_paths, iter_records, source_name

WINDOW = 256
log = logging.getLogger(__name__)

_runner = None  # per worker process


class BatchError(RuntimeError):
    pass


@dataclass
class Summary:
    records: int = 0
    errors: int = 0
    skipped: int = 0
    duplicates: int = 0
    findings: int = 0
    by_category: dict = field(default_factory=dict)


def _init_worker(home: str, jurisdiction: str) -> None:
    global _runner
    from copilot.qc.runner import QCRunner
    from knowledge.snapshot import Snapshot

    _runner = QCRunner(Snapshot.current(Path(home)), jurisdiction=jurisdiction)


def _row(loaded: Loaded, status: str, error: str | None, findings: list) -> dict:
    return {"record_id": loaded.key, "source": loaded.source, "line": loaded.line, "status": status, "error": error,
            "findings": findings}


def _check(loaded: Loaded) -> dict:
    return check_record(_runner, loaded)


def check_record(runner, loaded: Loaded) -> dict:
    """One result line for one loaded input (what local workers and Ray actors both run)."""
    if loaded.error is not None:
        return _row(loaded, "error", f"{loaded.position}: {loaded.error}", [])
    try:
        return _row(loaded, "ok", None, runner.check(loaded.record))
    except Exception as exc:  # one bad record must not stop the batch
        return _row(loaded, "error", f"{loaded.position}: QC failed: {exc}", [])


def position(result: dict) -> str:
    """The input position a result line answers: ``source:line``, or ``source`` for a whole file."""
    return f"{result['source']}:{result['line']}" if result.get("line") is not None else result["source"]


def read_results(out: Path) -> list[dict]:
    """The result lines already written, repaired for a resume: a torn last line (killed mid-write)
    is cut off, and a line damaged in the middle is dropped (its record is checked again)."""
    if not out.is_file():
        return []
    data = out.read_bytes()
    cut = data.rfind(b"\n") + 1
    rows, kept, damaged = [], [], 0
    for line in data[:cut].splitlines(keepends=True):
        if not line.strip():
            continue
        try:
            row = json.loads(line)
            position(row)
            if not isinstance(row.get("findings"), list) or row.get("status") not in ("ok", "error"):
                raise ValueError("not a result")
        except (ValueError, KeyError, TypeError, AttributeError):
            damaged += 1
            continue
        rows.append(row)
        kept.append(line)
    if damaged:
        log.warning("%s: %d damaged result line(s) dropped; their records are checked again", out.name, damaged)
        write_atomically(out, b"".join(kept))
    elif cut != len(data):
        with out.open("rb+") as handle:
            handle.truncate(cut)
    return rows


def completed_positions(out: Path) -> set[str]:
    """Input positions already answered in ``out`` (after the repairs of read_results)."""
    return {position(row) for row in read_results(out)}


def input_positions(paths: Iterable[Path], relative_to: Path | None = None) -> Iterator[str]:
    """Every position a complete run answers, in input order: each non-blank line of a .jsonl
    file, and each other file."""
    for path in iter_paths(paths):
        name = source_name(path, relative_to)
        if path.suffix == ".jsonl" and path.is_file():
            with path.open("rb") as handle:
                yield from (f"{name}:{number}" for number, line in enumerate(handle, 1) if line.strip())
        else:
            yield name


def count_inputs(paths: Iterable[Path]) -> int:
    return sum(1 for _ in input_positions(paths))


def _check_resumable(done: set[str], positions: Iterable[str], out: Path) -> None:
    """Refuse to resume onto results of other inputs: appending would mix two batches."""
    stray = done.difference(positions)
    if stray:
        raise BatchError(f"{out.name} holds results for {len(stray)} position(s) that are not among these inputs "
                         f"(such as {min(stray)}); resume with the same PATH arguments as the interrupted run, "
                         "or pass --overwrite to start again")


def run_batch(paths: list[Path], out: Path, home: Path, workers: int = 1, resume: bool = False,
              overwrite: bool = False, encoding: str | None = None, jurisdiction: str = "CN",
              model_pass=None, show_progress: bool = True, relative_to: Path | None = None,
              ray_address: str | None = None) -> Summary:
    """QC every record of ``paths`` into ``out``. ``relative_to``: name inputs relative to this folder
    in results and errors (a job's folder: no server path reaches its owner). ``ray_address``: check
    on that Ray cluster (copilot.qc.distributed) instead of local processes; same output, same resume."""
    out = Path(out)
    if out.exists() and not (resume or overwrite):
        raise BatchError(f"{out} exists; pass --resume to continue it or --overwrite to replace it")
    if overwrite and not resume and out.exists():
        out.unlink()
    done = completed_positions(out) if resume else set()
    if done:
        _check_resumable(done, input_positions(paths, relative_to), out)
    out.parent.mkdir(parents=True, exist_ok=True)

    from tqdm import tqdm

    summary = Summary()
    seen: dict[str, str] = {}  # record id -> position of its first record

    def pending():
        for loaded in iter_records(paths, encoding, relative_to):
            first = seen.setdefault(loaded.record_id, loaded.position) if loaded.record is not None else None
            if loaded.position in done:
                summary.skipped += 1
                bar.update(1)
                continue
            if first is not None and first != loaded.position:
                summary.duplicates += 1
                loaded = Loaded(loaded.source, loaded.line, record_id=loaded.record_id,
                                error=f"duplicate record id {loaded.record_id!r} (first at {first}); not checked "
                                      "twice: give each record its own id")
            yield loaded

    bar = tqdm(total=count_inputs(paths), disable=not show_progress, unit="record", file=sys.stderr, desc="QC")
    pool = ray_pool = None
    if ray_address:
        from copilot.qc.distributed import RayPool

        try:
            ray_pool = RayPool(ray_address, home, jurisdiction, actors=workers if workers > 1 else None,
                               check=check_record)
        except BaseException:
            bar.close()
            raise
    elif workers > 1:
        pool = multiprocessing.get_context("fork").Pool(workers, _init_worker, (str(home), jurisdiction))
    else:
        _init_worker(str(home), jurisdiction)
    try:
        with out.open("a", encoding="utf-8") as handle:
            def write(result: dict, record) -> None:
                if model_pass and result["status"] == "ok":
                    result["findings"] += model_pass(record)
                handle.write(json.dumps(result, ensure_ascii=False) + "\n")
                handle.flush()
                summary.records += 1
                summary.errors += result["status"] == "error"
                summary.findings += len(result["findings"])
                for finding in result["findings"]:
                    summary.by_category[finding["category"]] = summary.by_category.get(finding["category"], 0) + 1
                bar.update(1)

            items = pending()
            if ray_pool is not None:
                for loaded, result in ray_pool.map(items):
                    write(result, loaded.record)
            while ray_pool is None:
                window = list(islice(items, WINDOW))
                if not window:
                    break
                results = pool.imap_unordered(_check, window, chunksize=8) if pool else map(_check, window)
                by_position = {loaded.position: loaded for loaded in window} if model_pass else {}
                for result in results:
                    write(result, by_position[position(result)].record if model_pass else None)
            os.fsync(handle.fileno())
    finally:
        bar.close()
        if ray_pool is not None:
            ray_pool.close()
        if pool:
            pool.close()
            pool.join()
    return summary
