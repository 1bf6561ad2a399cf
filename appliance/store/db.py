"""The appliance database: aiosqlite in WAL mode, versioned migrations, and all of its SQL.

Nothing else in the code base writes SQL. Every write commits before it returns, so a row the
appliance has acknowledged survives a killed process.
"""

from __future__ import annotations

import logging
import sqlite3
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import asdict, dataclass, field, replace
from importlib import resources
from types import TracebackType
from typing import Any

import aiosqlite

from appliance.store.admin import AdminSql
from appliance.store.base import AuditEntry, AuditSeal, StoreBase, StoreError
from appliance.store.bulk import BulkSql
from appliance.store.calendar import CalendarSql
from appliance.store.campaigns import CampaignSql
from appliance.store.governance import GovernanceSql
from appliance.store.ops import OpsSql
from appliance.store.pbx import PbxSql
from appliance.store.reports import ReportSql
from appliance.store.retention import RetentionSql
from appliance.store.transcripts import TranscriptSql


class StaleKeyError(StoreError):
    """A key was wrapped under a master key the database no longer uses (rotated meanwhile)."""


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
    cipher: str = ""
    """Encrypted-file format (appliance.privacy.stream.CIPHER); sha256/size are the plaintext's."""
    key_subjects: str = ""
    """Comma-separated subject ids whose data keys derive the file key, in derivation order."""
    stored_bytes: int = 0


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


@dataclass(frozen=True)
class SubjectDraft:
    """A subject to create unless one with the same blind index exists (then that one counts).

    Made by appliance.privacy.subjects: the identifier sealed under a fresh data key, the data
    key wrapped under the master key `kek_id`.
    """

    kind: str
    blind_index: bytes
    value_enc: bytes
    wrapped_key: bytes
    kek_id: str


@dataclass(frozen=True)
class DncEntry:
    blind_index: bytes
    kind: str
    number_enc: bytes
    source: str
    reason: str
    added_at: float
    added_by: str


# ---- privacy part 2 (issue 5)
# aiosqlite logs every statement with its parameters at DEBUG: personal data (numbers, names)
# in the application log, beyond the reach of erasure. Never below INFO.
logging.getLogger("aiosqlite").setLevel(logging.INFO)
BUSY_TIMEOUT_MS = 15_000
_RR_COLUMNS = frozenset(
    {
        "kind", "status", "subject_kind", "blind_index", "identifier_enc", "params_enc",
        "channel", "received_at", "due_at", "extended", "extension_reason", "verified_at",
        "verified_by", "verification", "code_hash", "code_expires_at", "code_attempts",
        "checkpoint", "refused_reason", "response", "export_path", "closed_at", "updated_at",
    }
)  # fmt: skip
# Tables a subject's data reaches, by the column that ties a row to a call or recording.
_SUBJECT_DATA = frozenset(
    {("calls", "id"), ("cdrs", "call_id"), ("recordings", "call_id"), ("recordings", "id"),
     ("consents", "call_id")}
)  # fmt: skip
_ANONYMISABLE = frozenset(
    {("calls", "calling_number"), ("calls", "caller_name"), ("calls", "dialed_number"),
     ("cdrs", "calling_number"), ("cdrs", "caller_name"), ("cdrs", "dialed_number"),
     ("cdrs", "channel"), ("cdrs", "dest_channel")}
)  # fmt: skip


@dataclass(frozen=True)
class ErasurePlan:
    """What erasing one subject changes (made by appliance.privacy.rights.erasure)."""

    subject_id: int
    blind_index: bytes
    request_id: int | None
    at: float
    delete_calls: Sequence[str] = ()
    delete_recordings: Sequence[int] = ()
    anonymise: Sequence[tuple[str, Any, str, str]] = ()
    """(table, id, column, new value) for rows a legal hold keeps."""
    keep_calls: Sequence[str] = ()
    keep_recordings: Sequence[int] = ()
    drop_subject: bool = True
    """False when held recordings still need the subject's data key."""
    request_changes: Mapping[str, Any] = field(default_factory=dict)
    """The request's checkpoint, committed with the erasure so a resumed run never repeats it."""


_INSERT_LINK = (
    "INSERT OR IGNORE INTO subject_links (subject_id, item_type, item_id, role, linked_at)"
    " VALUES (?, ?, ?, ?, ?)"
)


def _check_kek(found: str, expected: str, what: str) -> None:
    if found != expected:
        raise StoreError(f"{what} is wrapped under master key {found}, not {expected}")


def migrations() -> list[tuple[int, str]]:
    """(version, DDL) of every migration this code knows, oldest first."""
    return _migrations()


def _migrations() -> list[tuple[int, str]]:
    found = []
    for entry in resources.files("appliance.store.migrations").iterdir():
        name = entry.name
        if name.endswith(".sql"):
            found.append((int(name.split("_", 1)[0]), entry.read_text()))
    return sorted(found)


class Database(
    TranscriptSql,
    ReportSql,
    RetentionSql,
    GovernanceSql,
    AdminSql,
    BulkSql,
    OpsSql,
    CampaignSql,
    PbxSql,
    CalendarSql,
    StoreBase,
):
    """The store. Each issue's SQL past the telephony core lives in its own mixin module
    (appliance/store/<area>.py); this class holds the core tables and the migrations."""

    async def open(self, *, known: Sequence[tuple[int, str]] | None = None) -> Database:
        """Open, migrating to the newest schema in `known` (default: this code's migrations;
        the upgrade tests and benchmarks pass older or faulty sets)."""
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
            # Two processes share the file (telephony, admin); on a box whose cores the models
            # saturate, a short transaction of the other one can take seconds to commit.
            await self._db.execute(f"PRAGMA busy_timeout={BUSY_TIMEOUT_MS}")
            await self._migrate(_migrations() if known is None else sorted(known))
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

    async def schema_version(self) -> int:
        async with self.db.execute("PRAGMA user_version") as cur:
            row = await cur.fetchone()
        return int(row[0]) if row else 0

    async def _migrate(self, migrations: Sequence[tuple[int, str]]) -> None:
        current = await self.schema_version()
        newest = migrations[-1][0] if migrations else 0
        if current > newest:
            raise StoreError(
                f"database {self.path} has schema {current}, newer than this version knows "
                f"({newest}); refusing to downgrade"
            )
        pending = [(v, sql) for v, sql in migrations if v > current]
        if not pending:
            return
        # Every pending migration in one transaction: a failure anywhere leaves the schema the
        # previous release runs on, never one in between that no release knows.
        await self.db.execute("BEGIN IMMEDIATE")
        running = current
        try:
            for version, sql in pending:
                running = version
                for statement in _split_sql(sql):
                    await self.db.execute(statement)
            await self.db.execute(f"PRAGMA user_version={newest:d}")
            await self.db.commit()
        except Exception as exc:
            await self.db.rollback()
            if isinstance(exc, sqlite3.Error):
                raise StoreError(
                    f"migration {running:04d} failed on {self.path} ({exc}); rolled back, the "
                    f"database stays at schema {current}"
                ) from exc
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
    async def add_cdr(self, cdr: CdrRow, subjects: Sequence[tuple[SubjectDraft, str]] = ()) -> bool:
        """Store a CDR, fold it into its call and link the call to `subjects` (draft, role).

        False if the CDR was already stored; the links are (re)made either way, idempotently.
        """
        async with self._write_lock:
            return await self._add_cdr(cdr, subjects)

    async def _add_cdr(self, cdr: CdrRow, subjects: Sequence[tuple[SubjectDraft, str]]) -> bool:
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
            for draft, role in subjects:
                subject_id = await self._ensure_subject(draft)
                await self.db.execute(
                    _INSERT_LINK, (subject_id, "call", cdr.call_id, role, time.time())
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
        """Store a recording and link it to the subjects in `rec.key_subjects`, atomically."""
        fields = asdict(rec)
        cols = ", ".join(fields)
        marks = ", ".join("?" for _ in fields)
        now = time.time()
        async with self._write_lock:
            await self.db.execute("BEGIN IMMEDIATE")
            try:
                cur = await self.db.execute(
                    f"INSERT OR IGNORE INTO recordings ({cols}, created_at) VALUES ({marks}, ?)",
                    (*fields.values(), now),
                )
                inserted = cur.rowcount == 1
                if inserted and rec.key_subjects:
                    links = [
                        (int(sid), "recording", str(cur.lastrowid), "key", now)
                        for sid in rec.key_subjects.split(",")
                    ]
                    await self.db.executemany(_INSERT_LINK, links)
                await self.db.commit()
            except Exception:
                await self.db.rollback()
                raise
        return inserted

    async def recording(self, recording_id: int) -> dict[str, Any] | None:
        async with self.db.execute("SELECT * FROM recordings WHERE id = ?", (recording_id,)) as cur:
            row = await cur.fetchone()
        return dict(row) if row else None

    async def recordings(self, call_id: str | None = None) -> list[dict[str, Any]]:
        if call_id is None:
            sql, args = "SELECT * FROM recordings ORDER BY id", ()
        else:
            sql, args = "SELECT * FROM recordings WHERE call_id = ? ORDER BY leg", (call_id,)  # type: ignore[assignment]
        async with self.db.execute(sql, args) as cur:
            return [dict(r) for r in await cur.fetchall()]

    # ==== voice (issue 4): consent records ================================================

    async def add_consent(
        self,
        *,
        call_id: str,
        line: str,
        decision: str,
        method: str,
        prompt: str,
        asked_at: float,
        decided_at: float,
    ) -> int:
        async with self._write_lock:
            cur = await self.db.execute(
                "INSERT INTO consents (call_id, line, decision, method, prompt, asked_at,"
                " decided_at) VALUES (?, ?, ?, ?, ?, ?, ?)",
                (call_id, line, decision, method, prompt, asked_at, decided_at),
            )
            await self.db.commit()
        return int(cur.lastrowid or 0)

    async def consents(self, call_id: str) -> list[dict[str, Any]]:
        async with self.db.execute(
            "SELECT * FROM consents WHERE call_id = ? ORDER BY id", (call_id,)
        ) as cur:
            return [dict(r) for r in await cur.fetchall()]

    # ==== privacy (issue 5): key ring, subjects, links, audit chain, do-not-call ==========
    # Crypto stays in appliance.privacy; these methods store and fetch what it produces.

    async def keyring_get(self, name: str) -> tuple[bytes, str] | None:
        async with self.db.execute(
            "SELECT wrapped, kek_id FROM keyring WHERE name = ?", (name,)
        ) as cur:
            row = await cur.fetchone()
        return (bytes(row[0]), str(row[1])) if row else None

    async def keyring_add(self, name: str, wrapped: bytes, kek_id: str) -> tuple[bytes, str]:
        """Store a wrapped key unless one exists (another process won the race); return it."""

        async def body() -> None:
            await self.db.execute(
                "INSERT OR IGNORE INTO keyring (name, wrapped, kek_id, created_at)"
                " VALUES (?, ?, ?, ?)",
                (name, wrapped, kek_id, time.time()),
            )

        await self._tx(body)
        stored = await self.keyring_get(name)
        if stored is None:
            raise StoreError(f"keyring entry {name!r} vanished")
        return stored

    async def keyring_kek_ids(self) -> set[str]:
        """Master key ids the key ring is wrapped under (one, except mid-rotation: never)."""
        async with self.db.execute("SELECT DISTINCT kek_id FROM keyring") as cur:
            return {str(r[0]) for r in await cur.fetchall()}

    async def _ensure_subject(self, draft: SubjectDraft) -> int:
        # Inside a transaction. A draft wrapped under a master key the key ring has since
        # left would be unreadable forever: refuse it, the caller re-drafts with the new key.
        async with self.db.execute("SELECT kek_id FROM keyring WHERE name = 'index'") as cur:
            row = await cur.fetchone()
        if row is None or str(row[0]) != draft.kek_id:
            raise StaleKeyError("subject key drafted under a master key that was rotated away")
        await self.db.execute(
            "INSERT OR IGNORE INTO subjects"
            " (kind, blind_index, value_enc, wrapped_key, kek_id, created_at)"
            " VALUES (?, ?, ?, ?, ?, ?)",
            (
                draft.kind,
                draft.blind_index,
                draft.value_enc,
                draft.wrapped_key,
                draft.kek_id,
                time.time(),
            ),
        )
        async with self.db.execute(
            "SELECT id FROM subjects WHERE blind_index = ?", (draft.blind_index,)
        ) as cur:
            found = await cur.fetchone()
        if found is None:
            raise StoreError("subject insert did not take")
        return int(found[0])

    async def ensure_subject(self, draft: SubjectDraft) -> int:
        """The id of the subject with the draft's blind index, created from the draft if new."""
        return int(await self._tx(lambda: self._ensure_subject(draft)))

    async def subject_by_index(self, blind_index: bytes) -> dict[str, Any] | None:
        async with self.db.execute(
            "SELECT * FROM subjects WHERE blind_index = ?", (blind_index,)
        ) as cur:
            row = await cur.fetchone()
        return dict(row) if row else None

    async def subject_key(self, subject_id: int) -> tuple[bytes, bytes, str] | None:
        """(blind index, wrapped data key, kek id); None once the subject is erased."""
        async with self.db.execute(
            "SELECT blind_index, wrapped_key, kek_id FROM subjects WHERE id = ?", (subject_id,)
        ) as cur:
            row = await cur.fetchone()
        return (bytes(row[0]), bytes(row[1]), str(row[2])) if row else None

    async def call_subject_ids(self, call_id: str) -> list[int]:
        async with self.db.execute(
            "SELECT DISTINCT subject_id FROM subject_links"
            " WHERE item_type = 'call' AND item_id = ? ORDER BY subject_id",
            (call_id,),
        ) as cur:
            return [int(r[0]) for r in await cur.fetchall()]

    async def subject_items(self, blind_index: bytes) -> list[dict[str, Any]]:
        """Everything linked to one subject: one query on the unique blind-index key."""
        async with self.db.execute(
            "SELECT s.id AS subject_id, s.kind, l.item_type, l.item_id, l.role, l.linked_at"
            " FROM subjects s JOIN subject_links l ON l.subject_id = s.id"
            " WHERE s.blind_index = ? ORDER BY l.item_type, l.item_id, l.role",
            (blind_index,),
        ) as cur:
            return [dict(r) for r in await cur.fetchall()]

    async def rewrap_all(
        self, old_kek: str, new_kek: str, rewrap: Callable[[str, bytes, bytes], bytes]
    ) -> int:
        """Re-wrap every key under `old_kek` in one transaction; `rewrap(table, aad_id, wrapped)`.

        Fails (and changes nothing) if any row is wrapped under another key.
        """

        async def body() -> int:
            count = 0
            async with self.db.execute("SELECT name, wrapped, kek_id FROM keyring") as cur:
                ring = [(str(r[0]), bytes(r[1]), str(r[2])) for r in await cur.fetchall()]
            for name, wrapped, kek in ring:
                _check_kek(kek, old_kek, f"keyring {name!r}")
                await self.db.execute(
                    "UPDATE keyring SET wrapped = ?, kek_id = ? WHERE name = ?",
                    (rewrap("keyring", name.encode(), wrapped), new_kek, name),
                )
                count += 1
            async with self.db.execute(
                "SELECT id, blind_index, wrapped_key, kek_id FROM subjects"
            ) as cur:
                subjects = await cur.fetchall()
            updates = []
            for sid, bi, wrapped, kek in subjects:
                _check_kek(str(kek), old_kek, f"subject {sid}")
                updates.append((rewrap("subject", bytes(bi), bytes(wrapped)), new_kek, sid))
            await self.db.executemany(
                "UPDATE subjects SET wrapped_key = ?, kek_id = ? WHERE id = ?", updates
            )
            return count + len(updates)

        return int(await self._tx(body))

    # ---- audit chain
    async def audit_rows(self, after_seq: int = 0, limit: int = 1000) -> list[dict[str, Any]]:
        async with self.db.execute(
            "SELECT * FROM audit_log WHERE seq > ? ORDER BY seq LIMIT ?", (after_seq, limit)
        ) as cur:
            return [dict(r) for r in await cur.fetchall()]

    # ---- do-not-call
    async def dnc_get(self, blind_index: bytes) -> dict[str, Any] | None:
        async with self.db.execute(
            "SELECT * FROM dnc WHERE blind_index = ?", (blind_index,)
        ) as cur:
            row = await cur.fetchone()
        return dict(row) if row else None

    async def dnc_rows(self) -> list[dict[str, Any]]:
        async with self.db.execute("SELECT * FROM dnc ORDER BY added_at, id") as cur:
            return [dict(r) for r in await cur.fetchall()]

    async def dnc_add(
        self, entries: Sequence[DncEntry], audit: tuple[AuditEntry, AuditSeal]
    ) -> list[bool]:
        """Add entries in one transaction with one audit row; per entry, whether it was new."""

        async def body() -> list[bool]:
            added = []
            for e in entries:
                cur = await self.db.execute(
                    "INSERT OR IGNORE INTO dnc (blind_index, kind, number_enc, source, reason,"
                    " added_at, added_by) VALUES (?, ?, ?, ?, ?, ?, ?)",
                    (
                        e.blind_index,
                        e.kind,
                        e.number_enc,
                        e.source,
                        e.reason,
                        e.added_at,
                        e.added_by,
                    ),
                )
                added.append(cur.rowcount == 1)
            if any(added):
                await self._audit_append(*audit)
            return added

        return list(await self._tx(body))

    async def dnc_remove(self, blind_index: bytes, audit: tuple[AuditEntry, AuditSeal]) -> bool:
        async def body() -> bool:
            cur = await self.db.execute("DELETE FROM dnc WHERE blind_index = ?", (blind_index,))
            if cur.rowcount == 1:
                await self._audit_append(*audit)
            return cur.rowcount == 1

        return bool(await self._tx(body))

    # ==== privacy part 2 (issue 5): rights requests, restrictions, legal holds, erasure =====
    # Every write here takes its audit row (`audit`) into the same transaction.

    async def rr_insert(self, row: Mapping[str, Any], audit: tuple[AuditEntry, AuditSeal]) -> int:
        cols = [c for c in row if c in _RR_COLUMNS]

        async def body() -> int:
            cur = await self.db.execute(
                f"INSERT INTO rights_requests ({', '.join(cols)}) "
                f"VALUES ({', '.join('?' for _ in cols)})",
                [row[c] for c in cols],
            )
            rid = int(cur.lastrowid or 0)
            await self._audit_append(replace(audit[0], object=f"request:{rid}"), audit[1])
            return rid

        return int(await self._tx(body))

    async def rr_get(self, request_id: int) -> dict[str, Any] | None:
        async with self.db.execute(
            "SELECT * FROM rights_requests WHERE id = ?", (request_id,)
        ) as cur:
            row = await cur.fetchone()
        return dict(row) if row else None

    async def rr_list(
        self, *, open_only: bool = False, due_before: float | None = None
    ) -> list[dict[str, Any]]:
        sql, args = "SELECT * FROM rights_requests WHERE 1", []
        if open_only:
            sql += " AND closed_at IS NULL"
        if due_before is not None:
            sql += " AND due_at < ?"
            args.append(due_before)
        async with self.db.execute(sql + " ORDER BY due_at, id", args) as cur:
            return [dict(r) for r in await cur.fetchall()]

    async def rr_for_subject(self, blind_index: bytes) -> list[dict[str, Any]]:
        async with self.db.execute(
            "SELECT * FROM rights_requests WHERE blind_index = ? ORDER BY id", (blind_index,)
        ) as cur:
            return [dict(r) for r in await cur.fetchall()]

    async def rr_update(
        self,
        request_id: int,
        changes: Mapping[str, Any],
        *,
        log: tuple[float, str, str, str] | None = None,
        audit: tuple[AuditEntry, AuditSeal] | None = None,
        expect_status: str | None = None,
    ) -> None:
        """Change a request, log the step (at, step, outcome, message) and audit, atomically.

        `expect_status`: refuse (StoreError, nothing changed) if another process moved it on.
        """
        bad = set(changes) - _RR_COLUMNS
        if bad:
            raise StoreError(f"not rights_requests columns: {sorted(bad)}")

        async def body() -> None:
            if expect_status is not None:
                async with self.db.execute(
                    "SELECT status FROM rights_requests WHERE id = ?", (request_id,)
                ) as cur:
                    row = await cur.fetchone()
                if row is None or str(row[0]) != expect_status:
                    raise StoreError(f"request {request_id} is no longer {expect_status}")
            if changes:
                await self._rr_set(request_id, changes)
            if log is not None:
                await self._rr_log(request_id, *log)
            if audit is not None:
                await self._audit_append(*audit)

        await self._tx(body)

    async def _rr_set(self, request_id: int, changes: Mapping[str, Any]) -> None:
        bad = set(changes) - _RR_COLUMNS
        if bad:
            raise StoreError(f"not rights_requests columns: {sorted(bad)}")
        sets = ", ".join(f"{c} = ?" for c in changes)
        await self.db.execute(
            f"UPDATE rights_requests SET {sets} WHERE id = ?", (*changes.values(), request_id)
        )

    async def set_fields(
        self, updates: Sequence[tuple[str, Any, str, str]], audit: tuple[AuditEntry, AuditSeal]
    ) -> int:
        """Rectify: (table, id, column, value) on contact fields, one transaction, audited."""

        async def body() -> int:
            n = 0
            for table, key, column, value in updates:
                if (table, column) not in _ANONYMISABLE:
                    raise StoreError(f"cannot change {table}.{column}")
                cur = await self.db.execute(
                    f"UPDATE {table} SET {column} = ? WHERE id = ?", (value, key)
                )
                n += max(cur.rowcount, 0)
            await self._audit_append(*audit)
            return n

        return int(await self._tx(body))

    async def _rr_log(self, request_id: int, at: float, step: str, outcome: str, msg: str) -> None:
        await self.db.execute(
            "INSERT INTO rights_request_log (request_id, at, step, outcome, message)"
            " VALUES (?, ?, ?, ?, ?)",
            (request_id, at, step, outcome, msg),
        )

    async def rr_log_add(
        self, request_id: int, at: float, step: str, outcome: str, msg: str
    ) -> None:
        await self._tx(lambda: self._rr_log(request_id, at, step, outcome, msg))

    async def rr_log(self, request_id: int) -> list[dict[str, Any]]:
        async with self.db.execute(
            "SELECT * FROM rights_request_log WHERE request_id = ? ORDER BY id", (request_id,)
        ) as cur:
            return [dict(r) for r in await cur.fetchall()]

    # ---- restrictions (Art. 18)
    async def restriction_get(self, blind_index: bytes) -> dict[str, Any] | None:
        async with self.db.execute(
            "SELECT * FROM restrictions WHERE blind_index = ?", (blind_index,)
        ) as cur:
            row = await cur.fetchone()
        return dict(row) if row else None

    async def restriction_add(
        self,
        blind_index: bytes,
        request_id: int | None,
        by: str,
        at: float,
        audit: tuple[AuditEntry, AuditSeal],
    ) -> bool:
        async def body() -> bool:
            cur = await self.db.execute(
                "INSERT OR IGNORE INTO restrictions (blind_index, request_id, added_at, added_by)"
                " VALUES (?, ?, ?, ?)",
                (blind_index, request_id, at, by),
            )
            await self._audit_append(*audit)
            return cur.rowcount == 1

        return bool(await self._tx(body))

    # ---- legal holds
    async def hold_add(
        self,
        *,
        scope: str,
        case_ref: str,
        subject_id: int | None,
        call_ids: Sequence[str],
        reason: str,
        owner: str,
        created_at: float,
        expires_at: float | None,
        audit: tuple[AuditEntry, AuditSeal],
    ) -> int:
        async def body() -> int:
            cur = await self.db.execute(
                "INSERT INTO legal_holds (scope, case_ref, subject_id, reason, owner, created_at,"
                " expires_at) VALUES (?, ?, ?, ?, ?, ?, ?)",
                (scope, case_ref, subject_id, reason, owner, created_at, expires_at),
            )
            hid = int(cur.lastrowid or 0)
            await self.db.executemany(
                "INSERT OR IGNORE INTO legal_hold_calls (hold_id, call_id) VALUES (?, ?)",
                [(hid, c) for c in call_ids],
            )
            await self._audit_append(replace(audit[0], object=f"hold:{hid}"), audit[1])
            return hid

        return int(await self._tx(body))

    async def hold_release(
        self, hold_id: int, at: float, audit: tuple[AuditEntry, AuditSeal]
    ) -> bool:
        async def body() -> bool:
            cur = await self.db.execute(
                "UPDATE legal_holds SET released_at = ? WHERE id = ? AND released_at IS NULL",
                (at, hold_id),
            )
            if cur.rowcount == 1:
                await self._audit_append(*audit)
            return cur.rowcount == 1

        return bool(await self._tx(body))

    async def holds(self, active_at: float | None = None) -> list[dict[str, Any]]:
        """All holds, or those in force at `active_at` (not released, not expired)."""
        sql, args = "SELECT * FROM legal_holds", ()
        if active_at is not None:
            sql += " WHERE released_at IS NULL AND (expires_at IS NULL OR expires_at > ?)"
            args = (active_at,)  # type: ignore[assignment]
        async with self.db.execute(sql + " ORDER BY id", args) as cur:
            return [dict(r) for r in await cur.fetchall()]

    async def held_calls(self, at: float) -> dict[str, int]:
        """call id -> id of a hold in force on it (directly, by case, or by its subject)."""
        async with self.db.execute(
            "SELECT c.call_id, h.id FROM legal_holds h JOIN legal_hold_calls c ON c.hold_id = h.id"
            " WHERE h.released_at IS NULL AND (h.expires_at IS NULL OR h.expires_at > ?)"
            " UNION SELECT l.item_id, h.id FROM legal_holds h JOIN subject_links l"
            " ON l.subject_id = h.subject_id AND l.item_type = 'call'"
            " WHERE h.scope = 'subject' AND h.released_at IS NULL"
            " AND (h.expires_at IS NULL OR h.expires_at > ?)",
            (at, at),
        ) as cur:
            return {str(r[0]): int(r[1]) for r in await cur.fetchall()}

    # ---- what a subject reached, for export and erasure
    async def rows_where_in(
        self, table: str, column: str, keys: Sequence[str]
    ) -> list[dict[str, Any]]:
        if (table, column) not in _SUBJECT_DATA:
            raise StoreError(f"not a subject data table: {table}.{column}")
        out: list[dict[str, Any]] = []
        for i in range(0, len(keys), 500):
            part = list(keys[i : i + 500])
            async with self.db.execute(
                f"SELECT * FROM {table} WHERE {column} IN ({', '.join('?' for _ in part)})"
                " ORDER BY rowid",
                part,
            ) as cur:
                out.extend(dict(r) for r in await cur.fetchall())
        return out

    async def erase(self, plan: ErasurePlan, audit: tuple[AuditEntry, AuditSeal]) -> dict[str, int]:
        """Apply an erasure in one transaction; counts of rows deleted / anonymised per table.

        Deleted pages are zeroed (secure_delete) and the WAL is checkpointed afterwards, so the
        erased bytes do not linger in free pages or in the write-ahead log.
        """
        counts: dict[str, int] = {}

        async def run(sql: str, args: Sequence[Any], what: str) -> None:
            cur = await self.db.execute(sql, args)
            counts[what] = counts.get(what, 0) + max(cur.rowcount, 0)

        async def body() -> dict[str, int]:
            calls = list(plan.delete_calls)
            for i in range(0, max(len(calls), 1), 500):
                part = calls[i : i + 500]
                if not part:
                    break
                marks = ", ".join("?" for _ in part)
                await run(f"DELETE FROM cdrs WHERE call_id IN ({marks})", part, "cdrs")
                await run(f"DELETE FROM consents WHERE call_id IN ({marks})", part, "consents")
                await run(
                    f"DELETE FROM subject_links WHERE item_type = 'call' AND item_id IN ({marks})",
                    part,
                    "links",
                )
                await run(f"DELETE FROM calls WHERE id IN ({marks})", part, "calls")
            for rid in plan.delete_recordings:
                await run(
                    "DELETE FROM subject_links WHERE item_type = 'recording' AND item_id = ?",
                    (str(rid),),
                    "links",
                )
                await run("DELETE FROM recordings WHERE id = ?", (rid,), "recordings")
            for table, key, column, value in plan.anonymise:
                if (table, column) not in _ANONYMISABLE:
                    raise StoreError(f"cannot anonymise {table}.{column}")
                await run(
                    f"UPDATE {table} SET {column} = ? WHERE id = ?", (value, key), "anonymised"
                )
            if plan.drop_subject:
                await run("DELETE FROM subjects WHERE id = ?", (plan.subject_id,), "subjects")
                await run(
                    "DELETE FROM restrictions WHERE blind_index = ?",
                    (plan.blind_index,),
                    "restrictions",
                )
                await self.db.execute(
                    "INSERT OR REPLACE INTO erased_subjects (blind_index, erased_at, request_id)"
                    " VALUES (?, ?, ?)",
                    (plan.blind_index, plan.at, plan.request_id),
                )
                await self.db.execute(
                    "UPDATE rights_requests SET identifier_enc = x'', params_enc = x''"
                    " WHERE blind_index = ?",
                    (plan.blind_index,),
                )
            else:
                # Held: the subject (its key opens the held recordings) keeps only held links.
                kept = [("call", c) for c in plan.keep_calls] + [
                    ("recording", str(r)) for r in plan.keep_recordings
                ]
                async with self.db.execute(
                    "SELECT item_type, item_id FROM subject_links WHERE subject_id = ?",
                    (plan.subject_id,),
                ) as cur:
                    links = [(str(r[0]), str(r[1])) for r in await cur.fetchall()]
                for item in links:
                    if item not in kept:
                        await run(
                            "DELETE FROM subject_links WHERE subject_id = ? AND item_type = ?"
                            " AND item_id = ?",
                            (plan.subject_id, *item),
                            "links",
                        )
            if plan.request_id is not None and plan.request_changes:
                await self._rr_set(plan.request_id, plan.request_changes)
            await self._audit_append(*audit)
            return counts

        await self.db.execute("PRAGMA secure_delete = ON")
        try:
            result = dict(await self._tx(body))
        finally:
            await self.db.execute("PRAGMA secure_delete = OFF")
        await self.checkpoint()
        return result

    async def erased_subjects(self) -> list[dict[str, Any]]:
        async with self.db.execute("SELECT * FROM erased_subjects ORDER BY erased_at") as cur:
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
