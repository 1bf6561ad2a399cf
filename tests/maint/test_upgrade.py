"""`callvault upgrade`: a verified backup first, every pending migration in one transaction,
readiness, and a rollback (transaction or restore from the backup) that leaves the running
release serving; downgrades refused."""

from __future__ import annotations

import sqlite3
from dataclasses import replace
from pathlib import Path
from typing import Any

import pytest

from appliance import cli
from appliance.config import Config
from appliance.maint import upgrade
from appliance.maint.progress import Silent
from appliance.privacy import crypto
from appliance.privacy.backup_archive import Check, read_sidecar
from appliance.privacy.service import master_key_source
from appliance.store import Database
from appliance.store.db import migrations
from tests.privacy.conftest import make_cfg
from tests.store import schema_snapshots as snap

PREVIOUS = max(snap.released())
NEWEST = migrations()[-1][0]
OLD_CODE = [m for m in migrations() if m[0] <= PREVIOUS]


async def ready_box(_cfg: Config) -> list[Check]:
    return [Check("box", True, "test probe")]


async def broken_box(_cfg: Config) -> list[Check]:
    return [Check("asterisk", False, "test probe: AMI unreachable")]


def old_box(tmp_path: Path) -> tuple[Config, dict[str, list[dict[str, Any]]]]:
    cfg = make_cfg(tmp_path)
    cfg = replace(cfg, backup=replace(cfg.backup, work_dir=tmp_path / "work"))
    return cfg, put_previous_release(cfg)


def put_previous_release(cfg: Config) -> dict[str, list[dict[str, Any]]]:
    """The database of a box on the previous release (its schema, rows in every table, keys
    wrapped under this box's master key); returns the rows put in."""
    assert cfg.backup.work_dir is not None
    cfg.backup.work_dir.mkdir(parents=True, exist_ok=True)
    cfg.database.parent.mkdir(parents=True, exist_ok=True)
    snap.build_from_snapshot(snap.released()[PREVIOUS], PREVIOUS, cfg.database)
    seeded = snap.seed(cfg.database)
    kid = crypto.key_id(master_key_source(cfg).load())
    # Wrapped keys name the master key they are wrapped under: this box's (a backup refuses
    # a database whose keys another key wraps).
    con = sqlite3.connect(cfg.database)
    with con:
        for table in ("keyring", "subjects"):
            con.execute(f"UPDATE {table} SET kek_id = ?", (kid,))
            for row in seeded[table]:
                row["kek_id"] = kid
    con.close()
    return seeded


def version(db: Path) -> int:
    con = sqlite3.connect(db)
    try:
        return int(con.execute("PRAGMA user_version").fetchone()[0])
    finally:
        con.close()


async def test_upgrade_from_previous_release_keeps_every_row(tmp_path: Path) -> None:
    cfg, seeded = old_box(tmp_path)
    steps = Silent()
    out = await upgrade.upgrade(cfg, probe=ready_box, steps=steps, ready_timeout_s=0)
    assert out.ok, out.reason
    assert out.applied == tuple(v for v, _ in migrations() if v > PREVIOUS)
    assert version(cfg.database) == NEWEST
    assert snap.missing_rows(cfg.database, seeded) == []
    assert out.archive is not None and out.archive.is_file()
    side = read_sidecar(out.archive)
    assert side is not None and side["verified"]["ok"] and side["schema_version"] == PREVIOUS
    assert {c.name for c in out.ready} >= {"schema", "database integrity", "rows kept", "box"}
    assert any("verified backup" in line for line in steps.log)
    # Run again: nothing pending, nothing done, no second backup.
    again = await upgrade.upgrade(cfg, probe=ready_box, ready_timeout_s=0)
    assert again.ok and again.applied == () and again.archive is None


async def test_failing_migration_rolls_back_and_old_release_keeps_serving(
    tmp_path: Path,
) -> None:
    cfg, seeded = old_box(tmp_path)
    running = await Database(cfg.database).open(known=OLD_CODE)  # the release in service
    try:
        faulty = [*migrations(), (NEWEST + 1, "CREATE TABLE t (x);\nSELECT no_such_fn();\n")]
        out = await upgrade.upgrade(cfg, known=faulty, probe=ready_box, ready_timeout_s=0)
        assert not out.ok and not out.applied and not out.rolled_back
        assert f"migration {NEWEST + 1:04d} failed" in out.reason
        assert version(cfg.database) == PREVIOUS
        await running.sync_lines([("reception", "100", "agent", ["mixed"])])
        assert [r["extension"] for r in await running.lines()] == ["100"]
    finally:
        await running.close()
    seeded.pop("lines")  # replaced on purpose by sync_lines above
    assert snap.missing_rows(cfg.database, seeded) == []


async def test_not_ready_restores_the_backup(tmp_path: Path) -> None:
    cfg, seeded = old_box(tmp_path)
    running = await Database(cfg.database).open(known=OLD_CODE)
    try:
        out = await upgrade.upgrade(cfg, probe=broken_box, ready_timeout_s=1.5)
        assert out.rolled_back and out.applied
        assert "asterisk: test probe: AMI unreachable" in out.reason
        assert version(cfg.database) == PREVIOUS
        # The open connection of the running release sees the restored database and writes.
        assert await running.schema_version() == PREVIOUS
        await running.sync_lines([("reception", "100", "agent", ["mixed"])])
    finally:
        await running.close()
    seeded.pop("lines")
    assert snap.missing_rows(cfg.database, seeded) == []
    con = sqlite3.connect(cfg.database)
    assert con.execute("PRAGMA integrity_check").fetchone()[0] == "ok"
    con.close()


async def test_rows_lost_by_a_migration_roll_back(tmp_path: Path) -> None:
    cfg, seeded = old_box(tmp_path)
    lossy = [*migrations(), (NEWEST + 1, "DELETE FROM lines;\n")]
    out = await upgrade.upgrade(cfg, known=lossy, probe=ready_box, ready_timeout_s=0)
    assert out.rolled_back
    assert "rows kept: lines: 3 -> 0" in out.reason
    assert version(cfg.database) == PREVIOUS
    assert snap.missing_rows(cfg.database, seeded) == []


def test_newer_database_is_refused(tmp_path: Path) -> None:
    cfg, _ = old_box(tmp_path)
    con = sqlite3.connect(cfg.database)
    con.execute(f"PRAGMA user_version = {NEWEST + 3}")
    con.close()
    with pytest.raises(upgrade.UpgradeError, match=r"refusing to downgrade.*schema \d+"):
        upgrade.plan(cfg)


def _config_file(tmp_path: Path) -> Path:
    path = tmp_path / "callvault.toml"
    path.write_text(
        'state_dir = "state"\n'
        '[asterisk]\nami_port = 1\nami_secret = "unused"\n'
        f'[backup]\nwork_dir = "{tmp_path / "work"}"\n'
        '[[lines]]\nname = "reception"\nextension = "100"\n'
        '[[extensions]]\nnumber = "201"\nname = "Desk"\n'
    )
    return path


def test_cli_refuses_downgrade_and_rolls_back_when_not_ready(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    cfg, seeded = old_box(tmp_path)
    path = _config_file(tmp_path)
    # Asterisk is not running here (AMI port 1): the box is not ready, the upgrade rolls back.
    rc = cli.main(["--config", str(path), "upgrade", "--ready-timeout", "0"])
    out = capsys.readouterr().out
    assert rc == 1, out
    assert "upgrade failed" in out and f"back at schema {PREVIOUS}" in out
    assert version(cfg.database) == PREVIOUS
    assert snap.missing_rows(cfg.database, seeded) == []

    assert cli.main(["--config", str(path), "upgrade", "--plan"]) == 0
    assert f"schema {PREVIOUS}, this release {NEWEST}" in capsys.readouterr().out

    con = sqlite3.connect(cfg.database)
    con.execute(f"PRAGMA user_version = {NEWEST + 1}")
    con.close()
    assert cli.main(["--config", str(path), "upgrade"]) == 2
    assert "refusing to downgrade" in capsys.readouterr().err
