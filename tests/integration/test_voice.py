"""The voice agent through the real Asterisk: a scripted caller speaks (Piper), the agent hears
(Whisper), thinks (llama.cpp) and answers (Piper) — all local models from PyPI packages."""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import AsyncIterator

import numpy as np
import pytest
import pytest_asyncio

from appliance.config import Config
from appliance.server import Appliance
from appliance.telephony.audio import first_voice_s
from appliance.telephony.sip import PjRuntime, SipCall, SipPhone
from appliance.voice.agent import Conversation, VoiceAgent
from appliance.voice.engines import VoiceEngines
from appliance.voice.metrics import wer
from tests.integration.conftest import Heards

pytestmark = pytest.mark.asyncio(loop_scope="session")

SCRIPT = [
    "Hi, I would like to book an appointment for next Tuesday morning, please.",
    "My name is Anna Svensson.",
]


@pytest.fixture(scope="session")
def engines(cfg: Config) -> VoiceEngines:
    return VoiceEngines.load(cfg)


@pytest_asyncio.fixture(loop_scope="session")
async def voice_app(
    cfg: Config, runtime: PjRuntime, engines: VoiceEngines, app: Appliance, tmp_path_factory
) -> AsyncIterator[tuple[Appliance, list[Conversation]]]:
    """The session appliance's agent, temporarily answering with the voice agent."""
    done: list[Conversation] = []
    previous = app.agent.handler
    app.agent.handler = VoiceAgent(
        cfg, engines, on_done=done.append, recorder=app.telephony, consent_timeout_s=20
    )
    try:
        yield app, done
    finally:
        app.agent.handler = previous


async def wait_answer(call: SipCall, since: int, timeout: float = 15.0) -> float:
    t0 = time.monotonic()
    while time.monotonic() - t0 < timeout:
        found = first_voice_s(call.received_pcm()[since:])
        if found is not None:
            return found
        await asyncio.sleep(0.02)
    raise AssertionError("the agent never answered")


async def _finished(done: list[Conversation]) -> Conversation:
    for _ in range(200):
        if done:
            return done[-1]
        await asyncio.sleep(0.05)
    raise AssertionError("the agent did not finish the call")


async def test_scripted_caller_talks_to_the_agent(
    voice_app: tuple[Appliance, list[Conversation]], engines: VoiceEngines, phone201: SipPhone
) -> None:
    app, done = voice_app
    speech = [b"".join(engines.tts.speak(text)) for text in SCRIPT]
    call = await phone201.dial("100")
    await call.wait_confirmed(timeout=10)
    greeting_s = await wait_answer(call, 0)
    assert greeting_s < 5.0
    await asyncio.sleep(4.0)  # let the greeting finish
    latencies = []
    for pcm in speech:
        call.play(pcm)
        await call.wait_played()
        latencies.append(await wait_answer(call, len(call.received_pcm())))
        await asyncio.sleep(6.0)
    await call.hangup()
    await call.wait_ended(timeout=5)
    convo = await _finished(done)
    heard = [t.text for t in convo.turns if t.role == "caller"]
    assert len(heard) == len(SCRIPT), convo.turns
    # Word error rate over the scripted lines, as the issue measures it.
    assert wer(" ".join(SCRIPT), " ".join(heard)) <= 0.15, heard
    agent_turns = [t for t in convo.turns if t.role == "agent" and t.text]
    assert len(agent_turns) >= 1 + len(SCRIPT) - 1  # greeting + answers (last may be cut)
    assert convo.turns[0].text.startswith("Hello, you have reached")
    assert len(convo.timings) == len(SCRIPT)
    # Speed is a benchmark figure, not a test assertion; this only proves answers arrive.
    assert all(lat < 15 for lat in latencies)
    rows = await app.telephony.wait_cdr(convo.call_id)
    assert rows[0]["line"] == "reception" and rows[0]["disposition"] == "ANSWERED"


async def test_caller_speech_stops_the_agent(
    voice_app: tuple[Appliance, list[Conversation]], engines: VoiceEngines, phone201: SipPhone
) -> None:
    _, done = voice_app
    call = await phone201.dial("100")
    await call.wait_confirmed(timeout=10)
    await wait_answer(call, 0)
    await asyncio.sleep(0.6)  # the greeting is playing: barge in
    interrupt = b"".join(engines.tts.speak("Sorry, wait a moment."))
    call.play(interrupt)
    await call.wait_played()
    await asyncio.sleep(1.0)
    await call.hangup()
    await call.wait_ended(timeout=5)
    convo = await _finished(done)
    greeting = convo.turns[0]
    assert greeting.role == "agent" and greeting.interrupted, convo.turns


async def test_missing_models_fall_back_to_the_recorded_greeting(
    cfg: Config, tmp_path, heards: Heards
) -> None:
    from dataclasses import replace

    from appliance.models.manifest import ModelError
    from appliance.server import line_handler
    from appliance.telephony.greeter import GreetAndRecord

    broken = replace(cfg, models=replace(cfg.models, dir=tmp_path / "no-models"))
    with pytest.raises(ModelError, match="callvault models install"):
        VoiceEngines.load(broken)
    assert isinstance(line_handler(broken), GreetAndRecord)


async def _until_quiet(call: SipCall, seconds: float = 1.0, timeout: float = 20.0) -> None:
    t0 = time.monotonic()
    while time.monotonic() - t0 < timeout:
        tail = np.frombuffer(call.received_pcm()[-int(seconds * 16000) :], "<i2")
        if len(tail) >= int(seconds * 8000) and int(np.abs(tail).max(initial=0)) < 500:
            return
        await asyncio.sleep(0.1)


async def test_consent_given_by_keypad_starts_recording(
    voice_app: tuple[Appliance, list[Conversation]], phone201: SipPhone
) -> None:
    app, done = voice_app
    call = await phone201.dial("104")
    await call.wait_confirmed(timeout=10)
    await wait_answer(call, 0)
    await _until_quiet(call)  # the whole consent question has been asked
    t_consent = time.time()
    await call.dial_dtmf("1")
    await asyncio.sleep(4.0)
    await call.hangup()
    await call.wait_ended(timeout=5)
    convo = await _finished(done)
    assert convo.consent == "given"
    consents = await app.db.consents(convo.call_id)
    assert [(c["decision"], c["method"]) for c in consents] == [("given", "dtmf")]
    assert consents[0]["prompt"].startswith("This call is handled by an AI assistant")
    assert consents[0]["decided_at"] >= t_consent - 1
    await app.telephony.wait_cdr(convo.call_id)
    for _ in range(100):
        recs = await app.db.recordings(convo.call_id)
        if len(recs) >= 2:
            break
        await asyncio.sleep(0.1)
    assert sorted(r["leg"] for r in recs) == ["caller", "mixed"]
    call_row = await app.db.call(convo.call_id)
    assert call_row is not None and call_row.ended_at is not None
    for rec in recs:
        # Recording began at consent, not at answer: shorter than the call by the question.
        assert rec["duration_s"] < (call_row.ended_at - call_row.started_at) - 3.0, rec


async def test_consent_refused_by_voice_records_nothing(
    voice_app: tuple[Appliance, list[Conversation]], engines: VoiceEngines, phone201: SipPhone
) -> None:
    app, done = voice_app
    call = await phone201.dial("104")
    await call.wait_confirmed(timeout=10)
    await wait_answer(call, 0)
    await _until_quiet(call)
    call.play(b"".join(engines.tts.speak("No, I do not agree.")))
    await call.wait_ended(timeout=30)  # the agent says goodbye and hangs up
    convo = await _finished(done)
    assert convo.consent == "refused"
    consents = await app.db.consents(convo.call_id)
    assert [(c["decision"], c["method"]) for c in consents] == [("refused", "speech")]
    await app.telephony.wait_cdr(convo.call_id)
    await asyncio.sleep(1.0)
    assert await app.db.recordings(convo.call_id) == []
    assert app.telephony.recordings.spool_files(convo.call_id) == []


async def test_caller_asks_for_a_person_and_is_transferred(
    voice_app: tuple[Appliance, list[Conversation]],
    engines: VoiceEngines,
    phone201: SipPhone,
    phone202: SipPhone,
) -> None:
    from appliance.telephony.audio import dominant_frequency, tone

    _, done = voice_app
    call = await phone201.dial("100")
    await call.wait_confirmed(timeout=10)
    await wait_answer(call, 0)
    await _until_quiet(call)
    call.play(b"".join(engines.tts.speak("Can I speak to a real person, please?")))
    person = await phone202.next_incoming(timeout=30)
    await person.wait_confirmed(timeout=10)
    await asyncio.sleep(0.5)
    mark = len(person.received_pcm())
    call.play(tone(600.0, 1.0))
    await asyncio.sleep(1.6)
    assert abs(dominant_frequency(person.received_pcm()[mark:]) - 600.0) < 30
    await call.hangup()
    await person.wait_ended(timeout=5)
    convo = await _finished(done)
    assert convo.transferred_to == "202"
    assert any(t.role == "caller" and "person" in t.text.lower() for t in convo.turns)


async def _post_call_idle(app: Appliance, timeout: float = 300.0) -> None:
    """Until the pipeline has worked off what earlier tests' calls left (each is transcribed
    and reported once the box idles): this test times its own call's work only."""
    t0 = time.monotonic()
    while due := await app.postcall.due():
        if time.monotonic() - t0 > timeout:
            raise AssertionError(
                f"post-call backlog not done in {timeout}s: due "
                f"{[(j['call_id'], j['stage'], j['attempts'], j['last_error']) for j in due]}; "
                f"live "
                f"{[(c.name, c.linkedid) for c in app.telephony.channels.values()]}"
            )
        await asyncio.sleep(1.0)


async def _transcribed(app: Appliance, call_id: str, timeout: float = 240.0) -> None:
    """Until the post-call pipeline has transcribed the call (it waits for the box to idle)."""
    t0 = time.monotonic()
    while time.monotonic() - t0 < timeout:
        job = await app.db.post_call_job(call_id)
        if job is not None and job["stage"] != "transcribe":
            return
        await asyncio.sleep(0.5)
    raise AssertionError(f"call {call_id} was not transcribed within {timeout}s: {job}")


@pytest.mark.timeout(900)  # on a busy box: earlier calls' post-call work, then this call's
async def test_scripted_call_leaves_a_transcript_per_leg(
    voice_app: tuple[Appliance, list[Conversation]], engines: VoiceEngines, phone201: SipPhone
) -> None:
    from appliance.privacy import Actor

    app, done = voice_app
    await _post_call_idle(app)
    speech = [b"".join(engines.tts.speak(text)) for text in SCRIPT]
    call = await phone201.dial("100")
    await call.wait_confirmed(timeout=10)
    await wait_answer(call, 0)
    await _until_quiet(call)
    for pcm in speech:
        call.play(pcm)
        await call.wait_played()
        # The answer's speed is not this test's subject (a busy box is slow): wait for it,
        # so the agent's leg holds the answer, but go on without one.
        with contextlib.suppress(AssertionError):
            await wait_answer(call, len(call.received_pcm()), timeout=40)
        await _until_quiet(call)
    await call.hangup()
    await call.wait_ended(timeout=5)
    convo = await _finished(done)
    await _transcribed(app, convo.call_id)

    qa = Actor("qa", "supervisor")
    found = await app.postcall.transcript(convo.call_id, qa, "integration test")
    assert sorted(t.leg for t in found) == ["callee", "caller"]  # one speaker each, no mix
    caller = next(t for t in found if t.leg == "caller")
    assert wer(" ".join(SCRIPT), caller.text) <= 0.15, caller.text
    assert caller.language == "en" and caller.model == "whisper-base"
    [rec] = [r for r in await app.db.recordings(convo.call_id) if r["leg"] == "caller"]
    words = [w for s in caller.segments for w in s.words]
    assert len(words) >= len(" ".join(SCRIPT).split()) - 2
    assert all(0 <= w.start <= w.end <= rec["duration_s"] + 0.05 for w in words), words
    agent = next(t for t in found if t.leg == "callee")
    assert "reached" in agent.text.lower()  # the greeting, said on the agent's leg
    matches = await app.postcall.search("appointment Tuesday", qa, "integration test")
    assert convo.call_id in {m.call_id for m in matches}
