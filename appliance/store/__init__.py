"""SQLite state (aiosqlite, WAL). `appliance.store.db` is the one module that owns SQL."""

from appliance.store.base import AuditEntry, AuditSeal, StoreError
from appliance.store.db import (
    CdrRow,
    Database,
    DncEntry,
    ErasurePlan,
    RecordingRow,
    StaleKeyError,
    SubjectDraft,
)

__all__ = [
    "AuditEntry",
    "AuditSeal",
    "CdrRow",
    "Database",
    "DncEntry",
    "ErasurePlan",
    "RecordingRow",
    "StaleKeyError",
    "StoreError",
    "SubjectDraft",
]
