"""QC office: records and versions, findings as work items with their history, indicator results,
VTE scores, ingested batch jobs.

Revision ID: 0001_qc_office
Revises:
Create Date: 2026-12-01
"""
from typing import Sequence, Union

import sqlalchemy as sa
from alembic import op

revision: str = "0001_qc_office"
down_revision: Union[str, Sequence[str], None] = None
branch_labels: Union[str, Sequence[str], None] = None
depends_on: Union[str, Sequence[str], None] = None

UTC = sa.DateTime(timezone=True)


def upgrade() -> None:
    op.create_table(
        "qc_records",
        sa.Column("id", sa.Integer, primary_key=True),
        sa.Column("record_id", sa.String(200), nullable=False, unique=True),
        sa.Column("department", sa.String(100)),
        sa.Column("attending", sa.String(100)),
        sa.Column("encounter_type", sa.String(20), nullable=False),
        sa.Column("level", sa.String(20), nullable=False),
        sa.Column("admitted_at", UTC),
        sa.Column("discharged_at", UTC),
        sa.Column("version", sa.Integer, nullable=False),
        sa.Column("score", sa.Float, nullable=False),
        sa.Column("grade", sa.String(8), nullable=False),
        sa.Column("first_checked_at", UTC, nullable=False),
        sa.Column("checked_at", UTC, nullable=False),
    )
    op.create_index("ix_qc_records_department", "qc_records", ["department"])
    op.create_index("ix_qc_records_attending", "qc_records", ["attending"])

    op.create_table(
        "qc_record_versions",
        sa.Column("id", sa.Integer, primary_key=True),
        sa.Column("record_key", sa.Integer, sa.ForeignKey("qc_records.id", ondelete="CASCADE"), nullable=False),
        sa.Column("version", sa.Integer, nullable=False),
        sa.Column("sha256", sa.String(64), nullable=False),
        sa.Column("data", sa.Text, nullable=False),
        sa.Column("source", sa.String(100), nullable=False),
        sa.Column("knowledge_snapshot", sa.String(100)),
        sa.Column("level", sa.String(20), nullable=False),
        sa.Column("score", sa.Float, nullable=False),
        sa.Column("grade", sa.String(8), nullable=False),
        sa.Column("findings", sa.Integer, nullable=False),
        sa.Column("checked_at", UTC, nullable=False),
        sa.Column("checked_month", sa.String(7), nullable=False),
        sa.UniqueConstraint("record_key", "version", name="uq_qc_record_versions_record_version"),
    )
    op.create_index("ix_qc_record_versions_month", "qc_record_versions", ["checked_month"])

    op.create_table(
        "qc_findings",
        sa.Column("id", sa.Integer, primary_key=True),
        sa.Column("record_key", sa.Integer, sa.ForeignKey("qc_records.id", ondelete="CASCADE"), nullable=False),
        sa.Column("record_id", sa.String(200), nullable=False),
        sa.Column("department", sa.String(100)),
        sa.Column("attending", sa.String(100)),
        sa.Column("level", sa.String(20), nullable=False),
        sa.Column("fingerprint", sa.String(64), nullable=False),
        sa.Column("rule_id", sa.String(100), nullable=False),
        sa.Column("category", sa.String(50), nullable=False),
        sa.Column("severity", sa.String(10), nullable=False),
        sa.Column("origin", sa.String(10), nullable=False),
        sa.Column("message", sa.Text, nullable=False),
        sa.Column("evidence", sa.Text),
        sa.Column("knowledge", sa.Text, nullable=False),
        sa.Column("state", sa.String(12), nullable=False),
        sa.Column("present", sa.Boolean, nullable=False),
        sa.Column("first_version", sa.Integer, nullable=False),
        sa.Column("last_version", sa.Integer, nullable=False),
        sa.Column("found_at", UTC, nullable=False),
        sa.Column("found_month", sa.String(7), nullable=False),
        sa.Column("updated_at", UTC, nullable=False),
        sa.Column("updated_by", sa.String(100), nullable=False),
        sa.Column("assignee_type", sa.String(12)),
        sa.Column("assignee", sa.String(100)),
        sa.Column("reason", sa.Text),
        sa.Column("reopened", sa.Integer, nullable=False),
        sa.UniqueConstraint("record_key", "fingerprint", name="uq_qc_findings_record_fingerprint"),
    )
    for name, columns in (("ix_qc_findings_state_found", ["state", "found_at"]), ("ix_qc_findings_found", ["found_at", "id"]),
                          ("ix_qc_findings_department_state", ["department", "state"]),
                          ("ix_qc_findings_attending", ["attending"]), ("ix_qc_findings_assignee", ["assignee_type", "assignee"]),
                          ("ix_qc_findings_rule", ["rule_id", "state"]), ("ix_qc_findings_severity", ["severity"]),
                          ("ix_qc_findings_month", ["found_month", "department"]),
                          ("ix_qc_findings_record_id", ["record_id"]),
                          ("ix_qc_findings_filters", ["state", "severity", "department", "rule_id", "level", "category", "attending", "assignee_type", "assignee", "found_at", "record_id", "present"])):
        op.create_index(name, "qc_findings", columns)

    op.create_table(
        "qc_finding_events",
        sa.Column("id", sa.Integer, primary_key=True),
        sa.Column("finding_id", sa.Integer, sa.ForeignKey("qc_findings.id", ondelete="CASCADE"), nullable=False),
        sa.Column("at", UTC, nullable=False),
        sa.Column("actor", sa.String(100), nullable=False),
        sa.Column("role", sa.String(20), nullable=False),
        sa.Column("action", sa.String(20), nullable=False),
        sa.Column("from_state", sa.String(12)),
        sa.Column("to_state", sa.String(12), nullable=False),
        sa.Column("reason", sa.Text),
        sa.Column("assignee_type", sa.String(12)),
        sa.Column("assignee", sa.String(100)),
        sa.Column("version", sa.Integer, nullable=False),
    )
    op.create_index("ix_qc_finding_events_finding", "qc_finding_events", ["finding_id", "id"])
    op.create_index("ix_qc_finding_events_action", "qc_finding_events", ["action"])

    op.create_table(
        "qc_indicator_results",
        sa.Column("id", sa.Integer, primary_key=True),
        sa.Column("record_key", sa.Integer, sa.ForeignKey("qc_records.id", ondelete="CASCADE"), nullable=False),
        sa.Column("version", sa.Integer, nullable=False),
        sa.Column("disease", sa.String(50), nullable=False),
        sa.Column("indicator_id", sa.String(100), nullable=False),
        sa.Column("status", sa.String(20), nullable=False),
        sa.Column("detail", sa.Text, nullable=False),
        sa.Column("department", sa.String(100)),
    )
    op.create_index("ix_qc_indicator_results_record", "qc_indicator_results", ["record_key"])
    op.create_index("ix_qc_indicator_results_indicator", "qc_indicator_results", ["disease", "indicator_id", "status"])

    op.create_table(
        "qc_vte_scores",
        sa.Column("record_key", sa.Integer, sa.ForeignKey("qc_records.id", ondelete="CASCADE"), primary_key=True),
        sa.Column("version", sa.Integer, nullable=False),
        sa.Column("model", sa.String(10), nullable=False),
        sa.Column("score", sa.Integer, nullable=False),
        sa.Column("risk", sa.String(12), nullable=False),
        sa.Column("factors", sa.Text, nullable=False),
        sa.Column("assessed", sa.Boolean, nullable=False),
        sa.Column("prophylaxis", sa.Boolean, nullable=False),
    )

    op.create_table(
        "qc_deadlines",
        sa.Column("id", sa.Integer, primary_key=True),
        sa.Column("record_key", sa.Integer, sa.ForeignKey("qc_records.id", ondelete="CASCADE"), nullable=False),
        sa.Column("deadline_id", sa.String(50), nullable=False),
        sa.Column("name", sa.String(100), nullable=False),
        sa.Column("due_at", UTC, nullable=False),
        sa.Column("warn_at", UTC, nullable=False),
        sa.Column("done", sa.Boolean, nullable=False),
        sa.Column("basis", sa.String(100), nullable=False),
    )
    op.create_index("ix_qc_deadlines_open", "qc_deadlines", ["done", "warn_at"])
    op.create_index("ix_qc_deadlines_record", "qc_deadlines", ["record_key"])

    op.create_table(
        "qc_ingested_jobs",
        sa.Column("job_id", sa.String(32), primary_key=True),
        sa.Column("at", UTC, nullable=False),
        sa.Column("records", sa.Integer, nullable=False),
        sa.Column("errors", sa.Integer, nullable=False),
    )


def downgrade() -> None:
    for table in ("qc_ingested_jobs", "qc_deadlines", "qc_vte_scores", "qc_indicator_results", "qc_finding_events", "qc_findings",
                  "qc_record_versions", "qc_records"):
        op.drop_table(table)
