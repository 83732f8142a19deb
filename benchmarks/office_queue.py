"""The QC office's findings queue at scale: filter and page over 100,000 findings.

    python benchmarks/office_queue.py                         # scratch SQLite, 100,000 findings
    python benchmarks/office_queue.py --url postgresql+psycopg://.../db --findings 100000
    python benchmarks/office_queue.py --out benchmarks/results/office_queue.json

Fills a scratch instance database (migrated like a real one) with findings spread over 20,000 records,
12 departments, 96 doctors, 40 rules, every state and 12 months, then times the views a QC office uses
(no filter, a department, a doctor, a rule, severity + state, a date range, one record, deep pages,
orders) as three viewers (QC staff, a department QC doctor, a doctor). One "view" is what the queue page
runs: the page of rows, the total and the counts by state and by severity. It also times the same views
through the HTTP API (GET /api/qc/office/findings: sign-in, query, JSON and the audit entry).
Reports p50/p95/max in ms per viewer and overall; exit status 1 if the overall p95 is 300 ms or more.
"""

from __future__ import annotations

import argparse
import json
import random
import statistics
import sys
import tempfile
import time
from datetime import datetime, timedelta, timezone
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
TARGET_MS = 300
SEVERITIES = ("critical", "major", "minor")
STATES = (("open", 45), ("confirmed", 10), ("dismissed", 12), ("assigned", 13), ("fixed", 5), ("closed", 15))


def fill(engine, findings: int, records: int, seed: int = 7) -> dict:
    """Bulk-insert records, versions and findings (SQLAlchemy Core, the store's own tables)."""
    from sqlalchemy import insert

    from copilot.qc.office import tables as t

    rng = random.Random(seed)
    departments = [f"dept-{n:02d}" for n in range(12)]
    doctors = [f"dr.{n:03d}" for n in range(96)]
    rules = [(f"{c}.rule_{n:02d}", c) for n, c in enumerate(
        ["completeness", "timeliness", "consistency", "medication_safety", "documentation", "coding",
         "single_disease", "vte"] * 5)]
    start = datetime(2026, 1, 1, tzinfo=timezone.utc)
    state_pool = [s for s, weight in STATES for _ in range(weight)]
    record_rows, version_rows, owner = [], [], []
    for n in range(records):
        department = departments[n % len(departments)]
        doctor = doctors[(n * 7) % len(doctors)]
        when = start + timedelta(minutes=rng.randrange(0, 340 * 24 * 60))
        level = rng.choice(("in_stay", "terminal", "terminal", "outpatient"))
        record_rows.append({"id": n + 1, "record_id": f"rec-{n:06d}", "department": department, "attending": doctor,
                            "encounter_type": "inpatient", "level": level, "version": 1,
                            "score": round(rng.uniform(55, 100), 1), "grade": "乙", "first_checked_at": when,
                            "checked_at": when})
        version_rows.append({"record_key": n + 1, "version": 1, "sha256": f"{n:064x}", "data": "{}", "source": "bench",
                             "level": level, "score": 90.0, "grade": "甲", "findings": 5, "checked_at": when,
                             "checked_month": when.strftime("%Y-%m")})
        owner.append((department, doctor, level, when))
    finding_rows = []
    for n in range(findings):
        key = rng.randrange(records)
        department, doctor, level, when = owner[key]
        rule_id, category = rng.choice(rules)
        state = rng.choice(state_pool)
        found = when + timedelta(seconds=n % 600)
        assignee = (rng.choice(("doctor", "department")), None) if state in ("assigned", "fixed") else (None, None)
        finding_rows.append({
            "record_key": key + 1, "record_id": f"rec-{key:06d}", "department": department, "attending": doctor,
            "level": level, "fingerprint": f"{n:032x}", "rule_id": rule_id, "category": category,
            "severity": rng.choice(SEVERITIES), "origin": "rule", "message": f"Finding {n} of {rule_id}.",
            "evidence": json.dumps({"document_id": "d1", "start": 0, "end": 2, "text": "qd"}), "knowledge": "[]",
            "state": state, "present": state not in ("closed",), "first_version": 1, "last_version": 1,
            "found_at": found, "found_month": found.strftime("%Y-%m"), "updated_at": found, "updated_by": "bench",
            "assignee_type": assignee[0], "assignee": (doctor if assignee[0] == "doctor" else department)
            if assignee[0] else None, "reason": "bench" if state == "dismissed" else None, "reopened": 0})
    with engine.begin() as db:
        db.execute(insert(t.records), record_rows)
        db.execute(insert(t.versions), version_rows)
        for chunk in range(0, len(finding_rows), 5000):
            db.execute(insert(t.findings), finding_rows[chunk:chunk + 5000])
    if engine.dialect.name == "sqlite":
        with engine.begin() as db:
            db.exec_driver_sql("ANALYZE")
    elif engine.dialect.name == "postgresql":
        with engine.connect().execution_options(isolation_level="AUTOCOMMIT") as db:
            db.exec_driver_sql("ANALYZE")
    return {"departments": departments, "doctors": doctors, "rules": [r for r, _ in rules]}


def views(world: dict, total_pages: int) -> list[tuple[str, dict, dict]]:
    """(name, filters, paging) of the views timed."""
    from datetime import date

    d, doc, rule = world["departments"][3], world["doctors"][10], world["rules"][5]
    return [
        ("all, page 1", {}, {}),
        ("all, page 10", {}, {"page": 10}),
        ("all, last page", {}, {"page": total_pages}),
        ("all, by severity", {}, {"order": "severity"}),
        ("all, oldest, 200 a page", {}, {"order": "oldest", "per_page": 200}),
        ("department", {"department": d}, {}),
        ("department + open", {"department": d, "state": "open"}, {}),
        ("active (open to fixed)", {"state": "active"}, {"page": 3}),
        ("doctor", {"doctor": doc}, {}),
        ("rule", {"rule": rule}, {}),
        ("severity + state", {"severity": "critical", "state": "confirmed"}, {}),
        ("one month", {"date_from": date(2026, 6, 1), "date_to": date(2026, 6, 30)}, {}),
        ("department + month + rule", {"department": d, "rule": rule, "date_from": date(2026, 3, 1),
                                       "date_to": date(2026, 8, 31)}, {}),
        ("one record", {"record": "rec-012345"}, {}),
        ("level in-stay", {"level": "in_stay"}, {"page": 5}),
    ]


def percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(round(q * (len(ordered) - 1))))]


def summary(samples: list[float]) -> dict:
    return {"n": len(samples), "p50_ms": round(statistics.median(samples), 1),
            "p95_ms": round(percentile(samples, 0.95), 1), "max_ms": round(max(samples), 1)}


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--url", help="database URL (default: a scratch SQLite file)")
    parser.add_argument("--findings", type=int, default=100_000)
    parser.add_argument("--records", type=int, default=20_000)
    parser.add_argument("--repeat", type=int, default=10, help="timings per view and viewer")
    parser.add_argument("--no-http", action="store_true", help="skip the HTTP API timings")
    parser.add_argument("--out", type=Path, help="write the results as JSON")
    args = parser.parse_args(argv)
    sys.path.insert(0, str(REPO))
    from copilot.db import open_database, safe_url
    from copilot.qc.office.store import Filters, OfficeStore, Viewer

    scratch = Path(tempfile.mkdtemp(prefix="office-bench-"))
    url = args.url or f"sqlite:///{scratch / 'copilot.db'}"
    engine = open_database(url)
    started = time.perf_counter()
    world = fill(engine, args.findings, args.records)
    fill_s = round(time.perf_counter() - started, 1)
    store = OfficeStore(engine)
    viewers = {"qc_staff": Viewer("qc", "qc_staff"), "dept_qc": Viewer("dq", "dept_qc", world["departments"][3]),
               "doctor": Viewer(world["doctors"][10], "doctor")}
    total_pages = store.page(viewers["qc_staff"], Filters()).pages
    results: dict = {"database": safe_url(url), "findings": args.findings, "records": args.records, "fill_s": fill_s,
                     "views": {}, "viewers": {}}
    everything: list[float] = []
    for viewer_name, viewer in viewers.items():
        mine: list[float] = []
        for name, filters, paging in views(world, total_pages):
            samples = []
            for _ in range(args.repeat):
                began = time.perf_counter()
                page = store.page(viewer, Filters(**filters), **paging)
                samples.append((time.perf_counter() - began) * 1000)
            results["views"][f"{viewer_name}: {name}"] = {**summary(samples), "total": page.total}
            mine += samples
        results["viewers"][viewer_name] = summary(mine)
        everything += mine
    results["overall"] = summary(everything)
    if not args.no_http:
        results["http"] = http_timings(url, world, total_pages, args.repeat, scratch)
    text = json.dumps(results, indent=1, ensure_ascii=False)
    if args.out:
        args.out.parent.mkdir(parents=True, exist_ok=True)
        args.out.write_text(text + "\n", encoding="utf-8")
    print(text)
    worst = max(results["overall"]["p95_ms"], results.get("http", {}).get("p95_ms", 0))
    print(f"\nfilter + page over {args.findings:,} findings: p95 {results['overall']['p95_ms']} ms in the store"
          + (f", {results['http']['p95_ms']} ms over HTTP" if "http" in results else "")
          + f" (target < {TARGET_MS} ms)", file=sys.stderr)
    return 0 if worst < TARGET_MS else 1


def http_timings(url: str, world: dict, total_pages: int, repeat: int, home: Path) -> dict:
    """The same views as GET /api/qc/office/findings (bearer token, JSON, one audit entry each)."""
    from copilot.web import create_app

    app = create_app({"TESTING": True, "home": home, "database_url": url,
                      "knowledge_home": REPO / ".cache" / "test-home"}, engine=_NoEngine(home))
    token = app.extensions["copilot.users"].add("bench.qc", "qc_staff")
    client = app.test_client()
    samples = []
    try:
        for name, filters, paging in views(world, total_pages):
            query = {**{k: str(v) for k, v in filters.items()}, **{k: str(v) for k, v in paging.items()}}
            for _ in range(repeat):
                began = time.perf_counter()
                response = client.get("/api/qc/office/findings", query_string=query,
                                      headers={"Authorization": f"Bearer {token}"})
                samples.append((time.perf_counter() - began) * 1000)
                assert response.status_code == 200, response.get_data(as_text=True)[:300]
    finally:
        app.extensions["copilot.qc_jobs"].stop()
    return summary(samples)


class _NoEngine:
    """The queue needs no model; the app is built without loading one (audit entries name "no-model")."""

    def __init__(self, home: Path):
        self.model_dir = str(home / "no-model" / "export")

    def queue_depth(self):
        return 0


if __name__ == "__main__":
    sys.exit(main())
