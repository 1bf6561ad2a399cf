"""Calls through the real Asterisk: desk phone → AI line, outbound, blind transfer, recording."""

from __future__ import annotations

import asyncio
import time
from pathlib import Path

import pytest

from appliance.config import Config
from appliance.server import Appliance
from appliance.telephony.audio import dominant_frequency, rms_dbfs, tone, voiced_seconds
from appliance.telephony.recordings import wav_info
from appliance.telephony.sip import SipPhone
from tests.integration.conftest import Heards

pytestmark = pytest.mark.asyncio(loop_scope="session")

SILENCE_200MS = b"\x00\x00" * 1600


async def recordings_for(app: Appliance, call_id: str, n: int, timeout: float = 10.0) -> list[dict]:
    deadline = time.monotonic() + timeout
    while True:
        rows = await app.db.recordings(call_id)
        if len(rows) >= n or time.monotonic() > deadline:
            return rows
        await asyncio.sleep(0.1)


async def test_desk_phone_calls_the_ai_line(
    app: Appliance, phone201: SipPhone, heards: Heards, cfg: Config
) -> None:
    t0 = time.time()
    mark = heards.mark()
    call = await phone201.dial("100")
    await call.wait_confirmed(timeout=10)
    call.play(SILENCE_200MS + tone(1000.0, 2.0) + SILENCE_200MS)
    await asyncio.sleep(3.5)
    received = call.received_pcm()
    await call.hangup()
    await call.wait_ended(timeout=5)

    # The agent's greeting (Asterisk's 1.4 s "hello world") reached the phone.
    assert voiced_seconds(received) > 1.0
    assert rms_dbfs(received) > -40
    # The phone's 1 kHz tone reached the agent, through Asterisk, intact.
    heard = await heards.next(mark, "reception")
    assert 1.6 < voiced_seconds(heard.pcm) < 2.6
    assert abs(dominant_frequency(heard.pcm) - 1000.0) < 30

    rows = await app.telephony.wait_cdr(heard.call_id)
    assert len(rows) == 1
    r = rows[0]
    assert r["calling_number"] == "201"
    assert r["caller_name"] == "Front desk"
    assert r["dialed_number"] == "100"
    assert r["direction"] == "inbound"
    assert r["line"] == "reception"
    assert r["disposition"] == "ANSWERED"
    assert r["hangup_cause"] == 16 and r["hangup_cause_text"] == "Normal clearing"
    assert str(r["channel"]).startswith("PJSIP/201-")
    assert str(r["dest_channel"]).startswith("PJSIP/agent-")
    assert r["source"] == "ami"
    assert t0 - 1 <= r["start_at"] <= r["answer_at"] <= r["end_at"] <= time.time() + 1
    assert 3 <= r["duration_s"] <= 5
    assert 3 <= r["billable_s"] <= r["duration_s"]

    recs = await recordings_for(app, heard.call_id, 3)
    assert sorted(x["leg"] for x in recs) == ["callee", "caller", "mixed"]
    for rec in recs:
        info = wav_info(Path(rec["path"]))
        assert info.complete and info.rate == 8000
        assert 3.0 <= rec["duration_s"] <= 5.0
        assert len(rec["sha256"]) == 64
    # Nothing left behind in Asterisk's spool.
    assert app.telephony.recordings.spool_files(heard.call_id) == []
    call_row = await app.db.call(heard.call_id)
    assert call_row is not None and call_row.line == "reception"
