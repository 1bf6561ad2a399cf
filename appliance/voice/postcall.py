"""After the call: transcribe its recorded legs, then hand it to the report step.

Work is driven by the `post_call_jobs` table, not by memory: a recording's row creates its
call's job in the same transaction (a trigger), so a crash anywhere loses nothing and the next
start resumes every unfinished job. The telephony service only wakes the pipeline once a
call's recordings are in. Jobs run one at a time, in order of when they became due:

    transcribe → report (when a reporter is wired) → done

Each stage is idempotent (a leg already transcribed is skipped; the report step is asked
again). A failure keeps the job at its stage with the attempt count and the error, and retries
it after an exponential backoff (30 s doubling, at most an hour) — a job is never dropped.
A job whose call and recordings are gone (erased, or past retention) finishes with nothing
to do, as does a call on an echo or announcement (test and load) line; one whose subject
restricted processing (Art. 18) waits without being touched. On a box where the live agent and
batch work share the CPU, a job that needs the models starts only once no agent call has been
up for a few seconds (`idle`), or after waiting `MAX_DEFER_S` regardless; a job with nothing
for the models to do (an echo or test line, a call already gone) never waits for that.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import sqlite3
import time
from collections.abc import Callable
from typing import Any, Protocol

from appliance.config import Config
from appliance.errors import CallvaultError
from appliance.privacy import Actor, Privacy
from appliance.privacy.optout import caller_opted_out
from appliance.store import Database
from appliance.telephony.recordings import RecordingStore
from appliance.voice.transcribe import PostCallTranscriber
from appliance.voice.transcripts import CallMatch, Transcript, TranscriptVault

log = logging.getLogger(__name__)

BACKOFF_BASE_S = 30.0
BACKOFF_MAX_S = 3600.0
IDLE_SETTLE_S = 3.0
MAX_DEFER_S = 600.0
POLL_S = 60.0


class Reporter(Protocol):
    """The report step (appliance.voice.report.ReportWriter): summarise a transcribed call."""

    async def report(self, call_id: str) -> object: ...


class CallNotStoredError(CallvaultError):
    """Recordings exist but the call's CDR is not in yet (the reconcile will bring it)."""


class RestrictedError(CallvaultError):
    """A subject of the call has restricted processing (Art. 18): the job waits, untouched,
    until the restriction is lifted (or the subject erased)."""


def backoff_s(attempts: int) -> float:
    return float(min(BACKOFF_BASE_S * 2 ** max(attempts - 1, 0), BACKOFF_MAX_S))


class PostCallPipeline:
    def __init__(
        self,
        cfg: Config,
        db: Database,
        privacy: Privacy,
        *,
        recordings: RecordingStore | None = None,
        transcriber: PostCallTranscriber | None = None,
        reporter: Reporter | None = None,
        idle: Callable[[], bool] | None = None,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self.cfg = cfg
        self.db = db
        self.privacy = privacy
        self.transcriber = transcriber or PostCallTranscriber(
            cfg, db, privacy, recordings=recordings
        )
        self.reporter = reporter
        self.vault = TranscriptVault(db, privacy)
        self.idle = idle
        self.clock = clock
        self._wake = asyncio.Event()
        self._task: asyncio.Task[None] | None = None

    # ---- lifecycle
    async def start(self) -> None:
        unfinished = await self.db.post_call_jobs(unfinished=True)
        if unfinished:
            log.warning("post-call: resuming %d unfinished job(s)", len(unfinished))
        self._task = asyncio.create_task(self._loop(), name="post-call")

    async def stop(self) -> None:
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
            self._task = None
        self.transcriber.close()

    def notify(self, call_id: str | None = None) -> None:
        """A call's recordings are in (its job row already exists): look for work now."""
        self._wake.set()

    # ---- reading (for display)
    async def transcript(self, call_id: str, actor: Actor, purpose: str) -> list[Transcript]:
        """The call's transcripts, one per leg; the read is audited (`transcript.view`)."""
        return await self.vault.read(call_id, actor=actor, purpose=purpose)

    async def search(self, query: str, actor: Actor, purpose: str) -> list[CallMatch]:
        return await self.vault.search(query, actor=actor, purpose=purpose)

    # ---- the work
    def _stages(self) -> set[str]:
        return {"transcribe", "report"} if self.reporter is not None else {"transcribe"}

    async def due(self, now: float | None = None) -> list[dict[str, Any]]:
        at = self.clock() if now is None else now
        stages = self._stages()
        return [
            j
            for j in await self.db.post_call_jobs(unfinished=True)
            if j["stage"] in stages and float(j["next_at"]) <= at
        ]

    async def run_due(self) -> int:
        """Run every job due now, one after another; how many ran (tests, the CLI)."""
        ran = 0
        while jobs := await self.due():
            await self.run_job(jobs[0])
            ran += 1
        return ran

    async def run_job(self, job: dict[str, Any]) -> None:
        """One job from its stage on; a failure is recorded and rescheduled, never raised."""
        call_id, gen, stage = str(job["call_id"]), int(job["gen"]), str(job["stage"])
        try:
            if stage == "transcribe":
                stage = await self._transcribe(call_id, gen)
            if stage == "report" and self.reporter is not None:
                result = await self.reporter.report(call_id)
                await self.db.post_call_advance(call_id, gen, "done", self.clock())
                if _opted_out(result):
                    # After the job is done: an erasure here removes the call and its job.
                    await self._opt_out(call_id)
        except asyncio.CancelledError:
            raise
        except Exception as exc:  # noqa: BLE001 - whatever failed, the job is kept and retried
            await self._failed(call_id, stage, exc)

    async def _opt_out(self, call_id: str) -> None:
        try:
            await caller_opted_out(self.privacy, call_id)
        except Exception as exc:  # noqa: BLE001 - a person must finish what failed here
            log.error("call %s: the caller's opt-out failed: %s", call_id, type(exc).__name__)  # noqa: TRY400 - no traceback: it may quote personal data
            await self.privacy.review.flag(
                "opt-out", f"call:{call_id}",
                f"the caller asked not to be contacted; applying it failed ({type(exc).__name__})",
            )  # fmt: skip

    async def _transcribe(self, call_id: str, gen: int) -> str:
        recordings = await self.db.recordings(call_id)
        call = await self.db.call(call_id)
        if call is None:
            if not recordings:
                # Erased or past retention before its turn: nothing left to work on.
                await self.db.post_call_advance(call_id, gen, "done", self.clock())
                return "done"
            raise CallNotStoredError(f"call {call_id} has recordings but no CDR yet")
        line = self.cfg.line_by_name(call.line or "")
        if line is not None and line.kind != "agent":
            # Echo and announcement lines are test and load lines: Asterisk's own prompts,
            # nobody's conversation. Their recordings are kept; there is nothing to summarise.
            await self.db.post_call_advance(call_id, gen, "done", self.clock())
            return "done"
        await self._check_not_restricted(call_id)
        await self.transcriber.transcribe_call(call_id)
        if not await self.db.post_call_advance(call_id, gen, "report", self.clock()):
            return "transcribe"  # another leg arrived meanwhile: the job runs again
        return "report"

    async def _check_not_restricted(self, call_id: str) -> None:
        for sid in await self.db.call_subject_ids(call_id):
            key = await self.db.subject_key(sid)
            if key is not None and await self.db.restriction_get(key[0]) is not None:
                raise RestrictedError(f"subject {sid} of call {call_id} restricted processing")

    async def _failed(self, call_id: str, stage: str, exc: Exception) -> None:
        now = self.clock()
        job = await self.db.post_call_job(call_id)
        attempts = int(job["attempts"]) + 1 if job else 1
        delay = backoff_s(attempts)
        # The report step's errors may quote what the model said about the caller: keep its
        # type only. Transcription errors name files, keys and formats, never words.
        error = f"{type(exc).__name__}: {exc}" if stage == "transcribe" else type(exc).__name__
        await self.db.post_call_failed(call_id, error=error, next_at=now + delay, at=now)
        log.warning(
            "post-call %s of call %s failed (attempt %d, retry in %.0fs): %s",
            stage,
            call_id,
            attempts,
            delay,
            error,
        )

    async def _loop(self) -> None:
        while True:
            jobs = await self.due()
            if not jobs:
                await self._sleep_until_due()
                continue
            job = await self._next_job(jobs)
            try:
                # Re-read: the job may have moved (erased call, new leg) while waiting.
                fresh = await self.db.post_call_job(str(job["call_id"]))
                if fresh is not None and fresh["stage"] in self._stages():
                    await self.run_job(fresh)
            except (CallvaultError, OSError, sqlite3.Error):
                # Recording the failure failed too (the store is in trouble): try later.
                log.exception("post-call: the job queue is unavailable")
                await asyncio.sleep(POLL_S)

    async def _sleep_until_due(self) -> None:
        stages = self._stages()
        pending = [
            float(j["next_at"])
            for j in await self.db.post_call_jobs(unfinished=True)
            if j["stage"] in stages
        ]
        wait = POLL_S
        if pending:
            wait = min(max(min(pending) - self.clock(), 0.05), POLL_S)
        self._wake.clear()
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(self._wake.wait(), wait)

    async def _next_job(self, jobs: list[dict[str, Any]]) -> dict[str, Any]:
        """The first due job the models are not needed for, else the first due job once the
        box is idle: a queue of agent calls waiting for a quiet moment holds nothing else up."""
        for job in jobs:
            if not await self._needs_models(job):
                return job
        await self._wait_idle(float(jobs[0]["next_at"]))
        return jobs[0]

    async def _needs_models(self, job: dict[str, Any]) -> bool:
        """Whether the job's next stage runs Whisper or the LLM (what competes with live calls
        for the CPU): not for a call on a non-agent line, nor one whose CDR is gone or not in."""
        if job["stage"] != "transcribe":
            return self.reporter is not None
        call = await self.db.call(str(job["call_id"]))
        if call is None:
            return False
        line = self.cfg.line_by_name(call.line or "")
        return line is None or line.kind == "agent"

    async def _wait_idle(self, due_at: float) -> None:
        if self.idle is None:
            return
        quiet_since: float | None = None
        while self.clock() - due_at < MAX_DEFER_S:
            if self.idle():
                quiet_since = quiet_since if quiet_since is not None else time.monotonic()
                if time.monotonic() - quiet_since >= IDLE_SETTLE_S:
                    return
            else:
                quiet_since = None
            await asyncio.sleep(0.25)


def _opted_out(result: object) -> bool:
    report = getattr(result, "report", None)
    return isinstance(report, dict) and report.get("opt_out") is True
