"""SQL for the admin API: API tokens (issue 5); users and sessions come with the admin UI."""

from __future__ import annotations

from typing import Any

from appliance.store.base import AuditEntry, AuditSeal, StoreBase


class AdminSql(StoreBase):
    async def token_add(
        self,
        *,
        name: str,
        scopes: str,
        secret_sha256: bytes,
        created_at: float,
        created_by: str,
        expires_at: float | None,
        audit: tuple[AuditEntry, AuditSeal],
    ) -> int:
        async def body() -> int:
            await self._audit_append(*audit)
            cur = await self.db.execute(
                "INSERT INTO api_tokens (name, scopes, secret_sha256, created_at, created_by,"
                " expires_at) VALUES (?, ?, ?, ?, ?, ?)",
                (name, scopes, secret_sha256, created_at, created_by, expires_at),
            )
            return int(cur.lastrowid or 0)

        return int(await self._tx(body))

    async def token_get(self, token_id: int) -> dict[str, Any] | None:
        async with self.db.execute("SELECT * FROM api_tokens WHERE id = ?", (token_id,)) as cur:
            row = await cur.fetchone()
        return dict(row) if row else None

    async def token_by_name(self, name: str) -> dict[str, Any] | None:
        async with self.db.execute("SELECT * FROM api_tokens WHERE name = ?", (name,)) as cur:
            row = await cur.fetchone()
        return dict(row) if row else None

    async def tokens(self) -> list[dict[str, Any]]:
        async with self.db.execute("SELECT * FROM api_tokens ORDER BY id") as cur:
            return [dict(r) for r in await cur.fetchall()]

    async def token_used(self, token_id: int, at: float) -> None:
        async def body() -> None:
            await self.db.execute(
                "UPDATE api_tokens SET last_used_at = ? WHERE id = ?", (at, token_id)
            )

        await self._tx(body)

    async def token_revoke(
        self, token_id: int, at: float, audit: tuple[AuditEntry, AuditSeal]
    ) -> bool:
        async def body() -> bool:
            await self._audit_append(*audit)
            cur = await self.db.execute(
                "UPDATE api_tokens SET revoked_at = ? WHERE id = ? AND revoked_at IS NULL",
                (at, token_id),
            )
            return cur.rowcount > 0

        return bool(await self._tx(body))
