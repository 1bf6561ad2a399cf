"""The recordings disk full, through the real Asterisk: a caller still reaches the AI line and
hears it, the call's CDR is stored, its recording is refused with an alert the admin UI lists
(and the journal has), the plaintext waits in the RAM spool only, and once there is room again
the recording is stored whole (tests/reliability/test_disk_full.py has the service-level
details). The recordings dir is swapped for a small real tmpfs (mount needs root, as
`make test` has)."""

from __future__ import annotations

import asyncio
import contextlib
import errno
import os
import shutil
import sqlite3
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from appliance.server import Appliance
from appliance.telephony import service as service_mod
from appliance.telephony.audio import rms_dbfs, tone, voiced_seconds
from appliance.telephony.recordings import wav_info_of
from appliance.telephony.sip import SipPhone
from tests.integration.conftest import Heards
from tests.integration.test_calls import decrypted

pytestmark = pytest.mark.asyncio(loop_scope="session")


@pytest.fixture
def full_disk(tmp_path: Path) -> Iterator[Path]:
    if os.geteuid() != 0:
        pytest.fail("this test mounts a tmpfs: run it as root (make test does)")
    mnt = tmp_path / "recordings"
    mnt.mkdir()
    subprocess.run(
        ["mount", "-t", "tmpfs", "-o", "size=64k,mode=0700", "cv-test-full", str(mnt)], check=True
    )
    try:
        # Filled to the last block by something else on the box.
        with contextlib.suppress(OSError), (mnt / "filler").open("wb") as f:
            while True:
                f.write(b"\0" * 4096)
                f.flush()
        with pytest.raises(OSError) as full:
            (mnt / "probe").write_bytes(b"\0" * 8192)
        assert full.value.errno == errno.ENOSPC
        (mnt / "probe").unlink()
        yield mnt
    finally:
        subprocess.run(["umount", "-l", str(mnt)], check=False)


async def test_calls_are_answered_while_the_recordings_disk_is_full(
    app: Appliance,
    phone201: SipPhone,
    heards: Heards,
    full_disk: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setattr(service_mod, "INGEST_RETRY_S", 1.0)
    store = app.telephony.recordings
    original = store.target
    monkeypatch.setattr(store, "target", full_disk)
    t0 = time.time()
    mark = heards.mark()
    call = await phone201.dial("100")  # the AI line, every leg recorded
    await call.wait_confirmed(timeout=10)
    call.play(tone(1000.0, 1.5))
    await asyncio.sleep(3.0)
    received = call.received_pcm()
    await call.hangup()
    await call.wait_ended(timeout=5)

    # Answered as always: the agent's greeting reached the caller, the caller reached it.
    assert voiced_seconds(received) > 1.0 and rms_dbfs(received) > -40
    heard = await heards.next(mark, "reception")
    call_id = heard.call_id
    assert len(await app.telephony.wait_cdr(call_id)) >= 1  # the CDR: another disk, stored

    # The recording refused: an open alert naming the full disk, for the admin UI and journal.
    async with asyncio.timeout(20):
        while True:
            alerts = [
                a
                for a in await app.db.alerts_list()
                if a["kind"] == "recording_refused" and a["key"] == str(full_disk)
            ]
            if alerts and call_id in str(alerts[0]["message"]):
                break
            await asyncio.sleep(0.2)
    assert "recordings disk is full" in str(alerts[0]["message"])
    assert await app.db.recordings(call_id) == []
    # The plaintext is in the RAM spool only: nothing of it, whole or partial, on the disk.
    assert store.spool_files(call_id), "the refused recording must wait in the spool"
    on_disk = await asyncio.to_thread(lambda: [p.name for p in full_disk.rglob("*") if p.is_file()])
    assert on_disk == ["filler"]

    # Room again (the admin cleared space): the retry stores every leg, whole, encrypted.
    (full_disk / "filler").unlink()
    subprocess.run(["mount", "-o", "remount,size=4m", str(full_disk)], check=True)
    async with asyncio.timeout(30):
        while len(await app.db.recordings(call_id)) < 3:  # noqa: ASYNC110 - the store is the check
            await asyncio.sleep(0.2)
    rows = await app.db.recordings(call_id)
    assert {r["leg"] for r in rows} == {"caller", "callee", "mixed"}
    assert all(r["flags"] == "" and float(r["duration_s"]) > 2.0 for r in rows)
    assert store.spool_files(call_id) == []
    assert all(Path(r["path"]).is_relative_to(full_disk) for r in rows)
    mixed = next(r for r in rows if r["leg"] == "mixed")
    assert wav_info_of((plain := await decrypted(app, mixed))[:44], len(plain)).complete
    assert time.time() - t0 < 120
    await app.db.alert_resolve(kind="recording_refused", key=str(full_disk), at=time.time())
    # The test's disk goes away: its files move to the session's recordings dir, so the
    # tests after this one find every stored recording where its row says.
    con = sqlite3.connect(app.cfg.database, timeout=30)
    try:
        for r in rows:
            old = Path(r["path"])
            new = original / old.relative_to(full_disk)
            new.parent.mkdir(parents=True, exist_ok=True)
            shutil.move(old, new)
            con.execute("UPDATE recordings SET path = ? WHERE id = ?", (str(new), r["id"]))
        con.commit()
    finally:
        con.close()
