"""appliance.telephony.audio: pure numpy helpers."""

from __future__ import annotations

import wave
from pathlib import Path

import pytest

from appliance.telephony.audio import (
    AudioFormatError,
    dominant_frequency,
    read_wav_pcm8k,
    rms_dbfs,
    tone,
    voiced_seconds,
    write_wav,
)


def test_tone_length_level_and_frequency() -> None:
    pcm = tone(440, 0.5, amplitude=0.5)
    assert len(pcm) == 8000  # 4000 samples * 2 bytes
    # A sine's RMS is peak / sqrt(2): 0.5 full scale -> about -9 dBFS.
    assert rms_dbfs(pcm) == pytest.approx(-9.03, abs=0.1)
    assert dominant_frequency(pcm) == pytest.approx(440, abs=2)
    assert dominant_frequency(tone(1234, 0.2)) == pytest.approx(1234, abs=5)


def test_tone_rejects_out_of_range_amplitude() -> None:
    with pytest.raises(ValueError, match="amplitude"):
        tone(440, 0.1, amplitude=1.5)


def test_silence_and_empty_input() -> None:
    silence = bytes(1600)
    assert rms_dbfs(silence) == -120.0
    assert rms_dbfs(b"") == -120.0
    assert dominant_frequency(silence) == 0.0
    assert voiced_seconds(silence) == 0.0
    assert voiced_seconds(b"") == 0.0


def test_voiced_seconds_counts_loud_20ms_windows() -> None:
    pcm = bytes(3200) + tone(300, 0.6) + bytes(3200) + tone(300, 0.2, amplitude=0.001)
    # The last tone is at about -63 dBFS: below the -40 dBFS threshold.
    assert voiced_seconds(pcm) == pytest.approx(0.6, abs=0.021)
    assert voiced_seconds(pcm, threshold_dbfs=-70) == pytest.approx(0.8, abs=0.041)


def test_odd_byte_count_is_rejected() -> None:
    with pytest.raises(ValueError, match="16-bit"):
        rms_dbfs(b"\x00\x01\x02")


def test_wav_round_trip(tmp_path: Path) -> None:
    pcm = tone(700, 0.25)
    path = tmp_path / "t.wav"
    write_wav(path, pcm)
    assert read_wav_pcm8k(path) == pcm


def test_wrong_wav_format_is_explained(tmp_path: Path) -> None:
    path = tmp_path / "stereo16k.wav"
    with wave.open(str(path), "wb") as wav:
        wav.setnchannels(2)
        wav.setsampwidth(2)
        wav.setframerate(16000)
        wav.writeframes(bytes(640))
    with pytest.raises(AudioFormatError) as info:
        read_wav_pcm8k(path)
    message = str(info.value)
    assert "16000 Hz (need 8000)" in message
    assert "2 channels (need mono)" in message
