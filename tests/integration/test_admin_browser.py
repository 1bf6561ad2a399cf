"""The admin UI in Debian's Chromium (Playwright), against `callvault admin serve` over HTTPS.

Flows a person does: the first login with a one-time password and the forced change; finding
a call and playing its recording (the audio element really plays); an operator kept out of
another line's call and the DPO pages. Screenshots (1280x800) go to $CALLVAULT_SCREENS when set
(`make bench` points it at bench/results/screens/).
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import re
import socket
import subprocess
import sys
import time
import zipfile
from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import pytest
import pytest_asyncio
from playwright.async_api import Browser, Page, async_playwright, expect

from appliance import config
from appliance.admin.services import open_services
from appliance.config import Config
from appliance.privacy import Actor
from tests.admin.pages import ERASE_NUMBER, HELD_NUMBER, seed_lived_in
from tests.privacy.rights_fixtures import NUMBER, seed

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
    with admin_serving(conf, port) as base:
        yield cfg, base


@contextlib.contextmanager
def admin_serving(conf: Path, port: int) -> Iterator[str]:
    """`callvault admin serve` with `conf` as a process, until the block ends; its base URL."""
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
        yield f"https://localhost:{port}"
    finally:
        proc.terminate()
        proc.wait(timeout=10)


async def _seed(cfg: Config, tmp: Path) -> None:
    async with open_services(cfg) as svc:
        await seed(svc.privacy, tmp)
        await seed_lived_in(svc)


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


def _csp_errors(page: Page) -> list[str]:
    errors: list[str] = []
    page.on(
        "console",
        lambda m: (
            errors.append(m.text)
            if m.type == "error" and "Content Security Policy" in m.text
            else None
        ),
    )
    return errors


async def _nav(page: Page, label: str) -> None:
    await page.click(f"header nav >> text={label}")


async def test_retention_change_is_previewed_after_a_dry_run(
    site: tuple[Config, str], browser: Browser
) -> None:
    cfg, base = site
    once = await _new_user(cfg, "dpo-retention", "dpo")
    page = await _page(browser)
    csp = _csp_errors(page)
    await _first_login(page, base, "dpo-retention", once)
    await _nav(page, "Retention")
    await expect(page.locator("h1")).to_have_text("Retention policies")
    await _shot(page, "retention")
    await page.click("text=Dry run now")
    dry = page.locator("#dry-counts")
    await expect(dry).to_be_visible()
    # The seeded calls from 1970 are past every period: the dry run lists their CDRs (those
    # with a transcript or report are anonymised until those go).
    await expect(dry.locator("tr", has_text="cdr")).not_to_contain_text("cdr000")
    await expect(page.locator("form.purge button")).to_be_enabled()
    await page.locator("#dry-run").scroll_into_view_if_needed()
    await _shot(page, "retention-dry-run")
    # Propose: reception keeps recordings 0 days instead of 90.
    await page.click("p.scopes >> text=line reception")
    await page.fill("input[name=days_recording]", "0")
    await page.click("#propose button[type=submit]")
    snippet = page.locator("#snippet")
    await expect(snippet).to_contain_text('name = "reception"')
    await expect(snippet).to_contain_text("retention_days = { recording = 0 }")
    await expect(page.locator("#preview-counts tr.changed", has_text="recording")).to_be_visible()
    await expect(page.locator("#preview")).to_contain_text("Put these lines in")
    await page.locator("#preview").scroll_into_view_if_needed()
    await _shot(page, "retention-preview")
    # Previewing changed nothing: no purge ran, the seeded recording is still there.
    async with open_services(cfg) as svc:
        assert [r for r in await svc.db.retention_runs(50) if not r["dry_run"]] == []
        assert len(await svc.db.recordings()) >= 1
    assert not csp, csp


async def test_legal_hold_turns_erasure_into_anonymisation_with_the_reason(
    site: tuple[Config, str], browser: Browser
) -> None:
    cfg, base = site
    once = await _new_user(cfg, "dpo-holds", "dpo")
    page = await _page(browser)
    csp = _csp_errors(page)
    await _first_login(page, base, "dpo-holds", once)
    await _nav(page, "Legal holds")
    await page.fill("input[name=subject]", HELD_NUMBER)
    await page.fill("input[name=reason]", "Invoice 17 dispute")
    await page.fill("input[name=owner]", "legal")
    await page.click("main form.filters button[type=submit]")
    await expect(page.locator("p.ok")).to_contain_text("legal hold placed")
    await _shot(page, "holds")
    await _nav(page, "Rights requests")
    await page.select_option("select[name=kind]", "erasure")
    await page.fill("input[name=identifier]", "070-555 01 77")
    await page.click("main form.filters button[type=submit]")
    await expect(page.locator("p.ok")).to_contain_text("verify the requester")
    await page.fill("input[name=note]", "called back on the number, matched the call date")
    await page.click("text=Attest identity")
    await page.click("text=Run the request")
    response = page.locator("pre.response")
    await expect(response).to_contain_text("erased_with_exceptions")
    await expect(response).to_contain_text("kept_under_legal_hold")
    held = page.locator("div.held")  # which hold kept what, and why, in words
    await expect(held).to_contain_text("Invoice 17 dispute")
    await expect(held).to_contain_text("A legal hold requires these records to be kept")
    await _shot(page, "request")
    # The held call stays (anonymised): still listed, without the caller's number.
    await page.goto(f"{base}/calls?q=lawyer")
    rows = page.locator("table.calls tbody tr")
    await expect(rows).to_have_count(1)
    await expect(rows).not_to_contain_text("555 01 77")
    assert not csp, csp


async def test_erased_subject_is_gone_from_search(
    site: tuple[Config, str], browser: Browser
) -> None:
    cfg, base = site
    once = await _new_user(cfg, "dpo-erase", "dpo")
    page = await _page(browser)
    await _first_login(page, base, "dpo-erase", once)
    await _nav(page, "Calls")
    await page.fill("input[name=q]", "subscription")
    await page.click("form.filters button[type=submit]")
    await expect(page.locator("table.calls tbody tr")).to_have_count(1)
    await page.goto(f"{base}/calls?number={ERASE_NUMBER.replace('+', '%2B')}")
    await expect(page.locator("table.calls tbody tr")).to_have_count(1)
    await _nav(page, "Rights requests")
    await page.select_option("select[name=kind]", "erasure")
    await page.fill("input[name=identifier]", ERASE_NUMBER)
    await page.click("main form.filters button[type=submit]")
    await page.fill("input[name=note]", "request signed on letterhead, number matches")
    await page.click("text=Attest identity")
    await page.click("text=Run the request")
    await expect(page.locator("pre.response")).to_contain_text('"erased"')
    for search in ("q=subscription", f"number={ERASE_NUMBER.replace('+', '%2B')}"):
        await page.goto(f"{base}/calls?{search}")
        await expect(page.locator("table.calls")).to_contain_text("No calls match")
    await _shot(page, "calls-after-erasure")


async def test_access_request_verified_and_its_export_downloaded(
    site: tuple[Config, str], browser: Browser, tmp_path: Path
) -> None:
    cfg, base = site
    once = await _new_user(cfg, "dpo-access", "dpo")
    page = await _page(browser)
    await _first_login(page, base, "dpo-access", once)
    await _nav(page, "Rights requests")
    await page.select_option("select[name=kind]", "access")
    await page.fill("input[name=identifier]", NUMBER)
    await page.click("main form.filters button[type=submit]")
    await expect(page.locator("h1")).to_contain_text("Access request")
    await page.fill(
        "form[action$='/extend'] input[name=reason]", "the requester asked for 2019 too"
    )
    await page.click("text=Extend deadline")
    await expect(page.locator("main")).to_contain_text("2019 too")
    await page.fill("input[name=note]", "called back on the number, matched call dates")
    await page.click("text=Attest identity")
    await expect(page.locator("main")).to_contain_text("called back on the number")
    await page.click("text=Run the request")
    await expect(page.locator("main dl")).to_contain_text("complete")
    await _shot(page, "request-access")
    async with page.expect_download() as info:
        await page.click("text=Download the export (ZIP)")
    download = await info.value
    saved = tmp_path / download.suggested_filename
    await download.save_as(saved)
    with zipfile.ZipFile(saved) as z:
        names = z.namelist()
        assert z.testzip() is None
        # Her own data, readable: the recorded call's audio is in it, decrypted.
        assert any(n.endswith(".wav") for n in names), names
        assert NUMBER.encode() in b"".join(z.read(n) for n in names if n.endswith(".json"))


async def test_operator_cannot_open_any_dpo_or_admin_page(
    site: tuple[Config, str], browser: Browser
) -> None:
    cfg, base = site
    once = await _new_user(cfg, "op-reception", "operator", lines=("reception",))
    page = await _page(browser)
    await _first_login(page, base, "op-reception", once)
    nav = page.locator("header nav")
    await expect(nav).to_contain_text("Calls")
    dpo = ["/requests", "/holds", "/audit", "/retention", "/review", "/breaches", "/ropa"]
    admin = ["/users", "/lines", "/system"]
    for path in dpo + admin:
        await expect(nav.locator(f'a[href="{path}"]')).to_have_count(0)
        r = await page.goto(f"{base}{path}")
        assert r is not None and r.status == 403, path
        await expect(page.locator("h1")).to_have_text("Not allowed")
    await _shot(page, "not-allowed")


async def test_dpo_registers(site: tuple[Config, str], browser: Browser) -> None:
    cfg, base = site
    once = await _new_user(cfg, "dpo-registers", "dpo")
    page = await _page(browser)
    csp = _csp_errors(page)
    await _first_login(page, base, "dpo-registers", once)
    await _shot(page, "dashboard-dpo")
    await expect(page.locator("#upcoming-purges")).to_contain_text("cdr")
    # Breach register: record one, then the authority step.
    await _nav(page, "Breaches")
    await page.fill(
        "textarea[name=summary]", "An unencrypted export was e-mailed to a wrong address"
    )
    await page.check("input[name=categories][value=recording]")
    await page.check("input[name=categories][value=transcript]")
    await page.fill("input[name=subjects_affected]", "3")
    await page.fill("textarea[name=consequences]", "Three callers' conversations could be read")
    await page.fill(
        "textarea[name=measures]", "Recipient confirmed deletion; exports now encrypted"
    )
    await page.click("main form.breach-form button[type=submit]")
    await expect(page.locator("p.ok")).to_contain_text("72-hour clock")
    await page.fill("input[name=reference]", "IMY-2026-0042")
    await page.click("text=Record authority notification")
    await expect(page.locator("main")).to_contain_text("IMY-2026-0042")
    await _shot(page, "breach")
    await _nav(page, "Breaches")
    await _shot(page, "breaches")
    # Review queue: decide the seeded item.
    await _nav(page, "Review")
    row = page.locator("table.review tbody tr", has_text="appointment day was not said")
    await row.locator("select[name=outcome]").select_option("corrected")
    await row.locator("input[name=note]").fill("day removed from the report")
    await _shot(page, "review")
    await row.locator("button").click()
    await expect(page.locator("p.ok")).to_contain_text("corrected")
    # Records of processing, and the Markdown download.
    await _nav(page, "ROPA")
    await expect(page.locator("h1")).to_contain_text("Records of processing")
    await _shot(page, "ropa")
    async with page.expect_download() as info:
        await page.click("text=Download Markdown")
    download = await info.value
    assert download.suggested_filename.startswith("ropa-")
    assert download.suggested_filename.endswith(".md")
    # The other DPO pages, for the screenshots.
    await _nav(page, "Do not call")
    await expect(page.locator("h1")).to_have_text("Do-not-call list")
    await _shot(page, "dnc")
    await _nav(page, "Rights requests")
    await expect(page.locator("h1")).to_have_text("Rights requests")
    await _shot(page, "requests")
    await _nav(page, "Audit log")
    await page.click("text=Verify the chain")
    await expect(page.locator("p.ok")).to_contain_text("Chain intact")
    await _shot(page, "audit")
    assert not csp, csp


async def test_admin_pages(site: tuple[Config, str], browser: Browser) -> None:
    cfg, base = site
    once = await _new_user(cfg, "it-admin", "admin")
    page = await _page(browser)
    csp = _csp_errors(page)
    await _first_login(page, base, "it-admin", once)
    await _nav(page, "Users")
    await page.fill("input[name=username]", "frontdesk")
    await page.select_option("select[name=role]", "operator")
    await page.check("input[name=lines][value=reception]")
    await page.click("main form button.primary")
    secret = page.locator("#one-time-password")
    await expect(secret).to_have_text(re.compile(r"^[a-z2-9]{5}(-[a-z2-9]{5}){3}$"))
    await _shot(page, "users")
    await page.reload()  # shown once: not on the page any more
    await expect(page.locator("#one-time-password")).to_have_count(0)
    await _nav(page, "Lines")
    await expect(page.locator("#line-reception")).to_be_visible()
    await _shot(page, "lines")
    await _nav(page, "System")
    await expect(page.locator("#asterisk h2")).to_have_text("Asterisk")
    await expect(page.locator("#models")).to_contain_text("GPU")
    await _shot(page, "system")
    assert not csp, csp
