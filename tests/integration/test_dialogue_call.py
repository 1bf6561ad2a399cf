"""A call to the playbook line through the real Asterisk: a desk phone speaks Piper audio, the
agent books, and the booking shows up in the calendar, the post-call report and the admin UI's
call detail. Plus three scripted callers spoken by Piper and heard by Whisper (no Asterisk)."""

from __future__ import annotations

import asyncio
import re
from collections.abc import AsyncIterator
from dataclasses import replace
from datetime import datetime

import pytest
import pytest_asyncio
from litestar.testing import AsyncTestClient

from appliance.admin.app import create_app
from appliance.config import Config
from appliance.server import Appliance
from appliance.telephony.sip import PjRuntime, SipPhone
from appliance.voice.agent import Conversation, VoiceAgent
from appliance.voice.dialogue.calendar import StoreCalendar
from appliance.voice.dialogue.dates import parse_when
from appliance.voice.engines import VoiceEngines
from appliance.voice.report import default_writer
from bench.dialogue import heard
from tests.admin.test_ui import _logged_in
from tests.integration.test_voice import _finished, _until_quiet, wait_answer
from tests.voice.dialogue.runner import load_callers, run_text

pytestmark = pytest.mark.asyncio(loop_scope="session")

LINE = "105"


@pytest.fixture(scope="session")
def dialogue_engines(cfg: Config) -> VoiceEngines:
    return VoiceEngines.load(cfg)


def _spelling(cfg: Config) -> Config:
    """The booking line with `spell_names` on: the agent asks the caller to spell the name."""
    lines = tuple(
        replace(ln, playbook=replace(ln.playbook, spell_names=True))
        if ln.name == "booking" and ln.playbook is not None
        else ln
        for ln in cfg.lines
    )
    return replace(cfg, lines=lines)


@pytest_asyncio.fixture(loop_scope="session", params=["heard", "spelt"])
async def booking_app(
    request: pytest.FixtureRequest,
    cfg: Config,
    runtime: PjRuntime,
    dialogue_engines: VoiceEngines,
    app: Appliance,
) -> AsyncIterator[tuple[Appliance, list[Conversation], bool]]:
    spelt = request.param == "spelt"
    done: list[Conversation] = []
    previous = app.agent.handler
    app.agent.handler = VoiceAgent(
        _spelling(cfg) if spelt else cfg, dialogue_engines, on_done=done.append,
        recorder=app.telephony,
    )  # fmt: skip
    try:
        yield app, done, spelt
    finally:
        app.agent.handler = previous


@pytest.mark.timeout(180)
async def test_a_booking_by_phone_reaches_calendar_report_and_admin(
    booking_app: tuple[Appliance, list[Conversation], bool],
    dialogue_engines: VoiceEngines,
    phone201: SipPhone,
    cfg: Config,
) -> None:
    app, done, spelt = booking_app
    line = cfg.line_by_name("booking")
    assert line is not None and line.playbook is not None
    # Heard as said, a Swedish name is often another one over 8 kHz ("Anna Burke"): without
    # spelling the caller is an English name Whisper knows; spelt, the name is Swedish.
    name = "Anna Berg" if spelt else "John Smith"
    hour = 11 if spelt else 10  # each variant its own free time (the store is the session's)
    say = [
        f"Hi, I would like to book an appointment for next Tuesday at {hour}. My name is {name}.",
        # Asked to spell it: a pause between first name and surname must not end the turn.
        *(["Alfa November November Alfa. Bravo Echo Romeo Golf."] if spelt else []),
        "Yes, that's right.",
        "No, thank you.",
    ]
    call = await phone201.dial(LINE)
    await call.wait_confirmed(timeout=10)
    await wait_answer(call, 0)
    await _until_quiet(call)
    for text in say:
        if not call.is_active:
            break
        mark = len(call.received_pcm())
        call.play(b"".join(dialogue_engines.tts.speak(text)))
        await call.wait_played()
        await wait_answer(call, mark, timeout=20)
        await _until_quiet(call)
    # The agent said goodbye and hung up itself.
    try:
        await call.wait_ended(timeout=10)
    except TimeoutError:
        await call.hangup()
        convo = await _finished(done)
        raise AssertionError(f"the agent did not end the call: {convo.turns}") from None
    convo = await _finished(done)
    agent = [t.text for t in convo.turns if t.role == "agent"]
    assert convo.dialogue is not None, convo.turns
    assert convo.dialogue["task"] == "book" and convo.dialogue["status"] == "done", agent
    assert spelt == any("spell your name" in a for a in agent), agent
    day = parse_when("next Tuesday", datetime.now(line.playbook.zone)).day
    assert convo.dialogue["slots"] == {"name": name, "date": str(day), "time": f"{hour}:00"}

    # The calendar: the booking, with the call, details sealed.
    rows = await app.db.bookings_for_call(convo.call_id)
    assert len(rows) == 1 and name.split(maxsplit=1)[0].encode() not in rows[0].details_enc
    booking = await StoreCalendar(app.db, app.telephony.privacy).read(rows[0], line.playbook.zone)
    assert (booking.start.date(), booking.start.hour, booking.start.minute) == (day, hour, 0)
    assert booking.details["name"] == name

    # The report: written from the slots (no LLM), once the CDR is in.
    await app.telephony.wait_cdr(convo.call_id)
    result = await default_writer(cfg, app.db, app.telephony.privacy).report(convo.call_id)
    assert result.status == "ok" and result.report is not None, result.errors
    assert result.report["appointment"] == {
        "day": "Tuesday",
        "date": str(day),
        "time": f"{hour}:00",
    }
    assert result.report["caller_name"] == name and result.report["purpose"] == "appointment"

    # The admin UI's call detail: the time without a purpose, who booked with one.
    async with AsyncTestClient(app=create_app(cfg), base_url="https://testserver.local") as c:
        await _logged_in(c, cfg, "dora-spelt" if spelt else "dora", "dpo")
        page = await c.get(f"/calls/{convo.call_id}")
        assert page.status_code == 200
        section = re.search(r'<section class="card" id="bookings">(.*?)</section>', page.text, re.S)
        assert section and f"{day} {hour}:00" in section.group(1)
        assert name not in section.group(1)
        page = await c.get(f"/calls/{convo.call_id}?purpose=call+review")
        assert name in page.text and "appointment" in page.text


@pytest.mark.parametrize("caller_id", ["opt_out_stop_calling", "wants_human", "question_hours"])
async def test_scripted_callers_spoken_by_piper(
    caller_id: str, dialogue_engines: VoiceEngines, cfg: Config
) -> None:
    caller = next(c for c in load_callers() if c.id == caller_id)
    line = cfg.line_by_name("booking")
    assert line is not None and line.playbook is not None
    words = await asyncio.to_thread(heard, dialogue_engines, caller)
    result = await run_text(caller, line.playbook, heard=words)
    assert result.ok, (result.problems, words, result.agent)
    assert result.invented == []
