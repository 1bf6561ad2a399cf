"""PBX pages in Debian's Chromium (Playwright): an IT admin adds a trunk, an extension (its
SIP password shown once) and an inbound route; a refused change shows its reason.

The admin listener runs against a scratch Asterisk root with no Asterisk behind it (AMI on a
closed port): each change is checked, rendered and written there and recorded as a version.
The calls that follow those objects are tested through the real sandbox in test_pbx.py.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
from playwright.async_api import Browser, expect

from appliance import config
from appliance.admin.services import open_services
from appliance.config import Config
from appliance.pbx.render import DIALPLAN_FILE, PJSIP_FILE
from tests.integration.test_admin_browser import (
    CHROMIUM,
    _first_login,
    _free_port,
    _new_user,
    _page,
    _shot,
    admin_serving,
    browser,
)

REPO = Path(__file__).resolve().parents[2]
__all__ = ["browser"]


@pytest.fixture(scope="module")
def pbx_site(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[Config, str]]:
    if not Path(CHROMIUM).exists():
        pytest.fail(f"{CHROMIUM} is missing: scripts/install installs Debian's chromium")
    tmp = tmp_path_factory.mktemp("admin-pbx")
    port = _free_port()
    conf = tmp / "callvault.toml"
    conf.write_text(
        f'state_dir = "{tmp / "state"}"\n'
        f'[asterisk]\nami_secret = "unused"\nami_port = {_free_port()}\n'
        f'root = "{tmp / "root"}"\nsandbox = true\n'
        f'[admin]\nbind = "127.0.0.1"\nport = {port}\n'
        '[[lines]]\nname = "reception"\nextension = "100"\n'
    )
    cfg = config.load(conf)
    cfg.asterisk.host_path(cfg.asterisk.config_dir).mkdir(parents=True)
    with admin_serving(conf, port) as base:
        yield cfg, base


async def test_admin_adds_trunk_extension_and_route(
    pbx_site: tuple[Config, str], browser: Browser
) -> None:
    cfg, base = pbx_site
    once = await _new_user(cfg, "itadmin", "admin")
    page = await _page(browser)
    await _first_login(page, base, "itadmin", once)
    await page.click("nav >> text=PBX")
    await expect(page.locator("h1")).to_contain_text("PBX")

    # A trunk.
    form = page.locator("#trunk-form")
    await form.locator("input[name=name]").fill("carrier")
    await form.locator("input[name=host]").fill("192.0.2.10")
    await form.locator("input[name=dids]").fill("4631100200, 4631100201")
    await form.locator("input[name=caller_id]").fill("4631100299")
    await form.locator("input[name=max_channels]").fill("8")
    await form.locator("button[type=submit]").click()
    await expect(page.locator("[role=status]").first).to_contain_text("add trunk carrier")
    await expect(page.locator("tr[data-trunk=carrier]")).to_contain_text("4631100200, 4631100201")

    # An extension: its generated password is shown once.
    form = page.locator("#extension-form")
    await form.locator("input[name=number]").fill("301")
    await form.locator("input[name=name]").fill("Sales desk")
    await form.locator("input[name=voicemail]").check()
    await form.locator("button[type=submit]").click()
    secret = (await page.locator("#sip-password").text_content() or "").strip()
    assert len(secret) >= 24
    await _shot(page, "pbx-extension")
    await expect(page.locator("tr[data-extension='301']")).to_contain_text("Sales desk")
    await page.goto(f"{base}/pbx")
    await expect(page.locator("#sip-password")).to_have_count(0)  # never shown again

    # A route with opening hours, then a refused one naming the reason.
    form = page.locator("#route-form")
    await form.locator("input[name=did]").fill("4631100200")
    await form.locator("input[name=destination]").fill("extension:301")
    await form.locator("input[name=closed_destination]").fill("line:reception")
    await form.locator("input[name=hours]").fill("mon-fri 08:00-17:00")
    await form.locator("button[type=submit]").click()
    await expect(page.locator("tr[data-route='4631100200']")).to_contain_text("extension:301")
    form = page.locator("#route-form")
    await form.locator("input[name=did]").fill("4631100201")
    await form.locator("input[name=destination]").fill("extension:399")
    await form.locator("button[type=submit]").click()
    await expect(page.locator("[role=alert]").first).to_contain_text("no enabled extension 399")
    await expect(page.locator("tr[data-route='4631100201']")).to_have_count(0)
    await _shot(page, "pbx")

    # What reached the Asterisk config: rendered from the store, secret included, 3 versions.
    etc = cfg.asterisk.host_path(cfg.asterisk.config_dir)
    assert f"password = {secret}" in (etc / PJSIP_FILE).read_text()
    assert "[cvpbx-route-4631100200]" in (etc / DIALPLAN_FILE).read_text()
    await expect(page.locator("#versions tbody tr")).to_have_count(3)

    async def audited() -> set[str]:
        async with open_services(cfg) as svc:
            return {a["action"] for a in await svc.db.audit_rows() if a["actor"] == "user:itadmin"}

    assert {"pbx.apply", "pbx.refused"} <= await audited()
