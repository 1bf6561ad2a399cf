"""The campaign API (/api/v1/leads, /api/v1/campaigns) and the admin pages."""

from __future__ import annotations

import json
from collections.abc import AsyncIterator
from pathlib import Path

import pytest_asyncio
from litestar.testing import AsyncTestClient

from appliance.admin.app import create_app
from appliance.admin.services import open_services
from appliance.campaign import leads as leads_mod
from appliance.config import Config
from tests.admin.pages import ROOT, Client, as_user, csrf, make_cfg, user_cookie

CSV = b"Mobile,Name,Consent\n+46701000001,Ann,consent\n+46701000002,Bo,\nnope,C,consent\n"


@pytest_asyncio.fixture
async def cfg(tmp_path: Path) -> Config:
    return make_cfg(tmp_path)


@pytest_asyncio.fixture
async def client(cfg: Config) -> AsyncIterator[Client]:
    async with AsyncTestClient(app=create_app(cfg), base_url="https://testserver.local") as c:
        yield c


async def _token(cfg: Config, scopes: list[str]) -> dict[str, str]:
    async with open_services(cfg) as svc:
        token = await svc.tokens.create("t" + str(len(scopes)), scopes, ROOT)
    return {"Authorization": f"Bearer {token}"}


async def test_api_import_campaign_and_report(client: Client, cfg: Config) -> None:
    writer = await _token(cfg, ["leads:read", "leads:write", "campaigns:read", "campaigns:write"])
    reader = await _token(cfg, ["campaigns:read"])
    r = await client.post(
        "/api/v1/leads/import?list_name=spring&filename=l.csv&mapping=number%3DMobile",
        content=CSV, headers=writer,
    )  # fmt: skip
    assert r.status_code == 200, r.text
    assert r.json()["bad"] == [
        {"line": 3, "reason": "missing consent basis"},
        {"line": 4, "reason": "invalid number: not a phone number"},
    ]
    assert r.json()["imported"] == 1
    r = await client.post("/api/v1/leads/import?list_name=x", content=CSV, headers=reader)
    assert r.status_code == 403
    r = await client.get("/api/v1/leads/spring", headers=writer)
    assert [x["number"] for x in r.json()] == ["+46701000001"]
    r = await client.post(
        "/api/v1/campaigns",
        json={"name": "c1", "line": "sales", "list": "spring",
              "settings": {"windows": ["mon-fri 09:00-17:00"], "max_concurrent": 1}},
        headers=writer,
    )  # fmt: skip
    assert r.status_code == 201, r.text
    r = await client.post("/api/v1/campaigns/c1/start", headers=writer)
    assert r.json() == {"id": 1, "state": "running"}
    r = await client.post("/api/v1/campaigns/c1/start", headers=writer)
    assert r.status_code == 400 and "running" in r.json()["detail"]
    r = await client.get("/api/v1/campaigns/c1/report", headers=reader)
    assert (r.json()["leads"], r.json()["state"]) == (1, "running")
    r = await client.get("/api/v1/campaigns/1/report.csv", headers=reader)
    assert r.text.startswith("attempt,lead,state")
    r = await client.post(
        "/api/v1/campaigns", json={"name": "c2", "line": "sales", "list": "spring",
                                   "settings": {"windows": ["someday"]}}, headers=writer,
    )  # fmt: skip
    assert r.status_code == 400 and "calling window" in r.json()["detail"]


async def test_api_upload_limit(client: Client, cfg: Config, monkeypatch: object) -> None:
    writer = await _token(cfg, ["leads:write"])
    big = b"phone,basis\n" + b"+46701000001,consent\n" * (leads_mod.MAX_UPLOAD_BYTES // 20)
    r = await client.post("/api/v1/leads/import?list_name=big", content=big, headers=writer)
    assert r.status_code == 413


async def test_auditor_sees_no_campaigns(client: Client, cfg: Config) -> None:
    async with open_services(cfg) as svc:
        _, aud = await user_cookie(svc, "aud", "auditor")
    await as_user(client, aud)
    page = await client.get("/")
    assert "/campaigns" not in page.text
    assert (await client.get("/campaigns")).status_code == 403


async def test_pages(client: Client, cfg: Config) -> None:
    async with open_services(cfg) as svc:
        _, op = await user_cookie(svc, "olle", "operator", lines=("sales",))
    token = await as_user(client, op)
    page = await client.get("/leads")
    assert 'href="/campaigns"' in page.text and "Contacts &amp; leads" in page.text
    token = csrf(page.text)
    r = await client.post(
        "/leads/import",
        files={"file": ("l.csv", CSV, "text/csv")},
        data={"list_name": "spring", "mapping": "number=Mobile", "_csrf_token": token},
        follow_redirects=True,
    )  # fmt: skip
    assert r.status_code == 200, r.text
    assert "3 rows: 1 imported" in r.text
    assert "<td>3</td><td>missing consent basis</td>" in r.text
    token = csrf(r.text)
    r = await client.post(
        "/campaigns",
        data={"name": "c1", "line": "sales", "list": "spring", "windows": "mon-fri 09:00-17:00",
              "max_attempts": "2", "max_concurrent": "1", "calls_per_minute": "5",
              "_csrf_token": token},
        follow_redirects=True,
    )  # fmt: skip
    assert r.status_code == 200 and "Campaign c1" in r.text
    assert 'id="campaign-chart"' in r.text and "<script>" not in r.text
    chart = r.text.split("data-chart='")[1].split("'")[0]
    assert set(json.loads(chart)) == {"labels", "series"}
    r = await client.post(
        "/campaigns/1/action", data={"action": "start", "_csrf_token": csrf(r.text)},
        follow_redirects=True,
    )  # fmt: skip
    assert "now running" in r.text
    # Holidays: closed unless the form says they are ordinary days.
    assert 'name="holidays"' in (await client.get("/campaigns")).text
    r = await client.post(
        "/campaigns",
        data={"name": "c2", "line": "sales", "list": "spring", "windows": "mon-fri 09:00-17:00",
              "holidays": "allow", "_csrf_token": csrf(r.text)},
        follow_redirects=True,
    )  # fmt: skip
    assert "Campaign c2" in r.text
    async with open_services(cfg) as svc:
        got = {c["name"]: json.loads(c["settings"]) for c in await svc.db.campaigns()}
    assert (got["c1"]["block_public_holidays"], got["c2"]["block_public_holidays"]) == (
        True, False,
    )  # fmt: skip
