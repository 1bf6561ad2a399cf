"""The appliance database: aiosqlite in WAL mode, versioned migrations, and all of its SQL.

Nothing else in the code base writes SQL. Every write commits before it returns, so a row the
appliance has acknowledged survives a killed process.
"""

from __future__ import annotations

import asyncio
import sqlite3
import time
from collections.abc import Sequence
from dataclasses import asdict, dataclass
from importlib import resources
from pathlib import Path
from types import TracebackType
from typing import Any

import aiosqlite

from appliance.errors import CallvaultError


class StoreError(CallvaultError):
    pass


@dataclass(frozen=True)
class CdrRow:
    call_id: str
    uniqueid: str
    sequence: int
    calling_number: str
    caller_name: str
    dialed_number: str
    context: str
    direction: str
    line: str | None
    start_at: float
    answer_at: float | None
    end_at: float
    duration_s: int
    billable_s: int
    disposition: str
    hangup_cause: int | None
    hangup_cause_text: str
    channel: str
    dest_channel: str
    last_app: str
    source: str


@dataclass(frozen=True)
class RecordingRow:
    call_id: str
    line: str
    leg: str
    path: str
    format: str
    duration_s: float
    size_bytes: int
    sha256: str
    flags: str = ""


@dataclass(frozen=True)
class CallRow:
    id: str
    line: str | None
    direction: str
    calling_number: str
    caller_name: str
    dialed_number: str
    started_at: float
    answered_at: float | None
    ended_at: float | None
    disposition: str
    flags: str


def _migrations() -> list[tuple[int, str]]:
    found = []
    for entry in resources.files("appliance.store.migrations").iterdir():
        name = entry.name
        if name.endswith(".sql"):
            found.append((int(name.split("_", 1)[0]), entry.read_text()))
    return sorted(found)


class Database:
    def __init__(self, path: Path) -> None:
        self.path = path
        self._db: aiosqlite.Connection | None = None
        # One connection serves every task: writes must not interleave inside a transaction.
        self._write_lock = asyncio.Lock()

    async def open(self) -> Database:
        try:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            self._db = await aiosqlite.connect(self.path)
        except (OSError, sqlite3.Error) as exc:
            raise StoreError(f"cannot open database {self.path}: {exc}") from exc
        try:
            self._db.row_factory = aiosqlite.Row
            await self._db.execute("PRAGMA journal_mode=WAL")
            # FULL: an acknowledged CDR must survive power loss, not only a process crash.
            await self._db.execute("PRAGMA synchronous=FULL")
            await self._db.execute("PRAGMA foreign_keys=ON")
            await self._db.execute("PRAGMA busy_timeout=5000")
            await self._migrate()
        except BaseException:
            await self.close()
            raise
        return self

    async def close(self) -> None:
        if self._db is not None:
            await self._db.close()
            self._db = None

    async def __aenter__(self) -> Database:
        return await self.open()

    async def __aexit__(
        self, t: type[BaseException] | None, e: BaseException | None, tb: TracebackType | None
    ) -> None:
        await self.close()

    @property
    def db(self) -> aiosqlite.Connection:
        if self._db is None:
            raise StoreError("database is not open")
        return self._db

    async def schema_version(self) -> int:
        async with self.db.execute("PRAGMA user_version") as cur:
            row = await cur.fetchone()
        return int(row[0]) if row else 0

    async def _migrate(self) -> None:
        current = await self.schema_version()
        migrations = _migrations()
        newest = migrations[-1][0] if migrations else 0
        if current > newest:
            raise StoreError(
                f"database {self.path} has schema {current}, newer than this version knows "
                f"({newest}); refusing to downgrade"
            )
        for version, sql in migrations:
            if version <= current:
                continue
            # One transaction per migration: a failure leaves the previous version intact.
            await self.db.execute("BEGIN IMMEDIATE")
            try:
                for statement in _split_sql(sql):
                    await self.db.execute(statement)
                await self.db.execute(f"PRAGMA user_version={version:d}")
                await self.db.commit()
            except Exception:
                await self.db.rollback()
                raise

    # ---- lines
    async def sync_lines(self, lines: Sequence[tuple[str, str, str, Sequence[str]]]) -> None:
        async with self._write_lock:
            await self._sync_lines(lines)

    async def _sync_lines(self, lines: Sequence[tuple[str, str, str, Sequence[str]]]) -> None:
        now = time.time()
        await self.db.execute("BEGIN IMMEDIATE")
        try:
            await self.db.execute("DELETE FROM lines")
            await self.db.executemany(
                "INSERT INTO lines (name, extension, kind, record_legs, updated_at) "
                "VALUES (?, ?, ?, ?, ?)",
                [(n, e, k, ",".join(legs), now) for n, e, k, legs in lines],
            )
            await self.db.commit()
        except Exception:
            await self.db.rollback()
            raise

    async def lines(self) -> list[dict[str, Any]]:
        async with self.db.execute("SELECT * FROM lines ORDER BY extension") as cur:
            return [dict(r) for r in await cur.fetchall()]

    # ---- CDRs and calls
    async def add_cdr(self, cdr: CdrRow) -> bool:
        """Store a CDR and fold it into its call; False if it was already stored."""
        async with self._write_lock:
            return await self._add_cdr(cdr)

    async def _add_cdr(self, cdr: CdrRow) -> bool:
        await self.db.execute("BEGIN IMMEDIATE")
        try:
            cur = await self.db.execute(
                "INSERT OR IGNORE INTO calls (id, line, direction, calling_number, caller_name,"
                " dialed_number, started_at, answered_at, ended_at, disposition, flags)"
                " VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
                (
                    cdr.call_id,
                    cdr.line,
                    cdr.direction,
                    cdr.calling_number,
                    cdr.caller_name,
                    cdr.dialed_number,
                    cdr.start_at,
                    cdr.answer_at,
                    cdr.end_at,
                    cdr.disposition,
                    "reconciled" if cdr.source == "reconciled" else "",
                ),
            )
            fields = asdict(cdr)
            cols = ", ".join(fields)
            marks = ", ".join("?" for _ in fields)
            cur = await self.db.execute(
                f"INSERT OR IGNORE INTO cdrs ({cols}, written_at) VALUES ({marks}, ?)",
                (*fields.values(), time.time()),
            )
            inserted = cur.rowcount == 1
            if inserted:
                # A call spans its CDRs: earliest start, first answer, last end; answered if
                # any leg was.
                await self.db.execute(
                    "UPDATE calls SET"
                    " started_at = MIN(started_at, ?),"
                    " answered_at = CASE WHEN answered_at IS NULL THEN ?"
                    "   WHEN ? IS NULL THEN answered_at ELSE MIN(answered_at, ?) END,"
                    " ended_at = MAX(COALESCE(ended_at, 0), ?),"
                    " line = COALESCE(line, ?),"
                    " disposition = CASE WHEN disposition = 'ANSWERED' THEN disposition ELSE ? END"
                    " WHERE id = ?",
                    (
                        cdr.start_at,
                        cdr.answer_at,
                        cdr.answer_at,
                        cdr.answer_at,
                        cdr.end_at,
                        cdr.line,
                        cdr.disposition,
                        cdr.call_id,
                    ),
                )
            await self.db.commit()
        except Exception:
            await self.db.rollback()
            raise
        return inserted

    async def has_cdr(self, uniqueid: str, sequence: int) -> bool:
        async with self.db.execute(
            "SELECT 1 FROM cdrs WHERE uniqueid = ? AND sequence = ?", (uniqueid, sequence)
        ) as cur:
            return await cur.fetchone() is not None

    async def cdrs(self, call_id: str | None = None, limit: int = 100) -> list[dict[str, Any]]:
        if call_id is None:
            sql, args = "SELECT * FROM cdrs ORDER BY start_at DESC, id DESC LIMIT ?", (limit,)
        else:
            sql = "SELECT * FROM cdrs WHERE call_id = ? ORDER BY start_at, id LIMIT ?"
            args = (call_id, limit)  # type: ignore[assignment]
        async with self.db.execute(sql, args) as cur:
            return [dict(r) for r in await cur.fetchall()]

    async def count_cdrs(self) -> int:
        async with self.db.execute("SELECT COUNT(*) FROM cdrs") as cur:
            row = await cur.fetchone()
        return int(row[0]) if row else 0

    async def calls(self, limit: int = 50) -> list[CallRow]:
        async with self.db.execute(
            "SELECT * FROM calls ORDER BY started_at DESC LIMIT ?", (limit,)
        ) as cur:
            return [CallRow(**dict(r)) for r in await cur.fetchall()]

    async def call(self, call_id: str) -> CallRow | None:
        async with self.db.execute("SELECT * FROM calls WHERE id = ?", (call_id,)) as cur:
            row = await cur.fetchone()
        return CallRow(**dict(row)) if row else None

    # ---- recordings
    async def add_recording(self, rec: RecordingRow) -> bool:
        fields = asdict(rec)
        cols = ", ".join(fields)
        marks = ", ".join("?" for _ in fields)
        async with self._write_lock:
            cur = await self.db.execute(
                f"INSERT OR IGNORE INTO recordings ({cols}, created_at) VALUES ({marks}, ?)",
                (*fields.values(), time.time()),
            )
            await self.db.commit()
        return cur.rowcount == 1

    async def recordings(self, call_id: str | None = None) -> list[dict[str, Any]]:
        if call_id is None:
            sql, args = "SELECT * FROM recordings ORDER BY id", ()
        else:
            sql, args = "SELECT * FROM recordings WHERE call_id = ? ORDER BY leg", (call_id,)  # type: ignore[assignment]
        async with self.db.execute(sql, args) as cur:
            return [dict(r) for r in await cur.fetchall()]


def _split_sql(sql: str) -> list[str]:
    # Migrations hold plain DDL: statements end with ';' at the end of a line.
    statements: list[str] = []
    buf: list[str] = []
    for line in sql.splitlines():
        if line.strip().startswith("--") and not buf:
            continue
        buf.append(line)
        if line.rstrip().endswith(";"):
            statements.append("\n".join(buf))
            buf = []
    if "".join(buf).strip():
        statements.append("\n".join(buf))
    return statements
