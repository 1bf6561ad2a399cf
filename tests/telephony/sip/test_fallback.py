"""A line behaviour that crashes mid-call (the voice models' process died) does not drop the
caller: the agent plays the fallback announcement, logs it, then hangs up (issue 9)."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import AsyncIterator
from typing import TYPE_CHECKING

import pytest

from appliance.telephony.audio import dominant_frequency, tone, voiced_seconds
from appliance.telephony.sip import SipAgent, SipCall, SipPhone

if TYPE_CHECKING:
    from conftest import Loopback

pytestmark = pytest.mark.usefixtures("no_leaked_calls")


class ModelCrashed(RuntimeError):
    pass


async def crashing(call: SipCall) -> None:
    await asyncio.sleep(0.3)  # mid-call, after the answer
    raise ModelCrashed("whisper worker exited with signal 9")


async def announcement(call: SipCall) -> None:
    call.play(tone(660.0, 0.8))
    await call.wait_played()


@pytest.fixture
async def agent(loopback: Loopback) -> AsyncIterator[SipAgent]:
    agent = SipAgent(
        handler=crashing,
        username="agent",
        runtime=loopback.runtime,
        transport=loopback.agent_transport,
        fallback=announcement,
    )
    await agent.start()
    yield agent
    await agent.stop()


@pytest.fixture
async def phone(loopback: Loopback) -> AsyncIterator[SipPhone]:
    phone = SipPhone(username="1001", runtime=loopback.runtime, transport=loopback.phone_transport)
    await phone.start()
    yield phone
    await phone.stop()


async def test_crash_mid_call_plays_the_announcement_and_is_logged(
    agent: SipAgent, phone: SipPhone, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO)
    call = await phone.dial(agent.uri, wait_answer=5)
    heard = bytearray()

    async def listen() -> None:
        async for frame in call.frames():
            heard.extend(frame)

    task = asyncio.create_task(listen())
    await call.wait_ended(8)  # the agent hangs up after the announcement
    task.cancel()
    await asyncio.gather(task, return_exceptions=True)
    assert agent.calls_fallen_back == 1
    assert dominant_frequency(bytes(heard)) == pytest.approx(660.0, abs=20.0)
    assert voiced_seconds(bytes(heard)) == pytest.approx(0.8, abs=0.2)
    assert "whisper worker exited" in caplog.text
    assert "playing the fallback announcement" in caplog.text
