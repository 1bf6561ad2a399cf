"""Text to speech with Piper (piper-tts 1.x: `synthesize()` yields one audio chunk per sentence)."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import onnxruntime
from piper import PiperConfig, PiperVoice

from appliance.voice.audio import to_call_pcm
from appliance.voice.gate import ComputeGate

LEAD_THRESHOLD = 0.01
"""Piper starts each sentence with ~60 ms of near-silence; the first piece of an answer drops
it (down to 10 ms) so the caller hears the answer that much sooner."""
LEAD_KEEP_S = 0.01


def trim_lead(samples: np.ndarray, rate: int) -> np.ndarray:
    loud = np.flatnonzero(np.abs(samples) > LEAD_THRESHOLD)
    if not len(loud):
        return samples
    return samples[max(0, int(loud[0]) - int(LEAD_KEEP_S * rate)) :]


class Tts:
    def __init__(
        self, voice_onnx: Path, *, threads: int = 2, gate: ComputeGate | None = None
    ) -> None:
        config = json.loads(Path(f"{voice_onnx}.json").read_text())
        piper_config = PiperConfig.from_dict(config)
        # One onnxruntime session per width the gate may ask for (1 thread while other
        # processes are busy, every core otherwise): a session's thread pool is fixed.
        self._voices = {
            width: PiperVoice(config=piper_config, session=_session(voice_onnx, width))
            for width in sorted({1, max(1, threads)})
        }
        self.voice = self._voices[max(self._voices)]
        self.language = str(config.get("language", {}).get("family", ""))
        """The voice's language family from its Piper config ("en")."""
        self.threads = threads
        self.gate = gate or ComputeGate(max(threads, 1))

    def speak(self, text: str, *, urgent: bool = False, trim: bool = False) -> Iterator[bytes]:
        """8 kHz call PCM for `text`, one chunk per Piper sentence, as soon as each is ready.

        `trim`: drop the leading silence of the first chunk (the start of an answer).
        """
        width = self.gate.width(self.threads)
        chunks = iter(self._voices.get(width, self.voice).synthesize(text))
        while True:
            with self.gate(urgent=urgent, threads=width):
                chunk = next(chunks, None)
            if chunk is None:
                return
            audio = chunk.audio_float_array
            if trim:
                audio, trim = trim_lead(audio, chunk.sample_rate), False
            yield to_call_pcm(audio, chunk.sample_rate)


def _session(model: Path, threads: int) -> onnxruntime.InferenceSession:
    opts = onnxruntime.SessionOptions()
    opts.intra_op_num_threads = threads
    opts.inter_op_num_threads = 1
    opts.log_severity_level = 3
    return onnxruntime.InferenceSession(
        str(model), sess_options=opts, providers=["CPUExecutionProvider"]
    )
