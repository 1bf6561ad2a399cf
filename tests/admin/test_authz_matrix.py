"""Every route x every role (and anonymous, and API tokens) -> the expected answer.

Generated from the app's route table: a route that names no rule (a `scope(...)` guard, the
`logged_in` guard, or a place in the public list) fails this test, so nothing new is open by
accident.
"""

from __future__ import annotations

import re
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest_asyncio
from litestar import Litestar
from litestar.handlers import HTTPRouteHandler
from litestar.testing import AsyncTestClient

from appliance.admin.app import create_app
from appliance.admin.auth import PUBLIC, SESSION_COOKIE, logged_in
from appliance.admin.services import open_services
from appliance.admin.tokens import SCOPES
from appliance.admin.users import ROLE_SCOPES, ROLES
from appliance.config import Config
from appliance.privacy import Actor
from tests.privacy.conftest import make_cfg

ROOT = Actor("cli:root", "operator")
Client = AsyncTestClient  # type: ignore[type-arg]
DENIED = {401, 403}


def routes(app: Litestar) -> list[tuple[str, str, HTTPRouteHandler]]:
    out = []
    for route in app.routes:
        for handler in getattr(route, "route_handlers", []):
            if not isinstance(handler, HTTPRouteHandler):
                continue
            for method in sorted(handler.http_methods):
                if method in {"HEAD", "OPTIONS"}:
                    continue
                out.append((method, route.path, handler))
    return out


def rule(path: str, handler: HTTPRouteHandler) -> str:
    """'public', 'user' (any logged-in user) or the scope the route needs."""
    guards = [g for layer in handler.ownership_layers for g in (layer.guards or [])]
    scopes = [g.required_scope for g in guards if hasattr(g, "required_scope")]
    if scopes:
        assert len(scopes) == 1, f"{path}: several scope guards"
        return str(scopes[0])
    if logged_in in guards:
        return "user"
    if path.startswith(PUBLIC) or path in {"/healthz", "/login"}:
        return "public"
    raise AssertionError(f"route {path} names no access rule (scope guard, logged_in, public)")


def concrete(path: str) -> str:
    path = re.sub(r"\{[^}:]+:int\}", "1", path)
    return re.sub(r"\{[^}:]+:(str|path)\}", "x", path)


@pytest_asyncio.fixture
async def setup(tmp_path: Path) -> AsyncIterator[tuple[Client, dict[str, dict[str, str]]]]:
    cfg: Config = make_cfg(tmp_path)
    who: dict[str, dict[str, str]] = {"anonymous": {}}
    async with open_services(cfg) as svc:
        for role in ROLES:
            name = f"{role}-user"
            once = await svc.users.create(
                name, role, ROOT, lines=("reception",) if role == "operator" else ()
            )
            row = await svc.db.user_by_name(name)
            assert row
            await svc.db.user_update(int(row["id"]), {"must_change": 0})
            _, cookie = await svc.users.login(name, once)
            who[role] = {"cookie": cookie}
        for scope in SCOPES:
            token = await svc.tokens.create(scope.replace(":", "-"), [scope], ROOT)
            who[f"token {scope}"] = {"token": token}
    async with AsyncTestClient(app=create_app(cfg), base_url="https://testserver.local") as c:
        await c.get("/login")  # the CSRF cookie, sent back as a header on unsafe methods
        yield c, who


async def _call(c: Client, method: str, path: str, cred: dict[str, str]) -> tuple[int, str, str]:
    headers = {"x-csrftoken": c.cookies.get("__Host-cv_csrf") or ""}
    c.cookies.delete(SESSION_COOKIE)
    if "cookie" in cred:
        c.cookies.set(SESSION_COOKIE, cred["cookie"], domain="testserver.local")
    if "token" in cred:
        headers["Authorization"] = f"Bearer {cred['token']}"
    kwargs: dict[str, Any] = {"headers": headers, "follow_redirects": False}
    if method in {"POST", "PUT", "PATCH"}:
        kwargs["json"] = {}
    r = await c.request(method, path, **kwargs)
    return r.status_code, r.headers.get("location", ""), r.headers.get("set-cookie", "")


async def test_every_route_has_a_rule_and_is_enforced(
    setup: tuple[Client, dict[str, dict[str, str]]],
) -> None:
    c, who = setup
    app = c.app
    table = routes(app)
    assert len(table) >= 20
    failures = []
    # Logging out ends the session the later rows still need: it goes last.
    table.sort(key=lambda row: row[1] == "/logout")
    for method, path, handler in table:
        need = rule(path, handler)
        url = concrete(path)
        is_api = path.startswith("/api/")
        if need == "public":
            continue  # the login page, liveness, the schema, static files: open by design
        for name, cred in who.items():
            status, location, cookie = await _call(c, method, url, cred)
            sent_to_login = status == 303 and location == "/login"
            if name == "anonymous":
                allowed = False
            elif name.startswith("token "):
                allowed = is_api and need == name.removeprefix("token ")
            else:  # a logged-in user
                allowed = not is_api and (need == "user" or need in ROLE_SCOPES[name])
            if allowed and path == "/logout":
                ok = sent_to_login and "max-age=0" in cookie.lower()  # the session cookie cleared
            elif allowed:
                ok = status not in DENIED and not sent_to_login
            elif not is_api and "cookie" not in cred:
                ok = sent_to_login  # pages send anyone without a session to the login page
            else:
                ok = status in DENIED
            if not ok:
                failures.append(f"{method} {url} as {name}: {status} (rule {need})")
    assert not failures, "\n".join(failures)
