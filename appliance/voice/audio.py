"""Sample-rate conversion between the call (8 kHz), Whisper/Silero (16 kHz) and Piper (22 kHz)."""

from __future__ import annotations

import numpy as np
import numpy.typing as npt
import soxr

CALL_RATE = 8000
MODEL_RATE = 16000


class Upsampler:
    """Streaming 8 kHz int16 → 16 kHz float32 (stateful: no clicks at frame edges)."""

    def __init__(self) -> None:
        self._stream = soxr.ResampleStream(CALL_RATE, MODEL_RATE, 1, dtype="float32")

    def __call__(self, pcm: bytes) -> npt.NDArray[np.float32]:
        x = np.frombuffer(pcm, dtype="<i2").astype(np.float32) / 32768.0
        out: npt.NDArray[np.float32] = self._stream.resample_chunk(x)
        return out


def to_call_pcm(samples: npt.NDArray[np.int16] | npt.NDArray[np.float32], rate: int) -> bytes:
    """Any-rate mono audio → 8 kHz 16-bit little-endian PCM for the call."""
    x = samples.astype(np.float32)
    if samples.dtype == np.int16:
        x /= 32768.0
    y = soxr.resample(x, rate, CALL_RATE) if rate != CALL_RATE else x
    return (np.clip(y, -1.0, 1.0) * 32767.0).astype("<i2").tobytes()
