"""Admin pages: users and roles, lines / agent profiles (read-only), the system status.

A one-time password is shown once, in the answer to the form that made it (never in a URL,
never stored), with `Cache-Control: no-store`. Creating, resetting and disabling users are
audited by `Users`; the line and system pages show configuration and status, no personal data.
"""

from __future__ import annotations

from datetime import datetime
from typing import Annotated, Any
from urllib.parse import urlencode

from litestar import Request, get, post
from litestar.enums import RequestEncodingType
from litestar.params import Body, FromPath, FromQuery
from litestar.response import Redirect, Template

from appliance.admin import staff, status
from appliance.admin.auth import scope
from appliance.admin.services import Services, Svc
from appliance.admin.users import ROLES, User
from appliance.errors import CallvaultError

FormAny = Annotated[dict[str, Any], Body(media_type=RequestEncodingType.URL_ENCODED)]
UserReq = Request[User, str, Any]
NO_STORE = {"Cache-Control": "no-store"}


def _when(ts: float | None) -> str:
    return "" if ts is None else datetime.fromtimestamp(ts).strftime("%Y-%m-%d %H:%M")


def _back(path: str, *, ok: str = "", err: str = "") -> Redirect:
    query = urlencode({k: v for k, v in (("ok", ok), ("err", err)) if v})
    return Redirect(f"{path}?{query}" if query else path, status_code=303)


def _text(data: dict[str, Any], key: str) -> str:
    value = data.get(key, "")
    if isinstance(value, list):
        value = value[-1] if value else ""
    return str(value)


# ---- users and roles
async def _users_page(
    svc: Services, user: User, *, ok: str = "", err: str = "", once: dict[str, str] | None = None,
    status_code: int = 200,
) -> Template:  # fmt: skip
    return Template(
        "users.html",
        context={"user": user, "rows": await staff.user_rows(svc.users), "roles": ROLES,
                 "role_scopes": staff.roles(), "lines": [ln.name for ln in svc.cfg.lines],
                 "when": _when, "can_write": "users:write" in user.scopes, "once": once,
                 "ok": ok[:300], "err": err[:300]},
        headers=NO_STORE,
        status_code=status_code,
    )  # fmt: skip


@get("/users", guards=[scope("users:read")], name="users", include_in_schema=False)
async def users_page(
    svc: Svc, request: UserReq, ok: FromQuery[str] = "", err: FromQuery[str] = ""
) -> Template:
    return await _users_page(svc, request.user, ok=ok, err=err)


@post("/users", guards=[scope("users:write")], status_code=200, include_in_schema=False)
async def user_create(data: FormAny, svc: Svc, request: UserReq) -> Template:
    lines = data.get("lines", [])
    lines = [lines] if isinstance(lines, str) else list(lines)
    name = _text(data, "username").strip().lower()
    try:
        once = await staff.create(
            svc.users, svc.cfg, username=name, role=_text(data, "role"), lines=lines,
            actor=request.user.actor,
        )  # fmt: skip
    except CallvaultError as exc:
        return await _users_page(svc, request.user, err=str(exc), status_code=400)
    return await _users_page(
        svc, request.user, ok=f"user {name} created", once={"username": name, "password": once}
    )


@post(
    "/users/{username:str}/{action:str}", guards=[scope("users:write")], status_code=200,
    include_in_schema=False,
)  # fmt: skip
async def user_action(
    username: FromPath[str], action: FromPath[str], svc: Svc, request: UserReq
) -> Template | Redirect:
    me = request.user
    if action not in ("reset", "disable"):
        return _back("/users", err=f"unknown action {action!r}")
    try:
        if action == "reset":
            once = await staff.reset(svc.users, username, me.actor, by=me.username)
        else:
            await staff.disable(svc.users, username, me.actor, by=me.username)
    except CallvaultError as exc:
        return _back("/users", err=str(exc))
    if action == "disable":
        return _back("/users", ok=f"{username} disabled; their sessions ended")
    return await _users_page(
        svc, me, ok=f"{username}'s password reset; their sessions ended",
        once={"username": username, "password": once},
    )  # fmt: skip


# ---- lines / agent profiles
@get("/lines", guards=[scope("lines:read")], name="lines", include_in_schema=False)
async def lines_page(svc: Svc, request: UserReq) -> Template:
    return Template(
        "lines.html",
        context={"user": request.user, "lines": staff.lines(svc.cfg),
                 "source": str(svc.cfg.source) if svc.cfg.source else "the config file"},
    )  # fmt: skip


# ---- system
@get("/system", guards=[scope("system:read")], name="system", include_in_schema=False)
async def system_page(svc: Svc, request: UserReq) -> Template:
    return Template(
        "system.html",
        context={"user": request.user, "s": await status.system_status(svc.cfg), "when": _when},
    )


ROUTES = [users_page, user_create, user_action, lines_page, system_page]
