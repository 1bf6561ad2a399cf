"""Asterisk SIGKILLed with calls up, then started again: the calls that were up end with a CDR
flagged as reconstructed and their recording up to the kill kept (flagged incomplete); the
appliance reconnects by itself and takes the next call normally."""

from __future__ import annotations

import asyncio
import os
import signal
import time
from pathlib import Path

import pytest

from appliance.config import Config
from appliance.server import Appliance
from appliance.telephony.service import RECONSTRUCTED
from appliance.telephony.sip import SipPhone
from bench.reliability import gone
from tests.integration.conftest import Heards, sandbox
from tests.integration.test_reliability_faults import loadtest_calls, start_sipp

pytestmark = pytest.mark.asyncio(loop_scope="session")


def asterisk_pid(cfg: Config) -> int:
    return int(cfg.asterisk.host_path("/run/asterisk/asterisk.pid").read_text().strip())


async def test_asterisk_killed_mid_call_and_restarted(
    app: Appliance,
    cfg: Config,
    sipp: str,
    tmp_path: Path,
    phone201: SipPhone,
    heards: Heards,
) -> None:
    t0 = time.time()
    reconnects = app.telephony.stats.reconnects
    proc = await start_sipp(sipp, cfg, tmp_path, calls=3, rate=10, hold_ms=30_000, port=5090)
    try:
        async with asyncio.timeout(10):  # all three up and being recorded
            while len(app.telephony.recordings.spool_files()) < 3:  # noqa: ASYNC110
                await asyncio.sleep(0.1)
        # Asterisk writes MixMonitor files through a stdio buffer: give it time to flush some.
        await asyncio.sleep(5)
        up = {ch.linkedid for ch in app.telephony.channels.values()}
        pid = asterisk_pid(cfg)
        os.kill(pid, signal.SIGKILL)
        on_disk = {
            p.name.split("-")[1]: p.stat().st_size for p in app.telephony.recordings.spool_files()
        }
    finally:
        proc.terminate()
        await proc.wait()
    await gone(pid)
    restarted = await asyncio.to_thread(sandbox, cfg, "up", check=False)
    assert restarted.returncode == 0, restarted.stderr
    async with asyncio.timeout(30):  # reconnects by itself (panoramisk's retry + our reconcile)
        while app.telephony.stats.reconnects == reconnects or not app.telephony.ami.connected:  # noqa: ASYNC110
            await asyncio.sleep(0.1)
    async with asyncio.timeout(40):
        while True:
            ids = await loadtest_calls(app.db, t0)
            recs = [r for r in await app.db.recordings() if r["call_id"] in ids]
            if len(ids) >= 3 and len(recs) >= 3:
                break
            await asyncio.sleep(0.25)
    assert ids <= up
    for call_id in ids:
        rows = await app.db.cdrs(call_id)
        assert rows and all(r["last_app"] == RECONSTRUCTED for r in rows), rows
    assert len(recs) == 3
    for rec in recs:
        assert "incomplete" in str(rec["flags"])
        # Everything Asterisk had written when it died is kept, and that is audio.
        assert rec["size_bytes"] >= on_disk[str(rec["call_id"])] > 44, (rec, on_disk)
        assert rec["duration_s"] > 0
    assert app.telephony.recordings.spool_files() == []
    # Service is back: a desk phone calls the AI line and the agent answers.
    async with asyncio.timeout(20):
        while True:
            mark = heards.mark()
            call = await phone201.dial("100")
            try:
                await call.wait_confirmed(timeout=5)
                break
            except Exception:
                await asyncio.sleep(1)
    await asyncio.sleep(0.5)
    await call.hangup()
    heard = await heards.next(mark, "reception")
    rows = await app.telephony.wait_cdr(heard.call_id)
    assert rows and all(r["last_app"] != RECONSTRUCTED for r in rows)
