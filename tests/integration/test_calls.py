"""Calls through the real Asterisk: desk phone → AI line, outbound, blind transfer, recording."""

from __future__ import annotations

import asyncio
import hashlib
import io
import time
import wave
from pathlib import Path

import pytest

from appliance.config import Config
from appliance.privacy import Actor
from appliance.server import Appliance
from appliance.telephony.audio import dominant_frequency, rms_dbfs, tone, voiced_seconds
from appliance.telephony.recordings import wav_info_of
from appliance.telephony.sip import SipPhone
from tests.integration.conftest import Heards

pytestmark = pytest.mark.asyncio(loop_scope="session")

SILENCE_200MS = b"\x00\x00" * 1600
TESTER = Actor("integration-test", "qa")


async def decrypted(app: Appliance, rec: dict) -> bytes:
    """A recording's plaintext WAV, through the audited decrypt-as-stream API."""
    stream = app.telephony.recordings.open_recording(rec, actor=TESTER, purpose="test")
    return b"".join([chunk async for chunk in stream])


def stored_head(rec: dict) -> bytes:
    with Path(rec["path"]).open("rb") as fh:
        return fh.read(4)


def pcm_of(wav_bytes: bytes) -> bytes:
    with wave.open(io.BytesIO(wav_bytes), "rb") as w:
        assert (w.getframerate(), w.getnchannels(), w.getsampwidth()) == (8000, 1, 2)
        return w.readframes(w.getnframes())


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
        assert stored_head(rec) != b"RIFF"  # encrypted at rest
        plain = await decrypted(app, rec)
        info = wav_info_of(plain[:44], len(plain))
        assert info.complete and info.rate == 8000
        assert 3.0 <= rec["duration_s"] <= 5.0
        assert hashlib.sha256(plain).hexdigest() == rec["sha256"]
    # Nothing left behind in Asterisk's spool.
    assert app.telephony.recordings.spool_files(heard.call_id) == []
    call_row = await app.db.call(heard.call_id)
    assert call_row is not None and call_row.line == "reception"


async def test_outbound_call_to_a_desk_phone(
    app: Appliance, phone202: SipPhone, heards: Heards
) -> None:
    mark = heards.mark()
    call_id = await app.telephony.originate("202", "reception")
    incoming = await phone202.next_incoming(timeout=10)
    await incoming.wait_confirmed(timeout=10)
    assert incoming.remote_caller_id_number == "100"
    incoming.play(tone(700.0, 1.5))
    await asyncio.sleep(3.0)
    received = incoming.received_pcm()
    await incoming.hangup()
    await incoming.wait_ended(timeout=5)

    assert voiced_seconds(received) > 1.0  # the agent's greeting
    heard = await heards.next(mark, "reception")
    assert heard.call_id == call_id
    assert abs(dominant_frequency(heard.pcm) - 700.0) < 30

    rows = await app.telephony.wait_cdr(call_id)
    first = rows[0]
    assert first["direction"] == "outbound"
    assert first["dialed_number"] == "202"
    assert first["calling_number"] == "100"
    assert first["line"] == "reception"
    assert first["disposition"] == "ANSWERED"
    assert str(first["channel"]).startswith("PJSIP/202-")
    assert str(first["dest_channel"]).startswith("PJSIP/agent-")
    recs = await recordings_for(app, call_id, 3)
    assert sorted(x["leg"] for x in recs) == ["callee", "caller", "mixed"]


async def test_blind_transfer_to_an_extension(
    app: Appliance, phone201: SipPhone, phone202: SipPhone, heards: Heards
) -> None:
    mark = heards.mark()
    caller = await phone201.dial("100")
    await caller.wait_confirmed(timeout=10)
    await asyncio.sleep(0.5)
    call_id = next(
        ch.linkedid for ch in app.telephony.channels.values() if ch.name.startswith("PJSIP/201-")
    )
    await app.telephony.transfer(call_id, "202")
    target = await phone202.next_incoming(timeout=10)
    await target.wait_confirmed(timeout=10)
    # The caller is now talking to the person at 202: audio both ways, no agent in between.
    await asyncio.sleep(0.5)
    before_201, before_202 = len(caller.received_pcm()), len(target.received_pcm())
    caller.play(tone(600.0, 1.0))
    target.play(tone(900.0, 1.0))
    await asyncio.sleep(1.8)
    to_202 = target.received_pcm()[before_202:]
    to_201 = caller.received_pcm()[before_201:]
    assert abs(dominant_frequency(to_202) - 600.0) < 30
    assert abs(dominant_frequency(to_201) - 900.0) < 30
    await caller.hangup()
    await target.wait_ended(timeout=5)

    heard = await heards.next(mark, "reception")
    assert heard.call_id == call_id
    rows = await app.telephony.wait_cdr(call_id)
    dests = [str(r["dest_channel"]) for r in rows]
    assert any(d.startswith("PJSIP/agent-") for d in dests)
    assert any(d.startswith("PJSIP/202-") for d in dests)
    assert all(r["call_id"] == call_id for r in rows)


async def test_recording_started_and_stopped_over_ami(
    app: Appliance, phone201: SipPhone, heards: Heards
) -> None:
    mark = heards.mark()
    call = await phone201.dial("103")  # the on-demand line: nothing recorded from the start
    await call.wait_confirmed(timeout=10)
    await asyncio.sleep(0.3)
    call_id = next(
        ch.linkedid for ch in app.telephony.channels.values() if ch.name.startswith("PJSIP/201-")
    )
    assert app.telephony.recordings.spool_files(call_id) == []
    await asyncio.sleep(1.0)
    await app.telephony.start_recording(call_id, "on-demand")
    call.play(tone(500.0, 1.5))
    await asyncio.sleep(1.5)
    await app.telephony.stop_recording(call_id)
    await asyncio.sleep(1.0)
    await call.hangup()
    await call.wait_ended(timeout=5)
    await heards.next(mark, "on-demand")

    recs = await recordings_for(app, call_id, 2)
    assert sorted(r["leg"] for r in recs) == ["caller", "mixed"]
    for rec in recs:
        # Only the 1.5 s between start and stop, not the ~4 s call.
        assert 1.2 <= rec["duration_s"] <= 2.2, rec
    caller_leg = next(r for r in recs if r["leg"] == "caller")
    assert abs(dominant_frequency(pcm_of(await decrypted(app, caller_leg))) - 500.0) < 30
