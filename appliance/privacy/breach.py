"""The breach register (Art. 33/34): every personal data breach, its facts, the 72-hour clock
to the supervisory authority and what was told to whom.

A breach moves `open` → `reported` → `closed`:
- `open`: recorded; the clock runs from discovery (Art. 33(1): "not later than 72 hours after
  having become aware of it").
- `reported`: the authority was notified (when, its reference; reasons for the delay when
  later than 72 hours), or the decision not to notify was recorded with why (no risk).
- `closed`: once the subjects were told (when, how) or why not (Art. 34(3)) is recorded too.
Telling the subjects may happen in either of the first two states. Anything else is a
BreachError and changes nothing. Each step is a `breach_events` row and an audit row, written
in one transaction with the change. Texts are checked for phone numbers and e-mails: the
register is kept for good and must not hold what erasure removes.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Literal, cast, get_args

from appliance.config import RETENTION_CATEGORIES
from appliance.errors import CallvaultError
from appliance.privacy.audit import Actor, AuditLog
from appliance.privacy.freetext import clean_text
from appliance.store import Database, StoreError

Status = Literal["open", "reported", "closed"]
STATUSES: tuple[str, ...] = get_args(Status)
Decision = Literal["notified", "not-required"]
DEADLINE_S = 72 * 3600
CATEGORIES: tuple[str, ...] = (*RETENTION_CATEGORIES, "keys", "other")
"""Data categories a breach can concern: the retention categories, key material, other."""
PURPOSE = "breach register (Art. 33)"
MAX_TEXT = 2000
MAX_REF = 200
# A clock a few minutes fast elsewhere must not make an honest "just now" look like the future.
_SKEW_S = 300.0


class BreachError(CallvaultError):
    pass


@dataclass(frozen=True)
class Deadline:
    """The 72-hour clock as seen at `now`."""

    deadline: float
    hours_left: float | None
    """Until the deadline (negative once past); None once the authority step is recorded."""
    overdue: bool
    """Past the deadline and the authority neither notified nor the exemption recorded."""
    late: bool
    """The authority was notified after the deadline."""


@dataclass(frozen=True)
class Breach:
    id: int
    summary: str
    occurred_at: float | None
    discovered_at: float
    categories: tuple[str, ...]
    subjects_affected: int
    consequences: str
    measures: str
    status: Status
    authority_decision: Decision | None
    authority_at: float | None
    authority_ref: str
    authority_note: str
    subjects_decision: Decision | None
    subjects_at: float | None
    subjects_note: str
    closed_at: float | None
    close_note: str
    recorded_by: str
    recorded_at: float
    updated_at: float

    @classmethod
    def from_row(cls, r: Mapping[str, Any]) -> Breach:
        def ts(key: str) -> float | None:
            return None if r[key] is None else float(r[key])

        return cls(
            id=int(r["id"]),
            summary=str(r["summary"]),
            occurred_at=ts("occurred_at"),
            discovered_at=float(r["discovered_at"]),
            categories=tuple(c for c in str(r["categories"]).split(",") if c),
            subjects_affected=int(r["subjects_affected"]),
            consequences=str(r["consequences"]),
            measures=str(r["measures"]),
            status=cast(Status, r["status"]),
            authority_decision=cast("Decision | None", r["authority_decision"]),
            authority_at=ts("authority_at"),
            authority_ref=str(r["authority_ref"]),
            authority_note=str(r["authority_note"]),
            subjects_decision=cast("Decision | None", r["subjects_decision"]),
            subjects_at=ts("subjects_at"),
            subjects_note=str(r["subjects_note"]),
            closed_at=ts("closed_at"),
            close_note=str(r["close_note"]),
            recorded_by=str(r["recorded_by"]),
            recorded_at=float(r["recorded_at"]),
            updated_at=float(r["updated_at"]),
        )

    @property
    def deadline_at(self) -> float:
        return self.discovered_at + DEADLINE_S

    def deadline(self, now: float) -> Deadline:
        decided = self.authority_decision is not None
        return Deadline(
            deadline=self.deadline_at,
            hours_left=None if decided else (self.deadline_at - now) / 3600,
            overdue=not decided and now > self.deadline_at,
            late=self.authority_decision == "notified"
            and self.authority_at is not None
            and self.authority_at > self.deadline_at,
        )

    def as_dict(self, now: float) -> dict[str, Any]:
        d = self.deadline(now)
        return {
            **self.__dict__,
            "categories": list(self.categories),
            "deadline_at": d.deadline,
            "hours_left": d.hours_left,
            "overdue": d.overdue,
            "notified_late": d.late,
        }


def _categories(values: Iterable[str]) -> tuple[str, ...]:
    out: list[str] = []
    for value in values:
        cat = value.strip()
        if cat not in CATEGORIES:
            raise BreachError(f"data category {cat!r} is not one of {', '.join(CATEGORIES)}")
        if cat not in out:
            out.append(cat)
    if not out:
        raise BreachError("a breach names at least one data category")
    return tuple(out)


class BreachRegister:
    def __init__(
        self,
        db: Database,
        audit: AuditLog,
        *,
        region: str = "SE",
        clock: Callable[[], float] = time.time,
    ) -> None:
        self.db = db
        self.audit = audit
        self.region = region
        self.clock = clock

    def _text(self, value: str, what: str, *, required: bool = True, limit: int = MAX_TEXT) -> str:
        return clean_text(value, what, limit=limit, region=self.region, required=required)

    def _when(self, at: float | None, what: str, *, not_before: float | None = None) -> float:
        now = self.clock()
        at = now if at is None else float(at)
        if at > now + _SKEW_S:
            raise BreachError(f"{what} is in the future")
        if not_before is not None and at < not_before:
            raise BreachError(f"{what} is before the breach was discovered")
        return at

    async def record(
        self,
        actor: Actor,
        *,
        summary: str,
        categories: Sequence[str],
        subjects_affected: int,
        consequences: str,
        measures: str,
        discovered_at: float | None = None,
        occurred_at: float | None = None,
    ) -> int:
        """Enter a breach; its id. `discovered_at` (default now) starts the 72-hour clock."""
        summary = self._text(summary, "breach summary (what happened)")
        cats = _categories(categories)
        if isinstance(subjects_affected, bool) or not isinstance(subjects_affected, int):
            raise BreachError("subjects affected must be a whole number")
        if subjects_affected < 0:
            raise BreachError("subjects affected cannot be negative")
        consequences = self._text(consequences, "likely consequences")
        measures = self._text(measures, "measures taken")
        found = self._when(discovered_at, "discovery time")
        if occurred_at is not None:
            occurred_at = self._when(occurred_at, "occurrence time")
            if occurred_at > found:
                raise BreachError("the breach cannot have occurred after it was discovered")
        now = self.clock()
        row = {
            "summary": summary,
            "occurred_at": occurred_at,
            "discovered_at": found,
            "categories": ",".join(cats),
            "subjects_affected": subjects_affected,
            "consequences": consequences,
            "measures": measures,
            "status": "open",
            "recorded_by": actor.name,
            "recorded_at": now,
            "updated_at": now,
        }
        detail = f"categories={','.join(cats)} subjects={subjects_affected}"
        entry = await self.audit.entry(actor, "breach.record", "breach", PURPOSE, detail)
        return await self.db.breach_add(row, (now, actor.name, actor.role, "record", detail), entry)

    async def get(self, breach_id: int) -> Breach:
        row = await self.db.breach_get(breach_id)
        if row is None:
            raise BreachError(f"no breach #{breach_id}")
        return Breach.from_row(row)

    async def all(self, *, include_closed: bool = True) -> list[Breach]:
        return [
            Breach.from_row(r) for r in await self.db.breach_list(include_closed=include_closed)
        ]

    async def overdue(self) -> list[Breach]:
        """Breaches past 72 hours with no authority step recorded: alert on these."""
        now = self.clock()
        return [b for b in await self.all(include_closed=False) if b.deadline(now).overdue]

    async def events(self, breach_id: int) -> list[dict[str, Any]]:
        await self.get(breach_id)
        return await self.db.breach_events(breach_id)

    async def notify_authority(
        self,
        breach_id: int,
        actor: Actor,
        *,
        reference: str,
        at: float | None = None,
        delay_reason: str = "",
    ) -> Breach:
        """The notification to the supervisory authority was sent `at` (default now)."""
        b = await self._expect(breach_id, ("open",), "notify the authority of")
        reference = reference.strip()
        if not reference:
            raise BreachError("the authority notification needs its reference (case number)")
        if len(reference) > MAX_REF:
            raise BreachError(f"the reference is longer than {MAX_REF} characters")
        sent = self._when(at, "notification time", not_before=b.discovered_at)
        note = self._text(delay_reason, "reasons for the delay", required=False)
        if sent > b.deadline_at and not note:
            raise BreachError(
                f"breach #{breach_id} is notified {(sent - b.deadline_at) / 3600:.1f} h after the "
                "72-hour deadline: give the reasons for the delay (Art. 33(1))"
            )
        return await self._change(
            b,
            actor,
            "notify_authority",
            {
                "status": "reported",
                "authority_decision": "notified",
                "authority_at": sent,
                "authority_ref": reference,
                "authority_note": note,
            },
            detail=f"late={sent > b.deadline_at}",
        )

    async def authority_not_required(self, breach_id: int, actor: Actor, *, reason: str) -> Breach:
        """Record why the breach is unlikely to result in a risk (no notification, Art. 33(1))."""
        b = await self._expect(breach_id, ("open",), "decide the authority notification of")
        reason = self._text(reason, "why the authority is not notified")
        return await self._change(
            b,
            actor,
            "authority_not_required",
            {
                "status": "reported",
                "authority_decision": "not-required",
                "authority_at": self.clock(),
                "authority_note": reason,
            },
        )

    async def notify_subjects(
        self, breach_id: int, actor: Actor, *, how: str, at: float | None = None
    ) -> Breach:
        """The data subjects were told `at` (default now), `how` (e.g. a letter, calls)."""
        b = await self._expect(breach_id, ("open", "reported"), "notify the subjects of")
        self._subjects_undecided(b)
        sent = self._when(at, "subject notification time", not_before=b.discovered_at)
        how = self._text(how, "how the subjects were told")
        return await self._change(
            b,
            actor,
            "notify_subjects",
            {"subjects_decision": "notified", "subjects_at": sent, "subjects_note": how},
        )

    async def subjects_not_required(self, breach_id: int, actor: Actor, *, reason: str) -> Breach:
        """Record why the subjects are not told (Art. 34(3), e.g. the data was encrypted)."""
        b = await self._expect(breach_id, ("open", "reported"), "decide the subject notice of")
        self._subjects_undecided(b)
        reason = self._text(reason, "why the subjects are not told")
        return await self._change(
            b,
            actor,
            "subjects_not_required",
            {
                "subjects_decision": "not-required",
                "subjects_at": self.clock(),
                "subjects_note": reason,
            },
        )

    async def close(self, breach_id: int, actor: Actor, *, note: str = "") -> Breach:
        b = await self._expect(breach_id, ("reported",), "close")
        if b.subjects_decision is None:
            raise BreachError(
                f"breach #{breach_id} cannot be closed before the subjects' notification is "
                "recorded (notified, or why not)"
            )
        note = self._text(note, "closing note", required=False)
        return await self._change(
            b, actor, "close", {"status": "closed", "closed_at": self.clock(), "close_note": note}
        )

    async def _expect(self, breach_id: int, allowed: Sequence[str], verb: str) -> Breach:
        b = await self.get(breach_id)
        if b.status not in allowed:
            why = {
                "closed": "it is closed",
                "reported": "the authority step is already recorded",
                "open": "the authority step is not recorded yet",
            }[b.status]
            raise BreachError(f"cannot {verb} breach #{breach_id}: {why}")
        return b

    @staticmethod
    def _subjects_undecided(b: Breach) -> None:
        if b.subjects_decision is not None:
            raise BreachError(f"breach #{b.id}: the subjects' notification is already recorded")

    async def _change(
        self, b: Breach, actor: Actor, action: str, changes: dict[str, Any], detail: str = ""
    ) -> Breach:
        now = self.clock()
        entry = await self.audit.entry(actor, f"breach.{action}", f"breach:{b.id}", PURPOSE, detail)
        # Guard on the state just read: a concurrent change makes this one fail whole.
        expect = {
            "status": (b.status,),
            "authority_decision": (b.authority_decision,),
            "subjects_decision": (b.subjects_decision,),
        }
        try:
            await self.db.breach_update(
                b.id,
                {**changes, "updated_at": now},
                expect=expect,
                event=(now, actor.name, actor.role, action, detail),
                audit=entry,
            )
        except StoreError as exc:
            raise BreachError(str(exc)) from exc
        return await self.get(b.id)
