"""One heavy model step at a time, and the steps a caller is waiting for first.

Whisper, llama.cpp and Piper each spread one step over every core. Run side by side (two calls
answering at once, or a reply's second sentence while another call's turn is transcribed) they
oversubscribe the cores and their OpenMP/onnxruntime pools spin against each other: measured on
2 cores, 20 llama.cpp tokens took 1.3 s instead of 0.22 s with one other busy process. So every
model step passes this gate, which lets one step run at a time and serves *urgent* steps (what
stands between a caller's last word and the agent's first audio: STT, the LLM up to the first
clause, Piper on that clause) before *background* ones (later sentences of a reply that is
already playing), first come first served within each class. Steps are short (one Whisper run,
one LLM token, one Piper sentence), so an urgent step waits at most for one background step.
"""

from __future__ import annotations

import heapq
import itertools
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager


class ComputeGate:
    def __init__(self, slots: int = 1) -> None:
        if slots < 1:
            raise ValueError(f"a compute gate needs at least one slot, got {slots}")
        self.slots = slots
        self._cond = threading.Condition()
        self._busy = 0
        self._waiting: list[tuple[int, int]] = []  # (class, ticket): a heap, smallest goes next
        self._tickets = itertools.count()
        self.waited_s = 0.0
        """Total time steps spent queued here (a contention figure for the bench)."""

    @contextmanager
    def __call__(self, *, urgent: bool) -> Iterator[None]:
        ticket = (0 if urgent else 1, next(self._tickets))
        t0 = time.monotonic()
        with self._cond:
            heapq.heappush(self._waiting, ticket)
            while self._busy >= self.slots or self._waiting[0] != ticket:
                self._cond.wait()
            heapq.heappop(self._waiting)
            self._busy += 1
            self.waited_s += time.monotonic() - t0
            # The next ticket may fit a free slot too.
            self._cond.notify_all()
        try:
            yield
        finally:
            with self._cond:
                self._busy -= 1
                self._cond.notify_all()
