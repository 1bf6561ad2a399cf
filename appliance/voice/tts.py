"""Text to speech with Piper (piper-tts 1.x: `synthesize()` yields audio chunks)."""

from __future__ import annotations

import threading
from collections.abc import Iterator
from pathlib import Path

from piper import PiperVoice

from appliance.voice.audio import to_call_pcm


class Tts:
    def __init__(self, voice_onnx: Path) -> None:
        self.voice = PiperVoice.load(str(voice_onnx))
        self._lock = threading.Lock()

    def speak(self, text: str) -> Iterator[bytes]:
        """8 kHz call PCM for `text`, one chunk per Piper sentence, as soon as each is ready."""
        with self._lock:
            for chunk in self.voice.synthesize(text):
                yield to_call_pcm(chunk.audio_int16_array, chunk.sample_rate)
