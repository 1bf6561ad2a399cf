"""/api/v1/rights-requests: intake, verification, processing, refusal, extension, export."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from litestar import Request, Router, get, post
from litestar.params import FromQuery, JSONBody
from litestar.response import File

from appliance.admin.auth import scope
from appliance.admin.params import RowId
from appliance.admin.services import Svc
from appliance.admin.tokens import Principal
from appliance.privacy.rights.model import RightsError, RightsRequest


@dataclass
class NewRequest:
    kind: str
    """access | erasure | rectification | restriction | objection"""
    identifier: str
    """The subject's phone number (any format; read with the box's default region) or e-mail."""
    channel: str = "api"
    params: dict[str, str] = field(default_factory=dict)
    """rectification: {"field": ..., "value": ...}"""


@dataclass
class Note:
    note: str


@dataclass
class Reason:
    reason: str


@dataclass
class Forward:
    controller: str
    """The organisation whose data the request concerns."""
    note: str
    export: bool = True
    """Attach an access export of what the box holds about the subject."""


@dataclass
class Code:
    code: str


@dataclass
class RequestDetail:
    request: RightsRequest
    overdue: bool
    log: list[dict[str, Any]]


Req = Request[Principal, str, Any]


@get("/", guards=[scope("rights:read")])
async def list_requests(svc: Svc, open_only: FromQuery[bool] = False) -> list[RightsRequest]:
    return await svc.rights.all(open_only=open_only)


@post("/", guards=[scope("rights:write")])
async def create_request(data: JSONBody[NewRequest], svc: Svc, request: Req) -> RightsRequest:
    return await svc.rights.create(
        data.kind, data.identifier, request.user.actor, channel=data.channel, params=data.params
    )


@get("/{request_id:int}", guards=[scope("rights:read")])
async def show_request(request_id: RowId, svc: Svc) -> RequestDetail:
    req = await svc.rights.get(request_id)
    return RequestDetail(
        request=req,
        overdue=req.overdue(svc.rights.clock()),
        log=await svc.rights.log(request_id),
    )


@post("/{request_id:int}/attest", guards=[scope("rights:write")])
async def attest(request_id: RowId, data: JSONBody[Note], svc: Svc, request: Req) -> RightsRequest:
    return await svc.rights.attest(request_id, request.user.actor, data.note)


@post("/{request_id:int}/send-code", guards=[scope("rights:write")])
async def send_code(request_id: RowId, svc: Svc, request: Req) -> RightsRequest:
    await svc.rights.send_code(request_id, request.user.actor)
    return await svc.rights.get(request_id)


@post("/{request_id:int}/verify", guards=[scope("rights:write")])
async def verify(request_id: RowId, data: JSONBody[Code], svc: Svc, request: Req) -> RightsRequest:
    return await svc.rights.verify_code(request_id, data.code, request.user.actor)


@post("/{request_id:int}/process", guards=[scope("rights:write")])
async def process(request_id: RowId, svc: Svc, request: Req) -> RightsRequest:
    return await svc.rights.process(request_id, request.user.actor)


@post("/{request_id:int}/refuse", guards=[scope("rights:write")])
async def refuse(
    request_id: RowId, data: JSONBody[Reason], svc: Svc, request: Req
) -> RightsRequest:
    return await svc.rights.refuse(request_id, data.reason, request.user.actor)


@post("/{request_id:int}/extend", guards=[scope("rights:write")])
async def extend(
    request_id: RowId, data: JSONBody[Reason], svc: Svc, request: Req
) -> RightsRequest:
    return await svc.rights.extend(request_id, data.reason, request.user.actor)


@post("/{request_id:int}/forward", guards=[scope("rights:write")])
async def forward(
    request_id: RowId, data: JSONBody[Forward], svc: Svc, request: Req
) -> RightsRequest:
    return await svc.rights.forward(
        request_id, data.controller, data.note, request.user.actor, export=data.export
    )


@get("/{request_id:int}/export", guards=[scope("rights:export")], media_type="application/zip")
async def download_export(request_id: RowId, svc: Svc, request: Req) -> File:
    req = await svc.rights.get(request_id)
    path = Path(req.export_path) if req.export_path else None
    if path is None or not path.is_file():
        raise RightsError(f"request {request_id} has no export to download")
    # The ZIP is the subject's personal data in plaintext: who fetched it goes on the record.
    await svc.privacy.audit.record(
        request.user.actor,
        "request.export.download",
        f"request:{request_id}",
        "data subject request",
    )
    return File(path=path, filename=path.name, media_type="application/zip")


router = Router(
    path="/api/v1/rights-requests",
    route_handlers=[
        list_requests,
        create_request,
        show_request,
        attest,
        send_code,
        verify,
        process,
        refuse,
        extend,
        forward,
        download_export,
    ],
    tags=["rights requests"],
)
