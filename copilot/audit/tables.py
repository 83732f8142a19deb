"""The audit log's tables in the shared instance database (used when COPILOT_DATABASE_URL is PostgreSQL).

``audit_entries`` holds the same fields as the SQLite log's ``entries``; ``audit_head`` is one row
(id 1) with the newest (seq, hash) and the fingerprint of the HMAC key that signs the chain, never
the key itself. Every append locks that row (SELECT ... FOR UPDATE), which serialises appends from
every process on every machine into one chain. The migration
``copilot/db/migrations/versions/0002_shared_store.py`` creates exactly these, plus PostgreSQL
triggers that refuse UPDATE, DELETE and TRUNCATE of entries and any INSERT that does not extend the chain.
"""

from __future__ import annotations

from sqlalchemy import BigInteger, CheckConstraint, Column, Float, Integer, MetaData, String, Table, Text

metadata = MetaData()

entries = Table(
    "audit_entries", metadata,
    Column("seq", BigInteger, primary_key=True, autoincrement=False),
    Column("timestamp", String(40), nullable=False),  # the ISO text that was hashed, kept verbatim
    Column("user", String(128), nullable=False),
    Column("role", String(128), nullable=False),
    Column("action", String(128), nullable=False),
    Column("patient_ref", String(200)),
    Column("model_id", String(200)),
    Column("model_version", String(200)),
    Column("knowledge_snapshot", String(200)),
    Column("input_hash", String(71)),
    Column("output_hash", String(71)),
    Column("sources", Text, nullable=False),
    Column("tokens", BigInteger),
    Column("latency_ms", Float(53)),
    Column("outcome", String(16), nullable=False),
    Column("detail", String(300)),
    Column("prev_hash", String(64), nullable=False),
    Column("hash", String(64), nullable=False),
)

head = Table(
    "audit_head", metadata,
    Column("id", Integer, primary_key=True, autoincrement=False),
    Column("seq", BigInteger, nullable=False),
    Column("hash", String(64), nullable=False),
    Column("key_id", String(64)),  # HMAC(key, KEY_ID_LABEL): which key signs the chain, not the key
    CheckConstraint("id = 1", name="ck_audit_head_single_row"),
)
