"""Free slots, bookings in the store (sealed, audited reads), iCalendar, and the post-call
report written from a dialogue's slots."""

from __future__ import annotations

import asyncio
import re
import threading
from collections.abc import AsyncIterator, Iterator
from dataclasses import replace
from datetime import UTC, date, datetime, time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any, ClassVar

import pytest
import pytest_asyncio
from rich.console import Console

from appliance import config
from appliance.config import CalDavConfig, Config
from appliance.errors import ConfigError
from appliance.ops.alerts import Alerts
from appliance.privacy import Identifier, Privacy
from appliance.store import Database
from appliance.store.base import StoreError
from appliance.store.calendar import BookingRow
from appliance.voice.dialogue import cli as calendar_cli
from appliance.voice.dialogue.caldav import (
    SUMMARY,
    CalDavError,
    CalDavLink,
    CalDavRemote,
    Remote,
    Span,
    SyncReport,
    busy_spans,
    event_ics,
    event_uid,
)
from appliance.voice.dialogue.calendar import (
    Booking,
    MemoryCalendar,
    StoreCalendar,
    choose,
    day_span,
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


# ---- the office calendar (CalDAV) next to the store ------------------------------------------
OFFICE = "http://192.168.10.20:5232/office/cal/"


def office_event(uid: str, start: datetime, end: datetime, **extra: str) -> str:
    lines = [
        "BEGIN:VCALENDAR", "VERSION:2.0", "PRODID:-//test//EN", "BEGIN:VEVENT", f"UID:{uid}",
        "DTSTAMP:20261101T000000Z",
        f"DTSTART:{start.astimezone(UTC):%Y%m%dT%H%M%SZ}",
        f"DTEND:{end.astimezone(UTC):%Y%m%dT%H%M%SZ}",
        *(f"{k.upper()}:{v}" for k, v in extra.items()),
        "SUMMARY:Staff meeting", "END:VEVENT", "END:VCALENDAR",
    ]  # fmt: skip
    return "\r\n".join(lines) + "\r\n"


class FakeOffice:
    """A CalDAV calendar in memory: events as iCalendar text, read with the real parser."""

    where = "http://192.168.10.20:5232"

    def __init__(self) -> None:
        self.events: dict[str, str] = {}
        self.fail = ""
        self.calls: list[str] = []

    def _call(self, what: str) -> None:
        self.calls.append(what)
        if self.fail:
            raise CalDavError(f"{self.where}: {what} failed: {self.fail}")

    async def busy(self, start: datetime, end: datetime) -> list[tuple[str, Span]]:
        self._call("busy")
        return [s for text in self.events.values() for s in busy_spans(text, PB.zone, start, end)]

    async def put(self, uid: str, ics: str) -> None:
        self._call("put")
        self.events[uid] = ics

    async def delete(self, uid: str) -> None:
        self._call("delete")
        self.events.pop(uid, None)

    def ours(self) -> dict[str, str]:
        return {u: t for u, t in self.events.items() if u.startswith("callvault-")}


def office_link(
    privacy: Privacy, office: Remote, *, retry_s: float = 60.0, url: str = OFFICE
) -> CalDavLink:
    return CalDavLink(
        "booking", CalDavConfig(url=url, retry_s=retry_s, timeout_s=2), privacy.db, office,
        zone=PB.zone, alerts=Alerts(privacy.db), clock=MONDAY.timestamp,
    )  # fmt: skip


async def open_alerts(privacy: Privacy) -> dict[str, str]:
    return {f"{a.kind}:{a.key}": a.message for a in await Alerts(privacy.db).list()}


def raw_dev(**caldav: Any) -> dict[str, Any]:
    import tomllib

    from tests.voice.dialogue.runner import DEV

    raw = tomllib.loads(DEV.read_text())
    raw["state_dir"] = "/tmp/callvault-caldav-test"
    line = next(ln for ln in raw["lines"] if ln["name"] == "booking")
    line["caldav"] = caldav
    return raw


def parse_dev(raw: dict[str, Any]) -> Config:
    from tests.voice.dialogue.runner import DEV

    return config.parse(raw, base_dir=DEV.parent, source=DEV)


def test_caldav_config_takes_a_lan_calendar_and_a_password_file() -> None:
    cfg = parse_dev(raw_dev(url="http://192.168.10.20:5232/office/cal", username="desk",
                            password_file="/etc/callvault/caldav.pass", timeout_s=2))  # fmt: skip
    line = cfg.line_by_name("booking")
    assert line is not None and line.caldav is not None
    assert line.caldav == CalDavConfig(
        url=OFFICE, username="desk", password_file=Path("/etc/callvault/caldav.pass"),
        timeout_s=2.0,
    )  # fmt: skip
    line = parse_dev(raw_dev(url="https://[fd00::5]/cal/")).line_by_name("booking")
    assert line is not None and line.caldav is not None
    others = [ln for ln in parse_dev(raw_dev(url=OFFICE)).lines if ln.name != "booking"]
    assert others and all(ln.caldav is None for ln in others)


@pytest.mark.parametrize(
    ("caldav", "where", "says"),
    [
        ({"url": "http://8.8.8.8/cal/"}, "url", "not a LAN address"),
        ({"url": "https://calendar.example.com/cal/"}, "url", "not a name"),
        ({"url": "ftp://192.168.1.2/cal/"}, "url", "not an http(s) URL"),
        ({"url": "http://desk:hunter22@192.168.1.2/cal/"}, "url", "no credentials in the URL"),
        ({"url": OFFICE, "password": "hunter22"}, "password", "keep the password out"),
        ({"url": OFFICE, "username": "desk"}, "password_file", "go together"),
        ({"url": OFFICE, "timeout_s": 60}, "timeout_s", "at most 30"),
        ({"url": OFFICE, "retry_s": 1}, "retry_s", "between 5 and 3600"),
        ({"url": OFFICE, "colour": "red"}, "colour", "unknown key"),
    ],
)
def test_caldav_config_refuses_what_could_leave_the_box_or_leak(
    caldav: dict[str, Any], where: str, says: str
) -> None:
    raw = raw_dev(**caldav)
    index = next(i for i, ln in enumerate(raw["lines"]) if ln["name"] == "booking")
    with pytest.raises(ConfigError, match=re.escape(says)) as err:
        parse_dev(raw)
    assert err.value.field == f"lines[{index}].caldav.{where}"


def test_caldav_needs_a_playbook_line() -> None:
    raw = raw_dev(url=OFFICE)
    raw["lines"][0]["caldav"] = {"url": OFFICE}
    with pytest.raises(ConfigError, match="needs the line's"):
        parse_dev(raw)


def test_busy_spans_read_what_an_office_calendar_holds() -> None:
    day0, day1 = at(TUESDAY, 0), at(TUESDAY, 23, 59)
    text = (
        "BEGIN:VCALENDAR\r\nVERSION:2.0\r\nPRODID:x\r\n"
        "BEGIN:VEVENT\r\nUID:allday\r\nDTSTAMP:20261101T000000Z\r\n"
        "DTSTART;VALUE=DATE:20261124\r\nEND:VEVENT\r\n"
        "BEGIN:VEVENT\r\nUID:floating\r\nDTSTAMP:20261101T000000Z\r\n"
        "DTSTART:20261124T120000\r\nDURATION:PT45M\r\nEND:VEVENT\r\n"
        "BEGIN:VEVENT\r\nUID:weekly\r\nDTSTAMP:20261101T000000Z\r\n"
        "DTSTART:20261110T080000Z\r\nDTEND:20261110T083000Z\r\nRRULE:FREQ=WEEKLY\r\nEND:VEVENT\r\n"
        "BEGIN:VEVENT\r\nUID:free\r\nDTSTAMP:20261101T000000Z\r\nTRANSP:TRANSPARENT\r\n"
        "DTSTART:20261124T130000Z\r\nDTEND:20261124T140000Z\r\nEND:VEVENT\r\n"
        "BEGIN:VEVENT\r\nUID:off\r\nDTSTAMP:20261101T000000Z\r\nSTATUS:CANCELLED\r\n"
        "DTSTART:20261124T130000Z\r\nDTEND:20261124T140000Z\r\nEND:VEVENT\r\n"
        "END:VCALENDAR\r\n"
    )
    found = dict(busy_spans(text, PB.zone, day0, day1))
    assert found == {
        "allday": (at(TUESDAY, 0), at(date(2026, 11, 25), 0)),
        "floating": (at(TUESDAY, 12), at(TUESDAY, 12, 45)),  # a floating time: the line's zone
        "weekly": (at(TUESDAY, 9), at(TUESDAY, 9, 30)),  # 08:00Z is 09:00 in Stockholm
    }
    with pytest.raises(ValueError, match="not iCalendar"):
        busy_spans("<html>Service unavailable</html>", PB.zone, day0, day1)


def test_the_office_event_names_no_one() -> None:
    row = BookingRow(12, "booking", at(TUESDAY, 9).timestamp(), at(TUESDAY, 9, 30).timestamp(),
                     "booked", "c1", 1.5, b"CVB1sealed", "3")  # fmt: skip
    uid = event_uid(row)
    assert uid == event_uid(row) and uid != event_uid(replace(row, id=13))
    text = event_ics(row, uid, stamp=MONDAY)
    assert f"UID:{uid}" in text and f"SUMMARY:{SUMMARY}" in text
    assert "DTSTART:20261124T080000Z" in text and "DTEND:20261124T083000Z" in text
    assert "reference booking 12" in text.replace("\r\n ", "") and "c1" not in text
    assert busy_spans(text, PB.zone, at(TUESDAY, 0), at(TUESDAY, 23)) == [
        (uid, (at(TUESDAY, 9), at(TUESDAY, 9, 30)))
    ]


async def test_office_events_are_not_offered_and_bookings_reach_the_office(
    privacy: Privacy,
) -> None:
    office = FakeOffice()
    office.events["meeting"] = office_event("meeting", at(TUESDAY, 9), at(TUESDAY, 10))
    cal = StoreCalendar(privacy.db, privacy, caldav={"booking": office_link(privacy, office)})
    free = free_slots(PB, TUESDAY, await cal.busy("booking", *day_span(PB, TUESDAY)), MONDAY)
    assert at(TUESDAY, 9) not in free and at(TUESDAY, 9, 30) not in free and at(TUESDAY, 10) in free

    engine = DialogueEngine(PB, line="booking", call_id=CALL, calendar=cal, clock=lambda: MONDAY)
    for said in ("I'd like to book next Tuesday at 10. This is Anna Berg.", "Yes."):
        await engine.hear(said)
    assert engine.out.booking_id is not None
    await cal.drain()
    [(uid, text)] = office.ours().items()
    assert "Anna" not in text and "Berg" not in text and f"booking {engine.out.booking_id}" in text
    assert await privacy.db.caldav_event_uid(engine.out.booking_id) == uid
    assert office.calls.count("put") == 1 and await open_alerts(privacy) == {}

    # Cancelling deletes the office event; the slot is free again in both.
    assert await cal.cancel("booking", TUESDAY, {"name": "anna berg"}) == engine.out.booking_id
    await cal.drain()
    assert office.ours() == {} and await privacy.db.caldav_event_uid(engine.out.booking_id) is None


async def test_an_office_event_put_in_meanwhile_takes_the_slot(privacy: Privacy) -> None:
    office = FakeOffice()
    cal = StoreCalendar(privacy.db, privacy, caldav={"booking": office_link(privacy, office)})
    office.events["walk-in"] = office_event("walk-in", at(TUESDAY, 11), at(TUESDAY, 11, 30))
    assert await cal.book("booking", at(TUESDAY, 11), at(TUESDAY, 11, 30), call_id="c1",
                          details={"name": "Anna"}, caller=None) is None  # fmt: skip
    assert await privacy.db.bookings(line="booking") == []


async def test_erasing_a_booking_deletes_its_office_event(privacy: Privacy) -> None:
    office = FakeOffice()
    cal = StoreCalendar(privacy.db, privacy, caldav={"booking": office_link(privacy, office)})
    bid = await cal.book("booking", at(TUESDAY, 8), at(TUESDAY, 8, 30), call_id="c1",
                         details={"name": "Anna"}, caller=None)  # fmt: skip
    assert bid is not None
    await cal.drain()
    assert len(office.ours()) == 1
    reports = await cal.erase_bookings([bid, 999])
    assert reports == {"booking": SyncReport(deleted=1)}
    assert office.ours() == {} and await privacy.db.booking(bid) is None


async def test_a_calendar_that_fails_leaves_the_store_booking_and_catches_up(
    privacy: Privacy,
) -> None:
    office = FakeOffice()
    link = office_link(privacy, office, retry_s=0.05)
    cal = StoreCalendar(privacy.db, privacy, caldav={"booking": link})
    early = await cal.book("booking", at(TUESDAY, 8), at(TUESDAY, 8, 30), call_id="c0",
                           details={"name": "Olof"}, caller=None)  # fmt: skip
    await cal.drain()
    assert early is not None and len(office.ours()) == 1
    office.fail = "ConnectionError: [Errno 111] Connection refused"
    link.cfg = replace(link.cfg, retry_s=60)  # keep it down while the call goes on

    # Mid-call: the free slots come from the store alone, no exception, one request tried.
    busy = await cal.busy("booking", *day_span(PB, TUESDAY))
    assert busy == [(at(TUESDAY, 8), at(TUESDAY, 8, 30))] and link.down
    alerts = await open_alerts(privacy)
    assert "Connection refused" in alerts["caldav_down:booking"]
    assert "0 booking(s) wait" in alerts["caldav_down:booking"]
    # Booking goes on from the store; while down the office calendar is not asked at all.
    tried = len(office.calls)
    bid = await cal.book("booking", at(TUESDAY, 14), at(TUESDAY, 14, 30), call_id="c1",
                         details={"name": "Anna Berg"}, caller=None)  # fmt: skip
    assert bid is not None and len(office.calls) == tried
    assert await cal.cancel("booking", TUESDAY, {"name": "olof"}) == early
    assert [r.id for r in await privacy.db.caldav_unwritten("booking", ends_after=0)] == [bid]
    assert await privacy.db.caldav_stale("booking") == [(early, event_uid(
        (await privacy.db.bookings(line="booking", include_cancelled=True))[0]))]  # fmt: skip
    assert await link.waiting() == 2

    # The office puts a meeting on 14:00 during the outage; then the calendar comes back.
    office.events["meeting"] = office_event("meeting", at(TUESDAY, 14), at(TUESDAY, 15))
    office.fail = ""
    link.cfg = replace(link.cfg, retry_s=0.05)
    link.down_until = 0.0
    report = await link.sync()
    assert report == SyncReport(written=1, deleted=1)
    assert len(office.ours()) == 1
    alerts = await open_alerts(privacy)
    assert "caldav_down:booking" not in alerts
    assert f"booking {bid} (2026-11-24 14:00)" in alerts[f"caldav_conflict:booking:{bid}"]
    assert "Anna" not in alerts[f"caldav_conflict:booking:{bid}"]
    await link.aclose()


async def test_the_retry_task_writes_what_waits_when_the_calendar_answers(
    privacy: Privacy,
) -> None:
    office = FakeOffice()
    office.fail = "Timeout"
    link = office_link(privacy, office, retry_s=0.05)
    cal = StoreCalendar(privacy.db, privacy, caldav={"booking": link})
    assert await cal.busy("booking", *day_span(PB, TUESDAY)) == []
    bid = await cal.book("booking", at(TUESDAY, 8), at(TUESDAY, 8, 30), call_id="c1",
                         details={"name": "Anna"}, caller=None)  # fmt: skip
    assert bid is not None and office.events == {}
    await asyncio.sleep(0.5)  # the retry task keeps trying (and failing)
    assert office.calls.count("delete") + office.calls.count("busy") >= 2
    office.fail = ""
    for _ in range(100):
        if office.ours():
            break
        await asyncio.sleep(0.02)
    assert len(office.ours()) == 1 and await link.waiting() == 0
    assert "caldav_down:booking" not in await open_alerts(privacy)
    await cal.aclose()


async def test_erasing_while_the_calendar_is_down_deletes_the_event_later(
    privacy: Privacy,
) -> None:
    office = FakeOffice()
    link = office_link(privacy, office, retry_s=60)
    cal = StoreCalendar(privacy.db, privacy, caldav={"booking": link})
    bid = await cal.book("booking", at(TUESDAY, 8), at(TUESDAY, 8, 30), call_id="c1",
                         details={"name": "Anna"}, caller=None)  # fmt: skip
    await cal.drain()
    assert bid is not None and len(office.ours()) == 1
    office.fail = "HTTP 500"
    reports = await cal.erase_bookings([bid])
    assert reports["booking"].waiting == 1 and "HTTP 500" in reports["booking"].error
    assert await privacy.db.booking(bid) is None and len(office.ours()) == 1
    office.fail = ""
    link.down_until = 0.0
    assert await cal.sync() == {"booking": SyncReport(deleted=1)}
    assert office.ours() == {}
    await cal.aclose()


# ---- the real adapter (the caldav library) against a server that answers garbage
class _Garbage(BaseHTTPRequestHandler):
    seen: ClassVar[list[tuple[str, str]]] = []
    """(method, path) of every request."""
    answer: ClassVar[tuple[int, dict[str, str], bytes]] = (207, {}, b"<html>oops</html>")

    def _reply(self) -> None:
        length = int(self.headers.get("Content-Length") or 0)
        self.rfile.read(length)
        self.seen.append((self.command, self.path))
        status, headers, body = self.answer
        self.send_response(status)
        for k, v in {"Content-Type": "text/xml", **headers}.items():
            self.send_header(k, v)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    do_REPORT = do_PUT = do_DELETE = do_PROPFIND = do_GET = _reply

    def log_message(self, format: str, *args: Any) -> None:
        pass


@pytest.fixture
def garbage_server() -> Iterator[str]:
    server = ThreadingHTTPServer(("127.0.0.1", 0), _Garbage)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    _Garbage.seen.clear()
    yield f"http://127.0.0.1:{server.server_address[1]}/office/cal/"
    server.shutdown()
    server.server_close()


async def test_the_adapter_turns_garbage_into_one_clear_error(
    garbage_server: str, tmp_path: Path
) -> None:
    secret = tmp_path / "caldav.pass"
    secret.write_text("s3cret-desk-pass\n")
    secret.chmod(0o600)
    remote = CalDavRemote(
        CalDavConfig(url=garbage_server, username="desk", password_file=secret, timeout_s=2),
        PB.zone, line="booking",
    )  # fmt: skip
    with pytest.raises(CalDavError, match=r"127\.0\.0\.1:\d+: reading busy times failed"):
        await remote.busy(at(TUESDAY, 0), at(TUESDAY, 23))
    _Garbage.answer = (500, {}, b"")
    try:
        with pytest.raises(CalDavError, match="writing an event answered HTTP 500"):
            await remote.put("callvault-x", "BEGIN:VCALENDAR\r\nEND:VCALENDAR\r\n")
        # A redirect is never followed (it could lead off the premises).
        _Garbage.answer = (302, {"Location": "http://8.8.8.8/steal"}, b"")
        with pytest.raises(CalDavError, match="deleting an event"):
            await remote.delete("callvault-x")
    finally:
        _Garbage.answer = (207, {}, b"<html>oops</html>")
    # (the library retries a failed request once as a GET, to the same address)
    assert [m for m, _ in _Garbage.seen][:3] == ["REPORT", "PUT", "DELETE"]
    assert all(path.startswith("/office/cal/") for _, path in _Garbage.seen)


async def test_a_missing_password_file_is_a_calendar_failure(
    garbage_server: str, tmp_path: Path
) -> None:
    remote = CalDavRemote(
        CalDavConfig(url=garbage_server, username="desk", password_file=tmp_path / "nope"),
        PB.zone, line="booking",
    )  # fmt: skip
    with pytest.raises(CalDavError, match="cannot read the CalDAV password file"):
        await remote.busy(at(TUESDAY, 0), at(TUESDAY, 23))
    assert _Garbage.seen == []


async def test_garbage_mid_call_books_from_the_store(privacy: Privacy, garbage_server: str) -> None:
    remote = CalDavRemote(CalDavConfig(url=garbage_server, timeout_s=2), PB.zone, line="booking")
    link = office_link(privacy, remote, url=garbage_server)
    cal = StoreCalendar(privacy.db, privacy, caldav={"booking": link})
    engine = DialogueEngine(PB, line="booking", call_id=CALL, calendar=cal, clock=lambda: MONDAY)
    for said in ("I'd like to book next Tuesday at 10. This is Anna Berg.", "Yes."):
        await engine.hear(said)
    assert engine.out.status == "done" and engine.out.booking_id is not None
    assert await link.waiting() == 1
    assert "reading busy times failed" in (await open_alerts(privacy))["caldav_down:booking"]
    await cal.aclose()


async def test_the_serving_loop_keeps_syncing_through_failures() -> None:
    """keep_in_step (run by `serve`): a sync that raises is logged and the next round runs."""
    from appliance.voice.dialogue.caldav import SyncReport, keep_in_step

    class Flaky:
        def __init__(self) -> None:
            self.rounds = 0

        async def sync(self) -> dict[str, SyncReport]:
            self.rounds += 1
            if self.rounds == 1:
                raise OSError("the store is on a full disk")
            return {"booking": SyncReport(deleted=1)}

    flaky = Flaky()
    task = asyncio.ensure_future(keep_in_step(flaky, 0.01))
    try:
        async with asyncio.timeout(5):
            while flaky.rounds < 3:  # noqa: ASYNC110
                await asyncio.sleep(0.01)
    finally:
        task.cancel()
    assert flaky.rounds >= 3


def test_calendar_sync_without_office_calendars_says_so(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    from appliance.cli import main

    cfg = tmp_path / "cv.toml"
    cfg.write_text('state_dir = "state"\n[asterisk]\nami_secret = "x"\n')
    assert main(["--config", str(cfg), "calendar", "sync"]) == 0
    assert "nothing to sync" in capsys.readouterr().out
    assert main(["--config", str(cfg), "calendar", "sync", "--line", "booking"]) != 0
    assert "has no office calendar" in capsys.readouterr().err
