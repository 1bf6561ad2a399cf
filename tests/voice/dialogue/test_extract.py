"""Rules for words as Whisper writes them on the phone (each case heard in the audio pass)."""

from __future__ import annotations

from datetime import time

import pytest

from appliance.voice.dialogue.calendar import MemoryCalendar
from appliance.voice.dialogue.dates import parse_when
from appliance.voice.dialogue.engine import DialogueEngine
from appliance.voice.dialogue.extract import bare_name, understand
from tests.voice.dialogue.runner import REGION, call_time, playbook

PB = playbook()
NOW = call_time(PB)


@pytest.mark.parametrize(
    ("heard", "intent"),
    [
        ("just put me through to a resectionist.", "human"),  # "receptionist" misheard
        ("Yes, put me in tomorrow morning.", "book"),
        ("Book me in for Thursday, please.", "book"),
        ("who won the football yesterday.", "question"),  # no question mark
    ],
)
def test_intents_survive_what_whisper_writes(heard: str, intent: str) -> None:
    assert intent in understand(heard, PB, NOW, REGION).intents


@pytest.mark.parametrize("heard", ["done.", "Damn.", "Here.", "them.", "for all.", "and a home."])
def test_a_hum_or_lower_case_words_are_no_name(heard: str) -> None:
    assert bare_name(heard) is None


def test_names_are_still_names() -> None:
    assert bare_name("Peter Holm.") == "Peter Holm"
    assert bare_name("Redbird.") == "Redbird"


def test_round_is_around() -> None:
    assert parse_when("Round two in the afternoon.", NOW).at == time(14, 0)
    assert parse_when("round 2 in the afternoon.", NOW).at == time(14, 0)


async def test_a_day_and_time_with_the_verb_lost_is_a_booking() -> None:
    engine = DialogueEngine(
        PB, line="booking", call_id="c", calendar=MemoryCalendar(), clock=lambda: NOW
    )
    # "Book me in for Thursday at quarter past nine, please" as Whisper heard it.
    await engine.hear("But meeting for Thursday at quarter past 9, please.")
    assert engine.task == "book" and engine.out.slots["date"] == "2026-11-26"
    misheard = DialogueEngine(
        PB, line="booking", call_id="v", calendar=MemoryCalendar(), clock=lambda: NOW
    )
    await misheard.hear("Can I vote next Monday at 1pm? This is Carl Rose.")
    assert misheard.task == "book" and misheard.out.slots["time"] == "13:00"
    question = DialogueEngine(
        PB, line="booking", call_id="q", calendar=MemoryCalendar(), clock=lambda: NOW
    )
    await question.hear("When do you close on Friday?")
    assert question.task is None and question.out.answered == ["hours"]
