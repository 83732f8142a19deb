"""The QC office's findings as work items, in the instance database (SQLAlchemy Core: SQLite or PostgreSQL).

``ingest`` takes one checked version of a record: a record whose content changed gets a new version
number; findings are matched to the ones already filed by a fingerprint (rule, evidence text or message
without its numbers, occurrence), so a finding that is still there keeps its state and history, one that
is gone is re-checked and closed, one that comes back is reopened. ``act`` applies a reviewer's or a
doctor's move (copilot/qc/office/workflow.py). Every change is a row of qc_finding_events: who, when,
from which state to which, why, on which record version. Queries are scoped to what the viewer may see:
a doctor their own records and what is assigned to them, a department QC doctor their department, QC
staff and admins everything.

No Flask here: the web layer (copilot/web/qc_office.py) owns HTTP, sign-in and the audit log.
"""

from __future__ import annotations

import hashlib
import json
import re
import threading
from collections import Counter
from dataclasses import dataclass, field
from datetime import date, datetime, timedelta, timezone
from typing import Callable, Iterator

from sqlalchemy import and_, case, delete, false, func, insert, or_, select, true, update
from sqlalchemy.engine import Connection, Engine
from sqlalchemy.exc import IntegrityError, OperationalError

from copilot.qc.office import tables as t
from copilot.qc.office import workflow
from copilot.qc.office.scoring import Table, table
from copilot.qc.registry import SEVERITIES

PAGE_SIZES = (25, 50, 100, 200)
ORDERS = ("newest", "oldest", "severity")
_DIGITS = re.compile(r"\d+(?:\.\d+)?")


class StoreError(ValueError):
    """A request the store cannot answer (bad filter, unknown finding)."""


class NotFound(StoreError):
    pass


def utcnow() -> datetime:
    return datetime.now(timezone.utc)


def _aware(moment: datetime | None) -> datetime | None:
    """SQLite hands back naive datetimes: they were stored as UTC."""
    if moment is None:
        return None
    return moment if moment.tzinfo is not None else moment.replace(tzinfo=timezone.utc)


def _utc(moment: datetime | None) -> datetime | None:
    return moment.astimezone(timezone.utc) if moment is not None else None


def _month(moment: datetime) -> str:
    return moment.strftime("%Y-%m")


def fingerprint(finding: dict, occurrence: int) -> str:
    """The identity of a finding across versions of a record: its rule, and its evidence text (or, without
    evidence, its message with the numbers taken out: "signed 30.5 h after" and "signed 31.0 h after" are
    one finding), and which occurrence of that it is."""
    evidence = finding.get("evidence") or {}
    anchor = evidence.get("text") or _DIGITS.sub("#", finding.get("message", ""))
    key = "\x1f".join([finding["rule_id"], " ".join(anchor.split()), str(occurrence)])
    return hashlib.sha256(key.encode("utf-8")).hexdigest()[:32]


def record_sha256(data: dict) -> str:
    return hashlib.sha256(json.dumps(data, sort_keys=True, ensure_ascii=False).encode("utf-8")).hexdigest()


@dataclass(frozen=True)
class Viewer:
    """Who is asking: their user name, role and department."""
    name: str
    role: str
    department: str | None = None

    @property
    def hospital_wide(self) -> bool:
        return self.role in ("qc_staff", "admin", workflow.SYSTEM)


SYSTEM = Viewer(workflow.SYSTEM, workflow.SYSTEM)


def finding_scope(viewer: Viewer):
    """What of qc_findings the viewer may see."""
    f = t.findings.c
    if viewer.hospital_wide:
        return true()
    if viewer.role == "dept_qc" and viewer.department:
        return or_(f.department == viewer.department,
                   and_(f.assignee_type == "department", f.assignee == viewer.department))
    if viewer.role == "doctor":
        return or_(f.attending == viewer.name, and_(f.assignee_type == "doctor", f.assignee == viewer.name))
    return false()


def record_scope(viewer: Viewer):
    """What of qc_records the viewer may see (a doctor also sees a record holding a finding assigned to them)."""
    r = t.records.c
    if viewer.hospital_wide:
        return true()
    if viewer.role == "dept_qc" and viewer.department:
        return or_(r.department == viewer.department,
                   r.id.in_(select(t.findings.c.record_key).where(t.findings.c.assignee_type == "department",
                                                                  t.findings.c.assignee == viewer.department)))
    if viewer.role == "doctor":
        return or_(r.attending == viewer.name,
                   r.id.in_(select(t.findings.c.record_key).where(t.findings.c.assignee_type == "doctor",
                                                                  t.findings.c.assignee == viewer.name)))
    return false()


@dataclass(frozen=True)
class Filters:
    """A view of the findings queue: every field optional; text fields match exactly."""
    department: str | None = None
    doctor: str | None = None  # the record's responsible doctor, or the doctor a finding is assigned to
    rule: str | None = None
    category: str | None = None
    severity: str | None = None
    state: str | None = None  # a state, or "active" (open, confirmed, assigned, fixed)
    level: str | None = None
    record: str | None = None
    date_from: date | None = None
    date_to: date | None = None
    present: bool | None = None

    FIELDS = ("department", "doctor", "rule", "category", "severity", "state", "level", "record", "date_from",
              "date_to")

    @classmethod
    def parse(cls, args) -> "Filters":
        """From query arguments (a mapping of strings); StoreError names a bad value."""
        values = {}
        for name in cls.FIELDS:
            raw = (args.get(name) or "").strip()
            if not raw:
                continue
            if len(raw) > 200:
                raise StoreError(f"filter {name} is longer than 200 characters")
            if name in ("date_from", "date_to"):
                try:
                    values[name] = date.fromisoformat(raw)
                except ValueError:
                    raise StoreError(f"{name} must be a date (YYYY-MM-DD), not {raw!r}") from None
            else:
                values[name] = raw
        if values.get("severity") and values["severity"] not in SEVERITIES:
            raise StoreError(f"severity must be one of {', '.join(SEVERITIES)}")
        if values.get("state") and values["state"] not in (*workflow.STATES, "active"):
            raise StoreError(f"state must be one of {', '.join(workflow.STATES)} or active")
        return cls(**values)

    def query_args(self) -> dict[str, str]:
        return {k: str(getattr(self, k)) for k in self.FIELDS if getattr(self, k) not in (None, "")}

    def conditions(self, *skip: str) -> list:
        f = t.findings.c
        found = []
        if self.department and "department" not in skip:
            found.append(f.department == self.department)
        if self.doctor and "doctor" not in skip:
            found.append(or_(f.attending == self.doctor, and_(f.assignee_type == "doctor", f.assignee == self.doctor)))
        if self.rule and "rule" not in skip:
            found.append(f.rule_id == self.rule)
        if self.category and "category" not in skip:
            found.append(f.category == self.category)
        if self.severity and "severity" not in skip:
            found.append(f.severity == self.severity)
        if self.state and "state" not in skip:
            found.append(f.state.in_(workflow.ACTIVE) if self.state == "active" else f.state == self.state)
        if self.level and "level" not in skip:
            found.append(f.level == self.level)
        if self.record and "record" not in skip:
            found.append(f.record_id == self.record)
        if self.date_from:
            found.append(f.found_at >= datetime.combine(self.date_from, datetime.min.time(), timezone.utc))
        if self.date_to:
            found.append(f.found_at < datetime.combine(self.date_to + timedelta(days=1), datetime.min.time(),
                                                       timezone.utc))
        if self.present is not None:
            found.append(f.present == self.present)
        return found


@dataclass
class Page:
    rows: list[dict]
    total: int
    page: int
    per_page: int
    by_state: dict[str, int]
    by_severity: dict[str, int]

    @property
    def pages(self) -> int:
        return max(1, -(-self.total // self.per_page))


@dataclass
class IngestResult:
    record_key: int
    record_id: str
    version: int
    new_version: bool
    score: float
    grade: str
    opened: list[int] = field(default_factory=list)
    closed: list[int] = field(default_factory=list)
    reopened: list[int] = field(default_factory=list)
    still_present: list[int] = field(default_factory=list)

    def to_json(self) -> dict:
        return {"record_id": self.record_id, "version": self.version, "new_version": self.new_version,
                "score": self.score, "grade": self.grade, "opened": len(self.opened), "closed": len(self.closed),
                "reopened": len(self.reopened), "still_present": len(self.still_present)}


FINDING_COLUMNS = [c for c in t.findings.c if c.name not in ("knowledge", "fingerprint", "record_key", "found_month")]


class OfficeStore:
    def __init__(self, engine: Engine, scoring: Table | None = None, clock: Callable[[], datetime] = utcnow):
        self.engine = engine
        self.scoring = scoring or table()
        self.clock = clock
        self._ingest_lock = threading.Lock()

    def now(self) -> datetime:
        return _utc(self.clock())

    # -- ingest ------------------------------------------------------------------------------------
    def ingest(self, data: dict, findings: list[dict], *, level: str, source: str, snapshot: str | None = None,
               indicators: list[dict] = (), vte: dict | None = None, deadlines: list = ()) -> IngestResult:
        """File one checked version of a record (``data``: its project JSON) with its findings."""
        with self._ingest_lock:
            try:
                return self._ingest(data, findings, level, source, snapshot, list(indicators), vte, list(deadlines))
            except IntegrityError:  # another process filed the same record at the same moment: once more
                return self._ingest(data, findings, level, source, snapshot, list(indicators), vte, list(deadlines))

    def _ingest(self, data, findings, level, source, snapshot, indicators, vte, deadlines) -> IngestResult:
        now = self.now()
        encounter = data.get("encounter") or {}
        sha = record_sha256(data)
        facts = {"department": encounter.get("department"), "attending": encounter.get("attending"),
                 "encounter_type": encounter.get("type", "outpatient"), "level": level,
                 "admitted_at": _utc(_parse_time(encounter.get("admitted_at"))),
                 "discharged_at": _utc(_parse_time(encounter.get("discharged_at")))}
        with self.engine.begin() as db:
            row = db.execute(select(t.records).where(t.records.c.record_id == data["id"])).mappings().first()
            if row is None:
                key = db.execute(insert(t.records).values(record_id=data["id"], version=1, score=100.0, grade="",
                                                          first_checked_at=now, checked_at=now, **facts)
                                 ).inserted_primary_key[0]
                version, new_version = 1, True
            else:
                key = row["id"]
                latest = db.execute(select(t.versions.c.sha256).where(t.versions.c.record_key == key,
                                                                       t.versions.c.version == row["version"])
                                    ).scalar()
                new_version = latest != sha
                version = row["version"] + 1 if new_version else row["version"]
            result = IngestResult(key, data["id"], version, new_version, 0.0, "")
            self._reconcile(db, key, data["id"], findings, version, new_version, facts, now, result)
            score = self._rescore(db, key)
            result.score, result.grade = score.score, score.grade
            db.execute(update(t.records).where(t.records.c.id == key).values(
                version=version, score=score.score, grade=score.grade, checked_at=now, **facts))
            values = dict(source=source[:100], knowledge_snapshot=snapshot, level=level, score=score.score,
                          grade=score.grade, findings=len(findings), checked_at=now, checked_month=_month(now))
            if new_version:
                db.execute(insert(t.versions).values(record_key=key, version=version, sha256=sha,
                                                     data=json.dumps(data, ensure_ascii=False), **values))
            else:
                db.execute(update(t.versions).where(t.versions.c.record_key == key, t.versions.c.version == version)
                           .values(**values))
            self._replace_details(db, key, version, facts["department"], indicators, vte, deadlines)
        return result

    def _reconcile(self, db: Connection, key: int, record_id: str, findings: list[dict], version: int,
                   new_version: bool, facts: dict, now: datetime, result: IngestResult) -> None:
        f = t.findings.c
        existing = {r["fingerprint"]: r for r in db.execute(
            select(f.id, f.fingerprint, f.state, f.present).where(f.record_key == key)).mappings()}
        seen: Counter = Counter()
        current: dict[str, dict] = {}
        for finding in findings:
            base = fingerprint(finding, 0)
            current[fingerprint(finding, seen[base])] = finding
            seen[base] += 1
        denormalised = {k: facts[k] for k in ("department", "attending", "level")}
        for print_, finding in current.items():
            content = dict(rule_id=finding["rule_id"], category=finding["category"], severity=finding["severity"],
                           origin=finding.get("origin", "rule"), message=finding["message"],
                           evidence=json.dumps(finding["evidence"], ensure_ascii=False) if finding.get("evidence") else None,
                           knowledge=json.dumps(finding.get("knowledge", []), ensure_ascii=False))
            row = existing.get(print_)
            if row is None:
                finding_id = db.execute(insert(t.findings).values(
                    record_key=key, record_id=record_id, fingerprint=print_, state="open", present=True,
                    first_version=version, last_version=version, found_at=now, found_month=_month(now),
                    updated_at=now, updated_by=workflow.SYSTEM, reopened=0, **denormalised, **content)
                ).inserted_primary_key[0]
                self._event(db, finding_id, SYSTEM, "found", None, "open", version, now)
                result.opened.append(finding_id)
                continue
            changes = dict(present=True, last_version=version, **content)
            state = row["state"]
            if state in ("rechecked", "closed"):
                changes.update(state="open", reopened=t.findings.c.reopened + 1)
                self._event(db, row["id"], SYSTEM, "reappear", state, "open", version, now,
                            reason=f"found again in version {version}")
                result.reopened.append(row["id"])
            elif state == "fixed" and new_version:
                changes.update(state="assigned")
                self._event(db, row["id"], SYSTEM, "still_present", state, "assigned", version, now,
                            reason=f"still present in version {version}")
                result.still_present.append(row["id"])
            if "state" in changes:
                changes.update(updated_at=now, updated_by=workflow.SYSTEM)
            db.execute(update(t.findings).where(f.id == row["id"]).values(**changes))
        for print_, row in existing.items():
            if print_ in current or not row["present"]:
                continue
            if row["state"] in workflow.ACTIVE:
                self._event(db, row["id"], SYSTEM, "recheck", row["state"], "rechecked", version, now,
                            reason=f"not found in version {version}")
                self._event(db, row["id"], SYSTEM, "autoclose", "rechecked", "closed", version, now)
                db.execute(update(t.findings).where(f.id == row["id"]).values(
                    state="closed", present=False, updated_at=now, updated_by=workflow.SYSTEM))
                result.closed.append(row["id"])
            else:  # dismissed: the decision stands, the finding is just no longer there
                db.execute(update(t.findings).where(f.id == row["id"]).values(present=False))
        db.execute(update(t.findings).where(f.record_key == key).values(**denormalised))

    @staticmethod
    def _event(db: Connection, finding_id: int, viewer: Viewer, action: str, source: str | None, target: str,
               version: int, now: datetime, reason: str | None = None, assignee_type: str | None = None,
               assignee: str | None = None) -> int:
        return db.execute(insert(t.events).values(
            finding_id=finding_id, at=now, actor=viewer.name, role=viewer.role, action=action, from_state=source,
            to_state=target, reason=reason, assignee_type=assignee_type, assignee=assignee, version=version)
        ).inserted_primary_key[0]

    def _rescore(self, db: Connection, key: int):
        f = t.findings.c
        rows = db.execute(select(f.rule_id, f.category, f.severity).where(
            f.record_key == key, f.present == true(), f.state != "dismissed")).mappings()
        return self.scoring.score(rows)

    @staticmethod
    def _replace_details(db: Connection, key: int, version: int, department: str | None, indicators: list[dict],
                         vte: dict | None, deadlines: list) -> None:
        db.execute(delete(t.indicators).where(t.indicators.c.record_key == key))
        if indicators:
            db.execute(insert(t.indicators), [
                {"record_key": key, "version": version, "disease": r["disease"], "indicator_id": r["indicator"],
                 "status": r["status"], "department": department,
                 "detail": json.dumps({k: r[k] for k in ("name", "name_zh", "reason", "evidence")}, ensure_ascii=False)}
                for r in indicators])
        db.execute(delete(t.vte).where(t.vte.c.record_key == key))
        if vte is not None:
            db.execute(insert(t.vte).values(
                record_key=key, version=version, model=vte["model"].split(".")[-1], score=vte["score"],
                risk=vte["risk"], factors=json.dumps(vte["factors"], ensure_ascii=False),
                assessed=bool(vte.get("assessed")), prophylaxis=bool(vte.get("prophylaxis"))))
        db.execute(delete(t.deadlines).where(t.deadlines.c.record_key == key))
        if deadlines:
            db.execute(insert(t.deadlines), [
                {"record_key": key, "deadline_id": d.id, "name": f"{d.name} ({d.name_zh})", "due_at": d.due_at,
                 "warn_at": d.warn_at, "done": d.done, "basis": d.basis} for d in deadlines])

    # -- the workflow -----------------------------------------------------------------------------
    def act(self, finding_id: int, action: str, viewer: Viewer, reason: str | None = None,
            assignee_type: str | None = None, assignee: str | None = None) -> dict:
        """Apply a user's move; returns the finding as it is afterwards. WorkflowError when not allowed,
        NotFound when the viewer cannot see the finding."""
        try:
            return self._act(finding_id, action, viewer, reason, assignee_type, assignee)
        except OperationalError as exc:  # SQLite: another writer committed since this one read
            if "locked" in str(exc) or "busy" in str(exc).lower():
                raise workflow.WorkflowError(f"finding {finding_id} was being changed by someone else; "
                                             "reload it and try again") from None
            raise

    def _act(self, finding_id, action, viewer, reason, assignee_type, assignee) -> dict:
        now = self.now()
        reason = reason.strip() if isinstance(reason, str) and reason.strip() else None
        assignee = assignee.strip() if isinstance(assignee, str) else assignee
        f = t.findings.c
        with self.engine.begin() as db:
            row = db.execute(select(t.findings).where(f.id == finding_id, finding_scope(viewer))).mappings().first()
            if row is None:
                raise NotFound(f"no finding {finding_id}")
            if viewer.role == "doctor" and action not in ("fix",):
                raise workflow.WorkflowError(f"a doctor may only mark findings fixed, not {action}")
            move = workflow.check_move(action, row["state"], viewer.role, reason, assignee_type, assignee)
            version = row["last_version"]
            if action == "assign" and row["state"] == "open":  # assigning confirms: the finding is real
                self._event(db, finding_id, viewer, "confirm", "open", "confirmed", version, now)
            self._event(db, finding_id, viewer, action, row["state"], move.target, version, now, reason,
                        assignee_type if move.needs_assignee else None, assignee if move.needs_assignee else None)
            changes = dict(state=move.target, updated_at=now, updated_by=viewer.name)
            if move.needs_assignee:
                changes.update(assignee_type=assignee_type, assignee=assignee)
            if action in ("dismiss", "reopen"):
                changes["reason"] = reason
            elif action == "confirm":
                changes["reason"] = None
            moved = db.execute(update(t.findings).where(f.id == finding_id, f.state == row["state"]).values(**changes))
            if moved.rowcount != 1:  # someone else moved it since it was read: theirs stands, nothing of ours is kept
                raise workflow.WorkflowError(f"finding {finding_id} was changed by someone else meanwhile; reload it")
            if action in ("dismiss", "confirm", "reopen"):  # a dismissed finding does not count against the record
                score = self._rescore(db, row["record_key"])
                latest = db.execute(update(t.records).where(t.records.c.id == row["record_key"]).values(
                    score=score.score, grade=score.grade).returning(t.records.c.version)).scalar()
                db.execute(update(t.versions).where(t.versions.c.record_key == row["record_key"],
                                                    t.versions.c.version == latest)
                           .values(score=score.score, grade=score.grade))
        return self.finding(finding_id, viewer)

    # -- reading ------------------------------------------------------------------------------------
    def finding(self, finding_id: int, viewer: Viewer) -> dict:
        with self.engine.connect() as db:
            row = db.execute(select(t.findings).where(t.findings.c.id == finding_id, finding_scope(viewer))
                             ).mappings().first()
        if row is None:
            raise NotFound(f"no finding {finding_id}")
        return _finding_json(row)

    def history(self, finding_ids: list[int]) -> dict[int, list[dict]]:
        if not finding_ids:
            return {}
        e = t.events.c
        with self.engine.connect() as db:
            rows = db.execute(select(t.events).where(e.finding_id.in_(finding_ids)).order_by(e.id)).mappings().all()
        found: dict[int, list[dict]] = {}
        for row in rows:
            found.setdefault(row["finding_id"], []).append({**dict(row), "at": _aware(row["at"])})
        return found

    def page(self, viewer: Viewer, filters: Filters, page: int = 1, per_page: int = 50,
             order: str = "newest") -> Page:
        if per_page not in PAGE_SIZES:
            raise StoreError(f"per_page must be one of {', '.join(map(str, PAGE_SIZES))}")
        if order not in ORDERS:
            raise StoreError(f"order must be one of {', '.join(ORDERS)}")
        page = max(1, int(page))
        f = t.findings.c
        scope = finding_scope(viewer)
        where = and_(scope, *filters.conditions())
        ordering = {"newest": [f.found_at.desc(), f.id.desc()], "oldest": [f.found_at, f.id],
                    "severity": [case({s: i for i, s in enumerate(SEVERITIES)}, value=f.severity), f.found_at.desc(),
                                 f.id.desc()]}[order]
        with self.engine.connect() as db:
            # one pass over the filter index counts every (state, severity) under the other filters: the
            # total and both facets come from it
            cells = db.execute(select(f.state, f.severity, func.count()).where(
                and_(scope, *filters.conditions("state", "severity"))).group_by(f.state, f.severity)).all()
            # the page's ids first (sorted from the filter index, light), then their rows
            ids = [i for (i,) in db.execute(select(f.id).where(where).order_by(*ordering)
                                            .limit(per_page).offset((page - 1) * per_page)).all()]
            found = {r["id"]: r for r in db.execute(select(*FINDING_COLUMNS).where(f.id.in_(ids))).mappings()}
        rows = [found[i] for i in ids if i in found]
        states = set(workflow.ACTIVE) if filters.state == "active" else {filters.state} if filters.state else None
        by_state: Counter = Counter()
        by_severity: Counter = Counter()
        total = 0
        for state, severity, count in cells:
            if filters.severity in (None, severity):
                by_state[state] += count
            if states is None or state in states:
                by_severity[severity] += count
                if filters.severity in (None, severity):
                    total += count
        return Page([_finding_json(r) for r in rows], total, page, per_page,
                    {s: by_state.get(s, 0) for s in workflow.STATES}, {s: by_severity.get(s, 0) for s in SEVERITIES})

    def export_rows(self, viewer: Viewer, filters: Filters, limit: int = 1_000_000) -> Iterator[dict]:
        """Every finding of the view, oldest first (for CSV/XLSX), streamed in chunks."""
        f = t.findings.c
        where = and_(finding_scope(viewer), *filters.conditions())
        last_id, sent = 0, 0
        while sent < limit:
            with self.engine.connect() as db:
                rows = db.execute(select(*FINDING_COLUMNS).where(where, f.id > last_id).order_by(f.id)
                                  .limit(min(2000, limit - sent))).mappings().all()
            if not rows:
                return
            for row in rows:
                yield _finding_json(row)
            last_id, sent = rows[-1]["id"], sent + len(rows)

    def choices(self, viewer: Viewer) -> dict[str, list[str]]:
        """The values the queue's filters offer (within the viewer's scope)."""
        f = t.findings.c
        scope = finding_scope(viewer)
        with self.engine.connect() as db:
            def distinct(column):
                return [v for (v,) in db.execute(select(column).where(scope, column.is_not(None)).distinct()
                                                 .order_by(column)).all()]
            return {"department": distinct(f.department), "doctor": distinct(f.attending), "rule": distinct(f.rule_id),
                    "category": distinct(f.category)}

    def record(self, record_id: str, viewer: Viewer) -> dict:
        """One record as the viewer may see it: latest version, its findings with history, indicators, VTE,
        deadlines, and every version's score."""
        r = t.records.c
        with self.engine.connect() as db:
            row = db.execute(select(t.records).where(r.record_id == record_id, record_scope(viewer))).mappings().first()
            if row is None:
                raise NotFound(f"no record {record_id!r}")
            key = row["id"]
            versions = db.execute(select(t.versions.c.version, t.versions.c.score, t.versions.c.grade,
                                         t.versions.c.checked_at, t.versions.c.source, t.versions.c.findings,
                                         t.versions.c.level)
                                  .where(t.versions.c.record_key == key).order_by(t.versions.c.version)).mappings().all()
            data = db.execute(select(t.versions.c.data).where(t.versions.c.record_key == key,
                                                               t.versions.c.version == row["version"])).scalar()
            findings = db.execute(select(t.findings).where(t.findings.c.record_key == key, finding_scope(viewer))
                                  .order_by(t.findings.c.present.desc(), case({s: i for i, s in enumerate(SEVERITIES)},
                                                                              value=t.findings.c.severity),
                                            t.findings.c.id)).mappings().all()
            indicators = db.execute(select(t.indicators).where(t.indicators.c.record_key == key)
                                    .order_by(t.indicators.c.indicator_id)).mappings().all()
            vte = db.execute(select(t.vte).where(t.vte.c.record_key == key)).mappings().first()
            deadlines = db.execute(select(t.deadlines).where(t.deadlines.c.record_key == key)
                                   .order_by(t.deadlines.c.due_at)).mappings().all()
        items = [_finding_json(f) for f in findings]
        history = self.history([f["id"] for f in items])
        for item in items:
            item["history"] = history.get(item["id"], [])
        return {"record": _record_json(row), "data": json.loads(data), "findings": items,
                "versions": [{**dict(v), "checked_at": _aware(v["checked_at"])} for v in versions],
                "indicators": [{**dict(i), **json.loads(i["detail"])} for i in indicators],
                "vte": ({**dict(vte), "factors": json.loads(vte["factors"])} if vte else None),
                "deadlines": [{**dict(d), "due_at": _aware(d["due_at"]), "warn_at": _aware(d["warn_at"])}
                              for d in deadlines]}

    def records(self, viewer: Viewer, level: str | None = None, limit: int = 500) -> list[dict]:
        r = t.records.c
        query = select(t.records).where(record_scope(viewer))
        if level:
            query = query.where(r.level == level)
        with self.engine.connect() as db:
            return [_record_json(row) for row in db.execute(query.order_by(r.checked_at.desc()).limit(limit)).mappings()]

    def reminders(self, viewer: Viewer, now: datetime) -> list[dict]:
        """Deadlines of in-stay records that are due soon or overdue at ``now``, soonest first."""
        d, r = t.deadlines.c, t.records.c
        now = _utc(now)
        with self.engine.connect() as db:
            rows = db.execute(select(d.deadline_id, d.name, d.due_at, d.warn_at, d.basis, r.record_id, r.department,
                                     r.attending)
                              .join(t.records, r.id == d.record_key)
                              .where(d.done == false(), d.warn_at <= now, r.level == "in_stay", record_scope(viewer))
                              .order_by(d.due_at)).mappings().all()
        found = []
        for row in rows:
            due = _aware(row["due_at"])
            hours = (due - now).total_seconds() / 3600
            found.append({**dict(row), "due_at": due, "hours_left": round(hours, 1),
                          "status": "overdue" if hours <= 0 else "due_soon"})
        return found

    # -- what the office measures ---------------------------------------------------------------------
    def rule_precision(self, viewer: Viewer = SYSTEM, floor: float = 0.7, min_reviews: int = 20) -> list[dict]:
        """Per rule: findings, reviews (each finding's latest confirm or dismiss), precision = confirmed /
        (confirmed + dismissed), the commonest dismissal reasons, and whether it needs retuning (precision
        below ``floor`` over at least ``min_reviews`` reviews)."""
        f, e = t.findings.c, t.events.c
        scope = finding_scope(viewer)
        latest = (select(func.max(e.id).label("id")).where(e.action.in_(("confirm", "dismiss")))
                  .group_by(e.finding_id).subquery())
        with self.engine.connect() as db:
            totals = db.execute(select(f.rule_id, f.category, func.count()).where(scope)
                                .group_by(f.rule_id, f.category)).all()
            decided = db.execute(select(f.rule_id, e.action, func.count())
                                 .select_from(t.events.join(latest, latest.c.id == e.id)
                                              .join(t.findings, f.id == e.finding_id))
                                 .where(scope).group_by(f.rule_id, e.action)).all()
            reasons = db.execute(select(f.rule_id, f.reason, func.count()).where(scope, f.state == "dismissed",
                                                                                  f.reason.is_not(None))
                                 .group_by(f.rule_id, f.reason)).all()
        table_: dict[str, dict] = {}
        for rule_id, category, count in totals:
            table_[rule_id] = {"rule_id": rule_id, "category": category, "findings": count, "confirmed": 0,
                               "dismissed": 0, "reasons": []}
        for rule_id, action, count in decided:
            table_[rule_id]["confirmed" if action == "confirm" else "dismissed"] += count
        for rule_id, reason, count in sorted(reasons, key=lambda x: -x[2]):
            table_[rule_id]["reasons"].append({"reason": reason, "count": count})
        for entry in table_.values():
            reviews = entry["confirmed"] + entry["dismissed"]
            entry["reviews"] = reviews
            entry["precision"] = round(entry["confirmed"] / reviews, 3) if reviews else None
            entry["retune"] = bool(reviews >= min_reviews and entry["precision"] < floor)
            entry["reasons"] = entry["reasons"][:5]
        return sorted(table_.values(), key=lambda e: (not e["retune"], -(e["reviews"]), e["rule_id"]))

    def reviews(self, limit: int = 100_000) -> list[dict]:
        """Each reviewed finding with its latest decision (for the evaluation-set export)."""
        f, e = t.findings.c, t.events.c
        latest = (select(func.max(e.id).label("id")).where(e.action.in_(("confirm", "dismiss")))
                  .group_by(e.finding_id).subquery())
        with self.engine.connect() as db:
            rows = db.execute(select(f.id, f.record_key, f.record_id, f.rule_id, f.category, f.severity, f.origin,
                                     f.message, f.evidence, f.knowledge, f.last_version, e.action, e.reason, e.at)
                              .select_from(t.events.join(latest, latest.c.id == e.id)
                                           .join(t.findings, f.id == e.finding_id))
                              .order_by(f.id).limit(limit)).mappings().all()
        return [dict(r) for r in rows]

    def version_data(self, record_key: int, version: int) -> dict | None:
        with self.engine.connect() as db:
            data = db.execute(select(t.versions.c.data).where(t.versions.c.record_key == record_key,
                                                               t.versions.c.version == version)).scalar()
        return json.loads(data) if data else None

    def dashboard(self, viewer: Viewer, months: int = 12) -> dict:
        """Findings per 100 records (by department and by rule, per month), the score distribution and
        grades, mean scores per department and doctor, single-disease compliance and VTE risk."""
        f, r, v, i = t.findings.c, t.records.c, t.versions.c, t.indicators.c
        fscope, rscope = finding_scope(viewer), record_scope(viewer)
        counted = and_(fscope, f.state != "dismissed")
        with self.engine.connect() as db:
            checked = db.execute(select(v.checked_month, r.department, func.count(func.distinct(v.record_key)))
                                 .join(t.records, r.id == v.record_key).where(rscope)
                                 .group_by(v.checked_month, r.department)).all()
            by_department = db.execute(select(f.found_month, f.department, func.count()).where(counted)
                                       .group_by(f.found_month, f.department)).all()
            by_rule = db.execute(select(f.found_month, f.rule_id, func.count()).where(counted)
                                 .group_by(f.found_month, f.rule_id)).all()
            scores = [s for (s,) in db.execute(select(r.score).where(rscope)).all()]
            grades = dict(db.execute(select(r.grade, func.count()).where(rscope).group_by(r.grade)).all())
            per_department = db.execute(select(r.department, func.avg(r.score), func.count()).where(rscope)
                                        .group_by(r.department)).all()
            per_doctor = db.execute(select(r.attending, r.department, func.avg(r.score), func.count()).where(rscope)
                                    .group_by(r.attending, r.department)).all()
            indicator_rows = db.execute(select(i.indicator_id, i.disease, i.status, func.count())
                                        .join(t.records, r.id == i.record_key).where(rscope)
                                        .group_by(i.indicator_id, i.disease, i.status)).all()
            vte_rows = db.execute(select(t.vte.c.model, t.vte.c.risk, t.vte.c.prophylaxis, func.count())
                                  .join(t.records, r.id == t.vte.c.record_key).where(rscope)
                                  .group_by(t.vte.c.model, t.vte.c.risk, t.vte.c.prophylaxis)).all()
        month_list = sorted({m for m, _, _ in checked} | {m for m, _, _ in by_department})[-months:]
        records_month: Counter = Counter()
        records_dept: Counter = Counter()
        for month, department, count in checked:
            records_month[month] += count
            records_dept[(month, department or "-")] += count

        def rate(found: int, records: int) -> float | None:
            return round(100.0 * found / records, 1) if records else None

        departments: dict[str, dict] = {}
        for month, department, count in by_department:
            if month in month_list:
                departments.setdefault(department or "-", {})[month] = rate(count, records_dept[(month, department or "-")])
        rule_totals: Counter = Counter()
        rules: dict[str, dict] = {}
        for month, rule_id, count in by_rule:
            if month in month_list:
                rules.setdefault(rule_id, {})[month] = rate(count, records_month[month])
                rule_totals[rule_id] += count
        compliance: dict[str, dict] = {}
        for indicator_id, disease, status, count in indicator_rows:
            entry = compliance.setdefault(indicator_id, {"disease": disease, "met": 0, "not_met": 0,
                                                         "contraindicated": 0, "not_applicable": 0})
            entry[status] += count
        for entry in compliance.values():
            eligible = entry["met"] + entry["not_met"]
            entry["rate"] = round(entry["met"] / eligible, 3) if eligible else None
        return {
            "months": month_list,
            "records_per_month": {m: records_month[m] for m in month_list},
            "per_100_by_department": departments,
            "per_100_by_rule": {k: rules[k] for k, _ in rule_totals.most_common(8)},
            "scores": scores,
            "grades": {g.grade: grades.get(g.grade, 0) for g in self.scoring.grades},
            "per_department": [{"department": d or "-", "mean": round(float(m), 1), "records": n}
                               for d, m, n in sorted(per_department, key=lambda x: x[0] or "")],
            "per_doctor": [{"doctor": d or "-", "department": dep or "-", "mean": round(float(m), 1), "records": n}
                           for d, dep, m, n in sorted(per_doctor, key=lambda x: (x[1] or "", x[0] or ""))],
            "compliance": dict(sorted(compliance.items())),
            "vte": [{"model": m, "risk": k, "prophylaxis": bool(p), "records": n} for m, k, p, n in vte_rows],
        }

    def optimize(self) -> None:
        """Refresh the planner's statistics after a batch changed many rows (a fraction of a second for
        100,000 findings), so the queue's counts keep using the filter index."""
        with self.engine.begin() as db:
            for table in ("qc_findings", "qc_records", "qc_finding_events"):
                db.exec_driver_sql(f"ANALYZE {table}")

    # -- batch jobs -------------------------------------------------------------------------------------
    def job_ingested(self, job_id: str) -> bool:
        with self.engine.connect() as db:
            return db.execute(select(t.jobs.c.job_id).where(t.jobs.c.job_id == job_id)).first() is not None

    def mark_job(self, job_id: str, records: int, errors: int) -> bool:
        """Record that a job's results are in; False when another ingester got there first."""
        try:
            with self.engine.begin() as db:
                db.execute(insert(t.jobs).values(job_id=job_id, at=self.now(), records=records, errors=errors))
            return True
        except IntegrityError:
            return False


def _parse_time(value) -> datetime | None:
    if not value:
        return None
    return datetime.fromisoformat(str(value).replace("Z", "+00:00"))


def _finding_json(row) -> dict:
    data = dict(row)
    for key in ("found_at", "updated_at"):
        data[key] = _aware(data.get(key))
    for key in ("evidence", "knowledge"):
        if key in data:
            data[key] = json.loads(data[key]) if data[key] else None
    data.pop("fingerprint", None)
    data.pop("found_month", None)
    return data


def _record_json(row) -> dict:
    data = dict(row)
    for key in ("admitted_at", "discharged_at", "first_checked_at", "checked_at"):
        data[key] = _aware(data.get(key))
    return data
