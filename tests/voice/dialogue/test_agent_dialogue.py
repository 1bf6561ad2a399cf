"""The voice agent on a playbook line: the engine answers, books, hands over and hangs up."""

from __future__ import annotations

import asyncio
import threading
import time
from dataclasses import replace
from datetime import datetime

import numpy as np
import numpy.typing as npt
import pytest

from appliance.config import Config
from appliance.voice import agent as agent_mod
from appliance.voice.agent import Conversation, VoiceAgent
from appliance.voice.dialogue import listen
from appliance.voice.dialogue.calendar import MemoryCalendar
from appliance.voice.dialogue.dates import parse_when
from appliance.voice.stt import Transcription
from tests.voice.dialogue.runner import dev_config
from tests.voice.test_speculation import EnergyVad, FakeCall, FakeEngines, feed, quiet, speech


class ScriptedStt:
    """One scripted utterance per caller turn, in order."""

    def __init__(self, said: list[str]) -> None:
        self.said = list(said)
        self.heard: list[str] = []
        self.prompts: list[str | None] = []

    def transcribe(
        self, audio: npt.NDArray[np.float32], language: str | None = "", *,
        urgent: bool = True, abandoned: threading.Event | None = None,
        initial_prompt: str | None = None,
    ) -> Transcription:  # fmt: skip
        time.sleep(0.02)
        text = self.said.pop(0) if self.said else ""
        self.heard.append(text)
        self.prompts.append(initial_prompt)
        return Transcription(text, "en", len(audio) / 16000)


class HangupCall(FakeCall):
    def __init__(self) -> None:
        super().__init__()
        self.hung_up = False

    async def hangup(self, status_code: int = 0) -> None:
        self.hung_up = True
        self.frames_in.put_nowait(None)


def booking_cfg(**playbook: object) -> Config:
    line = dev_config().line_by_name("booking")
    assert line is not None and line.playbook is not None
    pb = replace(line.playbook, **playbook)  # type: ignore[arg-type]
    return Config(lines=(replace(line, name="l", transfer_to="", playbook=pb),))


async def converse(
    cfg: Config,
    said: list[str],
    pattern: list[str],
    monkeypatch: pytest.MonkeyPatch,
    stt: ScriptedStt | None = None,
) -> tuple[Conversation, HangupCall, MemoryCalendar]:
    monkeypatch.setattr(agent_mod, "SileroVad", EnergyVad)
    stt = stt or ScriptedStt(said)
    engines = FakeEngines(stt)  # type: ignore[arg-type]
    engines.llm.used.llama = object()  # type: ignore[attr-defined]
    calendar = MemoryCalendar()
    done: list[Conversation] = []
    agent = VoiceAgent(cfg, engines, on_done=done.append, calendar=calendar)  # type: ignore[arg-type]
    call = HangupCall()
    task = asyncio.create_task(agent(call))  # type: ignore[arg-type]
    for p in pattern:
        if call.hung_up:
            break
        await feed(call, p)
    if not call.hung_up:
        call.frames_in.put_nowait(None)
    await asyncio.wait_for(task, 10)
    return done[0], call, calendar


async def test_a_caller_books_and_the_agent_hangs_up(monkeypatch: pytest.MonkeyPatch) -> None:
    said = ["I'd like to book an appointment next Tuesday at 9. This is Anna Berg.", "Yes.", "No."]
    turn = quiet(1.0) + speech(0.8) + quiet(2.5)
    convo, call, calendar = await converse(booking_cfg(), said, [turn] * 3, monkeypatch)
    agent = [t.text for t in convo.turns if t.role == "agent"]
    assert agent[0] == "Hello, you have reached Callvault Dental. How can I help?"
    assert agent[1].startswith("Let me check: an appointment for Anna Berg on Tuesday")
    assert agent[2].startswith("You are booked on Tuesday") and agent[3].endswith("Goodbye.")
    assert call.hung_up
    day = parse_when("next Tuesday", datetime.now(calendar_zone())).day
    assert convo.dialogue is not None and convo.dialogue["status"] == "done"
    assert convo.dialogue["slots"] == {"name": "Anna Berg", "date": str(day), "time": "09:00"}
    assert [(b.start.date(), b.start.hour, b.details["name"]) for b in calendar.bookings] == [
        (day, 9, "Anna Berg")
    ]
    assert len(convo.timings) == 3 and all(t.answer_ms < 5000 for t in convo.timings)


async def test_the_agent_hears_each_turn_for_what_the_engine_asked(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    said = [
        "I'd like to book an appointment. It's Anna Burt.",
        "Alfa November November Alfa. Bravo Echo Romeo Golf.",
        "Next Tuesday at 9.",
        "Yes.",
        "No.",
    ]
    stt = ScriptedStt(said)
    turn = quiet(1.0) + speech(0.8) + quiet(2.5)
    convo, call, calendar = await converse(
        booking_cfg(spell_names=True), said, [turn] * 5, monkeypatch, stt
    )
    agent = [t.text for t in convo.turns if t.role == "agent"]
    assert "spell your name" in agent[1] and agent[2] == "Which day would suit you?"
    # The day was heard with the day-and-time prompt, nothing else with any.
    assert stt.prompts == [None, None, listen.WHEN_PROMPT, None, None]
    assert convo.dialogue is not None and convo.dialogue["slots"]["name"] == "Anna Berg"
    assert [b.details["name"] for b in calendar.bookings] == ["Anna Berg"] and call.hung_up


def calendar_zone():  # type: ignore[no-untyped-def]
    line = dev_config().line_by_name("booking")
    assert line is not None and line.playbook is not None
    return line.playbook.zone


async def test_silence_is_asked_about_then_handed_over(monkeypatch: pytest.MonkeyPatch) -> None:
    cfg = booking_cfg(silence_s=2.0)
    convo, call, _ = await converse(cfg, [], [quiet(7.0)], monkeypatch)
    agent = [t.text for t in convo.turns if t.role == "agent"]
    assert agent[1] == "Are you still there?"
    assert agent[2].startswith("I am sorry I could not help")  # no transfer extension here
    assert call.hung_up
    assert convo.dialogue is not None and convo.dialogue["status"] == "abandoned"


async def test_closing_the_agent_stops_its_calendar_work() -> None:
    class Closing(MemoryCalendar):
        closed = False

        async def aclose(self) -> None:
            self.closed = True

    calendar = Closing()
    agent = VoiceAgent(booking_cfg(), FakeEngines(ScriptedStt([])), calendar=calendar)  # type: ignore[arg-type]
    await agent.aclose()
    assert calendar.closed
    await VoiceAgent(
        booking_cfg(), FakeEngines(ScriptedStt([])), calendar=MemoryCalendar()
    ).aclose()  # type: ignore[arg-type]
