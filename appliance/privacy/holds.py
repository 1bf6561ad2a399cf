"""Legal holds: a subject, a call or a case kept beyond retention and erasure, with a reason,
an owner and an optional expiry. Placing and releasing one is audited.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

from appliance.errors import CallvaultError
from appliance.privacy.audit import Actor, AuditLog
from appliance.privacy.identifiers import Identifier
from appliance.privacy.keyring import Keyring
from appliance.store import Database

MAX_TEXT = 500


class HoldError(CallvaultError):
    pass


@dataclass(frozen=True)
class Hold:
    id: int
    scope: str
    case_ref: str
    reason: str
    owner: str
    created_at: float
    expires_at: float | None
    released_at: float | None

    def describe(self) -> str:
        until = "no expiry" if self.expires_at is None else f"until {_day(self.expires_at)}"
        case = f" {self.case_ref!r}" if self.case_ref else ""
        who = f"owner {self.owner}"
        return f"legal hold #{self.id} ({self.scope}{case}, {who}, {until}): {self.reason}"


def _day(ts: float) -> str:
    return time.strftime("%Y-%m-%d", time.gmtime(ts))


def _hold(r: dict[str, Any]) -> Hold:
    return Hold(
        id=int(r["id"]),
        scope=str(r["scope"]),
        case_ref=str(r["case_ref"]),
        reason=str(r["reason"]),
        owner=str(r["owner"]),
        created_at=float(r["created_at"]),
        expires_at=None if r["expires_at"] is None else float(r["expires_at"]),
        released_at=None if r["released_at"] is None else float(r["released_at"]),
    )


def _text(value: str, what: str) -> str:
    value = value.strip()
    if not value:
        raise HoldError(f"a legal hold needs a {what}")
    if len(value) > MAX_TEXT:
        raise HoldError(f"{what} is longer than {MAX_TEXT} characters")
    return value


class LegalHolds:
    def __init__(
        self,
        db: Database,
        keyring: Keyring,
        audit: AuditLog,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self.db = db
        self.keyring = keyring
        self.audit = audit
        self.clock = clock

    async def _add(
        self,
        actor: Actor,
        *,
        scope: str,
        reason: str,
        owner: str,
        expires_at: float | None,
        subject_id: int | None = None,
        call_ids: Sequence[str] = (),
        case_ref: str = "",
    ) -> int:
        now = self.clock()
        if expires_at is not None and expires_at <= now:
            raise HoldError("the hold's expiry is in the past")
        reason, owner = _text(reason, "reason"), _text(owner, "owner")
        entry = await self.audit.entry(
            actor, "hold.place", "hold", "legal claim", f"scope={scope} calls={len(call_ids)}"
        )
        return await self.db.hold_add(
            scope=scope,
            case_ref=case_ref,
            subject_id=subject_id,
            call_ids=call_ids,
            reason=reason,
            owner=owner,
            created_at=now,
            expires_at=expires_at,
            audit=entry,
        )

    async def on_subject(
        self,
        ident: Identifier,
        actor: Actor,
        *,
        reason: str,
        owner: str,
        expires_at: float | None = None,
    ) -> int:
        row = await self.db.subject_by_index(await self.keyring.blind_index(ident))
        if row is None:
            raise HoldError("no data is held about this subject: nothing to put on hold")
        return await self._add(
            actor,
            scope="subject",
            subject_id=int(row["id"]),
            reason=reason,
            owner=owner,
            expires_at=expires_at,
        )

    async def on_calls(
        self,
        call_ids: Sequence[str],
        actor: Actor,
        *,
        reason: str,
        owner: str,
        case_ref: str = "",
        expires_at: float | None = None,
    ) -> int:
        if not call_ids:
            raise HoldError("a call or case hold names at least one call")
        for cid in call_ids:
            if await self.db.call(cid) is None:
                raise HoldError(f"no call {cid!r}")
        return await self._add(
            actor,
            scope="case" if case_ref else "call",
            call_ids=call_ids,
            case_ref=case_ref,
            reason=reason,
            owner=owner,
            expires_at=expires_at,
        )

    async def release(self, hold_id: int, actor: Actor) -> None:
        entry = await self.audit.entry(actor, "hold.release", f"hold:{hold_id}", "legal claim")
        if not await self.db.hold_release(hold_id, self.clock(), entry):
            raise HoldError(f"no hold #{hold_id} in force")

    async def all(self, *, active: bool = False) -> list[Hold]:
        return [_hold(r) for r in await self.db.holds(self.clock() if active else None)]

    async def held_calls(self) -> dict[str, Hold]:
        """call id -> the hold keeping it, for holds in force now."""
        by_id = {h.id: h for h in await self.all(active=True)}
        return {c: by_id[h] for c, h in (await self.db.held_calls(self.clock())).items()}
