"""The telephony service fed a real AMI transcript (no Asterisk): the call model and CDRs."""

from __future__ import annotations

import asyncio
import io
import wave
from pathlib import Path

from panoramisk.message import Message

from appliance import config
from appliance.store import Database
from appliance.telephony.service import TelephonyService

TRANSCRIPT = Path(__file__).resolve().parents[2] / "bench" / "fixtures" / "ami_transcript.ami"


def events() -> list[dict[str, str]]:
    out = []
    for chunk in TRANSCRIPT.read_bytes().decode(errors="replace").split("\r\n\r\n"):
        msg = Message.from_line(chunk.strip())
        if msg is not None and "Event" in msg:
            out.append({str(k): str(v) for k, v in msg.items() if not isinstance(v, list)})
    return out


def make_cfg(tmp_path: Path) -> config.Config:
    raw = {
        "state_dir": "state",
        "asterisk": {"root": str(tmp_path / "root"), "ami_secret": "unused-in-this-test"},
        "lines": [{"name": "loadtest", "extension": "902", "kind": "announcement"}],
    }
    return config.parse(raw, base_dir=tmp_path)


def wav_bytes(seconds: float) -> bytes:
    buf = io.BytesIO()
    with wave.open(buf, "wb") as w:
        w.setnchannels(1)
        w.setsampwidth(2)
        w.setframerate(8000)
        w.writeframes(b"\x01\x00" * int(8000 * seconds))
    return buf.getvalue()


async def test_replayed_transcript_gives_one_cdr_per_call(tmp_path: Path) -> None:
    cfg = make_cfg(tmp_path)
    spool = cfg.asterisk.host_path(cfg.asterisk.spool_dir)
    spool.mkdir(parents=True)
    evs = events()
    call_ids = {e["Linkedid"] for e in evs if e["Event"] == "Newchannel"}
    assert len(call_ids) == 10
    # MixMonitor's files, finished, as Asterisk leaves them in the spool.
    for cid in call_ids:
        (spool / f"cv-{cid}-loadtest-mixed.wav").write_bytes(wav_bytes(1.5))
    async with Database(tmp_path / "db.sqlite") as db:
        svc = TelephonyService(cfg, db)
        for ev in evs:
            svc._on_event(ev)
        await asyncio.sleep(0)
        assert svc.channels == {}  # every channel that was created also hung up
        for cid in call_ids:
            rows = await svc.wait_cdr(cid, timeout_s=5, settle_s=0)
            assert len(rows) == 1
            assert rows[0]["line"] == "loadtest" and rows[0]["disposition"] == "ANSWERED"
            assert rows[0]["hangup_cause"] == 16
        for _ in range(100):
            if len(await db.recordings()) == 10:
                break
            await asyncio.sleep(0.02)
        recs = await db.recordings()
        assert len(recs) == 10 and all(r["duration_s"] == 1.5 for r in recs)
        assert list(spool.iterdir()) == []
        assert svc.stats.cdrs_written == 10 and svc.stats.cdr_errors == 0
        await svc.stop()


async def test_a_broken_cdr_event_is_counted_not_fatal(tmp_path: Path) -> None:
    async with Database(tmp_path / "db.sqlite") as db:
        svc = TelephonyService(make_cfg(tmp_path), db)
        svc._on_event({"Event": "Cdr", "UniqueID": "1.1", "StartTime": "garbage"})
        await asyncio.sleep(0.05)
        assert svc.stats.cdr_errors == 1
        assert await db.count_cdrs() == 0
        await svc.stop()
