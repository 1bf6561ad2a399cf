"""The admin UI in Debian's Chromium (Playwright), against `callvault admin serve` over HTTPS.

Flows a person does: the first login with a one-time password and the forced change; finding
a call and playing its recording (the audio element really plays); an operator kept out of
another line's call and the DPO pages. Screenshots (1280x800) go to $CALLVAULT_SCREENS when set
(`make bench` points it at bench/results/screens/).
"""

from __future__ import annotations

import asyncio
import os
import socket
import subprocess
import sys
import time
from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import pytest
import pytest_asyncio
from playwright.async_api import Browser, Page, async_playwright, expect

from appliance import config
from appliance.admin.services import open_services
from appliance.config import Config
from appliance.privacy import Actor
from tests.privacy.rights_fixtures import seed

REPO = Path(__file__).resolve().parents[2]
CHROMIUM = "/usr/bin/chromium"
FLAGS = [
    "--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
    "--disable-component-update", "--disable-sync", "--autoplay-policy=no-user-gesture-required",
]  # fmt: skip
ROOT = Actor("cli:root", "operator")
PASSWORD = "a long pass phrase 4 tests"


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@pytest.fixture(scope="module")
def site(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[Config, str]]:
    if not Path(CHROMIUM).exists():
        pytest.fail(f"{CHROMIUM} is missing: scripts/install installs Debian's chromium")
    tmp = tmp_path_factory.mktemp("admin-ui")
    port = _free_port()
    conf = tmp / "callvault.toml"
    conf.write_text(
        f'state_dir = "{tmp / "state"}"\n[asterisk]\nami_secret = "unused"\n'
        f'[admin]\nbind = "127.0.0.1"\nport = {port}\n'
        '[[lines]]\nname = "reception"\nextension = "100"\n'
        '[[lines]]\nname = "sales"\nextension = "101"\n'
    )
    cfg = config.load(conf)
    asyncio.run(_seed(cfg, tmp))
    proc = subprocess.Popen(
        [sys.executable, "-m", "appliance.cli", "--config", str(conf), "admin", "serve"],
        cwd=REPO, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
    )  # fmt: skip
    try:
        deadline = time.monotonic() + 60
        while True:
            try:
                socket.create_connection(("127.0.0.1", port), timeout=0.5).close()
                break
            except OSError:
                if proc.poll() is not None or time.monotonic() > deadline:
                    pytest.fail(
                        f"admin serve did not start: {proc.stdout.read() if proc.stdout else ''}"
                    )
                time.sleep(0.2)
        yield cfg, f"https://localhost:{port}"
    finally:
        proc.terminate()
        proc.wait(timeout=10)


async def _seed(cfg: Config, tmp: Path) -> None:
    async with open_services(cfg) as svc:
        await seed(svc.privacy, tmp)


async def _new_user(cfg: Config, name: str, role: str, lines: tuple[str, ...] = ()) -> str:
    async with open_services(cfg) as svc:
        return await svc.users.create(name, role, ROOT, lines=lines)


@pytest_asyncio.fixture
async def browser() -> AsyncIterator[Browser]:
    async with async_playwright() as p:
        b = await p.chromium.launch(executable_path=CHROMIUM, args=FLAGS)
        yield b
        await b.close()


async def _page(browser: Browser) -> Page:
    ctx = await browser.new_context(
        ignore_https_errors=True, viewport={"width": 1280, "height": 800}
    )
    return await ctx.new_page()


async def _shot(page: Page, name: str) -> None:
    where = os.environ.get("CALLVAULT_SCREENS")
    if where:
        # Playwright creates missing folders for the file it writes.
        await page.screenshot(path=os.path.join(where, f"{name}.png"))


async def _first_login(page: Page, base: str, name: str, once: str) -> None:
    await page.goto(f"{base}/calls")
    await expect(page).to_have_url(f"{base}/login")
    await _shot(page, "login")
    await page.fill("input[name=username]", name)
    await page.fill("input[name=password]", once)
    await page.click("button[type=submit]")
    await expect(page).to_have_url(f"{base}/password")
    await _shot(page, "password")
    await page.fill("input[name=current]", once)
    await page.fill("input[name=new]", PASSWORD)
    await page.fill("input[name=again]", PASSWORD)
    await page.click("main button[type=submit]")
    await expect(page).to_have_url(f"{base}/")


async def test_first_login_and_dashboard(site: tuple[Config, str], browser: Browser) -> None:
    cfg, base = site
    once = await _new_user(cfg, "admin", "admin")
    page = await _page(browser)
    errors: list[str] = []
    page.on("console", lambda m: errors.append(m.text) if m.type == "error" else None)
    await _first_login(page, base, "admin", once)
    await expect(page.locator("h1")).to_have_text("Dashboard")
    await expect(page.locator("#calls-chart")).to_be_visible()
    await _shot(page, "dashboard")
    # The chart library drew into the canvas (not a blank element).
    drawn = await page.evaluate(
        "() => { const c = document.getElementById('calls-chart');"
        " const d = c.getContext('2d').getImageData(0, 0, c.width, c.height).data;"
        " for (let i = 3; i < d.length; i += 4) if (d[i]) return true; return false; }"
    )
    assert drawn
    assert not [e for e in errors if "Content Security Policy" in e], errors


async def test_find_a_call_and_play_it(site: tuple[Config, str], browser: Browser) -> None:
    cfg, base = site
    once = await _new_user(cfg, "dpo", "dpo")
    page = await _page(browser)
    await _first_login(page, base, "dpo", once)
    await page.click("text=Calls")
    await page.fill("input[name=number]", "070 123 45 67")
    await page.click("form.filters button[type=submit]")
    inbound = page.locator("table.calls tbody tr", has_text="inbound")
    await expect(inbound).to_have_count(1)
    await _shot(page, "calls")
    await inbound.locator("a").click()
    await page.select_option("select[name=purpose]", "customer dispute")
    await page.click("form.purpose button[type=submit]")
    audio = page.locator("audio").first
    await expect(audio).to_be_visible()
    await page.evaluate("() => document.querySelector('audio').play()")
    await page.wait_for_function(
        "() => document.querySelector('audio').currentTime > 1", timeout=15000
    )
    await _shot(page, "call")
    async with open_services(cfg) as svc:
        plays = [a for a in await svc.db.audit_rows() if a["action"] == "recording.play"]
    assert any(p["actor"] == "user:dpo" and p["purpose"] == "customer dispute" for p in plays)


async def test_operator_is_kept_to_their_line(site: tuple[Config, str], browser: Browser) -> None:
    cfg, base = site
    once = await _new_user(cfg, "op", "operator", lines=("sales",))
    page = await _page(browser)
    await _first_login(page, base, "op", once)
    await page.goto(f"{base}/calls")
    await expect(page.locator("table.calls")).to_contain_text("No calls match")
    r = await page.goto(f"{base}/calls/1700000001.1")
    assert r is not None and r.status == 404
    await expect(page.locator("h1")).to_have_text("Not found")
