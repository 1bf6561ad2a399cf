"""Silero's streaming state after long silence (appliance.voice.vad): a caller who listened for
a while is still heard from their first word. With the real Silero model and a Piper line, on
8 kHz call audio through the agent's upsampler, as the SIP agent feeds it."""

from __future__ import annotations

import tomllib
from collections.abc import Callable
from pathlib import Path

import numpy as np
import pytest

from appliance import config
from appliance.models.commands import active_profile
from appliance.models.manifest import load_manifest
from appliance.models.store import ModelStore
from appliance.voice import vad as vad_mod
from appliance.voice.audio import Upsampler
from appliance.voice.tts import Tts
from appliance.voice.vad import Endpointer, SileroVad

DEV = Path(__file__).resolve().parents[2] / "config" / "callvault.dev.toml"
LINE = "Can I speak to a real person, please?"  # the hand-over request that went unheard


@pytest.fixture(scope="module")
def models(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, bytes]:
    raw = tomllib.loads(DEV.read_text())
    raw["state_dir"] = str(tmp_path_factory.mktemp("state"))
    cfg = config.parse(raw, base_dir=DEV.parent, source=DEV)
    manifest = load_manifest()
    store = ModelStore(cfg.models.dir, manifest)
    entries = manifest.profile(active_profile(cfg, manifest))
    vad = store.file(entries["vad"].name, entries["vad"].files[0].name)
    onnx = next(f.name for f in entries["tts"].files if f.name.endswith(".onnx"))
    speech = b"".join(Tts(store.file(entries["tts"].name, onnx)).speak(LINE))
    return vad, speech


def onset_delay_s(model: Path, speech: bytes, lead: bytes) -> float:
    """Seconds from the first sound of `speech` (after `lead`) to the endpointer's start."""
    samples = np.frombuffer(speech, "<i2")
    first = int(np.argmax(np.abs(samples) > 500)) / 8000
    up, vad, ep = Upsampler(), SileroVad(model), Endpointer()
    pcm = lead + speech
    fed = 0
    for i in range(0, len(pcm) - 319, 320):
        chunk = up(pcm[i : i + 320])
        for k, prob in enumerate(vad.feed(chunk)):
            if ep.update(prob) == "start":
                at = (fed + (k + 1) * vad_mod.WINDOW) / 16000
                return at - len(lead) / 16000 - first
        fed += len(chunk)
    raise AssertionError("speech never detected")


def zeros(seconds: float) -> bytes:
    return bytes(int(seconds * 8000) * 2)


def line_noise(seconds: float) -> bytes:
    # About -80 dBFS: what a quiet line carries between words.
    rng = np.random.default_rng(7)
    return rng.integers(-3, 4, int(seconds * 8000)).astype("<i2").tobytes()


@pytest.mark.parametrize("lead", [zeros, line_noise], ids=["digital-silence", "line-noise"])
@pytest.mark.parametrize("seconds", [3.0, 9.0, 12.02, 15.04, 20.0])
def test_speech_after_a_long_silence_is_found_at_once(
    models: tuple[Path, bytes], lead: Callable[[float], bytes], seconds: float
) -> None:
    model, speech = models
    # Pre-roll is 0.5 s: a start later than that loses the caller's first words.
    assert onset_delay_s(model, speech, lead(seconds)) < 0.35


def test_without_the_reset_the_state_drifts(
    models: tuple[Path, bytes], monkeypatch: pytest.MonkeyPatch
) -> None:
    # What the reset guards against, so this test can tell when it stops mattering.
    model, speech = models
    monkeypatch.setattr(vad_mod, "QUIET_RESET_MS", 10**9)
    delays = [onset_delay_s(model, speech, zeros(s)) for s in (9.0, 12.02, 15.04, 20.0)]
    assert max(delays) > 0.6, delays
