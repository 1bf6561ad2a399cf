"""`bench.run --only dialogue`: the scripted callers (tests/voice/dialogue/callers) against the
playbook dialogue engine with the active profile's models.

Two passes over every caller:
- text: the scripted words go to the engine as they are; the profile's LLM answers the intent
  question when the rules cannot (grammar-constrained);
- audio: each turn is spoken by the line's Piper voice at 8 kHz (the call's rate), transcribed
  by the live Whisper the way the live agent does (`dialogue.listen.hear`: told what the engine
  expects, a spelling is decoded in the spelling alphabet, a day or time with a prompt), and
  what Whisper heard goes to the engine; a `(noise)` turn is 1.5 s of telephone-band noise, a
  silent turn stays silent. Piper samples its voice: two runs do not hear the same audio.

Both passes run the booking line's playbook with `spell_names` on (`runner.scripted`).

Keys:
  dialogue_callers                 scripted callers in the set
  dialogue_task_success            share whose task ends as expected with the right slots (text)
  dialogue_invented_facts          agent sentences stating a number, time, day or name that the
                                   sheet, the caller's words or the collected slots do not
                                   support (checker over every turn, text and audio passes)
  dialogue_turns_per_task          median caller turns until the task completed (text)
  dialogue_audio_task_success      the same share through Piper → Whisper
  dialogue_audio_task_success_but_names  the same, not counting the caller's name
  dialogue_audio_spelling_ms_p50   median time to transcribe a spelling turn (constrained
                                   decoding: one Whisper pass per token, on the profile's device)
  dialogue_engine_turn_ms_p50      median engine time per caller turn (rules + LLM when asked)
  dialogue_gpu_*                   the same on the GPU profile (written only where one ran)
"""

from __future__ import annotations

import asyncio
import re
import statistics
import time
from typing import Any

import numpy as np

from appliance.config import Config
from appliance.voice.audio import Upsampler
from appliance.voice.dialogue import listen
from appliance.voice.dialogue.engine import DialogueEngine
from appliance.voice.dialogue.extract import LlamaIntent
from appliance.voice.dialogue.playbook import PlaybookConfig
from appliance.voice.engines import VoiceEngines
from tests.voice.dialogue.runner import LINE, Caller, Result, load_callers, run_text, scripted

_NOISE = re.compile(r"^\(.*\)$")


class _TimedIntent:
    def __init__(self, inner: LlamaIntent) -> None:
        self.inner = inner
        self.calls = 0

    def classify(self, text: str, intents: tuple[str, ...]) -> str | None:
        self.calls += 1
        return self.inner.classify(text, intents)


def _noise(seconds: float = 1.5, seed: int = 7) -> bytes:
    rng = np.random.default_rng(seed)
    x = rng.normal(0.0, 0.08, int(8000 * seconds))
    return (np.clip(x, -1, 1) * 32767).astype("<i2").tobytes()


def _spoken(engines: VoiceEngines, turn: str) -> np.ndarray:
    pcm = _noise() if _NOISE.match(turn) else b"".join(engines.tts.speak(turn))
    return Upsampler()(pcm + bytes(3200))  # a little trailing silence, as on a call


def heard(engines: VoiceEngines, caller: Caller) -> list[str | None]:
    """What Whisper makes of the caller's turns spoken by Piper (over the call's 8 kHz), each
    transcribed plainly (not told what the engine expects)."""
    return [
        None if turn is None else engines.stt.transcribe(_spoken(engines, turn), "en").text.strip()
        for turn in caller.turns
    ]


class Ear:
    """Hears a scripted turn as the live agent would: Piper's audio through `listen.hear`."""

    def __init__(self, engines: VoiceEngines, playbook: PlaybookConfig) -> None:
        self.engines = engines
        self.playbook = playbook
        self.speller = listen.speller_for(engines.stt)
        self.spelling_ms: list[float] = []
        self.stt_ms = 0.0

    def __call__(self, turn: str | None, engine: DialogueEngine) -> str | None:
        if turn is None:
            return None
        audio = _spoken(self.engines, turn)
        t0 = time.perf_counter()
        expecting = engine.expecting
        prompt = listen.prompt_for(expecting, self.playbook)
        text = listen.hear(
            self.engines.stt, audio, "en", expecting, prompt=prompt, near=engine.heard_name,
            speller=self.speller,
        ).text  # fmt: skip
        ms = (time.perf_counter() - t0) * 1000
        self.stt_ms += ms
        if expecting == "spelling":
            self.spelling_ms.append(ms)
        return text.strip()


async def _pass(
    cfg: Config, callers: list[Caller], intents: _TimedIntent, ear: Ear | None
) -> tuple[list[Result], list[float]]:
    line = cfg.line_by_name(LINE)
    assert line is not None and line.playbook is not None
    pb = scripted(line.playbook)
    results: list[Result] = []
    per_turn: list[float] = []
    for caller in callers:
        t0 = time.perf_counter()
        heard_ms = ear.stt_ms if ear is not None else 0.0
        result = await run_text(caller, pb, intents=intents, listen=ear)
        engine_ms = (time.perf_counter() - t0) * 1000 - ((ear.stt_ms - heard_ms) if ear else 0.0)
        per_turn.append(engine_ms / max(1, len(caller.turns)))
        results.append(result)
    return results, per_turn


def summarise(results: list[Result]) -> dict[str, float]:
    turns = [r.outcome.task_turns for r in results if r.ok and r.outcome.task_turns is not None]
    return {
        "success": round(sum(r.ok for r in results) / len(results), 3),
        "invented": float(sum(len(r.invented) for r in results)),
        "turns": float(statistics.median(turns)) if turns else 0.0,
    }


def run(cfg: Config, *, quick: bool = False, prefix: str = "dialogue") -> dict[str, float]:
    engines = VoiceEngines.load(cfg)
    callers = load_callers()
    if quick:
        callers = callers[::4]
    intents = _TimedIntent(LlamaIntent(engines.llm.model))
    text, per_turn = asyncio.run(_pass(cfg, callers, intents, None))
    line = cfg.line_by_name(LINE)
    assert line is not None and line.playbook is not None
    ear = Ear(engines, line.playbook)
    audio, _ = asyncio.run(_pass(cfg, callers, intents, ear))
    t, a = summarise(text), summarise(audio)
    for r in [*text, *audio]:
        if not r.ok or r.invented:
            print(f"  {r.caller.id}: {r.problems} {r.invented} heard={r.heard}")
    out: dict[str, Any] = {
        f"{prefix}_callers": float(len(callers)),
        f"{prefix}_task_success": t["success"],
        f"{prefix}_invented_facts": t["invented"] + a["invented"],
        f"{prefix}_turns_per_task": t["turns"],
        f"{prefix}_audio_task_success": a["success"],
        f"{prefix}_audio_task_success_but_names": round(
            sum(r.ok or r.ok_but_name for r in audio) / len(audio), 3
        ),
        f"{prefix}_audio_spelling_ms_p50": round(statistics.median(ear.spelling_ms), 1)
        if ear.spelling_ms
        else 0.0,
        f"{prefix}_engine_turn_ms_p50": round(statistics.median(per_turn), 2),
        f"{prefix}_llm_intent_calls": float(intents.calls),
    }
    return out
