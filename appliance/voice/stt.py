"""Speech to text with faster-whisper (CTranslate2), on the CPU or a CUDA GPU."""

from __future__ import annotations

import threading
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import numpy.typing as npt
from faster_whisper import WhisperModel


@dataclass(frozen=True)
class Transcription:
    text: str
    language: str
    seconds: float
    """Audio duration transcribed."""


class Stt:
    """One loaded Whisper model; calls are serialised (CTranslate2 runs one batch at a time
    per model replica, and a queue is fairer than oversubscribing two cores)."""

    def __init__(
        self,
        model_dir: Path,
        *,
        device: str = "cpu",
        language: str | None = "en",
        beam_size: int = 1,
        threads: int = 2,
    ) -> None:
        compute = "int8" if device == "cpu" else "float16"
        self.model = WhisperModel(
            str(model_dir), device=device, compute_type=compute, cpu_threads=threads
        )
        self.language = language
        self.beam_size = beam_size
        self._lock = threading.Lock()

    def transcribe(self, audio: npt.NDArray[np.float32]) -> Transcription:
        """16 kHz mono float32 → text (blocking; call it from a worker thread)."""
        with self._lock:
            segments, info = self.model.transcribe(
                audio,
                language=self.language,
                beam_size=self.beam_size,
                without_timestamps=True,
                condition_on_previous_text=False,
                vad_filter=False,
            )
            text = " ".join(s.text.strip() for s in segments).strip()
        return Transcription(text=text, language=info.language, seconds=len(audio) / 16000)
