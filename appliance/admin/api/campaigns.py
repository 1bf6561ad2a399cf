"""/api/v1/leads and /api/v1/campaigns: lead list import and listing, campaigns and reports.

Imports are the file's raw bytes as the request body (CSV or XLSX, at most
appliance.campaign.leads.MAX_UPLOAD_BYTES), the list name and column mapping in the query; the
answer is the row report. Lead numbers are personal data: listing a list's leads is audited.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from litestar import Request, Response, Router, get, post
from litestar.exceptions import HTTPException
from litestar.params import FromPath, FromQuery, JSONBody

from appliance.admin.auth import scope
from appliance.admin.services import Svc
from appliance.admin.tokens import Principal
from appliance.campaign.campaign import Campaigns
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
    data = await request.body()
    report = await Leads(svc.privacy).import_bytes(
        data, filename, list_name=list_name, actor=request.user.actor, region=region,
        mapping=_mapping(mapping), default_timezone=timezone,
    )  # fmt: skip
    return report.doc()


@get("/leads", guards=[scope("leads:read")])
async def lead_lists(svc: Svc) -> list[dict[str, Any]]:
    return await svc.db.lead_lists()


@get("/leads/{list_name:str}", guards=[scope("leads:read")])
async def list_leads(
    list_name: FromPath[str],
    svc: Svc,
    request: Req,
    purpose: FromQuery[str] = "campaign administration",
) -> list[LeadOut]:
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
async def list_campaigns(svc: Svc) -> list[dict[str, Any]]:
    out = []
    for row in await svc.db.campaigns():
        out.append({**row, "leads": await svc.db.campaign_counts(int(row["id"]))})
    return out


@post("/campaigns", guards=[scope("campaigns:write")], status_code=201)
async def create_campaign(data: JSONBody[NewCampaign], svc: Svc, request: Req) -> CampaignState:
    cid = await Campaigns(svc.privacy).create(
        data.name, line=data.line, list_name=data.list,
        settings=Settings.from_dict(data.settings), actor=request.user.actor,
    )  # fmt: skip
    return CampaignState(cid, "draft")


@post("/campaigns/{ref:str}/{action:str}", guards=[scope("campaigns:write")], status_code=200)
async def campaign_action(
    ref: FromPath[str], action: FromPath[str], svc: Svc, request: Req
) -> CampaignState:
    camps = Campaigns(svc.privacy)
    state = await camps.act(ref, action, request.user.actor)
    return CampaignState(int((await camps.get(ref))["id"]), state)


@get("/campaigns/{ref:str}/report", guards=[scope("campaigns:read")])
async def campaign_report(ref: FromPath[str], svc: Svc) -> dict[str, Any]:
    return await Campaigns(svc.privacy).report(ref)


@get("/campaigns/{ref:str}/report.csv", guards=[scope("campaigns:read")])
async def campaign_report_csv(ref: FromPath[str], svc: Svc) -> Response[str]:
    text = await Campaigns(svc.privacy).report_csv(ref)
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
)
