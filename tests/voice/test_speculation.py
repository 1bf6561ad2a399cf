"""The agent's turn-taking with stand-in models: answers prepared during the endpoint wait are
held until the endpoint confirms the turn, discarded when the caller goes on, and stopped by
barge-in; the caller's words are recorded either way. Frames are fed in real time."""

from __future__ import annotations

import asyncio
import threading
import time
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import Any

import numpy as np
import numpy.typing as npt
import pytest

from appliance.config import Config, LineConfig
from appliance.telephony.audio import tone
from appliance.telephony.greeter import CALL_HEADER, LINE_HEADER
from appliance.voice import agent as agent_mod
from appliance.voice.agent import Conversation, VoiceAgent
from appliance.voice.gate import ComputeGate
from appliance.voice.languages import LinePlan
from appliance.voice.llm import Piece
from appliance.voice.stt import Transcription
from appliance.voice.vad import WINDOW

SPEECH = tone(300.0, 0.02, amplitude=0.3)  # one 20 ms frame the stand-in VAD hears as speech
SILENCE = bytes(320)


class EnergyVad:
    """Stands in for Silero: loud window → speech."""

    def __init__(self, _model: Path) -> None:
        self._pending = np.zeros(0, np.float32)

    def feed(self, samples: npt.NDArray[np.float32]) -> list[float]:
        self._pending = np.concatenate([self._pending, samples])
        out = []
        while len(self._pending) >= WINDOW:
            window, self._pending = self._pending[:WINDOW], self._pending[WINDOW:]
            out.append(0.9 if float(np.sqrt(np.mean(window**2))) > 0.05 else 0.02)
        return out


class FakeStt:
    def __init__(self, words: list[str], seconds: float = 0.05) -> None:
        self.words = words
        self.seconds = seconds
        self.calls: list[float] = []

    def transcribe(
        self, audio: npt.NDArray[np.float32], language: str | None = "", *,
        urgent: bool = True, abandoned: threading.Event | None = None,
        initial_prompt: str | None = None,
    ) -> Transcription:  # fmt: skip
        self.calls.append(len(audio) / 16000)
        time.sleep(self.seconds)
        # The transcript grows with the audio: one word per 0.3 s heard.
        n = max(1, min(len(self.words), round(len(audio) / 16000 / 0.3)))
        return Transcription(" ".join(self.words[:n]) + ".", "en", len(audio) / 16000)


class FakeLlmSession:
    def __init__(self) -> None:
        self.prompts: list[list[dict[str, str]]] = []
        self.prefills: list[list[dict[str, str]]] = []

    def prefill(self, messages: list[dict[str, str]]) -> None:
        self.prefills.append(messages)

    def pieces(self, messages: list[dict[str, str]], *, stop: threading.Event) -> Iterator[Piece]:
        self.prompts.append(messages)
        for text in ("Sure, I can help,", "and here is more."):
            time.sleep(0.03)
            if stop.is_set():
                return
            yield Piece(text, 0.01, 0.03)

    def close(self) -> None:
        pass


class FakeLlm:
    def __init__(self) -> None:
        self.used = FakeLlmSession()

    def session(self) -> FakeLlmSession:
        return self.used


class FakeTts:
    def speak(self, text: str, *, urgent: bool = False, trim: bool = False) -> Iterator[bytes]:
        yield tone(500.0, 0.3, amplitude=0.4)


class FakeEngines:
    def __init__(self, stt: FakeStt) -> None:
        self.stt = stt
        self.tts = FakeTts()
        self.llm = FakeLlm()
        self.vad_model = Path("unused")
        self.gate = ComputeGate()

    def plan(self, line: LineConfig | None) -> LinePlan:
        return LinePlan("l", "en", "", "")

    def stt_for(self, plan: LinePlan) -> FakeStt:
        return self.stt

    def voice(self, name: str) -> FakeTts:
        return self.tts

    def voice_for_language(self, language: str) -> FakeTts | None:
        return self.tts


class FakeCall:
    """The agent's side of a call: frames in, played audio out (drained in real time)."""

    def __init__(self) -> None:
        self.sip_headers = {LINE_HEADER: "l", CALL_HEADER: "c1"}
        self.call_id = "c1"
        self.frames_in: asyncio.Queue[bytes | None] = asyncio.Queue()
        self.played: list[tuple[float, int]] = []
        self.cleared: list[float] = []
        self._buf = bytearray()

    async def frames(self) -> AsyncIterator[bytes]:
        while (frame := await self.frames_in.get()) is not None:
            yield frame

    async def dtmf(self) -> AsyncIterator[str]:
        await asyncio.Event().wait()
        yield ""

    def play(self, pcm: bytes) -> None:
        self.played.append((time.monotonic(), len(pcm)))
        self._buf += pcm

    @property
    def playback_pending_bytes(self) -> int:
        return len(self._buf)

    def clear_playback(self) -> None:
        self.cleared.append(time.monotonic())
        self._buf.clear()

    async def wait_played(self) -> None:
        while self._buf:
            del self._buf[:320]
            await asyncio.sleep(0.02)


async def feed(call: FakeCall, pattern: str) -> None:
    """'#' = 20 ms of speech, '.' = 20 ms of silence, in real time."""
    t0 = time.monotonic()
    for i, ch in enumerate(pattern):
        call.frames_in.put_nowait(SPEECH if ch == "#" else SILENCE)
        await asyncio.sleep(max(0.0, t0 + (i + 1) * 0.02 - time.monotonic()))


@pytest.fixture
def cfg() -> Config:
    return Config(lines=(LineConfig(name="l", extension="100"),))


async def run_call(
    cfg: Config, stt: FakeStt, script: list[str], monkeypatch: pytest.MonkeyPatch
) -> tuple[Conversation, FakeCall, FakeEngines, list[float]]:
    """Feeds `script` (patterns); returns the conversation, the call, the engines and when
    each pattern ended."""
    monkeypatch.setattr(agent_mod, "SileroVad", EnergyVad)
    engines = FakeEngines(stt)
    done: list[Conversation] = []
    agent = VoiceAgent(cfg, engines, on_done=done.append)  # type: ignore[arg-type]
    call = FakeCall()
    task = asyncio.create_task(agent(call))  # type: ignore[arg-type]
    ends = []
    for pattern in script:
        await feed(call, pattern)
        ends.append(time.monotonic())
    call.frames_in.put_nowait(None)
    await asyncio.wait_for(task, 5)
    return done[0], call, engines, ends


def speech(seconds: float) -> str:
    return "#" * round(seconds / 0.02)


def quiet(seconds: float) -> str:
    return "." * round(seconds / 0.02)


async def test_the_answer_is_ready_early_but_held_until_the_endpoint(
    cfg: Config, monkeypatch: pytest.MonkeyPatch
) -> None:
    stt = FakeStt(["what", "are", "your", "opening", "hours"])
    # 0.1 s of silence: the answer is prepared by then, but the endpoint has not fired.
    convo, call, _, ends = await run_call(
        cfg, stt, [speech(1.2), quiet(0.1), quiet(1.5)], monkeypatch
    )
    first_audio = call.played[0][0]
    end_of_speech = ends[0]
    assert first_audio > ends[1]  # nothing played during the endpoint wait
    (timing,) = convo.timings
    assert timing.speculative and timing.held_ms > 0
    assert timing.endpoint_wait_ms >= 256
    # Released as soon as the endpoint confirmed: the answer time is the endpoint wait.
    assert timing.answer_ms < timing.endpoint_wait_ms + 100
    assert first_audio - end_of_speech < (timing.endpoint_wait_ms + 200) / 1000
    assert timing.answer_ms < timing.stages_ms + 1  # overlap: below the sum of the stages
    assert [(t.role, t.text) for t in convo.turns] == [
        ("caller", "what are your opening."),
        ("agent", "Sure, I can help, and here is more."),
    ]


async def test_a_caller_who_goes_on_after_a_pause_gets_one_answer_to_everything(
    cfg: Config, monkeypatch: pytest.MonkeyPatch
) -> None:
    stt = FakeStt(["hi", "I", "want", "to", "book", "tuesday"])
    convo, call, engines, ends = await run_call(
        cfg, stt, [speech(0.6), quiet(0.2), speech(1.8), quiet(1.5)], monkeypatch
    )
    assert len(stt.calls) == 2  # at each pause; the first answer was thrown away
    assert all(t > ends[1] for t, _ in call.played)  # nothing of it was ever played
    callers = [t.text for t in convo.turns if t.role == "caller"]
    assert callers == ["hi I want to book tuesday."]
    assert len(convo.timings) == 1
    # The LLM's last prompt is the whole turn.
    assert engines.llm.used.prompts[-1][-1]["content"] == callers[0]


async def test_barge_in_stops_the_answer_and_keeps_what_both_said(
    cfg: Config, monkeypatch: pytest.MonkeyPatch
) -> None:
    stt = FakeStt(["where", "is", "the", "clinic"])
    convo, call, _, ends = await run_call(
        cfg, stt, [speech(1.2), quiet(0.55), speech(0.5), quiet(1.2)], monkeypatch
    )
    # The answer started during the 0.55 s pause; the caller spoke over it.
    assert call.played and call.played[0][0] < ends[1]
    assert call.cleared and call.cleared[0] - ends[1] < 0.2  # stopped within 200 ms
    interrupted = [t for t in convo.turns if t.role == "agent" and t.interrupted]
    assert interrupted and interrupted[0].text.startswith("Sure, I can help")
    callers = [t.text for t in convo.turns if t.role == "caller"]
    assert len(callers) == 2 and callers[0] == "where is the clinic."


async def test_words_confirmed_while_still_being_transcribed_are_kept_on_barge_in(
    cfg: Config, monkeypatch: pytest.MonkeyPatch
) -> None:
    stt = FakeStt(["my", "name", "is", "anna"], seconds=0.8)  # slower than the endpoint
    convo, _, _, _ = await run_call(
        cfg, stt, [speech(1.2), quiet(0.5), speech(0.4), quiet(1.8)], monkeypatch
    )
    callers = [t.text for t in convo.turns if t.role == "caller"]
    assert callers[0] == "my name is anna."  # recorded although never answered
    assert len(callers) == 2
    assert len(convo.timings) == 1  # only the second turn was answered


def test_the_stand_ins_match_the_real_signatures() -> None:
    import inspect

    from appliance.voice.llm import LlmSession
    from appliance.voice.stt import Stt
    from appliance.voice.tts import Tts

    def params(fn: Any) -> list[str]:
        return list(inspect.signature(fn).parameters)

    assert params(FakeStt.transcribe) == params(Stt.transcribe)
    assert params(FakeTts.speak) == params(Tts.speak)
    assert params(FakeLlmSession.pieces)[:3] == params(LlmSession.pieces)[:3]
    assert params(FakeLlmSession.prefill) == params(LlmSession.prefill)
