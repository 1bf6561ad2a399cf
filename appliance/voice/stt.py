"""Speech to text with faster-whisper (CTranslate2), on the CPU or a CUDA GPU.

A caller's turn lasts a few seconds, but Whisper's encoder is built for 30 s windows and
faster-whisper pads every input to 30 s, so most of a live turn's encoder work is on padding.
Turns that fit are encoded here on a 15 s window instead (CTranslate2 accepts shorter inputs):
measured on 2 cores with tiny.en, 0.3 s of CPU per scripted turn instead of 0.9 s, same words.
Shorter windows than that made tiny.en loop on short utterances ("Where's the clinic? Where's
the clinic? …"), so a result that looks like one of Whisper's failure modes (a repeating loop,
a very unlikely decode, no end of text) is redone on the full window by faster-whisper's own
path, which has its temperature fallback.
"""

from __future__ import annotations

import logging
import threading
import zlib
from dataclasses import dataclass
from pathlib import Path

import ctranslate2
import numpy as np
import numpy.typing as npt
from faster_whisper import WhisperModel
from faster_whisper.audio import pad_or_trim
from faster_whisper.tokenizer import Tokenizer

from appliance.voice.gate import ComputeGate

log = logging.getLogger(__name__)

SAMPLE_RATE = 16000
SHORT_WINDOW_FRAMES = 1500
"""Mel frames (10 ms each) of the short encoder window: 15 s."""
SHORT_WINDOW_MAX_S = 13.0
"""Longer turns take the full 30 s window (the short one needs room after the speech)."""
NO_SPEECH = 0.6
"""faster-whisper's rule: no-speech probability above this and a low log-probability → silence."""
LOW_LOGPROB = -1.0
MAX_COMPRESSION = 2.4
"""gzip ratio above which a transcript is a repetition loop (Whisper's own threshold)."""
MAX_PROMPT_TOKENS = 64
"""Tokens of an initial prompt kept (its end): a hint, not a transcript to continue."""


@dataclass(frozen=True)
class Transcription:
    text: str
    language: str
    seconds: float
    """Audio duration transcribed."""
    short_window: bool = True
    """Encoded on the short window (False: the full-window fallback ran)."""


def compression_ratio(text: str) -> float:
    data = text.encode()
    return len(data) / max(1, len(zlib.compress(data)))


class Stt:
    """One loaded Whisper model. Calls pass the compute gate (one model step at a time)."""

    def __init__(
        self,
        model_dir: Path,
        *,
        device: str = "cpu",
        language: str | None = "en",
        beam_size: int = 1,
        threads: int = 2,
        gate: ComputeGate | None = None,
    ) -> None:
        compute = "int8" if device == "cpu" else "float16"
        self.model = WhisperModel(
            str(model_dir), device=device, compute_type=compute, cpu_threads=threads
        )
        self.multilingual = bool(self.model.model.is_multilingual)
        if not self.multilingual and language not in ("en", None):
            raise ValueError(
                f"{model_dir.name} is an English-only model; it cannot hear {language!r}"
            )
        self.language = language if self.multilingual else "en"
        """Default language (None: detect per call; English-only models: always "en")."""
        self.beam_size = beam_size
        self.threads = threads
        self.gate = gate or ComputeGate(max(threads, 1))

    def transcribe(
        self,
        audio: npt.NDArray[np.float32],
        language: str | None = "",
        *,
        urgent: bool = True,
        abandoned: threading.Event | None = None,
        initial_prompt: str | None = None,
    ) -> Transcription:
        """16 kHz mono float32 → text (blocking; call it from a worker thread).

        `language`: an ISO code, None to let Whisper detect it, "" for the model's default.
        `abandoned`: set while waiting for the compute gate → skip the work, return no text.
        `initial_prompt`: words Whisper reads as the text before this audio (Whisper's own
        "previous text" slot), to bias it toward what the turn should hold.
        """
        lang = self.language if language == "" else language
        if not self.multilingual:
            lang = "en"
        seconds = len(audio) / SAMPLE_RATE
        with self.gate(urgent=urgent, threads=self.threads):
            if abandoned is not None and abandoned.is_set():
                return Transcription("", lang or "", seconds)
            if seconds <= SHORT_WINDOW_MAX_S:
                fast = self._short_window(audio, lang, initial_prompt)
                if fast is not None:
                    return fast
            return self._full_window(audio, lang, initial_prompt)

    def _short_window(
        self, audio: npt.NDArray[np.float32], language: str | None, initial_prompt: str | None
    ) -> Transcription | None:
        seconds = len(audio) / SAMPLE_RATE
        features = pad_or_trim(self.model.feature_extractor(audio), SHORT_WINDOW_FRAMES)
        encoded = self.model.model.encode(
            ctranslate2.StorageView.from_array(np.ascontiguousarray(features[None], np.float32))
        )
        if language is None:
            best = self.model.model.detect_language(encoded)[0][0][0]
            language = best[2:-2]  # "<|sv|>"
        tok = Tokenizer(
            self.model.hf_tokenizer, self.multilingual, task="transcribe", language=language
        )
        prompt = [*tok.sot_sequence, tok.no_timestamps]
        if initial_prompt:
            context = tok.encode(" " + initial_prompt.strip())[-MAX_PROMPT_TOKENS:]
            prompt = [tok.sot_prev, *context, *prompt]
        budget = int(12 + 8 * seconds)  # tokens: speech is at most ~6 tokens a second
        result = self.model.model.generate(
            encoded,
            [prompt],
            beam_size=self.beam_size,
            max_length=len(prompt) + budget,
            return_scores=True,
            return_no_speech_prob=True,
        )[0]
        ids = result.sequences_ids[0]
        ended = len(ids) < budget
        ids = [t for t in ids if t < tok.eot]
        text = tok.decode(ids).strip()
        logprob = float(result.scores[0]) if result.scores else 0.0
        if result.no_speech_prob > NO_SPEECH and logprob < LOW_LOGPROB:
            return Transcription("", language, seconds)
        if not ended or logprob < LOW_LOGPROB or compression_ratio(text) > MAX_COMPRESSION:
            log.info("short-window transcript %r (logprob %.2f) redone on 30 s", text, logprob)
            return None
        return Transcription(text, language, seconds)

    def _full_window(
        self, audio: npt.NDArray[np.float32], language: str | None, initial_prompt: str | None
    ) -> Transcription:
        segments, info = self.model.transcribe(
            audio,
            language=language,
            initial_prompt=initial_prompt or None,
            beam_size=self.beam_size,
            without_timestamps=True,
            condition_on_previous_text=False,
            vad_filter=False,
        )
        text = " ".join(s.text.strip() for s in segments).strip()
        return Transcription(text, info.language, len(audio) / SAMPLE_RATE, short_window=False)
