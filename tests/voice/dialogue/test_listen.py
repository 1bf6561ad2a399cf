"""Hearing a turn for what the engine expects: prompts, and spellings decoded by Whisper
constrained to the spelling alphabet (with the CPU profile's real models)."""

from __future__ import annotations

import threading
from collections.abc import Iterator
from dataclasses import dataclass, field

import numpy as np
import numpy.typing as npt
import pytest
from piper import SynthesisConfig

from appliance.models.commands import active_profile
from appliance.models.manifest import load_manifest
from appliance.models.store import ModelStore
from appliance.voice.audio import Upsampler, to_call_pcm
from appliance.voice.dialogue import listen
from appliance.voice.dialogue.spelling import spelled_name
from appliance.voice.stt import Stt, Transcription
from appliance.voice.tts import Tts
from tests.voice.dialogue.runner import dev_config, playbook


@dataclass
class FakeStt:
    text: str
    prompts: list[str | None] = field(default_factory=list)

    def transcribe(
        self, audio: npt.NDArray[np.float32], language: str | None = "", *,
        urgent: bool = True, abandoned: threading.Event | None = None,
        initial_prompt: str | None = None,
    ) -> Transcription:  # fmt: skip
        self.prompts.append(initial_prompt)
        return Transcription(self.text, "en", 1.0)


@dataclass
class FakeSpeller:
    text: str
    calls: int = 0
    near: str | None = None

    def __call__(
        self, audio: npt.NDArray[np.float32], *, parts: int = 2, near: str | None = None,
        abandoned: threading.Event | None = None,
    ) -> Transcription:  # fmt: skip
        self.calls += 1
        self.near = near
        return Transcription(self.text, "en", 1.0)


AUDIO = np.zeros(16000, np.float32)


def test_prompts_carry_days_and_times_or_the_sheet_and_nothing_else() -> None:
    pb = playbook()
    assert "Thursday" in (listen.prompt_for("when", pb) or "")
    assert listen.prompt_for("words", pb) == pb.sheet_text()
    for expecting in ("", "name", "spelling"):
        assert listen.prompt_for(expecting, pb) is None


def test_a_spelling_turn_goes_to_the_speller_and_falls_back_to_the_words() -> None:
    stt, speller = FakeStt("Alpha, November, Anna."), FakeSpeller("Alfa November November Alfa.")
    heard = listen.hear(stt, AUDIO, "en", "spelling", near="Anna", speller=speller)  # type: ignore[arg-type]
    assert heard.text == "Alfa November November Alfa." and stt.prompts == [None]
    assert speller.near == "Anna"
    speller.text = ""  # not a spelling after all: what was said instead
    heard = listen.hear(stt, AUDIO, "en", "spelling", speller=speller)  # type: ignore[arg-type]
    assert heard.text == "Alpha, November, Anna."


def test_words_without_an_alphabet_word_never_reach_the_speller() -> None:
    stt, speller = FakeStt("No, it is Anna."), FakeSpeller("Alfa Alfa Alfa.")
    heard = listen.hear(stt, AUDIO, "en", "spelling", speller=speller)  # type: ignore[arg-type]
    assert heard.text == "No, it is Anna." and speller.calls == 0
    stt.text = ""  # nothing plain (a whisper, noise): the speller may still hear a spelling
    assert listen.hear(stt, AUDIO, "en", "spelling", speller=speller).text == "Alfa Alfa Alfa."  # type: ignore[arg-type]


def test_a_name_answered_with_a_spelling_is_heard_again_as_one() -> None:
    speller = FakeSpeller("Tango Oscar Victor Echo. Romeo Alfa Sierra Kilo.")
    stt = FakeStt("Tango Oscar Victor Eko Romeo Alpha Sierra Kilo")
    heard = listen.hear(stt, AUDIO, "en", "name", speller=speller)  # type: ignore[arg-type]
    assert heard.text == speller.text
    stt = FakeStt("It's Anna Berg.")
    heard = listen.hear(stt, AUDIO, "en", "name", speller=speller)  # type: ignore[arg-type]
    assert heard.text == "It's Anna Berg." and speller.calls == 1


def test_the_prompt_reaches_whisper() -> None:
    stt = FakeStt("Round two in the afternoon.")
    listen.hear(stt, AUDIO, "en", "when", prompt="days")
    listen.hear(stt, AUDIO, "en", "")
    assert stt.prompts == ["days", None]


def test_a_spelling_is_complete_with_first_name_and_surname() -> None:
    assert listen.spelling_complete("Alfa November November Alfa. Bravo Echo Romeo Golf.")
    assert not listen.spelling_complete("Alfa November November Alfa.")
    assert not listen.spelling_complete("Yes.")


# ---- the decoder, on the CPU profile's Whisper, with Piper's voice
@pytest.fixture(scope="module")
def models() -> Iterator[tuple[Stt, Tts]]:
    # `make test` installs the models first: a missing one fails here, it never skips.
    cfg = dev_config()
    manifest = load_manifest()
    profile = manifest.profile(active_profile(cfg, manifest))
    store = ModelStore(cfg.models.dir, manifest)
    stt = Stt(store.path(profile["stt_live"].name), threads=2)
    voice = profile["tts"]
    onnx = next(f.name for f in voice.files if f.name.endswith(".onnx"))
    yield stt, Tts(store.file(voice.name, onnx), threads=2)


def spoken(tts: Tts, text: str) -> npt.NDArray[np.float32]:
    """Piper without its sampling noise: the same audio on every run."""
    quiet = SynthesisConfig(noise_scale=0.0, noise_w_scale=0.0)
    pcm = b"".join(
        to_call_pcm(c.audio_float_array, c.sample_rate)
        for c in tts.voice.synthesize(text, syn_config=quiet)
    )
    return Upsampler()(pcm + bytes(3200))


@pytest.mark.parametrize(
    ("said", "name"),
    [
        ("Alfa November November Alfa. Bravo Echo Romeo Golf.", "Anna Berg"),
        ("Lima India Sierra Alfa. November Oscar Romeo Delta.", "Lisa Nord"),
        ("Sierra Alfa Romeo Alfa. Lima India November Delta.", "Sara Lind"),
        ("Lima Alfa Romeo Sierra. Oscar with dots, Sierra Tango.", "Lars Öst"),
        ("Papa Echo Romeo. Hotel Alfa Lima Lima.", "Per Hall"),
    ],
)
def test_a_spelt_name_is_heard_letter_for_letter(
    models: tuple[Stt, Tts], said: str, name: str
) -> None:
    speller = listen.speller_for(models[0])
    assert speller is not None
    heard = speller(spoken(models[1], said), near=name)
    assert spelled_name(heard.text) == name, heard.text
    # The break, without the name as first heard, where Whisper expects the stop.
    assert spelled_name(speller(spoken(models[1], said)).text) == name


@pytest.mark.parametrize("said", ["Yes, that's right.", "Could you say that again?"])
def test_words_that_are_no_spelling_are_not_forced_into_one(
    models: tuple[Stt, Tts], said: str
) -> None:
    speller = listen.speller_for(models[0])
    assert speller is not None
    assert speller(spoken(models[1], said)).text == ""


def test_a_sentence_said_when_a_spelling_was_asked_stays_a_sentence(
    models: tuple[Stt, Tts],
) -> None:
    # Forced into the alphabet this came out "Alfa Alfa Alfa Alfa Alfa Alfa. Alfa Alfa…".
    said = "Hi, I would like to book an appointment for next Tuesday morning, please."
    stt = models[0]
    heard = listen.hear(
        stt, spoken(models[1], said), "en", "spelling", speller=listen.speller_for(stt)
    )
    assert "Alfa" not in heard.text and "Tuesday" in heard.text, heard.text
