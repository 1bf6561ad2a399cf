"""Upgrades from every released schema to the newest keep every row; a failing migration
leaves the previous schema; a database newer than the code is refused.

Released schemas are the frozen snapshots in tests/store/fixtures/schema (see
tests/store/schema_snapshots.py), not today's migration files.
"""

from __future__ import annotations

import sqlite3
from pathlib import Path

import pytest

from appliance.store import Database
from appliance.store.base import StoreError
from appliance.store.db import migrations
from tests.store import schema_snapshots as snap

RELEASED = snap.released()


def test_every_released_version_has_a_snapshot() -> None:
    # Every migration number up to the newest snapshot is a release a box may run.
    assert RELEASED, "no schema snapshots: run python -m tests.store.schema_snapshots"
    newest_released = max(RELEASED)
    known = [v for v, _ in migrations() if v <= newest_released]
    assert sorted(RELEASED) == known


@pytest.mark.parametrize("version", sorted(RELEASED))
def test_released_migrations_are_unchanged(version: int, tmp_path: Path) -> None:
    """Today's migrations up to N build exactly release N's schema: a released migration
    edited afterwards would leave boxes that ran the old text on another schema."""
    db = tmp_path / "today.db"
    snap.build_from_migrations([m for m in migrations() if m[0] <= version], db)
    con = sqlite3.connect(db)
    try:
        today = snap.snapshot_text(version, snap.schema_sql(con))
    finally:
        con.close()
    assert today == RELEASED[version].read_text()


@pytest.mark.parametrize("version", sorted(RELEASED))
async def test_upgrade_from_release_keeps_every_row(version: int, tmp_path: Path) -> None:
    db = tmp_path / "callvault.db"
    snap.build_from_snapshot(RELEASED[version], version, db)
    seeded = snap.seed(db)
    assert sum(len(rows) for rows in seeded.values()) >= 3 * len(seeded) > 0
    async with Database(db) as store:
        assert await store.schema_version() == migrations()[-1][0]
    assert snap.missing_rows(db, seeded) == []
    con = sqlite3.connect(db)
    try:
        assert con.execute("PRAGMA integrity_check").fetchone()[0] == "ok"
        assert con.execute("PRAGMA foreign_key_check").fetchall() == []
    finally:
        con.close()


async def test_failing_migration_rolls_back_every_pending_one(tmp_path: Path) -> None:
    previous = max(RELEASED)
    db = tmp_path / "callvault.db"
    snap.build_from_snapshot(RELEASED[previous], previous, db)
    seeded = snap.seed(db)
    newest = migrations()[-1][0]
    good = list(migrations())
    # A first pending migration that works, then one that fails half-way: neither may stay.
    bad = [
        *good,
        (newest + 1, "CREATE TABLE upgrade_probe (id INTEGER PRIMARY KEY);\n"),
        (newest + 2, "ALTER TABLE calls ADD COLUMN probe TEXT;\nSELECT no_such_function();\n"),
    ]
    store = Database(db)
    with pytest.raises(StoreError, match=rf"migration {newest + 2:04d} failed.*rolled back"):
        await store.open(known=bad)
    con = sqlite3.connect(db)
    try:
        assert con.execute("PRAGMA user_version").fetchone()[0] == previous
        names = {r[0] for r in con.execute("SELECT name FROM sqlite_master")}
        assert "upgrade_probe" not in names
        cols = {r[1] for r in con.execute("PRAGMA table_info(calls)")}
        assert "probe" not in cols
    finally:
        con.close()
    assert snap.missing_rows(db, seeded) == []
    # The release that made it (its own migrations only) still opens and writes it.
    old = await Database(db).open(known=[m for m in good if m[0] <= previous])
    try:
        assert await old.schema_version() == previous
        await old.sync_lines([("reception", "100", "agent", ["mixed"])])
    finally:
        await old.close()


async def test_old_release_keeps_serving_after_failed_upgrade(tmp_path: Path) -> None:
    previous = max(RELEASED)
    db = tmp_path / "callvault.db"
    snap.build_from_snapshot(RELEASED[previous], previous, db)
    old_code = [m for m in migrations() if m[0] <= previous]
    running = await Database(db).open(known=old_code)
    try:
        with pytest.raises(StoreError):
            await Database(db).open(known=[*migrations(), (10_000, "SELECT nope();\n")])
        # The running release's connection reads and writes as before.
        await running.sync_lines([("reception", "100", "agent", ["mixed"])])
        assert [r["name"] for r in await running.lines()] == ["reception"]
        assert await running.schema_version() == previous
    finally:
        await running.close()


async def test_newer_schema_is_refused(tmp_path: Path) -> None:
    db = tmp_path / "callvault.db"
    async with Database(db):
        pass
    newest = migrations()[-1][0]
    con = sqlite3.connect(db)
    con.execute(f"PRAGMA user_version={newest + 1}")
    con.close()
    with pytest.raises(StoreError, match="refusing to downgrade"):
        await Database(db).open()
    con = sqlite3.connect(db)
    assert con.execute("PRAGMA user_version").fetchone()[0] == newest + 1
    con.close()


async def test_a_migration_that_loses_rows_is_caught(tmp_path: Path) -> None:
    """The row check itself: a migration deleting one row, or dropping a column's value."""
    previous = max(RELEASED)
    db = tmp_path / "callvault.db"
    snap.build_from_snapshot(RELEASED[previous], previous, db)
    seeded = snap.seed(db)
    lossy = [
        *migrations(),
        (10_000, "DELETE FROM lines WHERE rowid = (SELECT MIN(rowid) FROM lines);\n"
                 "UPDATE cdrs SET caller_name = 'changed';\n"),
    ]  # fmt: skip
    store = await Database(db).open(known=lossy)
    await store.close()
    lost = snap.missing_rows(db, seeded)
    assert sum(x.startswith("lines:") for x in lost) == 1
    assert sum(x.startswith("cdrs:") for x in lost) == len(seeded["cdrs"])
