"""The human review queue (Art. 22): what the agent or the report writer decided on its own
and a person must look at — flagged with a reason, decided by a named reviewer with an outcome.

Items name what they concern by id (`call:<id>`, `report:<id>`), never by personal data; an
item tied to a call goes when the call is erased or purged (a trigger on `calls`). Flagging
and deciding are both audited, in the same transaction as the change.
"""

from __future__ import annotations

import re
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, Literal, cast, get_args

from appliance.errors import CallvaultError
from appliance.privacy.audit import Actor, AuditLog
from appliance.privacy.freetext import clean_text
from appliance.store import Database

Outcome = Literal["approved", "corrected", "rejected"]
OUTCOMES: tuple[str, ...] = get_args(Outcome)
Status = Literal["open", "decided"]
STATUSES: tuple[str, ...] = get_args(Status)
PURPOSE = "human review (Art. 22)"
MAX_REASON = 500
MAX_NOTE = 2000

_KIND = re.compile(r"^[a-z][a-z0-9_-]{0,31}$")
_REF = re.compile(r"^([a-z][a-z0-9_]{0,31}):([A-Za-z0-9._:-]{1,128})$")


class ReviewError(CallvaultError):
    pass


@dataclass(frozen=True)
class ReviewItem:
    id: int
    kind: str
    ref: str
    call_id: str | None
    reason: str
    flagged_by: str
    flagged_at: float
    status: Status
    outcome: Outcome | None
    decided_by: str | None
    decided_role: str | None
    decided_at: float | None
    note: str

    @classmethod
    def from_row(cls, r: dict[str, Any]) -> ReviewItem:
        return cls(
            id=int(r["id"]),
            kind=str(r["kind"]),
            ref=str(r["ref"]),
            call_id=None if r["call_id"] is None else str(r["call_id"]),
            reason=str(r["reason"]),
            flagged_by=str(r["flagged_by"]),
            flagged_at=float(r["flagged_at"]),
            status=cast(Status, r["status"]),
            outcome=cast("Outcome | None", r["outcome"]),
            decided_by=r["decided_by"],
            decided_role=r["decided_role"],
            decided_at=None if r["decided_at"] is None else float(r["decided_at"]),
            note=str(r["note"]),
        )


class ReviewQueue:
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

    async def flag(
        self,
        kind: str,
        ref: str,
        reason: str,
        *,
        call_id: str | None = None,
        actor: Actor | None = None,
    ) -> int:
        """Queue `ref` for a person's decision; the new item's id.

        `kind`: what is reviewed (`report`, `decision`, …); `ref`: `<type>:<id>`;
        `reason`: why, without personal data. `call_id` ties a non-call ref (e.g. a report) to
        its call so that erasing the call removes the item; for `call:<id>` it is implied.
        """
        if not _KIND.match(kind):
            raise ReviewError(f"review kind {kind!r} must be a short lower-case word")
        m = _REF.match(ref)
        if m is None:
            raise ReviewError(f"review ref {ref!r} must be '<type>:<id>', e.g. 'call:1712.4'")
        if m.group(1) == "call":
            if call_id is not None and call_id != m.group(2):
                raise ReviewError(f"ref {ref!r} names another call than call_id {call_id!r}")
            call_id = m.group(2)
        reason = clean_text(reason, "review reason", limit=MAX_REASON, region=self.region)
        actor = actor or Actor.system("agent")
        entry = await self.audit.entry(
            actor, "review.flag", "review", PURPOSE, f"kind={kind} ref={ref}"
        )
        return await self.db.review_add(
            {
                "kind": kind,
                "ref": ref,
                "call_id": call_id,
                "reason": reason,
                "flagged_by": actor.name,
                "flagged_at": self.clock(),
            },
            entry,
        )

    async def get(self, item_id: int) -> ReviewItem:
        row = await self.db.review_get(item_id)
        if row is None:
            raise ReviewError(f"no review item #{item_id}")
        return ReviewItem.from_row(row)

    async def items(self, status: str | None = None, *, ref: str | None = None) -> list[ReviewItem]:
        """Items, oldest first; `status` 'open' or 'decided' (None: both)."""
        if status is not None and status not in STATUSES:
            raise ReviewError(f"review status {status!r} is not one of {', '.join(STATUSES)}")
        return [ReviewItem.from_row(r) for r in await self.db.review_list(status, ref)]

    async def decide(self, item_id: int, actor: Actor, outcome: str, note: str = "") -> ReviewItem:
        """Record the reviewer's outcome. `corrected` and `rejected` need a note saying what
        was changed or why; an item is decided once (a second decision is a ReviewError)."""
        if outcome not in OUTCOMES:
            raise ReviewError(f"outcome {outcome!r} is not one of {', '.join(OUTCOMES)}")
        note = clean_text(
            note,
            f"a note on a {outcome} item",
            limit=MAX_NOTE,
            region=self.region,
            required=outcome != "approved",
        )
        item = await self.get(item_id)
        if item.status != "open":
            raise ReviewError(_already(item))
        entry = await self.audit.entry(
            actor, "review.decide", f"review:{item_id}", PURPOSE, f"outcome={outcome}"
        )
        decided = await self.db.review_decide(
            item_id,
            outcome=outcome,
            by=actor.name,
            role=actor.role,
            at=self.clock(),
            note=note,
            audit=entry,
        )
        if not decided:  # decided (or erased) by another process since `get`
            raise ReviewError(_already(await self.get(item_id)))
        return await self.get(item_id)


def _already(item: ReviewItem) -> str:
    when = (
        ""
        if item.decided_at is None
        else time.strftime(" at %Y-%m-%d %H:%M", time.localtime(item.decided_at))
    )
    return f"review item #{item.id} is already decided ({item.outcome} by {item.decided_by}{when})"
