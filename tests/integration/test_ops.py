"""Operating the box against the real Asterisk sandbox (issue 12).

- /api/v1/metrics, scraped with a metrics:read token and parsed by prometheus_client's parser,
  moves with a real call: calls in progress and the spool while it is up, the line's call
  count and an empty spool after.
- /readyz flips to 503 naming Asterisk when AMI is cut (a proxy of our own in front of the
  session's Asterisk, which the other tests keep using) and back to 200 when it returns; the
  same outage raises the `ami_down` alert, which reaches a loopback SMTP sink and the Alerts
  page, and its resolution follows.
"""

from __future__ import annotations

import asyncio
import threading
import time
from collections.abc import AsyncIterator
from dataclasses import replace
from typing import Any

import pytest
import pytest_asyncio
from litestar.testing import AsyncTestClient
from prometheus_client.parser import text_string_to_metric_families

from appliance.admin.app import create_app
from appliance.admin.services import open_services
from appliance.config import Config
from appliance.ops import metrics
from appliance.ops.alerts import Alerts
from appliance.ops.checks import AlertChecks
from appliance.ops.notify import SmtpNotifier
from appliance.ops.runtime import ApplianceSource
from appliance.privacy import Actor
from appliance.server import Appliance
from appliance.telephony.audio import tone
from appliance.telephony.sip import SipPhone
from tests.admin.pages import as_user, user_cookie
from tests.integration.conftest import Heards
from tests.integration.tcp_proxy import CuttableProxy
from tests.ops.sinks import smtp_sink

pytestmark = pytest.mark.asyncio(loop_scope="session")
ROOT = Actor("cli:root", "operator")
Client = AsyncTestClient  # type: ignore[type-arg]
Samples = dict[str, dict[tuple[tuple[str, str], ...], float]]


def parse(text: str) -> Samples:
    out: Samples = {}
    for fam in text_string_to_metric_families(text):
        for s in fam.samples:
            out.setdefault(s.name, {})[tuple(sorted(s.labels.items()))] = s.value
    return out


def answered(s: Samples, line: str) -> tuple[float, float]:
    """(calls in the store, CDRs ever written) answered on `line`."""
    key = (("disposition", "ANSWERED"), ("line", line))
    return (
        s.get("callvault_calls_stored", {}).get(key, 0.0),
        s.get("callvault_cdrs_total", {}).get(key, 0.0),
    )


class ThreadedProxy:
    """CuttableProxy on an event loop of its own: Litestar's AsyncTestClient runs the app on
    another thread and blocks the test's loop during a request, so a proxy on the test's loop
    could not pass the app's AMI traffic while /readyz waits for it."""

    def __init__(self, host: str, port: int) -> None:
        self.loop = asyncio.new_event_loop()
        self.thread = threading.Thread(target=self.loop.run_forever, daemon=True)
        self.thread.start()
        self.proxy = CuttableProxy(host, port)
        self._run(self.proxy.start())

    @property
    def port(self) -> int:
        return self.proxy.port

    def _run(self, coro: Any) -> None:
        asyncio.run_coroutine_threadsafe(coro, self.loop).result(timeout=10)

    def cut(self) -> None:
        self._run(self.proxy.cut())

    def restore(self) -> None:
        self._run(self.proxy.restore())

    def close(self) -> None:
        self._run(self.proxy.close())
        self.loop.call_soon_threadsafe(self.loop.stop)
        self.thread.join(timeout=10)
        self.loop.close()


@pytest_asyncio.fixture(loop_scope="session")
async def client(cfg: Config) -> AsyncIterator[Client]:
    async with AsyncTestClient(app=create_app(cfg), base_url="https://testserver.local") as c:
        yield c


async def test_metrics_move_with_a_real_call(
    app: Appliance, phone201: SipPhone, heards: Heards, cfg: Config, client: Client
) -> None:
    async with open_services(cfg) as svc:
        token = await svc.tokens.create("prometheus-it", ["metrics:read"], ROOT)
    auth = {"Authorization": f"Bearer {token}"}
    live = metrics.LiveMetrics(ApplianceSource(app))
    snapshot = metrics.snapshot_path(cfg)

    async def scrape() -> Samples:
        live.write_snapshot(snapshot)  # what `callvault serve` does every 5 s
        t0 = time.perf_counter()
        r = await client.get("/api/v1/metrics", headers=auth)
        assert r.status_code == 200, r.text
        scrape_ms.append((time.perf_counter() - t0) * 1000)
        return parse(r.text)

    scrape_ms: list[float] = []
    before = await scrape()
    assert before["callvault_serve_up"][()] == 1
    assert before["callvault_ami_connected"][()] == 1
    assert before["callvault_calls_in_progress"][()] == 0

    mark = heards.mark()
    call = await phone201.dial("100")
    await call.wait_confirmed(timeout=10)
    call.play(tone(800.0, 1.5))
    during: Samples = {}
    for _ in range(40):
        during = await scrape()
        if (
            during["callvault_calls_in_progress"][()] >= 1
            and during["callvault_recording_spool_bytes"][()] > 0
        ):
            break
        await asyncio.sleep(0.1)
    assert during["callvault_calls_in_progress"][()] >= 1
    # reception records three legs from the first ring: plaintext in the spool until hangup.
    assert during["callvault_encryption_backlog_files"][()] >= 1
    assert during["callvault_recording_spool_bytes"][()] > 0
    await asyncio.sleep(1.5)
    await call.hangup()
    await call.wait_ended(timeout=5)
    heard = await heards.next(mark, "reception")
    await app.telephony.wait_cdr(heard.call_id)

    after: Samples = {}
    for _ in range(100):
        after = await scrape()
        if (
            answered(after, "reception") == tuple(x + 1 for x in answered(before, "reception"))
            and after["callvault_encryption_backlog_files"][()] == 0
        ):
            break
        await asyncio.sleep(0.1)
    assert answered(after, "reception") == tuple(x + 1 for x in answered(before, "reception"))
    assert after["callvault_calls_in_progress"][()] == 0
    assert after["callvault_encryption_backlog_files"][()] == 0
    # Labels hold line names and dispositions, never the caller's number or name.
    for name, samples in after.items():
        for labels in samples:
            for _, value in labels:
                assert "201" not in value and "Front desk" not in value, (name, labels)
    print(f"metrics_scrape_ms median {sorted(scrape_ms)[len(scrape_ms) // 2]:.1f}")


async def test_readiness_and_ami_alert_follow_an_outage(app: Appliance, cfg: Config) -> None:
    proxy = ThreadedProxy(cfg.asterisk.ami_host, cfg.asterisk.ami_port)
    # Only readiness goes through the proxy; the session's appliance keeps its own AMI.
    via = replace(
        cfg,
        asterisk=replace(cfg.asterisk, ami_port=proxy.port),
        agent=replace(cfg.agent, voice=False),
    )

    async def ready(c: Client, want: int) -> tuple[int, dict[str, Any]]:
        # A probe on a busy 2-core box can miss once; the state is what it settles to.
        for _ in range(10):
            r = await c.get("/readyz")
            if r.status_code == want:
                break
            await asyncio.sleep(0.5)
        return r.status_code, r.json()

    try:
        with smtp_sink() as (port, box):
            async with (
                AsyncTestClient(app=create_app(via), base_url="https://testserver.local") as c,
                open_services(via) as svc,
            ):
                _, cookie = await user_cookie(svc, "ops-admin", "admin")
                alerts = Alerts(
                    svc.db, [SmtpNotifier("127.0.0.1", port, "box@x.lan", ("it@x.lan",))]
                )
                checks = AlertChecks(via, svc.db, alerts)

                code, body = await ready(c, 200)
                assert code == 200, body["reasons"]
                await checks.check_asterisk()
                assert not [a for a in await alerts.list() if a.kind == "ami_down"]

                proxy.cut()
                code, body = await ready(c, 503)
                assert code == 503
                assert [r for r in body["reasons"] if r.startswith("asterisk:")], body
                await checks.check_asterisk()  # two rounds in a row make it an outage
                await checks.check_asterisk()
                (down,) = [a for a in await alerts.list() if a.kind == "ami_down"]
                assert down.severity == "critical"
                await as_user(c, cookie)
                page = await c.get("/alerts")
                assert "ami_down" in page.text and "Asterisk does not answer" in page.text

                proxy.restore()
                code, body = await ready(c, 200)
                assert code == 200, body["reasons"]
                await checks.check_asterisk()
                assert not [a for a in await alerts.list() if a.kind == "ami_down"]
                await alerts.drain()
            mails = box.wait(2)
    finally:
        proxy.close()
    subjects = [m["Subject"] for m in mails]
    assert any("CRITICAL: ami_down" in s for s in subjects), subjects
    assert any("resolved: ami_down" in s for s in subjects), subjects
