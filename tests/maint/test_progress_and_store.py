"""The step bar prints each finished step; the store helpers of appliance.store.maint:
rows copied into an older schema with triggers held back, a live restore, the write probe."""

from __future__ import annotations

import io
import sqlite3
from pathlib import Path

from rich.console import Console

from appliance.maint.progress import activity, step_bar
from appliance.store import Database
from appliance.store import maint as store_maint
from appliance.store.backup import table_counts
from appliance.store.db import migrations
from tests.store import schema_snapshots as snap


def test_step_bar_prints_each_step_and_activity_is_quiet_in_logs() -> None:
    out = io.StringIO()
    console = Console(file=out, width=100, force_terminal=False)
    with step_bar(console, "upgrade", 2) as bar:
        bar.start("one")
        bar.done("first done")
        bar.start("two")
        bar.done("second done")
    text = out.getvalue()
    assert "✓ first done" in text and "✓ second done" in text
    quiet = io.StringIO()
    with activity(Console(file=quiet, force_terminal=False), "spinning"):
        pass
    assert quiet.getvalue() == ""


async def test_copy_rows_into_an_older_schema(tmp_path: Path) -> None:
    newest, previous = tmp_path / "new.db", tmp_path / "old.db"
    async with Database(newest):
        pass
    seeded = snap.seed(newest)
    older = [m for m in migrations() if m[0] < migrations()[-1][0]]
    store = await Database(previous).open(known=older)
    await store.close()
    copied = store_maint.copy_rows(newest, previous)
    con = sqlite3.connect(previous)
    try:
        tables = {r[0] for r in con.execute("SELECT name FROM sqlite_master WHERE type='table'")}
        triggers = con.execute("SELECT COUNT(*) FROM sqlite_master WHERE type='trigger'")
        assert triggers.fetchone()[0] > 0  # put back after the copy
    finally:
        con.close()
    # Exactly the source's rows: no trigger of the copy added any (recordings queue jobs).
    source = table_counts(newest)
    for table in tables & set(seeded):
        assert copied[table] == source[table], table
    assert table_counts(previous)["post_call_jobs"] == source["post_call_jobs"]
    # What the older schema can hold: columns a newer migration added are not there to keep
    # (and SQLite reads an unknown double-quoted column name as a string, matching nothing).
    con = sqlite3.connect(previous)
    try:
        columns = {t: {r[1] for r in con.execute(f'PRAGMA table_info("{t}")')} for t in tables}
    finally:
        con.close()
    kept = {
        t: [{c: v for c, v in row.items() if c in columns[t]} for row in rows]
        for t, rows in seeded.items()
        if t in tables
    }
    assert snap.missing_rows(previous, kept) == []


def test_restore_into_and_writable(tmp_path: Path) -> None:
    live, snapshot = tmp_path / "live.db", tmp_path / "snap.db"
    for path, value in ((live, "live"), (snapshot, "snapshot")):
        con = sqlite3.connect(path)
        con.execute("PRAGMA journal_mode=WAL")
        con.execute("CREATE TABLE t (v TEXT)")
        con.execute("INSERT INTO t VALUES (?)", (value,))
        con.commit()
        con.close()
    reader = sqlite3.connect(live)  # a process that keeps the database open
    try:
        store_maint.restore_into(live, snapshot)
        assert reader.execute("SELECT v FROM t").fetchall() == [("snapshot",)]
    finally:
        reader.close()
    assert store_maint.writable(live) == ""
    assert store_maint.quick_check(live) == ["ok"]
