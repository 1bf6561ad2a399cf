from appliance.telephony.audio import first_voice_s, tone
from appliance.voice.metrics import wer, word_errors


def test_wer_ignores_case_and_punctuation() -> None:
    assert wer("Hi, I would like a table.", "hi i would like a table") == 0.0
    assert word_errors("My name is Anna Svensson.", "My name is Anna Stenson.") == (1, 5)
    assert wer("a b c", "") == 1.0
    assert wer("a b", "a x b") == 0.5  # one insertion over two words


def test_first_voice_finds_the_onset() -> None:
    pcm = b"\x00\x00" * 4000 + tone(440.0, 0.5)
    onset = first_voice_s(pcm)
    assert onset is not None and abs(onset - 0.5) <= 0.02
    assert first_voice_s(b"\x00\x00" * 8000) is None
