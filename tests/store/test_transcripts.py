"""Transcript rows, their keyed index and the post-call job queue, at the SQL level."""

from __future__ import annotations

import sqlite3
from dataclasses import replace
from pathlib import Path

import pytest

from appliance.store import Database, RecordingRow, StoreError
from appliance.store.base import AuditEntry
from appliance.store.transcripts import IndexedSegment, TranscriptRow
from tests.store.test_db import CDR

AUDIT = (
    AuditEntry(1.0, "qa", "system", "transcript.create", "transcript", "test"),
    lambda *_: "0" * 64,
)


def rec(leg: str, call_id: str = CDR.call_id) -> RecordingRow:
    return RecordingRow(
        call_id=call_id, line="reception", leg=leg, path=f"/r/{call_id}-{leg}", format="wav",
        duration_s=1.0, size_bytes=10, sha256="0" * 64,
    )  # fmt: skip


def row(leg: str = "caller", call_id: str = CDR.call_id) -> TranscriptRow:
    return TranscriptRow(
        call_id=call_id, recording_id=None, line="reception", leg=leg, language="en",
        language_prob=0.9, model="whisper-base", created_at=5.0, duration_s=1.0,
        text_enc=b"sealed", key_subjects="1",
    )  # fmt: skip


SEGMENTS = [IndexedSegment(0.0, 1.0, ["aa11", "bb22"]), IndexedSegment(1.0, 2.0, ["cc33"])]


def count(db: Path, table: str) -> int:
    return int(sqlite3.connect(db).execute(f"SELECT COUNT(*) FROM {table}").fetchone()[0])


async def test_a_recording_queues_its_call_and_a_later_leg_reopens_it(tmp_path: Path) -> None:
    async with Database(tmp_path / "db.sqlite") as db:
        await db.add_recording(rec("caller"))
        job = await db.post_call_job(CDR.call_id)
        assert job is not None and (job["stage"], job["gen"], job["attempts"]) == (
            "transcribe",
            1,
            0,
        )
        assert await db.post_call_advance(CDR.call_id, 1, "report", 10.0)
        await db.add_recording(rec("callee"))  # arrives after the job ran
        job = await db.post_call_job(CDR.call_id)
        assert job is not None and (job["stage"], job["gen"]) == ("transcribe", 2)
        # A run that read gen 1 cannot move the job on past the new leg.
        assert not await db.post_call_advance(CDR.call_id, 1, "report", 11.0)
        assert await db.post_call_failed(CDR.call_id, error="x" * 900, next_at=99.0, at=12.0) == 1
        job = await db.post_call_job(CDR.call_id)
        assert job is not None and len(job["last_error"]) == 500 and job["next_at"] == 99.0
        with pytest.raises(StoreError, match="unknown post-call stage"):
            await db.post_call_advance(CDR.call_id, 2, "sideways", 13.0)


async def test_transcripts_are_stored_once_and_go_with_their_index_rows(tmp_path: Path) -> None:
    path = tmp_path / "db.sqlite"
    async with Database(path) as db:
        await db.add_cdr(CDR)
        await db.add_cdr(replace(CDR, call_id="200.1", uniqueid="200.1"))
        tid, new = await db.add_transcript(row(), SEGMENTS, AUDIT)
        assert new and await db.add_transcript(row(), SEGMENTS, AUDIT) == (tid, False)
        other, _ = await db.add_transcript(row(call_id="200.1"), SEGMENTS, AUDIT)
        assert [h["transcript_id"] for h in await db.search_token("bb22")] == [tid, other]
        assert await db.transcript_index_rows(tid) == 2
        assert count(path, "audit_log") == 2  # created twice, not for the repeat
        with pytest.raises(StoreError, match="ASCII alphanumeric"):
            await db.add_transcript(row("callee"), [IndexedSegment(0, 1, ["a b"])], AUDIT)
        with pytest.raises(StoreError, match="ASCII alphanumeric"):
            await db.search_token('x" OR "y')
        assert len(await db.transcripts(CDR.call_id)) == 1  # the refused one left nothing

        # Deleting the call (erasure) cascades: transcript, segments, index rows, its job.
        await db.add_recording(rec("caller", "200.1"))
        await db.db.execute("DELETE FROM cdrs WHERE call_id = '200.1'")
        await db.db.execute("DELETE FROM calls WHERE id = '200.1'")
        await db.db.commit()
        assert await db.transcripts_for_calls(["200.1"]) == []
        assert await db.transcript_index_rows(other) == 0
        assert await db.post_call_job("200.1") is None
        assert [h["transcript_id"] for h in await db.search_token("bb22")] == [tid]

        # Retention deletes by id, audited, and the index is merged.
        assert [t["id"] for t in await db.transcripts_created_before(6.0)] == [tid]
        assert await db.delete_transcripts([tid, 12345], AUDIT) == 1
        assert await db.search_token("bb22") == []
        assert await db.transcript_index_size() == 0
    assert count(path, "transcript_segments") == 0
    assert b"bb22" not in path.read_bytes()


async def test_call_page_keeps_calls_holding_every_searched_word_across_legs(
    tmp_path: Path,
) -> None:
    async with Database(tmp_path / "db.sqlite") as db:
        ids = [f"{300 + i}.1" for i in range(5)]
        for i, cid in enumerate(ids):
            await db.add_cdr(replace(CDR, call_id=cid, uniqueid=cid, start_at=1000.0 + i))
        # Call 0: both words in one leg; call 1: one word per leg; call 2: only one word.
        await db.add_transcript(row(call_id=ids[0]), SEGMENTS, AUDIT)
        await db.add_transcript(row(call_id=ids[1]), [IndexedSegment(0, 1, ["aa11"])], AUDIT)
        await db.add_transcript(
            row("callee", call_id=ids[1]), [IndexedSegment(0, 1, ["cc33"])], AUDIT
        )
        await db.add_transcript(row(call_id=ids[2]), [IndexedSegment(0, 1, ["cc33"])], AUDIT)

        async def page(tokens: list[str], **kw: object) -> list[str]:
            args: dict[str, object] = {
                "lines": None, "since": None, "until": None, "disposition": None,
                "subject_index": None, "call_ids": None, "before": None, "limit": 10,
            }  # fmt: skip
            rows = await db.calls_page(**{**args, **kw}, transcript_tokens=tokens)  # type: ignore[arg-type]
            return [str(r["id"]) for r in rows]

        assert await page(["aa11", "cc33"]) == [ids[1], ids[0]]  # newest first
        assert await page(["cc33"]) == [ids[2], ids[1], ids[0]]
        assert await page(["cc33"], limit=1) == [ids[2]]
        first = (await db.calls_page(
            lines=None, since=None, until=None, disposition=None, subject_index=None,
            call_ids=None, before=None, limit=1, transcript_tokens=["cc33"],
        ))[0]  # fmt: skip
        after = (float(first["started_at"]), str(first["id"]))
        assert await page(["cc33"], before=after) == [ids[1], ids[0]]
        assert await page(["zz99"]) == []
        assert await page([]) == []
        with pytest.raises(StoreError, match="ASCII alphanumeric"):
            await page(['aa11" OR "cc33'])
