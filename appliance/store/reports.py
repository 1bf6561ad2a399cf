"""SQL for post-call AI reports (issue 4).

One report per call (`call_reports`, deleted with its call by ON DELETE CASCADE). A report is
linked to the subjects whose keys seal it (role `key`) and to the subjects it names (role
`mentioned`); those named subjects are linked to the call too (role `report`), so "everything
about X" finds the call and its report. When a report goes (retention, erasure, a redo that no
longer names someone), a subject only that report named — no link left, no key of a row of its
call — goes with it: its data key, and with it the name or address it holds, is destroyed.
"""

from __future__ import annotations

import time
from collections.abc import Sequence
from dataclasses import asdict, dataclass, replace
from typing import Any

from appliance.store.base import AuditEntry, AuditSeal, StoreBase, StoreError

Audit = tuple[AuditEntry, AuditSeal]
STATUSES = ("ok", "needs_review", "failed")
_LINK = (
    "INSERT OR IGNORE INTO subject_links (subject_id, item_type, item_id, role, linked_at)"
    " VALUES (?, ?, ?, ?, ?)"
)
# Rows whose key_subjects may name a subject linked to their call only through a report.
_KEYED_TABLES = ("recordings", "transcripts", "call_reports")


@dataclass(frozen=True)
class ReportRow:
    call_id: str
    line: str
    created_at: float
    status: str
    attempts: int
    schema_id: str
    model: str
    report_enc: bytes
    key_subjects: str
    errors: str = "[]"
    notes: str = "{}"


def _chunks(items: Sequence[Any], size: int = 500) -> list[Sequence[Any]]:
    return [items[i : i + size] for i in range(0, len(items), size)]


def _marks(items: Sequence[Any]) -> str:
    return ", ".join("?" for _ in items)


class ReportSql(StoreBase):
    async def save_report(self, row: ReportRow, mentioned: Sequence[int], audit: Audit) -> int:
        """Store the call's report (replacing an earlier one, same id), link its subjects and
        audit it (`object` becomes `report:<id>`), in one transaction; the report's id."""
        if row.status not in STATUSES:
            raise StoreError(f"report status {row.status!r} is not one of {', '.join(STATUSES)}")
        key_subjects = [int(s) for s in row.key_subjects.split(",") if s]
        if not key_subjects:
            raise StoreError(f"report of call {row.call_id}: no subject keys to seal under")
        fields = asdict(row)
        cols = list(fields)
        updates = ", ".join(f"{c} = excluded.{c}" for c in cols if c != "call_id")

        async def body() -> int:
            async with self.db.execute("SELECT 1 FROM calls WHERE id = ?", (row.call_id,)) as cur:
                if await cur.fetchone() is None:
                    raise StoreError(f"call {row.call_id} is not stored: no report without it")
            await self.db.execute(
                f"INSERT INTO call_reports ({', '.join(cols)}) VALUES ({_marks(cols)})"
                f" ON CONFLICT (call_id) DO UPDATE SET {updates}, review_id = NULL",
                list(fields.values()),
            )
            async with self.db.execute(
                "SELECT id FROM call_reports WHERE call_id = ?", (row.call_id,)
            ) as cur:
                found = await cur.fetchone()
            if found is None:
                raise StoreError(f"report of call {row.call_id} was not stored")
            rid = int(found[0])
            before = await self._unlink_reports([rid], [row.call_id])
            now = time.time()
            links = [(s, "report", str(rid), "key", now) for s in key_subjects]
            links += [(s, "report", str(rid), "mentioned", now) for s in mentioned]
            links += [(s, "call", row.call_id, "report", now) for s in mentioned]
            await self.db.executemany(_LINK, links)
            await self._drop_orphans(before - set(mentioned), [row.call_id])
            await self._audit_append(replace(audit[0], object=f"report:{rid}"), audit[1])
            return rid

        return int(await self._tx(body))

    async def call_own_subject_ids(self, call_id: str) -> list[int]:
        """The call's subjects from its own records (caller, callee, …), not those a report
        named: a redone report is keyed afresh, not under every name an earlier one found."""
        async with self.db.execute(
            "SELECT DISTINCT subject_id FROM subject_links"
            " WHERE item_type = 'call' AND item_id = ? AND role != 'report' ORDER BY subject_id",
            (call_id,),
        ) as cur:
            return [int(r[0]) for r in await cur.fetchall()]

    async def set_report_review(self, report_id: int, review_id: int) -> None:
        async def body() -> None:
            await self.db.execute(
                "UPDATE call_reports SET review_id = ? WHERE id = ?", (review_id, report_id)
            )

        await self._tx(body)

    async def report_for_call(self, call_id: str) -> dict[str, Any] | None:
        async with self.db.execute(
            "SELECT * FROM call_reports WHERE call_id = ?", (call_id,)
        ) as cur:
            row = await cur.fetchone()
        return dict(row) if row else None

    async def reports_for_calls(self, call_ids: Sequence[str]) -> list[dict[str, Any]]:
        """The reports of these calls (retention, erasure, access export), by id."""
        out: list[dict[str, Any]] = []
        for part in _chunks(list(call_ids)):
            async with self.db.execute(
                f"SELECT * FROM call_reports WHERE call_id IN ({_marks(part)})", list(part)
            ) as cur:
                out.extend(dict(r) for r in await cur.fetchall())
        return sorted(out, key=lambda r: int(r["id"]))

    async def reports_by_ids(self, ids: Sequence[int]) -> list[dict[str, Any]]:
        out: list[dict[str, Any]] = []
        for part in _chunks(sorted({int(i) for i in ids})):
            async with self.db.execute(
                f"SELECT * FROM call_reports WHERE id IN ({_marks(part)})", list(part)
            ) as cur:
                out.extend(dict(r) for r in await cur.fetchall())
        return sorted(out, key=lambda r: int(r["id"]))

    async def reports_created_before(self, at: float) -> list[dict[str, Any]]:
        """Reports older than `at` (without their sealed text): retention candidates."""
        async with self.db.execute(
            "SELECT id, call_id, line, status, created_at FROM call_reports"
            " WHERE created_at < ? ORDER BY id",
            (at,),
        ) as cur:
            return [dict(r) for r in await cur.fetchall()]

    async def delete_reports(self, ids: Sequence[int], audit: Audit | None = None) -> int:
        """Delete reports, their links and the subjects only they named; how many reports went.

        Idempotent: ids whose rows are already gone (a deleted call cascaded) still have their
        links and orphaned subjects removed. Deleted pages are zeroed and the WAL checkpointed.
        """
        ids = sorted({int(i) for i in ids})
        if not ids:
            return 0

        async def body() -> int:
            calls: list[str] = []
            for part in _chunks(ids):
                async with self.db.execute(
                    f"SELECT call_id FROM call_reports WHERE id IN ({_marks(part)})", list(part)
                ) as cur:
                    calls.extend(str(r[0]) for r in await cur.fetchall())
            named = await self._unlink_reports(ids, calls)
            n = 0
            for part in _chunks(ids):
                cur = await self.db.execute(
                    f"DELETE FROM call_reports WHERE id IN ({_marks(part)})", list(part)
                )
                n += max(cur.rowcount, 0)
            await self._drop_orphans(named, calls)
            if audit is not None:
                await self._audit_append(*audit)
            return n

        await self.db.execute("PRAGMA secure_delete = ON")
        try:
            count = int(await self._tx(body))
        finally:
            await self.db.execute("PRAGMA secure_delete = OFF")
        await self.checkpoint()
        return count

    async def _unlink_reports(self, ids: Sequence[int], calls: Sequence[str]) -> set[int]:
        """Remove the reports' subject links and the call links their mentions made; the
        subjects they had named. Inside a transaction."""
        named: set[int] = set()
        for part in _chunks([str(i) for i in ids]):
            async with self.db.execute(
                "SELECT subject_id FROM subject_links WHERE item_type = 'report'"
                f" AND role = 'mentioned' AND item_id IN ({_marks(part)})",
                list(part),
            ) as cur:
                named.update(int(r[0]) for r in await cur.fetchall())
            await self.db.execute(
                "DELETE FROM subject_links WHERE item_type = 'report'"
                f" AND item_id IN ({_marks(part)})",
                list(part),
            )
        for part in _chunks(list(calls)):
            await self.db.execute(
                "DELETE FROM subject_links WHERE item_type = 'call' AND role = 'report'"
                f" AND item_id IN ({_marks(part)})",
                list(part),
            )
        return named

    async def _drop_orphans(self, candidates: set[int], calls: Sequence[str]) -> None:
        """Delete candidate subjects nothing links to, that key no row of `calls` and that no
        active legal hold names. Inside a transaction."""
        now = time.time()
        for sid in sorted(candidates):
            async with self.db.execute(
                "SELECT 1 FROM subject_links WHERE subject_id = ? LIMIT 1", (sid,)
            ) as cur:
                if await cur.fetchone() is not None:
                    continue
            async with self.db.execute(
                "SELECT 1 FROM legal_holds WHERE scope = 'subject' AND subject_id = ?"
                " AND released_at IS NULL AND (expires_at IS NULL OR expires_at > ?) LIMIT 1",
                (sid, now),
            ) as cur:
                if await cur.fetchone() is not None:
                    continue
            if await self._keys_rows(sid, calls):
                continue
            await self.db.execute("DELETE FROM subjects WHERE id = ?", (sid,))

    async def _keys_rows(self, subject_id: int, calls: Sequence[str]) -> bool:
        pattern = f"%,{subject_id},%"
        for table in _KEYED_TABLES:
            for part in _chunks(list(calls)):
                async with self.db.execute(
                    f"SELECT 1 FROM {table} WHERE call_id IN ({_marks(part)})"
                    " AND ',' || key_subjects || ',' LIKE ? LIMIT 1",
                    [*part, pattern],
                ) as cur:
                    if await cur.fetchone() is not None:
                        return True
        return False
