"""Names spelt by the caller: read into letters, and the engine's spelling step."""

from __future__ import annotations

from dataclasses import replace
from datetime import datetime

import pytest
from hypothesis import given
from hypothesis import strategies as st

from appliance.errors import ConfigError
from appliance.voice.dialogue.calendar import MemoryCalendar
from appliance.voice.dialogue.engine import DialogueEngine
from appliance.voice.dialogue.playbook import PlaybookConfig, parse_playbook
from appliance.voice.dialogue.spelling import NATO, looks_spelt, spelled_name
from tests.voice.dialogue.runner import call_time, playbook

PB = replace(playbook(), spell_names=True)
WORD = {letter: word.capitalize() for word, letter in reversed(NATO.items())}
WORD["x"] = "X-ray"


@pytest.mark.parametrize(
    ("said", "name"),
    [
        ("Alfa November November Alfa. Bravo Echo Romeo Golf.", "Anna Berg"),
        ("alpha november november alpha. bravo echo romeo golf", "Anna Berg"),
        ("Lima Alfa Romeo Sierra. Oscar with dots, Sierra Tango.", "Lars Öst"),
        ("Hotel Alfa November November Alfa; Sierra Juliett Östen.", "Hanna Sjö"),
        ("Alfa with a ring, Kilo Echo.", "Åke"),
        ("Adam Niklas Niklas Adam. Bertil Erik Rudolf Gustav.", "Anna Berg"),  # Swedish
        ("A N N A. B E R G.", "Anna Berg"),
        ("B as in Bravo, E, R, G for Golf", "Berg"),
        ("Uniform double Lima Alfa, surname Delta Alfa Hotel Lima", "Ulla Dahl"),
        ("It's Kilo India Mike, dash, Lima Echo Echo.", "Kim-Lee"),
    ],
)
def test_a_spelling_is_read_into_the_name(said: str, name: str) -> None:
    assert spelled_name(said) == name


@pytest.mark.parametrize(
    "said",
    ["Yes.", "It's Anna Berg.", "No, Thursday.", "Here.", "", "with dots Alfa", "Bravo"],
)
def test_words_that_are_no_spelling_are_not_a_name(said: str) -> None:
    assert spelled_name(said) is None


def test_a_name_of_swedish_alphabet_words_is_not_taken_for_a_spelling() -> None:
    assert looks_spelt("Alfa November November Alfa")
    assert not looks_spelt("Erik Johan Olof")  # three names, not E, J, O
    assert not looks_spelt("Anna Berg")


@given(
    st.lists(
        st.text(alphabet="abcdefghijklmnopqrstuvwxyz", min_size=2, max_size=9),
        min_size=1,
        max_size=2,
    )
)
def test_any_name_spelt_in_the_alphabet_reads_back(parts: list[str]) -> None:
    said = ". ".join(" ".join(WORD[c] for c in part) for part in parts) + "."
    assert spelled_name(said) == " ".join(p.capitalize() for p in parts)


# ---- the engine's spelling step (the playbook's spell_names)
def engine(pb: PlaybookConfig = PB) -> DialogueEngine:
    now: datetime = call_time(pb)
    return DialogueEngine(
        pb, line="booking", call_id="c", calendar=MemoryCalendar(), clock=lambda: now
    )


async def test_a_heard_name_is_asked_spelt_and_the_spelt_one_is_kept() -> None:
    e = engine()
    reply = await e.hear("I'd like to book next Tuesday at 9. This is Anna Burt.")
    assert "spell your name" in reply.text and e.expecting == "spelling"
    assert "name" not in e.out.slots
    reply = await e.hear("Alfa November November Alfa. Bravo Echo Romeo Golf.")
    assert reply.text.startswith("Let me check: an appointment for Anna Berg on Tuesday")
    assert e.out.slots["name"] == "Anna Berg" and e.heard_name is None
    await e.hear("Yes.")
    assert e.out.status == "done"


async def test_a_name_spelt_straight_away_is_not_asked_again() -> None:
    e = engine()
    await e.hear("I want to book an appointment next Tuesday at 9.")
    assert e.expecting == "name"
    reply = await e.hear("Tango Oscar Victor Echo. Romeo Alfa Sierra Kilo.")
    assert e.out.slots["name"] == "Tove Rask"
    assert reply.text.startswith("Let me check: an appointment for Tove Rask")


async def test_words_that_are_no_name_are_answered_with_the_spelling_question() -> None:
    e = engine()
    await e.hear("I want to book an appointment on Wednesday.")
    reply = await e.hear("Damn.")  # Whisper's word for a hum
    assert "Sorry, I did not catch your name. Could you spell" in reply.text
    assert e.expecting == "spelling" and e.misses == 1
    reply = await e.hear("Here.")  # not a spelling either: the second failed attempt
    assert reply.action == "transfer" and e.out.status == "transferred"


async def test_a_changed_name_is_spelt_again() -> None:
    e = engine()
    await e.hear("Book me in on Thursday at 4 pm, please. The name is Anna Holm.")
    await e.hear("Alfa November November Alfa. Hotel Oscar Lima Mike.")
    reply = await e.hear("No, the name is Anne Holm.")
    assert e.expecting == "spelling" and "spell" in reply.text
    reply = await e.hear("Alfa November November Echo. Hotel Oscar Lima Mike.")
    assert e.out.slots["name"] == "Anne Holm" and "Anne Holm" in reply.text


async def test_without_spell_names_the_heard_name_is_kept() -> None:
    e = engine(replace(PB, spell_names=False))
    reply = await e.hear("I'd like to book next Tuesday at 9. This is Anna Burt.")
    assert "Anna Burt" in reply.text and e.expecting == ""


async def test_the_engine_says_what_it_expects() -> None:
    e = engine()
    assert e.expecting == ""
    await e.hear("I'd like to book an appointment. This is Anna Berg.")
    assert e.expecting == "spelling"
    await e.hear("Alfa November November Alfa. Bravo Echo Romeo Golf.")
    assert e.expecting == "when"  # which day
    m = engine()
    await m.hear("Can you take a message? It's Bravo Oscar, Echo Kilo.")
    await m.hear("Alfa Lima Lima Alfa. Bravo Oscar.")  # spelt on being asked: Alla Bo
    await m.hear("070 123 45 67.")
    assert m.expecting == "words"  # the message itself


def test_spell_names_is_a_boolean_in_the_playbook() -> None:
    raw = {"business": "B", "hours": {"mon": "08:00-17:00"}, "spell_names": True}
    assert parse_playbook(raw, "lines[0].playbook").spell_names
    assert not parse_playbook({**raw, "spell_names": False}, "p").spell_names
    with pytest.raises(ConfigError, match=r"lines\[0\]\.playbook\.spell_names"):
        parse_playbook({**raw, "spell_names": "yes"}, "lines[0].playbook")
