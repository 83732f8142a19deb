"""Shared store: the audit log (entries and the head row that serialises appends), the users, and the
state of QC batch jobs.

On PostgreSQL, triggers make the entries append-only (UPDATE, DELETE and TRUNCATE refused, an INSERT
must extend the chain at the head row) and keep the head row in step with the newest entry.

Revision ID: 0002_shared_store
Revises: 0001_qc_office
Create Date: 2026-12-05
"""
from typing import Sequence, Union

import sqlalchemy as sa
from alembic import op

revision: str = "0002_shared_store"
down_revision: Union[str, Sequence[str], None] = "0001_qc_office"
branch_labels: Union[str, Sequence[str], None] = None
depends_on: Union[str, Sequence[str], None] = None

GENESIS_HASH = "0" * 64

PG_TRIGGERS = """
CREATE FUNCTION audit_refuse() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
  RAISE EXCEPTION 'audit log is append-only: % on % refused', TG_OP, TG_TABLE_NAME;
END $$;

CREATE FUNCTION audit_extend() RETURNS trigger LANGUAGE plpgsql AS $$
DECLARE head_seq bigint; head_hash text;
BEGIN
  SELECT seq, hash INTO head_seq, head_hash FROM audit_head WHERE id = 1;
  IF head_seq IS NULL OR NEW.seq IS DISTINCT FROM head_seq + 1 OR NEW.prev_hash IS DISTINCT FROM head_hash THEN
    RAISE EXCEPTION 'audit log is append-only: INSERT must extend the chain (head %, got seq %)', head_seq, NEW.seq;
  END IF;
  RETURN NEW;
END $$;

CREATE FUNCTION audit_advance_head() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
  UPDATE audit_head SET seq = NEW.seq, hash = NEW.hash WHERE id = 1;
  RETURN NULL;
END $$;

CREATE FUNCTION audit_head_forward() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
  IF NEW.id IS DISTINCT FROM OLD.id
     OR (OLD.key_id IS NOT NULL AND NEW.key_id IS DISTINCT FROM OLD.key_id)
     OR NOT ((NEW.seq = OLD.seq AND NEW.hash = OLD.hash)
             OR (NEW.seq = OLD.seq + 1 AND EXISTS (SELECT 1 FROM audit_entries WHERE seq = NEW.seq AND hash = NEW.hash)))
  THEN
    RAISE EXCEPTION 'audit head only moves to the newest entry, and its key only from unset';
  END IF;
  RETURN NEW;
END $$;

CREATE TRIGGER audit_entries_no_change BEFORE UPDATE OR DELETE ON audit_entries
  FOR EACH ROW EXECUTE FUNCTION audit_refuse();
CREATE TRIGGER audit_entries_no_truncate BEFORE TRUNCATE ON audit_entries
  FOR EACH STATEMENT EXECUTE FUNCTION audit_refuse();
CREATE TRIGGER audit_entries_extend BEFORE INSERT ON audit_entries
  FOR EACH ROW EXECUTE FUNCTION audit_extend();
CREATE TRIGGER audit_entries_advance_head AFTER INSERT ON audit_entries
  FOR EACH ROW EXECUTE FUNCTION audit_advance_head();
CREATE TRIGGER audit_head_no_delete BEFORE DELETE ON audit_head
  FOR EACH ROW EXECUTE FUNCTION audit_refuse();
CREATE TRIGGER audit_head_no_truncate BEFORE TRUNCATE ON audit_head
  FOR EACH STATEMENT EXECUTE FUNCTION audit_refuse();
CREATE TRIGGER audit_head_forward BEFORE UPDATE ON audit_head
  FOR EACH ROW EXECUTE FUNCTION audit_head_forward();
"""
PG_DROP = """
DROP TABLE IF EXISTS audit_entries;
DROP TABLE IF EXISTS audit_head;
DROP FUNCTION IF EXISTS audit_refuse, audit_extend, audit_advance_head, audit_head_forward;
"""


def upgrade() -> None:
    op.create_table(
        "audit_entries",
        sa.Column("seq", sa.BigInteger, primary_key=True, autoincrement=False),
        sa.Column("timestamp", sa.String(40), nullable=False),
        sa.Column("user", sa.String(128), nullable=False),
        sa.Column("role", sa.String(128), nullable=False),
        sa.Column("action", sa.String(128), nullable=False),
        sa.Column("patient_ref", sa.String(200)),
        sa.Column("model_id", sa.String(200)),
        sa.Column("model_version", sa.String(200)),
        sa.Column("knowledge_snapshot", sa.String(200)),
        sa.Column("input_hash", sa.String(71)),
        sa.Column("output_hash", sa.String(71)),
        sa.Column("sources", sa.Text, nullable=False),
        sa.Column("tokens", sa.BigInteger),
        sa.Column("latency_ms", sa.Float(53)),
        sa.Column("outcome", sa.String(16), nullable=False),
        sa.Column("detail", sa.String(300)),
        sa.Column("prev_hash", sa.String(64), nullable=False),
        sa.Column("hash", sa.String(64), nullable=False),
    )
    head = op.create_table(
        "audit_head",
        sa.Column("id", sa.Integer, primary_key=True, autoincrement=False),
        sa.Column("seq", sa.BigInteger, nullable=False),
        sa.Column("hash", sa.String(64), nullable=False),
        sa.Column("key_id", sa.String(64)),
        sa.CheckConstraint("id = 1", name="ck_audit_head_single_row"),
    )
    op.bulk_insert(head, [{"id": 1, "seq": 0, "hash": GENESIS_HASH, "key_id": None}])
    if op.get_bind().dialect.name == "postgresql":
        op.execute(PG_TRIGGERS)
    op.create_table(
        "users",
        sa.Column("name", sa.String(64), primary_key=True),
        sa.Column("role", sa.String(20), nullable=False),
        sa.Column("token_hash", sa.String(64), nullable=False, unique=True),
        sa.Column("password_hash", sa.String(255)),
        sa.Column("created", sa.String(40), nullable=False),
        sa.Column("disabled", sa.Integer, nullable=False, server_default="0"),
        sa.Column("session_version", sa.Integer, nullable=False, server_default="0"),
        sa.Column("department", sa.String(100)),
    )
    op.create_table(
        "qc_batch_jobs",
        sa.Column("id", sa.String(32), primary_key=True),
        sa.Column("owner", sa.String(64), nullable=False),
        sa.Column("created", sa.String(40), nullable=False),
        sa.Column("status", sa.String(12), nullable=False),
        sa.Column("state", sa.Text, nullable=False),
    )
    op.create_index("ix_qc_batch_jobs_status", "qc_batch_jobs", ["status"])


def downgrade() -> None:
    op.drop_table("qc_batch_jobs")
    op.drop_table("users")
    if op.get_bind().dialect.name == "postgresql":
        op.execute(PG_DROP)
        return
    op.drop_table("audit_entries")
    op.drop_table("audit_head")
