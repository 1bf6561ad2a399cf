"""Admin pages and their API twins: users and roles, lines / agent profiles, the system status
(Asterisk over AMI: a fake AMI server, and an unreachable one), the dashboard additions and the
call detail's AI report."""

from __future__ import annotations

import asyncio
import contextlib
import re
from collections.abc import AsyncIterator
from dataclasses import replace
from pathlib import Path

import pytest_asyncio
from litestar.testing import AsyncTestClient

from appliance.admin import status
from appliance.admin.app import create_app
from appliance.admin.auth import SESSION_COOKIE
from appliance.admin.services import open_services
from appliance.config import Config
from tests.admin.pages import (
    CALL,
    ROOT,
    Client,
    actions,
    add_transcript_and_report,
    as_user,
    make_cfg,
    user_cookie,
)
from tests.privacy.rights_fixtures import seed


@pytest_asyncio.fixture
async def site(tmp_path: Path) -> AsyncIterator[tuple[Client, Config, dict[str, str]]]:
    cfg = make_cfg(tmp_path)
    cookies: dict[str, str] = {}
    async with open_services(cfg) as svc:
        await seed(svc.privacy, tmp_path)
        for role in ("admin", "dpo", "operator"):
            lines = ("reception",) if role == "operator" else ()
            _, cookies[role] = await user_cookie(svc, f"{role}-u", role, lines)
    async with AsyncTestClient(app=create_app(cfg), base_url="https://testserver.local") as c:
        yield c, cfg, cookies


async def _user(cfg: Config, name: str) -> dict[str, object] | None:
    async with open_services(cfg) as svc:
        return await svc.db.user_by_name(name)


# ---- users and roles
async def test_users_page_create_reset_disable(
    site: tuple[Client, Config, dict[str, str]],
) -> None:
    c, cfg, who = site
    token = await as_user(c, who["admin"])
    page = await c.get("/users")
    assert page.headers["cache-control"] == "no-store"
    assert "dpo-u" in page.text and "operator-u" in page.text
    # Refused: an operator without lines, a line that does not exist. Nothing is created.
    r = await c.post("/users", data={"username": "olle", "role": "operator", "_csrf_token": token})
    assert r.status_code == 400 and "needs the lines" in r.text
    r = await c.post(
        "/users",
        data={"username": "olle", "role": "operator", "lines": "nowhere", "_csrf_token": token},
    )
    assert "no line named &#39;nowhere&#39;" in r.text
    assert await _user(cfg, "olle") is None
    # Created: the one-time password is on this answer only, and it logs in once.
    r = await c.post(
        "/users",
        data={"username": "Olle", "role": "operator", "lines": ["sales", "reception"],
              "_csrf_token": token},
    )  # fmt: skip
    assert r.status_code == 200 and r.headers["cache-control"] == "no-store"
    once = re.search(r'id="one-time-password">([^<]+)<', r.text)
    assert once
    assert once.group(1) not in (await c.get("/users")).text
    row = await _user(cfg, "olle")
    assert row and row["lines"] == "sales,reception" and row["must_change"] == 1
    async with open_services(cfg) as svc:
        user, _ = await svc.users.login("olle", once.group(1))
        assert user.must_change
    # Reset: a new one-time password; the old one no longer works.
    r = await c.post("/users/olle/reset", data={"_csrf_token": token})
    again = re.search(r'id="one-time-password">([^<]+)<', r.text)
    assert again and again.group(1) != once.group(1)
    # Your own account is not reset or disabled from here.
    r = await c.post("/users/admin-u/disable", data={"_csrf_token": token})
    assert "cannot disable your own account" in r.text
    r = await c.post("/users/admin-u/reset", data={"_csrf_token": token})
    assert "password page" in r.text
    row = await _user(cfg, "admin-u")
    assert row and row["disabled_at"] is None
    # Disabling ends the user's sessions at once.
    await as_user(c, who["dpo"])
    assert (await c.get("/retention")).status_code == 200
    await as_user(c, who["admin"])
    r = await c.post("/users/dpo-u/disable", data={"_csrf_token": token})
    assert "dpo-u disabled" in r.text
    r = await c.post("/users/dpo-u/disable", data={"_csrf_token": token})
    assert "already disabled" in r.text
    c.cookies.delete(SESSION_COOKIE)
    c.cookies.set(SESSION_COOKIE, who["dpo"], domain="testserver.local")
    r = await c.get("/retention", follow_redirects=False)
    assert r.status_code == 303 and r.headers["location"] == "/login"
    acts = [a["action"] for a in await actions(cfg) if a["action"].startswith("user.")]
    assert acts.count("user.create") == 4 and "user.reset" in acts and "user.disable" in acts


async def test_only_admins_manage_users(site: tuple[Client, Config, dict[str, str]]) -> None:
    c, cfg, who = site
    token = await as_user(c, who["dpo"])
    assert (await c.get("/users")).status_code == 403
    r = await c.post("/users", data={"username": "mallory", "role": "admin", "_csrf_token": token})
    assert r.status_code == 403
    assert await _user(cfg, "mallory") is None
    r = await c.post("/users/admin-u/disable", data={"_csrf_token": token})
    assert r.status_code == 403
    row = await _user(cfg, "admin-u")
    assert row and row["disabled_at"] is None
    for page in ("/users", "/lines", "/system"):
        assert (await c.get(page)).status_code == 403


async def test_users_api_keeps_the_last_admin(
    site: tuple[Client, Config, dict[str, str]],
) -> None:
    c, cfg, _ = site
    async with open_services(cfg) as svc:
        token = await svc.tokens.create("it", ["users:read", "users:write"], ROOT)
    h = {"Authorization": f"Bearer {token}"}
    r = await c.post("/api/v1/users", json={"username": "second", "role": "admin"}, headers=h)
    assert r.status_code == 201 and len(r.json()["one_time_password"]) == 23
    listed = {u["username"]: u for u in (await c.get("/api/v1/users", headers=h)).json()}
    assert listed["second"]["must_change"] is True
    assert "password_hash" not in listed["second"]
    r = await c.post("/api/v1/users/second/disable", headers=h)
    assert r.json() == {"username": "second", "disabled": True}
    r = await c.post("/api/v1/users/admin-u/disable", headers=h)
    assert r.status_code == 400 and "last active admin" in r.json()["detail"]
    row = await _user(cfg, "admin-u")
    assert row and row["disabled_at"] is None
    r = await c.post("/api/v1/users/second/reset", headers=h)
    assert r.status_code == 400 and "disabled" in r.json()["detail"]
    r = await c.post("/api/v1/users", json={"username": "x", "role": "root"}, headers=h)
    assert r.status_code == 400


# ---- lines
async def test_lines_page_is_read_only_config(
    site: tuple[Client, Config, dict[str, str]],
) -> None:
    c, cfg, who = site
    await as_user(c, who["admin"])
    page = (await c.get("/lines")).text
    assert "edited in the config file" in page
    assert "You are the receptionist of Callvault Dental." in page
    assert "Booking dental appointments" in page and "contract (Art. 6(1)(b))" in page
    assert "after-consent" in page  # sales asks first
    sales = page.split('id="line-sales"', 1)[1]
    assert "built-in receptionist instructions" in sales
    assert "<form" not in page.split("<main>", 1)[1]  # nothing to submit: config-driven
    async with open_services(cfg) as svc:
        token = await svc.tokens.create("lines", ["lines:read"], ROOT)
    lines = (await c.get("/api/v1/lines", headers={"Authorization": f"Bearer {token}"})).json()
    reception = lines[0]
    assert reception["retention_overrides"] == {"recording": 30}
    assert reception["retention_days"]["recording"] == 30
    assert reception["retention_days"]["consent"] == 3 * 365


# ---- system: Asterisk over AMI
class FakeAmi:
    """Just enough of Asterisk's manager interface: login, CoreStatus, CoreSettings and the
    PJSIP endpoint and outbound registration lists, as Asterisk 22 words them."""

    def __init__(self, secret: str) -> None:
        self.secret = secret
        self.actions: list[str] = []

    async def handle(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        writer.write(b"Asterisk Call Manager/9.0.0\r\n")
        try:
            while True:
                raw = await reader.readuntil(b"\r\n\r\n")
                msg = dict(
                    line.split(": ", 1)
                    for line in raw.decode().strip().split("\r\n")
                    if ": " in line
                )
                action, aid = msg.get("Action", ""), msg.get("ActionID", "")
                self.actions.append(action)
                writer.write(self.answer(action, aid, msg).encode())
                await writer.drain()
        except (asyncio.IncompleteReadError, ConnectionError):
            pass
        finally:
            writer.close()

    def answer(self, action: str, aid: str, msg: dict[str, str]) -> str:
        def block(**kv: str) -> str:
            return "".join(f"{k}: {v}\r\n" for k, v in kv.items()) + "\r\n"

        if action == "Login":
            if msg.get("Secret") != self.secret:
                return block(Response="Error", ActionID=aid, Message="Authentication failed")
            return block(Response="Success", ActionID=aid, Message="Authentication accepted")
        if action == "CoreStatus":
            return block(
                Response="Success", ActionID=aid, CoreStartupDate="2026-11-23",
                CoreStartupTime="08:00:01", CoreReloadDate="2026-11-23",
                CoreReloadTime="08:00:01", CoreCurrentCalls="2",
            )  # fmt: skip
        if action == "CoreSettings":
            return block(
                Response="Success", ActionID=aid, AsteriskVersion="22.5.2", SystemName="box"
            )
        if action == "PJSIPShowEndpoints":
            rows = [
                ("201", "Not in use", "201/sip:201@192.0.2.50:5062;ob,"),
                ("202", "Unavailable", ""),
                ("agent", "Not in use", "agent/sip:agent@127.0.0.1:5070,"),
            ]
            out = block(
                Response="Success", ActionID=aid, EventList="start",
                Message="A listing of Endpoints follows, presented as EndpointList events",
            )  # fmt: skip
            for name, state, contacts in rows:
                out += block(
                    Event="EndpointList", ActionID=aid, ObjectType="endpoint",
                    ObjectName=name, Transport="", Aor=name, Auths=name, OutboundAuths="",
                    Contacts=contacts, DeviceState=state, ActiveChannels="",
                )  # fmt: skip
            return out + block(
                Event="EndpointListComplete", ActionID=aid, EventList="Complete",
                ListItems=str(len(rows)),
            )  # fmt: skip
        if action == "PJSIPShowRegistrationsOutbound":
            return block(Response="Error", ActionID=aid, Message="No registrations found")
        return block(Response="Error", ActionID=aid, Message="Invalid/unknown command")


@contextlib.asynccontextmanager
async def fake_ami(secret: str) -> AsyncIterator[tuple[FakeAmi, int]]:
    ami = FakeAmi(secret)
    server = await asyncio.start_server(ami.handle, "127.0.0.1", 0)
    port = server.sockets[0].getsockname()[1]
    try:
        yield ami, port
    finally:
        server.close()
        await server.wait_closed()


async def test_asterisk_status_over_ami(tmp_path: Path) -> None:
    cfg = make_cfg(tmp_path)
    async with fake_ami("s3cret") as (ami, port):
        good = replace(cfg, asterisk=replace(cfg.asterisk, ami_port=port, ami_secret="s3cret"))
        st = await status.asterisk_status(good)
        assert st.reachable, st.error
        assert st.version == "22.5.2" and st.active_calls == 2
        assert st.up_since == "2026-11-23 08:00:01"
        by_name = {e.name: e for e in st.endpoints}
        assert by_name["201"].kind == "extension" and by_name["201"].label == "Desk"
        assert by_name["201"].contacts == ["201/sip:201@192.0.2.50:5062;ob"]
        assert not by_name["202"].registered
        assert st.endpoints[0].kind == "agent"
        assert st.registrations == [] and st.registrations_note == ""  # none: not an error
        assert st.endpoints_error == ""
        assert ami.actions[0] == "Login"
        wrong = replace(good, asterisk=replace(good.asterisk, ami_secret="guess"))
        st = await status.asterisk_status(wrong)
        assert not st.reachable and "Authentication failed" in st.error
    st = await status.asterisk_status(cfg)  # port 1: nothing listens
    assert not st.reachable and "cannot reach Asterisk AMI at 127.0.0.1:1" in st.error


async def test_system_page(site: tuple[Client, Config, dict[str, str]]) -> None:
    c, cfg, who = site
    await as_user(c, who["admin"])
    page = (await c.get("/system")).text
    assert "Asterisk unreachable." in page and "127.0.0.1:1" in page
    assert 'id="models"' in page and "GPU:" in page
    assert "state and database" in page  # the disk table
    assert "No archives in" in page
    async with open_services(cfg) as svc:
        token = await svc.tokens.create("sys", ["system:read"], ROOT)
    body = (await c.get("/api/v1/system", headers={"Authorization": f"Bearer {token}"})).json()
    assert body["asterisk"]["reachable"] is False
    assert {m["role"] for m in body["models"]["models"]} >= {"stt", "llm", "tts"}
    assert all(m["device"] in ("cpu", "cuda") for m in body["models"]["models"])
    assert body["disks"][0]["what"] == "state and database"


# ---- dashboard and call detail
async def test_dashboard_shows_purges_and_model_status(
    site: tuple[Client, Config, dict[str, str]],
) -> None:
    c, _, who = site
    await as_user(c, who["dpo"])
    page = (await c.get("/")).text
    assert 'id="model-status"' in page and 'id="upcoming-purges"' in page
    purges = page.split('id="upcoming-purges"', 1)[1].split("</section>", 1)[0]
    assert "<td>cdr</td>" in purges  # the 1970 calls go at the next run
    await as_user(c, who["operator"])
    page = (await c.get("/")).text
    assert 'id="model-status"' in page and 'id="upcoming-purges"' not in page
    # The DPO pages are not in an operator's menu, and refuse them.
    nav = page.split("<nav>", 1)[1].split("</nav>", 1)[0]
    for href in ("/retention", "/review", "/breaches", "/ropa", "/requests", "/holds", "/audit"):
        assert f'href="{href}"' not in nav
        assert (await c.get(href)).status_code == 403


async def test_call_detail_shows_transcript_and_report_audited(
    site: tuple[Client, Config, dict[str, str]],
) -> None:
    c, cfg, who = site
    async with open_services(cfg) as svc:
        await add_transcript_and_report(svc)
    await as_user(c, who["operator"])
    page = (await c.get(f"/calls/{CALL}")).text
    assert "cleaning appointment" not in page  # nothing opened before a purpose is chosen
    page = (await c.get(f"/calls/{CALL}?purpose=quality+assurance")).text
    assert "Tuesday at ten would be perfect." in page  # the transcript, with its seek buttons
    assert 'data-t="3.0"' in page
    report = page.split('id="report"', 1)[1].split("</section>", 1)[0]
    assert "A cleaning appointment next week" in report and "Tuesday" in report
    assert "status-ok" in report
    reads = [a for a in await actions(cfg) if a["action"] in ("report.view", "transcript.view")]
    assert {(a["action"], a["actor"], a["purpose"]) for a in reads} == {
        ("report.view", "user:operator-u", "quality assurance"),
        ("transcript.view", "user:operator-u", "quality assurance"),
    }
    # Search finds it by a word the caller said.
    page = (await c.get("/calls?q=cleaning")).text
    assert f"/calls/{CALL}" in page
    # A call without a report says so.
    page = (await c.get("/calls/1700000002.1?purpose=quality+assurance")).text
    assert "No post-call report for this call." in page
