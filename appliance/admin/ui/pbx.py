"""Admin pages for the PBX: trunks, desk phones, inbound routes, outbound rules, versions.

Each form is one change applied through appliance.pbx.apply; a refused change shows the reason
and changes nothing. A new extension's SIP password is shown once, in the answer to the form
that made it, with `Cache-Control: no-store`.
"""

from __future__ import annotations

import time
from datetime import datetime
from typing import Annotated, Any
from urllib.parse import urlencode

from litestar import Request, get, post
from litestar.enums import RequestEncodingType
from litestar.params import Body, FromPath, FromQuery
from litestar.response import Redirect, Template

from appliance.admin.auth import scope
from appliance.admin.services import Svc
from appliance.admin.users import User
from appliance.errors import CallvaultError
from appliance.pbx import admin as pa
from appliance.pbx.security import SipGuard
from appliance.pbx.status import pbx_status

FormAny = Annotated[dict[str, Any], Body(media_type=RequestEncodingType.URL_ENCODED)]
UserReq = Request[User, str, Any]
NO_STORE = {"Cache-Control": "no-store"}
# Form fields per kind: which are lists (comma-separated), which are checkboxes.
_LISTS = {"codecs", "dids", "hours", "holidays", "patterns", "members", "takeover_lines"}
_CHECKS = {"trunk": ("enabled",), "extension": ("voicemail", "enabled")}


def _when(ts: float | None) -> str:
    return "" if ts is None else datetime.fromtimestamp(ts).strftime("%Y-%m-%d %H:%M:%S")


def _back(*, ok: str = "", err: str = "") -> Redirect:
    query = urlencode({k: v for k, v in (("ok", ok), ("err", err)) if v})
    return Redirect(f"/pbx?{query}" if query else "/pbx", status_code=303)


def _form(kind: str, data: dict[str, Any]) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for k, v in data.items():
        if k.startswith("_") or k == "csrf_token":
            continue
        v = v[-1] if isinstance(v, list) else v  # noqa: PLW2901
        value = str(v).strip()
        if value == "" and k not in _LISTS:
            continue
        out[k] = value
    for k in _CHECKS.get(kind, ()):
        out[k] = k in data and str(data[k]) not in ("", "off")
    if kind == "route":
        overrides = str(out.pop("overrides", "") or "")
        rows = [r.split("=", 1) for r in overrides.replace("\n", ",").split(",") if r.strip()]
        out["overrides"] = [{"prefix": a.strip(), "destination": b.strip()} for a, b in rows if b]
    return out


async def _page(svc: Any, user: User, *, ok: str = "", err: str = "",
                once: dict[str, str] | None = None, status_code: int = 200) -> Template:  # fmt: skip  # noqa: E501
    async with pa.manager(svc.cfg, svc.db, svc.privacy) as m:
        version, pbx = await m.current()
        live = await pbx_status(m.ami, pbx)
    return Template(
        "pbx_index.html",
        context={
            "user": user, "version": version, "pbx": pbx, "status": live,
            "versions": await svc.db.pbx_versions(limit=10),
            "blocks": await svc.db.pbx_blocks(active_at=time.time()),
            "lines": [ln.name for ln in svc.cfg.lines], "when": _when,
            "can_write": "pbx:write" in user.scopes, "once": once,
            "ok": ok[:300], "err": err[:500],
            "open_now": {r.did: r.is_open(m.clock()) for r in pbx.routes},
        },
        headers=NO_STORE,
        status_code=status_code,
    )  # fmt: skip


@get("/pbx", guards=[scope("pbx:read")], name="pbx", include_in_schema=False)
async def pbx_page(
    svc: Svc, request: UserReq, ok: FromQuery[str] = "", err: FromQuery[str] = ""
) -> Template:
    return await _page(svc, request.user, ok=ok, err=err)


@post("/pbx/{kind:str}", guards=[scope("pbx:write")], status_code=200, include_in_schema=False)
async def pbx_save(kind: FromPath[str], data: FormAny, svc: Svc, request: UserReq) -> Template:
    try:
        async with pa.manager(svc.cfg, svc.db, svc.privacy) as m:
            applied, once = await pa.save(m, kind, _form(kind, data), request.user.actor)
    except CallvaultError as exc:
        return await _page(svc, request.user, err=str(exc), status_code=400)
    shown = None
    if once is not None:
        shown = {"extension": str(_form(kind, data).get("number", "")), "password": once}
    return await _page(
        svc, request.user, ok=f"{applied.note}: live as version {applied.version}", once=shown
    )


@post(
    "/pbx/{kind:str}/{key:str}/{action:str}", guards=[scope("pbx:write")], status_code=200,
    include_in_schema=False,
)  # fmt: skip
async def pbx_action(
    kind: FromPath[str], key: FromPath[str], action: FromPath[str], svc: Svc, request: UserReq
) -> Redirect:
    actor = request.user.actor
    try:
        async with pa.manager(svc.cfg, svc.db, svc.privacy) as m:
            if action == "delete":
                applied = await pa.delete(m, kind, key, actor)
            elif action in ("enable", "disable"):
                applied = await pa.set_enabled(m, kind, key, action == "enable", actor)
            elif action == "rollback" and kind == "version":
                applied = await m.rollback(actor, int(key))
            elif action == "unblock" and kind == "block":
                await SipGuard(m).unblock(key, actor)
                return _back(ok=f"{key} unblocked")
            else:
                return _back(err=f"unknown action {action!r} on {kind}")
    except (CallvaultError, ValueError) as exc:
        return _back(err=str(exc))
    return _back(ok=f"{applied.note}: live as version {applied.version}")


ROUTES = [pbx_page, pbx_save, pbx_action]
