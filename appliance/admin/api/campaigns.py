"""/api/v1/leads and /api/v1/campaigns: lead list import and listing, campaigns and reports.

Imports are the file's raw bytes as the request body (CSV or XLSX, at most
appliance.campaign.leads.MAX_UPLOAD_BYTES), the list name and column mapping in the query; the
answer is the row report. Lead numbers are personal data: listing a list's leads is audited.
Every handler reads and acts through the caller's lines (appliance.campaign.campaign): API
tokens carry no lines and see every campaign; another line's campaign or list is a 404.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from litestar import Request, Response, Router, get, post
from litestar.exceptions import HTTPException, NotFoundException
from litestar.params import FromPath, FromQuery, JSONBody

from appliance.admin.auth import scope
from appliance.admin.services import Svc
from appliance.admin.tokens import Principal
from appliance.admin.users import User
from appliance.campaign.campaign import CampaignNotFoundError, Campaigns, Lines
from appliance.campaign.leads import MAX_UPLOAD_BYTES, Leads
from appliance.campaign.model import Settings

Req = Request[Principal, str, Any]


@dataclass
class LeadOut:
    id: int
    number: str | None
    """None: the lead was erased (only its blocking entry, if any, is kept)."""
    name: str
    email: str
    basis: str
    country: str
    timezone: str


@dataclass
class NewCampaign:
    name: str
    line: str
    list: str
    settings: dict[str, Any]


@dataclass
class CampaignState:
    id: int
    state: str


def _lines(who: Principal | User) -> Lines:
    """Operators see their lines' campaigns; tokens (no lines) and other roles see all."""
    return list(who.lines) if isinstance(who, User) and who.role == "operator" else None


def _not_found(_request: Request[Any, Any, Any], exc: CampaignNotFoundError) -> Response[Any]:
    # Another line's campaign or list is "not found", like an unknown one.
    return Response(
        {"status_code": 404, "detail": str(exc), "error": type(exc).__name__},
        status_code=404,
    )


def _mapping(raw: str) -> dict[str, str]:
    out = {}
    for item in filter(None, (p.strip() for p in raw.split(","))):
        fld, sep, col = item.partition("=")
        if not sep:
            raise HTTPException(status_code=400, detail=f"map {item!r}: expected FIELD=COLUMN")
        out[fld.strip()] = col.strip()
    return out


@post(
    "/leads/import",
    guards=[scope("leads:write")],
    request_max_body_size=MAX_UPLOAD_BYTES,
    status_code=200,
    raises=[NotFoundException],
)
async def import_leads(
    *,
    svc: Svc,
    request: Req,
    list_name: FromQuery[str],
    filename: FromQuery[str] = "upload.csv",
    region: FromQuery[str | None] = None,
    timezone: FromQuery[str | None] = None,
    mapping: FromQuery[str] = "",
) -> dict[str, Any]:
    await Campaigns(svc.privacy).may_import(list_name, _lines(request.user), request.user.actor)
    data = await request.body()
    report = await Leads(svc.privacy).import_bytes(
        data, filename, list_name=list_name, actor=request.user.actor, region=region,
        mapping=_mapping(mapping), default_timezone=timezone,
    )  # fmt: skip
    return report.doc()


@get("/leads", guards=[scope("leads:read")])
async def lead_lists(svc: Svc, request: Req) -> list[dict[str, Any]]:
    return await Campaigns(svc.privacy).lists(_lines(request.user), request.user.actor)


@get("/leads/{list_name:str}", guards=[scope("leads:read")], raises=[NotFoundException])
async def list_leads(
    list_name: FromPath[str],
    svc: Svc,
    request: Req,
    purpose: FromQuery[str] = "campaign administration",
) -> list[LeadOut]:
    await Campaigns(svc.privacy).lead_list(list_name, _lines(request.user), request.user.actor)
    out = []
    for lead in await Leads(svc.privacy).list_leads(list_name, request.user.actor, purpose):
        if isinstance(lead, int):
            out.append(LeadOut(lead, None, "", "", "", "", ""))
        else:
            out.append(
                LeadOut(
                    lead.id,
                    lead.number,
                    lead.name,
                    lead.email,
                    lead.basis,
                    lead.country,
                    ",".join(lead.zones),
                )
            )
    return out


@get("/campaigns", guards=[scope("campaigns:read")])
async def list_campaigns(svc: Svc, request: Req) -> list[dict[str, Any]]:
    out = []
    for row in await Campaigns(svc.privacy).visible(_lines(request.user)):
        out.append({**row, "leads": await svc.db.campaign_counts(int(row["id"]))})
    return out


@post("/campaigns", guards=[scope("campaigns:write")], status_code=201, raises=[NotFoundException])
async def create_campaign(data: JSONBody[NewCampaign], svc: Svc, request: Req) -> CampaignState:
    cid = await Campaigns(svc.privacy).create(
        data.name, line=data.line, list_name=data.list,
        settings=Settings.from_dict(data.settings), actor=request.user.actor,
        lines=_lines(request.user),
    )  # fmt: skip
    return CampaignState(cid, "draft")


@post(
    "/campaigns/{ref:str}/{action:str}",
    guards=[scope("campaigns:write")],
    status_code=200,
    raises=[NotFoundException],
)
async def campaign_action(
    ref: FromPath[str], action: FromPath[str], svc: Svc, request: Req
) -> CampaignState:
    camps = Campaigns(svc.privacy)
    lines = _lines(request.user)
    state = await camps.act(ref, action, request.user.actor, lines)
    return CampaignState(int((await camps.get(ref, lines))["id"]), state)


@get("/campaigns/{ref:str}/report", guards=[scope("campaigns:read")], raises=[NotFoundException])
async def campaign_report(ref: FromPath[str], svc: Svc, request: Req) -> dict[str, Any]:
    return await Campaigns(svc.privacy).report(ref, lines=_lines(request.user))


@get(
    "/campaigns/{ref:str}/report.csv", guards=[scope("campaigns:read")], raises=[NotFoundException]
)
async def campaign_report_csv(ref: FromPath[str], svc: Svc, request: Req) -> Response[str]:
    text = await Campaigns(svc.privacy).report_csv(ref, lines=_lines(request.user))
    return Response(
        text,
        media_type="text/csv",
        headers={"Content-Disposition": f'attachment; filename="campaign-{ref}.csv"'},
    )


router = Router(
    path="/api/v1",
    route_handlers=[
        import_leads,
        lead_lists,
        list_leads,
        list_campaigns,
        create_campaign,
        campaign_action,
        campaign_report,
        campaign_report_csv,
    ],
    tags=["outbound campaigns"],
    exception_handlers={CampaignNotFoundError: _not_found},
)
