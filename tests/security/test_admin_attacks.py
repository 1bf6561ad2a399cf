"""OWASP-style attacks on the admin UI and API, beyond tests/admin (which has the route x role
matrix): IDOR on every object id, stored XSS through every attacker-controlled text field that
is rendered, SQL injection in every filter, upload limits and session expiry."""

from __future__ import annotations

import re
import time
from collections.abc import AsyncIterator
from dataclasses import replace
from pathlib import Path

import pytest
import pytest_asyncio
from litestar.testing import AsyncTestClient

from appliance.admin.app import create_app
from appliance.admin.services import open_services
from appliance.admin.users import ABSOLUTE_S, IDLE_S
from appliance.config import Config
from appliance.store.reports import ReportRow
from appliance.voice.report import ReportVault
from appliance.voice.transcripts import Segment, Transcript, TranscriptVault
from tests.admin.pages import ROOT, as_user, make_cfg, user_cookie
from tests.admin.test_authz_matrix import routes
from tests.privacy.rights_fixtures import seed
from tests.store.test_db import CDR

Client = AsyncTestClient  # type: ignore[type-arg]
XSS = [
    "<script>alert(1)</script>",
    '"><img src=x onerror=alert(2)>',
    "'><svg/onload=alert(3)>",
    "javascript:alert(4)",
    "{{7*7}}<b>ssti</b>",
]
RAW_MARKERS = ("<script>alert(1)", "<img src=x onerror", "<svg/onload", "<b>ssti</b>")
ATTACK_CALL = "1700000500.1"  # on `sales`
SQLI = [
    "' OR '1'='1",
    "1; DROP TABLE cdrs; --",
    '" OR ""="',
    "reception' UNION SELECT name, sql, 1, 1 FROM sqlite_master --",
    "%' --",
    "\x00",
]


@pytest_asyncio.fixture
async def site(tmp_path: Path) -> AsyncIterator[tuple[Client, Config, dict[str, str]]]:
    cfg = make_cfg(tmp_path)
    cookies: dict[str, str] = {}
    async with open_services(cfg) as svc:
        await seed(svc.privacy, tmp_path)
        # A caller controls their caller ID name and what they say; the dialled digits too.
        cdr = replace(
            CDR, call_id=ATTACK_CALL, uniqueid=ATTACK_CALL, line="sales",
            calling_number="+46705550999", caller_name=XSS[0] + XSS[1],
            dialed_number=XSS[2][:20], start_at=time.time() - 60, end_at=time.time(),
        )  # fmt: skip
        await svc.privacy.subjects.add_cdr(cdr)
        own = await svc.db.call_own_subject_ids(ATTACK_CALL)
        t = Transcript(
            call_id=ATTACK_CALL, line="sales", leg="caller", language="en", language_prob=0.9,
            model="test", duration_s=4.0,
            segments=tuple(Segment(float(i), i + 0.9, p) for i, p in enumerate(XSS)),
        )  # fmt: skip
        await TranscriptVault(svc.db, svc.privacy).store(
            t, recording_id=None, subject_ids=own, actor=ROOT
        )
        vault = ReportVault(svc.db, svc.privacy)
        report = {
            "purpose": "other", "caller_name": XSS[1], "need": XSS[0], "follow_up": XSS[4],
            "contact": {"phone": None, "email": None}, "opt_out": False, "language": "en",
            "appointment": {"day": None, "date": None, "time": None},
        }  # fmt: skip
        row = ReportRow(
            call_id=ATTACK_CALL, line="sales", created_at=time.time(), status="ok", attempts=1,
            schema_id="https://callvault.invalid/schemas/call_report/1", model="fake",
            report_enc=await vault.seal(ATTACK_CALL, {"report": report}, own),
            key_subjects=",".join(map(str, own)),
        )  # fmt: skip
        audit = await svc.privacy.audit.entry(ROOT, "report.create", "report", "post-call")
        await svc.db.save_report(row, [], audit)
        await svc.privacy.dnc.add("+46705550998", source=XSS[3], reason=XSS[0], actor=ROOT)
        await svc.privacy.review.flag("report", f"call:{ATTACK_CALL}", XSS[1])
        for role in ("admin", "dpo", "auditor"):
            _, cookies[role] = await user_cookie(svc, f"{role}-u", role)
        _, cookies["op-sales"] = await user_cookie(svc, "op-sales", "operator", ("sales",))
        _, cookies["op-rec"] = await user_cookie(svc, "op-rec", "operator", ("reception",))
    async with AsyncTestClient(app=create_app(cfg), base_url="https://testserver.local") as c:
        yield c, cfg, cookies


def _no_raw_payload(body: str, where: str) -> None:
    for marker in RAW_MARKERS:
        assert marker not in body, f"{where}: unescaped {marker!r}"


async def test_stored_xss_is_escaped_on_every_page(
    site: tuple[Client, Config, dict[str, str]],
) -> None:
    c, cfg, cookies = site
    app = create_app(cfg)
    pages = [p for m, p, _h in routes(app) if m == "GET" and "{" not in p and "schema" not in p]
    pages += [f"/calls/{ATTACK_CALL}", f"/calls/{ATTACK_CALL}?purpose=call+review"]
    seen_escaped = 0
    for role in ("admin", "dpo", "op-sales"):
        await as_user(c, cookies[role])
        for path in pages:
            r = await c.get(path)
            if r.status_code != 200 or "html" not in r.headers.get("content-type", ""):
                continue
            _no_raw_payload(r.text, f"{role} GET {path}")
            seen_escaped += r.text.count("&lt;script&gt;alert(1)")
            assert "script-src 'self'" in r.headers.get("content-security-policy", "")
    # The payloads were rendered (escaped): the caller name, transcript, report, DNC reason.
    assert seen_escaped >= 4
    # Search and filter echo-back: the query string is rendered into the form again.
    await as_user(c, cookies["dpo"])
    for payload in XSS:
        r = await c.get("/calls", params={"q": payload, "line": payload, "number": payload})
        assert r.status_code in {200, 400}
        _no_raw_payload(r.text, f"/calls echo of {payload!r}")
        r = await c.get("/dnc", params={"ok": payload, "err": payload})
        _no_raw_payload(r.text, "/dnc flash message")


async def test_idor_on_every_object_id(site: tuple[Client, Config, dict[str, str]]) -> None:
    c, cfg, cookies = site
    async with open_services(cfg) as svc:
        rec_ids = [int(r["id"]) for r in await svc.db.recordings("1700000001.1")]
    assert rec_ids
    # An operator of `sales` owns ATTACK_CALL only; every reception object is out of reach,
    # including by pairing their own call id with another call's recording id.
    await as_user(c, cookies["op-sales"])
    assert (await c.get(f"/calls/{ATTACK_CALL}")).status_code == 200
    for path in (
        "/calls/1700000001.1",
        "/calls/1700000001.1?purpose=call+review",
        f"/calls/1700000001.1/recordings/{rec_ids[0]}/audio?purpose=call+review",
        f"/calls/{ATTACK_CALL}/recordings/{rec_ids[0]}/audio?purpose=call+review",
    ):
        r = await c.get(path)
        assert r.status_code in {403, 404}, (path, r.status_code)
        assert b"RIFF" not in r.content
    # The list with a line filter naming another line shows nothing of it.
    r = await c.get("/calls", params={"line": "reception"})
    assert "1700000001.1" not in r.text
    # Ids that do not exist, or are not ids, are a clean 404/400 for a user who may see all.
    await as_user(c, cookies["dpo"])
    for path in (
        f"/calls/1700000001.1/recordings/{rec_ids[0] + 999}/audio?purpose=call+review",
        "/calls/..%2F..%2Fetc%2Fpasswd",
        "/calls/1700000001.1/recordings/-1/audio?purpose=call+review",
        "/calls/1700000001.1/recordings/99999999999999999999/audio?purpose=call+review",
        "/requests/999999",
        "/breaches/999999",
        "/api/v1/rights-requests/999999",
        "/api/v1/breaches/999999",
    ):
        r = await c.get(path)
        assert r.status_code in {400, 401, 403, 404}, (path, r.status_code)
    for role, path in (
        ("dpo", "/holds/999999/release"),
        ("dpo", "/review/999999/decide"),
        ("admin", "/users/nobody/disable"),
    ):
        await as_user(c, cookies[role])
        page = await c.get("/password")
        token = re.search(r'name="_csrf_token" value="([^"]+)"', page.text)
        assert token
        r = await c.post(path, data={"_csrf_token": token.group(1)}, follow_redirects=False)
        assert r.status_code in {303, 400, 404}, (path, r.status_code)
        assert r.status_code != 500


async def test_sql_injection_in_every_filter(site: tuple[Client, Config, dict[str, str]]) -> None:
    c, cfg, cookies = site
    await as_user(c, cookies["op-rec"])
    baseline = await c.get("/calls")
    assert ATTACK_CALL not in baseline.text  # a sales call, hidden from this operator
    for payload in SQLI:
        for name in ("since", "until", "line", "number", "disposition", "q", "before"):
            r = await c.get("/calls", params={name: payload})
            assert r.status_code in {200, 400}, (name, payload, r.status_code)
            # An injected OR would widen the operator's view to the sales line.
            assert ATTACK_CALL not in r.text, (name, payload)
            # A UNION over sqlite_master would leak the schema's DDL into the page.
            assert "CREATE TABLE" not in r.text and "CREATE INDEX" not in r.text
    await as_user(c, cookies["dpo"])
    for payload in SQLI:
        for path in ("/requests", "/holds", "/audit", "/breaches", "/review", "/dnc"):
            r = await c.get(path, params={"q": payload, "status": payload, "kind": payload})
            assert r.status_code in {200, 400}, (path, payload, r.status_code)
    # The schema is intact and the data still there.
    async with open_services(cfg) as svc:
        assert await svc.db.cdrs(ATTACK_CALL)
        tables = await svc.db.db.execute_fetchall("SELECT name FROM sqlite_master")
        assert {"cdrs", "recordings", "calls"} <= {t[0] for t in tables}


async def test_upload_limit(site: tuple[Client, Config, dict[str, str]]) -> None:
    c, _cfg, cookies = site
    token = await as_user(c, cookies["dpo"])
    big = b"number\n" + b"+46701234567\n" * (11 * 1024 * 1024 // 13)
    r = await c.post(
        "/dnc/import",
        files={"file": ("big.csv", big, "text/csv")},
        data={"_csrf_token": token},
        follow_redirects=False,
    )
    assert r.status_code == 413
    async with open_services(_cfg) as svc:
        assert len(await svc.privacy.dnc.entries()) == 1  # the seeded entry only


@pytest.mark.parametrize("after", [IDLE_S + 1, ABSOLUTE_S + 1])
async def test_session_expiry(tmp_path: Path, after: int) -> None:
    cfg = make_cfg(tmp_path)
    now = [time.time()]
    async with open_services(cfg) as svc:
        svc.users.clock = lambda: now[0]
        _, cookie = await user_cookie(svc, "ann", "admin")
        assert await svc.users.session(cookie) is not None
        if after > IDLE_S + 1:
            # Active all along (a request every 20 minutes), but past the absolute limit.
            while now[0] - time.time() < after:
                now[0] += 20 * 60
                await svc.users.session(cookie)
        else:
            now[0] += after
        assert await svc.users.session(cookie) is None
        assert await svc.users.session(cookie) is None  # and deleted, not just refused once
