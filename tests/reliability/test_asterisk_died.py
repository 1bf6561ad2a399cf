"""Asterisk killed mid-call and restarted: the appliance reconnects by itself (tested against
the real sandbox in tests/integration/test_reliability_faults.py); here, what it stores for the
calls that were up: one CDR each, flagged as reconstructed, and the recording up to the kill,
kept and flagged `incomplete` (MixMonitor never finalised its header)."""

from __future__ import annotations

import asyncio
import time
from dataclasses import replace
from pathlib import Path

import pytest

from appliance.store import Database
from appliance.telephony import service as service_mod
from appliance.telephony.recordings import RecordingStore
from appliance.telephony.service import RECONSTRUCTED, TelephonyService
from tests.privacy.conftest import make_cfg
from tests.privacy.rights_fixtures import distinctive_wav


async def settle(svc: TelephonyService) -> None:
    """Until every background task (and the ones they spawned) is done."""
    while svc._tasks:
        await asyncio.gather(*list(svc._tasks))


def channel_event(uid: str, linkedid: str, name: str, number: str, exten: str) -> dict[str, str]:
    return {
        "Event": "Newchannel", "Uniqueid": uid, "Linkedid": linkedid, "Channel": name,
        "CallerIDNum": number, "Exten": exten, "Context": "callvault-internal",
        "ChannelStateDesc": "Up",
    }  # fmt: skip


async def test_calls_lost_with_asterisk_get_flagged_cdrs_and_recordings(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(service_mod, "INGEST_CDR_WAIT_S", 0.3)
    monkeypatch.setattr(service_mod, "INGEST_FILE_WAIT_S", 0.3)
    base = make_cfg(tmp_path)
    cfg = replace(base, asterisk=replace(base.asterisk, root=tmp_path / "root"))
    spool = tmp_path / "spool"
    spool.mkdir()
    started = int(time.time()) - 30
    call = f"{started}.7"
    async with Database(cfg.database) as db:
        svc = TelephonyService(cfg, db)
        svc.recordings = RecordingStore(spool, cfg.recordings_dir, db, svc.privacy)
        listing: list[dict[str, str]] = []

        async def channels(name: str, **_: str) -> list[dict[str, str]]:
            assert name == "CoreShowChannels"
            return listing

        svc.ami.action_list = channels  # type: ignore[method-assign]
        # A call from 201 to the reception line is up and being recorded...
        svc._on_event(channel_event(call, call, "PJSIP/201-00000001", "201", "100"))
        svc._on_event(channel_event(f"{started}.8", call, "PJSIP/agent-00000002", "100", "100"))
        wav = distinctive_wav(3.0)
        # ...MixMonitor has written 2 s of it, header not yet fixed up, when Asterisk dies.
        (spool / f"cv-{call}-reception-mixed.wav").write_bytes(wav[: 44 + 2 * 16000])
        svc._on_state(False)
        # Restarted: AMI is back, and the new Asterisk has no channels (and wrote no CDR).
        svc._on_state(True)
        await settle(svc)
        cdrs = await db.cdrs(call)
        assert len(cdrs) == 2  # one per channel the live model knew
        for row in cdrs:
            assert row["last_app"] == RECONSTRUCTED
            assert "Asterisk stopped during the call" in str(row["hangup_cause_text"])
            assert row["disposition"] == "ANSWERED" and row["line"] == "reception"
            assert 25 <= float(str(row["duration_s"])) <= 60
        recs = await db.recordings(call)
        assert len(recs) == 1
        assert recs[0]["flags"] == "incomplete"
        assert recs[0]["duration_s"] == pytest.approx(2.0, abs=0.01)
        assert svc.recordings.spool_files() == []
        assert svc.stats.cdrs_reconstructed == 2


async def test_an_ami_cut_alone_reconstructs_nothing(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Channels still listed after the reconnect are live calls, not lost ones."""
    monkeypatch.setattr(service_mod, "INGEST_CDR_WAIT_S", 0.3)
    base = make_cfg(tmp_path)
    cfg = replace(base, asterisk=replace(base.asterisk, root=tmp_path / "root"))
    async with Database(cfg.database) as db:
        svc = TelephonyService(cfg, db)
        ev = channel_event("1800000000.1", "1800000000.1", "PJSIP/201-1", "201", "100")

        async def channels(name: str, **_: str) -> list[dict[str, str]]:
            return [{**ev, "Event": "CoreShowChannel"}]

        svc.ami.action_list = channels  # type: ignore[method-assign]
        svc._on_event(ev)
        svc._on_state(False)
        svc._on_state(True)
        await settle(svc)
        assert await db.cdrs("1800000000.1") == []
        assert svc.stats.cdrs_reconstructed == 0
        assert "1800000000.1" in {ch.linkedid for ch in svc.channels.values()}
