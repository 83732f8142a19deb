"""The QC office's tables (SQLAlchemy Core): records and their versions, findings as work items and
their history, single-disease indicator results, VTE scores, and the batch jobs already taken in.

The migration ``copilot/db/migrations/versions/0001_qc_office.py`` creates exactly these (a test
compares the migrated database with this metadata). Times are UTC; ``*_month`` columns ('YYYY-MM')
let the dashboard group by month with the same SQL on SQLite and PostgreSQL.
"""

from __future__ import annotations

from sqlalchemy import (Boolean, Column, DateTime, Float, ForeignKey, Index, Integer, MetaData, String, Table, Text,
                        UniqueConstraint)

metadata = MetaData()

records = Table(
    "qc_records", metadata,
    Column("id", Integer, primary_key=True),
    Column("record_id", String(200), nullable=False, unique=True),
    Column("department", String(100)),
    Column("attending", String(100)),
    Column("encounter_type", String(20), nullable=False),
    Column("level", String(20), nullable=False),  # in_stay | terminal | outpatient
    Column("admitted_at", DateTime(timezone=True)),
    Column("discharged_at", DateTime(timezone=True)),
    Column("version", Integer, nullable=False),  # the latest version checked
    Column("score", Float, nullable=False),
    Column("grade", String(8), nullable=False),
    Column("first_checked_at", DateTime(timezone=True), nullable=False),
    Column("checked_at", DateTime(timezone=True), nullable=False),
    Index("ix_qc_records_department", "department"),
    Index("ix_qc_records_attending", "attending"),
)

versions = Table(
    "qc_record_versions", metadata,
    Column("id", Integer, primary_key=True),
    Column("record_key", Integer, ForeignKey("qc_records.id", ondelete="CASCADE"), nullable=False),
    Column("version", Integer, nullable=False),
    Column("sha256", String(64), nullable=False),
    Column("data", Text, nullable=False),  # the project JSON record as checked
    Column("source", String(100), nullable=False),  # job:<id> | api | recheck
    Column("knowledge_snapshot", String(100)),
    Column("level", String(20), nullable=False),
    Column("score", Float, nullable=False),
    Column("grade", String(8), nullable=False),
    Column("findings", Integer, nullable=False),
    Column("checked_at", DateTime(timezone=True), nullable=False),
    Column("checked_month", String(7), nullable=False),
    UniqueConstraint("record_key", "version", name="uq_qc_record_versions_record_version"),
    Index("ix_qc_record_versions_month", "checked_month"),
)

findings = Table(
    "qc_findings", metadata,
    Column("id", Integer, primary_key=True),
    Column("record_key", Integer, ForeignKey("qc_records.id", ondelete="CASCADE"), nullable=False),
    Column("record_id", String(200), nullable=False),
    Column("department", String(100)),
    Column("attending", String(100)),
    Column("level", String(20), nullable=False),
    Column("fingerprint", String(64), nullable=False),
    Column("rule_id", String(100), nullable=False),
    Column("category", String(50), nullable=False),
    Column("severity", String(10), nullable=False),
    Column("origin", String(10), nullable=False),
    Column("message", Text, nullable=False),
    Column("evidence", Text),  # JSON
    Column("knowledge", Text, nullable=False),  # JSON
    Column("state", String(12), nullable=False),
    Column("present", Boolean, nullable=False),  # found in the record's latest version
    Column("first_version", Integer, nullable=False),
    Column("last_version", Integer, nullable=False),  # the latest version it was found on
    Column("found_at", DateTime(timezone=True), nullable=False),
    Column("found_month", String(7), nullable=False),
    Column("updated_at", DateTime(timezone=True), nullable=False),
    Column("updated_by", String(100), nullable=False),
    Column("assignee_type", String(12)),  # doctor | department
    Column("assignee", String(100)),
    Column("reason", Text),  # why it was dismissed (or reopened)
    Column("reopened", Integer, nullable=False, default=0),
    UniqueConstraint("record_key", "fingerprint", name="uq_qc_findings_record_fingerprint"),
    Index("ix_qc_findings_state_found", "state", "found_at"),
    Index("ix_qc_findings_found", "found_at", "id"),
    Index("ix_qc_findings_department_state", "department", "state"),
    Index("ix_qc_findings_attending", "attending"),
    Index("ix_qc_findings_assignee", "assignee_type", "assignee"),
    Index("ix_qc_findings_rule", "rule_id", "state"),
    Index("ix_qc_findings_severity", "severity"),
    Index("ix_qc_findings_month", "found_month", "department"),
    Index("ix_qc_findings_record_id", "record_id"),
    # Every filter column: the queue's counts (by state, by severity, the total) read this index alone.
    Index("ix_qc_findings_filters", "state", "severity", "department", "rule_id", "level", "category", "attending", "assignee_type", "assignee", "found_at", "record_id", "present"),
)

events = Table(
    "qc_finding_events", metadata,
    Column("id", Integer, primary_key=True),
    Column("finding_id", Integer, ForeignKey("qc_findings.id", ondelete="CASCADE"), nullable=False),
    Column("at", DateTime(timezone=True), nullable=False),
    Column("actor", String(100), nullable=False),
    Column("role", String(20), nullable=False),
    Column("action", String(20), nullable=False),
    Column("from_state", String(12)),
    Column("to_state", String(12), nullable=False),
    Column("reason", Text),
    Column("assignee_type", String(12)),
    Column("assignee", String(100)),
    Column("version", Integer, nullable=False),  # the record version the change refers to
    Index("ix_qc_finding_events_finding", "finding_id", "id"),
    Index("ix_qc_finding_events_action", "action"),
)

indicators = Table(
    "qc_indicator_results", metadata,
    Column("id", Integer, primary_key=True),
    Column("record_key", Integer, ForeignKey("qc_records.id", ondelete="CASCADE"), nullable=False),
    Column("version", Integer, nullable=False),
    Column("disease", String(50), nullable=False),
    Column("indicator_id", String(100), nullable=False),
    Column("status", String(20), nullable=False),  # met | not_met | not_applicable | contraindicated
    Column("detail", Text, nullable=False),  # JSON: reason and evidence
    Column("department", String(100)),
    Index("ix_qc_indicator_results_record", "record_key"),
    Index("ix_qc_indicator_results_indicator", "disease", "indicator_id", "status"),
)

vte = Table(
    "qc_vte_scores", metadata,
    Column("record_key", Integer, ForeignKey("qc_records.id", ondelete="CASCADE"), primary_key=True),
    Column("version", Integer, nullable=False),
    Column("model", String(10), nullable=False),  # caprini | padua
    Column("score", Integer, nullable=False),
    Column("risk", String(12), nullable=False),
    Column("factors", Text, nullable=False),  # JSON
    Column("assessed", Boolean, nullable=False),
    Column("prophylaxis", Boolean, nullable=False),
)

deadlines = Table(
    "qc_deadlines", metadata,
    Column("id", Integer, primary_key=True),
    Column("record_key", Integer, ForeignKey("qc_records.id", ondelete="CASCADE"), nullable=False),
    Column("deadline_id", String(50), nullable=False),
    Column("name", String(100), nullable=False),
    Column("due_at", DateTime(timezone=True), nullable=False),
    Column("warn_at", DateTime(timezone=True), nullable=False),
    Column("done", Boolean, nullable=False),
    Column("basis", String(100), nullable=False),
    Index("ix_qc_deadlines_open", "done", "warn_at"),
    Index("ix_qc_deadlines_record", "record_key"),
)

jobs = Table(
    "qc_ingested_jobs", metadata,
    Column("job_id", String(32), primary_key=True),
    Column("at", DateTime(timezone=True), nullable=False),
    Column("records", Integer, nullable=False),
    Column("errors", Integer, nullable=False),
)
