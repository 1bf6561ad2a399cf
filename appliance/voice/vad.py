"""Streaming Silero VAD (the v6 ONNX model that ships in faster-whisper) and end-of-turn logic.

Silero takes 32 ms windows at 16 kHz (512 samples) with 64 samples of the previous window as
context, and carries an LSTM state; fed frame by frame it gives a speech probability every
32 ms, so the endpoint decision lags speech by at most one window.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np
import numpy.typing as npt
import onnxruntime

WINDOW = 512
CONTEXT = 64
WINDOW_MS = 32
QUIET_PROB = 0.1
QUIET_RESET_MS = 2000
"""Silero's LSTM state drifts over long stretches without speech: after 8-20 s of digital
silence or faint line noise (a caller listening to the greeting or a long answer) it reached
0.5 only 0.7-1.9 s into the caller's next words, so they began outside the pre-roll ("Can I
speak to a real person, please?" was heard as "a real person, please." and the hand-over never
happened). After this much continuous non-speech (every window below `QUIET_PROB`) the state
starts over, as at the start of a call, and onsets are found within ~0.25 s however long the
silence was."""


class SileroVad:
    def __init__(self, model: Path) -> None:
        opts = onnxruntime.SessionOptions()
        opts.inter_op_num_threads = 1
        opts.intra_op_num_threads = 1
        opts.log_severity_level = 4
        self._session = onnxruntime.InferenceSession(
            str(model), providers=["CPUExecutionProvider"], sess_options=opts
        )
        self.reset()

    def reset(self) -> None:
        self._h = np.zeros((1, 1, 128), dtype=np.float32)
        self._c = np.zeros((1, 1, 128), dtype=np.float32)
        self._context = np.zeros(CONTEXT, dtype=np.float32)
        self._pending = np.zeros(0, dtype=np.float32)
        self._quiet_ms = 0

    def feed(self, samples: npt.NDArray[np.float32]) -> list[float]:
        """16 kHz samples in; one speech probability per completed 32 ms window out."""
        self._pending = np.concatenate([self._pending, samples])
        probs = []
        while len(self._pending) >= WINDOW:
            window, self._pending = self._pending[:WINDOW], self._pending[WINDOW:]
            x = np.concatenate([self._context, window])[None, :]
            out, self._h, self._c = self._session.run(
                None, {"input": x, "h": self._h, "c": self._c}
            )
            self._context = window[-CONTEXT:]
            prob = float(np.asarray(out).reshape(-1)[0])
            probs.append(prob)
            self._quiet_ms = self._quiet_ms + WINDOW_MS if prob < QUIET_PROB else 0
            if self._quiet_ms >= QUIET_RESET_MS:
                self._h = np.zeros_like(self._h)
                self._c = np.zeros_like(self._c)
                self._quiet_ms = 0
        return probs


# A transcript ending in one of these words is not a finished thought even with a full stop.
# Whisper writes a half-said question as one ("Where is?"), so the verbs and question words
# that open a sentence count too.
_DANGLING = frozenset({
    "and", "or", "but", "so", "because", "the", "a", "an", "to", "of", "for", "with", "my",
    "your", "at", "in", "on", "um", "uh", "er", "like", "then",
    "is", "are", "was", "were", "where", "what", "when", "which", "who", "why", "how",
    "i", "i'm", "it's", "there's",
})  # fmt: skip


def looks_unfinished(text: str) -> bool:
    """The caller's words so far stop on a word that announces more ("Where is", "I would
    like to"): the turn waits longer before it ends."""
    words = text.strip().rstrip(".?!,;:").split()
    return bool(words) and words[-1].lower().strip(",;:") in _DANGLING


def looks_complete(text: str) -> bool:
    """The caller's words so far read as a finished sentence (ends the turn sooner).

    Whisper ends nearly everything with a full stop, "Hi." and "Thank you." included, which are
    often followed by more after a breath; so a statement needs three words and must not end
    on a word that announces more. A question needs two.
    """
    t = text.strip()
    if not t.endswith((".", "?", "!")):
        return False
    words = t.rstrip(".?!").split()
    if not words or words[-1].lower().strip(",;:") in _DANGLING:
        return False
    return len(words) >= (2 if t.endswith("?") else 3)


@dataclass
class Endpointer:
    """Turns speech probabilities into turn events.

    Speech starts after `start_ms` of speech (opened above `threshold`, held above `release`);
    a turn ends after `end_ms` of silence, after `end_ms_complete` when the caller's words so
    far already read as a complete sentence (`looks_complete` on the speculative transcript),
    or after `end_ms_unfinished` when they stop on a word that announces more
    (`looks_unfinished`: Piper's "Where is … the clinic?" holds ~450 ms after "is"). Piper's
    scripted callers pause up to 288 ms inside a sentence (after "Thank you," and "Hi,", which
    do not read as complete); real callers pause longer mid-thought than after a finished
    sentence. The agent prepares its answer during the wait (speculation), so the wait is a
    floor of the answer time, not an addition to it.
    """

    threshold: float = 0.5
    release: float = 0.35
    start_ms: int = 96
    end_ms: int = 416
    end_ms_complete: int = 320
    end_ms_unfinished: int = 704
    in_speech: bool = False
    _speech_run: int = 0
    _silence_run: int = 0
    sentence_complete: bool = False
    sentence_unfinished: bool = False
    """Set at a pause from the speculative transcript (`looks_complete`, `looks_unfinished`);
    cleared when speech resumes."""
    last_silence_ms: int = 0
    """Silence the last turn ended with (what the endpoint waited)."""

    @property
    def silence_ms(self) -> int:
        """Silence so far in the current pause (0 while the caller speaks)."""
        return self._silence_run

    def update(self, prob: float) -> str | None:
        """`"start"`, `"pause"` (first silent window: speculate), `"resume"`, `"end"`, or None."""
        if not self.in_speech:
            # Hysteresis, as Silero's own segmenter: a run opened above `threshold` goes on
            # while the probability stays above `release`. Word onsets of "Can I…" hover
            # around 0.5 (0.55, 0.49, 0.44, 0.61): a strict run restarted at every dip and
            # the start came ~0.5 s late, past the pre-roll.
            if prob >= self.threshold or (self._speech_run and prob >= self.release):
                self._speech_run += WINDOW_MS
            else:
                self._speech_run = 0
            if self._speech_run >= self.start_ms:
                self.in_speech = True
                self._silence_run = 0
                self.sentence_complete = self.sentence_unfinished = False
                return "start"
            return None
        if prob >= self.release:
            was_paused = self._silence_run > 0
            self._silence_run = 0
            if was_paused:
                self.sentence_complete = self.sentence_unfinished = False
                return "resume"
            return None
        self._silence_run += WINDOW_MS
        limit = (
            self.end_ms_complete
            if self.sentence_complete
            else self.end_ms_unfinished
            if self.sentence_unfinished
            else self.end_ms
        )
        if self._silence_run >= limit:
            self.last_silence_ms = self._silence_run
            self.in_speech = False
            self._speech_run = 0
            return "end"
        return "pause" if self._silence_run == WINDOW_MS else None
