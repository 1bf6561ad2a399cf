"""Free slots, bookings in the store (sealed, audited reads), iCalendar, and the post-call
report written from a dialogue's slots."""

from __future__ import annotations

from collections.abc import AsyncIterator
from datetime import date, datetime, time
from pathlib import Path

import pytest
import pytest_asyncio
from rich.console import Console

from appliance import config
from appliance.config import Config
from appliance.privacy import Identifier, Privacy
from appliance.store import Database
from appliance.store.base import StoreError
from appliance.voice.dialogue import cli as calendar_cli
from appliance.voice.dialogue.calendar import (
    Booking,
    MemoryCalendar,
    StoreCalendar,
    choose,
    free_slots,
    to_ical,
)
from appliance.voice.dialogue.dates import When
from appliance.voice.dialogue.engine import DialogueEngine
from appliance.voice.report import ReportWriter
from tests.voice.dialogue.runner import playbook
from tests.voice.test_report import CALL, FakeModel, Turns, add_call

PB = playbook()
MONDAY = datetime(2026, 11, 23, 10, 0, tzinfo=PB.zone)
TUESDAY = date(2026, 11, 24)


def at(day: date, hh: int, mm: int = 0) -> datetime:
    return datetime.combine(day, time(hh, mm), PB.zone)


def test_free_slots_are_opening_hours_minus_bookings_and_the_past() -> None:
    slots = free_slots(PB, TUESDAY, [(at(TUESDAY, 9), at(TUESDAY, 10))], MONDAY)
    assert slots[0] == at(TUESDAY, 8) and at(TUESDAY, 9) not in slots
    assert at(TUESDAY, 9, 30) not in slots and at(TUESDAY, 10) in slots
    assert slots[-1] == at(TUESDAY, 16, 30) and len(slots) == 18 - 2
    today = free_slots(PB, MONDAY.date(), [], MONDAY)
    assert today[0] == at(MONDAY.date(), 10, 30)  # 10:00 has begun
    assert free_slots(PB, date(2026, 11, 28), [], MONDAY) == []  # Saturday: closed
    assert free_slots(PB, date(2027, 6, 1), [], MONDAY) == []  # past the horizon


def test_choose_prefers_the_asked_time_then_the_nearest() -> None:
    free = [at(TUESDAY, 9), at(TUESDAY, 11), at(TUESDAY, 14)]
    assert choose(When(at=time(11)), free) == (at(TUESDAY, 11), True)
    assert choose(When(at=time(13)), free) == (at(TUESDAY, 14), False)
    assert choose(When(part="afternoon"), free) == (at(TUESDAY, 14), True)
    assert choose(When(part="evening"), free) == (at(TUESDAY, 9), False)
    assert choose(When(at=time(9)), []) == (None, False)


def test_ical_export_is_rfc5545() -> None:
    b = Booking(7, "booking", at(TUESDAY, 8), at(TUESDAY, 8, 30), "c1",
                {"name": "Anna Berg", "phone": "+46701234567", "reason": "a, b; c"})  # fmt: skip
    text = to_ical([b], business="Callvault Dental")
    lines = text.split("\r\n")
    assert lines[0] == "BEGIN:VCALENDAR" and lines[-2] == "END:VCALENDAR" and lines[-1] == ""
    assert "DTSTART:20261124T070000Z" in lines and "DTEND:20261124T073000Z" in lines
    assert "SUMMARY:Appointment: Anna Berg" in lines
    assert "DESCRIPTION:phone: +46701234567\\; reason: a\\, b\\; c" in lines
    assert all(len(line.encode()) <= 75 for line in lines)


@pytest_asyncio.fixture
async def privacy(tmp_path: Path) -> AsyncIterator[Privacy]:
    import tomllib

    from tests.voice.dialogue.runner import DEV

    raw = tomllib.loads(DEV.read_text())
    raw["state_dir"] = str(tmp_path / "state")
    cfg: Config = config.parse(raw, base_dir=DEV.parent, source=DEV)
    async with Database(cfg.database) as db:
        yield Privacy(cfg, db)


async def test_a_booking_is_sealed_and_a_slot_cannot_be_taken_twice(privacy: Privacy) -> None:
    cal = StoreCalendar(privacy.db, privacy)
    details = {"name": "Anna Berg", "phone": "+46701234567"}
    bid = await cal.book("booking", at(TUESDAY, 8), at(TUESDAY, 8, 30), call_id="c1",
                         details=details, caller=None)  # fmt: skip
    assert bid is not None
    again = await cal.book("booking", at(TUESDAY, 8, 15), at(TUESDAY, 8, 45), call_id="c2",
                           details={"name": "Other"}, caller=None)  # fmt: skip
    assert again is None
    row = await privacy.db.booking(bid)
    assert row is not None and b"Anna" not in row.details_enc
    assert (await cal.read(row, PB.zone)).details == details
    assert await cal.busy("booking", at(TUESDAY, 0), at(TUESDAY, 23)) == [
        (at(TUESDAY, 8), at(TUESDAY, 8, 30))
    ]
    with pytest.raises(StoreError, match="ends before it starts"):
        await privacy.db.add_booking(line="booking", starts_at=2.0, ends_at=1.0, call_id="",
                                     details_enc=b"x", key_subjects=[1])  # fmt: skip
    # Erasing the caller shreds who booked; the time stays taken.
    subject = await privacy.subjects.ensure(Identifier("phone", "+46701234567"))
    await privacy.db.db.execute("DELETE FROM subject_links WHERE subject_id = ?", (subject,))
    await privacy.db.db.execute("DELETE FROM subjects WHERE id = ?", (subject,))
    await privacy.db.db.commit()
    assert (await cal.read(row, PB.zone)).details == {}
    assert await cal.cancel("booking", TUESDAY, details) is None


async def test_the_cli_lists_and_exports_audited(privacy: Privacy, tmp_path: Path) -> None:
    cal = StoreCalendar(privacy.db, privacy)
    now = datetime.now(PB.zone).replace(hour=12, minute=0, second=0, microsecond=0)
    start = now.replace(day=now.day)  # today, noon: within the listed window
    await cal.book("booking", start, start.replace(minute=30), call_id="c9",
                   details={"name": "Tove Rask"}, caller=None)  # fmt: skip
    console = Console(record=True, width=200)

    class Args:
        line = None
        days = 30
        purpose = "front desk"
        all = False
        output = str(tmp_path / "out.ics")

    assert await calendar_cli.cmd_list(Args(), privacy.cfg, privacy, console) == 0  # type: ignore[arg-type]
    assert "Tove Rask" in console.export_text()
    assert await calendar_cli.cmd_export(Args(), privacy.cfg, privacy, console) == 0  # type: ignore[arg-type]
    assert "SUMMARY:Appointment: Tove Rask" in (tmp_path / "out.ics").read_text()
    actions = [r["action"] for r in await privacy.db.audit_rows()]
    assert actions.count("calendar.view") == 1 and actions.count("calendar.export") == 1


async def test_the_report_is_filled_from_the_collected_slots(privacy: Privacy) -> None:
    cal = StoreCalendar(privacy.db, privacy)
    engine = DialogueEngine(PB, line="booking", call_id=CALL, calendar=cal, clock=lambda: MONDAY)
    for said in ("I'd like to book next Tuesday at 9. This is Anna Berg.", "Yes.", "No."):
        await engine.hear(said)
    assert engine.out.status == "done" and engine.out.booking_id is not None
    await cal.save_outcome(call_id=CALL, line="booking", doc=engine.out.doc(), caller=None)
    await add_call(privacy, line="booking")
    model = FakeModel(["not used"])
    writer = ReportWriter(privacy.cfg, privacy.db, privacy, lambda: model, Turns({CALL: []}))
    # No speech in the (stand-in) transcript and a model that would fail: the slots decide.
    result = await writer.report(CALL)
    assert result.status == "ok", result.errors
    assert result.report == {
        "purpose": "appointment",
        "caller_name": "Anna Berg",
        "contact": {"phone": None, "email": None},
        "need": "an appointment on 2026-11-24 09:00",
        "appointment": {"day": "Tuesday", "date": "2026-11-24", "time": "09:00"},
        "follow_up": "booked for 2026-11-24 at 09:00",
        "opt_out": False,
        "language": "en",
    }
    assert model.calls == [] and result.attempts == 1


async def test_an_opt_out_outcome_reports_opt_out(privacy: Privacy) -> None:
    cal = StoreCalendar(privacy.db, privacy)
    engine = DialogueEngine(PB, line="booking", call_id=CALL, calendar=cal, clock=lambda: MONDAY)
    await engine.hear("Please stop calling me.")
    await cal.save_outcome(call_id=CALL, line="booking", doc=engine.out.doc(), caller=None)
    await add_call(privacy, line="booking")
    writer = ReportWriter(privacy.cfg, privacy.db, privacy, lambda: FakeModel([]), Turns({}))
    result = await writer.report(CALL)
    assert result.report is not None and result.report["opt_out"] is True


async def test_memory_calendar_cancels_by_name() -> None:
    cal = MemoryCalendar()
    bid = await cal.book("l", at(TUESDAY, 8), at(TUESDAY, 8, 30), call_id="c",
                         details={"name": "Olof Berg"}, caller=None)  # fmt: skip
    assert await cal.cancel("l", TUESDAY, {"name": "olof berg"}) == bid
    assert await cal.busy("l", at(TUESDAY, 0), at(TUESDAY, 23)) == []
