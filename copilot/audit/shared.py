"""The audit log on the shared PostgreSQL store, one chain for every process on every machine.

Used when ``COPILOT_DATABASE_URL`` names a PostgreSQL database (SQLite keeps the file log of
``copilot.audit.log``). The chain, its validation, group commit, verification and anchors are the
file log's; what changes is where entries live and how appends are serialised:

* ``audit_entries`` and the single-row ``audit_head`` (``copilot/audit/tables.py``, Alembic migration
  0002). Each append is one transaction that first takes ``SELECT ... FOR UPDATE`` on the head row,
  so appends from any number of replicas wait for each other and form one gap-free chain; triggers
  refuse UPDATE, DELETE and TRUNCATE of entries, an INSERT that does not extend the head, and move
  the head row with each entry.
* The HMAC key stays a file outside the database (``HOME/audit/audit.key`` by default): every
  machine that appends needs the same one. The head row keeps only its fingerprint
  (``HMAC(key, KEY_ID_LABEL)``), so a replica started with another key refuses to open rather than
  start a second, unverifiable chain.
* The in-database head row plays the part of the file log's ``audit.head``; the external anchor
  (``HOME/audit.anchor`` or ``COPILOT_AUDIT_ANCHOR``) stays a local file on each machine, a lower
  bound that reveals entries cut off the end even by someone who also rewrote the head row.
"""

from __future__ import annotations

import contextlib
import hashlib
import hmac
import itertools
import os
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from copilot.audit.log import (
    COLUMNS,
    DB_RELATIVE,
    QUOTED,
    AuditError,
    AuditIntegrityError,
    AuditLog,
    NoAuditLog,
)

KEY_ID_LABEL = b"copilot audit key id v1"
CONNECT_TIMEOUT_S = 10


def key_id(key: bytes) -> str:
    return hmac.new(key, KEY_ID_LABEL, hashlib.sha256).hexdigest()


def is_shared(url: str | None) -> bool:
    """Whether a database URL puts the audit log in the shared store (PostgreSQL), not the SQLite file."""
    from sqlalchemy.engine import make_url

    return bool(url) and make_url(url).get_backend_name() == "postgresql"


def _connect_kwargs(url: str) -> dict[str, Any]:
    """psycopg keywords for a SQLAlchemy URL (postgresql+psycopg://user:pass@host:port/db?host=/socket)."""
    from sqlalchemy.engine import make_url

    parsed = make_url(url)
    kwargs: dict[str, Any] = {key: value for key, value in parsed.query.items() if isinstance(value, str)}
    for key, value in (("host", parsed.host), ("port", parsed.port), ("user", parsed.username),
                       ("password", parsed.password), ("dbname", parsed.database)):
        if value is not None:
            kwargs[key] = value
    kwargs.setdefault("connect_timeout", CONNECT_TIMEOUT_S)
    return kwargs


class _Connection:
    """A psycopg connection that takes the file log's SQL (``?`` placeholders); queries of a reader
    run on server-side cursors so that verifying a long chain streams it instead of loading it."""

    _names = itertools.count()

    def __init__(self, raw, stream: bool):
        self.raw, self.stream = raw, stream

    def execute(self, sql: str, params: Any = ()):
        sql = sql.replace("?", "%s")
        if self.stream and sql.lstrip().upper().startswith("SELECT"):
            cursor = self.raw.cursor(name=f"audit_{os.getpid()}_{next(self._names)}")
            cursor.itersize = 2000
        else:
            cursor = self.raw.cursor()
        cursor.execute(sql, params or None)
        return cursor

    def close(self) -> None:
        self.raw.close()


class SharedAuditLog(AuditLog):
    """The audit log in the PostgreSQL database at ``url``; same interface as ``AuditLog``."""

    TABLE = "audit_entries"
    SELECT = f"SELECT {QUOTED} FROM audit_entries"
    INSERT = f"INSERT INTO audit_entries ({QUOTED}) VALUES ({', '.join('?' * len(COLUMNS))})"
    BEGIN_WRITE = "BEGIN"

    def __init__(self, url: str, key_path: str | os.PathLike, anchor_path: str | os.PathLike | None = None,
                 create: bool = True):
        """``key_path``: the HMAC key file (the same on every machine); ``create``: False for readers
        (verify), which neither migrate the database nor create a key."""
        from copilot.db import safe_url

        self._url = url
        self.path = safe_url(url)  # what messages name: never the password
        self.key_path = Path(key_path)
        self.head_path = None  # the head row in the database stands in for the file log's audit.head
        self.anchor_path = Path(anchor_path) if anchor_path else None
        self._lock_path = self.anchor_path.with_name(f".{self.anchor_path.name}.lock") if self.anchor_path else None
        self._init_state()
        if create:
            from copilot.db import DatabaseError, open_database

            try:
                open_database(url).dispose()  # applies migration 0002 (the audit tables) if it is missing
            except DatabaseError as exc:
                raise AuditError(str(exc)) from None
        seq, digest, stored_key_id = self._read_head()
        for label, anchor_file, anchor in self._anchors():
            if anchor and anchor[0] > seq:
                raise AuditIntegrityError(
                    f"the audit log in {self.path} ends at entry {seq} but {label} {anchor_file} records {anchor[0]}: "
                    "entries were cut off or the database was replaced; restore it from backup and run "
                    "`copilot audit verify` (refusing to extend it)")
        if not create and not self.key_path.exists() and seq == 0:
            raise NoAuditLog(f"no audit entries in {self.path} and no key at {self.key_path}")
        self._key = self._load_key(empty=seq == 0 and create)
        mine = key_id(self._key)
        if stored_key_id is None and create:
            with self._write_lock() as conn:
                conn.execute("UPDATE audit_head SET key_id = ? WHERE id = 1 AND key_id IS NULL", (mine,))
            stored_key_id = self._read_head()[2]
        if stored_key_id is not None and stored_key_id != mine:
            raise AuditIntegrityError(
                f"audit key {self.key_path} is not the key that signs the audit log in {self.path}: copy the key "
                "file from a server that appends to this log (every replica needs the same key)")
        if create and self.anchor_path is not None and not self.anchor_path.exists():
            self._advance_anchor(seq, digest, create=True)  # a new machine joining the shared log

    @classmethod
    def for_home(cls, home: str | os.PathLike, url: str | None = None, **kwargs) -> SharedAuditLog:
        kwargs.setdefault("anchor_path", Path(home) / "audit.anchor")
        kwargs.setdefault("key_path", (Path(home) / DB_RELATIVE).with_suffix(".key"))
        return cls(url, **kwargs)

    # -- connections -------------------------------------------------------------------

    def _raw(self, autocommit: bool):
        import psycopg

        try:
            return psycopg.connect(autocommit=autocommit, **_connect_kwargs(self._url))
        except psycopg.Error as exc:
            raise AuditError(f"audit database {self.path} cannot be reached: "
                             f"{str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__}") from None

    def _connect(self) -> _Connection:
        return _Connection(self._raw(autocommit=True), stream=False)  # BEGIN / COMMIT are explicit

    @contextlib.contextmanager
    def _write_lock(self) -> Iterator[_Connection]:
        import psycopg

        with self._lock:
            if self._conn is not None and (self._conn_pid != os.getpid() or self._conn.raw.closed):
                self._conn = None  # a forked child, or a connection the server dropped
            if self._conn is None:
                self._conn = self._connect()
                self._conn_pid = os.getpid()
            try:
                yield self._conn
            except psycopg.OperationalError:
                with contextlib.suppress(Exception):
                    self._conn.close()
                self._conn = None  # the next append reconnects
                raise

    @contextlib.contextmanager
    def _reader(self) -> Iterator[_Connection]:
        """One read transaction (a consistent snapshot) on its own connection."""
        import psycopg

        conn = _Connection(self._raw(autocommit=False), stream=True)
        try:
            yield conn
        except psycopg.Error as exc:
            raise AuditError(f"audit database {self.path} cannot be read: {exc}") from None
        finally:
            with contextlib.suppress(Exception):
                conn.raw.rollback()
            conn.close()

    # -- the head row --------------------------------------------------------------------

    def _read_head(self) -> tuple[int, str, str | None]:
        import psycopg

        try:
            with self._raw(autocommit=True) as raw:
                row = raw.execute("SELECT seq, hash, key_id FROM audit_head WHERE id = 1").fetchone()
        except psycopg.errors.UndefinedTable:
            raise NoAuditLog(f"no audit log in {self.path} (the database was never migrated: start the server "
                             "once)") from None
        except psycopg.Error as exc:
            raise AuditError(f"audit database {self.path} cannot be read: {exc}") from None
        if row is None:
            raise AuditIntegrityError(f"the audit head row in {self.path} is missing: the log was tampered with")
        return row[0], row[1], row[2]

    def _locked_head(self, conn) -> tuple[int, str]:
        row = conn.execute("SELECT seq, hash FROM audit_head WHERE id = 1 FOR UPDATE").fetchone()
        if row is None:
            raise AuditIntegrityError(f"the audit head row in {self.path} is missing: the log was tampered with")
        return row[0], row[1]

    def _read_anchor(self, path: Path | None = None) -> tuple[int, str]:
        if path is None:  # "the head anchor": the head row
            seq, digest, _ = self._read_head()
            return seq, digest
        return super()._read_anchor(path)

    def _check_file_size(self) -> None:
        """Nothing to check: PostgreSQL pages are not a file this process reads."""

    def _advance_anchor(self, seq: int, digest: str, create: bool = False) -> None:
        if self.anchor_path is not None:
            super()._advance_anchor(seq, digest, create=create)


def open_audit_log(settings, create: bool = True) -> AuditLog:
    """The instance's audit log: the shared PostgreSQL one when COPILOT_DATABASE_URL names PostgreSQL,
    else the SQLite file under HOME/audit."""
    if is_shared(settings.database):
        return SharedAuditLog(settings.database, key_path=settings.audit_db.with_suffix(".key"),
                              anchor_path=settings.audit_anchor_path, create=create)
    return AuditLog(settings.audit_db, anchor_path=settings.audit_anchor_path, create=create)
