"""The office calendar through a real CalDAV server: Debian's radicale on 127.0.0.1 (a free
port, a temporary store, htpasswd auth with the password in a 0600 file as the config names
it). Its busy events are not offered, the engine's booking lands there as an event naming no
one, erasing the booking deletes it, and while radicale is stopped the agent books from the
store and the event is written by the retry once it is back.

Needs no Asterisk: no session fixture of the conftest is used. Radicale missing fails (it is
in scripts/install's apt list), it never skips.
"""

from __future__ import annotations

import argparse
import asyncio
import secrets
import shutil
import socket
import subprocess
import time
import tomllib
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass
from datetime import UTC, date, datetime, timedelta
from datetime import time as dtime
from pathlib import Path
from typing import Any

import pytest
import pytest_asyncio
from rich.console import Console

from appliance import config
from appliance.config import Config
from appliance.errors import CallvaultError
from appliance.ops.alerts import Alerts
from appliance.privacy import Privacy
from appliance.store import Database
from appliance.voice.dialogue.caldav import SUMMARY
from appliance.voice.dialogue.calendar import StoreCalendar, day_span, free_slots
from appliance.voice.dialogue.cli import cmd_sync
from appliance.voice.dialogue.engine import DialogueEngine
from appliance.voice.dialogue.playbook import PlaybookConfig

pytestmark = pytest.mark.asyncio(loop_scope="session")

REPO = Path(__file__).resolve().parents[2]
DEV = REPO / "config" / "callvault.dev.toml"
USER = "desk"


@dataclass
class Radicale:
    root: Path
    port: int
    password: str
    proc: subprocess.Popen[bytes] | None = None

    @property
    def base(self) -> str:
        return f"http://127.0.0.1:{self.port}/"

    @property
    def calendar_url(self) -> str:
        return f"{self.base}{USER}/office/"

    def start(self) -> None:
        exe = shutil.which("radicale")
        if exe is None:
            pytest.fail("Debian's radicale is missing: apt-get install radicale (scripts/install)")
        log = (self.root / "radicale.log").open("ab")
        self.proc = subprocess.Popen(
            [exe, "--config", str(self.root / "config")], stdout=log, stderr=log
        )
        deadline = time.monotonic() + 15
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                pytest.fail(f"radicale exited: {(self.root / 'radicale.log').read_text()}")
            try:
                with socket.create_connection(("127.0.0.1", self.port), timeout=0.2):
                    return
            except OSError:
                time.sleep(0.05)
        pytest.fail(f"radicale did not listen: {(self.root / 'radicale.log').read_text()}")

    def stop(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.terminate()
            self.proc.wait(timeout=10)
        self.proc = None

    def client(self) -> Any:
        import caldav

        return caldav.DAVClient(url=self.base, username=USER, password=self.password)

    def calendar(self) -> Any:
        return self.client().calendar(url=self.calendar_url)


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@pytest.fixture
def radicale(tmp_path: Path) -> Iterator[Radicale]:
    root = tmp_path / "radicale"
    root.mkdir()
    server = Radicale(root, _free_port(), secrets.token_urlsafe(12))
    (root / "users").write_text(f"{USER}:{server.password}\n")
    (root / "config").write_text(
        f"[server]\nhosts = 127.0.0.1:{server.port}\n"
        f"[auth]\ntype = htpasswd\nhtpasswd_filename = {root / 'users'}\n"
        "htpasswd_encryption = plain\ndelay = 0\n"
        f"[storage]\nfilesystem_folder = {root / 'collections'}\n"
        "[rights]\ntype = owner_only\n[web]\ntype = none\n[logging]\nlevel = warning\n"
    )
    server.start()
    try:
        server.client().principal().make_calendar(name="Office", cal_id="office")
        yield server
    finally:
        server.stop()


def _dates(zone: Any) -> tuple[datetime, date]:
    """A Monday 10:00 still ahead (the engine's "now") and the Tuesday after it: the booking
    lies in the future of the real clock too, so it is one the office calendar must get."""
    today = datetime.now(zone).date()
    monday = today + timedelta(days=(7 - today.weekday()) or 7)
    return datetime.combine(monday, dtime(10), zone), monday + timedelta(days=1)


@pytest_asyncio.fixture(loop_scope="session")
async def office(tmp_path: Path, radicale: Radicale) -> AsyncIterator[tuple[StoreCalendar, Config]]:
    secret = tmp_path / "caldav.pass"
    secret.write_text(radicale.password + "\n")
    secret.chmod(0o600)
    raw = tomllib.loads(DEV.read_text())
    raw["state_dir"] = str(tmp_path / "state")
    line = next(ln for ln in raw["lines"] if ln["name"] == "booking")
    line["caldav"] = {
        "url": radicale.calendar_url, "username": USER, "password_file": str(secret),
        "timeout_s": 2, "retry_s": 5,
    }  # fmt: skip
    cfg = config.parse(raw, base_dir=DEV.parent, source=DEV)
    async with Database(cfg.database) as db:
        cal = StoreCalendar(db, Privacy(cfg, db))
        try:
            yield cal, cfg
        finally:
            await cal.aclose()


def _playbook(cfg: Config) -> PlaybookConfig:
    line = cfg.line_by_name("booking")
    assert line is not None and line.playbook is not None
    return line.playbook


def _office_event(calendar: Any, start: datetime, end: datetime) -> None:
    calendar.save_event(
        dtstart=start.astimezone(UTC), dtend=end.astimezone(UTC), summary="Staff meeting",
        uid="staff-meeting",
    )  # fmt: skip


def _events(calendar: Any, day: date, zone: Any) -> dict[str, Any]:
    start = datetime.combine(day, dtime(0), zone)
    found = calendar.search(start=start, end=start + timedelta(days=1), event=True)
    return {str(e.icalendar_component["UID"]): e.icalendar_component for e in found}


async def test_radicale_busy_times_bookings_and_erasure(
    radicale: Radicale, office: tuple[StoreCalendar, Config]
) -> None:
    cal, cfg = office
    pb = _playbook(cfg)
    now, tuesday = _dates(pb.zone)

    def at(hh: int, mm: int = 0) -> datetime:
        return datetime.combine(tuesday, dtime(hh, mm), pb.zone)

    await asyncio.to_thread(_office_event, radicale.calendar(), at(9), at(10))

    # The office's meeting is not offered; reading the calendar is quick.
    started = time.perf_counter()
    busy = await cal.busy("booking", *day_span(pb, tuesday))
    read_ms = (time.perf_counter() - started) * 1000
    free = free_slots(pb, tuesday, busy, now)
    assert at(9) not in free and at(9, 30) not in free and at(8, 30) in free and at(10) in free
    assert read_ms < 1000, read_ms
    print(f"caldav busy read through radicale: {read_ms:.1f} ms")

    # A caller asking for 9 is offered another time; one asking for 10 gets it.
    asks_9 = DialogueEngine(pb, line="booking", call_id="c-9", calendar=cal, clock=lambda: now)
    await asks_9.hear("I'd like to book next Tuesday at 9. This is Olof Berg.")
    assert asks_9.proposal is not None and asks_9.proposal not in (at(9), at(9, 30))
    engine = DialogueEngine(pb, line="booking", call_id="c-10", calendar=cal, clock=lambda: now)
    for said in ("I'd like to book next Tuesday at 10. This is Anna Berg.", "Yes."):
        await engine.hear(said)
    bid = engine.out.booking_id
    assert engine.out.status == "done" and bid is not None
    await cal.drain()

    # The event is in radicale: the booked time, a reference, no one's name.
    uid = await cal.db.caldav_event_uid(bid)
    assert uid is not None
    events = await asyncio.to_thread(_events, radicale.calendar(), tuesday, pb.zone)
    assert set(events) == {"staff-meeting", uid}
    ev = events[uid]
    assert str(ev["SUMMARY"]) == SUMMARY
    assert ev["DTSTART"].dt == at(10) and ev["DTEND"].dt == at(10, 30)
    assert "Anna" not in ev.to_ical().decode() and f"booking {bid}" in str(ev["DESCRIPTION"])

    # Erasing the booking deletes its event.
    reports = await cal.erase_bookings([bid])
    assert reports["booking"].deleted == 1 and reports["booking"].waiting == 0
    events = await asyncio.to_thread(_events, radicale.calendar(), tuesday, pb.zone)
    assert set(events) == {"staff-meeting"}
    assert await cal.db.booking(bid) is None and await cal.db.caldav_event_uid(bid) is None


async def test_radicale_down_books_from_the_store_and_catches_up(
    radicale: Radicale, office: tuple[StoreCalendar, Config]
) -> None:
    cal, cfg = office
    pb = _playbook(cfg)
    now, tuesday = _dates(pb.zone)
    start = datetime.combine(tuesday, dtime(11), pb.zone)
    radicale.stop()

    engine = DialogueEngine(pb, line="booking", call_id="c-down", calendar=cal, clock=lambda: now)
    started = time.perf_counter()
    for said in ("I'd like to book next Tuesday at 11. This is Anna Berg.", "Yes."):
        await engine.hear(said)
    took = time.perf_counter() - started
    bid = engine.out.booking_id
    assert engine.out.status == "done" and bid is not None and took < 2, took
    link = cal.links["booking"]
    await link.drain()
    assert link.down and await link.waiting() == 1
    [alert] = [a for a in await Alerts(cal.db).list() if a.kind == "caldav_down"]
    assert alert.key == "booking" and "1 booking(s) wait" in alert.message

    radicale.start()
    for _ in range(100):  # 20 s; retry_s is 5
        if await cal.db.caldav_event_uid(bid) is not None:
            break
        await asyncio.sleep(0.2)
    uid = await cal.db.caldav_event_uid(bid)
    assert uid is not None, "the retry did not write the booking"
    events = await asyncio.to_thread(_events, radicale.calendar(), tuesday, pb.zone)
    assert events[uid]["DTSTART"].dt == start
    assert not [a for a in await Alerts(cal.db).list() if a.kind == "caldav_down"]


async def test_calendar_sync_command_says_what_waits_and_writes_it(
    radicale: Radicale, office: tuple[StoreCalendar, Config]
) -> None:
    """`callvault calendar sync`: an installer or admin brings the office calendar in step now,
    and sees what still waits (exit 1) while the calendar does not answer."""
    cal, cfg = office
    pb = _playbook(cfg)
    now, tuesday = _dates(pb.zone)
    radicale.stop()
    engine = DialogueEngine(pb, line="booking", call_id="c-sync", calendar=cal, clock=lambda: now)
    for said in ("I'd like to book next Tuesday at 2 pm. This is Anna Berg.", "Yes."):
        await engine.hear(said)
    bid = engine.out.booking_id
    assert engine.out.status == "done" and bid is not None
    await cal.aclose()  # the serving process's retries stop: only the command writes now

    args = argparse.Namespace(line=None)
    privacy = Privacy(cfg, cal.db)
    down = Console(record=True, width=200)
    assert await cmd_sync(args, cfg, privacy, down) == 1
    text = down.export_text()
    assert "booking" in text and radicale.calendar_url.split("/")[2] in text, text
    assert await cal.db.caldav_event_uid(bid) is None

    radicale.start()
    up = Console(record=True, width=200)
    assert await cmd_sync(args, cfg, privacy, up) == 0, up.export_text()
    uid = await cal.db.caldav_event_uid(bid)
    assert uid is not None
    events = await asyncio.to_thread(_events, radicale.calendar(), tuesday, pb.zone)
    assert events[uid]["DTSTART"].dt == datetime.combine(tuesday, dtime(14), pb.zone)
    assert str(events[uid]["SUMMARY"]) == SUMMARY

    with pytest.raises(CallvaultError, match="has no office calendar"):
        await cmd_sync(argparse.Namespace(line="nope"), cfg, privacy, Console())
