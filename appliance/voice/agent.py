"""The voice agent on one call: listen, decide the turn is over, answer while still thinking.

Latency comes from overlapping the stages instead of running them one after another:
- the caller's audio is transcribed speculatively at the first silent VAD window, so the
  transcript is usually ready when the endpoint fires (and a complete sentence shortens the
  endpoint wait);
- the LLM's reply is cut into sentences as tokens arrive and each is spoken by Piper while the
  LLM goes on;
- caller speech during the agent's audio stops it at once (barge-in) and the interrupted text
  is recorded as such.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Protocol

import numpy as np
import numpy.typing as npt

from appliance.config import Config, LineConfig
from appliance.errors import CallvaultError
from appliance.telephony.greeter import CALL_HEADER, LINE_HEADER
from appliance.telephony.sip import SipCall
from appliance.voice.audio import Upsampler
from appliance.voice.engines import VoiceEngines
from appliance.voice.stt import Transcription
from appliance.voice.vad import Endpointer, SileroVad

log = logging.getLogger(__name__)

PRE_ROLL_S = 0.3  # audio kept from before the VAD fired: word onsets are quiet


@dataclass
class Turn:
    role: str  # "caller" | "agent"
    text: str
    at_s: float
    interrupted: bool = False


@dataclass
class TurnTiming:
    endpoint_wait_ms: float
    stt_ms: float
    llm_first_ms: float
    tts_first_ms: float
    answer_ms: float
    """End of caller speech → the agent's first audio queued on the call."""


class Recorder(Protocol):
    """What the agent needs from telephony to honour a line's recording policy."""

    async def start_recording(self, call_id: str, line: str) -> None: ...

    async def transfer(self, call_id: str, extension: str) -> None: ...

    async def record_consent(
        self, *, call_id: str, line: str, decision: str, method: str, prompt: str,
        asked_at: float, decided_at: float,
    ) -> None: ...  # fmt: skip


YES = ("yes", "yeah", "yep", "sure", "ok", "okay", "agree", "i agree", "fine", "go ahead")
NO = ("no", "nope", "don't", "do not", "not agree", "disagree", "refuse")


_HUMAN = ("human", "person", "real person", "someone", "somebody", "operator", "receptionist")
_ASK = ("speak", "talk", "transfer", "connect", "put me through", "get me")


def wants_a_human(text: str) -> bool:
    """The caller asks to talk to a person (the agent hands over instead of answering)."""
    t = text.lower()
    return any(h in t for h in _HUMAN) and any(a in t for a in _ASK)


def consent_from_speech(text: str) -> str | None:
    """ "given", "refused" or None (unclear) from what the caller said."""
    words = " ".join("".join(c for c in text.lower() if c.isalpha() or c in " '").split())
    if any(words == n or words.startswith(n + " ") or f" {n} " in f" {words} " for n in NO):
        return "refused"
    if any(words == y or words.startswith(y + " ") or f" {y} " in f" {words} " for y in YES):
        return "given"
    return None


@dataclass
class Conversation:
    call_id: str
    line: str
    consent: str = ""
    """"given" / "refused" / "no-answer" on after-consent lines."""
    transferred_to: str = ""
    turns: list[Turn] = field(default_factory=list)
    timings: list[TurnTiming] = field(default_factory=list)
    dtmf: str = ""


class VoiceAgent:
    def __init__(
        self,
        cfg: Config,
        engines: VoiceEngines,
        *,
        on_done: Callable[[Conversation], None] | None = None,
        max_turns: int = 50,
        recorder: Recorder | None = None,
        consent_timeout_s: float = 15.0,
    ) -> None:
        self.cfg = cfg
        self.engines = engines
        self.on_done = on_done
        self.max_turns = max_turns
        self.recorder = recorder
        self.consent_timeout_s = consent_timeout_s

    async def __call__(self, call: SipCall) -> None:
        headers = {k.lower(): v for k, v in call.sip_headers.items()}
        line_name = headers.get(LINE_HEADER.lower(), "")
        line = self.cfg.line_by_name(line_name)
        convo = Conversation(call_id=headers.get(CALL_HEADER.lower(), call.call_id), line=line_name)
        session = _Session(self, call, line, convo)
        try:
            await session.run()
        finally:
            if self.on_done is not None:
                self.on_done(convo)


class _Session:
    def __init__(
        self, agent: VoiceAgent, call: SipCall, line: LineConfig | None, convo: Conversation
    ) -> None:
        self.agent = agent
        self.engines = agent.engines
        self.call = call
        self.line = line
        self.convo = convo
        self.t0 = time.monotonic()
        self.vad = SileroVad(self.engines.vad_model)
        self.endpoint = Endpointer()
        self.up = Upsampler()
        self.history: list[dict[str, str]] = [{"role": "system", "content": self._prompt()}]
        self.utterance: list[npt.NDArray[np.float32]] = []
        self.pre_roll: list[npt.NDArray[np.float32]] = []
        self.speculative: tuple[int, asyncio.Task[Transcription]] | None = None
        self.responding: asyncio.Task[None] | None = None
        self.speaking_text = ""
        self.consent: asyncio.Future[tuple[str, str]] | None = None

    def _prompt(self) -> str:
        if self.line is not None and self.line.system_prompt:
            return self.line.system_prompt
        return (
            "You are the phone receptionist of a small business. Answer in one or two short, "
            "friendly sentences. Never invent facts, prices or times; offer to take a message."
        )

    def now(self) -> float:
        return time.monotonic() - self.t0

    async def run(self) -> None:
        dtmf = asyncio.create_task(self._collect_dtmf())
        listening = asyncio.create_task(self._listen())
        try:
            asks = self.line is not None and self.line.recording == "after-consent"
            if asks and not await self._ask_consent():
                await self._speak_text("No problem. This call will not be recorded. Goodbye.")
                return
            greeting = self.line.greeting_text if self.line is not None else ""
            if greeting:
                self.responding = asyncio.create_task(self._speak_text(greeting))
            await listening
        finally:
            for task in (
                dtmf,
                listening,
                self.responding,
                self.speculative[1] if self.speculative else None,
            ):
                if task is not None:
                    task.cancel()
            await asyncio.gather(dtmf, listening, return_exceptions=True)

    async def _listen(self) -> None:
        async for frame in self.call.frames():
            await self._on_frame(frame)
            if len(self.convo.timings) >= self.agent.max_turns:
                break

    async def _collect_dtmf(self) -> None:
        async for digit in self.call.dtmf():
            self.convo.dtmf += digit
            if self.consent is not None and not self.consent.done() and digit in "12":
                self.consent.set_result(("given" if digit == "1" else "refused", "dtmf"))

    async def _ask_consent(self) -> bool:
        """Nothing is recorded until the caller agrees; their answer is stored either way."""
        assert self.line is not None
        loop = asyncio.get_running_loop()
        self.consent = loop.create_future()
        asked = time.time()
        await self._speak_text(self.line.consent_prompt)
        try:
            decision, method = await asyncio.wait_for(
                asyncio.shield(self.consent), self.agent.consent_timeout_s
            )
        except TimeoutError:
            decision, method = "no-answer", "timeout"
        self.consent = None
        self.convo.consent = decision
        recorder = self.agent.recorder
        if recorder is not None:
            await recorder.record_consent(
                call_id=self.convo.call_id,
                line=self.line.name,
                decision=decision,
                method=method,
                prompt=self.line.consent_prompt,
                asked_at=asked,
                decided_at=time.time(),
            )
            if decision == "given":
                await recorder.start_recording(self.convo.call_id, self.line.name)
        log.info("call %s: recording consent %s (%s)", self.convo.call_id, decision, method)
        return decision == "given"

    async def _on_frame(self, frame: bytes) -> None:
        samples = self.up(frame)
        if self.endpoint.in_speech:
            self.utterance.append(samples)
        else:
            self.pre_roll.append(samples)
            keep = int(PRE_ROLL_S * 1000 / 20)
            del self.pre_roll[:-keep]
        for prob in self.vad.feed(samples):
            event = self.endpoint.update(prob)
            if event == "start":
                self.utterance = list(self.pre_roll)
                self.speech_started = self.now()
                self._barge_in()
            elif event == "pause":
                self._speculate()
            elif event == "resume":
                self.speculative = None
            elif event == "end":
                await self._end_of_turn()

    def _barge_in(self) -> None:
        if self.call.playback_pending_bytes > 0 or (self.responding and not self.responding.done()):
            self.call.clear_playback()
            if self.responding is not None:
                self.responding.cancel()
            if self.speaking_text:
                self.convo.turns.append(
                    Turn("agent", self.speaking_text, self.now(), interrupted=True)
                )
                self.speaking_text = ""

    def _audio(self) -> npt.NDArray[np.float32]:
        return np.concatenate(self.utterance) if self.utterance else np.zeros(0, np.float32)

    def _speculate(self) -> None:
        audio = self._audio()
        task = asyncio.create_task(asyncio.to_thread(self.engines.stt.transcribe, audio))
        self.speculative = (len(audio), task)
        task.add_done_callback(self._maybe_complete)

    def _maybe_complete(self, task: asyncio.Task[Transcription]) -> None:
        if task.cancelled() or task.exception() is not None:
            return
        if self.speculative is not None and self.speculative[1] is task:
            self.endpoint.sentence_complete = task.result().text.rstrip().endswith((".", "?", "!"))

    async def _end_of_turn(self) -> None:
        t_end = time.monotonic()
        silence_ms = float(self.endpoint.last_silence_ms)
        audio = self._audio()
        # The speculative run covered everything up to the first silent window; what came
        # after is silence, so its transcript is the turn's.
        spec = self.speculative
        self.speculative = None
        t_stt = time.monotonic()
        if spec is not None:
            result = await spec[1]
        else:
            result = await asyncio.to_thread(self.engines.stt.transcribe, audio)
        stt_ms = (time.monotonic() - t_stt) * 1000
        self.utterance = []
        text = result.text.strip()
        if not text:
            return
        self.convo.turns.append(Turn("caller", text, self.now()))
        if self.consent is not None and not self.consent.done():
            decision = consent_from_speech(text)
            if decision is not None:
                self.consent.set_result((decision, "speech"))
            return
        if self._can_transfer() and wants_a_human(text):
            self.responding = asyncio.create_task(self._hand_over())
            return
        self.history.append({"role": "user", "content": text})
        self.responding = asyncio.create_task(self._respond(t_end, silence_ms, stt_ms))

    def _can_transfer(self) -> bool:
        return bool(self.line and self.line.transfer_to and self.agent.recorder is not None)

    async def _hand_over(self) -> None:
        assert self.line is not None and self.agent.recorder is not None
        await self._speak_text("Of course. I will put you through to a colleague now.")
        self.convo.transferred_to = self.line.transfer_to
        log.info("call %s: caller asked for a person; transferring", self.convo.call_id)
        try:
            await self.agent.recorder.transfer(self.convo.call_id, self.line.transfer_to)
            log.info("call %s: transferred to %s", self.convo.call_id, self.line.transfer_to)
        except CallvaultError as exc:
            self.convo.transferred_to = ""
            log.error("call %s: transfer failed: %s", self.convo.call_id, exc)  # noqa: TRY400
            await self._speak_text("Sorry, I cannot reach a colleague right now.")

    async def _respond(self, t_end: float, silence_ms: float, stt_ms: float) -> None:
        loop = asyncio.get_running_loop()
        queue: asyncio.Queue[tuple[str, bytes | None, float] | None] = asyncio.Queue()
        stop = threading.Event()
        t_llm = time.monotonic()

        def produce() -> None:
            # LLM sentences feed Piper in this one worker: on two cores a second thread only
            # adds contention, and the next sentence is generated while this one plays.
            try:
                for sentence in self.engines.llm.sentences(self.history[-9:]):
                    t_sentence = time.monotonic()
                    for pcm in self.engines.tts.speak(sentence):
                        if stop.is_set():
                            return
                        loop.call_soon_threadsafe(queue.put_nowait, (sentence, pcm, t_sentence))
                    if stop.is_set():
                        return
            finally:
                loop.call_soon_threadsafe(queue.put_nowait, None)

        worker = loop.run_in_executor(None, produce)
        spoken: list[str] = []
        first = True
        try:
            while (item := await queue.get()) is not None:
                sentence, pcm, t_sentence = item
                if pcm is None:
                    continue
                if first:
                    now = time.monotonic()
                    self.convo.timings.append(
                        TurnTiming(
                            endpoint_wait_ms=silence_ms,
                            stt_ms=stt_ms,
                            llm_first_ms=(t_sentence - t_llm) * 1000,
                            tts_first_ms=(now - t_sentence) * 1000,
                            answer_ms=(now - t_end) * 1000 + silence_ms,
                        )
                    )
                    first = False
                if not spoken or spoken[-1] != sentence:
                    spoken.append(sentence)
                    self.speaking_text = " ".join(spoken)
                self.call.play(pcm)
            reply = " ".join(spoken)
            await self.call.wait_played()
            self.convo.turns.append(Turn("agent", reply, self.now()))
            self.history.append({"role": "assistant", "content": reply})
            self.speaking_text = ""
        finally:
            stop.set()
            with contextlib.suppress(Exception):
                await worker

    async def _speak_text(self, text: str) -> None:
        pcm = b"".join(await asyncio.to_thread(lambda: list(self.engines.tts.speak(text))))
        self.speaking_text = text
        self.call.play(pcm)
        await self.call.wait_played()
        self.convo.turns.append(Turn("agent", text, self.now()))
        self.history.append({"role": "assistant", "content": text})
        self.speaking_text = ""
