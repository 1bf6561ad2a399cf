"""What every part of the store shares: the one connection, its write lock, transactions."""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from pathlib import Path
from typing import Any

import aiosqlite

from appliance.errors import CallvaultError


class StoreError(CallvaultError):
    pass


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
