"""Operators see and act on the campaigns of their own lines only (pages and the lists and
leads those campaigns call), as with calls and transcripts; the DPO and API tokens see all."""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path

import pytest_asyncio
from litestar.testing import AsyncTestClient

from appliance.admin.app import create_app
from appliance.admin.services import open_services
from appliance.campaign.campaign import CampaignNotFoundError, Campaigns
from appliance.campaign.leads import Leads
from appliance.campaign.model import Settings
from appliance.config import Config
from appliance.privacy import Actor
from tests.admin.pages import Client, as_user, make_cfg, user_cookie

SALES_CSV = b"phone,name,basis\n+46701000001,Ann,consent\n"
DESK_CSV = b"phone,name,basis\n+46701000002,Bo,consent\n"


@pytest_asyncio.fixture
async def cfg(tmp_path: Path) -> Config:
    return make_cfg(tmp_path)


@pytest_asyncio.fixture
async def seeded(cfg: Config) -> AsyncIterator[dict[str, str]]:
    """A campaign on `sales` (list `spring`, imported by sally) and one on `reception` (list
    `desk`, imported by rita); logged-in operators of each line, a DPO and a token."""
    cookies: dict[str, str] = {}
    async with open_services(cfg) as svc:
        _, cookies["sally"] = await user_cookie(svc, "sally", "operator", lines=("sales",))
        _, cookies["rita"] = await user_cookie(svc, "rita", "operator", lines=("reception",))
        _, cookies["dora"] = await user_cookie(svc, "dora", "dpo")
        sally, rita = Actor("user:sally", "operator"), Actor("user:rita", "operator")
        leads = Leads(svc.privacy)
        await leads.import_bytes(SALES_CSV, "s.csv", list_name="spring", actor=sally)
        await leads.import_bytes(DESK_CSV, "d.csv", list_name="desk", actor=rita)
        camps = Campaigns(svc.privacy)
        await camps.create("sales-c", line="sales", list_name="spring", settings=Settings(),
                           actor=sally)  # fmt: skip
        await camps.create("desk-c", line="reception", list_name="desk", settings=Settings(),
                           actor=rita)  # fmt: skip
        cookies["token"] = await svc.tokens.create(
            "reader", ["campaigns:read", "leads:read"], Actor("cli:root", "admin")
        )
    yield cookies


@pytest_asyncio.fixture
async def client(cfg: Config) -> AsyncIterator[Client]:
    async with AsyncTestClient(app=create_app(cfg), base_url="https://testserver.local") as c:
        yield c


async def test_operator_sees_only_their_lines_campaigns(
    client: Client, seeded: dict[str, str]
) -> None:
    token = await as_user(client, seeded["rita"])
    page = await client.get("/campaigns")
    assert page.status_code == 200
    assert "desk-c" in page.text and "sales-c" not in page.text
    # The form offers only her line and the lists she may use.
    assert "<option>reception</option>" in page.text and "<option>sales</option>" not in page.text
    assert "<option>desk</option>" in page.text and "<option>spring</option>" not in page.text
    # Another line's campaign: not found, whatever the way in.
    assert (await client.get("/campaigns/1")).status_code == 404
    assert (await client.get("/campaigns/1/report.csv")).status_code == 404
    r = await client.post("/campaigns/1/action", data={"action": "start", "_csrf_token": token})
    assert r.status_code == 404
    r = await client.get("/campaigns/2")
    assert r.status_code == 200 and "Campaign desk-c" in r.text
    assert (await client.get("/campaigns/2/report.csv")).status_code == 200
    # Nor can she create a campaign on sales, or on the sales campaign's list.
    r = await client.post(
        "/campaigns",
        data={"name": "x", "line": "sales", "list": "desk", "windows": "mon-fri 09:00-17:00",
              "_csrf_token": token},
        follow_redirects=True,
    )  # fmt: skip
    assert "unknown line" in r.text
    r = await client.post(
        "/campaigns",
        data={"name": "y", "line": "reception", "list": "spring",
              "windows": "mon-fri 09:00-17:00", "_csrf_token": token},
        follow_redirects=True,
    )  # fmt: skip
    assert "no lead list" in r.text
    # Her line's campaign she may start.
    r = await client.post(
        "/campaigns/2/action", data={"action": "start", "_csrf_token": token},
        follow_redirects=True,
    )  # fmt: skip
    assert "now running" in r.text


async def test_operator_sees_only_their_lists_and_cannot_import_into_others(
    client: Client, seeded: dict[str, str], cfg: Config
) -> None:
    token = await as_user(client, seeded["rita"])
    page = await client.get("/leads")
    assert ">desk<" in page.text and ">spring<" not in page.text
    r = await client.post(
        "/leads/import",
        files={"file": ("more.csv", b"phone,basis\n+46701000009,consent\n", "text/csv")},
        data={"list_name": "spring", "_csrf_token": token},
        follow_redirects=True,
    )  # fmt: skip
    assert "no lead list" in r.text
    async with open_services(cfg) as svc:
        spring = await svc.db.lead_list("spring")
        assert spring is not None
        assert len(await svc.db.leads(int(spring["id"]))) == 1  # nothing was added
        # The other operator's import report is not shown to her either.
        (imp,) = await svc.db.lead_imports(int(spring["id"]))
    page = await client.get(f"/leads?import_id={imp['id']}")
    assert "s.csv" not in page.text


async def test_dpo_sees_every_campaign(client: Client, seeded: dict[str, str]) -> None:
    await as_user(client, seeded["dora"])
    page = await client.get("/campaigns")
    assert "desk-c" in page.text and "sales-c" in page.text
    assert (await client.get("/campaigns/1")).status_code == 200
    page = await client.get("/leads")
    assert ">desk<" in page.text and ">spring<" in page.text


async def test_api_tokens_see_every_campaign(client: Client, seeded: dict[str, str]) -> None:
    headers = {"Authorization": f"Bearer {seeded['token']}"}
    r = await client.get("/api/v1/campaigns", headers=headers)
    assert sorted(c["name"] for c in r.json()) == ["desk-c", "sales-c"]
    r = await client.get("/api/v1/leads", headers=headers)
    assert sorted(x["name"] for x in r.json()) == ["desk", "spring"]
    r = await client.get("/api/v1/campaigns/sales-c/report", headers=headers)
    assert r.status_code == 200 and r.json()["line"] == "sales"
    r = await client.get("/api/v1/campaigns/nope/report", headers=headers)
    assert r.status_code == 404 and r.json()["error"] == "CampaignNotFoundError"


async def test_scope_rules_in_the_campaign_layer(cfg: Config, seeded: dict[str, str]) -> None:
    """What the pages and the API rely on, checked directly: every entry point refuses
    another line's campaign the same way it refuses an unknown one."""
    rita = Actor("user:rita", "operator")
    async with open_services(cfg) as svc:
        camps = Campaigns(svc.privacy)
        mine = ["reception"]
        assert [c["name"] for c in await camps.visible(mine)] == ["desk-c"]
        assert [x["name"] for x in await camps.lists(mine, rita)] == ["desk"]
        for call in (
            camps.get("sales-c", mine),
            camps.report("1", lines=mine),
            camps.report_csv("1", lines=mine),
            camps.act("1", "start", rita, mine),
            camps.lead_list("spring", mine, rita),
            camps.may_import("spring", mine, rita),
        ):
            try:
                await call
            except CampaignNotFoundError:
                continue
            raise AssertionError("another line's campaign or list was reachable")
        assert (await camps.get("1"))["state"] == "draft"  # the refused start changed nothing
        await camps.may_import("new-list", mine, rita)  # a new list is hers to create
        # A list she imported is hers before any campaign calls it.
        await Leads(svc.privacy).import_bytes(DESK_CSV, "n.csv", list_name="fresh", actor=rita)
        assert [x["name"] for x in await camps.lists(mine, rita)] == ["desk", "fresh"]
        sally = Actor("user:sally", "operator")
        assert "fresh" not in [x["name"] for x in await camps.lists(["sales"], sally)]
