"""/api/v1/pbx: trunks, extensions, inbound routes, outbound rules, versions, SIP blocks.

Every write is a whole change applied through appliance.pbx.apply (checked, rendered, written,
reloaded, recorded as a version, audited); a refused change answers 400 with the reason and
changes nothing. An extension's generated SIP password comes back once, in the answer to the
call that made it.
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from typing import Any

from litestar import Request, Router, delete, get, post
from litestar.params import FromPath, JSONBody

from appliance.admin.auth import scope
from appliance.admin.services import Svc
from appliance.admin.tokens import Principal
from appliance.errors import ConfigError
from appliance.pbx import admin as pa
from appliance.pbx.apply import Applied
from appliance.pbx.security import SipGuard
from appliance.pbx.status import PbxStatus, pbx_status

Req = Request[Principal, str, Any]


@dataclass
class Change:
    version: int
    note: str
    changed_files: list[str]
    reloaded: list[str]
    elapsed_ms: float
    password: str | None = None
    """A new extension's SIP password: shown once, here."""


def _change(a: Applied, password: str | None = None) -> Change:
    return Change(
        a.version, a.note, list(a.changed_files), list(a.reloaded), a.elapsed_ms, password
    )


@get("/pbx", guards=[scope("pbx:read")])
async def config(svc: Svc) -> dict[str, Any]:
    """The live configuration (passwords left out) and its version."""
    async with pa.manager(svc.cfg, svc.db, svc.privacy) as m:
        version, pbx = await m.current()
    return {"version": version, **pa.view(pbx)}


@get("/pbx/status", guards=[scope("pbx:read")])
async def status(svc: Svc) -> PbxStatus:
    """Trunk registration and reachability, desk-phone registrations (over AMI)."""
    async with pa.manager(svc.cfg, svc.db, svc.privacy) as m:
        _, pbx = await m.current()
        return await pbx_status(m.ami, pbx)


@post("/pbx/{kind:str}", guards=[scope("pbx:write")], status_code=200)
async def save(
    kind: FromPath[str], data: JSONBody[dict[str, Any]], svc: Svc, request: Req
) -> Change:
    """Create or replace a trunk, extension, route or outbound rule (kind: trunk, extension,
    route, outbound)."""
    async with pa.manager(svc.cfg, svc.db, svc.privacy) as m:
        applied, once = await pa.save(m, kind, data, request.user.actor)
    return _change(applied, once)


@delete("/pbx/{kind:str}/{key:str}", guards=[scope("pbx:write")], status_code=200)
async def remove(kind: FromPath[str], key: FromPath[str], svc: Svc, request: Req) -> Change:
    async with pa.manager(svc.cfg, svc.db, svc.privacy) as m:
        return _change(await pa.delete(m, kind, key, request.user.actor))


@post("/pbx/{kind:str}/{key:str}/{action:str}", guards=[scope("pbx:write")], status_code=200)
async def toggle(
    kind: FromPath[str], key: FromPath[str], action: FromPath[str], svc: Svc, request: Req
) -> Change:
    """action: enable | disable (trunks and extensions)."""
    if action not in ("enable", "disable"):
        raise ConfigError("action", f"{action!r}: enable or disable")
    async with pa.manager(svc.cfg, svc.db, svc.privacy) as m:
        return _change(await pa.set_enabled(m, kind, key, action == "enable", request.user.actor))


@get("/pbx/versions", guards=[scope("pbx:read")])
async def versions(svc: Svc) -> list[dict[str, Any]]:
    return await svc.db.pbx_versions()


@dataclass
class RollbackTo:
    version: int | None = None
    """Default: the version before the live one."""


@post("/pbx/rollback", guards=[scope("pbx:write")], status_code=200)
async def rollback(data: JSONBody[RollbackTo], svc: Svc, request: Req) -> Change:
    async with pa.manager(svc.cfg, svc.db, svc.privacy) as m:
        return _change(await m.rollback(request.user.actor, data.version))


@get("/pbx/blocks", guards=[scope("pbx:read")])
async def blocks(svc: Svc) -> list[dict[str, Any]]:
    """Addresses blocked from SIP after failed authentications, in force now."""
    return await svc.db.pbx_blocks(active_at=time.time())


@post("/pbx/blocks/{address:str}/unblock", guards=[scope("pbx:write")], status_code=200)
async def unblock(address: FromPath[str], svc: Svc, request: Req) -> dict[str, Any]:
    async with pa.manager(svc.cfg, svc.db, svc.privacy) as m:
        gone = await SipGuard(m).unblock(address, request.user.actor)
    return {"address": address, "unblocked": gone}


router = Router(
    path="/api/v1",
    route_handlers=[config, status, versions, blocks, rollback, save, remove, toggle, unblock],
    tags=["pbx"],
)
