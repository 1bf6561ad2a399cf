"""The local LLM (llama.cpp): chat completion streamed and cut into speakable sentences."""

from __future__ import annotations

import re
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any, cast

from llama_cpp import Llama

# A sentence ends at . ! ? followed by space; a long first clause may end at , ; : so the agent
# starts speaking sooner. Never cut inside numbers ("2.30") or common abbreviations.
_END = re.compile(r"(?<!\b(?:Mr|Ms|Dr|St|No))(?<!\d)[.!?](?=\s)")
_CLAUSE = re.compile(r"[,;:](?=\s)")
FIRST_CLAUSE_MIN_WORDS = 6


class Llm:
    def __init__(
        self, model: Path, *, gpu: bool = False, threads: int = 2, n_ctx: int = 2048
    ) -> None:
        self.model = Llama(
            model_path=str(model),
            n_ctx=n_ctx,
            n_threads=threads,
            n_gpu_layers=-1 if gpu else 0,
            verbose=False,
        )
        self._lock = threading.Lock()

    def sentences(self, messages: list[dict[str, str]], max_tokens: int = 120) -> Iterator[str]:
        """Stream the reply, yielding each sentence (or a long first clause) when complete."""
        with self._lock:
            stream: Any = self.model.create_chat_completion(
                messages=cast(Any, messages), max_tokens=max_tokens, temperature=0.3, stream=True
            )
            buf = ""
            first = True
            for chunk in stream:
                delta = chunk["choices"][0]["delta"].get("content") or ""
                buf += delta
                while True:
                    cut = split_point(buf, first)
                    if cut is None:
                        break
                    sentence, buf = buf[:cut].strip(), buf[cut:]
                    if sentence:
                        first = False
                        yield sentence
            if buf.strip():
                yield buf.strip()


def split_point(text: str, first: bool) -> int | None:
    """Where the next speakable piece of `text` ends, or None if it is not complete yet."""
    m = _END.search(text)
    if m:
        return m.end()
    if first:
        for c in _CLAUSE.finditer(text):
            if len(text[: c.start()].split()) >= FIRST_CLAUSE_MIN_WORDS:
                return c.end()
    return None
