"""/api/v1/pbx through Litestar's test client (no Asterisk: changes are written, not reloaded)."""

from __future__ import annotations

from collections.abc import AsyncIterator

import pytest_asyncio
from litestar.testing import AsyncTestClient

from appliance.admin.app import create_app
from appliance.admin.services import open_services
from appliance.config import Config
from appliance.pbx.render import PJSIP_FILE
from appliance.privacy import Actor

ROOT = Actor("cli:root", "admin")


@pytest_asyncio.fixture
async def client(cfg: Config) -> AsyncIterator[tuple[AsyncTestClient, dict[str, str]]]:  # type: ignore[type-arg]
    async with open_services(cfg) as svc:
        token = await svc.tokens.create("it", ["pbx:read", "pbx:write"], ROOT)
        reader = await svc.tokens.create("ro", ["pbx:read"], ROOT)
    async with AsyncTestClient(app=create_app(cfg)) as c:
        yield c, {"rw": f"Bearer {token}", "ro": f"Bearer {reader}"}


async def test_api_flow(client: tuple[AsyncTestClient, dict[str, str]], cfg: Config) -> None:  # type: ignore[type-arg]
    c, auth = client
    rw = {"Authorization": auth["rw"]}
    r = await c.post(
        "/api/v1/pbx/trunk",
        json={"name": "carrier", "host": "192.0.2.10", "dids": ["4631100200"]},
        headers=rw,
    )
    assert r.status_code == 200, r.text
    assert r.json()["version"] == 1 and r.json()["password"] is None
    r = await c.post("/api/v1/pbx/extension", json={"number": "301", "name": "Sales"}, headers=rw)
    assert r.status_code == 200 and len(r.json()["password"]) >= 24
    secret = r.json()["password"]
    r = await c.post(
        "/api/v1/pbx/route", json={"did": "4631100200", "destination": "extension:302"}, headers=rw
    )
    assert r.status_code == 400 and "no enabled extension 302" in r.json()["detail"]
    r = await c.get("/api/v1/pbx", headers={"Authorization": auth["ro"]})
    assert r.status_code == 200
    body = r.json()
    assert body["version"] == 2 and body["extensions"][0]["password"] == "set"
    assert secret not in r.text
    # Read-only token: no writes.
    r = await c.post("/api/v1/pbx/rollback", json={}, headers={"Authorization": auth["ro"]})
    assert r.status_code == 403
    r = await c.post("/api/v1/pbx/rollback", json={}, headers=rw)
    assert r.status_code == 200 and r.json()["note"] == "rollback to v1"
    etc = cfg.asterisk.host_path(cfg.asterisk.config_dir)
    assert "[301]" not in (etc / PJSIP_FILE).read_text()
    r = await c.post("/api/v1/pbx/extension/301/disable", headers=rw)
    assert r.status_code == 400 and "no such object" in r.json()["detail"]
    versions = (await c.get("/api/v1/pbx/versions", headers=rw)).json()
    assert [v["id"] for v in versions] == [3, 2, 1]
