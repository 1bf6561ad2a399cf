"""Long work started from the admin pages, run as a background job the page polls.

A job lives in the admin process (a restart forgets the job, not the work: the work it runs
is resumable and records its own state, e.g. a rights request's checkpoint). Progress is
`done` of `total` steps and the stage running now; a `probe` reads it from where the work
persists it, so the job and the record can never disagree. Jobs are only shown to the user
who started them: a title or stage must hold no personal data.
"""

from __future__ import annotations

import asyncio
import logging
import secrets
import sqlite3
import time
from collections import OrderedDict
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any

from appliance.errors import CallvaultError

log = logging.getLogger(__name__)

KEEP = 50
"""Finished jobs remembered (oldest forgotten first); running ones are never dropped."""

GRACE_S = 2.0
"""How long the starting request waits: work that finishes in it answers like a plain form."""


class JobError(CallvaultError):
    """No such job for this user, or the same work is already running."""


@dataclass(frozen=True)
class Outcome:
    """What a finished job shows: a message and, when there is one, a link to the result."""

    message: str
    url: str = ""
    label: str = ""


Probe = Callable[[], Awaitable[tuple[int, str]]]
"""Returns (steps done, stage now) from the work's own persisted state."""


@dataclass
class Job:
    id: str
    kind: str
    key: str
    title: str
    owner: str
    total: int | None
    done: int = 0
    stage: str = "starting"
    state: str = "running"  # running | done | failed
    outcome: Outcome | None = None
    error: str = ""
    started_at: float = field(default_factory=time.time)
    finished_at: float | None = None
    probe: Probe | None = None
    task: asyncio.Task[None] | None = field(default=None, repr=False)

    @property
    def running(self) -> bool:
        return self.state == "running"

    @property
    def elapsed_s(self) -> float:
        return (self.finished_at or time.time()) - self.started_at

    async def refresh(self) -> None:
        """Pull progress from the work's own record while it runs."""
        if self.running and self.probe is not None:
            done, stage = await self.probe()
            self.done = done if self.total is None else min(done, self.total)
            self.stage = stage or self.stage


class Jobs:
    """The admin process's jobs, by id; one running job per (kind, key)."""

    def __init__(self, *, keep: int = KEEP, grace_s: float = GRACE_S) -> None:
        self.keep = keep
        self.grace_s = grace_s
        self._jobs: OrderedDict[str, Job] = OrderedDict()

    def running(self, kind: str, key: str) -> Job | None:
        return next(
            (j for j in self._jobs.values() if j.running and (j.kind, j.key) == (kind, key)),
            None,
        )

    def get(self, job_id: str, owner: str) -> Job:
        job = self._jobs.get(job_id)
        if job is None or job.owner != owner:
            # Someone else's job is as absent as a made-up id: ids are not a listing.
            raise JobError(f"no job {job_id[:40]!r} for you (finished long ago, or not yours)")
        return job

    def start(
        self,
        kind: str,
        key: str,
        title: str,
        owner: str,
        work: Callable[[], Awaitable[Outcome]],
        *,
        total: int | None = None,
        probe: Probe | None = None,
    ) -> Job:
        if self.running(kind, key) is not None:
            raise JobError(f"{title} is already running")
        job = Job(secrets.token_urlsafe(9), kind, key, title, owner, total, probe=probe)
        job.task = asyncio.get_running_loop().create_task(self._run(job, work))
        self._jobs[job.id] = job
        self._forget()
        return job

    async def settle(self, job: Job) -> None:
        """Wait up to the grace period for the job, without cancelling it."""
        if job.task is not None and self.grace_s > 0:
            await asyncio.wait({job.task}, timeout=self.grace_s)

    async def close(self) -> None:
        tasks = [j.task for j in self._jobs.values() if j.task is not None and not j.task.done()]
        for t in tasks:
            t.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)

    async def _run(self, job: Job, work: Callable[[], Awaitable[Outcome]]) -> None:
        try:
            outcome = await work()
        except CallvaultError as exc:
            await self._finish(job, "failed", error=str(exc))
        except Exception as exc:  # a bug: shown, and logged with its traceback
            log.exception("job %s (%s) failed", job.id, job.kind)
            await self._finish(job, "failed", error=f"{type(exc).__name__}: {exc}")
        else:
            await self._finish(job, "done", outcome=outcome)

    async def _finish(
        self, job: Job, state: str, *, outcome: Outcome | None = None, error: str = ""
    ) -> None:
        try:
            await job.refresh()  # the last persisted step, whatever the outcome
        except (CallvaultError, OSError, sqlite3.Error) as exc:  # the record may be what failed
            log.info("job %s: final progress unreadable: %s", job.id, exc)
        if state == "done" and job.total is not None:
            job.done = job.total
        job.state, job.outcome, job.error = state, outcome, error
        job.stage = "finished" if state == "done" else "failed"
        job.finished_at = time.time()

    def _forget(self) -> None:
        finished = [j.id for j in self._jobs.values() if not j.running]
        for job_id in finished[: max(0, len(self._jobs) - self.keep)]:
            del self._jobs[job_id]


def registry(state: Any) -> Jobs:
    """The app's job registry (created on first use, kept in the app's state)."""
    jobs = getattr(state, "jobs", None)
    if not isinstance(jobs, Jobs):
        jobs = Jobs()
        state.jobs = jobs
    return jobs
