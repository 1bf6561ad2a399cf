"""Contacts & leads (import with the full row report, lists) and Campaigns (create, start,
pause, resume, stop, the report with its outcomes-over-time chart, CSV export).

Forms post and redirect back with a short message (POST-redirect-GET). The chart's data sits
in a data- attribute and static/campaigns.js draws it: the pages carry no inline script.
Operators see and act on the campaigns of their own lines only (and the lists those call or
they imported); another line's campaign is a 404, as another line's call is.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from datetime import datetime
from typing import Annotated, Any
from urllib.parse import urlencode

from litestar import Request, Response, get, post
from litestar.datastructures import UploadFile
from litestar.enums import RequestEncodingType
from litestar.exceptions import NotFoundException
from litestar.params import Body, FromPath, FromQuery
from litestar.response import Redirect, Template

from appliance.admin.auth import scope
from appliance.admin.services import Svc
from appliance.admin.users import User
from appliance.campaign.campaign import CampaignNotFoundError, Campaigns, Lines, sees
from appliance.campaign.leads import MAX_UPLOAD_BYTES, Leads
from appliance.campaign.model import OUTCOMES, Settings
from appliance.errors import CallvaultError

UserReq = Request[User, str, Any]
Form = Annotated[dict[str, str], Body(media_type=RequestEncodingType.URL_ENCODED)]


@dataclass
class LeadUpload:
    file: UploadFile
    list_name: str
    region: str = ""
    mapping: str = ""


Upload = Annotated[LeadUpload, Body(media_type=RequestEncodingType.MULTI_PART)]


def _back(path: str, *, ok: str = "", err: str = "", **extra: str) -> Redirect:
    query = urlencode({k: v for k, v in (("ok", ok), ("err", err), *extra.items()) if v})
    return Redirect(f"{path}?{query}" if query else path, status_code=303)


def _when(ts: float | None) -> str:
    return "" if ts is None else datetime.fromtimestamp(ts).strftime("%Y-%m-%d %H:%M")


def _lines(user: User) -> Lines:
    return list(user.lines) if user.role == "operator" else None


async def _visible(svc: Svc, user: User, campaign_id: int) -> Campaigns:
    camps = Campaigns(svc.privacy)
    try:
        await camps.get(str(campaign_id), _lines(user))
    except CampaignNotFoundError as exc:
        raise NotFoundException(str(exc)) from None
    return camps


def _mapping(raw: str) -> dict[str, str]:
    out = {}
    for item in filter(None, (p.strip() for p in raw.replace("\n", ",").split(","))):
        fld, sep, col = item.partition("=")
        if not sep:
            raise CallvaultError(f"mapping {item!r}: expected FIELD=COLUMN")
        out[fld.strip()] = col.strip()
    return out


@get("/leads", guards=[scope("leads:read")], name="leads", include_in_schema=False)
async def leads_page(
    svc: Svc,
    request: UserReq,
    import_id: FromQuery[int | None] = None,
    ok: FromQuery[str] = "",
    err: FromQuery[str] = "",
) -> Template:
    user = request.user
    lists = await Campaigns(svc.privacy).lists(_lines(user), user.actor)
    last = await svc.db.lead_import(import_id) if import_id is not None else None
    if last is not None and last["list_name"] not in {x["name"] for x in lists}:
        last = None  # another operator's import: not theirs to see
    return Template(
        "leads.html",
        context={
            "user": request.user, "lists": lists, "when": _when,
            "last": last, "bad": json.loads(last["bad"]) if last else [],
            "can_write": "leads:write" in request.user.scopes,
            "max_mb": MAX_UPLOAD_BYTES // (1024 * 1024), "ok": ok[:300], "err": err[:300],
        },
    )  # fmt: skip


@post(
    "/leads/import", guards=[scope("leads:write")], request_max_body_size=MAX_UPLOAD_BYTES + 65536,
    include_in_schema=False,
)  # fmt: skip
async def leads_import(data: Upload, svc: Svc, request: UserReq) -> Redirect:
    content = await data.file.read()
    user = request.user
    try:
        await Campaigns(svc.privacy).may_import(data.list_name, _lines(user), user.actor)
        rep = await Leads(svc.privacy).import_bytes(
            content, data.file.filename or "upload", list_name=data.list_name,
            actor=request.user.actor, region=data.region or None,
            mapping=_mapping(data.mapping),
        )  # fmt: skip
    except CallvaultError as exc:
        return _back("/leads", err=str(exc))
    summary = (
        f"{rep.rows} rows: {rep.imported} imported, {rep.unchanged} already on the list, "
        f"{len(rep.bad)} bad"
    )
    return _back("/leads", ok=summary, import_id=str(rep.import_id or ""))


@get("/campaigns", guards=[scope("campaigns:read")], name="campaigns", include_in_schema=False)
async def campaigns_page(
    svc: Svc, request: UserReq, ok: FromQuery[str] = "", err: FromQuery[str] = ""
) -> Template:
    user = request.user
    camps = Campaigns(svc.privacy)
    rows = [
        {**c, "counts": await svc.db.campaign_counts(int(c["id"]))}
        for c in await camps.visible(_lines(user))
    ]
    return Template(
        "campaigns.html",
        context={
            "user": user, "rows": rows, "lists": await camps.lists(_lines(user), user.actor),
            "lines": [ln.name for ln in svc.privacy.cfg.lines
                      if ln.kind == "agent" and sees(_lines(user), ln.name)],
            "defaults": Settings(), "can_write": "campaigns:write" in request.user.scopes,
            "when": _when, "ok": ok[:300], "err": err[:300],
        },
    )  # fmt: skip


@post("/campaigns", guards=[scope("campaigns:write")], include_in_schema=False)
async def campaign_create(data: Form, svc: Svc, request: UserReq) -> Redirect:
    try:
        doc: dict[str, Any] = {
            "windows": [w for w in data.get("windows", "").splitlines() if w.strip()],
            "max_attempts": int(data.get("max_attempts") or 3),
            "max_concurrent": int(data.get("max_concurrent") or 2),
            "calls_per_minute": int(data.get("calls_per_minute") or 10),
        }
        if data.get("dial"):
            doc["dial"] = data["dial"]
        if data.get("holidays"):
            doc["block_public_holidays"] = data["holidays"] != "allow"
        cid = await Campaigns(svc.privacy).create(
            data.get("name", ""), line=data.get("line", ""), list_name=data.get("list", ""),
            settings=Settings.from_dict(doc), actor=request.user.actor,
            lines=_lines(request.user),
        )  # fmt: skip
    except (CallvaultError, ValueError) as exc:
        return _back("/campaigns", err=str(exc))
    return _back(f"/campaigns/{cid}", ok="created as a draft")


@get(
    "/campaigns/{campaign_id:int}", guards=[scope("campaigns:read")], name="campaign",
    include_in_schema=False,
)  # fmt: skip
async def campaign_page(
    campaign_id: FromPath[int],
    svc: Svc,
    request: UserReq,
    ok: FromQuery[str] = "",
    err: FromQuery[str] = "",
) -> Template:
    camps = await _visible(svc, request.user, campaign_id)
    rep = await camps.report(str(campaign_id), lines=_lines(request.user))
    labels = list(rep["over_time"])
    chart = {
        "labels": labels,
        "series": {o: [rep["over_time"][k].get(o, 0) for k in labels]
                   for o in (*OUTCOMES, "busy", "no_answer", "voicemail", "answered", "failed")},
    }  # fmt: skip
    return Template(
        "campaign.html",
        context={
            "user": request.user, "r": rep, "chart": chart,
            "can_write": "campaigns:write" in request.user.scopes,
            "ok": ok[:300], "err": err[:300],
        },
    )  # fmt: skip


@post(
    "/campaigns/{campaign_id:int}/action", guards=[scope("campaigns:write")],
    include_in_schema=False,
)  # fmt: skip
async def campaign_action(
    campaign_id: FromPath[int], data: Form, svc: Svc, request: UserReq
) -> Redirect:
    camps = await _visible(svc, request.user, campaign_id)
    try:
        state = await camps.act(
            str(campaign_id), data.get("action", ""), request.user.actor, _lines(request.user)
        )
    except CallvaultError as exc:
        return _back(f"/campaigns/{campaign_id}", err=str(exc))
    return _back(f"/campaigns/{campaign_id}", ok=f"now {state}")


@get(
    "/campaigns/{campaign_id:int}/report.csv", guards=[scope("campaigns:read")],
    include_in_schema=False,
)  # fmt: skip
async def campaign_csv(campaign_id: FromPath[int], svc: Svc, request: UserReq) -> Response[str]:
    camps = await _visible(svc, request.user, campaign_id)
    text = await camps.report_csv(str(campaign_id), lines=_lines(request.user))
    return Response(
        text, media_type="text/csv",
        headers={"Content-Disposition": f'attachment; filename="campaign-{campaign_id}.csv"'},
    )  # fmt: skip


ROUTES = [
    leads_page, leads_import, campaigns_page, campaign_create, campaign_page, campaign_action,
    campaign_csv,
]  # fmt: skip
