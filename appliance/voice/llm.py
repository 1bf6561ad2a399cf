"""The local LLM (llama.cpp): chat completion streamed and cut into speakable pieces.

Each call gets its own llama.cpp context (`LlmSession`) for its whole length. llama-cpp-python
keeps the tokens it evaluated last and, on the next completion, evaluates only what follows the
longest common prefix; with one context per call that prefix is the line's system prompt and the
conversation so far, so a turn evaluates just the caller's new words (measured on 2 cores:
~80 ms to the first token instead of ~0.7 s for the whole prompt). The system prompt is
evaluated while the greeting plays (`prefill`). Contexts are pooled and reused by later calls:
the weights are memory-mapped once by the OS; a context adds its KV cache (~50 MB at n_ctx 2048
for the 135M model).

The first piece of a reply is cut at the first clause boundary (a comma, or before "and"/"but"
after at least three words) so Piper can start speaking sooner; later pieces are sentences.
"""

from __future__ import annotations

import re
import threading
import time
from collections.abc import Generator, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any, cast

from llama_cpp import Llama

from appliance.voice.gate import ComputeGate

# A sentence ends at . ! ? followed by space; never inside numbers ("2.30") or abbreviations.
_END = re.compile(r"(?<!\b(?:Mr|Ms|Dr|St|No))(?<!\d)[.!?](?=\s)")
# A clause ends at , ; : followed by space, or before "and"/"but" (not "so"/"or": "so glad",
# "one or two" are not clause breaks).
_CLAUSE = re.compile(r"[,;:](?=\s)|(?=\s(?:and|but)\s)")
FIRST_CLAUSE_MIN_WORDS = 3
HISTORY_CHARS = 4000
"""Conversation kept with the system prompt (~1000 tokens of the 2048 context)."""
HISTORY_KEEP_CHARS = 1600
"""When the history outgrows HISTORY_CHARS, the oldest messages go down to this much. Dropping
in one go, not one message per turn, keeps the cached prefix valid for the turns after it:
a window sliding every turn would re-evaluate the whole history every turn (seen: 4-6 s to the
first token under load)."""


def split_point(text: str, first: bool) -> int | None:
    """Where the next speakable piece of `text` ends, or None if it is not complete yet."""
    end = _END.search(text)
    if first:
        for c in _CLAUSE.finditer(text):
            if end is not None and c.start() > end.start():
                break
            if len(text[: c.start()].split()) >= FIRST_CLAUSE_MIN_WORDS:
                return c.end()
    return end.end() if end else None


@dataclass(frozen=True)
class Piece:
    text: str
    first_token_s: float
    """Seconds from the request to the first generated token (prompt evaluation included)."""
    ready_s: float
    """Seconds from the request to this piece being complete."""


class Llm:
    """The GGUF model file and a pool of llama.cpp contexts, one per live call."""

    def __init__(
        self,
        model: Path,
        *,
        gpu: bool = False,
        threads: int = 2,
        n_ctx: int = 2048,
        gate: ComputeGate | None = None,
    ) -> None:
        self.path = model
        self.gpu = gpu
        self.threads = threads
        self.n_ctx = n_ctx
        self.gate = gate or ComputeGate(max(threads, 1))
        self._free: list[Llama] = []
        self._lock = threading.Lock()
        self.model = self._new()
        """A context loaded at start (a broken file fails here); the first call's context."""
        self._free.append(self.model)

    def warm(self, contexts: int) -> None:
        """Create contexts up to `contexts` now, so no call waits ~0.3 s for one at answer."""
        with self._lock:
            missing = contexts - len(self._free)
        for _ in range(missing):
            llama = self._new()
            self._release(llama)

    def _new(self) -> Llama:
        return Llama(
            model_path=str(self.path),
            n_ctx=self.n_ctx,
            n_threads=self.threads,
            n_threads_batch=self.threads,
            n_gpu_layers=-1 if self.gpu else 0,
            verbose=False,
        )

    def session(self) -> LlmSession:
        """A context for one call (blocking when a new one must be created: ~0.3 s)."""
        with self._lock:
            llama = self._free.pop() if self._free else None
        return LlmSession(self, llama if llama is not None else self._new())

    def _release(self, llama: Llama) -> None:
        with self._lock:
            self._free.append(llama)


class LlmSession:
    """One call's context; one completion at a time (a prefill and a turn take turns)."""

    def __init__(self, llm: Llm, llama: Llama) -> None:
        self.llm = llm
        self._llama: Llama | None = llama
        self._threads = llm.threads
        self._busy = threading.Lock()

    def _width(self) -> int:
        """Threads for the next step (the gate narrows it while other processes are busy)."""
        width = self.llm.gate.width(self.llm.threads)
        if width != self._threads:
            self.llama._ctx.set_n_threads(width, width)
            self._threads = width
        return width

    @property
    def llama(self) -> Llama:
        if self._llama is None:
            raise RuntimeError("this LLM session was closed")
        return self._llama

    def close(self) -> None:
        """Back to the pool (the next call's prompt shares at most the system prompt); waits
        for a completion still running on it."""
        with self._busy:
            llama, self._llama = self._llama, None
        if llama is not None:
            self.llm._release(llama)

    def prefill(self, messages: list[dict[str, str]]) -> None:
        """Evaluate the conversation so far now (the system prompt while the greeting plays,
        then what the agent said), so a turn evaluates little more than the caller's words."""
        with self._busy, self.llm.gate(urgent=False, threads=self._width()):
            self.llama.create_chat_completion(messages=cast(Any, messages), max_tokens=1)

    def pieces(
        self,
        messages: list[dict[str, str]],
        *,
        stop: threading.Event,
        max_tokens: int = 80,
    ) -> Generator[Piece, None, None]:
        """Stream the reply as speakable pieces; `stop` ends it between tokens.

        Every token passes the compute gate; tokens up to the first piece are urgent. A reply
        cut by `max_tokens` (a phone answer is one or two sentences) drops its unfinished tail.
        """
        with self._busy:
            yield from self._pieces(messages, stop, max_tokens)

    def _pieces(
        self, messages: list[dict[str, str]], stop: threading.Event, max_tokens: int
    ) -> Iterator[Piece]:
        gate = self.llm.gate
        t0 = time.monotonic()
        stream: Iterator[Any] = iter(
            cast(
                Any,
                self.llama.create_chat_completion(
                    messages=cast(Any, messages),
                    max_tokens=max_tokens,
                    temperature=0.3,
                    stream=True,
                ),
            )
        )
        buf = ""
        first = True
        first_token_s = -1.0
        truncated = False
        try:
            while not stop.is_set():
                with gate(urgent=first, threads=self._width()):
                    chunk = next(stream, None)
                if chunk is None:
                    break
                choice = chunk["choices"][0]
                truncated = choice.get("finish_reason") == "length"
                delta = choice["delta"].get("content") or ""
                if delta and first_token_s < 0:
                    first_token_s = time.monotonic() - t0
                buf += delta
                while (cut := split_point(buf, first)) is not None:
                    piece, buf = buf[:cut].strip(), buf[cut:]
                    if piece:
                        first = False
                        yield Piece(piece, first_token_s, time.monotonic() - t0)
            if buf.strip() and not stop.is_set() and not (truncated and not first):
                yield Piece(buf.strip(), first_token_s, time.monotonic() - t0)
        finally:
            close = getattr(stream, "close", None)
            if close is not None:
                close()


def trim_history(history: list[dict[str, str]]) -> None:
    """Drop the oldest messages (in place) once the history is too long for the context."""
    if sum(len(m["content"]) for m in history) <= HISTORY_CHARS:
        return
    kept = 0
    cut = len(history)
    while cut > 0 and kept + len(history[cut - 1]["content"]) <= HISTORY_KEEP_CHARS:
        cut -= 1
        kept += len(history[cut]["content"])
    if cut < len(history) and history[cut]["role"] == "assistant":
        cut += 1  # start on the caller's words
    del history[:cut]


def conversation(system: str, history: list[dict[str, str]]) -> list[dict[str, str]]:
    """The messages of one turn: the system prompt stays first however long the call is."""
    return [{"role": "system", "content": system}, *history]
