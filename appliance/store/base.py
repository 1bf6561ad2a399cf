"""What every part of the store shares: the one connection, its write lock, transactions."""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import aiosqlite

from appliance.errors import CallvaultError


class StoreError(CallvaultError):
    pass


@dataclass(frozen=True)
class AuditEntry:
    at: float
    actor: str
    role: str
    action: str
    object: str
    purpose: str
    detail: str = ""


# (entry, seq, prev_hash) -> hash; computed inside the appending transaction.
AuditSeal = Callable[[AuditEntry, int, str], str]
AUDIT_GENESIS = "0" * 64


class StoreBase:
    """The connection and the write discipline. SQL lives in Database and its mixins."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self._db: aiosqlite.Connection | None = None
        # One connection serves every task: writes must not interleave inside a transaction.
        self._write_lock = asyncio.Lock()

    @property
    def db(self) -> aiosqlite.Connection:
        if self._db is None:
            raise StoreError("database is not open")
        return self._db

    async def _tx(self, body: Callable[[], Any]) -> Any:
        """Run `body` (a coroutine function) in one write transaction under the write lock."""
        async with self._write_lock:
            await self.db.execute("BEGIN IMMEDIATE")
            try:
                result = await body()
                await self.db.commit()
            except BaseException:
                await self.db.rollback()
                raise
            return result

    async def checkpoint(self) -> None:
        """Fold the WAL into the database file and truncate it (erased pages leave the WAL)."""
        async with self._write_lock:
            await self.db.execute("PRAGMA wal_checkpoint(TRUNCATE)")

    # ---- the audit chain's append, shared so every area can audit inside its own write
    async def _audit_append(self, entry: AuditEntry, seal: AuditSeal) -> int:
        # Inside a transaction (BEGIN IMMEDIATE): reading the head and appending are atomic
        # even across processes.
        async with self.db.execute(
            "SELECT seq, hash FROM audit_log ORDER BY seq DESC LIMIT 1"
        ) as cur:
            head = await cur.fetchone()
        seq, prev = (int(head[0]) + 1, str(head[1])) if head else (1, AUDIT_GENESIS)
        await self.db.execute(
            "INSERT INTO audit_log (seq, at, actor, role, action, object, purpose, detail,"
            " prev_hash, hash) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
            (
                seq,
                entry.at,
                entry.actor,
                entry.role,
                entry.action,
                entry.object,
                entry.purpose,
                entry.detail,
                prev,
                seal(entry, seq, prev),
            ),
        )
        return seq

    async def audit_append(self, entry: AuditEntry, seal: AuditSeal) -> int:
        return int(await self._tx(lambda: self._audit_append(entry, seal)))
