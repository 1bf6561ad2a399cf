"""/api/v1/metrics behind a scoped token, /readyz with reasons, the alerts API and page."""

from __future__ import annotations

from collections.abc import AsyncIterator
from dataclasses import replace
from pathlib import Path

import pytest_asyncio
from litestar.testing import AsyncTestClient
from prometheus_client.parser import text_string_to_metric_families

from appliance.admin.app import create_app
from appliance.admin.services import open_services
from appliance.config import Config
from appliance.ops.alerts import Alerts
from tests.admin.pages import ROOT, Client, as_user, csrf, make_cfg, user_cookie


def bearer(token: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}"}


@pytest_asyncio.fixture
async def cfg(tmp_path: Path) -> Config:
    return make_cfg(tmp_path)


@pytest_asyncio.fixture
async def client(cfg: Config) -> AsyncIterator[Client]:
    async with AsyncTestClient(app=create_app(cfg), base_url="https://testserver.local") as c:
        yield c


async def test_metrics_need_the_metrics_scope(client: Client, cfg: Config) -> None:
    async with open_services(cfg) as svc:
        scraper = await svc.tokens.create("prometheus", ["metrics:read"], ROOT)
        other = await svc.tokens.create("rights", ["rights:read"], ROOT)
    assert (await client.get("/api/v1/metrics")).status_code == 401
    r = await client.get("/api/v1/metrics", headers=bearer(other))
    assert r.status_code == 403 and "metrics:read" in r.json()["detail"]
    r = await client.get("/api/v1/metrics", headers=bearer(scraper))
    assert r.status_code == 200, r.text
    assert r.headers["content-type"].startswith("text/plain")
    names = {f.name for f in text_string_to_metric_families(r.text)}
    assert {"callvault_calls_stored", "callvault_cdrs", "callvault_disk_free_bytes"} <= names
    # The scraper's token reads nothing else.
    assert (await client.get("/api/v1/alerts", headers=bearer(scraper))).status_code == 403


async def test_readyz_says_why_not(client: Client, cfg: Config) -> None:
    # make_cfg points AMI at port 1 (nothing listens) and no serving process reports models.
    r = await client.get("/readyz")
    assert r.status_code == 503
    body = r.json()
    assert body["ready"] is False
    checks = {c["name"]: c for c in body["checks"]}
    assert not checks["asterisk"]["ok"] and "127.0.0.1:1" in checks["asterisk"]["detail"]
    assert checks["database"]["ok"]
    assert not checks["models"]["ok"]
    assert checks["disk"]["ok"]
    assert any(x.startswith("asterisk:") for x in body["reasons"])
    assert (await client.get("/healthz")).status_code == 200


async def test_alerts_api_lists_and_acks(client: Client, cfg: Config) -> None:
    async with open_services(cfg) as svc:
        reader = await svc.tokens.create("ro", ["alerts:read"], ROOT)
        writer = await svc.tokens.create("rw", ["alerts:read", "alerts:write"], ROOT)
        alerts = Alerts(svc.db)
        a = await alerts.fire("trunk_down", "trunk 'carrier' is down", key="carrier")
        b = await alerts.fire("cert_expiring", "expires soon")
        await alerts.resolve("cert_expiring")
    r = await client.get("/api/v1/alerts", headers=bearer(reader))
    assert [x["id"] for x in r.json()] == [a.id]
    r = await client.get("/api/v1/alerts?resolved=true", headers=bearer(reader))
    assert {x["id"] for x in r.json()} == {a.id, b.id}
    assert (
        await client.post(f"/api/v1/alerts/{a.id}/ack", headers=bearer(reader))
    ).status_code == 403
    r = await client.post(f"/api/v1/alerts/{a.id}/ack", headers=bearer(writer))
    assert r.status_code == 200 and r.json()["acked_by"] == "api:rw"
    r = await client.post(f"/api/v1/alerts/{b.id}/ack", headers=bearer(writer))
    assert r.status_code == 404


async def test_alerts_page_badge_and_ack(client: Client, cfg: Config) -> None:
    async with open_services(cfg) as svc:
        _, admin = await user_cookie(svc, "ada", "admin")
        _, operator = await user_cookie(svc, "olle", "operator", lines=["reception"])
        a = await Alerts(svc.db).fire("disk_filling", "state disk has 9.0% free", key="state")
    await as_user(client, admin)
    page = await client.get("/")
    assert 'hx-get="/alerts/badge"' in page.text
    badge = await client.get("/alerts/badge")
    assert badge.status_code == 200 and ">1</span>" in badge.text
    page = await client.get("/alerts")
    assert "state disk has 9.0% free" in page.text and "Acknowledge" in page.text
    token = csrf(page.text)
    r = await client.post(
        f"/alerts/{a.id}/ack", data={"_csrf_token": token}, follow_redirects=False
    )
    assert r.status_code == 303
    page = await client.get(r.headers["location"])
    assert "acknowledged" in page.text and "user:ada" in page.text
    await as_user(client, operator)
    assert (await client.get("/alerts")).status_code == 403
    assert 'hx-get="/alerts/badge"' not in (await client.get("/")).text


async def test_disk_threshold_makes_it_unready(cfg: Config, tmp_path: Path) -> None:
    from appliance.ops import health

    strict = replace(
        cfg, ops=replace(cfg.ops, disk_min_free_pct=99.999, disk_warn_free_pct=99.9999)
    )
    async with open_services(strict) as svc:

        async def ami_ok() -> health.Check:
            return health.Check("asterisk", True, "stub")

        r = await health.readiness(
            strict, svc.db, ami=ami_ok, models=lambda: health.Check("models", True, "stub")
        )
    assert not r.ready
    assert [c.name for c in r.checks if not c.ok] == ["disk"]
    assert "below 99.999% free" in r.reasons[0]
