"""The recordings disk fills up: calls go on, the recording is refused with an alert and kept
in the RAM spool, nothing half-written or corrupt is left, and it is stored once there is room.

The recordings dir is a real, small tmpfs (mount needs root, as `make test` has)."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import sqlite3
import subprocess
from collections.abc import Iterator
from dataclasses import replace
from pathlib import Path

import pytest

from appliance.store import Database
from appliance.telephony import service as service_mod
from appliance.telephony.recordings import RecordingStore
from appliance.telephony.service import TelephonyService
from tests.privacy.conftest import make_cfg
from tests.privacy.rights_fixtures import distinctive_wav
from tests.store.test_db import CDR


@pytest.fixture
def small_disk(tmp_path: Path) -> Iterator[Path]:
    if os.geteuid() != 0:
        pytest.fail("this test mounts a tmpfs: run it as root (make test does)")
    mnt = tmp_path / "recordings"
    mnt.mkdir()
    subprocess.run(
        ["mount", "-t", "tmpfs", "-o", "size=120k,mode=0700", "cv-test-full", str(mnt)],
        check=True,
    )
    try:
        yield mnt
    finally:
        subprocess.run(["umount", "-l", str(mnt)], check=False)


async def test_disk_full_refuses_recording_with_alert_and_retries(
    tmp_path: Path,
    small_disk: Path,
    monkeypatch: pytest.MonkeyPatch,
    caplog: pytest.LogCaptureFixture,
) -> None:
    monkeypatch.setattr(service_mod, "INGEST_CDR_WAIT_S", 0.2)
    monkeypatch.setattr(service_mod, "INGEST_RETRY_S", 0.3)
    caplog.set_level(logging.INFO)
    cfg = replace(make_cfg(tmp_path), recordings_dir=small_disk)
    spool = tmp_path / "spool"
    spool.mkdir()
    wav = distinctive_wav(5.0)  # 80 kB: one fits, the second does not
    fired: list[tuple[str, str, str]] = []
    async with Database(cfg.database) as db:
        svc = TelephonyService(cfg, db)
        svc.recordings = RecordingStore(spool, small_disk, db, svc.privacy)

        class Alerts:
            async def fire(self, kind: str, message: str, *, key: str) -> None:
                fired.append((kind, message, key))

        svc._alerts = Alerts()
        try:
            await _scenario(svc, db, spool, small_disk, wav, fired, caplog)
        finally:
            for task in list(svc._tasks):
                task.cancel()
            with contextlib.suppress(BaseException):
                await asyncio.gather(*svc._tasks, return_exceptions=True)
    con = sqlite3.connect(cfg.database)
    assert con.execute("PRAGMA integrity_check").fetchone() == ("ok",)
    con.close()


async def _scenario(
    svc: TelephonyService,
    db: Database,
    spool: Path,
    small_disk: Path,
    wav: bytes,
    fired: list[tuple[str, str, str]],
    caplog: pytest.LogCaptureFixture,
) -> None:
    calls = [f"170000000{i}.{i}" for i in range(1, 4)]
    for i, call_id in enumerate(calls):
        (spool / f"cv-{call_id}-reception-mixed.wav").write_bytes(wav)
        cdr = replace(CDR, call_id=call_id, uniqueid=call_id, start_at=1e9 + i, end_at=1e9 + i + 5)
        await svc.privacy.subjects.add_cdr(cdr)
        svc._schedule_ingest(call_id)
        await asyncio.sleep(0.3)
    stored = {r["call_id"] for r in await db.recordings()}
    assert len(stored) == 1  # the disk took one
    refused = [c for c in calls if c not in stored]
    assert fired and fired[0][0] == "recording_refused"
    assert "recordings disk is full" in fired[0][1] and str(small_disk) in fired[0][1]
    assert "recording_refused" in caplog.text
    # Nothing half-written on the full disk; the refused plaintext waits in the RAM spool.
    assert await asyncio.to_thread(lambda: list(small_disk.rglob("*.part"))) == []
    assert sorted(p.name.split("-")[1] for p in svc.recordings.spool_files()) == sorted(refused)
    assert svc.stats.recordings_refused >= 2
    # Room again (the admin cleared space): the retry stores both, and the spool is empty.
    subprocess.run(["mount", "-o", "remount,size=2m", str(small_disk)], check=True)
    async with asyncio.timeout(10):
        while len(await db.recordings()) < 3:  # noqa: ASYNC110 - polling the store is the check
            await asyncio.sleep(0.1)
    assert svc.recordings.spool_files() == []
    rows = await db.recordings()
    assert {r["call_id"] for r in rows} == set(calls)
    assert all(r["flags"] == "" and r["duration_s"] == 5.0 for r in rows)
