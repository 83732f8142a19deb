"""The users table in the instance database (used when COPILOT_DATABASE_URL is set); the same columns as
HOME/users.db. Created by ``copilot/db/migrations/versions/0002_shared_store.py``."""

from __future__ import annotations

from sqlalchemy import Column, Integer, MetaData, String, Table

metadata = MetaData()

users = Table(
    "users", metadata,
    Column("name", String(64), primary_key=True),
    Column("role", String(20), nullable=False),
    Column("token_hash", String(64), nullable=False, unique=True),
    Column("password_hash", String(255)),
    Column("created", String(40), nullable=False),
    Column("disabled", Integer, nullable=False, server_default="0"),
    Column("session_version", Integer, nullable=False, server_default="0"),
    Column("department", String(100)),
)
