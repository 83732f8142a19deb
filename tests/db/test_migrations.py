"""The instance database: migrations create exactly the tables the code declares, on SQLite and PostgreSQL,
are applied once, and never show a password."""

from __future__ import annotations

import pytest


def test_the_migrated_schema_is_the_declared_one(database_url):
    from alembic.autogenerate import compare_metadata
    from alembic.runtime.migration import MigrationContext

    from copilot.db import current_revision, head_revision, open_database
    from copilot.audit.tables import metadata as audit
    from copilot.qc.office.tables import metadata as qc_office
    from copilot.qc.shared_jobs import metadata as jobs
    from copilot.users.tables import metadata as users

    engine = open_database(database_url)
    with engine.connect() as connection:
        assert compare_metadata(MigrationContext.configure(connection), [qc_office, audit, users, jobs]) == []
    assert current_revision(engine) == head_revision()
    open_database(database_url)  # a second start finds nothing to do
    assert current_revision(engine) == head_revision()


def test_a_database_that_cannot_be_opened_is_reported_without_its_password(tmp_path):
    from copilot.db import DatabaseError, open_database, safe_url

    url = f"postgresql+psycopg://copilot:s3cret-pass@/nowhere?host={tmp_path}"
    with pytest.raises(DatabaseError) as failure:
        open_database(url)
    assert "s3cret-pass" not in str(failure.value) and "***" in str(failure.value)
    assert "s3cret-pass" not in safe_url(url)


def test_the_default_database_is_a_sqlite_file_in_the_instance(tmp_path, monkeypatch):
    from copilot.config import Settings

    assert Settings(home=tmp_path).database == f"sqlite:///{tmp_path.resolve() / 'copilot.db'}"
    monkeypatch.setenv("COPILOT_DATABASE_URL", "postgresql+psycopg://u:p@db/copilot")
    settings = Settings(home=tmp_path)
    assert settings.database == "postgresql+psycopg://u:p@db/copilot"
    shown = {row["name"]: row["value"] for row in settings.effective()}
    assert shown["COPILOT_DATABASE_URL"] == "(set)"
