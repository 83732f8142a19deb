"""The QC office's pages and APIs: the findings queue, one record's findings in context, the reviewers'
moves, reminders, the dashboard, rule precision, batch jobs, exports.

Pages (signed-in session; forms carry the CSRF token):
GET  /qc/findings[.csv|.xlsx]      the queue: filters (department, doctor, rule, category, severity, state,
                                   level, record, dates), counts, pages; export of the filtered view
GET  /qc/records/<record id>       the record's latest version with its findings in context, history,
                                   indicators, VTE score, deadlines and scores per version
POST /qc/findings/<id>/act         confirm | dismiss (reason) | assign (doctor or department) | fix | reopen | close
POST /qc/recheck/<record id>       check the latest version again (after a rules or knowledge update)
GET  /qc/reminders                 in-stay deadlines due soon or overdue
GET  /qc/dashboard                 findings per 100 records, scores, compliance, VTE
GET  /qc/rules[.csv|.xlsx]         rule precision from reviews; rules to retune
GET  /qc/jobs                      batch jobs: upload, progress, cancel, report

APIs (bearer token or session): GET /api/qc/office/findings, POST /api/qc/office/findings/<id>,
POST /api/qc/office/records (file a record version from the EMR), GET /api/qc/office/records/<id>,
GET /api/qc/office/rules, GET /api/qc/office/reminders, GET /api/qc/office/jobs.

Roles: doctor (their records and what is assigned to them; may mark fixed), dept_qc (their department),
qc_staff and admin (the whole hospital; jobs). Every request that shows or changes patient data writes one
audit entry; a finished batch job filed by the system writes one too.
"""

from __future__ import annotations

import logging
import threading
import time
from datetime import date, datetime
from urllib.parse import urlencode

from flask import Blueprint, Flask, Response, current_app, flash, g, jsonify, redirect, render_template, request, url_for

from copilot.audit import hash_payload
from copilot.db import open_database
from copilot.qc.jobs import INPUT, RESULTS
from copilot.qc.office import export, workflow
from copilot.qc.office.intake import Intake
from copilot.qc.office.levels import LEVEL_NAMES, LEVELS
from copilot.qc.office.store import ORDERS, PAGE_SIZES, Filters, NotFound, OfficeStore, StoreError, Viewer, utcnow
from copilot.qc.registry import CATEGORIES, SEVERITIES
from copilot.records.loaders import RecordError, record_from_json
from copilot.web import office_charts, state
from copilot.web.auditing import record as audit
from copilot.web.auditing import record_reference
from copilot.web.auth import require_role
from copilot.web.qc_api import elapsed_ms, job_runner, parse_json, InputError, view as job_view

bp = Blueprint("qc_office", __name__)
log = logging.getLogger(__name__)

OFFICE = ("doctor", "dept_qc", "qc_staff", "admin")
REVIEWERS = workflow.REVIEWERS
JOBS = ("qc_staff", "admin")
FILERS = ("qc_staff", "admin")  # who may file record versions through the API (the EMR's service account)
EXTENSION, CLOCK, LOCK = "copilot.qc_office", "copilot.clock", "copilot.qc_office.intake_lock"
SCORE_BINS = [(0, 60), (60, 75), (75, 80), (80, 85), (85, 90), (90, 95), (95, 100)]
MAX_EXPORT = 200_000


def init_app(app: Flask) -> None:
    """Open (and migrate) the instance database, and file each finished batch job's results; jobs that
    finished while no server was running are filed at start-up."""
    settings = app.extensions["copilot.settings"]
    app.extensions["copilot.db"] = open_database(settings.database)
    app.extensions.setdefault(CLOCK, utcnow)
    app.extensions[EXTENSION] = OfficeStore(app.extensions["copilot.db"], clock=lambda: app.extensions[CLOCK]())
    app.extensions[LOCK] = threading.Lock()
    app.extensions["copilot.qc_jobs"].on_done = lambda job: file_job(app, job.id)
    threading.Thread(target=_file_finished_jobs, args=(app,), name="qc-office-catch-up", daemon=True).start()


def store() -> OfficeStore:
    return current_app.extensions[EXTENSION]


def now() -> datetime:
    return current_app.extensions[CLOCK]()


def viewer() -> Viewer:
    return Viewer(g.user.name, g.user.role, getattr(g.user, "department", None))


def intake() -> Intake:
    return Intake(store(), state.qc_runner())


# Batch jobs into the office --------------------------------------------------------------------


def file_job(app: Flask, job_id: str) -> None:
    """File a finished job's records (the job runner's on_done hook; also run at start-up)."""
    with app.app_context(), app.extensions[LOCK]:
        jobs = job_runner().store
        summary = intake().take_job(job_id, jobs.path(job_id, INPUT), jobs.path(job_id, RESULTS))
        if summary.already:
            return
        system_audit("qc-office:job-intake", inputs={"job_id": job_id}, outputs=summary.to_json(),
                     detail=f"job {job_id}: {summary.records} records filed ({summary.new_versions} new versions), "
                            f"{summary.opened} findings opened, {summary.closed} closed, {summary.reopened} reopened")


def _file_finished_jobs(app: Flask) -> None:
    try:
        with app.app_context():
            pending = [j.id for j in job_runner().store.list() if j.status == "done"
                       and not store().job_ingested(j.id)]
        for job_id in pending:
            file_job(app, job_id)
    except Exception:  # a broken job folder must not stop the server; the next start tries again
        log.exception("QC office: filing finished jobs at start-up failed")


def system_audit(action: str, *, inputs, outputs, detail: str, patient_ref: str | None = None) -> None:
    """An audit entry for what the system did on its own (no request, no user)."""
    try:
        snapshot_id = state.snapshot().id
    except Exception:
        snapshot_id = None
    model = state.model_info()
    state.audit_log().append(user=workflow.SYSTEM, role=workflow.SYSTEM, action=action, patient_ref=patient_ref,
                             model_id=model["id"], model_version=model["version"], knowledge_snapshot=snapshot_id,
                             input_hash=hash_payload(inputs), output_hash=hash_payload(outputs),
                             detail=" ".join(detail.split())[:300])


# Errors ------------------------------------------------------------------------------------------


def _api() -> bool:
    return request.path.startswith("/api/")


@bp.errorhandler(StoreError)
def _bad_request(exc: StoreError):
    status = 404 if isinstance(exc, NotFound) else 400
    if _api():
        return jsonify(error=str(exc)), status
    return render_template("qc/error.html", user=g.user, message=str(exc), status=status), status


@bp.errorhandler(workflow.WorkflowError)
def _not_allowed(exc: workflow.WorkflowError):
    return jsonify(error=str(exc)), 409


# The queue ---------------------------------------------------------------------------------------


def _paging() -> tuple[int, int, str]:
    try:
        page = max(1, int(request.args.get("page", 1)))
        per_page = int(request.args.get("per_page", 50))
    except ValueError:
        raise StoreError("page and per_page must be whole numbers") from None
    return page, per_page, request.args.get("order", "newest")


@bp.get("/qc")
@require_role(*OFFICE)
def home():
    return redirect(url_for("qc_office.queue"))


def _queue_page():
    """The filtered page of the queue (page or API), audited: which findings were shown to whom."""
    started = time.perf_counter()
    filters = Filters.parse(request.args)
    page, per_page, order = _paging()
    result = store().page(viewer(), filters, page, per_page, order)
    audit("qc-office:queue", inputs={"filters": filters.query_args(), "page": page, "per_page": per_page},
          outputs={"ids": [r["id"] for r in result.rows], "total": result.total}, latency_ms=elapsed_ms(started),
          detail=f"{request.path} page {page}: {len(result.rows)} of {result.total} findings")
    return filters, per_page, order, result


@bp.get("/qc/findings")
@require_role(*OFFICE)
def queue():
    filters, per_page, order, result = _queue_page()
    args = filters.query_args()
    return render_template("qc/queue.html", user=g.user, result=result, filters=filters, args=args, order=order,
                           per_page=per_page, choices=store().choices(viewer()), severities=SEVERITIES,
                           states=workflow.STATES, levels=LEVELS, level_names=LEVEL_NAMES, orders=ORDERS,
                           page_sizes=PAGE_SIZES, categories=CATEGORIES, query=urlencode(args),
                           reminders=len(store().reminders(viewer(), now())))


@bp.get("/qc/findings.<kind>")
@require_role(*OFFICE)
def export_findings(kind: str):
    filters = Filters.parse(request.args)
    rows = store().export_rows(viewer(), filters, limit=MAX_EXPORT)
    return _export(kind, rows, export.FINDING_COLUMNS, "findings", filters.query_args())


def _export(kind: str, rows, columns, name: str, args: dict):
    if kind not in ("csv", "xlsx"):
        raise StoreError("export as .csv or .xlsx")
    started = time.perf_counter()
    rows = list(rows)
    stamp = now().strftime("%Y%m%d-%H%M")
    if kind == "csv":
        body = "".join(export.csv_lines(rows, columns)).encode("utf-8")
        mimetype = "text/csv"
    else:
        body = export.xlsx_bytes(rows, columns, name)
        mimetype = "application/vnd.openxmlformats-officedocument.spreadsheetml.sheet"
    audit(f"qc-office:export-{name}", inputs={"filters": args, "format": kind},
          outputs={"sha256": hash_payload(body), "rows": len(rows)}, latency_ms=elapsed_ms(started),
          detail=f"export {name} {kind}: {len(rows)} rows")
    return Response(body, mimetype=mimetype, headers={
        "Content-Disposition": f'attachment; filename="qc-{name}-{stamp}.{kind}"', "Cache-Control": "no-store"})


# One record ----------------------------------------------------------------------------------------


def _marked(document: dict, findings: list[dict]) -> list[dict]:
    """The document's text cut into plain and marked pieces at the evidence of its present findings."""
    spans = sorted((f["evidence"]["start"], f["evidence"]["end"], f["id"], f["severity"]) for f in findings
                   if f["present"] and f.get("evidence") and f["evidence"].get("document_id") == document["id"]
                   and isinstance(f["evidence"].get("start"), int))
    text, pieces, cursor = document["text"], [], 0
    for start, end, finding_id, severity in spans:
        if start < cursor or end > len(text):
            continue  # overlaps an earlier mark: the finding is still listed, its evidence quoted there
        pieces.append({"text": text[cursor:start]})
        pieces.append({"text": text[start:end], "finding": finding_id, "severity": severity})
        cursor = end
    pieces.append({"text": text[cursor:]})
    return pieces


def _allowed(finding: dict, role: str) -> list[str]:
    """The user moves the role may make on the finding in its state."""
    moves = []
    for action in workflow.USER_ACTIONS:
        move = workflow.MOVES[action]
        if finding["state"] in move.sources and (role in move.roles or role == "admin"):
            if role == "doctor" and action != "fix":
                continue
            moves.append(action)
    return moves


@bp.get("/qc/records/<path:record_id>")
@require_role(*OFFICE)
def record_page(record_id: str):
    started = time.perf_counter()
    found = store().record(record_id, viewer())
    findings = found["findings"]
    for finding in findings:
        finding["moves"] = _allowed(finding, g.user.role)
    documents = [{**d, "pieces": _marked(d, findings)} for d in found["data"].get("documents", [])]
    marked = {p["finding"] for d in documents for p in d["pieces"] if "finding" in p}
    deadlines = [{**d, "status": _deadline_status(d)} for d in found["deadlines"]]
    audit("qc-office:record", patient_ref=record_reference(record_id), inputs={"record_id": record_id},
          outputs={"version": found["record"]["version"], "findings": [f["id"] for f in findings]},
          latency_ms=elapsed_ms(started), detail=f"record version {found['record']['version']}")
    choices = store().choices(Viewer("system", "system"))
    return render_template("qc/record.html", user=g.user, found=found, record=found["record"], documents=documents,
                           findings=findings, marked=marked, deadlines=deadlines, level_names=LEVEL_NAMES,
                           doctors=choices["doctor"], departments=choices["department"],
                           can_recheck=g.user.role in REVIEWERS)


def _deadline_status(deadline: dict) -> str | None:
    if deadline["done"]:
        return "done"
    current = now()
    if current >= deadline["due_at"]:
        return "overdue"
    return "due_soon" if current >= deadline["warn_at"] else "pending"


@bp.post("/qc/findings/<int:finding_id>/act")
@require_role(*OFFICE)
def act(finding_id: int):
    form = request.form
    action = form.get("action", "")
    try:
        changed = _move(finding_id, action, form.get("reason"), form.get("assignee_type"), form.get("assignee"))
        flash(f"Finding {finding_id}: {action} done, now {changed['state']}.", "ok")
    except workflow.WorkflowError as exc:
        flash(f"Finding {finding_id}: {exc}", "error")
        changed = store().finding(finding_id, viewer())
    if form.get("back") == "queue":
        return redirect(url_for("qc_office.queue", **Filters.parse(request.args).query_args()))
    return redirect(url_for("qc_office.record_page", record_id=changed["record_id"]) + f"#finding-{finding_id}")


def _move(finding_id: int, action: str, reason: str | None, assignee_type: str | None, assignee: str | None) -> dict:
    started = time.perf_counter()
    before = store().finding(finding_id, viewer())
    reference = record_reference(before["record_id"])
    inputs = {"finding": finding_id, "action": action, "reason": reason, "assignee_type": assignee_type,
              "assignee": assignee}
    try:
        changed = store().act(finding_id, action, viewer(), reason, assignee_type, assignee)
    except workflow.WorkflowError as exc:
        audit(f"qc-office:{action}"[:60], patient_ref=reference, inputs=inputs, outcome="error",
              latency_ms=elapsed_ms(started), detail=f"finding {finding_id} {before['state']}: refused: {exc}")
        raise
    audit(f"qc-office:{action}", patient_ref=reference, inputs=inputs,
          outputs={"finding": finding_id, "state": changed["state"]}, latency_ms=elapsed_ms(started),
          detail=f"finding {finding_id} {before['rule_id']}: {before['state']} -> {changed['state']}")
    return changed


@bp.post("/qc/recheck/<path:record_id>")
@require_role(*REVIEWERS)
def recheck(record_id: str):
    result = _recheck(record_id)
    flash(f"Re-checked: version {result.version}, score {result.score:g} ({result.grade}); "
          f"{len(result.opened)} new, {len(result.closed)} closed, {len(result.reopened)} reopened.", "ok")
    return redirect(url_for("qc_office.record_page", record_id=record_id))


def _recheck(record_id: str):
    started = time.perf_counter()
    found = store().record(record_id, viewer())
    result = intake().file(record_from_json(found["data"], origin="recheck"), "recheck")
    audit("qc-office:recheck", patient_ref=record_reference(record_id), inputs={"record_id": record_id},
          outputs=result.to_json(), latency_ms=elapsed_ms(started), detail=f"recheck version {result.version}")
    return result


# Reminders, dashboard, rules -----------------------------------------------------------------------


@bp.get("/qc/reminders")
@require_role(*OFFICE)
def reminders():
    started = time.perf_counter()
    rows = store().reminders(viewer(), now())
    audit("qc-office:reminders", outputs={"records": sorted({r["record_id"] for r in rows})},
          latency_ms=elapsed_ms(started), detail=f"{len(rows)} reminders")
    return render_template("qc/reminders.html", user=g.user, rows=rows, now=now())


@bp.get("/qc/dashboard")
@require_role(*OFFICE)
def dashboard():
    started = time.perf_counter()
    data = store().dashboard(viewer())
    snapshot = state.snapshot()
    names = {i.id: (i.name, i.name_zh, i.disease) for i in snapshot.active(kind="quality_indicator")}
    compliance = [(f"{names.get(k, (k,))[0]}", v["rate"]) for k, v in data["compliance"].items()]
    charts = {
        "departments": office_charts.lines(data["per_100_by_department"], data["months"]),
        "rules": office_charts.lines(data["per_100_by_rule"], data["months"]),
        "scores": office_charts.histogram(data["scores"], SCORE_BINS),
        "compliance": office_charts.bars(compliance),
    }
    audit("qc-office:dashboard", outputs={"records": len(data["scores"])}, latency_ms=elapsed_ms(started),
          detail="dashboard")
    return render_template("qc/dashboard.html", user=g.user, data=data, charts=charts, names=names)


def _precision() -> list[dict]:
    settings = state.settings()
    return store().rule_precision(viewer(), settings.qc_precision_floor, settings.qc_precision_min_reviews)


@bp.get("/qc/rules")
@require_role(*OFFICE)
def rules():
    settings = state.settings()
    return render_template("qc/rules.html", user=g.user, rows=_precision(), floor=settings.qc_precision_floor,
                           min_reviews=settings.qc_precision_min_reviews)


@bp.get("/qc/rules.<kind>")
@require_role(*OFFICE)
def export_rules(kind: str):
    return _export(kind, _precision(), export.RULE_COLUMNS, "rules", {})


@bp.get("/qc/jobs")
@require_role(*JOBS)
def jobs():
    return render_template("qc/jobs.html", user=g.user, max_mib=state.settings().qc_job_max_bytes // 2**20)


# APIs ----------------------------------------------------------------------------------------------


def _json(value):
    if isinstance(value, (datetime, date)):
        return value.isoformat()
    if isinstance(value, dict):
        return {k: _json(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_json(v) for v in value]
    return value


@bp.get("/api/qc/office/findings")
@require_role(*OFFICE)
def api_findings():
    _filters, per_page, _order, result = _queue_page()
    return jsonify(_json({"total": result.total, "page": result.page, "pages": result.pages, "per_page": per_page,
                          "by_state": result.by_state, "by_severity": result.by_severity, "findings": result.rows}))


@bp.post("/api/qc/office/findings/<int:finding_id>")
@require_role(*OFFICE)
def api_act(finding_id: int):
    body = _json_body()
    unknown = set(body) - {"action", "reason", "assignee_type", "assignee"}
    if unknown:
        return jsonify(error=f"unknown fields: {', '.join(sorted(unknown))}"), 400
    changed = _move(finding_id, str(body.get("action", "")), body.get("reason"), body.get("assignee_type"),
                    body.get("assignee"))
    return jsonify(_json(changed))


def _json_body() -> dict:
    if request.mimetype != "application/json":
        raise StoreError("send application/json")
    try:
        body = parse_json(request.get_data(cache=False), request.mimetype_params.get("charset"))
    except InputError as exc:
        raise StoreError(str(exc)) from None
    if not isinstance(body, dict):
        raise StoreError("expected a JSON object")
    return body


@bp.post("/api/qc/office/records")
@require_role(*FILERS)
def api_file_record():
    """File a version of a record (the EMR pushes each change): it is checked, and its findings are matched
    to the ones already filed (closed when gone, reopened when back)."""
    started = time.perf_counter()
    if request.mimetype not in ("application/json", "application/fhir+json"):
        raise StoreError("send the record as application/json (a project record or a FHIR Bundle)")
    raw = request.get_data(cache=False)
    try:
        record = record_from_json(parse_json(raw, request.mimetype_params.get("charset")), origin="request")
    except (RecordError, InputError) as exc:
        audit("qc-office:file", inputs=raw, outcome="error", latency_ms=elapsed_ms(started), detail="rejected record")
        return jsonify(error=f"record: {exc}"), 400
    result = intake().file(record, "api")
    found = store().record(record.id, viewer())
    body = _json({**result.to_json(), "findings": [f for f in found["findings"] if f["present"]]})
    audit("qc-office:file", patient_ref=record_reference(record.id), inputs=raw, outputs=body,
          latency_ms=elapsed_ms(started), detail=f"version {result.version}")
    return jsonify(body)


@bp.get("/api/qc/office/records/<path:record_id>")
@require_role(*OFFICE)
def api_record(record_id: str):
    started = time.perf_counter()
    found = store().record(record_id, viewer())
    audit("qc-office:record", patient_ref=record_reference(record_id), inputs={"record_id": record_id},
          outputs={"version": found["record"]["version"]}, latency_ms=elapsed_ms(started), detail="api record")
    return jsonify(_json(found))


@bp.get("/api/qc/office/rules")
@require_role(*OFFICE)
def api_rules():
    return jsonify(rules=_precision())


@bp.get("/api/qc/office/reminders")
@require_role(*OFFICE)
def api_reminders():
    rows = store().reminders(viewer(), now())
    audit("qc-office:reminders", outputs={"records": sorted({r["record_id"] for r in rows})},
          detail=f"api {len(rows)} reminders")
    return jsonify(reminders=_json(rows))


@bp.get("/api/qc/office/jobs")
@require_role(*JOBS)
def api_jobs():
    owner = None if g.user.role == "admin" else g.user.name
    listed = []
    for job in reversed(job_runner().store.list(owner)):
        entry = job_view(job)
        entry["filed"] = store().job_ingested(job.id)
        listed.append(entry)
    return jsonify(jobs=listed)
