"""Turn-taking logic without models: endpointing, sentence cuts, consent answers."""

import pytest

from appliance.voice.agent import consent_from_speech, wants_a_human
from appliance.voice.llm import split_point
from appliance.voice.vad import WINDOW_MS, Endpointer


def feed(ep: Endpointer, pattern: str) -> list[str]:
    """'#' = a speech window, '.' = a silent one; returns the events in order."""
    out = []
    for ch in pattern:
        ev = ep.update(0.9 if ch == "#" else 0.05)
        if ev:
            out.append(ev)
    return out


def test_turn_starts_after_sustained_speech_and_ends_after_silence() -> None:
    ep = Endpointer()
    start = "#" * (ep.start_ms // WINDOW_MS)
    silence = "." * (ep.end_ms // WINDOW_MS)
    assert feed(ep, "#." + start + "#####" + silence) == ["start", "pause", "end"]
    assert ep.last_silence_ms == ep.end_ms


def test_a_short_pause_inside_a_sentence_does_not_end_the_turn() -> None:
    ep = Endpointer()
    events = feed(ep, "#" * 10 + "....." + "#" * 10)
    assert events == ["start", "pause", "resume"]
    assert ep.in_speech


def test_a_complete_sentence_ends_the_turn_sooner() -> None:
    ep = Endpointer()
    feed(ep, "#" * 10 + ".")
    ep.sentence_complete = True  # the speculative transcript ended with "."
    events = feed(ep, "." * (ep.end_ms_complete // WINDOW_MS))
    assert events == ["end"]
    assert ep.last_silence_ms == ep.end_ms_complete < ep.end_ms


@pytest.mark.parametrize(
    ("text", "first", "cut"),
    [
        ("Hello there. How are", True, 12),
        ("It costs 2.30 dollars", True, None),
        ("Dr. Smith is in today", True, None),
        ("Sure, I can book that for you, what day", True, 30),
        ("Sure, I can book that for you, what day", False, None),
        ("Yes", True, None),
    ],
)
def test_sentence_cuts(text: str, first: bool, cut: int | None) -> None:
    assert split_point(text, first) == cut


@pytest.mark.parametrize(
    ("said", "decision"),
    [
        ("Yes.", "given"),
        ("Yeah, sure.", "given"),
        ("Okay, go ahead.", "given"),
        ("No, I do not agree.", "refused"),
        ("No.", "refused"),
        ("I don't want that.", "refused"),
        ("What did you say?", None),
        ("", None),
    ],
)
def test_consent_from_speech(said: str, decision: str | None) -> None:
    assert consent_from_speech(said) == decision


@pytest.mark.parametrize(
    ("said", "wanted"),
    [
        ("Can I speak to a real person, please?", True),
        ("Could you transfer me to the receptionist?", True),
        ("I want to talk to someone.", True),
        ("I would like to book an appointment.", False),
        ("A person told me you open at eight.", False),
    ],
)
def test_asking_for_a_human(said: str, wanted: bool) -> None:
    assert wants_a_human(said) is wanted
