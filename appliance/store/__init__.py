"""SQLite state (aiosqlite, WAL). `appliance.store.db` is the one module that owns SQL."""

from appliance.store.db import CdrRow, Database, RecordingRow, StoreError

__all__ = ["CdrRow", "Database", "RecordingRow", "StoreError"]
