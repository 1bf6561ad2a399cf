"""/api/v1/holds, /api/v1/dnc and /api/v1/audit: legal holds, do-not-call, the audit chain."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from litestar import Request, Router, delete, get, post
from litestar.params import FromPath, FromQuery, JSONBody

from appliance.admin.auth import scope
from appliance.admin.params import RowId
from appliance.admin.services import Svc
from appliance.admin.tokens import Principal
from appliance.privacy.audit import Verification
from appliance.privacy.dnc import DncError, DncView
from appliance.privacy.holds import Hold, HoldError

Req = Request[Principal, str, Any]


@dataclass
class NewHold:
    reason: str
    owner: str
    subject: str = ""
    """A phone number or e-mail: hold everything about this subject."""
    calls: list[str] = field(default_factory=list)
    """Or: these call ids (a case hold when `case_ref` is given)."""
    case_ref: str = ""
    expires_at: float | None = None


@dataclass
class HoldCreated:
    id: int


@get("/holds", guards=[scope("holds:read")])
async def list_holds(svc: Svc, active: FromQuery[bool] = False) -> list[Hold]:
    return await svc.rights.holds.all(active=active)


@post("/holds", guards=[scope("holds:write")])
async def place_hold(data: JSONBody[NewHold], svc: Svc, request: Req) -> HoldCreated:
    holds, actor = svc.rights.holds, request.user.actor
    if bool(data.subject) == bool(data.calls):
        raise HoldError("name either a subject or calls, not both and not neither")
    if data.subject:
        ident = svc.privacy.subjects.parse(data.subject)
        hold_id = await holds.on_subject(
            ident, actor, reason=data.reason, owner=data.owner, expires_at=data.expires_at
        )
    else:
        hold_id = await holds.on_calls(
            data.calls,
            actor,
            reason=data.reason,
            owner=data.owner,
            case_ref=data.case_ref,
            expires_at=data.expires_at,
        )
    return HoldCreated(id=hold_id)


@post("/holds/{hold_id:int}/release", guards=[scope("holds:write")])
async def release_hold(hold_id: RowId, svc: Svc, request: Req) -> None:
    await svc.rights.holds.release(hold_id, request.user.actor)


@dataclass
class NewDnc:
    number: str
    reason: str
    source: str = "api"


@dataclass
class DncResult:
    changed: bool


@get("/dnc", guards=[scope("dnc:read")])
async def list_dnc(svc: Svc, request: Req) -> list[DncView]:
    await svc.privacy.audit.record(request.user.actor, "dnc.view", "dnc", "do-not-call")
    return await svc.privacy.dnc.entries()


@post("/dnc", guards=[scope("dnc:write")])
async def add_dnc(data: JSONBody[NewDnc], svc: Svc, request: Req) -> DncResult:
    if not data.reason.strip():
        raise DncError("a do-not-call entry needs a reason")
    added = await svc.privacy.dnc.add(
        data.number, source=data.source, reason=data.reason, actor=request.user.actor
    )
    return DncResult(changed=added)


@delete("/dnc/{number:str}", guards=[scope("dnc:write")], status_code=200)
async def remove_dnc(number: FromPath[str], svc: Svc, request: Req) -> DncResult:
    return DncResult(changed=await svc.privacy.dnc.remove(number, actor=request.user.actor))


@get("/audit/verify", guards=[scope("audit:read")])
async def verify_audit(svc: Svc) -> Verification:
    return await svc.privacy.audit.verify()


router = Router(
    path="/api/v1",
    route_handlers=[
        list_holds,
        place_hold,
        release_hold,
        list_dnc,
        add_dnc,
        remove_dnc,
        verify_audit,
    ],
    tags=["privacy registers"],
)
