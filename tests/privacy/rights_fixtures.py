"""A subject seeded across calls, CDRs, recordings, consents and logs, for the rights tests."""

from __future__ import annotations

import io
import wave
from dataclasses import dataclass, replace
from pathlib import Path

from appliance.privacy import Actor, Privacy
from appliance.privacy.rights import Rights
from appliance.telephony.recordings import RecordingStore
from tests.store.test_db import CDR

OP = Actor("dpo", "privacy-officer")
NUMBER = "+46701234567"
NATIONAL = "0701234567"
NAME = "Anna Svensson"
# A sample pattern no silence or tone produces: found in any plaintext copy of her audio.
PATTERN = bytes([0x5A, 0xA5, 0x3C, 0xC3, 0x17, 0x71, 0x2B, 0xB2])
# Every way the number may sit in a file: E.164, national, digits only.
NEEDLES = [b"701234567", NAME.encode(), b"Svensson", PATTERN * 2]


def distinctive_wav(seconds: float) -> bytes:
    buf = io.BytesIO()
    with wave.open(buf, "wb") as w:
        w.setnchannels(1)
        w.setsampwidth(2)
        w.setframerate(8000)
        n = int(8000 * seconds) * 2
        w.writeframes((PATTERN * (n // len(PATTERN) + 1))[:n])
    return buf.getvalue()


@dataclass(frozen=True)
class Seeded:
    calls: tuple[str, ...]
    other_call: str
    wav: bytes


async def seed(privacy: Privacy, tmp: Path) -> Seeded:
    """Her inbound call (recorded, with consent), an outbound call to her, and a call of 201's."""
    inbound = replace(
        CDR, call_id="1700000001.1", uniqueid="1700000001.1", calling_number=NATIONAL,
        caller_name=NAME, channel=f"PJSIP/trunk-{NATIONAL}-01",
    )  # fmt: skip
    outbound = replace(
        CDR, call_id="1700000002.1", uniqueid="1700000002.1", calling_number="100",
        caller_name="reception", dialed_number=NUMBER, direction="outbound",
    )  # fmt: skip
    other = replace(CDR, call_id="1700000003.1", uniqueid="1700000003.1")
    for cdr in (inbound, outbound, other):
        await privacy.subjects.add_cdr(cdr)
    spool = tmp / "spool"
    spool.mkdir(exist_ok=True)
    wav = distinctive_wav(1.5)
    (spool / f"cv-{inbound.call_id}-reception-mixed.wav").write_bytes(wav)
    (spool / f"cv-{other.call_id}-reception-mixed.wav").write_bytes(distinctive_wav(0.2)[:44])
    store = RecordingStore(spool, privacy.cfg.recordings_dir, privacy.db, privacy)
    await store.ingest_call(inbound.call_id)
    await privacy.db.add_consent(
        call_id=inbound.call_id, line="reception", decision="given", method="dtmf",
        prompt="This call is recorded. Press 1 to agree.", asked_at=1000.0, decided_at=1002.0,
    )  # fmt: skip
    return Seeded((inbound.call_id, outbound.call_id), other.call_id, wav)


async def done(rights: Rights, kind: str, who: str = NUMBER, **params: str) -> int:
    req = await rights.create(kind, who, OP, params=params or None)
    await rights.attest(req.id, OP, "called back on the number and matched the call dates")
    await rights.process(req.id, OP)
    return req.id
