"""SQL for post-call transcripts, their keyed full-text index and the post-call jobs (issue 4).

The index holds keyed tokens only (appliance.voice.transcripts makes them); a transcript's
segments and index rows go with it in the same transaction (ON DELETE CASCADE and the
`transcript_segments_unindex` trigger), whichever way it is deleted.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass, replace
from typing import Any

from appliance.store.base import AuditEntry, AuditSeal, StoreBase, StoreError

Audit = tuple[AuditEntry, AuditSeal]
JOB_STAGES = ("transcribe", "report", "done")


@dataclass(frozen=True)
class TranscriptRow:
    call_id: str
    recording_id: int | None
    line: str
    leg: str
    language: str
    language_prob: float
    model: str
    created_at: float
    duration_s: float
    text_enc: bytes
    key_subjects: str


@dataclass(frozen=True)
class IndexedSegment:
    """One segment's place in the index: its times and its words' keyed tokens, in order."""

    start_s: float
    end_s: float
    tokens: Sequence[str]


def _chunks(items: Sequence[Any], size: int = 500) -> list[Sequence[Any]]:
    return [items[i : i + size] for i in range(0, len(items), size)]


class TranscriptSql(StoreBase):
    # ---- transcripts
    async def add_transcript(
        self, row: TranscriptRow, segments: Sequence[IndexedSegment], audit: Audit
    ) -> tuple[int, bool]:
        """Store a transcript, its segments and their index rows, audited, in one transaction.

        (id, True) when stored; (id of the one already there, False) when this leg of the call
        was transcribed before — post-call jobs may run twice, the transcript is stored once.
        """
        for seg in segments:
            bad = [t for t in seg.tokens if not t.isalnum() or not t.isascii()]
            if bad:
                raise StoreError(f"transcript index tokens must be ASCII alphanumeric: {bad[:3]}")
        fields = asdict(row)

        async def body() -> tuple[int, bool]:
            cur = await self.db.execute(
                f"INSERT OR IGNORE INTO transcripts ({', '.join(fields)})"
                f" VALUES ({', '.join('?' for _ in fields)})",
                list(fields.values()),
            )
            if cur.rowcount != 1:
                async with self.db.execute(
                    "SELECT id FROM transcripts WHERE call_id = ? AND line = ? AND leg = ?",
                    (row.call_id, row.line, row.leg),
                ) as found:
                    existing = await found.fetchone()
                if existing is None:
                    raise StoreError(f"transcript of call {row.call_id} was neither new nor there")
                return int(existing[0]), False
            tid = int(cur.lastrowid or 0)
            for seg in segments:
                scur = await self.db.execute(
                    "INSERT INTO transcript_segments (transcript_id, start_s, end_s)"
                    " VALUES (?, ?, ?)",
                    (tid, seg.start_s, seg.end_s),
                )
                if seg.tokens:
                    await self.db.execute(
                        "INSERT INTO transcript_fts (rowid, tokens) VALUES (?, ?)",
                        (scur.lastrowid, " ".join(seg.tokens)),
                    )
            await self._audit_append(replace(audit[0], object=f"transcript:{tid}"), audit[1])
            return tid, True

        result: tuple[int, bool] = await self._tx(body)
        return result

    async def transcripts(self, call_id: str) -> list[dict[str, Any]]:
        async with self.db.execute(
            "SELECT * FROM transcripts WHERE call_id = ? ORDER BY line, leg", (call_id,)
        ) as cur:
            return [dict(r) for r in await cur.fetchall()]

    async def transcript_row(self, transcript_id: int) -> dict[str, Any] | None:
        async with self.db.execute(
            "SELECT * FROM transcripts WHERE id = ?", (transcript_id,)
        ) as cur:
            row = await cur.fetchone()
        return dict(row) if row else None

    async def transcripts_for_calls(self, call_ids: Sequence[str]) -> list[dict[str, Any]]:
        """Every transcript of these calls (retention, erasure, access export), by id."""
        out: list[dict[str, Any]] = []
        for part in _chunks(list(call_ids)):
            async with self.db.execute(
                f"SELECT * FROM transcripts WHERE call_id IN ({', '.join('?' for _ in part)})"
                " ORDER BY id",
                list(part),
            ) as cur:
                out.extend(dict(r) for r in await cur.fetchall())
        return sorted(out, key=lambda r: int(r["id"]))

    async def transcripts_created_before(self, at: float) -> list[dict[str, Any]]:
        """Transcripts older than `at` (without their sealed text): retention candidates."""
        async with self.db.execute(
            "SELECT id, call_id, line, leg, created_at FROM transcripts WHERE created_at < ?"
            " ORDER BY id",
            (at,),
        ) as cur:
            return [dict(r) for r in await cur.fetchall()]

    async def delete_transcripts(self, ids: Sequence[int], audit: Audit | None = None) -> int:
        """Delete transcripts with their segments and index rows; how many went.

        Deleted pages are zeroed (secure_delete), the index is merged so no segment of it
        still lists the deleted rows' tokens, and the WAL is checkpointed.
        """
        ids = sorted({int(i) for i in ids})
        if not ids:
            return 0

        async def body() -> int:
            n = 0
            for part in _chunks(ids):
                cur = await self.db.execute(
                    f"DELETE FROM transcripts WHERE id IN ({', '.join('?' for _ in part)})",
                    list(part),
                )
                n += max(cur.rowcount, 0)
            # Also when none was left (a cascade took them): the index still needs the merge.
            await self._optimize_index()
            if audit is not None:
                await self._audit_append(*audit)
            return n

        await self.db.execute("PRAGMA secure_delete = ON")
        try:
            deleted = int(await self._tx(body))
        finally:
            await self.db.execute("PRAGMA secure_delete = OFF")
        await self.checkpoint()
        return deleted

    async def _optimize_index(self) -> None:
        # FTS5 deletes add tombstones to new index segments; the old segments keep the
        # deleted rows' tokens until merged. 'optimize' merges everything into one segment.
        await self.db.execute("INSERT INTO transcript_fts (transcript_fts) VALUES ('optimize')")

    async def search_token(self, token: str) -> list[dict[str, Any]]:
        """Segments whose words include the keyed token, with their transcript's call."""
        if not token.isalnum() or not token.isascii():
            raise StoreError("a search token is ASCII alphanumeric")
        async with self.db.execute(
            "SELECT s.id AS segment_id, s.start_s, s.end_s, t.id AS transcript_id, t.call_id,"
            " t.line, t.leg FROM transcript_fts f"
            " JOIN transcript_segments s ON s.id = f.rowid"
            " JOIN transcripts t ON t.id = s.transcript_id"
            " WHERE transcript_fts MATCH ? ORDER BY t.call_id, s.start_s",
            (f'"{token}"',),
        ) as cur:
            return [dict(r) for r in await cur.fetchall()]

    async def transcript_index_rows(self, transcript_id: int) -> int:
        """How many index rows a transcript has (0 once it is deleted)."""
        async with self.db.execute(
            "SELECT COUNT(*) FROM transcript_fts f JOIN transcript_segments s ON s.id = f.rowid"
            " WHERE s.transcript_id = ?",
            (transcript_id,),
        ) as cur:
            row = await cur.fetchone()
        return int(row[0]) if row else 0

    async def transcript_index_size(self) -> int:
        async with self.db.execute("SELECT COUNT(*) FROM transcript_fts") as cur:
            row = await cur.fetchone()
        return int(row[0]) if row else 0

    # ---- post-call jobs
    async def post_call_job(self, call_id: str) -> dict[str, Any] | None:
        async with self.db.execute(
            "SELECT * FROM post_call_jobs WHERE call_id = ?", (call_id,)
        ) as cur:
            row = await cur.fetchone()
        return dict(row) if row else None

    async def post_call_jobs(self, *, unfinished: bool = False) -> list[dict[str, Any]]:
        sql = "SELECT * FROM post_call_jobs"
        if unfinished:
            sql += " WHERE stage != 'done'"
        async with self.db.execute(sql + " ORDER BY next_at, call_id") as cur:
            return [dict(r) for r in await cur.fetchall()]

    async def post_call_enqueue(self, call_id: str, at: float) -> None:
        """(Re)open a call's job at the transcribe stage (what a new recording does)."""

        async def body() -> None:
            await self.db.execute(
                "INSERT INTO post_call_jobs (call_id, stage, gen, attempts, last_error, next_at,"
                " updated_at) VALUES (?, 'transcribe', 1, 0, '', ?, ?) ON CONFLICT (call_id)"
                " DO UPDATE SET stage = 'transcribe', gen = gen + 1, next_at = excluded.next_at,"
                " updated_at = excluded.updated_at",
                (call_id, at, at),
            )

        await self._tx(body)

    async def post_call_advance(self, call_id: str, gen: int, stage: str, at: float) -> bool:
        """Move a job to `stage` (attempts and error cleared) unless a recording arrived
        since it was read (`gen` moved on): then False, and the job stays where it is."""
        if stage not in JOB_STAGES:
            raise StoreError(f"unknown post-call stage {stage!r}")

        async def body() -> bool:
            cur = await self.db.execute(
                "UPDATE post_call_jobs SET stage = ?, attempts = 0, last_error = '',"
                " next_at = ?, updated_at = ? WHERE call_id = ? AND gen = ?",
                (stage, at, at, call_id, gen),
            )
            return cur.rowcount == 1

        return bool(await self._tx(body))

    async def post_call_failed(self, call_id: str, *, error: str, next_at: float, at: float) -> int:
        """Record a failed attempt; the job waits until `next_at`. Returns the attempts."""

        async def body() -> int:
            await self.db.execute(
                "UPDATE post_call_jobs SET attempts = attempts + 1, last_error = ?,"
                " next_at = ?, updated_at = ? WHERE call_id = ?",
                (error[:500], next_at, at, call_id),
            )
            async with self.db.execute(
                "SELECT attempts FROM post_call_jobs WHERE call_id = ?", (call_id,)
            ) as cur:
                row = await cur.fetchone()
            return int(row[0]) if row else 0

        return int(await self._tx(body))

    async def post_call_counts(self) -> Mapping[str, int]:
        async with self.db.execute(
            "SELECT stage, COUNT(*) FROM post_call_jobs GROUP BY stage"
        ) as cur:
            return {str(r[0]): int(r[1]) for r in await cur.fetchall()}
