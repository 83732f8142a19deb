"""Users, roles and credentials, kept in COPILOT_HOME/users.db, or in the instance database
(``users`` table) when COPILOT_DATABASE_URL is set, so that every replica signs the same people in
and ending a session on one ends it on all (``SharedUserStore``, ``open_user_store``).

API tokens are 256-bit random strings shown once at creation; only their SHA-256 is stored
(a token has full entropy, so a slow hash adds nothing). Sidebar passwords, which people
choose, are stored with werkzeug's salted scrypt hash.

Each user has a session version: signing out, a new password, a new token and disabling the
user bump it, and a sidebar session made under an older version no longer signs anyone in.
A sign-in costs one scrypt verification whatever the name and secret (an unknown user, a
disabled one, one without a password), so its timing reveals neither who exists nor how
they sign in.
"""

from __future__ import annotations

import hashlib
import hmac
import re
import secrets
import sqlite3
import threading
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path

from werkzeug.security import check_password_hash, generate_password_hash

ROLES = ("clinician", "doctor", "dept_qc", "qc_staff", "admin")
DEPARTMENT_ROLES = ("dept_qc",)  # roles that need a department (the QC office scopes them to it)
TOKEN_PREFIX = "cpt_"
NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._@-]{0,63}$")
MIN_PASSWORD = 10

SCHEMA = """
CREATE TABLE IF NOT EXISTS users (
    name TEXT PRIMARY KEY,
    role TEXT NOT NULL,
    token_hash TEXT NOT NULL UNIQUE,
    password_hash TEXT,
    created TEXT NOT NULL,
    disabled INTEGER NOT NULL DEFAULT 0,
    session_version INTEGER NOT NULL DEFAULT 0,
    department TEXT
);
"""
COLUMNS = "name, role, created, disabled, session_version, department"
# Columns added after the first release: (name, SQL definition). A database from before gains them on open.
ADDED_COLUMNS = (("session_version", "INTEGER NOT NULL DEFAULT 0"), ("department", "TEXT"))


class UserError(ValueError):
    pass


@dataclass(frozen=True)
class User:
    name: str
    role: str
    created: str
    disabled: bool = False
    session_version: int = 0
    department: str | None = None  # the department a doctor or department QC doctor belongs to

    # flask-login's user protocol
    is_active = property(lambda self: not self.disabled)
    is_authenticated = True
    is_anonymous = False

    def get_id(self) -> str:
        """What a session remembers: the name and the session version it was made under."""
        return f"{self.name}:{self.session_version}"

    @classmethod
    def from_row(cls, row) -> User:
        return cls(row["name"], row["role"], row["created"], bool(row["disabled"]), row["session_version"],
                   row["department"])


def _token_hash(token: str) -> str:
    return hashlib.sha256(token.encode("utf-8")).hexdigest()


_dummy: list[str] = []
_dummy_lock = threading.Lock()


def _dummy_hash() -> str:
    """A password hash of a random secret, made once, with the parameters real hashes get: what a
    sign-in without a real hash to check is verified against, so it costs the same."""
    with _dummy_lock:
        if not _dummy:
            _dummy.append(generate_password_hash(secrets.token_urlsafe(16)))
        return _dummy[0]


class UserStore:
    INTEGRITY_ERRORS: tuple[type[Exception], ...] = (sqlite3.IntegrityError,)

    def __init__(self, path: Path):
        self.path = Path(path)
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self._local = threading.local()
        with self._connect() as db:
            db.executescript(SCHEMA)
            _add_missing_columns(db)

    def _connect(self) -> sqlite3.Connection:
        db = getattr(self._local, "db", None)
        if db is None:
            db = sqlite3.connect(self.path, timeout=30)
            db.row_factory = sqlite3.Row
            db.execute("PRAGMA journal_mode=WAL")
            self._local.db = db
        return db

    def _rows(self, sql: str, params: tuple = ()) -> list:
        """Rows (by column name) of a query with ``?`` placeholders."""
        return self._connect().execute(sql, params).fetchall()

    def _write(self, sql: str, params: tuple = ()) -> int:
        """Run one change in its own transaction; the number of rows it changed."""
        with self._connect() as db:
            return db.execute(sql, params).rowcount

    def add(self, name: str, role: str, department: str | None = None) -> str:
        """Create a user; returns the API token, which is not stored and cannot be shown again."""
        if not NAME.match(name or ""):
            raise UserError(f"invalid user name {name!r}: letters, digits and . _ @ - (at most 64)")
        if role not in ROLES:
            raise UserError(f"unknown role {role!r}; choose one of {', '.join(ROLES)}")
        department = _department(department, role)
        token = TOKEN_PREFIX + secrets.token_urlsafe(32)
        try:
            self._write("INSERT INTO users (name, role, token_hash, created, department) VALUES (?, ?, ?, ?, ?)",
                        (name, role, _token_hash(token), datetime.now(timezone.utc).isoformat(timespec="seconds"),
                         department))
        except self.INTEGRITY_ERRORS:
            raise UserError(f"user {name!r} already exists (use `copilot users token {name}` for a new token)") from None
        return token

    def rotate_token(self, name: str) -> str:
        """A new API token; the old one, and every sidebar session, stop working."""
        token = TOKEN_PREFIX + secrets.token_urlsafe(32)
        self._update(name, token_hash=_token_hash(token))
        return token

    def set_password(self, name: str, password: str) -> None:
        """A new sidebar password; every sidebar session signed in before it ends."""
        if len(password) < MIN_PASSWORD:
            raise UserError(f"the password must have at least {MIN_PASSWORD} characters")
        self._update(name, password_hash=generate_password_hash(password))

    def set_disabled(self, name: str, disabled: bool) -> None:
        self._update(name, disabled=int(disabled))

    def set_department(self, name: str, department: str | None) -> None:
        user = self.get(name)
        if user is None:
            raise UserError(f"no such user: {name!r}")
        self._update(name, department=_department(department, user.role))

    def end_sessions(self, name: str) -> None:
        """Sign the user out everywhere (what signing out of the sidebar does)."""
        self._update(name)

    def _update(self, name: str, **changes) -> None:
        """Change a user's credentials (columns of this module's own choosing); every change ends
        the user's sidebar sessions."""
        assignments = [f"{column} = ?" for column in changes] + ["session_version = session_version + 1"]
        changed = self._write(f"UPDATE users SET {', '.join(assignments)} WHERE name = ?", (*changes.values(), name))
        if not changed:
            raise UserError(f"no such user: {name!r}")

    def get(self, name: str) -> User | None:
        rows = self._rows(f"SELECT {COLUMNS} FROM users WHERE name = ?", (name,))
        return User.from_row(rows[0]) if rows else None

    def session_user(self, session_id: str) -> User | None:
        """The user a sidebar session (``User.get_id()``) names, if that session is still valid:
        the user is active and nothing has ended their sessions since."""
        name, _, version = str(session_id).rpartition(":")
        user = self.get(name) if version.isdigit() else None
        return user if user is not None and user.is_active and user.session_version == int(version) else None

    def list(self) -> list[User]:
        rows = self._rows(f"SELECT {COLUMNS} FROM users ORDER BY name")
        return [User.from_row(r) for r in rows]

    def by_token(self, token: str) -> User | None:
        if not token.startswith(TOKEN_PREFIX) or len(token) > 128:
            return None
        row = next(iter(self._rows(f"SELECT {COLUMNS} FROM users WHERE token_hash = ?", (_token_hash(token),))), None)
        if row is None or row["disabled"]:
            return None
        return User.from_row(row)

    def check_login(self, name: str, secret: str) -> User | None:
        """A sidebar login: the user's password, or their API token where no password is set.

        Exactly one scrypt verification on every path (against the user's hash, or a dummy one),
        so an unknown or disabled user, or one without a password, answers in the same time."""
        row = next(iter(self._rows(f"SELECT {COLUMNS}, token_hash, password_hash FROM users WHERE name = ?",
                                   (name,))), None)
        password_hash = row["password_hash"] if row is not None and row["password_hash"] else _dummy_hash()
        password_ok = check_password_hash(password_hash, secret)
        if row is None or row["disabled"]:
            return None
        if row["password_hash"]:
            ok = password_ok
        else:
            ok = hmac.compare_digest(row["token_hash"], _token_hash(secret))
        return User.from_row(row) if ok else None


def _department(department: str | None, role: str) -> str | None:
    department = (department or "").strip() or None
    if department is not None and (len(department) > 100 or any(ord(c) < 32 for c in department)):
        raise UserError("a department is at most 100 characters, on one line")
    if department is None and role in DEPARTMENT_ROLES:
        raise UserError(f"role {role} needs a department (--department)")
    return department


def _add_missing_columns(db: sqlite3.Connection) -> None:
    """Migrate a users table from an earlier release: add the columns it lacks (with defaults, so
    old rows stay valid)."""
    present = {row[1] for row in db.execute("PRAGMA table_info(users)")}
    for name, definition in ADDED_COLUMNS:
        if name not in present:
            db.execute(f"ALTER TABLE users ADD COLUMN {name} {definition}")


class SharedUserStore(UserStore):
    """The users table of the instance database (SQLAlchemy; PostgreSQL or SQLite), created by the
    Alembic migration 0002; the same statements as the file store."""

    def __init__(self, url: str):
        from sqlalchemy.exc import IntegrityError

        from copilot.db import open_database, safe_url

        self.path = safe_url(url)
        self.engine = open_database(url)
        self.INTEGRITY_ERRORS = (IntegrityError,)
        self._placeholder = "?" if self.engine.dialect.paramstyle == "qmark" else "%s"

    def _sql(self, sql: str) -> str:
        return sql if self._placeholder == "?" else sql.replace("?", self._placeholder)

    def _rows(self, sql: str, params: tuple = ()) -> list:
        with self.engine.connect() as connection:
            return connection.exec_driver_sql(self._sql(sql), tuple(params)).mappings().all()

    def _write(self, sql: str, params: tuple = ()) -> int:
        with self.engine.begin() as connection:
            return connection.exec_driver_sql(self._sql(sql), tuple(params)).rowcount


def open_user_store(settings) -> UserStore:
    """The instance's users: in the instance database when COPILOT_DATABASE_URL is set (shared by
    every server that uses it), else HOME/users.db."""
    if settings.database_url is not None:
        return SharedUserStore(settings.database)
    return UserStore(settings.users_db)
