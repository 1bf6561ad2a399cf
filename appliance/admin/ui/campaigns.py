"""Contacts & leads (import with the full row report, lists) and Campaigns (create, start,
pause, resume, stop, the report with its outcomes-over-time chart, CSV export).

Forms post and redirect back with a short message (POST-redirect-GET). The chart's data sits
in a data- attribute and static/campaigns.js draws it: the pages carry no inline script.
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
from litestar.params import Body, FromPath, FromQuery
from litestar.response import Redirect, Template

from appliance.admin.auth import scope
from appliance.admin.services import Svc
from appliance.admin.users import User
from appliance.campaign.campaign import Campaigns
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
    last = await svc.db.lead_import(import_id) if import_id is not None else None
    return Template(
        "leads.html",
        context={
            "user": request.user, "lists": await svc.db.lead_lists(), "when": _when,
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
    try:
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
    rows = [
        {**c, "counts": await svc.db.campaign_counts(int(c["id"]))}
        for c in await svc.db.campaigns()
    ]
    return Template(
        "campaigns.html",
        context={
            "user": request.user, "rows": rows, "lists": await svc.db.lead_lists(),
            "lines": [ln.name for ln in svc.privacy.cfg.lines if ln.kind == "agent"],
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
        cid = await Campaigns(svc.privacy).create(
            data.get("name", ""), line=data.get("line", ""), list_name=data.get("list", ""),
            settings=Settings.from_dict(doc), actor=request.user.actor,
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
    rep = await Campaigns(svc.privacy).report(str(campaign_id))
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
    try:
        state = await Campaigns(svc.privacy).act(
            str(campaign_id), data.get("action", ""), request.user.actor
        )
    except CallvaultError as exc:
        return _back(f"/campaigns/{campaign_id}", err=str(exc))
    return _back(f"/campaigns/{campaign_id}", ok=f"now {state}")


@get(
    "/campaigns/{campaign_id:int}/report.csv", guards=[scope("campaigns:read")],
    include_in_schema=False,
)  # fmt: skip
async def campaign_csv(campaign_id: FromPath[int], svc: Svc) -> Response[str]:
    text = await Campaigns(svc.privacy).report_csv(str(campaign_id))
    return Response(
        text, media_type="text/csv",
        headers={"Content-Disposition": f'attachment; filename="campaign-{campaign_id}.csv"'},
    )  # fmt: skip


ROUTES = [
    leads_page, leads_import, campaigns_page, campaign_create, campaign_page, campaign_action,
    campaign_csv,
]  # fmt: skip
