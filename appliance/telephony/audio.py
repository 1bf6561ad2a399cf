"""Small helpers for telephony PCM: 16-bit little-endian mono, 8 kHz unless stated."""

from __future__ import annotations

import math
import wave
from pathlib import Path

import numpy as np
import numpy.typing as npt

from appliance.errors import CallvaultError

RATE = 8000
FRAME_SAMPLES = RATE // 50  # 20 ms
_FULL_SCALE = 32768.0
_FLOOR_DBFS = -120.0


class AudioFormatError(CallvaultError):
    """A WAV file is not in the format telephony code needs."""


def _samples(pcm: bytes) -> npt.NDArray[np.float64]:
    if len(pcm) % 2:
        raise ValueError("PCM must be whole 16-bit samples (even byte count)")
    return np.frombuffer(pcm, dtype="<i2").astype(np.float64)


def read_wav_pcm8k(path: str | Path) -> bytes:
    """The PCM of an 8 kHz mono 16-bit WAV file; AudioFormatError names what differs."""
    with wave.open(str(path), "rb") as wav:
        rate, channels, width = wav.getframerate(), wav.getnchannels(), wav.getsampwidth()
        problems = []
        if rate != RATE:
            problems.append(f"{rate} Hz (need {RATE})")
        if channels != 1:
            problems.append(f"{channels} channels (need mono)")
        if width != 2:
            problems.append(f"{8 * width}-bit samples (need 16-bit)")
        if problems:
            raise AudioFormatError(
                f"{path}: {', '.join(problems)}; convert with e.g. "
                "`sox in.wav -r 8000 -c 1 -b 16 out.wav`"
            )
        return wav.readframes(wav.getnframes())


def write_wav(path: str | Path, pcm: bytes, rate: int = RATE) -> None:
    """Write 16-bit mono PCM as a WAV file."""
    if len(pcm) % 2:
        raise ValueError("PCM must be whole 16-bit samples (even byte count)")
    with wave.open(str(path), "wb") as wav:
        wav.setnchannels(1)
        wav.setsampwidth(2)
        wav.setframerate(rate)
        wav.writeframes(pcm)


def rms_dbfs(pcm: bytes) -> float:
    """RMS level relative to full scale; -120 for silence or no audio."""
    samples = _samples(pcm)
    if samples.size == 0:
        return _FLOOR_DBFS
    rms = float(np.sqrt(np.mean(samples**2)))
    if rms <= 0.0:
        return _FLOOR_DBFS
    return max(_FLOOR_DBFS, 20.0 * math.log10(rms / _FULL_SCALE))


def tone(freq_hz: float, seconds: float, rate: int = RATE, amplitude: float = 0.5) -> bytes:
    """A sine tone; `amplitude` is a fraction of full scale (0..1)."""
    if not 0.0 <= amplitude <= 1.0:
        raise ValueError(f"amplitude must be within 0..1, got {amplitude}")
    n = round(seconds * rate)
    t = np.arange(n, dtype=np.float64) / rate
    wave_ = amplitude * 32767.0 * np.sin(2.0 * math.pi * freq_hz * t)
    return np.round(wave_).astype("<i2").tobytes()


def voiced_seconds(pcm: bytes, threshold_dbfs: float = -40.0, rate: int = RATE) -> float:
    """Total duration of the 20 ms windows whose level is above `threshold_dbfs`."""
    samples = _samples(pcm)
    window = rate // 50
    whole = samples.size // window
    if whole == 0:
        return 0.0
    frames = samples[: whole * window].reshape(whole, window)
    rms = np.sqrt(np.mean(frames**2, axis=1))
    threshold = _FULL_SCALE * 10.0 ** (threshold_dbfs / 20.0)
    return float(np.count_nonzero(rms > threshold)) * window / rate


def dominant_frequency(pcm: bytes, rate: int = RATE) -> float:
    """Frequency (Hz) of the strongest spectral peak; 0 for silence or no audio."""
    samples = _samples(pcm)
    if samples.size < 2 or not np.any(samples):
        return 0.0
    spectrum = np.abs(np.fft.rfft((samples - samples.mean()) * np.hanning(samples.size)))
    peak = int(np.argmax(spectrum))
    # Parabolic interpolation: the bin grid alone is coarse for short clips.
    if 0 < peak < spectrum.size - 1:
        a, b, c = spectrum[peak - 1], spectrum[peak], spectrum[peak + 1]
        denom = a - 2.0 * b + c
        offset = 0.5 * (a - c) / denom if denom else 0.0
    else:
        offset = 0.0
    return float((peak + offset) * rate / samples.size)


def first_voice_s(pcm: bytes, threshold: int = 500) -> float | None:
    """Seconds into 8 kHz `pcm` where sound first exceeds `threshold` (20 ms steps), or None."""
    samples = np.frombuffer(pcm[: len(pcm) - len(pcm) % 2], "<i2")
    for i in range(0, len(samples) - 160, 160):
        if int(np.abs(samples[i : i + 160]).max()) > threshold:
            return i / RATE
    return None
