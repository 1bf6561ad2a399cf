"""Which Whisper model hears a line and which voice speaks on it (no models loaded)."""

from pathlib import Path

import pytest

from appliance.config import LineConfig
from appliance.models.manifest import (
    MANIFEST_PATH,
    Manifest,
    ModelEntry,
    ModelError,
    load_manifest,
)
from appliance.voice.languages import instruction, plan_line

MODELS = """
[profiles.cpu]
stt_live = "tiny-en"
stt_live_multi = "base"
stt_batch = "base"
llm = "lm"
tts = "voice-en"
vad = "vad"

[profiles.english_only]
stt_live = "tiny-en"
stt_batch = "base"
llm = "lm"
tts = "voice-en"
vad = "vad"

[profiles.gpu]
stt_live = "base"
stt_batch = "base"
llm = "lm"
tts = "voice-en"
vad = "vad"
"""


def entry(name: str, role: str, language: str) -> str:
    return f"""
[[models]]
name = "{name}"
role = "{role}"
language = "{language}"
format = "x"
licence = "MIT"
devices = ["cpu"]
packages = []
files = []
"""


def manifest(tmp_path: Path, *extra: str, profiles: str = MODELS) -> Manifest:
    path = tmp_path / "manifest.toml"
    path.write_text(
        profiles
        + entry("tiny-en", "stt", "en")
        + entry("base", "stt", "multi")
        + entry("lm", "llm", "en")
        + entry("voice-en", "tts", "en")
        + entry("vad", "vad", "multi")
        + "".join(extra)
    )
    return load_manifest(path)


def line(language: str = "en", voice: str = "") -> LineConfig:
    return LineConfig(name="l", extension="100", language=language, voice=voice)


def everything(_: ModelEntry) -> bool:
    return True


def plan(m: Manifest, ln: LineConfig, profile: str = "cpu", installed=everything):
    return plan_line(m, m.profile(profile), ln, installed)


def test_english_lines_hear_with_the_english_only_model(tmp_path: Path) -> None:
    p = plan(manifest(tmp_path), line("en"))
    assert (p.language, p.stt, p.voice, p.problems) == ("en", "tiny-en", "voice-en", ())


def test_other_languages_and_auto_hear_with_the_multilingual_model(tmp_path: Path) -> None:
    m = manifest(tmp_path, entry("voice-sv", "tts", "sv"))
    sv = plan(m, line("sv"))
    assert (sv.language, sv.stt, sv.voice, sv.problems) == ("sv", "base", "voice-sv", ())
    auto = plan(m, line("auto"))
    # "auto": detected per call; until then the default voice.
    assert (auto.language, auto.stt, auto.voice, auto.problems) == ("auto", "base", "voice-en", ())


def test_a_multilingual_live_model_serves_every_language(tmp_path: Path) -> None:
    m = manifest(tmp_path, entry("voice-sv", "tts", "sv"))
    assert plan(m, line("sv"), profile="gpu").stt == "base"


def test_a_language_without_a_voice_falls_back_to_english_and_says_why(tmp_path: Path) -> None:
    p = plan(manifest(tmp_path), line("sv"))
    assert (p.language, p.stt, p.voice) == ("en", "tiny-en", "voice-en")
    (problem,) = p.problems
    assert "line l" in problem and "no Piper voice for language 'sv'" in problem
    assert "speaks English" in problem


def test_an_uninstalled_voice_is_named_with_the_command_to_install_it(tmp_path: Path) -> None:
    m = manifest(tmp_path, entry("voice-sv", "tts", "sv"))
    p = plan(m, line("sv"), installed=lambda e: e.name != "voice-sv")
    assert p.language == "en" and p.voice == "voice-en"
    assert "voice-sv is not installed (run `callvault models install voice-sv`)" in p.problems[0]


def test_an_unknown_configured_voice_is_named(tmp_path: Path) -> None:
    p = plan(manifest(tmp_path), line("sv", voice="piper-sv-se-nst"))
    assert (
        p.language == "en"
        and "voice 'piper-sv-se-nst' is not in the model manifest" in (p.problems[0])
    )


def test_the_configured_voice_wins_and_a_language_mismatch_is_reported(tmp_path: Path) -> None:
    m = manifest(tmp_path, entry("voice-sv", "tts", "sv"), entry("voice-de", "tts", "de"))
    p = plan(m, line("sv", voice="voice-de"))
    assert (p.language, p.voice) == ("sv", "voice-de")
    assert "speaks 'de', not the line's language 'sv'" in p.problems[0]


def test_no_multilingual_model_means_english(tmp_path: Path) -> None:
    m = manifest(tmp_path, entry("voice-sv", "tts", "sv"))
    p = plan(m, line("sv"), profile="english_only")
    assert (p.language, p.stt) == ("en", "tiny-en")
    assert "English-only" in p.problems[0] and "stt_live_multi" in p.problems[0]
    missing = plan(m, line("sv"), installed=lambda e: e.name != "base")
    assert "run `callvault models install base`" in missing.problems[0]


def test_the_manifest_has_one_voice_per_language(tmp_path: Path) -> None:
    with pytest.raises(ModelError, match="two voices for language 'en'"):
        manifest(tmp_path, entry("voice-en-2", "tts", "en"))


def test_the_multilingual_slot_must_be_multilingual(tmp_path: Path) -> None:
    bad = MODELS.replace('stt_live_multi = "base"', 'stt_live_multi = "tiny-en"')
    with pytest.raises(ModelError, match="stt_live_multi: 'tiny-en' is not multilingual"):
        manifest(tmp_path, profiles=bad)
    with pytest.raises(ModelError, match=r"profiles\.cpu\.stt_nope: unknown slot"):
        manifest(tmp_path, profiles=MODELS.replace("stt_live_multi", "stt_nope"))


def test_the_shipped_manifest_serves_english_and_auto_lines() -> None:
    m = load_manifest(MANIFEST_PATH)
    assert m.voice_for("en") is not None and m.voice_for("sv") is None
    cpu = m.profile("cpu")
    assert cpu["stt_live"].language == "en" and cpu["stt_live_multi"].language == "multi"
    assert plan(m, line("auto")).stt == cpu["stt_live_multi"].name
    sv = plan(m, line("sv"))
    assert sv.language == "en" and "no Piper voice for language 'sv'" in sv.problems[0]


def test_the_llm_is_told_the_line_language() -> None:
    assert instruction("en") == "" and instruction("auto") == ""
    assert "'sv'" in instruction("sv")
