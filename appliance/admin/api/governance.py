"""/api/v1/retention, /api/v1/breaches, /api/v1/review, /api/v1/ropa: the DPO's registers.

The twins of the DPO pages (appliance.admin.ui.governance), with the same engines and rules:
a purge runs only the plan of a dry run (`at`: the dry run's `now`), a proposed retention
change is previewed (applied in the config file), every change is audited by its engine.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from typing import Any

from litestar import Request, Response, Router, get, post
from litestar.params import FromQuery, JSONBody

from appliance.admin import policy
from appliance.admin.auth import scope
from appliance.admin.params import RowId
from appliance.admin.services import Svc
from appliance.admin.tokens import Principal
from appliance.privacy import ropa
from appliance.privacy.breach import Breach, Deadline
from appliance.privacy.retention import Retention
from appliance.privacy.review import ReviewItem

Req = Request[Principal, str, Any]


# ---- retention
@dataclass
class RetentionRun:
    id: int
    started_at: float
    finished_at: float | None
    dry_run: bool
    status: str
    error: str
    counts: dict[str, dict[str, int]]


@dataclass
class RetentionPolicy:
    policy: policy.PolicyView
    runs: list[RetentionRun]


@dataclass
class Proposal:
    days: dict[str, int]
    """Proposed days per category, e.g. {"recording": 30}; unchanged figures may be left out."""
    line: str = ""
    """Empty: the default policy; else the line whose own figures change."""


@dataclass
class PurgeRequest:
    at: float
    """The `now` of the dry run whose plan to purge (at most 15 minutes old)."""


@dataclass
class PurgeResult:
    run: int
    now: float
    counts: dict[str, dict[str, int]]
    totals: dict[str, int]
    files_removed: int


@get("/retention", guards=[scope("retention:read")])
async def show_retention(svc: Svc, request: Req) -> RetentionPolicy:
    retention = Retention.of(svc.privacy, actor=request.user.actor)
    runs = [
        RetentionRun(
            id=int(r["id"]),
            started_at=float(r["started_at"]),
            finished_at=None if r["finished_at"] is None else float(r["finished_at"]),
            dry_run=bool(r["dry_run"]),
            status=str(r["status"]),
            error=str(r["error"]),
            counts=json.loads(str(r["counts"])),
        )
        for r in await svc.db.retention_runs(10)
    ]
    return RetentionPolicy(policy=policy.view(svc.cfg, retention), runs=runs)


@post("/retention/dry-run", guards=[scope("retention:read")], status_code=200)
async def retention_dry_run(svc: Svc, request: Req) -> policy.DryRun:
    """What a purge now would delete, anonymise or keep (held); recorded as a dry run."""
    return await policy.dry_run(svc.privacy, request.user.actor)


@post("/retention/preview", guards=[scope("retention:read")], status_code=200)
async def retention_preview(data: JSONBody[Proposal], svc: Svc, request: Req) -> policy.Preview:
    """A dry run under proposed figures beside one under the policy in force; changes nothing.
    `snippet` is the TOML to put in the config file to apply it."""
    return await policy.preview(svc.privacy, request.user.actor, data.line, data.days)


@post("/retention/run", guards=[scope("retention:run")], status_code=200)
async def retention_run(data: JSONBody[PurgeRequest], svc: Svc, request: Req) -> PurgeResult:
    try:
        result = await policy.run(svc.privacy, request.user.actor, data.at)
    finally:
        policy.forget_upcoming(svc.privacy)
    return PurgeResult(**policy.run_summary(result))


# ---- breaches
@dataclass
class BreachView:
    breach: Breach
    deadline: Deadline


@dataclass
class BreachEvent:
    id: int
    at: float
    actor: str
    role: str
    action: str
    detail: str


@dataclass
class BreachDetail:
    breach: Breach
    deadline: Deadline
    events: list[BreachEvent]


@dataclass
class NewBreach:
    summary: str
    """What happened, without personal data (no numbers, names or e-mail addresses)."""
    categories: list[str]
    subjects_affected: int
    consequences: str
    measures: str
    discovered_at: float | None = None
    """Starts the 72-hour clock; default now."""
    occurred_at: float | None = None


@dataclass
class AuthorityNotice:
    reference: str
    at: float | None = None
    delay_reason: str = ""


@dataclass
class SubjectNotice:
    how: str
    at: float | None = None


@dataclass
class Why:
    reason: str


@dataclass
class CloseNote:
    note: str = ""


def _view(svc: Any, b: Breach) -> BreachView:
    return BreachView(breach=b, deadline=b.deadline(svc.privacy.breaches.clock()))


@get("/breaches", guards=[scope("breach:read")])
async def list_breaches(svc: Svc, include_closed: FromQuery[bool] = True) -> list[BreachView]:
    return [_view(svc, b) for b in await svc.privacy.breaches.all(include_closed=include_closed)]


@post("/breaches", guards=[scope("breach:write")])
async def record_breach(data: JSONBody[NewBreach], svc: Svc, request: Req) -> BreachView:
    reg = svc.privacy.breaches
    breach_id = await reg.record(
        request.user.actor,
        summary=data.summary,
        categories=data.categories,
        subjects_affected=data.subjects_affected,
        consequences=data.consequences,
        measures=data.measures,
        discovered_at=data.discovered_at,
        occurred_at=data.occurred_at,
    )
    return _view(svc, await reg.get(breach_id))


@get("/breaches/{breach_id:int}", guards=[scope("breach:read")])
async def show_breach(breach_id: RowId, svc: Svc) -> BreachDetail:
    reg = svc.privacy.breaches
    b = await reg.get(breach_id)
    events = [
        BreachEvent(
            id=int(e["id"]),
            at=float(e["at"]),
            actor=str(e["actor"]),
            role=str(e["role"]),
            action=str(e["action"]),
            detail=str(e["detail"]),
        )
        for e in await reg.events(breach_id)
    ]
    return BreachDetail(breach=b, deadline=b.deadline(reg.clock()), events=events)


@post("/breaches/{breach_id:int}/notify-authority", guards=[scope("breach:write")])
async def notify_authority(
    breach_id: RowId, data: JSONBody[AuthorityNotice], svc: Svc, request: Req
) -> BreachView:
    b = await svc.privacy.breaches.notify_authority(
        breach_id, request.user.actor, reference=data.reference, at=data.at,
        delay_reason=data.delay_reason,
    )  # fmt: skip
    return _view(svc, b)


@post("/breaches/{breach_id:int}/authority-not-required", guards=[scope("breach:write")])
async def authority_not_required(
    breach_id: RowId, data: JSONBody[Why], svc: Svc, request: Req
) -> BreachView:
    b = await svc.privacy.breaches.authority_not_required(
        breach_id, request.user.actor, reason=data.reason
    )
    return _view(svc, b)


@post("/breaches/{breach_id:int}/notify-subjects", guards=[scope("breach:write")])
async def notify_subjects(
    breach_id: RowId, data: JSONBody[SubjectNotice], svc: Svc, request: Req
) -> BreachView:
    b = await svc.privacy.breaches.notify_subjects(
        breach_id, request.user.actor, how=data.how, at=data.at
    )
    return _view(svc, b)


@post("/breaches/{breach_id:int}/subjects-not-required", guards=[scope("breach:write")])
async def subjects_not_required(
    breach_id: RowId, data: JSONBody[Why], svc: Svc, request: Req
) -> BreachView:
    b = await svc.privacy.breaches.subjects_not_required(
        breach_id, request.user.actor, reason=data.reason
    )
    return _view(svc, b)


@post("/breaches/{breach_id:int}/close", guards=[scope("breach:write")])
async def close_breach(
    breach_id: RowId, data: JSONBody[CloseNote], svc: Svc, request: Req
) -> BreachView:
    return _view(
        svc, await svc.privacy.breaches.close(breach_id, request.user.actor, note=data.note)
    )


# ---- human review
@dataclass
class Decision:
    outcome: str
    """approved | corrected | rejected (corrected and rejected need a note)."""
    note: str = ""


@get("/review", guards=[scope("review:read")])
async def list_review(svc: Svc, status: FromQuery[str] = "open") -> list[ReviewItem]:
    """Items, oldest first; status `open`, `decided` or `all`."""
    if status == "all":
        return await svc.privacy.review.items(None)
    return await svc.privacy.review.items(status)


@post("/review/{item_id:int}/decide", guards=[scope("review:write")], status_code=200)
async def decide_review(
    item_id: RowId, data: JSONBody[Decision], svc: Svc, request: Req
) -> ReviewItem:
    return await svc.privacy.review.decide(item_id, request.user.actor, data.outcome, data.note)


# ---- records of processing
@dataclass
class Ropa:
    """The record as generated (format `callvault-ropa/1`, validated against its schema)."""

    record: dict[str, Any] = field(default_factory=dict)


@get("/ropa", guards=[scope("ropa:read")])
async def show_ropa(svc: Svc) -> Ropa:
    return Ropa(record=ropa.build(svc.cfg))


@get("/ropa/markdown", guards=[scope("ropa:read")], media_type="text/markdown")
async def ropa_markdown(svc: Svc) -> Response[str]:
    return Response(ropa.to_markdown(ropa.build(svc.cfg)), media_type="text/markdown")


router = Router(
    path="/api/v1",
    route_handlers=[
        show_retention,
        retention_dry_run,
        retention_preview,
        retention_run,
        list_breaches,
        record_breach,
        show_breach,
        notify_authority,
        authority_not_required,
        notify_subjects,
        subjects_not_required,
        close_breach,
        list_review,
        decide_review,
        show_ropa,
        ropa_markdown,
    ],
    tags=["governance"],
)
