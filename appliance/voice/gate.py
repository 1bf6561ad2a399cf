"""Model steps share the cores without oversubscribing them; a caller's next words go first.

Whisper, llama.cpp and Piper run their steps on thread pools that spin-wait at barriers. Two
steps side by side on more threads than cores (two calls answering at once, or a reply's second
sentence while another call's turn is transcribed) make those pools wait on each other: measured
on 2 cores, 20 llama.cpp tokens on 2 threads took 1.3 s instead of 0.22 s next to one other
busy process. So every model step passes this gate, saying how many threads it uses; steps run
together only while their threads fit the cores. *Urgent* steps (what stands between a caller's
last word and the agent's first audio: STT, the LLM up to the first clause, Piper on that
clause) are served before *background* ones (later sentences of a reply already playing), first
come first served within each class; a step that does not fit yet holds back the ones behind it,
so a two-core Whisper run is never starved by one-core steps. Steps are short (one Whisper run,
one LLM token, one Piper sentence), so an urgent step waits at most for one background step.

Other processes on the box stall multi-threaded steps the same way, and they cannot be gated:
measured on 2 cores next to other busy processes, a turn's first LLM token took 1.2-1.3 s on
2 threads against 0.22 s on 1, while on an idle box 2 threads are ~1.6x faster. So `width()`
gives small steps (LLM tokens, Piper sentences) every core while the rest of the box is idle
and one thread while other processes keep a core busy, from /proc/stat sampled 4 times a second.
"""

from __future__ import annotations

import heapq
import itertools
import os
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path

OTHERS_BUSY_LIMIT = 0.3
"""Cores' worth of other processes' work above which small steps run on one thread."""


Sample = tuple[int, int, int]
"""(busy jiffies of all cores, total jiffies of all cores, this process's jiffies)."""


def proc_sample() -> Sample:
    fields = [int(x) for x in Path("/proc/stat").read_text().split("\n", 1)[0].split()[1:9]]
    idle = fields[3] + fields[4]  # idle + iowait
    times = os.times()
    own = round((times.user + times.system) * os.sysconf("SC_CLK_TCK"))
    return sum(fields) - idle, sum(fields), own


class CpuWatch:
    """How many cores' worth of work *other* processes are doing right now (Linux /proc)."""

    def __init__(
        self,
        interval_s: float = 0.25,
        *,
        sample: Callable[[], Sample] = proc_sample,
        cores: int | None = None,
        start: bool = True,
    ) -> None:
        self.interval_s = interval_s
        self.others = 0.0
        self._sample = sample
        self._cores = cores or len(os.sched_getaffinity(0))
        self._last = sample()
        if start:
            threading.Thread(target=self._run, name="cpu-watch", daemon=True).start()

    def update(self) -> float:
        busy, total, own = self._sample()
        busy0, total0, own0 = self._last
        self._last = busy, total, own
        elapsed = (total - total0) / self._cores  # jiffies per core
        if elapsed > 0:
            self.others = max(0.0, (busy - busy0) - (own - own0)) / elapsed
        return self.others

    def _run(self) -> None:
        while True:
            time.sleep(self.interval_s)
            try:
                self.update()
            except (OSError, ValueError, IndexError):
                return  # no /proc: stays at "idle"


class ComputeGate:
    def __init__(self, cores: int = 1, *, watch: CpuWatch | None = None) -> None:
        if cores < 1:
            raise ValueError(f"a compute gate needs at least one core, got {cores}")
        self.cores = cores
        self.watch = watch
        self.narrowed = 0
        """Small steps that ran on one thread because other processes were busy."""
        self._cond = threading.Condition()
        self._busy = 0
        self._waiting: list[tuple[int, int]] = []  # (class, ticket): a heap, smallest goes next
        self._tickets = itertools.count()
        self.waited_s = 0.0
        """Total time steps spent queued here (a contention figure for the bench)."""

    def width(self, preferred: int) -> int:
        """Threads for a small step: `preferred` (capped at the cores) on an idle box, 1 while
        other processes keep a core busy."""
        width = max(1, min(preferred, self.cores))
        if width > 1 and self.watch is not None and self.watch.others > OTHERS_BUSY_LIMIT:
            self.narrowed += 1
            return 1
        return width

    @contextmanager
    def __call__(self, *, urgent: bool, threads: int = 1) -> Iterator[None]:
        need = max(1, min(threads, self.cores))
        ticket = (0 if urgent else 1, next(self._tickets))
        t0 = time.monotonic()
        with self._cond:
            heapq.heappush(self._waiting, ticket)
            while self._busy + need > self.cores or self._waiting[0] != ticket:
                self._cond.wait()
            heapq.heappop(self._waiting)
            self._busy += need
            self.waited_s += time.monotonic() - t0
            # The next ticket may fit the cores left.
            self._cond.notify_all()
        try:
            yield
        finally:
            with self._cond:
                self._busy -= need
                self._cond.notify_all()
