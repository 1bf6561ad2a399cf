"""A call to the playbook line through the real Asterisk: a desk phone speaks Piper audio, the
agent books, and the booking shows up in the calendar, the post-call report and the admin UI's
call detail. Plus three scripted callers spoken by Piper and heard by Whisper (no Asterisk)."""

from __future__ import annotations

import asyncio
import re
from collections.abc import AsyncIterator
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


@pytest_asyncio.fixture(loop_scope="session")
async def booking_app(
    cfg: Config, runtime: PjRuntime, dialogue_engines: VoiceEngines, app: Appliance
) -> AsyncIterator[tuple[Appliance, list[Conversation]]]:
    done: list[Conversation] = []
    previous = app.agent.handler
    app.agent.handler = VoiceAgent(
        cfg, dialogue_engines, on_done=done.append, recorder=app.telephony
    )
    try:
        yield app, done
    finally:
        app.agent.handler = previous


@pytest.mark.timeout(180)
async def test_a_booking_by_phone_reaches_calendar_report_and_admin(
    booking_app: tuple[Appliance, list[Conversation]],
    dialogue_engines: VoiceEngines,
    phone201: SipPhone,
    cfg: Config,
) -> None:
    app, done = booking_app
    line = cfg.line_by_name("booking")
    assert line is not None and line.playbook is not None
    say = [
        "Hi, I would like to book an appointment for next Tuesday at 10. My name is Anna Berg.",
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
    await call.wait_ended(timeout=10)
    convo = await _finished(done)
    agent = [t.text for t in convo.turns if t.role == "agent"]
    assert convo.dialogue is not None, convo.turns
    assert convo.dialogue["task"] == "book" and convo.dialogue["status"] == "done", agent
    day = parse_when("next Tuesday", datetime.now(line.playbook.zone)).day
    assert convo.dialogue["slots"] == {"name": "Anna Berg", "date": str(day), "time": "10:00"}

    # The calendar: the booking, with the call, details sealed.
    rows = await app.db.bookings_for_call(convo.call_id)
    assert len(rows) == 1 and b"Anna" not in rows[0].details_enc
    booking = await StoreCalendar(app.db, app.telephony.privacy).read(rows[0], line.playbook.zone)
    assert (booking.start.date(), booking.start.hour, booking.start.minute) == (day, 10, 0)
    assert booking.details["name"] == "Anna Berg"

    # The report: written from the slots (no LLM), once the CDR is in.
    await app.telephony.wait_cdr(convo.call_id)
    result = await default_writer(cfg, app.db, app.telephony.privacy).report(convo.call_id)
    assert result.status == "ok" and result.report is not None, result.errors
    assert result.report["appointment"] == {"day": "Tuesday", "date": str(day), "time": "10:00"}
    assert result.report["caller_name"] == "Anna Berg" and result.report["purpose"] == "appointment"

    # The admin UI's call detail: the time without a purpose, who booked with one.
    async with AsyncTestClient(app=create_app(cfg), base_url="https://testserver.local") as c:
        await _logged_in(c, cfg, "dora", "dpo")
        page = await c.get(f"/calls/{convo.call_id}")
        assert page.status_code == 200
        section = re.search(r'<section class="card" id="bookings">(.*?)</section>', page.text, re.S)
        assert section and f"{day} 10:00" in section.group(1)
        assert "Anna Berg" not in section.group(1)
        page = await c.get(f"/calls/{convo.call_id}?purpose=call+review")
        assert "Anna Berg" in page.text and "appointment" in page.text


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
