"""Which Whisper model hears a line and which Piper voice speaks on it.

A line's `language` is "en", another ISO 639-1 code, or "auto" (Whisper detects the caller's
language on the first utterance and the voice follows). An English-only Whisper (tiny.en) cannot
hear other languages, so those lines use the profile's multilingual `stt_live_multi` model. The
voice is the line's `voice`, else the manifest's voice for the language (one per language).
Whatever cannot be honoured (no multilingual model, no voice for the language, a voice that is
not installed) is a problem reported at start, and the line falls back to English rather than
going silent.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass

from appliance.config import LineConfig
from appliance.models.manifest import MULTILINGUAL, Manifest, ModelEntry

AUTO = "auto"
ENGLISH = "en"


@dataclass(frozen=True)
class LinePlan:
    line: str
    language: str
    """What the line hears and speaks: "en", another code, or "auto" (detected per call)."""
    stt: str
    """Manifest name of the Whisper model for live turns."""
    voice: str
    """Manifest name of the Piper voice (for "auto": the voice until a language is detected)."""
    problems: tuple[str, ...] = ()
    """What could not be honoured, each naming the model and what to do."""


def plan_line(
    manifest: Manifest,
    slots: Mapping[str, ModelEntry],
    line: LineConfig | None,
    installed: Callable[[ModelEntry], bool],
) -> LinePlan:
    """The models a line uses, falling back to English where its language cannot be served."""
    name = line.name if line is not None else "(unknown line)"
    wanted = line.language if line is not None else ENGLISH
    english_stt, english_voice = slots["stt_live"], slots["tts"]
    problems: list[str] = []

    def english(why: str) -> LinePlan:
        problems.append(f"line {name}: {why}; the line hears and speaks English")
        return LinePlan(name, ENGLISH, english_stt.name, english_voice.name, tuple(problems))

    stt = english_stt
    if wanted != ENGLISH and english_stt.language != MULTILINGUAL:
        multi = slots.get("stt_live_multi")
        if multi is None:
            return english(
                f"language {wanted!r} needs a multilingual Whisper model, but the profile's "
                f"stt_live ({english_stt.name}) is English-only and it names no stt_live_multi"
            )
        if not installed(multi):
            return english(
                f"language {wanted!r} needs the multilingual Whisper model {multi.name}, which is "
                f"not installed (run `callvault models install {multi.name}`)"
            )
        stt = multi

    voice = _voice(manifest, line, wanted, english_voice, installed, problems)
    if voice is None:
        return english(_missing_voice(manifest, line, wanted))
    return LinePlan(name, wanted, stt.name, voice.name, tuple(problems))


def _voice(  # noqa: PLR0917 - one helper of plan_line, called once
    manifest: Manifest,
    line: LineConfig | None,
    language: str,
    english_voice: ModelEntry,
    installed: Callable[[ModelEntry], bool],
    problems: list[str],
) -> ModelEntry | None:
    if line is not None and line.voice:
        chosen = manifest.models.get(line.voice)
        if chosen is not None and chosen.role == "tts" and installed(chosen):
            if language not in (AUTO, chosen.language):
                problems.append(
                    f"line {line.name}: voice {chosen.name} speaks {chosen.language!r}, "
                    f"not the line's language {language!r}"
                )
            return chosen
        return None
    if language == AUTO:
        return english_voice
    found = manifest.voice_for(language)
    return found if found is not None and installed(found) else None


def _missing_voice(manifest: Manifest, line: LineConfig | None, language: str) -> str:
    if line is not None and line.voice:
        chosen = manifest.models.get(line.voice)
        if chosen is None:
            return f"voice {line.voice!r} is not in the model manifest"
        if chosen.role != "tts":
            return f"voice {line.voice!r} is a {chosen.role} model, not a voice"
        return (
            f"voice {chosen.name} is not installed (run `callvault models install {chosen.name}`)"
        )
    found = manifest.voice_for(language)
    if found is None:
        return (
            f"no Piper voice for language {language!r} in the model manifest (add the voice "
            f'package with language = "{language}" to models/manifest.toml and install it)'
        )
    return (
        f"the {language!r} voice {found.name} is not installed "
        f"(run `callvault models install {found.name}`)"
    )


def instruction(language: str) -> str:
    """What the system prompt adds so the LLM answers in the line's language ("" for English)."""
    if language in (ENGLISH, AUTO, ""):
        return ""
    return f" Always answer in the caller's language (ISO 639-1 code {language!r})."
