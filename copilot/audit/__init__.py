"""The tamper-evident audit log: who asked what about which patient, with which model and knowledge."""

from __future__ import annotations

from copilot.audit.log import (
    DB_RELATIVE,
    GENESIS_HASH,
    AuditEntry,
    AuditError,
    AuditIntegrityError,
    AuditLog,
    NoAuditLog,
    VerifyResult,
    hash_payload,
)

__all__ = ["DB_RELATIVE", "GENESIS_HASH", "AuditEntry", "AuditError", "AuditIntegrityError", "AuditLog", "NoAuditLog",
           "VerifyResult", "hash_payload"]
