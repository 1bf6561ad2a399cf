"""The dialler: each pass resolves the attempts that are out, then dials the leads that are due,
within the campaign's concurrency and per-minute limits.

Crash safety comes from the order of writes: an attempt row is claimed (lead 'dialling') in one
transaction before the originate is sent, and is resolved only from the call's CDR (or, when no
call exists and Asterisk has no live channel for it, marked 'lost' and the lead rescheduled). A
dialler restarted at any point therefore finds every lead either due, out on a call it still
tracks, or finished: none is dialled twice by accident and none is forgotten.

Every dial re-checks, at dial time: the lead still exists (not erased), the do-not-call list, an
Art. 18 restriction, an open Art. 21 objection, legal eligibility (consent basis and country) and
the calling window (the country's public holidays closed, unless the campaign says otherwise); a
refused dial is an attempt row in state 'blocked' with its reason.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
import uuid
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any, Protocol

from appliance.campaign import outcomes
from appliance.campaign.leads import Leads
from appliance.campaign.model import Settings
from appliance.campaign.windows import Calendar, parse_windows
from appliance.config import LineConfig
from appliance.privacy.keyring import KeyShreddedError
from appliance.privacy.service import Privacy

log = logging.getLogger(__name__)
# After the ring timeout, how long a claimed attempt with neither a CDR nor a live channel waits
# before it counts as lost (CDRs can lag the hangup by a moment).
LOST_GRACE_S = 60.0
# However long the attempt has been out, a call counts as up for this long after the first pass
# that finds neither its channel nor its CDR: Asterisk's Cdr event follows the final Hangup by
# milliseconds and is written by another task, so a pass can fall between the two. Judged lost
# there, a long answered call would be dialled again after the retry interval.
HANGUP_SETTLE_S = 10.0
# The CDR disposition of a call that was answered (its outcome then comes from the report).
_ANSWERED_SINCE = {"ANSWERED"}
_FINAL_DISPOSITIONS = {
    "BUSY": "busy",
    "NO ANSWER": "no_answer",
    "FAILED": "failed",
    "CONGESTION": "busy",
}


class Originator(Protocol):
    async def originate(
        self, *, call_id: str, channel: str, number: str, line: LineConfig, timeout_s: int
    ) -> None: ...

    def is_live(self, call_id: str) -> bool | None:
        """Whether Asterisk has a channel of this call now; None: cannot tell."""


ReportReader = Callable[[str], Awaitable["dict[str, Any] | bool | None"]]


@dataclass
class PassStats:
    dialled: int = 0
    blocked: int = 0
    resolved: int = 0


class Dialler:
    def __init__(
        self,
        privacy: Privacy,
        originator: Originator,
        *,
        clock: Callable[[], float] = time.time,
        reports: ReportReader | None = None,
    ) -> None:
        self.privacy = privacy
        self.db = privacy.db
        self.cfg = privacy.cfg
        self.originator = originator
        self.clock = clock
        self.leads = Leads(privacy, clock=clock)
        self.reports: ReportReader = reports or (lambda cid: outcomes.read_report(privacy, cid))
        self._wake = asyncio.Event()
        # call id -> when (dialler clock) a pass first found no channel and no CDR for it.
        self._missing_since: dict[str, float] = {}

    def _line(self, name: str) -> LineConfig | None:
        return self.cfg.line_by_name(name)

    # ---- one pass
    async def tick(self) -> PassStats:
        stats = PassStats()
        campaigns = {int(c["id"]): c for c in await self.db.campaigns()}
        for att in await self.db.attempts_open():
            camp = campaigns.get(int(att["campaign_id"]))
            if camp is not None and await self._resolve(att, camp):
                stats.resolved += 1
        for camp in campaigns.values():
            if camp["state"] == "running":
                await self._dial_due(camp, stats)
                await self.db.campaign_finish_if_done(int(camp["id"]), self.clock())
        return stats

    async def _dial_due(self, camp: dict[str, Any], stats: PassStats) -> None:
        cid = int(camp["id"])
        settings = Settings.from_json(str(camp["settings"]))
        line = self._line(str(camp["line"]))
        if line is None:
            log.error("campaign %s: line %r is not configured; not dialling", cid, camp["line"])
            return
        now = self.clock()
        out = len(await self.db.attempts(cid, state="dialling"))
        room = min(
            settings.max_concurrent - out,
            settings.calls_per_minute - await self.db.attempts_since(cid, now - 60.0),
        )
        if room <= 0:
            return
        calendar = Calendar(
            parse_windows(settings.windows), block_holidays=settings.block_public_holidays
        )
        # Blocked leads use no room: look further than `room` so a run of them cannot stall.
        for row in await self.db.campaign_due(cid, now, limit=room + 50):
            if room <= 0:
                break
            verdict = await self._check(row, settings, line, calendar, now)
            if verdict is not None:
                reason, final, next_at = verdict
                await self.db.attempt_blocked(
                    cid, int(row["lead_id"]), _call_id(cid), reason, now,
                    final=final, next_at=next_at,
                )  # fmt: skip
                stats.blocked += 1
                continue
            try:
                lead = await self.leads.open_lead(_lead_row(row))
            except KeyShreddedError:
                await self.db.attempt_blocked(
                    cid, int(row["lead_id"]), _call_id(cid), "erased", now,
                    final=True, next_at=now,
                )  # fmt: skip
                stats.blocked += 1
                continue
            call_id = _call_id(cid)
            if not await self.db.attempt_claim(cid, int(row["lead_id"]), call_id, now):
                continue  # paused/stopped meanwhile, or another pass took it
            channel = settings.dial.format(number=lead.number, digits=lead.number.lstrip("+"))
            try:
                await self.originator.originate(
                    call_id=call_id, channel=channel, number=lead.number, line=line,
                    timeout_s=settings.ring_timeout_s,
                )  # fmt: skip
            except Exception as exc:  # noqa: BLE001 - any refusal: the attempt failed, retry
                log.warning("campaign %s: originate failed: %s", cid, type(exc).__name__)
                await self._finish(
                    call_id, settings, int(row["attempts"]) + 1, "failed", "failed",
                    reason=f"originate refused: {type(exc).__name__}", disposition="",
                    billable_s=0,
                )  # fmt: skip
                continue
            stats.dialled += 1
            room -= 1

    async def _check(  # noqa: PLR0911 - one return per rule, in the order they apply
        self,
        row: dict[str, Any],
        settings: Settings,
        line: LineConfig,
        calendar: Calendar,
        now: float,
    ) -> tuple[str, bool, float] | None:
        """Why this lead may not be dialled now: (reason, final, next_at); None: it may."""
        bi = bytes(row["blind_index"])
        if row["lead_state"] == "erased" or row["subject_id"] is None:
            return "erased", True, now
        if await self.db.dnc_get(bi) is not None:
            return "on the do-not-call list", True, now
        if await self.db.restriction_get(bi) is not None:
            return "processing restricted (Art. 18)", True, now
        for req in await self.db.rr_for_subject(bi):
            if req["kind"] == "objection" and req["closed_at"] is None:
                return "open objection (Art. 21)", True, now
        basis = str(row["basis"])
        if basis not in settings.accepted_bases:
            return f"legally ineligible: basis {basis} not accepted by the campaign", True, now
        if line.lawful_basis == "consent" and basis != "consent":
            return "legally ineligible: the line calls on consent only", True, now
        country = str(row["country"])
        if settings.countries and country not in settings.countries:
            return f"legally ineligible: country {country} not in the campaign", True, now
        zones = [z for z in str(row["timezone"]).split(",") if z]
        if not calendar.allowed(now, country, zones):
            nxt = calendar.next_open(now, country, zones)
            if nxt is None:
                return "no calling window opens for this lead", True, now
            holiday = calendar.holiday(now, country, zones)
            if holiday is not None:
                return f"public holiday: {holiday}", False, nxt
            return "outside the calling window", False, nxt
        return None

    # ---- resolving attempts
    async def _resolve(self, att: dict[str, Any], camp: dict[str, Any]) -> bool:
        call_id = str(att["call_id"])
        settings = Settings.from_json(str(camp["settings"]))
        now = self.clock()
        attempts = int(att["lead_attempts"])
        call = await self.db.call(call_id)
        if call is None:
            return await self._no_call(att, camp, settings, now)
        self._missing_since.pop(call_id, None)
        if call.ended_at is None:
            return False
        billable = int(max(0.0, call.ended_at - call.answered_at)) if call.answered_at else 0
        disposition = call.disposition.upper()
        if disposition not in _ANSWERED_SINCE and call.answered_at is None:
            result = _FINAL_DISPOSITIONS.get(disposition, "failed")
            return await self._finish(
                call_id, settings, attempts, result, result, reason="",
                disposition=disposition, billable_s=billable,
            )  # fmt: skip
        if att["state"] == "dialling":
            await self.db.attempt_ended(call_id, now, disposition, billable)
            seen_end = now
        else:
            seen_end = float(att["ended_at"])
        line = self._line(str(camp["line"]))
        # Only the voice agent's calls get a post-call report; an announcement was played.
        report = await self.reports(call_id) if line is None or line.kind == "agent" else None
        waits = line is None or line.kind == "agent"
        # Measured on the dialler's own clock, from when it saw the call end.
        if report is None and waits and now < seen_end + settings.report_wait_s:
            return False  # the post-call pipeline has not reported yet
        outcome = outcomes.from_report(report if isinstance(report, dict) else None)
        if outcome.name == "opt_out":
            await self._opt_out(att, camp, now)
        return await self._finish(
            call_id, settings, attempts, outcome.name, outcome.name, reason=outcome.detail,
            disposition=disposition, billable_s=billable,
        )  # fmt: skip

    async def _no_call(
        self, att: dict[str, Any], camp: dict[str, Any], settings: Settings, now: float
    ) -> bool:
        call_id = str(att["call_id"])
        bi = bytes(att["blind_index"])
        if att["state"] == "ended" or (
            # An opt-out on an erasing line deletes the call with the person's data.
            await self.db.dnc_get(bi) is not None and att["lead_state"] == "erased"
        ):
            await self._opt_out(att, camp, now)
            return await self._finish(
                call_id, settings, int(att["lead_attempts"]), "opt_out", "opt_out",
                reason="the call was erased on the person's request", disposition="",
                billable_s=0,
            )  # fmt: skip
        live = self.originator.is_live(call_id)
        if live:
            self._missing_since.pop(call_id, None)
            return False
        # Not seen now: the call may have just hung up with its CDR on the way.
        missing_since = self._missing_since.setdefault(call_id, now)
        waited = now - float(att["claimed_at"])
        line = self._line(str(camp["line"]))
        longest = settings.ring_timeout_s + (line.max_duration_s if line else 3600)
        if waited < settings.ring_timeout_s + LOST_GRACE_S:
            return False
        if live is None and waited < longest + LOST_GRACE_S:
            return False
        if now - missing_since < HANGUP_SETTLE_S:
            return False
        log.warning("campaign %s: attempt %s has no call; counted as lost", camp["id"], call_id)
        return await self._finish(
            call_id, settings, int(att["lead_attempts"]), "lost", "failed",
            reason="no call record (appliance restarted before the originate?)",
            disposition="", billable_s=0,
        )  # fmt: skip

    async def _finish(
        self,
        call_id: str,
        settings: Settings,
        attempts: int,
        attempt_state: str,
        result: str,
        *,
        reason: str,
        disposition: str,
        billable_s: int,
    ) -> bool:
        """Close the attempt; the lead is finished, or due again after the retry interval."""
        self._missing_since.pop(call_id, None)
        now = self.clock()
        retry = settings.retry_s.get(result)
        state_map = {"lost": "lost", "failed": "failed"}
        if retry is None:
            lead_state, next_at = "done", now
        elif attempts >= settings.max_attempts:
            lead_state, next_at = "exhausted", now
        else:
            lead_state, next_at = "pending", now + retry
        return await self.db.attempt_finish(
            call_id,
            state=state_map.get(attempt_state, "done"),
            at=now,
            disposition=disposition,
            outcome=result,
            reason=reason,
            billable_s=billable_s,
            lead_state=lead_state,
            next_at=next_at,
            detail=reason,
        )

    async def _opt_out(self, att: dict[str, Any], camp: dict[str, Any], now: float) -> None:
        bi = bytes(att["blind_index"])
        number: str | None = None
        row = await self.db.lead(int(att["lead_id"]))
        if row is not None:
            try:
                number = (await self.leads.open_lead(row)).number
            except KeyShreddedError:
                number = None
        line = self._line(str(camp["line"]))
        await outcomes.apply_opt_out(
            self.privacy, bi, number, bool(line and line.erase_on_opt_out), now
        )

    # ---- the loop (run inside the appliance)
    def wake(self) -> None:
        self._wake.set()

    async def run(self, interval_s: float = 1.0) -> None:
        while True:
            try:
                await self.tick()
            except asyncio.CancelledError:
                raise
            except Exception:
                log.exception("campaign dialler pass failed; next pass in %.0f s", interval_s)
            self._wake.clear()
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._wake.wait(), interval_s)


def _call_id(campaign_id: int) -> str:
    # Shaped like an Asterisk uniqueid (`<epoch>.<digits>`, as TelephonyService.originate
    # makes them): the recording spool names files after the call id and takes only that
    # shape (appliance.telephony.recordings.SPOOL_NAME), and files recordings by its epoch
    # (real time, not the dialler's clock). Unique: the campaign and 12 random digits.
    return f"{int(time.time())}.{campaign_id}{uuid.uuid4().int % 10**12:012d}"


def _lead_row(row: dict[str, Any]) -> dict[str, Any]:
    return {
        "id": row["lead_id"],
        "list_id": 0,
        "blind_index": row["blind_index"],
        "subject_id": row["subject_id"],
        "country": row["country"],
        "timezone": row["timezone"],
        "basis": row["basis"],
        "fields_enc": row["fields_enc"],
        "state": row["lead_state"],
    }


class AmiOriginator:
    """Originates through the appliance's AMI connection (appliance.telephony.service), the
    answered callee connected to the line's extension (the voice agent answers it)."""

    def __init__(self, service: Any) -> None:
        self.service = service

    async def originate(
        self, *, call_id: str, channel: str, number: str, line: LineConfig, timeout_s: int
    ) -> None:
        await self.service.ami.action(
            "Originate",
            Channel=channel,
            Context="callvault-lines",
            Exten=line.extension,
            Priority="1",
            CallerID=f'"{line.name}" <{line.extension}>',
            Timeout=str(timeout_s * 1000),
            ChannelId=call_id,
            Variable=f"CV_DIRECTION=outbound,CV_DIALED={number}",
            Async="true",
        )

    def is_live(self, call_id: str) -> bool | None:
        channels = getattr(self.service, "channels", None)
        if channels is None:
            return None
        return any(ch.linkedid == call_id for ch in channels.values())
