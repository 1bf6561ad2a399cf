"""SQL for the human review queue (Art. 22) and the breach register (Art. 33/34), issue 5.

Every write takes its audit row into the same transaction, so a change and its audit entry
commit together or not at all.
"""

from __future__ import annotations

from collections.abc import Collection, Mapping
from dataclasses import replace
from typing import Any

from appliance.store.base import AuditEntry, AuditSeal, StoreBase, StoreError

Audit = tuple[AuditEntry, AuditSeal]

_REVIEW_INSERT = frozenset({"kind", "ref", "call_id", "reason", "flagged_by", "flagged_at"})
_BREACH_COLUMNS = frozenset(
    {
        "summary", "occurred_at", "discovered_at", "categories", "subjects_affected",
        "consequences", "measures", "status", "authority_decision", "authority_at",
        "authority_ref", "authority_note", "subjects_decision", "subjects_at", "subjects_note",
        "closed_at", "close_note", "recorded_by", "recorded_at", "updated_at",
    }
)  # fmt: skip


class GovernanceSql(StoreBase):
    # ---- review queue
    async def review_add(self, row: Mapping[str, Any], audit: Audit) -> int:
        bad = set(row) - _REVIEW_INSERT
        if bad:
            raise StoreError(f"not review_items columns: {sorted(bad)}")
        cols = list(row)

        async def body() -> int:
            cur = await self.db.execute(
                f"INSERT INTO review_items ({', '.join(cols)}) "
                f"VALUES ({', '.join('?' for _ in cols)})",
                [row[c] for c in cols],
            )
            item_id = int(cur.lastrowid or 0)
            await self._audit_append(replace(audit[0], object=f"review:{item_id}"), audit[1])
            return item_id

        return int(await self._tx(body))

    async def review_get(self, item_id: int) -> dict[str, Any] | None:
        async with self.db.execute("SELECT * FROM review_items WHERE id = ?", (item_id,)) as cur:
            row = await cur.fetchone()
        return dict(row) if row else None

    async def review_list(
        self, status: str | None = None, ref: str | None = None
    ) -> list[dict[str, Any]]:
        sql, args = "SELECT * FROM review_items WHERE 1", []
        if status is not None:
            sql += " AND status = ?"
            args.append(status)
        if ref is not None:
            sql += " AND ref = ?"
            args.append(ref)
        async with self.db.execute(sql + " ORDER BY flagged_at, id", args) as cur:
            return [dict(r) for r in await cur.fetchall()]

    async def review_decide(
        self,
        item_id: int,
        *,
        outcome: str,
        by: str,
        role: str,
        at: float,
        note: str,
        audit: Audit,
    ) -> bool:
        """Decide an open item and audit it; False (nothing written) if it is not open."""

        async def body() -> bool:
            cur = await self.db.execute(
                "UPDATE review_items SET status = 'decided', outcome = ?, decided_by = ?,"
                " decided_role = ?, decided_at = ?, note = ? WHERE id = ? AND status = 'open'",
                (outcome, by, role, at, note, item_id),
            )
            if cur.rowcount != 1:
                return False
            await self._audit_append(*audit)
            return True

        return bool(await self._tx(body))

    # ---- breach register
    async def breach_add(
        self, row: Mapping[str, Any], event: tuple[float, str, str, str, str], audit: Audit
    ) -> int:
        """Insert a breach with its first event ((at, actor, role, action, detail))."""
        bad = set(row) - _BREACH_COLUMNS
        if bad:
            raise StoreError(f"not breaches columns: {sorted(bad)}")
        cols = list(row)

        async def body() -> int:
            cur = await self.db.execute(
                f"INSERT INTO breaches ({', '.join(cols)}) VALUES ({', '.join('?' for _ in cols)})",
                [row[c] for c in cols],
            )
            breach_id = int(cur.lastrowid or 0)
            await self._breach_event(breach_id, event)
            await self._audit_append(replace(audit[0], object=f"breach:{breach_id}"), audit[1])
            return breach_id

        return int(await self._tx(body))

    async def breach_update(
        self,
        breach_id: int,
        changes: Mapping[str, Any],
        *,
        expect: Mapping[str, Collection[Any]],
        event: tuple[float, str, str, str, str],
        audit: Audit,
    ) -> None:
        """Change a breach, log the event and audit, atomically.

        `expect` (column -> allowed current values) is checked inside the transaction: if
        another process moved the breach on meanwhile, StoreError and nothing changes.
        """
        bad = (set(changes) | set(expect)) - _BREACH_COLUMNS
        if bad:
            raise StoreError(f"not breaches columns: {sorted(bad)}")

        async def body() -> None:
            async with self.db.execute("SELECT * FROM breaches WHERE id = ?", (breach_id,)) as cur:
                row = await cur.fetchone()
            if row is None:
                raise StoreError(f"no breach #{breach_id}")
            for column, allowed in expect.items():
                if row[column] not in allowed:
                    raise StoreError(f"breach #{breach_id} changed meanwhile ({column})")
            sets = ", ".join(f"{c} = ?" for c in changes)
            await self.db.execute(
                f"UPDATE breaches SET {sets} WHERE id = ?", (*changes.values(), breach_id)
            )
            await self._breach_event(breach_id, event)
            await self._audit_append(*audit)

        await self._tx(body)

    async def _breach_event(self, breach_id: int, event: tuple[float, str, str, str, str]) -> None:
        await self.db.execute(
            "INSERT INTO breach_events (breach_id, at, actor, role, action, detail)"
            " VALUES (?, ?, ?, ?, ?, ?)",
            (breach_id, *event),
        )

    async def breach_get(self, breach_id: int) -> dict[str, Any] | None:
        async with self.db.execute("SELECT * FROM breaches WHERE id = ?", (breach_id,)) as cur:
            row = await cur.fetchone()
        return dict(row) if row else None

    async def breach_list(self, *, include_closed: bool = True) -> list[dict[str, Any]]:
        sql = "SELECT * FROM breaches"
        if not include_closed:
            sql += " WHERE status != 'closed'"
        async with self.db.execute(sql + " ORDER BY discovered_at, id") as cur:
            return [dict(r) for r in await cur.fetchall()]

    async def breach_events(self, breach_id: int) -> list[dict[str, Any]]:
        async with self.db.execute(
            "SELECT * FROM breach_events WHERE breach_id = ? ORDER BY id", (breach_id,)
        ) as cur:
            return [dict(r) for r in await cur.fetchall()]
