"""DPO pages and their API twins: retention (dry run, proposed change, purge), the breach
register, the human review queue, the records of processing. Each: the happy path, and a
refused action that leaves nothing changed."""

from __future__ import annotations

import html
import json
import re
import time
from collections.abc import AsyncIterator
from pathlib import Path

import pytest_asyncio
from litestar.testing import AsyncTestClient

from appliance.admin.app import create_app
from appliance.admin.services import open_services
from appliance.config import Config
from appliance.privacy import ropa
from tests.admin.pages import ROOT, Client, actions, as_user, make_cfg, user_cookie
from tests.privacy.rights_fixtures import NUMBER, seed


@pytest_asyncio.fixture
async def site(tmp_path: Path) -> AsyncIterator[tuple[Client, Config, dict[str, str]]]:
    cfg = make_cfg(tmp_path)
    cookies: dict[str, str] = {}
    async with open_services(cfg) as svc:
        await seed(svc.privacy, tmp_path)
        for role in ("dpo", "auditor", "operator", "admin"):
            lines = ("reception",) if role == "operator" else ()
            _, cookies[role] = await user_cookie(svc, f"{role}-u", role, lines)
    async with AsyncTestClient(app=create_app(cfg), base_url="https://testserver.local") as c:
        yield c, cfg, cookies


async def _calls(cfg: Config) -> list[dict[str, object]]:
    async with open_services(cfg) as svc:
        return await svc.db.calls_page(
            lines=None, since=None, until=None, disposition=None, subject_index=None,
            call_ids=None, before=None, limit=100,
        )  # fmt: skip


async def _purges(cfg: Config) -> list[dict[str, object]]:
    async with open_services(cfg) as svc:
        return [r for r in await svc.db.retention_runs(50) if not r["dry_run"]]


def _cell_counts(page: str, table_id: str) -> dict[str, list[int]]:
    body = page.split(f'id="{table_id}"', 1)[1].split("</table>", 1)[0]
    out = {}
    for row in re.findall(r"<tr[^>]*><td>([a-z]+)</td>(.*?)</tr>", body, re.S):
        out[row[0]] = [int(n) for n in re.findall(r'class="num">(\d+)', row[1])]
    return out


# ---- retention
async def test_retention_policy_dry_run_and_preview(
    site: tuple[Client, Config, dict[str, str]],
) -> None:
    c, cfg, who = site
    await as_user(c, who["auditor"])  # read-only: sees the policy, runs dry runs, never purges
    page = (await c.get("/retention")).text
    assert "Policy in force" in page
    assert "reception: 30 days" in page  # the line's own recording period
    assert 'action="/retention/run"' not in page
    page = (await c.get("/retention?dry=true")).text
    counts = _cell_counts(page, "dry-counts")
    # The seeded calls are from 1970: past the CDR and bookkeeping periods.
    assert counts["cdr"][0] == 3
    assert 'action="/retention/run"' not in page  # no purge button without retention:run
    # A proposed change: an audit log kept 0 days would drop today's rows; the page says how
    # to apply it.
    page = (await c.get("/retention?propose=true&days_audit=0")).text
    preview = _cell_counts(page, "preview-counts")
    assert preview["audit"][0] == 0 and preview["audit"][1] > 5
    snippet = html.unescape(page.split('id="snippet">', 1)[1].split("</pre>", 1)[0])
    assert snippet == "[privacy.retention.days]\naudit = 0\n"
    assert "read-only on purpose" in page
    # A line's change is written as that line's override, not the default: reception's
    # recordings not kept after the call would purge today's recording.
    page = (await c.get("/retention?line=reception&propose=true&days_recording=0")).text
    assert _cell_counts(page, "preview-counts")["recording"][:2] == [0, 1]
    snippet = html.unescape(page.split('id="snippet">', 1)[1].split("</pre>", 1)[0])
    assert 'name = "reception"' in snippet and "retention_days = { recording = 0 }" in snippet
    # Nonsense is refused by name; a category not kept per line too.
    page = (await c.get("/retention?propose=true&days_cdr=soon")).text
    assert "cdr: &#39;soon&#39; is not a whole number of days" in page
    page = (await c.get("/retention?line=sales&propose=true&days_audit=5")).text
    assert "not kept per line" in page
    # The dry runs are in the history; nothing was purged.
    assert await _purges(cfg) == []
    assert len(await _calls(cfg)) == 3


async def test_purge_runs_the_previewed_plan_and_holds_win(
    site: tuple[Client, Config, dict[str, str]],
) -> None:
    c, cfg, who = site
    token = await as_user(c, who["auditor"])
    r = await c.post("/retention/run", data={"at": str(time.time()), "_csrf_token": token})
    assert r.status_code == 403  # retention:read only
    assert await _purges(cfg) == []

    token = await as_user(c, who["dpo"])
    async with open_services(cfg) as svc:  # the subject's two calls are under a legal hold
        await svc.rights.holds.on_subject(
            svc.privacy.subjects.parse(NUMBER), ROOT, reason="dispute", owner="legal"
        )
    page = (await c.get("/retention?dry=true")).text
    counts = _cell_counts(page, "dry-counts")
    assert counts["cdr"] == [1, 0, 2]  # one call goes, two are held
    at = re.search(r'name="at" value="([^"]+)"', page)
    assert at
    # A stale preview is refused and changes nothing.
    r = await c.post(
        "/retention/run",
        data={"at": str(float(at.group(1)) - 3600), "expect": "1", "_csrf_token": token},
    )
    assert "minutes old" in r.text
    r = await c.post("/retention/run", data={"at": "nan", "_csrf_token": token})
    assert "not a time" in r.text
    assert await _purges(cfg) == [] and len(await _calls(cfg)) == 3
    expect = re.search(r'name="expect" value="(\d+)"', page)
    assert expect and expect.group(1) == "1"
    r = await c.post(
        "/retention/run", data={"at": at.group(1), "expect": "1", "_csrf_token": token}
    )
    assert "purge run #" in r.text and "1 deleted" in r.text, r.text
    assert "kept under legal holds" in r.text and "the dry run listed" not in r.text
    left = {str(x["id"]) for x in await _calls(cfg)}
    assert left == {"1700000001.1", "1700000002.1"}
    runs = [a for a in await actions(cfg) if a["action"] == "retention.run"]
    assert [a["actor"] for a in runs] == ["user:dpo-u"]


async def test_retention_api(site: tuple[Client, Config, dict[str, str]]) -> None:
    c, cfg, _ = site
    async with open_services(cfg) as svc:
        reader = await svc.tokens.create("reader", ["retention:read"], ROOT)
        runner = await svc.tokens.create("runner", ["retention:run"], ROOT)
    h = {"Authorization": f"Bearer {reader}"}
    shown = (await c.get("/api/v1/retention", headers=h)).json()
    recording = next(x for x in shown["policy"]["categories"] if x["name"] == "recording")
    assert recording["days"] == 90 and recording["lines"] == {"reception": 30}
    dry = (await c.post("/api/v1/retention/dry-run", headers=h)).json()
    assert dry["counts"]["cdr"]["deleted"] == 3
    r = await c.post(
        "/api/v1/retention/preview",
        json={"line": "reception", "days": {"recording": 0, "cdr": 1095}},
        headers=h,
    )
    prev = r.json()
    assert prev["days"] == {"recording": 0}  # the unchanged figure is left out
    assert prev["current"]["counts"]["recording"]["deleted"] == 0
    assert prev["proposed"]["counts"]["recording"]["deleted"] == 1
    bad = await c.post("/api/v1/retention/preview", json={"days": {"cdr": -1}}, headers=h)
    assert bad.status_code == 400 and "negative" in bad.json()["detail"]
    r = await c.post("/api/v1/retention/run", json={"at": dry["now"]}, headers=h)
    assert r.status_code == 403
    hr = {"Authorization": f"Bearer {runner}"}
    r = await c.post("/api/v1/retention/run", json={"at": dry["now"] - 7200}, headers=hr)
    assert r.status_code == 400 and "run a new one" in r.json()["detail"]
    assert len(await _calls(cfg)) == 3
    r = await c.post("/api/v1/retention/run", json={"at": dry["now"]}, headers=hr)
    assert r.status_code == 200, r.text
    assert r.json()["counts"]["cdr"]["deleted"] == 3
    assert await _calls(cfg) == []


# ---- breach register
async def test_breach_register_pages(site: tuple[Client, Config, dict[str, str]]) -> None:
    c, cfg, who = site
    token = await as_user(c, who["dpo"])
    form = {
        "summary": "A USB stick with an export was lost",
        "categories": ["recording", "transcript"],
        "subjects_affected": "12",
        "consequences": "Calls of 12 callers could be listened to",
        "measures": "Exports now go only to encrypted media",
        "_csrf_token": token,
    }
    # Personal data in the register is refused; nothing is recorded.
    r = await c.post("/breaches", data={**form, "summary": "Lost the export of +46701234567"})
    assert "phone number" in r.text
    async with open_services(cfg) as svc:
        assert await svc.privacy.breaches.all() == []
    r = await c.post("/breaches", data=form)
    assert "breach recorded" in r.text and "h left" in r.text
    bid = re.search(r"/breaches/(\d+)/notify-authority", r.text)
    assert bid
    base = f"/breaches/{bid.group(1)}"
    # Closing before the authority and subjects steps is refused with the reason.
    r = await c.post(f"{base}/close", data={"_csrf_token": token})
    assert "cannot close" in r.text
    r = await c.post(
        f"{base}/notify-authority", data={"reference": "IMY-2026-17", "_csrf_token": token}
    )
    assert "authority notification recorded" in r.text and "IMY-2026-17" in r.text
    r = await c.post(f"{base}/close", data={"_csrf_token": token})
    assert "subjects" in r.text  # the subjects' notification must be recorded first
    r = await c.post(
        f"{base}/subjects-not-required",
        data={"reason": "the stick was encrypted and the key not with it", "_csrf_token": token},
    )
    assert "not told" in r.text
    r = await c.post(f"{base}/close", data={"note": "done", "_csrf_token": token})
    assert "breach closed" in r.text
    listed = (await c.get("/breaches")).text
    assert "status-closed" in listed and "A USB stick" in listed

    # An auditor reads the register but changes nothing; an operator does not see it.
    token = await as_user(c, who["auditor"])
    assert (await c.get(base)).status_code == 200
    r = await c.post("/breaches", data={**form, "_csrf_token": token})
    assert r.status_code == 403
    await as_user(c, who["operator"])
    assert (await c.get("/breaches")).status_code == 403
    async with open_services(cfg) as svc:
        assert len(await svc.privacy.breaches.all()) == 1
    acts = [a["action"] for a in await actions(cfg) if a["action"].startswith("breach.")]
    assert acts == [
        "breach.record", "breach.notify_authority", "breach.subjects_not_required",
        "breach.close",
    ]  # fmt: skip


async def test_breach_api(site: tuple[Client, Config, dict[str, str]]) -> None:
    c, cfg, _ = site
    async with open_services(cfg) as svc:
        token = await svc.tokens.create("dpo-tool", ["breach:read", "breach:write"], ROOT)
        reader = await svc.tokens.create("reader", ["breach:read"], ROOT)
    h = {"Authorization": f"Bearer {token}"}
    late = time.time() - 4 * 86400
    r = await c.post(
        "/api/v1/breaches",
        json={"summary": "Backup disk stolen", "categories": ["cdr"], "subjects_affected": 40,
              "consequences": "call metadata exposed", "measures": "police report",
              "discovered_at": late},
        headers=h,
    )  # fmt: skip
    assert r.status_code == 201, r.text
    view = r.json()
    assert view["deadline"]["overdue"] is True
    bid = view["breach"]["id"]
    # Notifying past 72 hours without the reasons for the delay is refused.
    r = await c.post(
        f"/api/v1/breaches/{bid}/notify-authority", json={"reference": "IMY-1"}, headers=h
    )
    assert r.status_code == 400 and "reasons for the delay" in r.json()["detail"]
    assert (await c.get(f"/api/v1/breaches/{bid}", headers=h)).json()["breach"]["status"] == "open"
    r = await c.post(
        f"/api/v1/breaches/{bid}/notify-authority",
        json={"reference": "IMY-1", "delay_reason": "found during the holidays"},
        headers=h,
    )
    assert r.json()["deadline"]["late"] is True
    r = await c.post(f"/api/v1/breaches/{bid}/notify-subjects", json={"how": "letters"}, headers=h)
    assert r.json()["breach"]["subjects_decision"] == "notified"
    assert (await c.post(f"/api/v1/breaches/{bid}/close", json={}, headers=h)).status_code == 201
    detail = (await c.get(f"/api/v1/breaches/{bid}", headers=h)).json()
    assert [e["action"] for e in detail["events"]] == [
        "record", "notify_authority", "notify_subjects", "close",
    ]  # fmt: skip
    hr = {"Authorization": f"Bearer {reader}"}
    assert len((await c.get("/api/v1/breaches", headers=hr)).json()) == 1
    r = await c.post(f"/api/v1/breaches/{bid}/close", json={}, headers=hr)
    assert r.status_code == 403
    assert (await c.get("/api/v1/breaches/999", headers=h)).status_code == 400


# ---- human review
async def test_review_queue(site: tuple[Client, Config, dict[str, str]]) -> None:
    c, cfg, who = site
    async with open_services(cfg) as svc:
        first = await svc.privacy.review.flag("report", "call:1700000001.1", "did not validate")
        second = await svc.privacy.review.flag("decision", "call:1700000002.1", "transfer skipped")
        token_api = await svc.tokens.create("reviewer", ["review:read", "review:write"], ROOT)
    token = await as_user(c, who["dpo"])
    page = (await c.get("/review")).text
    assert "did not validate" in page and 'href="/calls/1700000001.1"' in page
    # A correction needs a note: refused, the item stays open.
    r = await c.post(f"/review/{first}/decide", data={"outcome": "corrected", "_csrf_token": token})
    assert "note" in r.text and "did not validate" in r.text
    async with open_services(cfg) as svc:
        assert (await svc.privacy.review.get(first)).status == "open"
    r = await c.post(
        f"/review/{first}/decide",
        data={"outcome": "corrected", "note": "fixed the appointment day", "_csrf_token": token},
    )
    assert f"review item #{first} corrected" in r.text
    assert "did not validate" not in r.text  # gone from the open list
    decided = (await c.get("/review?status=decided")).text
    assert "fixed the appointment day" in decided and "dpo-u" in decided
    # Twice is refused.
    r = await c.post(f"/review/{first}/decide", data={"outcome": "approved", "_csrf_token": token})
    assert "already decided" in r.text
    # The auditor has no review permission at all.
    await as_user(c, who["auditor"])
    assert (await c.get("/review")).status_code == 403
    h = {"Authorization": f"Bearer {token_api}"}
    items = (await c.get("/api/v1/review", headers=h)).json()
    assert [i["id"] for i in items] == [second]
    r = await c.post(f"/api/v1/review/{second}/decide", json={"outcome": "maybe"}, headers=h)
    assert r.status_code == 400 and "not one of" in r.json()["detail"]
    r = await c.post(f"/api/v1/review/{second}/decide", json={"outcome": "approved"}, headers=h)
    assert r.json()["status"] == "decided"
    assert len((await c.get("/api/v1/review?status=all", headers=h)).json()) == 2


# ---- records of processing
async def test_ropa_page_and_downloads(site: tuple[Client, Config, dict[str, str]]) -> None:
    c, cfg, who = site
    await as_user(c, who["auditor"])
    page = (await c.get("/ropa")).text
    assert "Booking dental appointments" in page and "Art. 6(1)(b)" in page
    assert "30 days" in page  # reception's recording override
    md = await c.get("/ropa/download?format=markdown")
    assert md.headers["content-disposition"].startswith('attachment; filename="ropa-')
    assert md.text.startswith("# Records of processing activities")
    js = await c.get("/ropa/download?format=json")
    doc = json.loads(js.text)
    ropa.validate(doc)
    assert [a["line"] for a in doc["processing_activities"]] == ["reception", "sales"]
    assert (await c.get("/ropa/download?format=pdf")).status_code == 400
    await as_user(c, who["operator"])
    assert (await c.get("/ropa")).status_code == 403
    async with open_services(cfg) as svc:
        token = await svc.tokens.create("ropa", ["ropa:read"], ROOT)
    h = {"Authorization": f"Bearer {token}"}
    record = (await c.get("/api/v1/ropa", headers=h)).json()["record"]
    assert record["format"] == ropa.FORMAT
    r = await c.get("/api/v1/ropa/markdown", headers=h)
    assert r.headers["content-type"].startswith("text/markdown")
