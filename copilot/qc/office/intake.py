"""Taking records into the QC office: check a record (rules, indicators, VTE, deadlines) and file the
version with its findings; take in a finished batch job's results.

A batch job already ran the rules; its findings are filed as they are, and only what the job does not
write (indicator results, the VTE score, deadlines) is computed here from the job's input.
"""

from __future__ import annotations

import json
import logging
from dataclasses import dataclass, field
from pathlib import Path

from copilot.qc.indicators import Evaluation
from copilot.qc.office.levels import deadlines, level_of
from copilot.qc.office.store import IngestResult, OfficeStore
from copilot.qc.runner import QCRunner
from copilot.records.loaders import iter_records
from copilot.records.model import Record

log = logging.getLogger(__name__)

VTE_ASSESSMENT, VTE_PROPHYLAXIS = "qi.vte.assessment_24h", "qi.vte.prophylaxis_high_risk"


@dataclass
class JobIntake:
    job_id: str
    records: int = 0
    errors: int = 0  # records the job could not check (not filed)
    opened: int = 0
    closed: int = 0
    reopened: int = 0
    new_versions: int = 0
    already: bool = False  # the job was taken in before
    results: list[IngestResult] = field(default_factory=list)

    def to_json(self) -> dict:
        return {"job_id": self.job_id, "records": self.records, "errors": self.errors, "opened": self.opened,
                "closed": self.closed, "reopened": self.reopened, "new_versions": self.new_versions,
                "already": self.already}


class Intake:
    def __init__(self, store: OfficeStore, runner: QCRunner):
        self.store = store
        self.runner = runner

    def file(self, record: Record, source: str, findings: list[dict] | None = None) -> IngestResult:
        """Check ``record`` (unless its findings are given) and file it as its latest version."""
        if findings is None:
            findings = self.runner.check(record)
        evaluation = Evaluation(record, self.runner.graph)
        vte = evaluation.vte
        vte_json = None
        if vte is not None:
            vte_json = {**vte.to_json(), "assessed": evaluation.done(VTE_ASSESSMENT),
                        "prophylaxis": evaluation.done(VTE_PROPHYLAXIS)}
        return self.store.ingest(
            record.to_json(), findings, level=level_of(record), source=source, snapshot=self.runner.snapshot.id,
            indicators=[r.to_json() for r in evaluation.results()], vte=vte_json,
            deadlines=deadlines(record, self.runner.graph, self.runner.jurisdiction, evaluation))

    def take_job(self, job_id: str, inputs: Path, results: Path) -> JobIntake:
        """File every record a finished job checked (once: a second call does nothing)."""
        summary = JobIntake(job_id)
        if self.store.job_ingested(job_id):
            summary.already = True
            return summary
        offsets = _offsets(results)
        with results.open("rb") as handle:
            for loaded in iter_records([inputs]):
                offset = offsets.get(loaded.key)
                if loaded.record is None or offset is None:
                    summary.errors += 1
                    continue
                handle.seek(offset)
                result = json.loads(handle.readline())
                if result.get("status") != "ok":
                    summary.errors += 1
                    continue
                filed = self.file(loaded.record, f"job:{job_id}", result["findings"])
                summary.records += 1
                summary.opened += len(filed.opened)
                summary.closed += len(filed.closed)
                summary.reopened += len(filed.reopened)
                summary.new_versions += filed.new_version
        if not self.store.mark_job(job_id, summary.records, summary.errors):
            summary.already = True
        self.store.optimize()
        return summary


def _offsets(results: Path) -> dict[str, int]:
    """record id -> byte offset of its line in results.jsonl (ids only in memory, however large the job)."""
    offsets: dict[str, int] = {}
    position = 0
    with results.open("rb") as handle:
        for line in handle:
            if line.strip():
                offsets.setdefault(json.loads(line)["record_id"], position)
            position += len(line)
    return offsets
