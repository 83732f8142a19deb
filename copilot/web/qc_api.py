"""Medical-record QC over HTTP: one record in, findings out; and resumable batch jobs.

POST /api/qc                    one record (project JSON, FHIR Bundle, {"text"} or text/plain) -> findings
POST /api/qc/jobs               a .jsonl upload (raw body or multipart field ``file``) -> 202, queued
GET  /api/qc/jobs               the caller's jobs (an admin sees all)
GET  /api/qc/jobs/<id>          progress: status, total, done, errors, percent, eta_s
GET  /api/qc/jobs/<id>/report   ?format=jsonl|html, once done
POST /api/qc/jobs/<id>/cancel

Single-record QC runs in the request thread (QCRunner.check takes milliseconds) and never
queues behind the language model. Jobs run on one low-priority background thread per app
(copilot.qc.jobs); they live under COPILOT_HOME/qc/jobs and are resumed at start-up. A job is
visible to its owner and to admins only; anyone else gets 404, so ids reveal nothing.
"""

from __future__ import annotations

import base64
import hashlib
import logging
import re
import threading
import time
from collections import Counter

from flask import Blueprint, Flask, current_app, g, jsonify, request, send_file, url_for
from werkzeug.exceptions import RequestEntityTooLarge

from copilot.qc.registry import SEVERITIES
from copilot.qc.jobs import DISK_FULL, RESULTS, Job, JobError, JobRunner, JobTooLarge
from copilot.records.loaders import RecordError, record_from_json, record_from_text
from copilot.records.model import DOCUMENT_TYPES, Record
from copilot.web import state
from copilot.web.auditing import audited
from copilot.web.auditing import record as audit
from copilot.web.auth import require_role
from copilot.web.body import JSON_TYPES, InputError, decode, parse_json, raw_body

bp = Blueprint("qc_api", __name__, url_prefix="/api/qc")
log = logging.getLogger(__name__)

QC_ROLES = ("clinician", "qc_staff", "admin")
JOB_ROLES = ("qc_staff", "admin")
TEXT_TYPES = frozenset({"text/plain"})
JSONL_TYPES = frozenset({"application/x-ndjson", "application/jsonl", "application/x-jsonlines", "text/plain"})
TEXT_FIELDS = frozenset({"text", "document_type", "id"})
EXTENSION = "copilot.qc_jobs"
# What the audit log accepts as a reference or a source id (copilot.audit validates the same shapes).
REFERENCE_ID = re.compile(r"^[A-Za-z0-9\-.]{1,64}$")
SOURCE_ID = re.compile(r"^[A-Za-z0-9_.:/@+\-]{1,200}$")
SCRIPT = re.compile(r"<script>(.*?)</script>", re.S)
STYLE = re.compile(r"<style>(.*?)</style>", re.S)


def init_app(app: Flask) -> None:
    """Start the job runner; jobs a previous process left queued or running are picked up again."""
    settings = app.extensions["copilot.settings"]
    from copilot.qc.shared_jobs import open_job_store

    runner = JobRunner(open_job_store(settings), settings.knowledge_dir, jurisdiction=settings.qc_jurisdiction,
                       ray_address=settings.ray_address)
    app.extensions[EXTENSION] = runner
    runner.start()
    if not app.testing:
        threading.Thread(target=_warm_up, args=(app,), name="qc-warm-up", daemon=True).start()


def _warm_up(app: Flask) -> None:
    """Build the QC runner and load the ICD-10-CM code set now, not in the first caller's request
    (together about 2 s)."""
    from knowledge.graph import icd10_title

    try:
        with app.app_context():
            state.qc_runner()
        icd10_title("I10")
    except Exception as exc:  # no knowledge snapshot yet: the first request will say so
        log.warning("QC warm-up skipped: %s", exc)


def job_runner() -> JobRunner:
    return current_app.extensions[EXTENSION]


# Errors ---------------------------------------------------------------------------------------


def error(code: int, message: str, **extra):
    return jsonify(error=message, **extra), code


def too_large(exc: RequestEntityTooLarge):
    limit = request.max_content_length or current_app.config.get("MAX_CONTENT_LENGTH")
    size = f" of {limit // 1024} KiB" if limit else ""
    return error(413, f"the request body is larger than the limit{size}")


bp.register_error_handler(RequestEntityTooLarge, too_large)


# Reading bodies -------------------------------------------------------------------------------


def _note(text: object, document_type: object, record_id: object = None) -> Record:
    if not isinstance(text, str):
        raise InputError("'text' must be a string (the note)")
    document_type = document_type or "progress_note"
    if document_type not in DOCUMENT_TYPES:
        raise InputError(f"document_type must be one of {', '.join(DOCUMENT_TYPES)}")
    if record_id is not None and (not isinstance(record_id, str) or not record_id.strip() or len(record_id) > 200):
        raise InputError("'id' must be a non-empty string of at most 200 characters")
    record_id = record_id or "note-" + hashlib.sha256(text.encode("utf-8")).hexdigest()[:12]
    try:
        return record_from_text(text, record_id, origin="request", document_type=document_type)
    except RecordError as exc:
        raise InputError(str(exc)) from None


def record_from_body(raw: bytes, mimetype: str, charset: str | None, document_type: str | None
                     ) -> tuple[Record, str | None]:
    """The request body -> (record, audit patient reference)."""
    if mimetype in TEXT_TYPES:
        return _note(decode(raw, charset), document_type), None
    data = parse_json(raw, charset)
    if isinstance(data, dict) and "text" in data and "documents" not in data and "resourceType" not in data:
        unknown = set(data) - TEXT_FIELDS
        if unknown:
            raise InputError(f"unknown fields for a note: {', '.join(sorted(unknown))} "
                             f"(a note takes {', '.join(sorted(TEXT_FIELDS))})")
        return _note(data["text"], data.get("document_type", document_type), data.get("id")), None
    if not isinstance(data, dict):
        raise InputError(f"expected a JSON object (a record, a FHIR Bundle or {{\"text\": ...}}), "
                         f"got a JSON {type(data).__name__}")
    try:
        record = record_from_json(data, origin="request")
    except RecordError as exc:
        raise InputError(f"record: {exc}") from None
    return record, patient_reference(data, record)


def patient_reference(data: dict, record: Record) -> str | None:
    """Patient/<id> from a FHIR Bundle's Patient; else Record/<id> when the id is a valid reference."""
    if data.get("resourceType") == "Bundle":
        for entry in data.get("entry") or []:
            resource = entry.get("resource") if isinstance(entry, dict) else None
            if isinstance(resource, dict) and resource.get("resourceType") == "Patient":
                rid = resource.get("id")
                if isinstance(rid, str) and REFERENCE_ID.match(rid):
                    return f"Patient/{rid}"
    return f"Record/{record.id}" if REFERENCE_ID.match(record.id) else None


def cited(findings: list[dict]) -> list[str]:
    """Knowledge ids the findings cite, in the shape the audit log accepts (codes typed by a user may not be)."""
    ids = {k.get("id") for f in findings for k in f.get("knowledge", [])}
    return sorted(i for i in ids if isinstance(i, str) and SOURCE_ID.match(i))


def summarize(findings: list[dict]) -> dict:
    by_severity = Counter(f["severity"] for f in findings)
    return {"total": len(findings), "by_severity": {s: by_severity.get(s, 0) for s in SEVERITIES},
            "by_category": dict(Counter(f["category"] for f in findings))}


def elapsed_ms(started: float) -> float:
    return round((time.perf_counter() - started) * 1000, 1)


# Single record --------------------------------------------------------------------------------


@bp.post("")
@require_role(*QC_ROLES)
@audited("qc")
def check():
    started = time.perf_counter()
    if request.mimetype not in JSON_TYPES | TEXT_TYPES:
        return error(415, f"unsupported content type {request.mimetype or '(none)'!r}; send application/json "
                          "(a record, a FHIR Bundle or {\"text\": ...}) or text/plain (one note)")
    raw = raw_body()
    try:
        record, patient_ref = record_from_body(raw, request.mimetype, request.mimetype_params.get("charset"),
                                               request.args.get("document_type"))
    except InputError as exc:
        audit("qc", inputs=raw, outcome="invalid", latency_ms=elapsed_ms(started), detail="rejected: invalid record")
        return error(exc.status, str(exc))
    qc = state.qc_runner()
    findings = qc.check(record)
    body = {"record_id": record.id, "findings": findings, "summary": summarize(findings),
            "knowledge_snapshot": qc.snapshot.id}
    audit("qc", patient_ref=patient_ref, inputs=raw, outputs=body, sources=cited(findings),
          latency_ms=elapsed_ms(started))
    return jsonify(body)


# Jobs -----------------------------------------------------------------------------------------


def _links(job_id: str) -> dict:
    return {"self": url_for("qc_api.job", job_id=job_id),
            "report": url_for("qc_api.report", job_id=job_id),
            "report_html": url_for("qc_api.report", job_id=job_id, format="html"),
            "cancel": url_for("qc_api.cancel", job_id=job_id)}


def view(job: Job) -> dict:
    body = {k: getattr(job, k) for k in ("id", "owner", "status", "total", "done", "errors", "created", "started",
                                         "finished", "error", "cancel_requested", "summary")}
    body.update(percent=job.percent, eta_s=job.eta_s, links=_links(job.id))
    return body


def visible_job(job_id: str) -> Job | None:
    """The job if the caller owns it or is an admin; None (-> 404) for a bad id, an unknown job or
    someone else's."""
    job = job_runner().store.get(job_id)
    if job is None or (g.user.role != "admin" and job.owner != g.user.name):
        return None
    return job


def not_found():
    return error(404, "no such job")


@bp.post("/jobs")
@require_role(*JOB_ROLES)
@audited("qc:job-submit")
def submit():
    started = time.perf_counter()
    limit = state.settings().qc_job_max_bytes
    request.max_content_length = limit
    if request.mimetype == "multipart/form-data":
        upload = request.files.get("file")
        if upload is None:
            return error(400, "multipart upload without a 'file' field")
        stream = upload.stream
    elif request.mimetype in JSONL_TYPES:
        stream = request.stream
    else:
        return error(415, f"unsupported content type {request.mimetype or '(none)'!r}; upload JSON Lines as "
                          "application/x-ndjson (or multipart/form-data with a 'file' field)")
    try:
        job = job_runner().store.create(g.user.name, stream, limit)
    except JobTooLarge as exc:
        return error(413, str(exc))
    except OSError as exc:
        if exc.errno not in DISK_FULL:
            raise
        log.error("QC job upload refused: %s", exc)
        return error(507, "the server's disk is full, so the upload was not kept; try again later")
    except JobError as exc:
        audit("qc:job-submit", outcome="invalid", latency_ms=elapsed_ms(started), detail="rejected: not a JSONL upload")
        return error(400, str(exc))
    job_runner().submit(job.id)
    audit("qc:job-submit", inputs={"job_id": job.id, "input_sha256": job.input_sha256, "bytes": job.input_bytes},
          outputs={"job_id": job.id, "total": job.total}, latency_ms=elapsed_ms(started), detail=f"job {job.id}")
    links = _links(job.id)
    return jsonify(id=job.id, status=job.status, total=job.total, links=links), 202, {"Location": links["self"]}


@bp.get("/jobs")
@require_role(*JOB_ROLES)
def jobs():
    owner = None if g.user.role == "admin" else g.user.name
    return jsonify(jobs=[view(job) for job in reversed(job_runner().store.list(owner))])


@bp.get("/jobs/<job_id>")
@require_role(*JOB_ROLES)
def job(job_id: str):
    found = visible_job(job_id)
    return jsonify(view(found)) if found else not_found()


@bp.post("/jobs/<job_id>/cancel")
@require_role(*JOB_ROLES)
def cancel(job_id: str):
    found = visible_job(job_id)
    if found is None:
        return not_found()
    if found.status not in ("queued", "running"):
        return error(409, f"the job is {found.status}; only a queued or running job can be cancelled",
                     status=found.status)
    return jsonify(view(job_runner().cancel(job_id))), 202


@bp.get("/jobs/<job_id>/report")
@require_role(*JOB_ROLES)
@audited("qc:job-report")
def report(job_id: str):
    started = time.perf_counter()
    found = visible_job(job_id)
    if found is None:
        return not_found()
    kind = request.args.get("format", "jsonl")
    if kind not in ("jsonl", "html"):
        return error(400, "format must be jsonl or html")
    if found.status != "done":
        return error(409, f"the job is {found.status}; its report is ready once it is done", status=found.status)
    store = job_runner().store
    if kind == "jsonl":
        path, digest = store.path(job_id, RESULTS), found.results_sha256
        response = send_file(path, mimetype="application/x-ndjson", as_attachment=True,
                             download_name=f"qc-{job_id}.jsonl", conditional=False, etag=False)
    else:
        path = store.report_html(job_id, title=f"Medical record QC report - job {job_id[:8]}")
        page = path.read_bytes()
        digest = hashlib.sha256(page).hexdigest()
        response = send_file(path, mimetype="text/html", download_name=f"qc-{job_id}.html", conditional=False,
                             etag=False)
        response.headers["Content-Security-Policy"] = report_csp(page.decode("utf-8"))
    audit("qc:job-report", outputs={"job_id": job_id, "format": kind, "sha256": digest}, sources=found.sources[:1000],
          latency_ms=elapsed_ms(started), detail=f"job {job_id} report {kind}")
    return response


def report_csp(page: str) -> str:
    """The report is one self-contained file (inline style and script, so it can be mailed); allow
    exactly its own blocks by hash rather than 'unsafe-inline' on the app's origin."""
    def hashes(pattern: re.Pattern) -> str:
        digests = [base64.b64encode(hashlib.sha256(block.encode("utf-8")).digest()).decode()
                   for block in pattern.findall(page)]
        return " ".join(f"'sha256-{d}'" for d in digests) or "'none'"

    ancestors = state.settings().frame_ancestors
    return (f"default-src 'none'; script-src {hashes(SCRIPT)}; style-src {hashes(STYLE)}; img-src data:; "
            f"base-uri 'none'; form-action 'none'; frame-ancestors {ancestors}")
