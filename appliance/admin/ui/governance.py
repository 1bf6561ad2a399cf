"""DPO pages: retention (policy, dry run, proposed change, purge), the breach register, the
human review queue and the records of processing (ROPA).

Forms post and redirect back with a short outcome (POST-redirect-GET); a refused action
changes nothing and says why. The engines audit every change (appliance.privacy.*); none of
these pages shows personal data (the registers are kept free of it by construction).
"""

from __future__ import annotations

import time
from datetime import datetime
from typing import Annotated, Any
from urllib.parse import urlencode

from litestar import Request, Response, get, post
from litestar.enums import RequestEncodingType
from litestar.params import Body, FromPath, FromQuery
from litestar.response import Redirect, Template

from appliance.admin import policy
from appliance.admin.auth import scope
from appliance.admin.params import RowId
from appliance.admin.services import Svc
from appliance.admin.users import User
from appliance.config import RETENTION_CATEGORIES
from appliance.errors import CallvaultError
from appliance.privacy import ropa
from appliance.privacy.breach import CATEGORIES as BREACH_CATEGORIES
from appliance.privacy.breach import BreachError
from appliance.privacy.retention import NOT_PER_LINE, Retention, RetentionError
from appliance.privacy.review import OUTCOMES

FormAny = Annotated[dict[str, Any], Body(media_type=RequestEncodingType.URL_ENCODED)]
UserReq = Request[User, str, Any]


def _back(path: str, *, ok: str = "", err: str = "") -> Redirect:
    query = urlencode({k: v for k, v in (("ok", ok), ("err", err)) if v})
    return Redirect(f"{path}?{query}" if query else path, status_code=303)


def _when(ts: float | None) -> str:
    return "" if ts is None else datetime.fromtimestamp(ts).strftime("%Y-%m-%d %H:%M")


def _msgs(ok: str, err: str) -> dict[str, str]:
    return {"ok": ok[:300], "err": err[:300]}


def _text(data: dict[str, Any], key: str) -> str:
    value = data.get(key, "")
    if isinstance(value, list):  # a repeated field: the last one, as a browser means it
        value = value[-1] if value else ""
    return str(value)


def _local_time(value: str, what: str) -> float | None:
    """A `datetime-local` (or date) form value as a timestamp; None when blank."""
    value = value.strip()
    if not value:
        return None
    try:
        return datetime.fromisoformat(value).timestamp()
    except ValueError:
        raise BreachError(f"{what}: use a date and time like 2026-11-23 14:05") from None


# ---- retention
@get("/retention", guards=[scope("retention:read")], name="retention", include_in_schema=False)
async def retention_page(
    svc: Svc,
    request: UserReq,
    *,
    dry: FromQuery[bool] = False,
    propose: FromQuery[bool] = False,
    line: FromQuery[str] = "",
    ok: FromQuery[str] = "",
    err: FromQuery[str] = "",
) -> Template:
    user = request.user
    retention = Retention.of(svc.privacy, actor=user.actor)
    view = policy.view(svc.cfg, retention)
    context: dict[str, Any] = {
        "user": user, "view": view, "runs": await retention.runs(8), "when": _when,
        "can_run": "retention:run" in user.scopes, "dry": None, "preview": None,
        "line": line, "lines": [ln.name for ln in svc.cfg.lines], "not_per_line": NOT_PER_LINE,
        "categories": RETENTION_CATEGORIES, "proposal": {}, "ttl_min": policy.PREVIEW_TTL_S // 60,
        **_msgs(ok, err),
    }  # fmt: skip
    # The form starts from the figures in force for the chosen scope.
    p = retention.policies
    try:
        context["proposal"] = {
            c: p.configured(c, line or None)
            for c in RETENTION_CATEGORIES
            if not (line and c in NOT_PER_LINE)
        }
        if line and svc.cfg.line_by_name(line) is None:
            raise RetentionError(f"no line named {line!r}")
        if dry:
            context["dry"] = await policy.dry_run(svc.privacy, user.actor)
        if propose:
            fields = {k: str(v) for k, v in request.query_params.items()}
            days = policy.parse_days(fields)
            context["proposal"].update(days)
            context["preview"] = await policy.preview(svc.privacy, user.actor, line, days)
    except CallvaultError as exc:
        context["err"] = str(exc)[:300]
    return Template("retention.html", context=context)


@post("/retention/run", guards=[scope("retention:run")], include_in_schema=False)
async def retention_run(data: FormAny, svc: Svc, request: UserReq) -> Redirect:
    try:
        at = float(_text(data, "at"))
        expect = int(_text(data, "expect") or -1)
    except ValueError:
        return _back("/retention", err="run a dry run first: the purge runs what it showed")
    try:
        result = await policy.run(svc.privacy, request.user.actor, at)
    except CallvaultError as exc:
        return _back("/retention", err=str(exc))
    finally:
        policy.forget_upcoming(svc.privacy)
    t = policy.totals(result.counts)
    msg = (
        f"purge run #{result.run_id}: {t['deleted']} deleted, {t['anonymised']} anonymised, "
        f"{t['held']} kept under legal holds; {result.files_removed} encrypted files removed"
    )
    if expect >= 0 and t["deleted"] + t["anonymised"] != expect:
        msg += f" (the dry run listed {expect}: a hold placed since, or another run, changed it)"
    return _back("/retention", ok=msg)


# ---- breach register
@get("/breaches", guards=[scope("breach:read")], name="breaches", include_in_schema=False)
async def breaches_page(
    svc: Svc, request: UserReq, ok: FromQuery[str] = "", err: FromQuery[str] = ""
) -> Template:
    now = svc.privacy.breaches.clock()
    rows = [{"b": b, "d": b.deadline(now)} for b in await svc.privacy.breaches.all()]
    return Template(
        "breaches.html",
        context={"user": request.user, "rows": rows, "when": _when,
                 "categories": BREACH_CATEGORIES,
                 "can_write": "breach:write" in request.user.scopes,
                 "now_local": datetime.now().strftime("%Y-%m-%dT%H:%M"), **_msgs(ok, err)},
    )  # fmt: skip


@post("/breaches", guards=[scope("breach:write")], include_in_schema=False)
async def breach_record(data: FormAny, svc: Svc, request: UserReq) -> Redirect:
    cats = data.get("categories", [])
    cats = [cats] if isinstance(cats, str) else list(cats)
    try:
        subjects = _text(data, "subjects_affected").strip() or "0"
        if not subjects.isdigit():
            raise BreachError("subjects affected: a whole number (0 if not known yet)")
        breach_id = await svc.privacy.breaches.record(
            request.user.actor,
            summary=_text(data, "summary"),
            categories=cats,
            subjects_affected=int(subjects),
            consequences=_text(data, "consequences"),
            measures=_text(data, "measures"),
            discovered_at=_local_time(_text(data, "discovered_at"), "discovered"),
            occurred_at=_local_time(_text(data, "occurred_at"), "occurred"),
        )
    except CallvaultError as exc:
        return _back("/breaches", err=str(exc))
    return _back(
        f"/breaches/{breach_id}",
        ok="breach recorded: the 72-hour clock to the supervisory authority runs from discovery",
    )


@get(
    "/breaches/{breach_id:int}", guards=[scope("breach:read")], name="breach",
    include_in_schema=False,
)  # fmt: skip
async def breach_page(
    breach_id: RowId,
    svc: Svc,
    request: UserReq,
    ok: FromQuery[str] = "",
    err: FromQuery[str] = "",
) -> Template:
    reg = svc.privacy.breaches
    b = await reg.get(breach_id)
    return Template(
        "breach.html",
        context={"user": request.user, "b": b, "d": b.deadline(reg.clock()),
                 "events": await reg.events(breach_id), "when": _when,
                 "can_write": "breach:write" in request.user.scopes, **_msgs(ok, err)},
    )  # fmt: skip


@post(
    "/breaches/{breach_id:int}/{action:str}", guards=[scope("breach:write")],
    include_in_schema=False,
)  # fmt: skip
async def breach_action(
    breach_id: RowId, action: FromPath[str], data: FormAny, svc: Svc, request: UserReq
) -> Redirect:
    reg, actor = svc.privacy.breaches, request.user.actor
    here = f"/breaches/{breach_id}"
    try:
        if action == "notify-authority":
            await reg.notify_authority(
                breach_id, actor, reference=_text(data, "reference"),
                at=_local_time(_text(data, "at"), "notified at"),
                delay_reason=_text(data, "delay_reason"),
            )  # fmt: skip
            msg = "authority notification recorded"
        elif action == "authority-not-required":
            await reg.authority_not_required(breach_id, actor, reason=_text(data, "reason"))
            msg = "recorded why the authority is not notified"
        elif action == "notify-subjects":
            await reg.notify_subjects(
                breach_id, actor, how=_text(data, "how"),
                at=_local_time(_text(data, "at"), "subjects told at"),
            )  # fmt: skip
            msg = "subject notification recorded"
        elif action == "subjects-not-required":
            await reg.subjects_not_required(breach_id, actor, reason=_text(data, "reason"))
            msg = "recorded why the subjects are not told"
        elif action == "close":
            await reg.close(breach_id, actor, note=_text(data, "note"))
            msg = "breach closed"
        else:
            raise BreachError(f"unknown action {action!r}")
    except CallvaultError as exc:
        return _back(here, err=str(exc))
    return _back(here, ok=msg)


# ---- human review queue
@get("/review", guards=[scope("review:read")], name="review", include_in_schema=False)
async def review_page(
    svc: Svc,
    request: UserReq,
    status: FromQuery[str] = "open",
    ok: FromQuery[str] = "",
    err: FromQuery[str] = "",
) -> Template:
    wanted = status if status in ("open", "decided") else None
    items = await svc.privacy.review.items(wanted)
    if wanted != "open":
        items.sort(key=lambda i: i.flagged_at, reverse=True)
    return Template(
        "review.html",
        context={"user": request.user, "items": items, "status": status if wanted else "all",
                 "outcomes": OUTCOMES, "when": _when, "now": time.time(),
                 "can_write": "review:write" in request.user.scopes,
                 "can_calls": "calls:read" in request.user.scopes, **_msgs(ok, err)},
    )  # fmt: skip


@post("/review/{item_id:int}/decide", guards=[scope("review:write")], include_in_schema=False)
async def review_decide(item_id: RowId, data: FormAny, svc: Svc, request: UserReq) -> Redirect:
    try:
        item = await svc.privacy.review.decide(
            item_id, request.user.actor, _text(data, "outcome"), _text(data, "note")
        )
    except CallvaultError as exc:  # ReviewError, or a note refused for personal data
        return _back("/review", err=str(exc))
    return _back("/review", ok=f"review item #{item.id} {item.outcome}")


# ---- records of processing
@get("/ropa", guards=[scope("ropa:read")], name="ropa", include_in_schema=False)
async def ropa_page(svc: Svc, request: UserReq) -> Template:
    doc = ropa.build(svc.cfg)
    return Template(
        "ropa.html",
        context={"user": request.user, "doc": doc, "days": _days,
                 "generated": _when(float(doc["generated_at"]))},
    )  # fmt: skip


def _days(n: int) -> str:
    if n == 0:
        return "not kept after the call"
    if n % 365 == 0:
        years = n // 365
        return f"{n} days ({years} year{'s' if years > 1 else ''})"
    return f"{n} days"


@get("/ropa/download", guards=[scope("ropa:read")], include_in_schema=False)
async def ropa_download(svc: Svc, format: FromQuery[str] = "markdown") -> Response[str]:
    doc = ropa.build(svc.cfg)
    stamp = time.strftime("%Y%m%d", time.localtime(float(doc["generated_at"])))
    if format == "json":
        body, media, ext = ropa.to_json(doc), "application/json", "json"
    elif format == "markdown":
        body, media, ext = ropa.to_markdown(doc), "text/markdown; charset=utf-8", "md"
    else:
        raise ropa.RopaError(f"unknown format {format!r} (markdown or json)")
    return Response(
        body,
        media_type=media,
        headers={"Content-Disposition": f'attachment; filename="ropa-{stamp}.{ext}"'},
    )


ROUTES = [
    retention_page, retention_run, breaches_page, breach_record, breach_page, breach_action,
    review_page, review_decide, ropa_page, ropa_download,
]  # fmt: skip
