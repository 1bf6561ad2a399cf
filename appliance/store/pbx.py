"""SQL of the PBX configuration (issue 11): versions, SIP blocks, provisioning tokens."""

from __future__ import annotations

from typing import Any

from appliance.store.base import AuditEntry, AuditSeal, StoreBase


class PbxSql(StoreBase):
    # ---- versions: the newest row is the live configuration
    async def pbx_add_version(
        self,
        *,
        at: float,
        actor: str,
        note: str,
        snapshot: str,
        files_sha: str,
        rollback_of: int | None,
        audit: tuple[AuditEntry, AuditSeal],
    ) -> int:
        async def body() -> int:
            cur = await self.db.execute(
                "INSERT INTO pbx_versions (created_at, actor, note, snapshot, files_sha,"
                " rollback_of) VALUES (?, ?, ?, ?, ?, ?)",
                (at, actor, note, snapshot, files_sha, rollback_of),
            )
            vid = int(cur.lastrowid or 0)
            entry, seal = audit
            await self._audit_append(
                AuditEntry(**{**entry.__dict__, "object": f"pbx:v{vid}"}), seal
            )
            return vid

        return int(await self._tx(body))

    async def pbx_current(self) -> dict[str, Any] | None:
        async with self.db.execute("SELECT * FROM pbx_versions ORDER BY id DESC LIMIT 1") as cur:
            row = await cur.fetchone()
        return dict(row) if row else None

    async def pbx_version(self, vid: int) -> dict[str, Any] | None:
        async with self.db.execute("SELECT * FROM pbx_versions WHERE id = ?", (vid,)) as cur:
            row = await cur.fetchone()
        return dict(row) if row else None

    async def pbx_versions(self, limit: int = 50) -> list[dict[str, Any]]:
        async with self.db.execute(
            "SELECT id, created_at, actor, note, files_sha, rollback_of FROM pbx_versions"
            " ORDER BY id DESC LIMIT ?",
            (limit,),
        ) as cur:
            return [dict(r) for r in await cur.fetchall()]

    # ---- SIP blocks
    async def pbx_block(
        self,
        *,
        address: str,
        at: float,
        until: float,
        failures: int,
        reason: str,
        audit: tuple[AuditEntry, AuditSeal],
    ) -> None:
        async def body() -> None:
            await self.db.execute(
                "INSERT OR REPLACE INTO pbx_blocks (address, blocked_at, until, failures, reason)"
                " VALUES (?, ?, ?, ?, ?)",
                (address, at, until, failures, reason),
            )
            await self._audit_append(*audit)

        await self._tx(body)

    async def pbx_unblock(self, address: str, audit: tuple[AuditEntry, AuditSeal]) -> bool:
        async def body() -> bool:
            cur = await self.db.execute("DELETE FROM pbx_blocks WHERE address = ?", (address,))
            if cur.rowcount == 1:
                await self._audit_append(*audit)
            return cur.rowcount == 1

        return bool(await self._tx(body))

    async def pbx_blocks(self, active_at: float | None = None) -> list[dict[str, Any]]:
        sql, args = "SELECT * FROM pbx_blocks", ()
        if active_at is not None:
            sql, args = sql + " WHERE until > ?", (active_at,)  # type: ignore[assignment]
        async with self.db.execute(sql + " ORDER BY address", args) as cur:
            return [dict(r) for r in await cur.fetchall()]

    # ---- provisioning tokens
    async def pbx_provision_issue(self, mac: str, extension: str, at: float) -> None:
        async def body() -> None:
            await self.db.execute(
                "INSERT OR REPLACE INTO pbx_provisioning (mac, extension, issued_at,"
                " delivered_at) VALUES (?, ?, ?, NULL)",
                (mac, extension, at),
            )

        await self._tx(body)

    async def pbx_provision_take(self, mac: str, at: float) -> str | None:
        """The extension whose password `mac` may fetch now; marks it delivered (once)."""

        async def body() -> str | None:
            cur = await self.db.execute(
                "UPDATE pbx_provisioning SET delivered_at = ? WHERE mac = ?"
                " AND delivered_at IS NULL RETURNING extension",
                (at, mac),
            )
            row = await cur.fetchone()
            return str(row[0]) if row else None

        result = await self._tx(body)
        return None if result is None else str(result)

    async def pbx_provisioning(self) -> list[dict[str, Any]]:
        async with self.db.execute("SELECT * FROM pbx_provisioning ORDER BY mac") as cur:
            return [dict(r) for r in await cur.fetchall()]
