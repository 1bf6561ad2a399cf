"""/api/v1/system, /api/v1/lines, /api/v1/users: the admin's status, lines and accounts.

Twins of the admin pages (appliance.admin.ui.system). A one-time password comes back once,
in the answer to the call that made it; creating, resetting and disabling are audited.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from litestar import Request, Router, get, post
from litestar.params import FromPath, JSONBody

from appliance.admin import staff, status
from appliance.admin.auth import scope
from appliance.admin.services import Svc
from appliance.admin.tokens import Principal

Req = Request[Principal, str, Any]


@get("/system", guards=[scope("system:read")])
async def system(svc: Svc) -> status.SystemStatus:
    """Asterisk over AMI (or why it cannot be reached), endpoints and trunk registrations,
    models and the device each runs on, disks, backups."""
    return await status.system_status(svc.cfg)


@get("/lines", guards=[scope("lines:read")])
async def lines(svc: Svc) -> list[staff.LineView]:
    """Each line's agent profile as configured (edited in the config file)."""
    return staff.lines(svc.cfg)


@dataclass
class NewUser:
    username: str
    role: str
    """admin | dpo | operator | auditor"""
    lines: list[str] = field(default_factory=list)
    """Operators: the lines whose calls they see."""


@dataclass
class OneTimePassword:
    username: str
    one_time_password: str
    """Shown once; the user must replace it at first login."""


@dataclass
class Disabled:
    username: str
    disabled: bool


@get("/users", guards=[scope("users:read")])
async def list_users(svc: Svc) -> list[staff.UserRow]:
    return await staff.user_rows(svc.users)


@post("/users", guards=[scope("users:write")])
async def create_user(data: JSONBody[NewUser], svc: Svc, request: Req) -> OneTimePassword:
    name = data.username.strip().lower()
    once = await staff.create(
        svc.users,
        svc.cfg,
        username=name,
        role=data.role,
        lines=data.lines,
        actor=request.user.actor,
    )
    return OneTimePassword(username=name, one_time_password=once)


@post("/users/{username:str}/reset", guards=[scope("users:write")], status_code=200)
async def reset_user(username: FromPath[str], svc: Svc, request: Req) -> OneTimePassword:
    once = await staff.reset(svc.users, username, request.user.actor, by=None)
    return OneTimePassword(username=username, one_time_password=once)


@post("/users/{username:str}/disable", guards=[scope("users:write")], status_code=200)
async def disable_user(username: FromPath[str], svc: Svc, request: Req) -> Disabled:
    await staff.disable(svc.users, username, request.user.actor, by=None)
    return Disabled(username=username, disabled=True)


router = Router(
    path="/api/v1",
    route_handlers=[system, lines, list_users, create_user, reset_user, disable_user],
    tags=["system"],
)
