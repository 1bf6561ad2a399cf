"""The voice agent on one call: listen, decide the turn is over, answer while still thinking.

Latency comes from overlapping the stages instead of running them one after another:
- at the first silent VAD window the caller's words are transcribed and the answer is prepared
  at once (speculation): the LLM's first clause and Piper's audio for it are ready while the
  endpoint is still waiting to be sure the caller has finished. The audio is held until the
  endpoint confirms the turn, and thrown away if the caller goes on speaking (the next pause
  starts over with all the words). What was transcribed at the pause is the whole turn: after it
  there was only silence;
- a transcript that reads as a complete sentence shortens the endpoint wait;
- the LLM's reply is cut into pieces as tokens arrive (the first at a clause boundary) and each
  is spoken by Piper while the LLM goes on; the call's own llama.cpp context keeps the system
  prompt and the conversation evaluated between turns;
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
from appliance.voice.dialogue import listen
from appliance.voice.dialogue.calendar import Calendar, MemoryCalendar, StoreCalendar
from appliance.voice.dialogue.engine import DialogueEngine, Reply
from appliance.voice.dialogue.extract import LlamaIntent
from appliance.voice.engines import VoiceEngines
from appliance.voice.languages import AUTO, instruction
from appliance.voice.llm import LlmSession, Piece, conversation, trim_history
from appliance.voice.stt import Transcription
from appliance.voice.vad import Endpointer, SileroVad, looks_complete, looks_unfinished

log = logging.getLogger(__name__)

PRE_ROLL_S = 0.5  # audio kept from before the VAD fired: word onsets are quiet, and Silero
# is unsure of some ("Where is the…" reached 0.5 only at "clinic")


@dataclass
class Turn:
    role: str  # "caller" | "agent"
    text: str
    at_s: float
    interrupted: bool = False


@dataclass
class TurnTiming:
    """One answered turn. The stage times are each stage's own duration; with speculation they
    overlap the endpoint wait, so `answer_ms` can be less than their sum."""

    endpoint_wait_ms: float
    """Silence the endpoint waited before confirming the turn."""
    stt_ms: float
    """Whisper on the turn's audio (started at the first silent window)."""
    llm_first_ms: float
    """LLM request → its first speakable piece (the first clause)."""
    tts_first_ms: float
    """That piece → Piper's first audio for it."""
    answer_ms: float
    """End of caller speech → the agent's first audio queued on the call."""
    llm_ttft_ms: float = 0.0
    """LLM request → first token (evaluation of the turn's new prompt tokens included)."""
    held_ms: float = 0.0
    """How long the answer's audio was ready before the endpoint confirmed the turn."""
    speculative: bool = False
    """The answer was prepared before the endpoint fired (audio held, then released)."""

    @property
    def stages_ms(self) -> float:
        return self.endpoint_wait_ms + self.stt_ms + self.llm_first_ms + self.tts_first_ms


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
    language: str = ""
    """The language the call was held in (the line's, or Whisper's detection on "auto")."""
    dialogue: dict[str, object] | None = None
    """What the playbook's dialogue engine collected (`Outcome.doc()`); None: free-form line."""


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
        calendar: Calendar | None = None,
    ) -> None:
        self.cfg = cfg
        self.engines = engines
        self.on_done = on_done
        self.max_turns = max_turns
        self.recorder = recorder
        self.consent_timeout_s = consent_timeout_s
        self.calendar = calendar or _store_calendar(recorder)
        """Where playbook lines book (the appliance's store when the recorder has one)."""

    async def aclose(self) -> None:
        """Stop the calendar's background work (office calendar writes and retries); what
        waits stays in the store and is written by the next start."""
        close = getattr(self.calendar, "aclose", None)
        if close is not None:
            await close()

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


@dataclass(eq=False)
class _Pending:
    """A caller turn being answered before the endpoint has confirmed it."""

    audio: npt.NDArray[np.float32]
    go: asyncio.Event = field(default_factory=asyncio.Event)
    """Set when the endpoint confirms the turn: held audio may play, side effects may happen."""
    stop: threading.Event = field(default_factory=threading.Event)
    """Set when the turn is abandoned (the caller went on) or the call ends: workers stop."""
    t_end: float = 0.0
    silence_ms: float = 0.0
    task: asyncio.Task[None] | None = None
    """The turn: transcript, then the answer."""
    answer: asyncio.Task[None] | None = None
    """The answer being prepared or spoken (barge-in cancels it)."""


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
        plan = self.engines.plan(line)
        self.stt = self.engines.stt_for(plan)
        self.tts = self.engines.voice(plan.voice)
        self.language: str | None = None if plan.language == AUTO else plan.language
        """None until Whisper has detected the caller's language (an "auto" line)."""
        convo.language = self.language or ""
        self.system = self._prompt() + instruction(plan.language)
        self.history: list[dict[str, str]] = []
        """The conversation after the system prompt (user/assistant messages)."""
        self.llm: LlmSession | None = None
        self.prefilling: asyncio.Future[None] | None = None
        self.utterance: list[npt.NDArray[np.float32]] = []
        self.pre_roll: list[npt.NDArray[np.float32]] = []
        self.pending: _Pending | None = None
        """The turn being prepared while the endpoint waits."""
        self.confirmed: _Pending | None = None
        """The last turn the endpoint confirmed (until the caller speaks again)."""
        self.turn_tasks: set[asyncio.Task[None]] = set()
        self.responding: asyncio.Task[None] | None = None
        self.speaking_text = ""
        self.consent: asyncio.Future[tuple[str, str]] | None = None
        self.dialogue: DialogueEngine | None = None
        """The line's playbook engine: what the agent says comes from it, not from the LLM."""
        self.quiet_since = time.monotonic()
        """When the agent last finished speaking (or the caller last started): silence clock."""

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
        # The call's own LLM context, with the system prompt evaluated while the greeting plays.
        self.llm = await asyncio.to_thread(self.engines.llm.session)
        if self.line is not None and self.line.playbook is not None:
            self.dialogue = self._dialogue_engine()
        else:
            self._prefill()
        dtmf = asyncio.create_task(self._collect_dtmf())
        listening = asyncio.create_task(self._listen())
        silence = asyncio.create_task(self._watch_silence()) if self.dialogue else None
        try:
            asks = self.line is not None and self.line.recording == "after-consent"
            if asks and not await self._ask_consent():
                await self._speak_text("No problem. This call will not be recorded. Goodbye.")
                return
            greeting = self.line.greeting_text if self.line is not None else ""
            if self.dialogue is not None:
                greeting = self.dialogue.greet(greeting).text
            if greeting:
                self.responding = asyncio.create_task(self._speak_text(greeting))
            await listening
        finally:
            self._abandon()
            tasks = [dtmf, listening, *self.turn_tasks, *([silence] if silence else [])]
            if self.responding is not None:
                tasks.append(self.responding)
            for task in tasks:
                task.cancel()
            # Turn tasks stop their worker threads before they finish: after this gather no
            # thread uses the LLM context any more, and it can go back to the pool.
            await asyncio.gather(*tasks, return_exceptions=True)
            if self.prefilling is not None:
                with contextlib.suppress(Exception):
                    await self.prefilling
            await asyncio.to_thread(self.llm.close)
            if self.dialogue is not None:
                await self._dialogue_done()

    def _prefill(self) -> None:
        """Evaluate the conversation so far in the background (after the last prefill)."""
        assert self.llm is not None
        llm, messages, previous = self.llm, conversation(self.system, self.history), self.prefilling

        async def run() -> None:
            if previous is not None:
                with contextlib.suppress(Exception):
                    await previous
            await asyncio.to_thread(llm.prefill, messages)

        self.prefilling = asyncio.ensure_future(run())

    async def _listen(self) -> None:
        async for frame in self.call.frames():
            self._on_frame(frame)
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

    # ---- hearing: VAD, endpoint, speculation (on the event loop, frame by frame) -----------

    def _on_frame(self, frame: bytes) -> None:
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
                self.quiet_since = time.monotonic()
                self.utterance = list(self.pre_roll)
                self._barge_in()
            elif event == "pause":
                self._speculate()
            elif event == "resume":
                self._abandon()
            elif event == "end":
                self._end_of_turn()

    def _barge_in(self) -> None:
        """The caller speaks: whatever the agent is saying or about to say stops now."""
        confirmed, self.confirmed = self.confirmed, None
        if confirmed is not None:
            # Its words are still recorded (`_turn` goes on to the commit); only the answer stops.
            confirmed.stop.set()
            if confirmed.answer is not None:
                confirmed.answer.cancel()
        if self.call.playback_pending_bytes > 0 or (self.responding and not self.responding.done()):
            self.call.clear_playback()
            if self.responding is not None:
                self.responding.cancel()
        if self.speaking_text:
            self.convo.turns.append(Turn("agent", self.speaking_text, self.now(), interrupted=True))
            # What the caller heard of it is part of the conversation the LLM continues.
            self.history.append({"role": "assistant", "content": self.speaking_text})
            self.speaking_text = ""

    def _audio(self) -> npt.NDArray[np.float32]:
        return np.concatenate(self.utterance) if self.utterance else np.zeros(0, np.float32)

    def _speculate(self) -> _Pending:
        """First silent window: transcribe what was said and prepare the answer now."""
        self._abandon()
        pending = _Pending(audio=self._audio())
        if self.dialogue is not None and self.dialogue.expecting == "spelling":
            # Callers pause between first name and surname: the longer wait, until the
            # transcript spells both (below).
            self.endpoint.sentence_unfinished = True
        pending.task = asyncio.create_task(self._turn(pending))
        self.turn_tasks.add(pending.task)
        pending.task.add_done_callback(self.turn_tasks.discard)
        self.pending = pending
        return pending

    def _abandon(self) -> None:
        """The caller went on speaking: the prepared answer is not for what they will say."""
        pending, self.pending = self.pending, None
        if pending is not None:
            pending.stop.set()
            if pending.task is not None:
                pending.task.cancel()

    def _end_of_turn(self) -> None:
        pending = self.pending if self.pending is not None else self._speculate()
        self.pending = None
        pending.t_end = time.monotonic()
        pending.silence_ms = float(self.endpoint.last_silence_ms)
        pending.go.set()
        self.confirmed = pending
        self.utterance = []

    # ---- one turn: transcript, then the answer (held until the endpoint confirms) ----------

    def _hear(self, pending: _Pending, expecting: str, prompt: str | None) -> Transcription:
        near = self.dialogue.heard_name if self.dialogue is not None else None
        return listen.hear(
            self.stt, pending.audio, self.language, expecting, prompt=prompt, near=near,
            abandoned=pending.stop, speller=listen.speller_for(self.stt),
        )  # fmt: skip

    async def _turn(self, pending: _Pending) -> None:
        t_stt = time.monotonic()
        # A playbook line hears each turn for what its engine asked (a day, a spelt name).
        expecting = self.dialogue.expecting if self.dialogue is not None else ""
        if self.dialogue is not None and expecting:
            prompt = listen.prompt_for(expecting, self.dialogue.pb)
            result = await asyncio.to_thread(self._hear, pending, expecting, prompt)
        else:
            result = await asyncio.to_thread(
                self.stt.transcribe, pending.audio, self.language, abandoned=pending.stop
            )
        stt_ms = (time.monotonic() - t_stt) * 1000
        text = result.text.strip()
        if self.pending is pending and expecting == "spelling":
            whole = listen.spelling_complete(text)
            self.endpoint.sentence_complete, self.endpoint.sentence_unfinished = whole, not whole
        elif self.pending is pending:
            self.endpoint.sentence_complete = looks_complete(text)
            self.endpoint.sentence_unfinished = looks_unfinished(text)
        if not text:
            return
        if self.language is None:
            await self._language_heard(result)
        asking_consent = self.consent is not None and not self.consent.done()
        if self.dialogue is not None and not asking_consent:
            await self._dialogue_turn(pending, text, stt_ms)
            return
        if asking_consent or (self._can_transfer() and wants_a_human(text)):
            await pending.go.wait()
            self._commit(text)
            if asking_consent:
                decision = consent_from_speech(text)
                if decision is not None and self.consent is not None and not self.consent.done():
                    self.consent.set_result((decision, "speech"))
            elif not pending.stop.is_set():
                self.responding = asyncio.create_task(self._hand_over())
            return
        messages = conversation(self.system, [*self.history, {"role": "user", "content": text}])
        pending.answer = asyncio.create_task(self._respond(pending, messages, stt_ms))
        try:
            await pending.go.wait()
        except asyncio.CancelledError:
            # Abandoned: wait for the answer's worker to stop, it uses the call's LLM context.
            pending.answer.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await pending.answer
            raise
        # Confirmed: the caller's words count even if they talk over the answer.
        self._commit(text)
        with contextlib.suppress(asyncio.CancelledError):
            await pending.answer

    async def _language_heard(self, result: Transcription) -> None:
        """An "auto" line: the first words fix the call's language, and the voice follows."""
        self.language = result.language or "en"
        self.convo.language = self.language
        voice = await asyncio.to_thread(self.engines.voice_for_language, self.language)
        if voice is None:
            log.warning(
                "call %s: the caller speaks %r and no voice for it is installed; "
                "answering in English",
                self.convo.call_id,
                self.language,
            )
            return
        self.tts = voice
        self.system += instruction(self.language)

    def _commit(self, text: str) -> None:
        self.convo.turns.append(Turn("caller", text, self.now()))
        self.history.append({"role": "user", "content": text})
        trim_history(self.history)

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

    async def _respond(
        self, pending: _Pending, messages: list[dict[str, str]], stt_ms: float
    ) -> None:
        """Generate and synthesise the answer now; play it once the endpoint confirms."""
        assert self.llm is not None
        loop = asyncio.get_running_loop()
        queue: asyncio.Queue[tuple[Piece, bytes, float, float] | None] = asyncio.Queue()
        stop, llm, tts = pending.stop, self.llm, self.tts

        def produce() -> None:
            # LLM pieces feed Piper in this one worker: the model steps run one at a time anyway
            # (the compute gate), and the next piece is generated while this one plays.
            try:
                first = True
                # closing(): the call's LLM context is free again the moment this returns.
                with contextlib.closing(llm.pieces(messages, stop=stop)) as pieces:
                    for piece in pieces:
                        t_piece = time.monotonic()
                        for pcm in tts.speak(piece.text, urgent=first, trim=first):
                            if stop.is_set():
                                return
                            item = (piece, pcm, t_piece, time.monotonic())
                            loop.call_soon_threadsafe(queue.put_nowait, item)
                        first = False
                        if stop.is_set():
                            return
            finally:
                loop.call_soon_threadsafe(queue.put_nowait, None)

        worker = loop.run_in_executor(None, produce)
        spoken: list[str] = []
        committed = False
        try:
            while (item := await queue.get()) is not None:
                piece, pcm, t_piece, t_audio = item
                if not committed:
                    ready = time.monotonic()
                    await pending.go.wait()  # held until the endpoint confirms the turn
                    if stop.is_set():
                        return
                    now = time.monotonic()
                    committed = True
                    self.convo.timings.append(
                        TurnTiming(
                            endpoint_wait_ms=pending.silence_ms,
                            stt_ms=stt_ms,
                            llm_first_ms=piece.ready_s * 1000,
                            tts_first_ms=(t_audio - t_piece) * 1000,
                            answer_ms=(now - pending.t_end) * 1000 + pending.silence_ms,
                            llm_ttft_ms=piece.first_token_s * 1000,
                            held_ms=max(0.0, pending.t_end - ready) * 1000,
                            speculative=ready < pending.t_end,
                        )
                    )
                if not spoken or spoken[-1] != piece.text:
                    spoken.append(piece.text)
                    self.speaking_text = " ".join(spoken)
                self.call.play(pcm)
            if not committed:  # the LLM said nothing
                return
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
        tts = self.tts
        pcm = b"".join(
            await asyncio.to_thread(lambda: list(tts.speak(text, urgent=True, trim=True)))
        )
        self.speaking_text = text
        self.call.play(pcm)
        await self.call.wait_played()
        self.convo.turns.append(Turn("agent", text, self.now()))
        self.history.append({"role": "assistant", "content": text})
        self.speaking_text = ""
        self.quiet_since = time.monotonic()
        if self.llm is not None and self.dialogue is None:
            self._prefill()  # the greeting, the consent question: words the LLM did not write

    # ---- playbook lines: the dialogue engine answers (appliance.voice.dialogue) ------------

    def _dialogue_engine(self) -> DialogueEngine:
        assert self.line is not None and self.line.playbook is not None and self.llm is not None
        calendar = self.agent.calendar
        if calendar is None:
            log.warning("line %s: no calendar store; bookings stay in memory", self.line.name)
            calendar = MemoryCalendar()
        return DialogueEngine(
            self.line.playbook,
            line=self.line.name,
            call_id=self.convo.call_id,
            calendar=calendar,
            region=self.agent.cfg.privacy.default_region,
            caller=getattr(self.call, "remote_caller_id_number", "") or None,
            can_transfer=self._can_transfer(),
            # The call's own llama.cpp context: only grammar-constrained intent choices use it.
            intents=LlamaIntent(self.llm.llama),
        )

    async def _dialogue_turn(self, pending: _Pending, text: str, stt_ms: float) -> None:
        """The engine's reply to a confirmed turn. Not prepared during the endpoint wait: a
        turn may book a slot, and a speculative answer must have no side effects; the rules
        take milliseconds, so the reply's cost is Piper's first audio."""
        assert self.dialogue is not None
        await pending.go.wait()
        self._commit(text)
        if pending.stop.is_set():
            return
        t0 = time.monotonic()
        reply = await self.dialogue.hear(text)
        engine_ms = (time.monotonic() - t0) * 1000
        pending.answer = asyncio.create_task(self._dialogue_say(reply, pending, stt_ms, engine_ms))
        self.responding = pending.answer
        with contextlib.suppress(asyncio.CancelledError):
            await pending.answer

    async def _dialogue_say(
        self, reply: Reply, pending: _Pending | None, stt_ms: float, engine_ms: float
    ) -> None:
        if reply.text:
            t_tts = time.monotonic()
            tts = self.tts
            pcm = b"".join(
                await asyncio.to_thread(lambda: list(tts.speak(reply.text, urgent=True, trim=True)))
            )
            if pending is not None:
                now = time.monotonic()
                self.convo.timings.append(
                    TurnTiming(
                        endpoint_wait_ms=pending.silence_ms,
                        stt_ms=stt_ms,
                        llm_first_ms=engine_ms,
                        tts_first_ms=(now - t_tts) * 1000,
                        answer_ms=(now - pending.t_end) * 1000 + pending.silence_ms,
                    )
                )
            self.speaking_text = reply.text
            self.call.play(pcm)
            await self.call.wait_played()
            self.convo.turns.append(Turn("agent", reply.text, self.now()))
            self.speaking_text = ""
            self.quiet_since = time.monotonic()
        if reply.action == "transfer":
            await self._dialogue_transfer()
        elif reply.action == "hangup":
            hangup = getattr(self.call, "hangup", None)
            if hangup is not None:
                with contextlib.suppress(CallvaultError):
                    await hangup()

    async def _dialogue_transfer(self) -> None:
        assert self.line is not None
        if self.agent.recorder is None or not self.line.transfer_to:
            return
        self.convo.transferred_to = self.line.transfer_to
        try:
            await self.agent.recorder.transfer(self.convo.call_id, self.line.transfer_to)
            log.info("call %s: handed over to %s", self.convo.call_id, self.line.transfer_to)
        except CallvaultError as exc:
            self.convo.transferred_to = ""
            log.error("call %s: transfer failed: %s", self.convo.call_id, exc)  # noqa: TRY400
            await self._speak_text("Sorry, I cannot reach a colleague right now.")

    async def _watch_silence(self) -> None:
        """A caller who says nothing after the agent spoke: the engine asks again, and hands
        over after the playbook's failed attempts."""
        assert self.dialogue is not None and self.line is not None and self.line.playbook
        limit = self.line.playbook.silence_s
        while not self.dialogue.ended:
            await asyncio.sleep(0.25)
            busy = (
                self.endpoint.in_speech
                or self.pending is not None
                or self.turn_tasks
                or (self.responding is not None and not self.responding.done())
                or self.call.playback_pending_bytes > 0
            )
            if busy:
                self.quiet_since = time.monotonic()
            elif time.monotonic() - self.quiet_since >= limit:
                reply = await self.dialogue.silence()
                self.quiet_since = time.monotonic()
                self.responding = asyncio.create_task(self._dialogue_say(reply, None, 0.0, 0.0))

    async def _dialogue_done(self) -> None:
        """The call is over: the outcome goes with the conversation and into the store (the
        post-call report is filled from it; an opt-out there reaches the do-not-call list)."""
        assert self.dialogue is not None and self.line is not None
        self.dialogue.abandon()
        doc = self.dialogue.out.doc()
        self.convo.dialogue = doc
        calendar = self.agent.calendar
        if isinstance(calendar, StoreCalendar):
            try:
                await calendar.save_outcome(
                    call_id=self.convo.call_id, line=self.line.name, doc=doc,
                    caller=self.dialogue.caller,
                )  # fmt: skip
            except CallvaultError as exc:
                log.error("call %s: dialogue outcome not stored: %s", self.convo.call_id, exc)  # noqa: TRY400


def _store_calendar(recorder: Recorder | None) -> Calendar | None:
    """The telephony service (the usual recorder) carries the store and the privacy engine."""
    db, privacy = getattr(recorder, "db", None), getattr(recorder, "privacy", None)
    if db is None or privacy is None:
        return None
    return StoreCalendar(db, privacy)
