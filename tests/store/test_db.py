import sqlite3
from dataclasses import replace
from pathlib import Path

import pytest

from appliance.store import CdrRow, Database, RecordingRow, StoreError

CDR = CdrRow(
    call_id="100.1",
    uniqueid="100.1",
    sequence=0,
    calling_number="201",
    caller_name="Desk",
    dialed_number="100",
    context="callvault-internal",
    direction="inbound",
    line="reception",
    start_at=1000.0,
    answer_at=None,
    end_at=1010.0,
    duration_s=10,
    billable_s=0,
    disposition="NO ANSWER",
    hangup_cause=19,
    hangup_cause_text="No answer",
    channel="PJSIP/201-1",
    dest_channel="PJSIP/agent-2",
    last_app="Dial",
    source="ami",
)


async def test_migrates_in_wal(tmp_path: Path) -> None:
    async with Database(tmp_path / "db.sqlite") as db:
        assert await db.schema_version() >= 1
    con = sqlite3.connect(tmp_path / "db.sqlite")
    assert con.execute("PRAGMA journal_mode").fetchone()[0] == "wal"


async def test_refuses_newer_schema(tmp_path: Path) -> None:
    path = tmp_path / "db.sqlite"
    sqlite3.connect(path).execute("PRAGMA user_version=999")
    with pytest.raises(StoreError, match="refusing to downgrade"):
        await Database(path).open()


async def test_cdrs_fold_into_calls_and_dedupe(tmp_path: Path) -> None:
    async with Database(tmp_path / "db.sqlite") as db:
        assert await db.add_cdr(CDR)
        assert not await db.add_cdr(replace(CDR, source="reconciled"))  # same (uniqueid, seq)
        answered = replace(
            CDR, sequence=1, answer_at=1002.0, end_at=1020.0, disposition="ANSWERED", billable_s=18
        )
        assert await db.add_cdr(answered)
        call = await db.call("100.1")
        assert call is not None
        assert (call.started_at, call.answered_at, call.ended_at) == (1000.0, 1002.0, 1020.0)
        assert call.disposition == "ANSWERED"
        assert await db.count_cdrs() == 2
        assert [r["sequence"] for r in await db.cdrs("100.1")] == [0, 1]


async def test_recordings_unique_per_leg(tmp_path: Path) -> None:
    rec = RecordingRow("100.1", "reception", "caller", "/x/a.wav", "wav/slin8", 1.5, 100, "ab")
    async with Database(tmp_path / "db.sqlite") as db:
        assert await db.add_recording(rec)
        assert not await db.add_recording(replace(rec, path="/x/b.wav"))
        assert len(await db.recordings("100.1")) == 1


async def test_rows_survive_reopen(tmp_path: Path) -> None:
    path = tmp_path / "db.sqlite"
    db = await Database(path).open()
    await db.add_cdr(CDR)
    # No close(): the process could be killed right after the write returned.
    con = sqlite3.connect(path)
    assert con.execute("SELECT COUNT(*) FROM cdrs").fetchone()[0] == 1
    await db.close()


async def test_unopenable_path_is_clear(tmp_path: Path) -> None:
    (tmp_path / "file").write_text("x")
    with pytest.raises(StoreError, match="cannot open database"):
        await Database(tmp_path / "file" / "db.sqlite").open()


async def test_concurrent_writes_do_not_collide(tmp_path: Path) -> None:
    import asyncio

    async with Database(tmp_path / "db.sqlite") as db:
        rows = [replace(CDR, uniqueid=f"100.{i}", sequence=i) for i in range(50)]
        results = await asyncio.gather(*(db.add_cdr(r) for r in rows))
        assert all(results)
        assert await db.count_cdrs() == 50
