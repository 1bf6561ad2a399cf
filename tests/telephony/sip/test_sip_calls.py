"""Two pjsua2 peers on loopback in one runtime: an agent (no registrar) and a phone."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import TYPE_CHECKING

import pytest

from appliance.telephony.audio import dominant_frequency, rms_dbfs, tone, voiced_seconds
from appliance.telephony.sip import (
    FRAME_BYTES,
    CallState,
    SipAgent,
    SipCall,
    SipError,
    SipPhone,
)

if TYPE_CHECKING:
    from conftest import Loopback

Handler = Callable[[SipCall], Awaitable[None]]

pytestmark = pytest.mark.usefixtures("no_leaked_calls")


async def _noop(call: SipCall) -> None:
    await call.wait_ended()


@pytest.fixture
def handler_box() -> dict[str, Handler]:
    # Tests swap the line behaviour in here; the agent looks it up per call.
    return {"handler": _noop}


@pytest.fixture
async def agent(loopback: Loopback, handler_box: dict[str, Handler]) -> AsyncIterator[SipAgent]:
    async def dispatch(call: SipCall) -> None:
        await handler_box["handler"](call)

    agent = SipAgent(
        handler=dispatch,
        username="agent",
        runtime=loopback.runtime,
        transport=loopback.agent_transport,
        max_calls=10,
    )
    await agent.start()
    yield agent
    await agent.stop()


@pytest.fixture
async def phone(loopback: Loopback) -> AsyncIterator[SipPhone]:
    phone = SipPhone(
        username="1001",
        display_name="Desk One",
        runtime=loopback.runtime,
        transport=loopback.phone_transport,
    )
    await phone.start()
    yield phone
    await phone.stop()


def assert_tone(pcm: bytes, freq: float, seconds: float) -> None:
    assert rms_dbfs(pcm) > -30.0, f"too quiet: {rms_dbfs(pcm):.1f} dBFS"
    assert dominant_frequency(pcm) == pytest.approx(freq, abs=15.0)
    assert voiced_seconds(pcm) == pytest.approx(seconds, abs=0.1)


async def test_agent_answers_and_sees_headers_and_caller_id(
    agent: SipAgent, phone: SipPhone, handler_box: dict[str, Handler]
) -> None:
    seen: asyncio.Queue[SipCall] = asyncio.Queue()

    async def handler(call: SipCall) -> None:
        await seen.put(call)
        await call.wait_ended()

    handler_box["handler"] = handler
    call = await phone.dial(
        agent.uri,
        headers={"X-Callvault-Line": "line-7", "X-Callvault-Linkedid": "1700000000.42"},
        wait_answer=5,
    )
    incoming = await asyncio.wait_for(seen.get(), 5)
    assert call.state is CallState.CONFIRMED
    assert incoming.state is CallState.CONFIRMED
    assert incoming.incoming and not call.incoming
    assert incoming.sip_headers["X-Callvault-Line"] == "line-7"
    assert incoming.sip_headers["X-Callvault-Linkedid"] == "1700000000.42"
    assert incoming.remote_caller_id_number == "1001"
    assert incoming.remote_caller_id_name == "Desk One"
    assert incoming.call_id and incoming.call_id == call.call_id
    assert agent.active_calls == [incoming]
    await call.hangup()
    assert (await call.wait_ended(5)).status_code == 200
    await incoming.wait_ended(5)


async def test_audio_phone_to_agent(
    agent: SipAgent, phone: SipPhone, handler_box: dict[str, Handler]
) -> None:
    received: asyncio.Future[bytes] = asyncio.get_running_loop().create_future()

    async def handler(call: SipCall) -> None:
        chunks = []
        async for frame in call.frames():
            assert len(frame) == FRAME_BYTES
            chunks.append(frame)
        received.set_result(b"".join(chunks))

    handler_box["handler"] = handler
    call = await phone.dial(agent.uri, wait_answer=5)
    call.play(tone(440, 0.6))
    await call.wait_played(5)
    await asyncio.sleep(0.3)  # jitter buffer drains to the far end
    await call.hangup()
    pcm = await asyncio.wait_for(received, 5)
    assert_tone(pcm, 440, 0.6)


async def test_audio_agent_to_phone_with_wait_played(
    agent: SipAgent, phone: SipPhone, handler_box: dict[str, Handler]
) -> None:
    async def handler(call: SipCall) -> None:
        call.play(tone(1000, 0.4))
        call.play(tone(1000, 0.4))
        loop = asyncio.get_running_loop()
        started = loop.time()
        await call.wait_played(5)
        # Played in real time: two 0.4 s chunks take ~0.8 s, not an instant.
        assert loop.time() - started == pytest.approx(0.8, abs=0.15)
        await asyncio.sleep(0.3)

    handler_box["handler"] = handler
    call = await phone.dial(agent.uri, wait_answer=5)
    end = await call.wait_ended(5)  # the agent hangs up when its handler returns
    assert end.status_code == 200
    assert_tone(call.received_pcm(), 1000, 0.8)


async def test_audio_both_directions_at_once(
    agent: SipAgent, phone: SipPhone, handler_box: dict[str, Handler]
) -> None:
    agent_heard: asyncio.Future[bytes] = asyncio.get_running_loop().create_future()

    async def handler(call: SipCall) -> None:
        call.play(tone(700, 0.5))
        await call.wait_played(5)
        await asyncio.sleep(0.3)
        agent_heard.set_result(call.received_pcm())

    handler_box["handler"] = handler
    call = await phone.dial(agent.uri, wait_answer=5)
    call.play(tone(300, 0.5))
    await call.wait_ended(5)
    assert_tone(call.received_pcm(), 700, 0.5)
    assert_tone(await agent_heard, 300, 0.5)


async def test_clear_playback_stops_audio(
    agent: SipAgent, phone: SipPhone, handler_box: dict[str, Handler]
) -> None:
    async def handler(call: SipCall) -> None:
        call.play(tone(500, 3.0))
        await asyncio.sleep(0.4)
        call.clear_playback()
        await call.wait_played(0.5)  # a cleared queue counts as played
        assert call.playback_pending_bytes == 0
        await asyncio.sleep(0.5)

    handler_box["handler"] = handler
    call = await phone.dial(agent.uri, wait_answer=5)
    await call.wait_ended(5)
    assert voiced_seconds(call.received_pcm()) == pytest.approx(0.4, abs=0.15)


async def test_dtmf_digits_reach_the_agent(
    agent: SipAgent, phone: SipPhone, handler_box: dict[str, Handler]
) -> None:
    digits: asyncio.Future[str] = asyncio.get_running_loop().create_future()

    async def handler(call: SipCall) -> None:
        got = ""
        async for digit in call.dtmf():
            got += digit
            if got.endswith("#"):
                break
        digits.set_result(got)

    handler_box["handler"] = handler
    call = await phone.dial(agent.uri, wait_answer=5)
    await call.dial_dtmf("1234*0#")
    assert await asyncio.wait_for(digits, 5) == "1234*0#"
    await call.wait_ended(5)


async def test_dtmf_queue_on_the_phone_side(
    agent: SipAgent, phone: SipPhone, handler_box: dict[str, Handler]
) -> None:
    async def handler(call: SipCall) -> None:
        await call.dial_dtmf("42")
        await call.wait_ended()

    handler_box["handler"] = handler
    call = await phone.dial(agent.uri, wait_answer=5)
    assert await asyncio.wait_for(call.dtmf_queue.get(), 5) == "4"
    assert await asyncio.wait_for(call.dtmf_queue.get(), 5) == "2"
    await call.hangup()
    await call.wait_ended(5)


async def test_hangup_from_phone_ends_the_handler(
    agent: SipAgent, phone: SipPhone, handler_box: dict[str, Handler]
) -> None:
    ended = asyncio.get_running_loop().create_future()

    async def handler(call: SipCall) -> None:
        ended.set_result(await call.wait_ended())

    handler_box["handler"] = handler
    call = await phone.dial(agent.uri, wait_answer=5)
    await call.hangup()
    agent_end = await asyncio.wait_for(ended, 5)
    assert agent_end.status_code == 200  # BYE answered normally
    assert call.state is CallState.DISCONNECTED
    assert not call.is_active
    await call.hangup()  # idempotent once ended


async def test_agent_hangs_up_when_handler_returns(
    agent: SipAgent, phone: SipPhone, handler_box: dict[str, Handler]
) -> None:
    async def handler(call: SipCall) -> None:
        await asyncio.sleep(0.2)

    handler_box["handler"] = handler
    call = await phone.dial(agent.uri, wait_answer=5)
    end = await call.wait_ended(5)
    assert end.status_code == 200
    assert agent.calls_handled >= 1


async def test_agent_survives_a_failing_handler(
    agent: SipAgent, phone: SipPhone, handler_box: dict[str, Handler]
) -> None:
    async def handler(call: SipCall) -> None:
        raise RuntimeError("line behaviour crashed")

    handler_box["handler"] = handler
    call = await phone.dial(agent.uri, wait_answer=5)
    await call.wait_ended(5)
    handler_box["handler"] = _noop
    second = await phone.dial(agent.uri, wait_answer=5)
    await second.hangup()
    await second.wait_ended(5)


async def test_phone_auto_answers_calls_from_the_agent_account(
    agent: SipAgent, phone: SipPhone
) -> None:
    call = await agent.account.dial(phone.uri)
    incoming = await phone.next_incoming(5)
    await call.wait_confirmed(5)
    await incoming.wait_confirmed(5)  # the callee is confirmed by the ACK, a bit later
    assert incoming.remote_caller_id_number == "agent"
    await incoming.hangup()
    await call.wait_ended(5)
    await incoming.wait_ended(5)


# pjsua2-python 2.15.1.post1 is compiled with PJSUA_MAX_CALLS = 4 call legs per process (it
# silently clamps uaConfig.maxCalls). With both peers in this process that is 2 calls at once.
WHEEL_CALL_LEGS = 4


async def test_concurrent_calls_keep_their_own_audio(
    agent: SipAgent, phone: SipPhone, handler_box: dict[str, Handler]
) -> None:
    async def handler(call: SipCall) -> None:
        # Each line answers with its own frequency, named by the caller in a header.
        call.play(tone(float(call.sip_headers["X-Tone"]), 0.5))
        await call.wait_played(5)
        await asyncio.sleep(0.3)

    handler_box["handler"] = handler
    freqs = [400, 1200][: WHEEL_CALL_LEGS // 2]
    calls = await asyncio.gather(
        *(phone.dial(agent.uri, headers={"X-Tone": str(f)}) for f in freqs)
    )
    await asyncio.gather(*(c.wait_confirmed(5) for c in calls))
    assert len(agent.active_calls) == len(freqs)
    ends = await asyncio.gather(*(c.wait_ended(10) for c in calls))
    assert all(e.status_code == 200 for e in ends)
    for call, freq in zip(calls, freqs, strict=True):
        assert_tone(call.received_pcm(), freq, 0.5)


async def test_full_call_table_is_a_clear_error(agent: SipAgent, phone: SipPhone) -> None:
    calls = [await phone.dial(agent.uri, wait_answer=5) for _ in range(WHEEL_CALL_LEGS // 2)]
    with pytest.raises(SipError, match="call table is full"):
        await phone.dial(agent.uri)
    for call in calls:
        await call.hangup()
    for call in calls:
        await call.wait_ended(5)


async def test_agent_rejects_calls_over_its_limit(loopback: Loopback, phone: SipPhone) -> None:
    async def hold(call: SipCall) -> None:
        await call.wait_ended()

    agent = SipAgent(
        handler=hold, runtime=loopback.runtime, transport=loopback.agent_transport, max_calls=1
    )
    await agent.start()
    try:
        first = await phone.dial(agent.uri, wait_answer=5)
        second = await phone.dial(agent.uri)
        end = await second.wait_ended(5)
        assert end.status_code == 486
        assert agent.calls_rejected == 1
        await first.hangup()
        await first.wait_ended(5)
    finally:
        await agent.stop()


async def test_agent_stop_cancels_handlers_and_hangs_up(
    loopback: Loopback, phone: SipPhone
) -> None:
    cancelled = asyncio.Event()

    async def forever(call: SipCall) -> None:
        try:
            await asyncio.sleep(3600)
        except asyncio.CancelledError:
            cancelled.set()
            raise

    agent = SipAgent(handler=forever, runtime=loopback.runtime, transport=loopback.agent_transport)
    await agent.start()
    calls = [await phone.dial(agent.uri, wait_answer=5) for _ in range(2)]
    await agent.stop()
    assert cancelled.is_set()
    for call in calls:
        await call.wait_ended(5)
