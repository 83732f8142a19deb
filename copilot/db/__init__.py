"""The instance database: one SQLAlchemy engine per deployment, migrated to the newest schema when opened.

SQLite by default (``HOME/copilot.db``), PostgreSQL when ``COPILOT_DATABASE_URL`` names one. Code talks
to it through SQLAlchemy Core only (tables declared beside the code that owns them, e.g.
``copilot/qc/office/tables.py``), so the same statements run on both. Every change to a table is an
Alembic migration in ``migrations/versions``; ``open_database`` applies the missing ones before
anything reads or writes, so an upgraded server upgrades its database at start-up.
"""

from __future__ import annotations

import logging
from pathlib import Path

from sqlalchemy import Engine, create_engine, event
from sqlalchemy.engine import make_url

log = logging.getLogger(__name__)

MIGRATIONS = Path(__file__).with_name("migrations")
PG_MIGRATION_LOCK = 0x51C0  # pg_advisory_lock key: one migrating process at a time


class DatabaseError(RuntimeError):
    """The database cannot be opened or migrated; the message says why (never the password)."""


def create(url: str) -> Engine:
    """An engine for ``url``; SQLite gets WAL, foreign keys and a generous busy timeout, so the web
    threads, the batch runner and a command can share one file."""
    parsed = make_url(url)
    if parsed.get_backend_name() == "sqlite":
        if parsed.database and parsed.database != ":memory:":
            Path(parsed.database).parent.mkdir(parents=True, exist_ok=True)
        engine = create_engine(parsed, connect_args={"timeout": 30, "check_same_thread": False})

        @event.listens_for(engine, "connect")
        def _pragmas(connection, _record):
            cursor = connection.cursor()
            cursor.execute("PRAGMA journal_mode=WAL")
            cursor.execute("PRAGMA foreign_keys=ON")
            cursor.execute("PRAGMA synchronous=NORMAL")
            cursor.close()

        return engine
    return create_engine(parsed, pool_pre_ping=True, pool_size=8, max_overflow=8)


def _alembic_config(connection):
    from alembic.config import Config

    config = Config()
    config.set_main_option("script_location", str(MIGRATIONS))
    config.attributes["connection"] = connection
    return config


def upgrade(engine: Engine, revision: str = "head") -> None:
    """Apply every migration up to ``revision``; concurrent openers wait for one another."""
    from alembic import command

    if engine.dialect.name == "sqlite":
        from filelock import FileLock

        database = engine.url.database
        lock = FileLock(f"{database}.migrate.lock") if database and database != ":memory:" else None
        if lock is not None:
            with lock, engine.begin() as connection:
                command.upgrade(_alembic_config(connection), revision)
            return
        with engine.begin() as connection:
            command.upgrade(_alembic_config(connection), revision)
        return
    with engine.begin() as connection:
        if engine.dialect.name == "postgresql":
            connection.exec_driver_sql(f"SELECT pg_advisory_xact_lock({PG_MIGRATION_LOCK})")
        command.upgrade(_alembic_config(connection), revision)


def current_revision(engine: Engine) -> str | None:
    from alembic.runtime.migration import MigrationContext

    with engine.connect() as connection:
        return MigrationContext.configure(connection).get_current_revision()


def head_revision() -> str:
    from alembic.script import ScriptDirectory

    config = _alembic_config(None)
    return ScriptDirectory.from_config(config).get_current_head()


def open_database(url: str) -> Engine:
    """The engine for ``url`` with every migration applied."""
    try:
        engine = create(url)
        upgrade(engine)
    except Exception as exc:  # the URL's password must not reach a log or a terminal
        raise DatabaseError(f"cannot open the database {safe_url(url)}: {type(exc).__name__}: "
                            f"{str(exc).splitlines()[0] if str(exc) else ''}") from None
    log.debug("database %s at revision %s", safe_url(url), head_revision())
    return engine


def safe_url(url: str) -> str:
    """The URL with its password hidden, for messages."""
    try:
        return make_url(url).render_as_string(hide_password=True)
    except Exception:
        return "(unparseable database URL)"
