"""Append-only, hash-chained audit log of every request that touches patient data.

Storage: one SQLite database in WAL mode (``COPILOT_HOME/audit/audit.db``) with a key and a
head anchor beside it::

    audit.db     the entries table; triggers ABORT any UPDATE or DELETE and any INSERT that
                 does not extend the chain (seq = last + 1, prev_hash = last hash)
    audit.key    32 random bytes, mode 0600, created with the first log
    audit.head   {"seq", "hash"} of the newest entry, replaced atomically after each append

and a copy of the head anchor outside the audit folder (``COPILOT_HOME/audit.anchor`` by default,
``COPILOT_AUDIT_ANCHOR`` to put it on another volume), so that deleting or replacing the whole
audit folder is detected: a log that is missing, shorter than the anchor, or different at the
anchor's entry fails verification, and the server refuses to start a new chain over it.

Each entry stores ``prev_hash`` and ``hash = HMAC-SHA256(key, canonical JSON of every field,
seq, timestamp and prev_hash included)``. ``verify()`` recomputes the whole chain and names
the first bad entry: a field edited, an entry forged or inserted, deleted (a gap in seq, or a
prev_hash that links to nothing), reordered (a prev_hash that links to another entry), or the
tail truncated (the database ends before the head anchor).

Threat model, honestly:

* Protects against changes made through SQL or a database editor by someone who cannot read
  ``audit.key`` (a DBA, a restored or doctored copy of the database, a buggy tool): edits,
  inserts, deletions and reorderings anywhere in the chain are detected, even when the
  triggers are dropped first; so is cutting entries off the end, unless the anchor file is
  rewritten as well; so is a deleted database while its anchor remains, and a deleted or
  replaced audit folder while the external anchor remains.
* Does NOT protect against an attacker who can write the files and read the key (root, the
  service account): they can rewrite the chain, the anchor and all. Nor does it detect that
  the database, key and anchor were all replaced together with a fresh log. The defence is
  outside this machine: ship ``copilot audit head`` (seq and hash) to a separate system
  (SIEM, syslog server, a ticket) at regular intervals, and check against a kept head with
  ``copilot audit verify --expect-head SEQ:HASH``; export the entries themselves with
  ``copilot audit export``. Keeping the key on another volume (``key_path``) narrows who can
  read it.
* Confidentiality: entries hold no patient text, only ids, references and SHA-256 hashes of
  the request and response; the validation below rejects values that are not of that shape.
  The hashes are unsalted, so a short, guessable input can be confirmed by hashing a guess.

Durability: WAL with ``synchronous=FULL``, so the WAL is fsynced at every commit and an
append that returned survives a power cut (NORMAL would only survive a process crash). The
anchors are written (tmp file, fsync, rename) by a background thread right after the commits,
coalescing bursts, so an append costs one commit and not three fsynced files (37 ms against
7 ms on a busy disk); an anchor therefore trails the log by at most one write, never leads it,
and ``verify``, ``flush_anchors`` and ``close`` bring this process's anchors up to date.
Concurrency: every append is one ``BEGIN IMMEDIATE`` transaction (read the last seq and hash,
insert the next entry), which SQLite serializes across threads and processes; a generous
busy timeout makes writers wait rather than fail, so no entry is lost.
"""

from __future__ import annotations

import atexit
import contextlib
import fcntl
import hashlib
import hmac
import json
import logging
import math
import os
import random
import re
import secrets
import sqlite3
import threading
import time
import weakref
from collections.abc import Callable, Iterable, Iterator
from dataclasses import asdict, dataclass
from datetime import datetime, timezone
from pathlib import Path
from typing import Any, TypeVar

from copilot.files import fsync_dir, write_atomically

log = logging.getLogger(__name__)
T = TypeVar("T")

DB_RELATIVE = Path("audit") / "audit.db"
ANCHOR_RELATIVE = Path("audit.anchor")  # the external anchor: in the instance root, outside audit/
GENESIS_HASH = "0" * 64
KEY_BYTES = 32
BUSY_TIMEOUT_S = 30.0
OUTCOMES = ("success", "invalid", "denied", "cancelled", "error")  # invalid: refused as malformed (4xx)
MAX_NAME = 128
MAX_ID = 200
MAX_DETAIL = 300
MAX_SOURCES = 1000

HASH_RE = re.compile(r"^sha256:[0-9a-f]{64}$")
CHAIN_HASH_RE = re.compile(r"^[0-9a-f]{64}$")
# A FHIR relative reference, ResourceType/id: an identifier, never a name or free text.
PATIENT_REF_RE = re.compile(r"^[A-Z][A-Za-z]{1,63}/[A-Za-z0-9\-.]{1,64}$")
ID_RE = re.compile(r"^[A-Za-z0-9_.:/@+\-]{1,%d}$" % MAX_ID)
NAME_RE = re.compile(r"^[^\x00-\x1f\x7f]{1,%d}$" % MAX_NAME)
DETAIL_RE = re.compile(r"^[^\x00-\x1f\x7f]{1,%d}$" % MAX_DETAIL)

SCHEMA = f"""
CREATE TABLE IF NOT EXISTS entries (
    seq INTEGER PRIMARY KEY,
    timestamp TEXT NOT NULL,
    user TEXT NOT NULL,
    role TEXT NOT NULL,
    action TEXT NOT NULL,
    patient_ref TEXT,
    model_id TEXT,
    model_version TEXT,
    knowledge_snapshot TEXT,
    input_hash TEXT,
    output_hash TEXT,
    sources TEXT NOT NULL,
    tokens INTEGER,
    latency_ms REAL,
    outcome TEXT NOT NULL,
    detail TEXT,
    prev_hash TEXT NOT NULL,
    hash TEXT NOT NULL
);
CREATE TRIGGER IF NOT EXISTS entries_no_update BEFORE UPDATE ON entries
BEGIN SELECT RAISE(ABORT, 'audit log is append-only: UPDATE refused'); END;
CREATE TRIGGER IF NOT EXISTS entries_no_delete BEFORE DELETE ON entries
BEGIN SELECT RAISE(ABORT, 'audit log is append-only: DELETE refused'); END;
CREATE TRIGGER IF NOT EXISTS entries_append_at_head BEFORE INSERT ON entries
WHEN NEW.seq IS NOT (SELECT COALESCE(MAX(seq), 0) + 1 FROM entries)
  OR NEW.prev_hash IS NOT COALESCE((SELECT hash FROM entries ORDER BY seq DESC LIMIT 1), '{GENESIS_HASH}')
BEGIN SELECT RAISE(ABORT, 'audit log is append-only: INSERT must extend the chain'); END;
"""
COLUMNS = ("seq", "timestamp", "user", "role", "action", "patient_ref", "model_id", "model_version",
           "knowledge_snapshot", "input_hash", "output_hash", "sources", "tokens", "latency_ms", "outcome", "detail",
           "prev_hash", "hash")
QUOTED = ", ".join(f'"{c}"' for c in COLUMNS)  # quoted: "user" is a reserved word in PostgreSQL
SELECT = f"SELECT {QUOTED} FROM entries"
INSERT = f"INSERT INTO entries ({QUOTED}) VALUES ({', '.join('?' * len(COLUMNS))})"


class AuditError(Exception):
    """The audit log cannot be opened or written."""


class NoAuditLog(AuditError):
    """There is no audit log at the path (and nothing says there ever was)."""


class AuditIntegrityError(AuditError):
    """The files around the log contradict each other: a missing key or database, a broken anchor,
    a database file that SQLite cannot read."""


def canonical_json(obj: Any) -> bytes:
    """Sorted, compact, UTF-8; a lone surrogate is encoded as it is rather than failing the hash."""
    return json.dumps(obj, sort_keys=True, separators=(",", ":"), ensure_ascii=False,
                      allow_nan=False).encode("utf-8", "surrogatepass")


def hash_payload(obj: Any) -> str:
    """``sha256:<hex>`` of a request or response: bytes as they are, str as UTF-8, else canonical JSON."""
    if isinstance(obj, (bytes, bytearray, memoryview)):
        data = bytes(obj)
    elif isinstance(obj, str):
        data = obj.encode("utf-8", "surrogatepass")  # a lone surrogate is hashed, never a reason to fail
    else:
        try:
            data = canonical_json(obj)
        except (TypeError, ValueError) as exc:
            raise TypeError(f"hash_payload: not JSON-serializable: {exc}") from None
    return "sha256:" + hashlib.sha256(data).hexdigest()


@dataclass(frozen=True)
class AuditEntry:
    seq: int
    timestamp: str
    user: str
    role: str
    action: str
    patient_ref: str | None
    model_id: str | None
    model_version: str | None
    knowledge_snapshot: str | None
    input_hash: str | None
    output_hash: str | None
    sources: tuple[str, ...]
    tokens: int | None
    latency_ms: float | None
    outcome: str
    detail: str | None
    prev_hash: str
    hash: str

    def to_dict(self) -> dict[str, Any]:
        data = asdict(self)
        data["sources"] = list(self.sources)
        return data

    def hashed_fields(self) -> dict[str, Any]:
        data = self.to_dict()
        del data["hash"]
        return data

    @classmethod
    def from_row(cls, row: tuple) -> AuditEntry:
        data = dict(zip(COLUMNS, row))
        try:
            sources = json.loads(data["sources"])
        except (TypeError, ValueError):
            sources = [f"<unreadable: {data['sources']!r:.80}>"]
        data["sources"] = tuple(sources) if isinstance(sources, list) else (str(sources),)
        return cls(**data)


@dataclass(frozen=True)
class VerifyResult:
    ok: bool
    count: int
    first_bad: int | None
    reason: str
    head: tuple[int, str] | None = None


class _Ticket:
    """One append waiting for its group commit."""

    __slots__ = ("values", "entry", "error", "done")

    def __init__(self, values: dict[str, Any]):
        self.values = values
        self.entry: AuditEntry | None = None
        self.error: BaseException | None = None
        self.done = False


def chain_hash(key: bytes, entry_fields: dict[str, Any]) -> str:
    return hmac.new(key, canonical_json(entry_fields), hashlib.sha256).hexdigest()


def _name(field: str, value: Any) -> str:
    if not isinstance(value, str) or not NAME_RE.match(value) or not value.strip():
        raise ValueError(f"audit {field}: a non-empty single-line string of at most {MAX_NAME} characters, "
                         f"got {value!r:.80}")
    return value


def _identifier(field: str, value: Any) -> str | None:
    if value is None:
        return None
    if not isinstance(value, str) or not ID_RE.match(value):
        raise ValueError(f"audit {field}: an identifier (letters, digits, _.:/@+-, at most {MAX_ID} characters, "
                         f"no spaces), got {value!r:.80}")
    return value


def _payload_hash(field: str, value: Any) -> str | None:
    if value is None:
        return None
    if not isinstance(value, str) or not HASH_RE.match(value):
        raise ValueError(f"audit {field}: must be hash_payload(...) output ('sha256:' + 64 hex digits), never the "
                         f"text itself; got {value!r:.40}")
    return value


def _validated(user, role, action, patient_ref, model_id, model_version, knowledge_snapshot, input_hash,
               output_hash, sources, tokens, latency_ms, outcome, detail) -> dict[str, Any]:
    """The caller's values, checked so that no free text (a patient's words) can enter the log."""
    if patient_ref is not None and (not isinstance(patient_ref, str) or not PATIENT_REF_RE.match(patient_ref)):
        raise ValueError(f"audit patient_ref: a FHIR reference like 'Patient/123' or None, got {patient_ref!r:.80}")
    if isinstance(sources, (str, bytes)) or not isinstance(sources, Iterable):
        raise ValueError(f"audit sources: a list of knowledge item ids, got {type(sources).__name__}")
    sources = tuple(sources)
    if len(sources) > MAX_SOURCES:
        raise ValueError(f"audit sources: at most {MAX_SOURCES} ids, got {len(sources)}")
    for source in sources:
        _identifier("sources", source)
    if tokens is not None and (isinstance(tokens, bool) or not isinstance(tokens, int) or tokens < 0):
        raise ValueError(f"audit tokens: a non-negative int or None, got {tokens!r}")
    if latency_ms is not None:
        if isinstance(latency_ms, bool) or not isinstance(latency_ms, (int, float)) \
                or not math.isfinite(latency_ms) or latency_ms < 0:
            raise ValueError(f"audit latency_ms: a non-negative finite number or None, got {latency_ms!r}")
        latency_ms = round(float(latency_ms), 3)
    if outcome not in OUTCOMES:
        raise ValueError(f"audit outcome: one of {', '.join(OUTCOMES)}, got {outcome!r}")
    if detail is not None and (not isinstance(detail, str) or not DETAIL_RE.match(detail)):
        raise ValueError(f"audit detail: a short single-line string (at most {MAX_DETAIL} characters) or None")
    return {
        "user": _name("user", user), "role": _name("role", role), "action": _name("action", action),
        "patient_ref": patient_ref, "model_id": _identifier("model_id", model_id),
        "model_version": _identifier("model_version", model_version),
        "knowledge_snapshot": _identifier("knowledge_snapshot", knowledge_snapshot),
        "input_hash": _payload_hash("input_hash", input_hash), "output_hash": _payload_hash("output_hash", output_hash),
        "sources": sources, "tokens": tokens, "latency_ms": latency_ms, "outcome": outcome, "detail": detail,
    }


class AuditLog:
    """The audit log at ``path``; one instance may be shared by every thread of a process.

    Appends from any number of threads and processes are serialized by SQLite; reads use
    their own short-lived connections, so exporting a long log never blocks requests.
    """

    TABLE = "entries"  # the shared store (copilot.audit.shared) names its table audit_entries
    SELECT, INSERT = SELECT, INSERT

    def __init__(self, path: str | os.PathLike, key_path: str | os.PathLike | None = None, create: bool = True,
                 anchor_path: str | os.PathLike | None = None):
        """``anchor_path``: the copy of the head anchor kept outside the audit folder (None: none).
        ``create``: start a new log where none exists (the server); False for readers (verify)."""
        self.path = Path(path)
        self.key_path = Path(key_path) if key_path else self.path.with_suffix(".key")
        self.head_path = self.path.with_suffix(".head")
        self.anchor_path = Path(anchor_path) if anchor_path else None
        self._lock_path = self.path.with_suffix(".head.lock")
        self._init_state()
        if not self.path.exists():
            for label, anchor_file, anchor in self._anchors():
                if anchor and anchor[0] > 0:
                    raise AuditIntegrityError(
                        f"audit database {self.path} is missing but {label} {anchor_file} records {anchor[0]} "
                        "entries: the log was deleted or moved; restore it from backup (refusing to start a new "
                        "log over it)")
            if not create:
                raise NoAuditLog(f"no audit log at {self.path}")
        self.path.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
        os.close(os.open(self.path, os.O_RDWR | os.O_CREAT, 0o600))  # SQLite gives its -wal and -shm files these modes
        try:
            with self._write_lock() as conn:
                conn.execute("BEGIN IMMEDIATE")
                try:
                    for statement in _statements(SCHEMA):
                        conn.execute(statement)
                    last_seq = conn.execute("SELECT COALESCE(MAX(seq), 0) FROM entries").fetchone()[0]
                    conn.execute("COMMIT")
                except BaseException:
                    with contextlib.suppress(sqlite3.Error):
                        conn.execute("ROLLBACK")
                    raise
        except sqlite3.DatabaseError as exc:
            self.close()
            raise self._unreadable(exc) from None
        self._key = self._load_key(empty=last_seq == 0)
        if create:
            for label, anchor_file, anchor in self._anchors():
                if anchor and anchor[0] > last_seq:
                    raise AuditIntegrityError(
                        f"the audit log ends at entry {last_seq} but {label} {anchor_file} records {anchor[0]}: "
                        "entries were cut off or the log was replaced; restore it from backup and run "
                        "`copilot audit verify` (refusing to extend it)")
        if last_seq == 0 and not self.head_path.exists():
            self._advance_anchor(0, GENESIS_HASH, create=True)
        elif create and self.anchor_path is not None and not self.anchor_path.exists():
            self._copy_anchor_outside()

    def _init_state(self) -> None:
        self._lock = threading.Lock()
        self._pending: list[_Ticket] = []  # appends waiting for the next group commit
        self._pending_lock = threading.Lock()
        self._anchor_cond = threading.Condition()
        self._anchor_due: tuple[int, str] | None = None  # the newest (seq, hash) the anchors still lack
        self._anchor_busy = False
        self._anchor_writer: tuple[int, threading.Thread] | None = None  # (pid, thread)
        self._conn: Any = None
        self._conn_pid = 0

    @classmethod
    def for_home(cls, home: str | os.PathLike, **kwargs) -> AuditLog:
        """The log of an instance directory, with its external anchor in the instance root unless
        ``anchor_path`` says elsewhere."""
        kwargs.setdefault("anchor_path", Path(home) / ANCHOR_RELATIVE)
        return cls(Path(home) / DB_RELATIVE, **kwargs)

    def _unreadable(self, exc: sqlite3.DatabaseError) -> AuditError:
        """A SQLite error as the audit error it means: a damaged file, or one that cannot be read now."""
        if isinstance(exc, sqlite3.OperationalError):
            return AuditError(f"audit database {self.path} cannot be read: {exc}")
        return AuditIntegrityError(f"audit database {self.path} is damaged ({exc}): it was truncated, overwritten "
                                   "or corrupted; restore it from backup")

    # -- connections -------------------------------------------------------------------

    def _connect(self) -> sqlite3.Connection:
        conn = sqlite3.connect(self.path, timeout=BUSY_TIMEOUT_S, isolation_level=None, check_same_thread=False)
        conn.execute(f"PRAGMA busy_timeout = {int(BUSY_TIMEOUT_S * 1000)}")
        mode = _retry_busy(lambda: _wal(conn))
        if mode != "wal":
            conn.close()
            raise AuditError(f"audit database {self.path}: cannot switch to WAL (journal_mode={mode})")
        conn.execute("PRAGMA synchronous = FULL")
        return conn

    @contextlib.contextmanager
    def _write_lock(self) -> Iterator[sqlite3.Connection]:
        with self._lock:
            if self._conn is None or self._conn_pid != os.getpid():  # a forked child gets its own connection
                self._conn = self._connect()
                self._conn_pid = os.getpid()
            yield self._conn

    @contextlib.contextmanager
    def _reader(self) -> Iterator[sqlite3.Connection]:
        try:
            conn = self._connect()
        except sqlite3.DatabaseError as exc:
            raise self._unreadable(exc) from None
        try:
            yield conn
        except sqlite3.DatabaseError as exc:
            raise self._unreadable(exc) from None
        finally:
            conn.close()

    def close(self) -> None:
        self.flush_anchors()
        with self._lock:
            if self._conn is not None and self._conn_pid == os.getpid():
                self._conn.close()
            self._conn = None

    # -- key and head anchor -------------------------------------------------------------

    def _load_key(self, empty: bool) -> bytes:
        if not self.key_path.exists():
            if not empty:
                raise AuditIntegrityError(f"audit key {self.key_path} is missing but the log has entries; "
                                          "restore the key (without it the chain cannot be verified or extended)")
            self.key_path.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
            tmp = self.key_path.with_name(f".{self.key_path.name}.{os.getpid()}.{threading.get_ident()}.tmp")
            fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
            try:
                os.write(fd, secrets.token_bytes(KEY_BYTES))
                os.fsync(fd)
            finally:
                os.close(fd)
            try:
                os.link(tmp, self.key_path)  # fails if another process created the key first; theirs wins
                fsync_dir(self.key_path.parent)
            except FileExistsError:
                pass
            finally:
                tmp.unlink()
        key = self.key_path.read_bytes()
        if len(key) != KEY_BYTES:
            raise AuditIntegrityError(f"audit key {self.key_path}: expected {KEY_BYTES} bytes, found {len(key)}")
        if self.key_path.stat().st_mode & 0o077:
            log.warning("audit key %s is readable by group or others; chmod 600 it", self.key_path)
        return key

    def _read_anchor(self, path: Path | None = None) -> tuple[int, str]:
        """A head anchor (default: the one beside the database); AuditIntegrityError if it is
        missing or unreadable."""
        path = path or self.head_path
        try:
            data = json.loads(path.read_text())
            seq, digest = data["seq"], data["hash"]
        except FileNotFoundError:
            raise AuditIntegrityError(f"head anchor {path} is missing") from None
        except (OSError, ValueError, TypeError, KeyError) as exc:
            raise AuditIntegrityError(f"head anchor {path} is unreadable: {exc}") from None
        if isinstance(seq, bool) or not isinstance(seq, int) or seq < 0 or not isinstance(digest, str) \
                or not CHAIN_HASH_RE.match(digest):
            raise AuditIntegrityError(f"head anchor {path} is malformed: {data!r:.200}")
        return seq, digest

    def _anchors(self) -> list[tuple[str, Path, tuple[int, str] | None]]:
        """(label, file, (seq, hash) or None when absent or unreadable) for each anchor."""
        found = []
        for label, path in (("its head anchor", self.head_path), ("the external anchor", self.anchor_path)):
            if path is not None:
                try:
                    found.append((label, path, self._read_anchor(path)))
                except AuditIntegrityError:
                    found.append((label, path, None))
        return found

    def _copy_anchor_outside(self) -> None:
        """An instance from before the external anchor: start it from the anchor beside the log."""
        try:
            anchor = self._read_anchor()
        except AuditIntegrityError as exc:
            log.error("%s; the external anchor %s is not created from it", exc, self.anchor_path)
            return
        log.warning("audit: creating the external anchor %s from %s (seq %d)", self.anchor_path, self.head_path,
                    anchor[0])
        self._write_anchor(self.anchor_path, *anchor)

    def _advance_anchor(self, seq: int, digest: str, create: bool = False) -> None:
        """Move the anchors forward to (seq, digest), never back: appends in other processes may finish out of order.

        A missing or broken anchor is left as it is (verify reports it) rather than silently re-created,
        which would hide a truncation. A failed write is logged, not raised: the entry is committed,
        and an anchor that lags behind the log is still consistent with it.
        """
        with open(os.open(self._lock_path, os.O_RDWR | os.O_CREAT, 0o600)) as lock_file:
            fcntl.flock(lock_file, fcntl.LOCK_EX)
            try:
                for path in filter(None, (self.head_path, self.anchor_path)):
                    if not path.exists():
                        if not create:
                            log.error("audit head anchor %s is missing; not re-creating it (run `copilot audit "
                                      "verify`)", path)
                            continue
                    else:
                        try:
                            current = self._read_anchor(path)
                        except AuditIntegrityError as exc:
                            log.error("%s; not overwriting it (run `copilot audit verify`)", exc)
                            continue
                        if current[0] >= seq:
                            continue
                    self._write_anchor(path, seq, digest)
            finally:
                fcntl.flock(lock_file, fcntl.LOCK_UN)

    @staticmethod
    def _write_anchor(path: Path, seq: int, digest: str) -> None:
        try:
            path.parent.mkdir(parents=True, exist_ok=True)
            write_atomically(path, canonical_json({"seq": seq, "hash": digest}) + b"\n")
        except OSError as exc:
            log.error("audit head anchor %s not advanced to %d: %s", path, seq, exc)

    # -- writing -----------------------------------------------------------------------

    def append(self, *, user: str, role: str, action: str, patient_ref: str | None = None,
               model_id: str | None = None, model_version: str | None = None, knowledge_snapshot: str | None = None,
               input_hash: str | None = None, output_hash: str | None = None, sources: Iterable[str] = (),
               tokens: int | None = None, latency_ms: float | None = None, outcome: str = "success",
               detail: str | None = None) -> AuditEntry:
        """Append one entry; when this returns the entry is committed and fsynced. ValueError on bad input.

        Group commit: entries that threads of this process append while a commit is under way
        wait for it, then the first of them commits them all in one transaction and one fsync,
        in the order they arrived; each caller still returns only once its entry is durable."""
        values = _validated(user, role, action, patient_ref, model_id, model_version, knowledge_snapshot, input_hash,
                            output_hash, sources, tokens, latency_ms, outcome, detail)
        ticket = _Ticket(values)
        with self._pending_lock:
            self._pending.append(ticket)
        with self._write_lock() as conn:
            if not ticket.done:
                with self._pending_lock:
                    batch, self._pending = self._pending, []
                self._commit(conn, batch)
        if ticket.error is not None:
            raise ticket.error
        return ticket.entry

    def _commit(self, conn: sqlite3.Connection, batch: list[_Ticket]) -> None:
        """One transaction for ``batch``, chained in order; every ticket gets its entry or the error."""
        try:
            conn.execute(self.BEGIN_WRITE)
            try:
                seq, prev_hash = self._locked_head(conn)
                for ticket in batch:
                    seq += 1
                    timestamp = datetime.now(timezone.utc).isoformat(timespec="microseconds")
                    unsigned = {"seq": seq, "timestamp": timestamp, **ticket.values,
                                "sources": list(ticket.values["sources"]), "prev_hash": prev_hash}
                    prev_hash = chain_hash(self._key, unsigned)
                    ticket.entry = AuditEntry(**{**unsigned, "sources": ticket.values["sources"], "hash": prev_hash})
                    record = ticket.entry.to_dict()
                    record["sources"] = json.dumps(record["sources"], ensure_ascii=False)
                    conn.execute(self.INSERT, [record[c] for c in COLUMNS])
                conn.execute("COMMIT")
            except BaseException:
                with contextlib.suppress(Exception):
                    conn.execute("ROLLBACK")
                raise
        except BaseException as exc:
            interrupted = not isinstance(exc, Exception)  # KeyboardInterrupt and the like: this thread's alone
            for ticket in batch:
                ticket.entry, ticket.done = None, True
                ticket.error = AuditError(f"the commit was interrupted ({type(exc).__name__})") if interrupted else exc
            if interrupted:
                raise
            return
        for ticket in batch:
            ticket.done = True
        self._anchor_soon(batch[-1].entry.seq, batch[-1].entry.hash)

    BEGIN_WRITE = "BEGIN IMMEDIATE"  # SQLite: take the write lock now, before reading the head

    def _locked_head(self, conn) -> tuple[int, str]:
        """(seq, hash) of the last entry, read inside the write transaction that serialises appends."""
        row = conn.execute("SELECT seq, hash FROM entries ORDER BY seq DESC LIMIT 1").fetchone()
        return (row[0], row[1]) if row else (0, GENESIS_HASH)

    # -- anchors written behind the appends ------------------------------------------------

    def _anchor_soon(self, seq: int, digest: str) -> None:
        with self._anchor_cond:
            if self._anchor_due is None or seq > self._anchor_due[0]:
                self._anchor_due = (seq, digest)
            if self._anchor_writer is None or self._anchor_writer[0] != os.getpid() \
                    or not self._anchor_writer[1].is_alive():
                thread = threading.Thread(target=self._write_anchors, name="audit-anchor", daemon=True)
                self._anchor_writer = (os.getpid(), thread)
                thread.start()
                atexit.register(_flush_at_exit, weakref.ref(self))
            self._anchor_cond.notify_all()

    def _write_anchors(self) -> None:
        while True:
            with self._anchor_cond:
                while self._anchor_due is None:
                    self._anchor_cond.wait()
                due, self._anchor_due, self._anchor_busy = self._anchor_due, None, True
            try:
                self._advance_anchor(*due)
            except Exception:  # noqa: BLE001  the writer must outlive one failure; the next append retries
                log.exception("audit anchors not advanced to %d", due[0])
            finally:
                with self._anchor_cond:
                    self._anchor_busy = False
                    self._anchor_cond.notify_all()

    def flush_anchors(self, timeout: float = 60.0) -> bool:
        """Wait until the anchors hold this process's newest entry; False if that took too long."""
        deadline = time.monotonic() + timeout
        with self._anchor_cond:
            while self._anchor_due is not None or self._anchor_busy:
                left = deadline - time.monotonic()
                if left <= 0 or self._anchor_writer is None or not self._anchor_writer[1].is_alive():
                    return False
                self._anchor_cond.wait(left)
        return True

    # -- reading -----------------------------------------------------------------------

    def entries(self, after_seq: int = 0, limit: int | None = None) -> Iterator[AuditEntry]:
        """Entries with seq > after_seq, oldest first."""
        if limit is not None and limit < 0:
            raise ValueError("limit must be >= 0")
        with self._reader() as conn:
            if limit is None:
                cursor = conn.execute(f"{self.SELECT} WHERE seq > ? ORDER BY seq", (after_seq,))
            else:
                cursor = conn.execute(f"{self.SELECT} WHERE seq > ? ORDER BY seq LIMIT ?", (after_seq, limit))
            for row in cursor:
                yield AuditEntry.from_row(row)

    def head(self) -> tuple[int, str]:
        """(seq, hash) of the newest entry; (0, GENESIS_HASH) when the log is empty."""
        with self._reader() as conn:
            row = conn.execute(f"SELECT seq, hash FROM {self.TABLE} ORDER BY seq DESC LIMIT 1").fetchone()
        return (row[0], row[1]) if row else (0, GENESIS_HASH)

    def count(self) -> int:
        with self._reader() as conn:
            return conn.execute(f"SELECT COUNT(*) FROM {self.TABLE}").fetchone()[0]

    def verify(self, expect_head: tuple[int, str] | None = None) -> VerifyResult:
        """Recompute the chain; the first bad entry and why, or ok.

        ``expect_head`` is a (seq, hash) kept outside this machine: the log must contain it.
        """
        self.flush_anchors()
        count = 0
        try:
            self._check_file_size()
            # Anchors are read before the entries: an anchor never runs ahead of the database.
            references = [("the head anchor", self._read_anchor())]
            if self.anchor_path is not None:
                references.append(("the external anchor", self._read_anchor(self.anchor_path)))
            if expect_head:
                references.append(("the expected head", expect_head))
            wanted = {seq for _, (seq, _) in references}
            count, expected_seq, previous = 0, 1, None
            head: tuple[int, str] = (0, GENESIS_HASH)
            at: dict[int, str] = {}
            with self._reader() as conn:
                for row in conn.execute(f"{self.SELECT} ORDER BY seq"):
                    entry = AuditEntry.from_row(row)
                    count += 1
                    problem = self._check(conn, entry, expected_seq, previous)
                    if problem:
                        first_bad, reason = problem
                        return VerifyResult(False, count, first_bad, reason, head)
                    if entry.seq in wanted:
                        at[entry.seq] = entry.hash
                    previous, expected_seq, head = entry, entry.seq + 1, (entry.seq, entry.hash)
        except AuditError as exc:  # a missing anchor, or a database SQLite cannot read to the end
            after = f" (after {count} readable entries)" if count else ""
            return VerifyResult(False, count, None, f"{exc}{after}")
        for label, (ref_seq, ref_hash) in references:
            if ref_seq > head[0]:
                missing = f"entry {head[0] + 1}" if ref_seq == head[0] + 1 else f"entries {head[0] + 1}..{ref_seq}"
                return VerifyResult(False, count, head[0] + 1, f"the log ends at seq {head[0]} but {label} records "
                                    f"seq {ref_seq}: {missing} deleted (tail truncated, or the log replaced)", head)
            if ref_seq > 0 and at.get(ref_seq) != ref_hash:
                return VerifyResult(False, count, ref_seq, f"entry {ref_seq} does not match {label}'s hash (the log "
                                    "was rewritten or replaced)", head)
        anchors = "head anchors" if self.anchor_path is not None else "head anchor"
        return VerifyResult(True, count, None, f"{count} entries, chain and {anchors} intact", head)

    def _check_file_size(self) -> None:
        """A database file shorter than its own header says was cut off: SQLite may still read
        some of it, and the entries it returns would otherwise look edited rather than lost."""
        try:
            with self.path.open("rb") as handle:
                header = handle.read(100)
            size = self.path.stat().st_size
        except OSError as exc:
            raise AuditError(f"audit database {self.path} cannot be read: {exc}") from None
        if len(header) < 100 or not header.startswith(b"SQLite format 3\x00"):
            return  # empty (a new log) or not SQLite at all: reading it says which
        page_size = int.from_bytes(header[16:18], "big")
        page_size = 65536 if page_size == 1 else page_size
        pages, valid_for, changes = (int.from_bytes(header[i:i + 4], "big") for i in (28, 92, 24))
        if pages and valid_for == changes and size < page_size * pages:
            raise AuditIntegrityError(f"audit database {self.path} is damaged: the file holds {size} of the "
                                      f"{page_size * pages} bytes its header records (truncated); restore it from "
                                      "backup")

    def _check(self, conn, entry: AuditEntry, expected_seq: int,
               previous: AuditEntry | None) -> tuple[int, str] | None:
        seq = entry.seq
        if seq != expected_seq:
            if seq < expected_seq:  # seq 0 or below: forced in ahead of the first entry
                return seq, f"entry {seq} precedes the first entry (inserted)"
            missing = (f"entry {expected_seq} is" if seq == expected_seq + 1
                       else f"entries {expected_seq}..{seq - 1} are")
            after = f"seq {previous.seq}" if previous else "the start of the log"
            return expected_seq, f"{missing} missing: seq jumps from {after} to {seq} (deleted)"
        prev_hash = previous.hash if previous else GENESIS_HASH
        if entry.prev_hash != prev_hash:
            linked = conn.execute(f"SELECT seq FROM {self.TABLE} WHERE hash = ? AND seq != ?",
                                  (entry.prev_hash, seq)).fetchone()
            before = f"entry {previous.seq}" if previous else "the start of the log"
            if linked:
                return seq, (f"entry {seq} links to the entry now at seq {linked[0]}, not to {before}: "
                             "entries were reordered")
            return seq, (f"entry {seq} does not link to {before}: an entry before it was deleted, "
                         "or it was inserted (prev_hash mismatch)")
        try:
            expected = chain_hash(self._key, entry.hashed_fields())
        except ValueError as exc:
            return seq, f"entry {seq} holds a value that cannot be hashed ({exc}): edited"
        if not hmac.compare_digest(expected, entry.hash):
            return seq, (f"entry {seq}: its contents do not match its hash: a field was edited, "
                         "or the entry was forged or inserted without the key")
        return None


def _flush_at_exit(ref: weakref.ReferenceType) -> None:
    audit_log = ref()
    if audit_log is not None:
        audit_log.flush_anchors(timeout=10)


def _wal(conn: sqlite3.Connection) -> str:
    mode = conn.execute("PRAGMA journal_mode").fetchone()[0].lower()
    return mode if mode == "wal" else conn.execute("PRAGMA journal_mode = WAL").fetchone()[0].lower()


def _retry_busy(operation: Callable[[], T]) -> T:
    """Retry an operation that SQLite fails with 'database is locked' without calling the busy handler.

    Switching a new database to WAL is one: processes opening a fresh log at the same moment get
    SQLITE_BUSY at once instead of waiting for each other.
    """
    deadline = time.monotonic() + BUSY_TIMEOUT_S
    while True:
        try:
            return operation()
        except sqlite3.OperationalError as exc:
            if "locked" not in str(exc) or time.monotonic() > deadline:
                raise
            time.sleep(random.uniform(0.005, 0.05))


def _statements(script: str) -> list[str]:
    """SCHEMA split into statements (CREATE TRIGGER bodies contain ';', so split on the closing END;)."""
    statements, current = [], []
    for line in script.strip().splitlines():
        current.append(line)
        text = "\n".join(current).strip()
        if sqlite3.complete_statement(text):
            statements.append(text)
            current = []
    return statements

