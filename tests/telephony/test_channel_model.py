"""The live channel model against Asterisk's own list: events that interleave with a
CoreShowChannels list are not undone by it, and channels that ended unseen are dropped by the
periodic audit (a dead call held "live" would stall post-call work that waits for an idle box)."""

from __future__ import annotations

import asyncio
from pathlib import Path

import pytest

from appliance.store import Database
from appliance.telephony.service import TelephonyService
from tests.privacy.conftest import make_cfg
from tests.reliability.test_asterisk_died import channel_event


def listed(ev: dict[str, str]) -> dict[str, str]:
    return {**ev, "Event": "CoreShowChannel"}


def hangup(uid: str, linkedid: str) -> dict[str, str]:
    return {"Event": "Hangup", "Uniqueid": uid, "Linkedid": linkedid}


class SlowList:
    """CoreShowChannels whose reply is held until released, as events keep flowing."""

    def __init__(self, items: list[dict[str, str]]) -> None:
        self.items = items
        self.asked = asyncio.Event()
        self.release = asyncio.Event()

    async def __call__(self, name: str, **_: str) -> list[dict[str, str]]:
        assert name == "CoreShowChannels"
        self.asked.set()
        await self.release.wait()
        return self.items


async def test_a_hangup_during_the_list_is_not_undone_by_it(tmp_path: Path) -> None:
    async with Database(make_cfg(tmp_path).database) as db:
        svc = TelephonyService(make_cfg(tmp_path), db)
        a = channel_event("1.1", "1.1", "PJSIP/201-00000001", "201", "100")
        svc._on_event(a)
        slow = SlowList([listed(a)])  # the snapshot still has it...
        svc.ami.action_list = slow  # type: ignore[method-assign]
        refresh = asyncio.ensure_future(svc._refresh_channels())
        await slow.asked.wait()
        svc._on_event(hangup("1.1", "1.1"))  # ...it hangs up before the list ends
        born = channel_event("1.2", "1.2", "PJSIP/202-00000002", "202", "100")
        svc._on_event(born)  # and a new call starts after the snapshot
        slow.release.set()
        unseen = await refresh
        assert set(svc.channels) == {"1.2"}
        assert unseen == set()
        for task in list(svc._tasks):
            task.cancel()


async def test_the_audit_drops_channels_that_ended_unseen(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from appliance.telephony import service as service_mod

    monkeypatch.setattr(service_mod, "CHANNEL_AUDIT_EVERY_S", 0.05)
    async with Database(make_cfg(tmp_path).database) as db:
        svc = TelephonyService(make_cfg(tmp_path), db)
        live = channel_event("2.1", "2.1", "PJSIP/201-00000003", "201", "100")
        lost = channel_event("3.1", "3.1", "PJSIP/202-00000004", "202", "100")
        svc._on_event(live)
        svc._on_event(lost)  # its Hangup never reached the appliance

        async def channels(name: str, **_: str) -> list[dict[str, str]]:
            return [listed(live)]

        svc.ami.action_list = channels  # type: ignore[method-assign]
        monkeypatch.setattr(type(svc.ami), "connected", property(lambda _: True))
        ingested: list[str] = []
        taken = asyncio.Event()

        def schedule(call_id: str) -> None:
            ingested.append(call_id)
            taken.set()

        svc._schedule_ingest = schedule  # type: ignore[method-assign]
        audit = asyncio.ensure_future(svc._audit_channels_periodically())
        try:
            async with asyncio.timeout(5):
                await taken.wait()
        finally:
            audit.cancel()
        assert set(svc.channels) == {"2.1"}
        assert ingested == ["3.1"]  # its recordings and CDRs are taken as for any ended call
