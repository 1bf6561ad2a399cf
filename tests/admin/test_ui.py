"""Admin pages through Litestar's test client over https: login, CSRF, lockout, line scoping."""

from __future__ import annotations

import re
from collections.abc import AsyncIterator
from pathlib import Path

import pytest
import pytest_asyncio
from litestar.testing import AsyncTestClient

from appliance.admin.app import create_app
from appliance.admin.auth import SESSION_COOKIE
from appliance.admin.services import open_services
from appliance.admin.users import LOCK_AFTER
from appliance.config import Config
from appliance.privacy import Actor
from tests.privacy.conftest import make_cfg
from tests.privacy.rights_fixtures import seed

ROOT = Actor("cli:root", "operator")
NEW_PASSWORD = "correct horse battery 42"
Client = AsyncTestClient  # type: ignore[type-arg]


@pytest_asyncio.fixture
async def cfg(tmp_path: Path) -> Config:
    c = make_cfg(tmp_path)
    async with open_services(c) as svc:
        await seed(svc.privacy, tmp_path)
    return c


@pytest_asyncio.fixture
async def client(cfg: Config) -> AsyncIterator[Client]:
    async with AsyncTestClient(app=create_app(cfg), base_url="https://testserver.local") as c:
        yield c


async def _user(cfg: Config, name: str, role: str, lines: tuple[str, ...] = ()) -> str:
    async with open_services(cfg) as svc:
        return await svc.users.create(name, role, ROOT, lines=lines)


def _csrf(html: str) -> str:
    m = re.search(r'name="_csrf_token" value="([^"]+)"', html)
    assert m, "no CSRF field on the form"
    return m.group(1)


async def _login(c: Client, name: str, password: str) -> object:
    page = await c.get("/login")
    return await c.post(
        "/login",
        data={"username": name, "password": password, "_csrf_token": _csrf(page.text)},
        follow_redirects=False,
    )


async def _logged_in(
    c: Client, cfg: Config, name: str, role: str, lines: tuple[str, ...] = ()
) -> None:
    once = await _user(cfg, name, role, lines)
    r = await _login(c, name, once)
    assert r.headers["location"] == "/password"  # type: ignore[attr-defined]
    page = await c.get("/password")
    r = await c.post(
        "/password",
        data={"current": once, "new": NEW_PASSWORD, "again": NEW_PASSWORD,
              "_csrf_token": _csrf(page.text)},
        follow_redirects=False,
    )  # fmt: skip
    assert r.status_code == 303, r.text  # type: ignore[attr-defined]


async def test_pages_need_a_login(client: Client) -> None:
    r = await client.get("/calls", follow_redirects=False)
    assert r.status_code == 303
    assert r.headers["location"] == "/login"
    page = await client.get("/login")
    assert page.status_code == 200
    csp = page.headers["content-security-policy"]
    assert "script-src 'self'" in csp and "frame-ancestors 'none'" in csp
    assert "<script>" not in page.text  # no inline script anywhere
    assert page.headers["x-frame-options"] == "DENY"


async def test_first_login_forces_a_password_change(client: Client, cfg: Config) -> None:
    once = await _user(cfg, "alice", "admin")
    r = await _login(client, "alice", once)
    assert r.status_code == 303  # type: ignore[attr-defined]
    cookie = r.headers["set-cookie"]  # type: ignore[attr-defined]
    assert SESSION_COOKIE in cookie
    for flag in ("Secure", "HttpOnly", "SameSite=Strict"):
        assert flag.lower() in cookie.lower()
    # Everything but the password page sends them back to it.
    r = await client.get("/", follow_redirects=False)
    assert r.headers["location"] == "/password"
    page = await client.get("/password")
    r = await client.post(
        "/password",
        data={"current": once, "new": "short", "again": "short", "_csrf_token": _csrf(page.text)},
    )
    assert r.status_code == 400
    assert "at least 12" in r.text
    r = await client.post(
        "/password",
        data={"current": once, "new": NEW_PASSWORD, "again": NEW_PASSWORD,
              "_csrf_token": _csrf(page.text)},
        follow_redirects=False,
    )  # fmt: skip
    assert r.status_code == 303
    assert (await client.get("/")).status_code == 200
    # The one-time password is spent.
    async with AsyncTestClient(app=create_app(cfg), base_url="https://testserver.local") as other:
        assert (await _login(other, "alice", once)).status_code == 401  # type: ignore[attr-defined]
        assert (await _login(other, "alice", NEW_PASSWORD)).status_code == 303  # type: ignore[attr-defined]


async def test_form_without_csrf_token_is_refused(client: Client, cfg: Config) -> None:
    once = await _user(cfg, "bob", "dpo")
    await client.get("/login")
    r = await client.post("/login", data={"username": "bob", "password": once})
    assert r.status_code == 403
    assert SESSION_COOKIE not in r.headers.get("set-cookie", "")


async def test_brute_force_locks_the_account(client: Client, cfg: Config) -> None:
    once = await _user(cfg, "carol", "dpo")
    for _ in range(LOCK_AFTER):
        assert (await _login(client, "carol", "wrong password!")).status_code == 401  # type: ignore[attr-defined]
    r = await _login(client, "carol", once)
    assert r.status_code == 401  # type: ignore[attr-defined]
    assert "locked" in r.text  # type: ignore[attr-defined]
    async with open_services(cfg) as svc:
        actions = [a["action"] for a in await svc.db.audit_rows()]
    assert "user.lock" in actions


async def test_session_fixation_is_prevented(client: Client, cfg: Config) -> None:
    once = await _user(cfg, "dave", "admin")
    planted = "attacker-chosen-session-id"
    client.cookies.set(SESSION_COOKIE, planted, domain="testserver.local")
    r = await _login(client, "dave", once)
    issued = re.search(SESSION_COOKIE + r"=([^;]+)", r.headers["set-cookie"])  # type: ignore[attr-defined]
    assert issued and issued.group(1) != planted


async def test_operator_sees_only_their_lines(client: Client, cfg: Config) -> None:
    await _logged_in(client, cfg, "erin", "operator", lines=("sales",))
    r = await client.get("/calls")
    assert r.status_code == 200
    assert "1700000001.1" not in r.text  # the seeded calls are on reception
    r = await client.get("/calls/1700000001.1")
    assert r.status_code == 404
    r = await client.get("/calls/1700000001.1/recordings/1/audio?purpose=call+review")
    assert r.status_code == 404
    # DPO pages and APIs are not theirs either.
    assert (await client.get("/api/v1/rights-requests/")).status_code == 401


async def test_dpo_plays_a_recording_with_ranges_and_is_audited(
    client: Client, cfg: Config
) -> None:
    await _logged_in(client, cfg, "frank", "dpo")
    r = await client.get("/calls?number=070-123 45 67")
    assert "1700000001.1" in r.text
    page = await client.get("/calls/1700000001.1")
    assert "choose a purpose" in page.text
    assert "<audio" not in page.text  # no player before a purpose is given
    page = await client.get("/calls/1700000001.1?purpose=customer+dispute")
    src = re.search(r'<audio[^>]+src="([^"]+)"', page.text)
    assert src
    url = src.group(1).replace("&amp;", "&")
    full = await client.get(url)
    assert full.status_code == 200
    assert full.content[:4] == b"RIFF"
    part = await client.get(url, headers={"Range": "bytes=100-199"})
    assert part.status_code == 206
    assert part.content == full.content[100:200]
    assert part.headers["content-range"] == f"bytes 100-199/{len(full.content)}"
    bad = await client.get(url, headers={"Range": f"bytes={len(full.content) + 5}-"})
    assert bad.status_code == 416
    # Traversal or another call's id never reaches a file.
    assert (
        await client.get("/calls/1700000001.1/recordings/..%2F..%2Fetc%2Fpasswd/audio")
    ).status_code == 404
    assert (
        await client.get("/calls/1700000003.1/recordings/1/audio?purpose=call+review")
    ).status_code == 404
    async with open_services(cfg) as svc:
        plays = [a for a in await svc.db.audit_rows() if a["action"] == "recording.play"]
    assert plays and {p["purpose"] for p in plays} == {"customer dispute"}
    assert {p["actor"] for p in plays} == {"user:frank"}


async def test_dnc_page_add_import_remove(client: Client, cfg: Config) -> None:
    await _logged_in(client, cfg, "gina", "operator", lines=("reception",))
    page = await client.get("/dnc")
    token = _csrf(page.text)
    r = await client.post(
        "/dnc", data={"number": "070-111 22 33", "reason": "asked", "_csrf_token": token}
    )
    assert "added to the list" in r.text
    assert "+46701112233" in r.text
    csv = b"number,reason\n+46701112244,campaign reply\nnot-a-number,x\n"
    r = await client.post(
        "/dnc/import",
        files={"file": ("list.csv", csv, "text/csv")},
        data={"_csrf_token": token},
    )
    assert "1 added" in r.text
    assert "line 3" in r.text  # the bad row named by its line
    r = await client.post("/dnc/remove", data={"number": "+46701112233", "_csrf_token": token})
    assert "removed" in r.text
    assert "+46701112233" not in r.text.split("numbers never dialled")[1]


async def test_rights_request_through_the_pages(client: Client, cfg: Config) -> None:
    await _logged_in(client, cfg, "hana", "dpo")
    token = _csrf((await client.get("/requests")).text)
    r = await client.post(
        "/requests",
        data={"kind": "access", "identifier": "0701234567", "channel": "phone",
              "_csrf_token": token},
    )  # fmt: skip
    assert "verify the requester" in r.text
    rid = re.search(r"/requests/(\d+)/attest", r.text)
    assert rid
    base = f"/requests/{rid.group(1)}"
    r = await client.post(f"{base}/process", data={"_csrf_token": token})
    assert "not" in r.text.lower() and "verified" in r.text.lower()  # refused, clearly
    r = await client.post(f"{base}/attest", data={"note": "called back", "_csrf_token": token})
    assert "identity attested" in r.text
    r = await client.post(f"{base}/process", data={"_csrf_token": token})
    assert "request complete" in r.text
    export = await client.get(f"{base}/export")
    assert export.status_code == 200
    assert export.content[:2] == b"PK"


async def test_hold_page_and_audit_verify(client: Client, cfg: Config) -> None:
    await _logged_in(client, cfg, "ivan", "dpo")
    token = _csrf((await client.get("/holds")).text)
    r = await client.post(
        "/holds",
        data={"subject": "+46701234567", "reason": "invoice dispute", "owner": "legal",
              "_csrf_token": token},
    )  # fmt: skip
    assert "legal hold placed" in r.text
    assert "in force" in r.text
    r = await client.post("/holds", data={"reason": "x", "owner": "y", "_csrf_token": token})
    assert "at least one call" in r.text
    r = await client.get("/audit?verify=true")
    assert "Chain intact" in r.text
    assert "hold.place" in r.text


async def test_a_database_held_by_the_other_process_is_a_503(
    client: Client, cfg: Config, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The telephony process holding the database past the busy timeout is "try again", not an
    internal error; nothing was changed."""
    import sqlite3

    from appliance.admin.users import Users

    async def locked(*_: object, **__: object) -> object:
        raise sqlite3.OperationalError("database is locked")

    once = await _user(cfg, "lena", "auditor")
    monkeypatch.setattr(Users, "login", locked)
    r = await _login(client, "lena", once)
    assert r.status_code == 503  # type: ignore[attr-defined]
    assert r.headers["retry-after"] == "5"  # type: ignore[attr-defined]
    assert "nothing was changed" in r.text  # type: ignore[attr-defined]
