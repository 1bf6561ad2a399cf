"""`callvault upgrade` with the real readiness probe (appliance.ops.health: Asterisk over AMI,
a database write, disk) against the session's Asterisk: an upgrade from the previous release
keeps every row and is ready; an upgrade whose box does not become ready (AMI unreachable) is
rolled back from the verified backup to the previous schema, every row still there."""

from __future__ import annotations

import sqlite3
from dataclasses import replace
from pathlib import Path

from appliance.config import Config
from appliance.maint import upgrade
from appliance.store.db import migrations
from tests.maint.test_upgrade import PREVIOUS, put_previous_release
from tests.store import schema_snapshots as snap


def box(cfg: Config, tmp: Path, **asterisk: object) -> Config:
    """The session's Asterisk, a state directory of its own; no voice agent in this process."""
    state = tmp / "state"
    return replace(
        cfg,
        state_dir=state,
        database=state / "callvault.db",
        recordings_dir=state / "recordings",
        backup=replace(cfg.backup, dir=tmp / "backups", work_dir=tmp / "work"),
        asterisk=replace(cfg.asterisk, ami_secret=cfg.ami_secret(), **asterisk),
        agent=replace(cfg.agent, voice=False),
    )


def version(db: Path) -> int:
    con = sqlite3.connect(db)
    try:
        return int(con.execute("PRAGMA user_version").fetchone()[0])
    finally:
        con.close()


async def test_upgrade_is_ready_against_the_real_box(cfg: Config, tmp_path: Path) -> None:
    here = box(cfg, tmp_path)
    seeded = put_previous_release(here)
    out = await upgrade.upgrade(here, ready_timeout_s=10)
    assert out.ok, out.reason
    assert {c.name for c in out.ready} >= {"asterisk", "database", "disk", "rows kept"}
    assert version(here.database) == migrations()[-1][0]
    assert snap.missing_rows(here.database, seeded) == []


async def test_upgrade_rolls_back_when_asterisk_is_unreachable(cfg: Config, tmp_path: Path) -> None:
    here = box(cfg, tmp_path, ami_port=1)
    seeded = put_previous_release(here)
    out = await upgrade.upgrade(here, ready_timeout_s=2)
    assert out.rolled_back and out.applied
    assert "asterisk" in out.reason
    assert version(here.database) == PREVIOUS
    assert snap.missing_rows(here.database, seeded) == []
