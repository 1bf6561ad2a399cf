"""The JSON API through Litestar's test client: tokens, scopes, rights requests, registers."""

from __future__ import annotations

import io
import zipfile
from collections.abc import AsyncIterator
from pathlib import Path

import pytest
import pytest_asyncio
from litestar.testing import AsyncTestClient

from appliance.admin.app import create_app
from appliance.admin.services import open_services
from appliance.admin.tokens import TokenError
from appliance.config import Config
from appliance.privacy import Actor
from tests.privacy.conftest import make_cfg
from tests.privacy.rights_fixtures import NAME, NUMBER, seed

ADMIN = Actor("cli:root", "operator")
ALL = [
    "rights:read", "rights:write", "rights:export", "holds:read", "holds:write",
    "dnc:read", "dnc:write", "audit:read",
]  # fmt: skip


async def _token(cfg: Config, name: str, scopes: list[str], ttl_days: int | None = None) -> str:
    async with open_services(cfg) as svc:
        return await svc.tokens.create(name, scopes, ADMIN, ttl_days=ttl_days)


@pytest_asyncio.fixture
async def cfg(tmp_path: Path) -> Config:
    c = make_cfg(tmp_path)
    async with open_services(c) as svc:
        await seed(svc.privacy, tmp_path)
    return c


@pytest_asyncio.fixture
async def client(cfg: Config) -> AsyncIterator[AsyncTestClient]:  # type: ignore[type-arg]
    async with AsyncTestClient(app=create_app(cfg)) as c:
        yield c


def bearer(token: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}"}


async def test_no_token_no_access(client: AsyncTestClient, cfg: Config) -> None:  # type: ignore[type-arg]
    r = await client.get("/api/v1/rights-requests/")
    assert r.status_code == 401
    r = await client.get("/api/v1/rights-requests/", headers=bearer("cvt_1_" + "x" * 43))
    assert r.status_code == 401
    assert (await client.get("/healthz")).status_code == 200


async def test_scopes_deny_by_default(client: AsyncTestClient, cfg: Config) -> None:  # type: ignore[type-arg]
    reader = await _token(cfg, "reader", ["rights:read"])
    assert (await client.get("/api/v1/rights-requests/", headers=bearer(reader))).status_code == 200
    r = await client.post(
        "/api/v1/rights-requests/",
        json={"kind": "access", "identifier": NUMBER},
        headers=bearer(reader),
    )
    assert r.status_code == 403
    assert "rights:write" in r.json()["detail"]
    assert (await client.get("/api/v1/dnc", headers=bearer(reader))).status_code == 403


async def test_revoked_and_expired_tokens_fail(client: AsyncTestClient, cfg: Config) -> None:  # type: ignore[type-arg]
    token = await _token(cfg, "temp", ["rights:read"])
    async with open_services(cfg) as svc:
        await svc.tokens.revoke("temp", ADMIN)
        with pytest.raises(TokenError, match="already revoked"):
            await svc.tokens.revoke("temp", ADMIN)
        svc.tokens.clock = lambda: 4e9
        short = await svc.tokens.create("short", ["rights:read"], ADMIN, ttl_days=1)
    r = await client.get("/api/v1/rights-requests/", headers=bearer(token))
    assert r.status_code == 401
    assert "revoked" in r.json()["detail"]
    # Created "in 2096" with a one-day life: long expired by the real clock? No: in the future.
    assert (await client.get("/api/v1/rights-requests/", headers=bearer(short))).status_code == 200


async def test_access_request_end_to_end(client: AsyncTestClient, cfg: Config) -> None:  # type: ignore[type-arg]
    token = await _token(cfg, "dpo-tool", ALL)
    h = bearer(token)
    r = await client.post(
        "/api/v1/rights-requests/", json={"kind": "access", "identifier": NUMBER}, headers=h
    )
    assert r.status_code == 201, r.text
    req = r.json()
    assert req["status"] == "identity_unverified"
    assert NUMBER not in r.text  # the request view carries no personal data
    rid = req["id"]
    r = await client.post(f"/api/v1/rights-requests/{rid}/process", headers=h)
    assert r.status_code == 400  # not verified yet: refused, nothing changes
    assert (await client.get(f"/api/v1/rights-requests/{rid}", headers=h)).json()["request"][
        "status"
    ] == "identity_unverified"
    r = await client.post(
        f"/api/v1/rights-requests/{rid}/attest", json={"note": "called back, matched"}, headers=h
    )
    assert r.json()["status"] == "pending"
    r = await client.post(f"/api/v1/rights-requests/{rid}/process", headers=h)
    assert r.json()["status"] == "complete", r.text
    r = await client.get(f"/api/v1/rights-requests/{rid}/export", headers=h)
    assert r.status_code == 200
    assert r.headers["content-type"] == "application/zip"
    with zipfile.ZipFile(io.BytesIO(r.content)) as z:
        assert any(n.endswith(".wav") for n in z.namelist())
        assert NAME in "".join(
            z.read(n).decode(errors="replace") for n in z.namelist() if n.endswith(".json")
        )
    async with open_services(cfg) as svc:
        actions = [r["action"] for r in await svc.db.audit_rows()]
    assert "request.export.download" in actions
    assert "token.create" in actions


async def test_bad_input_is_a_clear_error(client: AsyncTestClient, cfg: Config) -> None:  # type: ignore[type-arg]
    h = bearer(await _token(cfg, "dpo-tool", ALL))
    r = await client.post(
        "/api/v1/rights-requests/", json={"kind": "access", "identifier": "not a number"}, headers=h
    )
    assert r.status_code == 400
    assert r.json()["detail"]
    r = await client.post(
        "/api/v1/rights-requests/", json={"kind": "forget-me", "identifier": NUMBER}, headers=h
    )
    assert r.status_code == 400
    assert "unknown request kind" in r.json()["detail"]
    r = await client.post("/api/v1/rights-requests/", json={"identifier": NUMBER}, headers=h)
    assert r.status_code == 400  # body validation: kind missing
    assert (await client.get("/api/v1/rights-requests/", headers=h)).json() == []


async def test_dnc_holds_and_audit(client: AsyncTestClient, cfg: Config) -> None:  # type: ignore[type-arg]
    h = bearer(await _token(cfg, "dpo-tool", ALL))
    r = await client.post(
        "/api/v1/dnc", json={"number": "070-111 22 33", "reason": "asked on the phone"}, headers=h
    )
    assert r.json() == {"changed": True}
    r = await client.post(
        "/api/v1/dnc", json={"number": "+46701112233", "reason": "again"}, headers=h
    )
    assert r.json() == {"changed": False}
    listed = (await client.get("/api/v1/dnc", headers=h)).json()
    assert [e["number"] for e in listed] == ["+46701112233"]
    r = await client.delete("/api/v1/dnc/+46701112233", headers=h)
    assert r.json() == {"changed": True}

    r = await client.post(
        "/api/v1/holds",
        json={"subject": NUMBER, "reason": "dispute over invoice 17", "owner": "legal"},
        headers=h,
    )
    assert r.status_code == 201, r.text
    hold_id = r.json()["id"]
    holds = (await client.get("/api/v1/holds?active=true", headers=h)).json()
    assert [x["id"] for x in holds] == [hold_id]
    r = await client.post("/api/v1/holds", json={"reason": "x", "owner": "y"}, headers=h)
    assert r.status_code == 400
    assert (await client.post(f"/api/v1/holds/{hold_id}/release", headers=h)).status_code == 201
    assert (await client.get("/api/v1/holds?active=true", headers=h)).json() == []
    v = (await client.get("/api/v1/audit/verify", headers=h)).json()
    assert v["ok"] is True
    assert v["rows"] > 5


async def test_openapi_schema_lists_the_api(client: AsyncTestClient) -> None:  # type: ignore[type-arg]
    r = await client.get("/schema/openapi.json")
    assert r.status_code == 200
    paths = r.json()["paths"]
    assert "/api/v1/rights-requests/{request_id}/export" in paths
    assert "/api/v1/dnc" in paths
    assert "token" in r.json()["components"]["securitySchemes"]
