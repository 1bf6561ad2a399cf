"""Privacy through the real Asterisk: do-not-call enforcement, recordings encrypted at rest."""

from __future__ import annotations

import asyncio
import hashlib
import logging
import math
import sqlite3
from collections import Counter
from pathlib import Path

import pytest

from appliance.config import Config
from appliance.privacy import Actor
from appliance.server import Appliance
from appliance.telephony.audio import tone
from appliance.telephony.recordings import wav_info_of
from appliance.telephony.service import DoNotCallError
from appliance.telephony.sip import SipError, SipPhone
from tests.integration.test_calls import decrypted, pcm_of, recordings_for

pytestmark = pytest.mark.asyncio(loop_scope="session")
OP = Actor("integration-test", "operator")


def spool_mount(cfg: Config) -> str | None:
    spool = str(cfg.asterisk.host_path(cfg.asterisk.spool_dir))
    for line in Path("/proc/mounts").read_text().splitlines():
        _dev, mountpoint, fstype, *_ = line.split()
        if mountpoint == spool:
            return fstype
    return None


def entropy(data: bytes) -> float:
    counts = Counter(data)
    return -sum(c / len(data) * math.log2(c / len(data)) for c in counts.values())


async def test_a_dnc_number_is_never_dialled(
    app: Appliance, phone202: SipPhone, caplog: pytest.LogCaptureFixture
) -> None:
    dnc = app.telephony.privacy.dnc
    assert await dnc.add("202", source="integration test", reason="opted out", actor=OP)
    try:
        with (
            caplog.at_level(logging.WARNING, logger="appliance.telephony.service"),
            pytest.raises(DoNotCallError, match="on the do-not-call list"),
        ):
            await app.telephony.originate("202", "reception", actor=OP)
        assert "refused to call" in caplog.text and "do-not-call" in caplog.text
        # No INVITE reached the phone, and Asterisk never made a channel towards it.
        with pytest.raises(SipError, match="no incoming call"):
            await phone202.next_incoming(timeout=3)
        assert not any(ch.name.startswith("PJSIP/202-") for ch in app.telephony.channels.values())
        con = sqlite3.connect(app.cfg.database)
        # Post-call work of earlier calls may append rows meanwhile: find ours among them.
        last = con.execute(
            "SELECT actor, action, purpose FROM audit_log WHERE action = 'originate.refused'"
            " ORDER BY seq DESC LIMIT 1"
        ).fetchone()
        assert last == ("integration-test", "originate.refused", "do-not-call")
    finally:
        assert await dnc.remove("202", actor=OP)
    # The same phone is reachable: the refusal, not the phone, kept the call away.
    call_id = await app.telephony.originate("202", "reception", actor=OP)
    incoming = await phone202.next_incoming(timeout=10)
    await incoming.wait_confirmed(timeout=10)
    await asyncio.sleep(0.5)
    await incoming.hangup()
    await incoming.wait_ended(timeout=5)
    await app.telephony.wait_cdr(call_id)
    await recordings_for(app, call_id, 3)
    assert (await app.telephony.privacy.audit.verify()).ok


async def test_recordings_are_encrypted_at_rest_and_the_spool_is_ram(
    app: Appliance, cfg: Config, phone201: SipPhone
) -> None:
    assert spool_mount(cfg) == "tmpfs"
    call = await phone201.dial("900")  # the echo line, recorded (mixed)
    await call.wait_confirmed(timeout=10)
    await asyncio.sleep(0.3)
    call_id = next(
        ch.linkedid for ch in app.telephony.channels.values() if ch.name.startswith("PJSIP/201-")
    )
    call.play(tone(800.0, 1.5))
    await asyncio.sleep(2.0)
    await call.hangup()
    await call.wait_ended(timeout=5)
    await app.telephony.wait_cdr(call_id)
    [rec] = await recordings_for(app, call_id, 1)

    stored = await asyncio.to_thread(Path(rec["path"]).read_bytes)
    assert b"RIFF" not in stored[:64] and b"WAVE" not in stored[:64]
    assert entropy(stored) > 7.9
    plain = await decrypted(app, rec)
    assert hashlib.sha256(plain).hexdigest() == rec["sha256"]
    assert wav_info_of(plain[:44], len(plain)).complete
    assert len(pcm_of(plain)) > 8000 * 2  # over a second of audio
    spool = cfg.asterisk.host_path(cfg.asterisk.spool_dir)
    assert [p.name for p in spool.iterdir() if call_id in p.name] == []
    # The call and its recording are found from the caller's number in one lookup.
    subjects = app.telephony.privacy.subjects
    items = await subjects.items(subjects.parse("201"))
    found = {(i["item_type"], i["item_id"]) for i in items}
    assert ("call", call_id) in found and ("recording", str(rec["id"])) in found
    con = sqlite3.connect(cfg.database)
    reads = con.execute(
        "SELECT COUNT(*) FROM audit_log WHERE action = 'recording.play' AND object = ?",
        (f"recording:{rec['id']}",),
    ).fetchone()[0]
    assert reads == 1
