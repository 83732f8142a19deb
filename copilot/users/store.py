"""Users, roles and credentials, kept in COPILOT_HOME/users.db.

API tokens are 256-bit random strings shown once at creation; only their SHA-256 is stored
(a token has full entropy, so a slow hash adds nothing). Sidebar passwords, which people
choose, are stored with werkzeug's salted scrypt hash.
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

ROLES = ("clinician", "qc_staff", "admin")
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
    disabled INTEGER NOT NULL DEFAULT 0
);
"""


class UserError(ValueError):
    pass


@dataclass(frozen=True)
class User:
    name: str
    role: str
    created: str
    disabled: bool = False

    # flask-login's user protocol
    is_active = property(lambda self: not self.disabled)
    is_authenticated = True
    is_anonymous = False

    def get_id(self) -> str:
        return self.name


def _token_hash(token: str) -> str:
    return hashlib.sha256(token.encode("utf-8")).hexdigest()


class UserStore:
    def __init__(self, path: Path):
        self.path = Path(path)
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self._local = threading.local()
        with self._connect() as db:
            db.executescript(SCHEMA)

    def _connect(self) -> sqlite3.Connection:
        db = getattr(self._local, "db", None)
        if db is None:
            db = sqlite3.connect(self.path, timeout=30)
            db.row_factory = sqlite3.Row
            db.execute("PRAGMA journal_mode=WAL")
            self._local.db = db
        return db

    def add(self, name: str, role: str) -> str:
        """Create a user; returns the API token, which is not stored and cannot be shown again."""
        if not NAME.match(name or ""):
            raise UserError(f"invalid user name {name!r}: letters, digits and . _ @ - (at most 64)")
        if role not in ROLES:
            raise UserError(f"unknown role {role!r}; choose one of {', '.join(ROLES)}")
        token = TOKEN_PREFIX + secrets.token_urlsafe(32)
        try:
            with self._connect() as db:
                db.execute("INSERT INTO users (name, role, token_hash, created) VALUES (?, ?, ?, ?)",
                           (name, role, _token_hash(token), datetime.now(timezone.utc).isoformat(timespec="seconds")))
        except sqlite3.IntegrityError:
            raise UserError(f"user {name!r} already exists (use `copilot users token {name}` for a new token)") from None
        return token

    def rotate_token(self, name: str) -> str:
        token = TOKEN_PREFIX + secrets.token_urlsafe(32)
        self._update(name, "token_hash = ?", _token_hash(token))
        return token

    def set_password(self, name: str, password: str) -> None:
        if len(password) < MIN_PASSWORD:
            raise UserError(f"the password must have at least {MIN_PASSWORD} characters")
        self._update(name, "password_hash = ?", generate_password_hash(password))

    def set_disabled(self, name: str, disabled: bool) -> None:
        self._update(name, "disabled = ?", int(disabled))

    def _update(self, name: str, assignment: str, value) -> None:
        with self._connect() as db:
            changed = db.execute(f"UPDATE users SET {assignment} WHERE name = ?", (value, name)).rowcount
        if not changed:
            raise UserError(f"no such user: {name!r}")

    def get(self, name: str) -> User | None:
        row = self._connect().execute("SELECT name, role, created, disabled FROM users WHERE name = ?",
                                      (name,)).fetchone()
        return User(row["name"], row["role"], row["created"], bool(row["disabled"])) if row else None

    def list(self) -> list[User]:
        rows = self._connect().execute("SELECT name, role, created, disabled FROM users ORDER BY name").fetchall()
        return [User(r["name"], r["role"], r["created"], bool(r["disabled"])) for r in rows]

    def by_token(self, token: str) -> User | None:
        if not token.startswith(TOKEN_PREFIX) or len(token) > 128:
            return None
        row = self._connect().execute("SELECT name, role, created, disabled FROM users WHERE token_hash = ?",
                                      (_token_hash(token),)).fetchone()
        if row is None or row["disabled"]:
            return None
        return User(row["name"], row["role"], row["created"], False)

    def check_login(self, name: str, secret: str) -> User | None:
        """A sidebar login: the user's password, or their API token where no password is set."""
        row = self._connect().execute("SELECT * FROM users WHERE name = ?", (name,)).fetchone()
        if row is None or row["disabled"]:
            check_password_hash(generate_password_hash("x"), secret)  # same work for unknown names
            return None
        if row["password_hash"]:
            ok = check_password_hash(row["password_hash"], secret)
        else:
            ok = hmac.compare_digest(row["token_hash"], _token_hash(secret))
        return User(row["name"], row["role"], row["created"], False) if ok else None
