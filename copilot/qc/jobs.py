"""QC batch jobs that outlive the process that accepted them.

Each job is a folder ``<root>/<id>/`` holding the uploaded ``input.jsonl``, the batch output
``results.jsonl`` (written by ``run_batch``, one line per input line, resumable), ``upload.json``
(who uploaded what and when; written once) and ``job.json`` (status and progress, replaced
atomically). A single runner thread works through queued jobs in order; on start it re-queues
every job left queued or running, and ``run_batch(resume=True)`` skips the input lines a killed
process already answered, so a restart neither loses nor repeats one. A job is ``done`` only
when its results answer every input line exactly once. A damaged ``job.json`` is rebuilt from
``upload.json`` (and the job resumes) rather than taking the job list, or the server, down.

No Flask here: the web layer (copilot/web/qc_api.py) owns HTTP, auth and audit.
"""

from __future__ import annotations

import contextlib
import errno
import fcntl
import hashlib
import json
import logging
import os
import queue
import re
import shutil
import threading
import time
import uuid
from collections import Counter
from dataclasses import asdict, dataclass, field, fields
from datetime import datetime, timezone
from pathlib import Path
from typing import BinaryIO, Iterator

from copilot import strict_json
from copilot.files import fsync_dir, write_atomically
from copilot.qc.batch import BatchError, input_positions, position, read_results, run_batch

log = logging.getLogger(__name__)

JOB_ID = re.compile(r"^[0-9a-f]{32}$")
STATUSES = ("queued", "running", "done", "failed", "cancelled")
UNFINISHED = ("queued", "running")
INPUT, RESULTS, STATE, REPORT, LOCK = "input.jsonl", "results.jsonl", "job.json", "report.html", "lock"
UPLOAD = "upload.json"
UPLOAD_FIELDS = ("id", "owner", "created", "total", "input_bytes", "input_sha256")
RUN_ATTEMPTS = 2  # a run that leaves lines unanswered (a damaged result line dropped) is resumed once more
DISK_FULL = frozenset({errno.ENOSPC, errno.EDQUOT, errno.EFBIG})
DISK_RETRY_S = 60
CHUNK = 1 << 20
FIRST_LINE_CHECK = 8 << 20  # the first record is parsed at upload to refuse non-JSONL files early
PROGRESS_INTERVAL_S = 0.5
BATCH_NICE = 10  # the batch thread yields the CPU to single-record QC and generation


class JobError(ValueError):
    """An upload that cannot become a job (empty, not JSON Lines)."""


class JobTooLarge(JobError):
    pass


def now() -> str:
    """UTC, to the microsecond: job lists and the run order sort on ``created``."""
    return datetime.now(timezone.utc).isoformat(timespec="microseconds")


@dataclass
class Job:
    id: str
    owner: str
    created: str
    status: str = "queued"
    total: int = 0
    done: int = 0
    errors: int = 0
    input_bytes: int = 0
    input_sha256: str = ""
    started: str | None = None
    finished: str | None = None
    error: str | None = None
    rate: float | None = None  # records per second in the current run, for the ETA
    cancel_requested: bool = False
    results_sha256: str | None = None
    summary: dict | None = None  # findings by severity and category, once done
    sources: list[str] = field(default_factory=list)  # knowledge ids cited in the results, once done

    @property
    def percent(self) -> float:
        return round(100.0 * self.done / self.total, 1) if self.total else 0.0

    @property
    def eta_s(self) -> float | None:
        if self.status != "running" or not self.rate:
            return None
        return round(max(self.total - self.done, 0) / self.rate, 1)

    def to_json(self) -> dict:
        return asdict(self)

    @classmethod
    def from_json(cls, data: dict) -> Job:
        known = {f.name for f in fields(cls)}
        return cls(**{k: v for k, v in data.items() if k in known})


class JobStore:
    """The job folders under ``root``; every job.json write is tmp + fsync + os.replace."""

    def __init__(self, root: Path):
        self.root = Path(root)
        self.root.mkdir(parents=True, exist_ok=True)
        self._lock = threading.Lock()

    def folder(self, job_id: str) -> Path:
        if not isinstance(job_id, str) or not JOB_ID.match(job_id):
            raise KeyError(job_id)
        return self.root / job_id

    def path(self, job_id: str, name: str) -> Path:
        return self.folder(job_id) / name

    def create(self, owner: str, stream: BinaryIO, max_bytes: int) -> Job:
        """Stream an upload into a new job folder; the job appears only once complete."""
        job_id = uuid.uuid4().hex
        staging = self.root / f".incoming-{job_id}"
        staging.mkdir()
        try:
            size, digest, total = _copy_counting(stream, staging / INPUT, max_bytes)
            if total == 0:
                raise JobError("the upload holds no records (an empty file, or only blank lines)")
            _check_first_line(staging / INPUT)
            job = Job(id=job_id, owner=owner, created=now(), total=total, input_bytes=size, input_sha256=digest)
            _write_json(staging / UPLOAD, {k: getattr(job, k) for k in UPLOAD_FIELDS})
            if self.STATE_IN_FOLDER:
                _write_json(staging / STATE, job.to_json())
            os.replace(staging, self.root / job_id)
            fsync_dir(self.root)
        except BaseException:
            shutil.rmtree(staging, ignore_errors=True)
            raise
        if not self.STATE_IN_FOLDER:
            self._save(job)  # after the folder is complete; a crash before leaves upload.json to recover from
        return job

    # -- where job state lives: job.json here, a database row in SharedJobStore ----------------

    STATE_IN_FOLDER = True

    def _load(self, job_id: str) -> Job:
        """The saved state; FileNotFoundError when there is none, ValueError/TypeError when damaged."""
        return Job.from_json(_read_json(self.path(job_id, STATE)))

    def _save(self, job: Job) -> None:
        _write_json(self.path(job.id, STATE), job.to_json())

    @contextlib.contextmanager
    def _transaction(self, job_id: str) -> Iterator[None]:
        """Read-modify-write of one job's state, serialised against every other writer."""
        with self._lock:
            yield

    def get(self, job_id: str) -> Job | None:
        try:
            folder = self.folder(job_id)
        except KeyError:
            return None
        try:
            return self._load(job_id)
        except FileNotFoundError:
            if not folder.is_dir():
                return None
        except (ValueError, TypeError) as exc:
            log.warning("QC job %s: its state is damaged (%s)", job_id, exc)
        return self._recover(job_id)

    def _recover(self, job_id: str) -> Job:
        """job.json is missing or damaged: rebuild it from upload.json, queued so that the runner
        resumes it (results already written are kept); without upload.json the job is failed."""
        try:
            upload = _read_json(self.path(job_id, UPLOAD))
            job = Job(**{k: upload[k] for k in UPLOAD_FIELDS})
            if job.id != job_id:
                raise ValueError("upload.json names another job")
        except (OSError, ValueError, TypeError, KeyError) as exc:
            log.error("QC job %s: its state cannot be rebuilt (%s); marked failed", job_id, exc)
            job = Job(id=job_id, owner="", created=now(), status="failed", finished=now(),
                      error="the job's state files are damaged; upload the records again")
        self._save(job)
        return job

    def update(self, job_id: str, **changes) -> Job:
        """Read-modify-write under the store's lock, so the runner's progress and a cancel never
        overwrite each other."""
        with self._transaction(job_id):
            job = self.get(job_id)
            if job is None:
                raise KeyError(job_id)
            for key, value in changes.items():
                setattr(job, key, value)
            self._save(job)
            return job

    def claim(self, job_id: str) -> Job | None:
        """Mark an unfinished job running, unless it is finished or a cancel was asked for."""
        with self._transaction(job_id):
            job = self.get(job_id)
            if job is None or job.status not in UNFINISHED:
                return None
            if job.cancel_requested:
                job.status, job.finished = "cancelled", now()
            else:
                job.status, job.started, job.error, job.rate = "running", job.started or now(), None, None
            self._save(job)
            return job if job.status == "running" else None

    def request_cancel(self, job_id: str) -> Job:
        """A queued job is cancelled at once; a running one is flagged for its runner."""
        with self._transaction(job_id):
            job = self.get(job_id)
            if job is None:
                raise KeyError(job_id)
            if job.status in UNFINISHED:
                job.cancel_requested = True
                if job.status == "queued":
                    job.status, job.finished = "cancelled", now()
                self._save(job)
            return job

    def list(self, owner: str | None = None) -> list[Job]:
        jobs = []
        for folder in self.root.iterdir():
            if JOB_ID.match(folder.name):
                job = self.get(folder.name)
                if job is not None and (owner is None or job.owner == owner):
                    jobs.append(job)
        return sorted(jobs, key=lambda j: (j.created, j.id))

    def unfinished(self) -> list[Job]:
        return [job for job in self.list() if job.status in UNFINISHED]

    @contextlib.contextmanager
    def exclusive(self, job_id: str) -> Iterator[bool]:
        """An flock on the job: True if this holder may run it (another runner, in this process
        or another one on the same instance dir, is not)."""
        with open(self.path(job_id, LOCK), "a") as handle:
            try:
                fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except BlockingIOError:
                yield False
                return
            try:
                yield True
            finally:
                fcntl.flock(handle, fcntl.LOCK_UN)

    def report_html(self, job_id: str, title: str) -> Path:
        """The HTML report, rendered once from results.jsonl and then served from disk."""
        from copilot.qc.report import write_report

        html = self.path(job_id, REPORT)
        if not html.is_file():
            with self._lock:
                if not html.is_file():
                    tmp = html.with_name(f".{REPORT}.{os.getpid()}.{threading.get_ident()}")
                    write_report(self.path(job_id, RESULTS), tmp, title=title, source=f"QC job {job_id}")
                    os.replace(tmp, html)
        return html


class _Interrupted(Exception):
    def __init__(self, reason: str):
        super().__init__(reason)
        self.reason = reason


class JobRunner:
    """One daemon thread that runs queued jobs one at a time, in submission order."""

    def __init__(self, store: JobStore, knowledge_home: Path, jurisdiction: str = "CN",
                 nice: int = BATCH_NICE, interval: float = PROGRESS_INTERVAL_S, ray_address: str | None = None):
        """``ray_address``: run each job's records on that Ray cluster (COPILOT_RAY_ADDRESS); results,
        progress, cancel and resume stay here, since this process writes every result line."""
        self.store = store
        self.ray_address = ray_address
        self.knowledge_home = Path(knowledge_home)
        self.jurisdiction = jurisdiction
        self.nice = nice
        self.interval = interval
        self._queue: queue.Queue[str | None] = queue.Queue()
        self._stop = threading.Event()
        self._cancelled: set[str] = set()
        self._thread: threading.Thread | None = None
        self.on_done = None  # called with each job that finishes (the QC office files its results)

    def start(self) -> list[str]:
        """Start the thread, first re-queueing the jobs a previous process left unfinished."""
        requeued = [job.id for job in self.store.unfinished()]
        for job_id in requeued:
            self._queue.put(job_id)
        self._thread = threading.Thread(target=self._loop, name="qc-jobs", daemon=True)
        self._thread.start()
        if requeued:
            log.info("re-queued %d unfinished QC job(s)", len(requeued))
        return requeued

    def submit(self, job_id: str) -> None:
        self._queue.put(job_id)

    def cancel(self, job_id: str) -> Job:
        """A queued job is cancelled at once; a running one stops before its next record."""
        job = self.store.request_cancel(job_id)
        if job.status == "running":
            self._cancelled.add(job_id)
        return job

    def stop(self, timeout: float | None = 30) -> None:
        """Stop after the record in flight; the job in progress goes back to queued for the next start."""
        self._stop.set()
        self._queue.put(None)
        if self._thread is not None:
            self._thread.join(timeout)

    def _loop(self) -> None:
        _lower_priority(self.nice)
        while not self._stop.is_set():
            job_id = self._queue.get()
            if job_id is None:
                break
            try:
                self._process(job_id)
            except Exception:  # the runner must outlive any one job
                log.exception("QC job %s: runner error", job_id)

    def _process(self, job_id: str) -> None:
        with self.store.exclusive(job_id) as mine:
            if not mine:
                log.warning("QC job %s is being run by another runner; skipped", job_id)
                return
            job = self.store.claim(job_id)
            if job is None:
                return
            try:
                self._run(job)
            finally:
                self._cancelled.discard(job_id)

    def _run(self, job: Job) -> None:
        for attempt in range(1, RUN_ATTEMPTS + 1):
            if not self._run_batch(job):
                return
            problem = _coverage(self.store.folder(job.id))
            if problem is None:
                done, errors = _Progress(self.store.path(job.id, RESULTS)).read()
                finished = self.store.update(job.id, status="done", done=done, errors=errors, rate=None,
                                             finished=now(), **_digest(self.store.path(job.id, RESULTS)))
                if self.on_done is not None:
                    try:
                        self.on_done(finished)
                    except Exception:  # the job is done either way; the hook's owner retries at start-up
                        log.exception("QC job %s: on_done hook failed", job.id)
                return
            log.warning("QC job %s: %s (run %d of %d)", job.id, problem, attempt, RUN_ATTEMPTS)
        self.store.update(job.id, status="failed", rate=None, finished=now(), error=problem)

    def _run_batch(self, job: Job) -> bool:
        """One resumed run of the batch; True when it went through to the end."""
        folder = self.store.folder(job.id)
        results = folder / RESULTS
        progress = _Progress(results)
        outcome: dict = {}

        def checkpoint(_record) -> list:
            # run_batch calls its model_pass hook between records: the one place it offers to stop cleanly.
            if self._stop.is_set():
                raise _Interrupted("stopped")
            if job.id in self._cancelled:
                raise _Interrupted("cancelled")
            return []

        def work() -> None:
            _lower_priority(self.nice)
            try:
                run_batch([folder / INPUT], results, self.knowledge_home, workers=1, resume=True,
                          jurisdiction=self.jurisdiction, model_pass=checkpoint, show_progress=False,
                          relative_to=folder, ray_address=self.ray_address)
            except BaseException as exc:  # reported by the waiting thread
                outcome["error"] = exc

        first, _ = progress.read()
        started = time.monotonic()
        worker = threading.Thread(target=work, name=f"qc-job-{job.id[:8]}", daemon=True)
        worker.start()
        while worker.is_alive():
            worker.join(self.interval)
            try:
                done, errors = progress.read()
                elapsed = time.monotonic() - started
                rate = round((done - first) / elapsed, 2) if done > first else None
                current = self.store.update(job.id, done=done, errors=errors, rate=rate)
                if current.cancel_requested:  # asked through another server sharing the job's state
                    self._cancelled.add(job.id)
            except (OSError, ValueError) as exc:  # progress is advisory; never leave the batch unattended
                log.warning("QC job %s: progress not saved: %s", job.id, exc)
        done, errors = progress.read()
        error = outcome.get("error")
        if isinstance(error, _Interrupted):
            status = "cancelled" if error.reason == "cancelled" else "queued"
            self.store.update(job.id, status=status, done=done, errors=errors, rate=None,
                              finished=now() if status == "cancelled" else None)
            return False
        if isinstance(error, OSError) and error.errno in DISK_FULL:
            log.error("QC job %s paused: the disk is full (%s); retried in %d s", job.id, error.strerror,
                      DISK_RETRY_S)
            self.store.update(job.id, status="queued", done=done, errors=errors, rate=None,
                              error="paused: the server's disk is full; the job continues when there is space")
            retry = threading.Timer(DISK_RETRY_S, self.submit, [job.id])
            retry.daemon = True
            retry.start()
            return False
        if error is not None:
            log.error("QC job %s failed", job.id, exc_info=error)
            # The owner sees what went wrong in words, never a server path or a traceback.
            message = str(error) if isinstance(error, BatchError) else (
                f"the batch stopped on an internal error ({type(error).__name__}); the server log has the details")
            self.store.update(job.id, status="failed", done=done, errors=errors, rate=None, finished=now(),
                              error=message)
            return False
        return True


class _Progress:
    """Counts complete lines (and error results) appended to results.jsonl since the last call.

    Only whole lines are consumed, so a torn last line that run_batch cuts off on resume is never
    counted."""

    def __init__(self, path: Path):
        self.path = path
        self.offset = 0
        self.done = 0
        self.errors = 0

    def read(self) -> tuple[int, int]:
        try:
            with self.path.open("rb") as handle:
                handle.seek(self.offset)
                data = handle.read()
        except FileNotFoundError:
            return self.done, self.errors
        cut = data.rfind(b"\n") + 1
        for line in data[:cut].splitlines():
            if line.strip():
                self.done += 1
                try:
                    self.errors += json.loads(line).get("status") == "error"
                except (ValueError, AttributeError):  # a damaged line: resume drops and redoes it
                    pass
        self.offset += cut
        return self.done, self.errors


def _coverage(folder: Path) -> str | None:
    """None when the results answer every input line exactly once; else what is missing or repeated."""
    answered = Counter(position(row) for row in read_results(folder / RESULTS))
    expected = list(input_positions([folder / INPUT], relative_to=folder))
    missing = [p for p in expected if p not in answered]
    repeated = sorted(p for p, n in answered.items() if n > 1)
    stray = sorted(set(answered) - set(expected))
    if not (missing or repeated or stray):
        return None
    parts = [f"{len(expected) - len(missing)} of {len(expected)} input lines answered"]
    if missing:
        parts.append(f"missing {', '.join(missing[:5])}{' ...' if len(missing) > 5 else ''}")
    if repeated:
        parts.append(f"answered twice {', '.join(repeated[:5])}")
    if stray:
        parts.append(f"results for lines that are not in the input: {', '.join(stray[:5])}")
    return "; ".join(parts)


def _digest(results: Path) -> dict:
    """What a finished job reports without re-reading its results: hash, counts, cited sources."""
    sha = hashlib.sha256()
    by_severity: Counter = Counter()
    by_category: Counter = Counter()
    sources: set[str] = set()
    records = findings = 0
    with results.open("rb") as handle:
        for line in handle:
            sha.update(line)
            if not line.strip():
                continue
            records += 1
            for finding in json.loads(line)["findings"]:
                findings += 1
                by_severity[finding["severity"]] += 1
                by_category[finding["category"]] += 1
                sources.update(k["id"] for k in finding.get("knowledge", []) if isinstance(k.get("id"), str))
    return {"results_sha256": sha.hexdigest(), "sources": sorted(sources),
            "summary": {"records": records, "findings": findings, "by_severity": dict(by_severity),
                        "by_category": dict(by_category)}}


def _copy_counting(stream: BinaryIO, target: Path, max_bytes: int) -> tuple[int, str, int]:
    """Copy in chunks, refusing more than ``max_bytes``; returns size, sha256 and non-blank lines
    (what run_batch will count as records)."""
    size, sha, lines, pending = 0, hashlib.sha256(), 0, False
    with target.open("wb") as out:
        while True:
            chunk = stream.read(CHUNK)
            if not chunk:
                break
            size += len(chunk)
            if size > max_bytes:
                raise JobTooLarge(f"the upload is larger than the {max_bytes // 2**20} MiB limit for a QC job")
            sha.update(chunk)
            out.write(chunk)
            parts = chunk.split(b"\n")
            for part in parts[:-1]:
                if pending or part.strip():
                    lines += 1
                pending = False
            pending = pending or bool(parts[-1].strip())
        out.flush()
        os.fsync(out.fileno())
    return size, sha.hexdigest(), lines + pending


def _check_first_line(path: Path) -> None:
    with path.open("rb") as handle:
        for number, line in enumerate(iter(lambda: handle.readline(FIRST_LINE_CHECK), b""), 1):
            if not line.strip():
                continue
            if not line.endswith(b"\n") and len(line) == FIRST_LINE_CHECK:
                return  # too long to check here; the batch reports it if it is broken
            try:
                data = strict_json.loads(line.decode("utf-8-sig"))
            except UnicodeDecodeError:
                raise JobError(f"line {number} is not UTF-8 text; upload JSON Lines (one JSON record per line)"
                               ) from None
            except strict_json.JSONError as exc:
                raise JobError(f"line {number} is not JSON ({exc}); upload JSON Lines "
                               "(one JSON record per line)") from None
            if not isinstance(data, dict):
                raise JobError(f"line {number} is a JSON {type(data).__name__}, not a record object")
            return


def _read_json(path: Path) -> dict:
    data = json.loads(path.read_text(encoding="utf-8"))
    if not isinstance(data, dict):
        raise ValueError("not a JSON object")
    return data


def _write_json(path: Path, data: dict) -> None:
    write_atomically(path, json.dumps(data, ensure_ascii=False, indent=1).encode("utf-8"))


def _lower_priority(nice: int) -> None:
    """Raise this thread's nice value (Linux schedules threads, so only the calling thread is affected)."""
    if nice <= 0:
        return
    try:
        tid = threading.get_native_id()
        os.setpriority(os.PRIO_PROCESS, tid, max(os.getpriority(os.PRIO_PROCESS, tid), nice))
    except (AttributeError, OSError):
        pass
