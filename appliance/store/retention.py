"""SQL for retention: what has outlived its policy, and the purge (issue 5).

Finding is read-only and returns ids and times only (`Expired`); the policy (which cutoff for
which line, delete or anonymise) is decided in appliance.privacy.retention. Each purge method
runs one write transaction over one batch: it re-reads the legal holds in force inside the
transaction (a hold placed after the plan was made still wins), acts on the rest, and appends
the batch's deletion record to the audit chain in the same transaction, so no row ever goes
without its record.
"""

from __future__ import annotations

import json
from collections.abc import Awaitable, Callable, Collection, Mapping, Sequence
from dataclasses import dataclass
from typing import Any, TypeVar

from appliance.store.base import AuditEntry, AuditSeal, StoreBase, StoreError

Key = int | str
T = TypeVar("T")
# Builds a batch's deletion record from its counts, inside the purging transaction.
Record = Callable[[Mapping[str, int]], tuple[AuditEntry, AuditSeal]]

ANONYMISED = "[anonymised]"
_BATCH_SQL = 500  # ids per IN (...) list, well under SQLite's bound-parameter limit
# A lead's age counts from the later of its last listing (an import) and its last dial attempt.
_LEAD_AGE = (
    "MAX(COALESCE(l.seen_at, l.created_at), COALESCE((SELECT MAX(COALESCE(a.ended_at,"
    " a.claimed_at)) FROM campaign_attempts a WHERE a.lead_id = l.id), 0))"
)


@dataclass(frozen=True)
class ChildTable:
    """A table of per-call rows that retention deletes by age. Identifiers are code constants
    (never input): `CHILD_TABLES` is the whitelist every child query checks against."""

    name: str
    key: str
    at: str
    """The column the row's age is counted from."""
    line: str
    link_type: str | None = None
    """`subject_links.item_type` of its rows (their links go with them)."""
    file: str | None = None
    """Column with the path of the row's encrypted file (queued for removal with the row)."""
    subjects: str | None = None
    """Column with the comma-separated subject ids whose holds also keep the row."""


RECORDINGS = ChildTable(
    "recordings", "id", "created_at", "line", "recording", file="path", subjects="key_subjects"
)
CONSENTS = ChildTable("consents", "id", "decided_at", "line")
TRANSCRIPTS = ChildTable("transcripts", "id", "created_at", "line", subjects="key_subjects")
REPORTS = ChildTable("call_reports", "id", "created_at", "line", "report", subjects="key_subjects")
CHILD_TABLES: Mapping[str, ChildTable] = {
    t.name: t for t in (RECORDINGS, CONSENTS, TRANSCRIPTS, REPORTS)
}
# Rows stored under their call (call_id REFERENCES calls ON DELETE CASCADE): deleting the call
# would take them along, past their own retention and holds and around their owners' cleanup
# (search index merge, report links). So a call row is only deleted once they are gone.
DEPENDENTS: Mapping[str, str] = {"transcripts": "transcript", "call_reports": "report"}


@dataclass(frozen=True)
class Expired:
    """A row past a cutoff: its key, line, the time its age counts from, and what a legal hold
    would have to name to keep it (its call, its subjects)."""

    key: Key
    line: str | None
    at: float
    call_id: str | None = None
    subjects: tuple[int, ...] = ()


@dataclass(frozen=True)
class HeldSet:
    """Holds in force at one instant: call id -> hold id, subject id -> hold id."""

    calls: Mapping[str, int]
    subjects: Mapping[int, int]

    def hold_on(self, call_id: str | None, subjects: Sequence[int] = ()) -> int | None:
        if call_id is not None and call_id in self.calls:
            return self.calls[call_id]
        for sid in subjects:
            if sid in self.subjects:
                return self.subjects[sid]
        return None


@dataclass(frozen=True)
class PurgeOutcome:
    done: tuple[Key, ...]
    """Keys acted on (deleted or anonymised), in the order given."""
    held: Mapping[Key, int]
    """Keys a hold placed since the plan now keeps -> the hold's id."""
    files: tuple[str, ...] = ()
    """Encrypted files queued for removal (in `retention_files`) by this batch."""


def _subject_ids(raw: object) -> tuple[int, ...]:
    return tuple(int(s) for s in str(raw or "").split(",") if s.strip())


def _chunks(keys: Sequence[Any]) -> list[Sequence[Any]]:
    return [keys[i : i + _BATCH_SQL] for i in range(0, len(keys), _BATCH_SQL)]


def _marks(n: int) -> str:
    return ", ".join("?" for _ in range(n))


class RetentionSql(StoreBase):
    # ---- finding (read-only)
    async def retention_lines(self, table: str) -> list[str | None]:
        """Distinct `line` values of calls or a child table (None for calls without a line).

        A skip-scan over the (line, time) index: one probe per distinct line, not per row.
        """
        if table != "calls" and table not in CHILD_TABLES:
            raise StoreError(f"not a retention table: {table}")
        sql = (
            f"WITH RECURSIVE l(x) AS (SELECT MIN(line) FROM {table} UNION ALL"
            f" SELECT (SELECT MIN(line) FROM {table} WHERE line > l.x) FROM l"
            " WHERE l.x IS NOT NULL) SELECT x FROM l WHERE x IS NOT NULL"
        )
        async with self.db.execute(sql) as cur:
            out: list[str | None] = [str(r[0]) for r in await cur.fetchall()]
        async with self.db.execute(f"SELECT 1 FROM {table} WHERE line IS NULL LIMIT 1") as cur:
            if await cur.fetchone() is not None:
                out.append(None)
        return out

    async def retention_expired_children(
        self, table: str, line: str | None, before: float
    ) -> list[Expired]:
        """Rows of `table` on `line` whose age column is earlier than `before`, oldest first."""
        t = CHILD_TABLES.get(table)
        if t is None:
            raise StoreError(f"not a retention child table: {table}")
        subjects = t.subjects or "''"
        sql = (
            f"SELECT {t.key}, {t.line}, {t.at}, call_id, {subjects} FROM {t.name}"
            f" WHERE {t.line} IS ? AND {t.at} < ? ORDER BY {t.at}, {t.key}"
        )
        async with self.db.execute(sql, (line, before)) as cur:
            return [
                Expired(r[0], r[1], float(r[2]), str(r[3]), _subject_ids(r[4]))
                for r in await cur.fetchall()
            ]

    async def retention_expired_calls(
        self, line: str | None, before: float, *, anonymised: bool
    ) -> list[Expired]:
        """Calls on `line` that started before `before`: those whose CDRs still identify people
        (`anonymised=False`) or those reduced to billing fields (`anonymised=True`)."""
        flag = "LIKE" if anonymised else "NOT LIKE"
        async with self.db.execute(
            "SELECT id, line, started_at FROM calls WHERE line IS ? AND started_at < ?"
            f" AND flags {flag} '%anonymised%' ORDER BY started_at, id",
            (line, before),
        ) as cur:
            return [Expired(str(r[0]), r[1], float(r[2]), str(r[0])) for r in await cur.fetchall()]

    async def retention_call_dependents(
        self, call_ids: Sequence[str]
    ) -> dict[str, list[tuple[str, int]]]:
        """call id -> its rows in DEPENDENTS tables, as (category, id)."""
        out: dict[str, list[tuple[str, int]]] = {}
        for table, category in DEPENDENTS.items():
            for part in _chunks(list(call_ids)):
                async with self.db.execute(
                    f"SELECT call_id, id FROM {table} WHERE call_id IN ({_marks(len(part))})",
                    part,
                ) as cur:
                    for cid, key in await cur.fetchall():
                        out.setdefault(str(cid), []).append((category, int(key)))
        return out

    async def retention_keying_subjects(
        self, candidates: Collection[int], skip_transcripts: Collection[int]
    ) -> set[int]:
        """Those of `candidates` whose data key seals a transcript (other than
        `skip_transcripts`). Transcripts carry no subject links, so this reads their
        key_subjects: one pass over the table, only when there are candidates."""
        wanted = set(candidates)
        if not wanted:
            return set()
        skip = set(skip_transcripts)
        found: set[int] = set()
        async with self.db.execute("SELECT id, key_subjects FROM transcripts") as cur:
            async for tid, keys in cur:
                if int(tid) not in skip:
                    found.update(wanted.intersection(_subject_ids(keys)))
        return found

    async def retention_present(self, table: str, keys: Sequence[Key]) -> list[Key]:
        """Those of `keys` still in a child table, in the order given."""
        t = CHILD_TABLES.get(table)
        if t is None:
            raise StoreError(f"not a retention child table: {table}")
        present = set(await self._existing(t.name, t.key, keys))
        return [k for k in keys if k in present]

    async def retention_orphan_subjects(self, before: float) -> list[Expired]:
        """Subjects first seen before `before` that nothing links to any more."""
        async with self.db.execute(
            "SELECT id, created_at FROM subjects s WHERE created_at < ? AND NOT EXISTS"
            " (SELECT 1 FROM subject_links k WHERE k.subject_id = s.id) ORDER BY created_at, id",
            (before,),
        ) as cur:
            return [
                Expired(int(r[0]), None, float(r[1]), None, (int(r[0]),))
                for r in await cur.fetchall()
            ]

    async def retention_subjects_losing_links(
        self, links: Collection[tuple[str, str]], before: float
    ) -> list[Expired]:
        """Subjects first seen before `before` whose every link is among `links` (item_type,
        item_id): those a purge removing `links` leaves linked to nothing.

        Counted, not listed: a subject qualifies when the link rows `links` hit are all of its
        link rows (COUNT on the primary key), so busy subjects' long link lists stay in SQLite.
        """
        by_type: dict[str, list[str]] = {}
        for item_type, item_id in links:
            by_type.setdefault(item_type, []).append(item_id)
        hit: dict[int, int] = {}
        for item_type, ids in by_type.items():
            for part in _chunks(ids):
                async with self.db.execute(
                    "SELECT subject_id FROM subject_links WHERE item_type = ?"
                    f" AND item_id IN ({_marks(len(part))})",
                    (item_type, *part),
                ) as cur:
                    for (sid,) in await cur.fetchall():
                        hit[int(sid)] = hit.get(int(sid), 0) + 1
        out: list[Expired] = []
        for part in _chunks(sorted(hit)):
            async with self.db.execute(
                "SELECT s.id, s.created_at, (SELECT COUNT(*) FROM subject_links l"
                f" WHERE l.subject_id = s.id) FROM subjects s WHERE s.id IN ({_marks(len(part))})"
                " AND s.created_at < ?",
                (*part, before),
            ) as cur:
                for sid, created, total in await cur.fetchall():
                    if int(total) == hit[int(sid)]:
                        out.append(Expired(int(sid), None, float(created), None, (int(sid),)))
        return sorted(out, key=lambda e: (e.at, e.key))

    async def retention_audit_prefix(self, before: float) -> list[Expired]:
        """The longest run of audit rows from the oldest on whose time is before `before`.

        Only a prefix can go (the chain is verified from its first row on). Row times follow
        seq up to clock skew between writers, so a row a little out of order waits, at most,
        for its predecessors.
        """
        async with self.db.execute(
            "SELECT seq, at FROM audit_log WHERE seq < COALESCE((SELECT seq FROM audit_log"
            " WHERE at >= ? ORDER BY seq LIMIT 1), 9223372036854775807) ORDER BY seq",
            (before,),
        ) as cur:
            return [Expired(int(r[0]), None, float(r[1])) for r in await cur.fetchall()]

    async def retention_held(self, at: float) -> HeldSet:
        return await self._retention_held(at)

    async def _retention_held(self, at: float) -> HeldSet:
        # In force: not released, not expired. A subject hold keeps the subject row, the calls
        # linked to it and the rows encrypted under its key.
        active = "h.released_at IS NULL AND (h.expires_at IS NULL OR h.expires_at > ?)"
        async with self.db.execute(
            "SELECT c.call_id, MIN(h.id) FROM legal_holds h JOIN legal_hold_calls c"
            f" ON c.hold_id = h.id WHERE {active} GROUP BY c.call_id"
            " UNION ALL SELECT l.item_id, MIN(h.id) FROM legal_holds h JOIN subject_links l"
            " ON l.subject_id = h.subject_id AND l.item_type = 'call'"
            f" WHERE h.scope = 'subject' AND {active} GROUP BY l.item_id",
            (at, at),
        ) as cur:
            calls: dict[str, int] = {}
            for cid, hid in await cur.fetchall():
                calls[str(cid)] = min(int(hid), calls.get(str(cid), int(hid)))
        async with self.db.execute(
            "SELECT h.subject_id, MIN(h.id) FROM legal_holds h"
            f" WHERE h.scope = 'subject' AND h.subject_id IS NOT NULL AND {active}"
            " GROUP BY h.subject_id",
            (at,),
        ) as cur:
            subjects = {int(r[0]): int(r[1]) for r in await cur.fetchall()}
        return HeldSet(calls, subjects)

    # ---- purging: one transaction per batch, holds re-read inside it
    async def _split_held(
        self, items: Sequence[Expired], at: float
    ) -> tuple[list[Expired], dict[Key, int]]:
        held = await self._retention_held(at)
        free, kept = [], {}
        for item in items:
            hid = held.hold_on(item.call_id, item.subjects)
            if hid is None:
                free.append(item)
            else:
                kept[item.key] = hid
        return free, kept

    async def _existing(self, table: str, key: str, keys: Sequence[Key]) -> list[Any]:
        found: list[Any] = []
        for part in _chunks(keys):
            async with self.db.execute(
                f"SELECT {key} FROM {table} WHERE {key} IN ({_marks(len(part))})", part
            ) as cur:
                found.extend(r[0] for r in await cur.fetchall())
        return found

    async def retention_delete_children(
        self, table: str, items: Sequence[Expired], *, at: float, run_id: int, record: Record
    ) -> PurgeOutcome:
        """Delete child rows (their subject links with them; encrypted files queued)."""
        t = CHILD_TABLES.get(table)
        if t is None:
            raise StoreError(f"not a retention child table: {table}")

        async def body() -> PurgeOutcome:
            free, kept = await self._split_held(items, at)
            present = set(await self._existing(t.name, t.key, [i.key for i in free]))
            keys = [i.key for i in free if i.key in present]
            files: list[str] = []
            for part in _chunks(keys):
                marks = _marks(len(part))
                if t.link_type is not None:
                    await self.db.execute(
                        f"DELETE FROM subject_links WHERE item_type = ? AND item_id IN ({marks})",
                        (t.link_type, *(str(k) for k in part)),
                    )
                if t.file is not None:
                    async with self.db.execute(
                        f"SELECT {t.file} FROM {t.name} WHERE {t.key} IN ({marks})", part
                    ) as cur:
                        paths = [str(r[0]) for r in await cur.fetchall() if r[0]]
                    await self.db.executemany(
                        "INSERT OR IGNORE INTO retention_files (path, run_id, queued_at)"
                        " VALUES (?, ?, ?)",
                        [(p, run_id, at) for p in paths],
                    )
                    files.extend(paths)
                await self.db.execute(f"DELETE FROM {t.name} WHERE {t.key} IN ({marks})", part)
            if keys:
                await self._audit_append(*record({"deleted": len(keys)}))
            return PurgeOutcome(tuple(keys), kept, tuple(files))

        return await self._purge_tx(body)

    async def retention_purge_calls(
        self,
        items: Sequence[Expired],
        *,
        anonymise: bool,
        at: float,
        record: Record,
    ) -> PurgeOutcome:
        """Delete calls with their CDRs, or anonymise them: numbers, names and channel names
        replaced, billing fields (times, durations, disposition, line, route) kept. Either way
        the calls' subject links go, so lookups and erasure no longer reach them.

        A call that still has DEPENDENTS rows (kept by a hold placed since the plan) is not
        deleted: it is returned as held, with hold id 0.
        """

        async def body() -> PurgeOutcome:
            free, kept = await self._split_held(items, at)
            present = {str(k) for k in await self._existing("calls", "id", [i.key for i in free])}
            keys = [str(i.key) for i in free if str(i.key) in present]
            if not anonymise and keys:
                waiting = await self.retention_call_dependents(keys)
                kept.update(dict.fromkeys(waiting, 0))
                keys = [k for k in keys if k not in waiting]
            for part in _chunks(keys):
                marks = _marks(len(part))
                await self.db.execute(
                    f"DELETE FROM subject_links WHERE item_type = 'call' AND item_id IN ({marks})",
                    part,
                )
                if anonymise:
                    await self.db.execute(
                        "UPDATE cdrs SET calling_number = ?, dialed_number = ?,"
                        " caller_name = CASE WHEN caller_name = '' THEN '' ELSE ? END,"
                        f" channel = ?, dest_channel = ? WHERE call_id IN ({marks})",
                        (ANONYMISED, ANONYMISED, ANONYMISED, ANONYMISED, ANONYMISED, *part),
                    )
                    await self.db.execute(
                        "UPDATE calls SET calling_number = ?, dialed_number = ?,"
                        " caller_name = CASE WHEN caller_name = '' THEN '' ELSE ? END,"
                        " flags = CASE WHEN flags = '' THEN 'anonymised'"
                        " ELSE flags || ',anonymised' END"
                        f" WHERE id IN ({marks}) AND flags NOT LIKE '%anonymised%'",
                        (ANONYMISED, ANONYMISED, ANONYMISED, *part),
                    )
                else:
                    await self.db.execute(f"DELETE FROM cdrs WHERE call_id IN ({marks})", part)
                    await self.db.execute(f"DELETE FROM calls WHERE id IN ({marks})", part)
            if keys:
                what = "anonymised" if anonymise else "deleted"
                await self._audit_append(*record({what: len(keys)}))
            return PurgeOutcome(tuple(keys), kept)

        return await self._purge_tx(body)

    async def retention_delete_subjects(
        self, items: Sequence[Expired], *, at: float, record: Record
    ) -> PurgeOutcome:
        """Delete subjects (their data keys with them) that nothing links to any more."""

        async def body() -> PurgeOutcome:
            free, kept = await self._split_held(items, at)
            ids = [int(i.key) for i in free]
            orphans: set[int] = set()
            for part in _chunks(ids):
                # Re-checked here: a link made since the plan (a new call from the same number)
                # keeps the subject and its key.
                async with self.db.execute(
                    f"SELECT id FROM subjects s WHERE id IN ({_marks(len(part))}) AND NOT EXISTS"
                    " (SELECT 1 FROM subject_links k WHERE k.subject_id = s.id)",
                    part,
                ) as cur:
                    orphans.update(int(r[0]) for r in await cur.fetchall())
            done = [i for i in ids if i in orphans]
            for part in _chunks(done):
                await self.db.execute(
                    f"DELETE FROM subjects WHERE id IN ({_marks(len(part))})", part
                )
            if done:
                await self._audit_append(*record({"deleted": len(done)}))
            return PurgeOutcome(tuple(done), kept)

        return await self._purge_tx(body)

    async def retention_seal_audit(
        self,
        upto_seq: int,
        *,
        at: float,
        run_id: int,
        record: Callable[[int, str, int], tuple[AuditEntry, AuditSeal]],
    ) -> int:
        """Drop audit rows up to `upto_seq` under a checkpoint; the number of rows dropped.

        `record(upto_seq, upto_hash, rows)` builds the sealed checkpoint row, appended (after
        the last row kept) in the same transaction as the checkpoint and the delete.
        """

        async def body() -> int:
            async with self.db.execute(
                "SELECT hash FROM audit_log WHERE seq = ?", (upto_seq,)
            ) as cur:
                row = await cur.fetchone()
            if row is None:
                return 0
            async with self.db.execute(
                "SELECT COUNT(*) FROM audit_log WHERE seq <= ?", (upto_seq,)
            ) as cur:
                counted = await cur.fetchone()
            rows = int(counted[0]) if counted else 0
            sealed = await self._audit_append(*record(upto_seq, str(row[0]), rows))
            await self.db.execute(
                "INSERT INTO audit_checkpoints (upto_seq, upto_hash, rows, sealed_seq, run_id, at)"
                " VALUES (?, ?, ?, ?, ?, ?)",
                (upto_seq, str(row[0]), rows, sealed, run_id, at),
            )
            await self.db.execute("DELETE FROM audit_log WHERE seq <= ?", (upto_seq,))
            return rows

        return await self._purge_tx(body)

    async def _purge_tx(self, body: Callable[[], Awaitable[T]]) -> T:
        # Freed pages are zeroed (secure_delete), so purged personal data does not linger in
        # the file's free list; the run checkpoints the WAL when it is done.
        await self.db.execute("PRAGMA secure_delete = ON")
        try:
            result: T = await self._tx(body)
            return result
        finally:
            await self.db.execute("PRAGMA secure_delete = OFF")

    async def audit_checkpoint(self) -> dict[str, Any] | None:
        """The newest retention checkpoint of the audit chain (None: the chain is whole)."""
        async with self.db.execute(
            "SELECT * FROM audit_checkpoints ORDER BY upto_seq DESC LIMIT 1"
        ) as cur:
            row = await cur.fetchone()
        return dict(row) if row else None

    # ---- leads and bookings (contact data of outbound campaigns and of the dialogue)
    async def retention_expired_leads(self, before: float) -> list[Expired]:
        """Leads not yet purged whose last listing (import) and last dial attempt are both
        earlier than `before`, oldest first: key the lead id, `at` the later of the two,
        `subjects` its subject."""
        async with self.db.execute(
            "SELECT id, subject_id, at FROM (SELECT l.id, l.subject_id,"
            f" {_LEAD_AGE} AS at FROM leads l WHERE l.purged_at IS NULL"
            " AND COALESCE(l.seen_at, l.created_at) < ?) WHERE at < ? ORDER BY at, id",
            (before, before),
        ) as cur:
            return [
                Expired(int(r[0]), None, float(r[2]), None, () if r[1] is None else (int(r[1]),))
                for r in await cur.fetchall()
            ]

    async def retention_lead_usage(
        self, lead_ids: Sequence[int]
    ) -> tuple[dict[int, list[str]], set[int]]:
        """(lead id -> the call ids of its attempts, the leads some campaign counts)."""
        calls: dict[int, list[str]] = {}
        counted: set[int] = set()
        for part in _chunks(list(lead_ids)):
            marks = _marks(len(part))
            async with self.db.execute(
                f"SELECT lead_id, call_id FROM campaign_attempts WHERE lead_id IN ({marks})"
                " ORDER BY id",
                part,
            ) as cur:
                for lid, cid in await cur.fetchall():
                    calls.setdefault(int(lid), []).append(str(cid))
            async with self.db.execute(
                f"SELECT DISTINCT lead_id FROM campaign_leads WHERE lead_id IN ({marks})", part
            ) as cur:
                counted.update(int(r[0]) for r in await cur.fetchall())
        return calls, counted

    async def retention_purge_leads(
        self, items: Sequence[Expired], *, stub: bool, at: float, record: Record
    ) -> PurgeOutcome:
        """Purge leads: their personal data (sealed fields), blind index and subject link go.
        `stub`: the row stays for the campaigns that count it, with no data, a random index
        (unlinkable to the number; a later import of the number is a new lead) and
        `purged_at`; else the row is deleted.

        Inside the transaction: a hold now in force on the lead's subject or on a call of its
        attempts keeps it; a lead listed or dialled since the plan (younger than planned) is
        kept (hold id 0); a lead planned for deletion that a campaign now counts is kept for
        the next run (hold id 0), which stubs it.
        """

        async def body() -> PurgeOutcome:
            held = await self._retention_held(at)
            ids = [int(i.key) for i in items]
            calls, counted = await self.retention_lead_usage(ids)
            ages: dict[int, float] = {}
            for part in _chunks(ids):
                async with self.db.execute(
                    f"SELECT l.id, {_LEAD_AGE} FROM leads l WHERE l.purged_at IS NULL"
                    f" AND l.id IN ({_marks(len(part))})",
                    part,
                ) as cur:
                    ages.update({int(r[0]): float(r[1]) for r in await cur.fetchall()})
            kept: dict[Key, int] = {}
            free: list[int] = []
            for item in items:
                lid = int(item.key)
                hid = held.hold_on(None, item.subjects)
                for cid in calls.get(lid, []) if hid is None else []:
                    hid = held.hold_on(cid)
                    if hid is not None:
                        break
                if hid is not None:
                    kept[item.key] = hid
                elif lid not in ages:
                    continue  # gone (or purged) meanwhile
                elif ages[lid] > item.at or (not stub and lid in counted):
                    kept[item.key] = 0
                else:
                    free.append(lid)
            for part in _chunks(free):
                marks = _marks(len(part))
                await self.db.execute(
                    f"DELETE FROM subject_links WHERE item_type = 'lead' AND item_id IN ({marks})",
                    [str(k) for k in part],
                )
                if stub:
                    await self.db.execute(
                        "UPDATE leads SET fields_enc = x'', state = 'erased', subject_id = NULL,"
                        f" blind_index = randomblob(32), purged_at = ? WHERE id IN ({marks})",
                        (at, *part),
                    )
                else:
                    await self.db.execute(f"DELETE FROM leads WHERE id IN ({marks})", part)
            if free:
                await self._audit_append(*record({"anonymised" if stub else "deleted": len(free)}))
            return PurgeOutcome(tuple(free), kept)

        return await self._purge_tx(body)

    async def retention_expired_bookings(self, before: float) -> list[Expired]:
        """Bookings (booked or cancelled) whose appointment ended, and which were made, before
        `before`, oldest first; `at` the later of the two. A hold on the booking's call or on a
        subject its details are sealed under keeps it."""
        async with self.db.execute(
            "SELECT id, line, MAX(ends_at, created_at) AS at, call_id, key_subjects FROM bookings"
            " WHERE ends_at < ? AND created_at < ? ORDER BY at, id",
            (before, before),
        ) as cur:
            return [
                Expired(int(r[0]), str(r[1]), float(r[2]), str(r[3]) or None, _subject_ids(r[4]))
                for r in await cur.fetchall()
            ]

    async def retention_delete_bookings(
        self, items: Sequence[Expired], *, at: float, record: Record
    ) -> PurgeOutcome:
        """Delete bookings (a dialogue outcome naming one keeps no link: ON DELETE SET NULL).
        A booking's row in `caldav_events` stays: the line's CalDAV sync deletes the event
        from the office calendar (its booking is gone)."""

        async def body() -> PurgeOutcome:
            free, kept = await self._split_held(items, at)
            present = set(await self._existing("bookings", "id", [i.key for i in free]))
            keys = [i.key for i in free if i.key in present]
            for part in _chunks(keys):
                await self.db.execute(
                    f"DELETE FROM bookings WHERE id IN ({_marks(len(part))})", part
                )
            if keys:
                await self._audit_append(*record({"deleted": len(keys)}))
            return PurgeOutcome(tuple(keys), kept)

        return await self._purge_tx(body)

    # ---- files whose rows are gone
    async def retention_files_pending(self) -> list[str]:
        async with self.db.execute("SELECT path FROM retention_files ORDER BY path") as cur:
            return [str(r[0]) for r in await cur.fetchall()]

    async def retention_files_done(self, paths: Sequence[str]) -> None:
        async def body() -> None:
            for part in _chunks(list(paths)):
                await self.db.execute(
                    f"DELETE FROM retention_files WHERE path IN ({_marks(len(part))})", part
                )

        await self._tx(body)

    # ---- the runs
    async def retention_run_start(self, started_at: float, *, dry_run: bool) -> int:
        async def body() -> int:
            cur = await self.db.execute(
                "INSERT INTO retention_runs (started_at, dry_run, status) VALUES (?, ?, 'running')",
                (started_at, int(dry_run)),
            )
            return int(cur.lastrowid or 0)

        return int(await self._tx(body))

    async def retention_run_finish(
        self,
        run_id: int,
        *,
        finished_at: float,
        counts: Mapping[str, Mapping[str, int]],
        error: str = "",
        audit: tuple[AuditEntry, AuditSeal] | None = None,
    ) -> None:
        """Close a run (status ok, or error with `error`), with its summary audit row."""

        async def body() -> None:
            await self.db.execute(
                "UPDATE retention_runs SET finished_at = ?, counts = ?, status = ?, error = ?"
                " WHERE id = ?",
                (
                    finished_at,
                    json.dumps(counts, sort_keys=True),
                    "error" if error else "ok",
                    error,
                    run_id,
                ),
            )
            if audit is not None:
                await self._audit_append(*audit)

        await self._tx(body)

    async def retention_runs(self, limit: int = 10) -> list[dict[str, Any]]:
        async with self.db.execute(
            "SELECT * FROM retention_runs ORDER BY id DESC LIMIT ?", (limit,)
        ) as cur:
            return [dict(r) for r in await cur.fetchall()]
