"""SQL for the admin API: API tokens (issue 5); users and sessions come with the admin UI."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from appliance.store.base import AuditEntry, AuditSeal, StoreBase, StoreError


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

    # ---- admin UI users and sessions (issue 6)
    async def user_add(self, row: dict[str, Any], audit: tuple[AuditEntry, AuditSeal]) -> int:
        async def body() -> int:
            await self._audit_append(*audit)
            cols = ", ".join(row)
            marks = ", ".join("?" for _ in row)
            cur = await self.db.execute(
                f"INSERT INTO users ({cols}) VALUES ({marks})", tuple(row.values())
            )
            return int(cur.lastrowid or 0)

        return int(await self._tx(body))

    async def user_get(self, user_id: int) -> dict[str, Any] | None:
        async with self.db.execute("SELECT * FROM users WHERE id = ?", (user_id,)) as cur:
            row = await cur.fetchone()
        return dict(row) if row else None

    async def user_by_name(self, username: str) -> dict[str, Any] | None:
        async with self.db.execute("SELECT * FROM users WHERE username = ?", (username,)) as cur:
            row = await cur.fetchone()
        return dict(row) if row else None

    async def users(self) -> list[dict[str, Any]]:
        async with self.db.execute("SELECT * FROM users ORDER BY username") as cur:
            return [dict(r) for r in await cur.fetchall()]

    async def count_users(self) -> int:
        async with self.db.execute("SELECT count(*) FROM users") as cur:
            row = await cur.fetchone()
        return int(row[0]) if row else 0

    async def user_update(
        self,
        user_id: int,
        changes: dict[str, Any],
        audit: tuple[AuditEntry, AuditSeal] | None = None,
        *,
        end_sessions: bool = False,
    ) -> None:
        """Change columns of one user (names come from code, never from input)."""

        async def body() -> None:
            if audit is not None:
                await self._audit_append(*audit)
            sets = ", ".join(f"{k} = ?" for k in changes)
            await self.db.execute(
                f"UPDATE users SET {sets} WHERE id = ?", (*changes.values(), user_id)
            )
            if end_sessions:
                await self.db.execute("DELETE FROM sessions WHERE user_id = ?", (user_id,))

        await self._tx(body)

    async def session_add(
        self,
        id_sha256: bytes,
        user_id: int,
        now: float,
        expires_at: float,
        audit: tuple[AuditEntry, AuditSeal],
        *,
        replaces: bytes | None = None,
    ) -> None:
        async def body() -> None:
            await self._audit_append(*audit)
            if replaces is not None:
                await self.db.execute("DELETE FROM sessions WHERE id_sha256 = ?", (replaces,))
            await self.db.execute(
                "INSERT INTO sessions (id_sha256, user_id, created_at, last_seen_at, expires_at)"
                " VALUES (?, ?, ?, ?, ?)",
                (id_sha256, user_id, now, now, expires_at),
            )
            await self.db.execute(
                "UPDATE users SET failed_logins = 0, locked_until = NULL, last_login_at = ?"
                " WHERE id = ?",
                (now, user_id),
            )

        await self._tx(body)

    async def session_get(self, id_sha256: bytes) -> dict[str, Any] | None:
        async with self.db.execute(
            "SELECT s.id_sha256, s.expires_at, s.last_seen_at, u.* FROM sessions s"
            " JOIN users u ON u.id = s.user_id WHERE s.id_sha256 = ?",
            (id_sha256,),
        ) as cur:
            row = await cur.fetchone()
        return dict(row) if row else None

    async def session_touch(self, id_sha256: bytes, now: float, expires_at: float) -> None:
        async def body() -> None:
            await self.db.execute(
                "UPDATE sessions SET last_seen_at = ?, expires_at = ? WHERE id_sha256 = ?",
                (now, expires_at, id_sha256),
            )

        await self._tx(body)

    async def session_delete(self, id_sha256: bytes) -> None:
        async def body() -> None:
            await self.db.execute("DELETE FROM sessions WHERE id_sha256 = ?", (id_sha256,))

        await self._tx(body)

    async def sessions_purge(self, now: float) -> int:
        async def body() -> int:
            cur = await self.db.execute("DELETE FROM sessions WHERE expires_at <= ?", (now,))
            return cur.rowcount

        return int(await self._tx(body))

    # ---- pages: the call list (keyset-paginated: fast on page 1 and page 50 000 alike)
    async def calls_page(
        self,
        *,
        lines: Sequence[str] | None,
        since: float | None,
        until: float | None,
        disposition: str | None,
        subject_index: bytes | None,
        call_ids: Sequence[str] | None,
        before: tuple[float, str] | None,
        limit: int,
        transcript_tokens: Sequence[str] | None = None,
    ) -> list[dict[str, Any]]:
        """Newest first. `lines` None: every line; `call_ids`: only these (e.g. search hits);
        `transcript_tokens`: only calls whose transcripts hold every one of these keyed search
        tokens (in any segment or leg)."""
        where: list[str] = []
        args: list[Any] = []
        if lines is not None:
            where.append(f"c.line IN ({', '.join('?' for _ in lines)})" if lines else "0")
            args.extend(lines)
        if since is not None:
            where.append("c.started_at >= ?")
            args.append(since)
        if until is not None:
            where.append("c.started_at < ?")
            args.append(until)
        if disposition:
            where.append("c.disposition = ?")
            args.append(disposition)
        if subject_index is not None:
            where.append(
                "c.id IN (SELECT l.item_id FROM subjects s JOIN subject_links l"
                " ON l.subject_id = s.id WHERE s.blind_index = ? AND l.item_type = 'call')"
            )
            args.append(subject_index)
        if call_ids is not None:
            where.append(f"c.id IN ({', '.join('?' for _ in call_ids)})" if call_ids else "0")
            args.extend(call_ids)
        if transcript_tokens is not None:
            # The set of matching calls is built in SQLite (one FTS5 lookup per word,
            # intersected per call), so a frequent word costs no Python row per hit and the
            # page stops at `limit`.
            if any(not t.isalnum() or not t.isascii() for t in transcript_tokens):
                raise StoreError("a search token is ASCII alphanumeric")
            per_word = (
                "SELECT t.call_id FROM transcript_fts f"
                " JOIN transcript_segments s ON s.id = f.rowid"
                " JOIN transcripts t ON t.id = s.transcript_id WHERE transcript_fts MATCH ?"
            )
            where.append(
                f"c.id IN ({' INTERSECT '.join(per_word for _ in transcript_tokens)})"
                if transcript_tokens
                else "0"
            )
            args.extend(f'"{t}"' for t in transcript_tokens)
        if before is not None:
            # The first term lets SQLite range-scan the started_at index; the second breaks
            # ties between calls that started in the same instant.
            where.append(
                "c.started_at <= ? AND (c.started_at < ? OR (c.started_at = ? AND c.id < ?))"
            )
            args.extend([before[0], before[0], before[0], before[1]])
        sql = (
            "SELECT c.*, (SELECT count(*) FROM recordings r WHERE r.call_id = c.id) AS recordings"
            " FROM calls c"
            + (" WHERE " + " AND ".join(where) if where else "")
            + " ORDER BY c.started_at DESC, c.id DESC LIMIT ?"
        )
        async with self.db.execute(sql, (*args, limit)) as cur:
            return [dict(r) for r in await cur.fetchall()]

    async def calls_per_day(self, since: float) -> list[dict[str, Any]]:
        async with self.db.execute(
            "SELECT date(started_at, 'unixepoch', 'localtime') AS day, count(*) AS calls,"
            " sum(answered_at IS NOT NULL) AS answered,"
            " sum(CASE WHEN line IS NOT NULL AND answered_at IS NOT NULL AND ended_at IS NOT NULL"
            " THEN ended_at - answered_at ELSE 0 END) AS talk_s"
            " FROM calls WHERE started_at >= ? GROUP BY day ORDER BY day",
            (since,),
        ) as cur:
            return [dict(r) for r in await cur.fetchall()]

    async def call_audit(self, call_id: str, recording_ids: Sequence[int]) -> list[dict[str, Any]]:
        """Audit rows about this call and its recordings (objects are named by id)."""
        objects = [f"call:{call_id}", *(f"recording:{r}" for r in recording_ids)]
        async with self.db.execute(
            f"SELECT * FROM audit_log WHERE object IN ({', '.join('?' for _ in objects)})"
            " ORDER BY seq DESC LIMIT 200",
            objects,
        ) as cur:
            return [dict(r) for r in await cur.fetchall()]
