"""SQL for operating the box (issue 12): alerts, run-time settings, and the read-only
figures the metrics and readiness checks gather from the database."""

from __future__ import annotations

from typing import Any

from appliance.store.base import StoreBase


class OpsSql(StoreBase):
    # ---- alerts: one open row per (kind, key)
    async def alert_fire(
        self, *, kind: str, key: str, severity: str, message: str, at: float
    ) -> tuple[dict[str, Any], bool]:
        """Open an alert or bump the open one; returns the row and whether it is new."""

        async def body() -> tuple[dict[str, Any], bool]:
            async with self.db.execute(
                "SELECT id FROM alerts WHERE kind = ? AND key = ? AND resolved_at IS NULL",
                (kind, key),
            ) as cur:
                found = await cur.fetchone()
            if found is None:
                cur2 = await self.db.execute(
                    "INSERT INTO alerts (kind, key, severity, message, first_at, last_at)"
                    " VALUES (?, ?, ?, ?, ?, ?)",
                    (kind, key, severity, message, at, at),
                )
                alert_id, new = int(cur2.lastrowid or 0), True
            else:
                alert_id, new = int(found[0]), False
                await self.db.execute(
                    "UPDATE alerts SET last_at = ?, count = count + 1, message = ?,"
                    " severity = ? WHERE id = ?",
                    (at, message, severity, alert_id),
                )
            async with self.db.execute("SELECT * FROM alerts WHERE id = ?", (alert_id,)) as cur:
                row = await cur.fetchone()
            assert row is not None
            return dict(row), new

        result: tuple[dict[str, Any], bool] = await self._tx(body)
        return result

    async def alert_resolve(self, *, kind: str, key: str, at: float) -> dict[str, Any] | None:
        """Close the open alert for (kind, key); None when none was open."""

        async def body() -> dict[str, Any] | None:
            async with self.db.execute(
                "SELECT id FROM alerts WHERE kind = ? AND key = ? AND resolved_at IS NULL",
                (kind, key),
            ) as cur:
                found = await cur.fetchone()
            if found is None:
                return None
            await self.db.execute(
                "UPDATE alerts SET resolved_at = ? WHERE id = ?", (at, int(found[0]))
            )
            async with self.db.execute("SELECT * FROM alerts WHERE id = ?", (found[0],)) as cur:
                row = await cur.fetchone()
            return dict(row) if row else None

        result: dict[str, Any] | None = await self._tx(body)
        return result

    async def alert_get(self, alert_id: int) -> dict[str, Any] | None:
        async with self.db.execute("SELECT * FROM alerts WHERE id = ?", (alert_id,)) as cur:
            row = await cur.fetchone()
        return dict(row) if row else None

    async def alerts_list(
        self, *, open_only: bool = True, limit: int = 200
    ) -> list[dict[str, Any]]:
        where = "WHERE resolved_at IS NULL" if open_only else ""
        async with self.db.execute(
            f"SELECT * FROM alerts {where} ORDER BY last_at DESC, id DESC LIMIT ?", (limit,)
        ) as cur:
            return [dict(r) for r in await cur.fetchall()]

    async def alert_open_counts(self) -> dict[str, int]:
        """Open alerts per severity, acknowledged ones included."""
        async with self.db.execute(
            "SELECT severity, COUNT(*) FROM alerts WHERE resolved_at IS NULL GROUP BY severity"
        ) as cur:
            return {str(r[0]): int(r[1]) for r in await cur.fetchall()}

    async def alert_ack(self, alert_id: int, *, at: float, by: str) -> bool:
        async def body() -> bool:
            cur = await self.db.execute(
                "UPDATE alerts SET acked_at = ?, acked_by = ? WHERE id = ? AND acked_at IS NULL"
                " AND resolved_at IS NULL",
                (at, by, alert_id),
            )
            return cur.rowcount > 0

        return bool(await self._tx(body))

    async def alert_notified(self, alert_id: int, *, at: float, error: str | None) -> None:
        async def body() -> None:
            await self.db.execute(
                "UPDATE alerts SET notified_at = ?, notify_error = ? WHERE id = ?",
                (at, error, alert_id),
            )

        await self._tx(body)

    # ---- run-time settings
    async def ops_setting(self, name: str) -> str | None:
        async with self.db.execute("SELECT value FROM ops_settings WHERE name = ?", (name,)) as cur:
            row = await cur.fetchone()
        return str(row[0]) if row else None

    async def ops_setting_set(self, name: str, value: str, *, at: float, by: str) -> None:
        async def body() -> None:
            await self.db.execute(
                "INSERT INTO ops_settings (name, value, updated_at, updated_by)"
                " VALUES (?, ?, ?, ?) ON CONFLICT (name) DO UPDATE SET value = excluded.value,"
                " updated_at = excluded.updated_at, updated_by = excluded.updated_by",
                (name, value, at, by),
            )

        await self._tx(body)

    # ---- read-only figures for /metrics and the alert checks (no personal data comes out)
    async def ops_calls_by_line(self) -> list[tuple[str, str, int]]:
        """(line, disposition, calls) over the calls in the store (kept by triggers)."""
        return await self._ops_counts("calls")

    async def ops_cdrs_by_line(self) -> list[tuple[str, str, int]]:
        """(line, disposition, CDRs) over every CDR ever written (never decreases)."""
        return await self._ops_counts("cdrs")

    async def _ops_counts(self, metric: str) -> list[tuple[str, str, int]]:
        async with self.db.execute(
            "SELECT line, disposition, n FROM ops_counts WHERE metric = ? ORDER BY 1, 2",
            (metric,),
        ) as cur:
            return [(str(r[0]), str(r[1]), int(r[2])) for r in await cur.fetchall()]

    async def ops_open_rights(self, closed: tuple[str, ...]) -> list[tuple[int, str, float]]:
        """(id, kind, due_at) of each request not in a `closed` status, soonest first."""
        marks = ", ".join("?" for _ in closed)
        async with self.db.execute(
            f"SELECT id, kind, due_at FROM rights_requests WHERE status NOT IN ({marks})"
            " ORDER BY due_at",
            closed,
        ) as cur:
            return [(int(r[0]), str(r[1]), float(r[2])) for r in await cur.fetchall()]

    async def ops_last_retention_run(self) -> dict[str, Any] | None:
        """The newest finished real purge (dry runs excluded)."""
        async with self.db.execute(
            "SELECT * FROM retention_runs WHERE dry_run = 0 AND status != 'running'"
            " ORDER BY id DESC LIMIT 1"
        ) as cur:
            row = await cur.fetchone()
        return dict(row) if row else None

    async def ops_post_call_jobs(self) -> dict[str, int]:
        """Post-call work waiting per stage (transcribe, report)."""
        async with self.db.execute(
            "SELECT stage, COUNT(*) FROM post_call_jobs WHERE stage != 'done' GROUP BY stage"
        ) as cur:
            return {str(r[0]): int(r[1]) for r in await cur.fetchall()}

    async def ops_write_probe(self, at: float) -> None:
        """A real write (readiness: the database takes writes, not only reads)."""
        await self.ops_setting_set("readyz_probe", f"{at:.3f}", at=at, by="readyz")
