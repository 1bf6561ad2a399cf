"""Helpers for the admin page tests: a seeded appliance, users logged in by role, forms."""

from __future__ import annotations

import re
import time
from collections.abc import Sequence
from dataclasses import replace
from pathlib import Path
from typing import Any

from litestar.testing import AsyncTestClient

from appliance import config
from appliance.admin.auth import SESSION_COOKIE
from appliance.admin.services import Services, open_services
from appliance.config import Config
from appliance.privacy import Actor
from appliance.store.reports import ReportRow
from appliance.voice.report import ReportVault
from appliance.voice.transcripts import Segment, Transcript, TranscriptVault
from tests.privacy.conftest import RAW

ROOT = Actor("cli:root", "operator")
CALL = "1700000001.1"  # the seeded subject's recorded inbound call on `reception`
Client = AsyncTestClient  # type: ignore[type-arg]
REPORT = {
    "purpose": "appointment",
    "caller_name": "Anna Svensson",
    "contact": {"phone": "+46701234567", "email": None},
    "need": "A cleaning appointment next week",
    "appointment": {"day": "Tuesday", "date": None, "time": "10:00"},
    "follow_up": "Confirm by phone",
    "opt_out": False,
    "language": "en",
}


def make_cfg(tmp: Path, **extra: Any) -> Config:
    """Two lines (reception with a recording override, sales), AMI where nothing listens."""
    raw = {
        **RAW,
        "asterisk": {**RAW["asterisk"], "ami_port": 1},  # type: ignore[dict-item]
        "lines": [
            {
                "name": "reception",
                "extension": "100",
                "retention_days": {"recording": 30},
                "system_prompt": "You are the receptionist of Callvault Dental.",
                "purpose": "Booking dental appointments",
                "lawful_basis": "contract",
            },
            {
                "name": "sales",
                "extension": "101",
                "recording": "after-consent",
                "record_legs": ["caller"],
            },
        ],
        **extra,
    }
    return config.parse(raw, base_dir=tmp)


def csrf(html: str) -> str:
    m = re.search(r'name="_csrf_token" value="([^"]+)"', html)
    assert m, "no CSRF field on the page"
    return m.group(1)


async def user_cookie(
    svc: Services, name: str, role: str, lines: Sequence[str] = ()
) -> tuple[str, str]:
    """A user with their own password already chosen, logged in: (name, session cookie)."""
    once = await svc.users.create(name, role, ROOT, lines=lines)
    row = await svc.db.user_by_name(name)
    assert row
    await svc.db.user_update(int(row["id"]), {"must_change": 0})
    _, cookie = await svc.users.login(name, once)
    return name, cookie


async def as_user(c: Client, cookie: str) -> str:
    """Switch the client to this session; returns a CSRF token for its forms."""
    c.cookies.delete(SESSION_COOKIE)
    c.cookies.set(SESSION_COOKIE, cookie, domain="testserver.local")
    page = await c.get("/password")
    return csrf(page.text)


async def add_transcript_and_report(svc: Services, call_id: str = CALL) -> None:
    """A caller-leg transcript and an `ok` post-call report for the seeded call."""
    own = await svc.db.call_own_subject_ids(call_id)
    t = Transcript(
        call_id=call_id, line="reception", leg="caller", language="en", language_prob=0.99,
        model="test", duration_s=6.0,
        segments=(Segment(0.0, 2.5, "Hello, I would like a cleaning appointment."),
                  Segment(3.0, 5.5, "Tuesday at ten would be perfect.")),
    )  # fmt: skip
    await TranscriptVault(svc.db, svc.privacy).store(
        t, recording_id=None, subject_ids=own, actor=ROOT
    )
    vault = ReportVault(svc.db, svc.privacy)
    row = ReportRow(
        call_id=call_id, line="reception", created_at=time.time(), status="ok", attempts=1,
        schema_id="https://callvault.invalid/schemas/call_report/1", model="fake-llm",
        report_enc=await vault.seal(call_id, {"report": REPORT}, own),
        key_subjects=",".join(map(str, own)),
    )  # fmt: skip
    audit = await svc.privacy.audit.entry(ROOT, "report.create", "report", "post-call report")
    await svc.db.save_report(row, [], audit)


async def actions(cfg: Config) -> list[dict[str, Any]]:
    async with open_services(cfg) as svc:
        return list(await svc.db.audit_rows())


# ---- a lived-in appliance for the browser flows and their screenshots
ERASE_NUMBER = "+46705550123"
HELD_NUMBER = "+46705550177"
ERASE_CALL = "1790000001.1"
HELD_CALL = "1790000002.1"


async def _call_with_words(
    svc: Services, call_id: str, number: str, started: float, words: tuple[str, ...]
) -> None:
    from tests.store.test_db import CDR

    cdr = replace(
        CDR, call_id=call_id, uniqueid=call_id, calling_number=number, caller_name="",
        channel=f"PJSIP/trunk-{call_id}", start_at=started, answer_at=started + 2,
        end_at=started + 62, duration_s=62, billable_s=60, disposition="ANSWERED",
    )  # fmt: skip
    await svc.privacy.subjects.add_cdr(cdr)
    own = await svc.db.call_own_subject_ids(call_id)
    segments = tuple(Segment(4.0 * i, 4.0 * i + 3.5, text) for i, text in enumerate(words))
    t = Transcript(
        call_id=call_id, line="reception", leg="caller", language="en", language_prob=0.98,
        model="test", duration_s=60.0, segments=segments,
    )  # fmt: skip
    await TranscriptVault(svc.db, svc.privacy).store(
        t, recording_id=None, subject_ids=own, actor=ROOT
    )


async def seed_lived_in(svc: Services, now: float | None = None) -> None:
    """On top of `rights_fixtures.seed`: the seeded call's transcript and AI report, two weeks
    of calls on reception (answered and missed, for the dashboard), two callers with
    transcripts (one to erase, one under a legal hold) and an item in the review queue."""
    now = time.time() if now is None else now
    await add_transcript_and_report(svc)
    from tests.store.test_db import CDR

    n = 0
    for day in range(14):
        for k in range(3 + (day * 7) % 5):
            n += 1
            start = now - day * 86400 - 3600 - k * 900
            answered = (day + k) % 4 != 0
            cdr = replace(
                CDR, call_id=f"{int(start)}.{n}", uniqueid=f"{int(start)}.{n}",
                calling_number=f"+4670555{1000 + n:04d}", caller_name="", start_at=start,
                answer_at=start + 3 if answered else None, end_at=start + 95 + 11 * k,
                duration_s=95 + 11 * k, billable_s=90 + 11 * k if answered else 0,
                disposition="ANSWERED" if answered else "NO ANSWER",
            )  # fmt: skip
            await svc.privacy.subjects.add_cdr(cdr)
    await _call_with_words(
        svc, ERASE_CALL, ERASE_NUMBER, now - 2 * 86400,
        ("Hi, I want to cancel my subscription.", "Please remove my number from your list."),
    )  # fmt: skip
    await _call_with_words(
        svc, HELD_CALL, HELD_NUMBER, now - 3 * 86400,
        ("I dispute invoice seventeen.", "You will hear from my lawyer."),
    )  # fmt: skip
    await svc.privacy.review.flag(
        "report", f"call:{CALL}", "the appointment day was not said in the call"
    )
