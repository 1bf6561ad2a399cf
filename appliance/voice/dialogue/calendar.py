"""Appointments: free slots (opening hours minus bookings), booking, iCalendar export.

`Calendar` is what the engine books through; `StoreCalendar` keeps bookings in the appliance
database with the caller's details sealed under the caller's subject key (erasing the caller
shreds them), `MemoryCalendar` keeps them in memory (the scripted-caller runner).

A line with `[lines.caldav]` also has an office calendar on the LAN (appliance.voice.dialogue.
caldav): its busy events are not offered, and each booking is written there as an event that
names no one. The store stays the record: when the office calendar fails, the store's
calendar alone decides and the event follows when it answers again.
"""

from __future__ import annotations

import json
import os
import time as _time
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, time, timedelta
from typing import TYPE_CHECKING, Any, Protocol

from appliance.voice.dialogue.dates import PARTS, When
from appliance.voice.dialogue.playbook import WEEKDAYS, PlaybookConfig

if TYPE_CHECKING:
    from appliance.config import Config
    from appliance.privacy import Actor, Privacy
    from appliance.store import Database
    from appliance.store.calendar import BookingRow
    from appliance.voice.dialogue.caldav import CalDavLink, SyncReport

FORMAT = b"CVB1"
SALT_BYTES = 32


@dataclass(frozen=True)
class Booking:
    id: int
    line: str
    start: datetime
    end: datetime
    call_id: str
    details: dict[str, Any]
    """name, phone, reason (as collected); {} when the caller was erased."""
    status: str = "booked"


class Calendar(Protocol):
    async def busy(
        self, line: str, start: datetime, end: datetime
    ) -> list[tuple[datetime, datetime]]: ...

    async def book(
        self,
        line: str,
        start: datetime,
        end: datetime,
        *,
        call_id: str,
        details: dict[str, Any],
        caller: str | None,
    ) -> int | None:
        """The booking's id, or None when the slot was taken meanwhile."""
        ...  # fmt: skip

    async def cancel(self, line: str, day: date, details: dict[str, Any]) -> int | None:
        """Cancel the caller's booking on `day` (matched by name or phone); its id or None."""
        ...


def day_span(playbook: PlaybookConfig, day: date) -> tuple[datetime, datetime]:
    zone = playbook.zone
    start = datetime.combine(day, time(0), zone)
    return start, start + timedelta(days=1)


def free_slots(
    playbook: PlaybookConfig,
    day: date,
    busy: Iterable[tuple[datetime, datetime]],
    now: datetime,
) -> list[datetime]:
    """Slot starts on `day` (aware, line zone) within opening hours, not booked, not past."""
    if day < now.date() or day > now.date() + timedelta(days=playbook.horizon_days):
        return []
    spans = playbook.hours.get(WEEKDAYS[day.weekday()], ())
    step = timedelta(minutes=playbook.slot_minutes)
    taken = list(busy)
    out: list[datetime] = []
    for open_m, close_m in spans:
        t = datetime.combine(day, time(0), playbook.zone) + timedelta(minutes=open_m)
        close = datetime.combine(day, time(0), playbook.zone) + timedelta(minutes=close_m)
        while t + step <= close:
            if t > now and not any(s < t + step and e > t for s, e in taken):
                out.append(t)
            t += step
    return out


def is_open(playbook: PlaybookConfig, day: date) -> bool:
    return bool(playbook.hours.get(WEEKDAYS[day.weekday()]))


def choose(when: When, free: Sequence[datetime]) -> tuple[datetime | None, bool]:
    """(the slot for what the caller asked, exact): the asked time if free; else the nearest
    free slot that day (exact False: the engine offers it); a part of the day picks its first
    free slot."""
    if not free:
        return None, False
    if when.at is not None:
        for slot in free:
            if slot.time() == when.at:
                return slot, True
        asked = when.at.hour * 60 + when.at.minute
        nearest = min(free, key=lambda s: abs(s.hour * 60 + s.minute - asked))
        return nearest, False
    if when.part is not None:
        lo, hi = PARTS[when.part]
        for slot in free:
            if lo <= slot.hour * 60 + slot.minute < hi:
                return slot, True
        return free[0], False
    return free[0], False


@dataclass
class MemoryCalendar:
    """Bookings in memory (tests, the text runner of the scripted callers)."""

    bookings: list[Booking] = field(default_factory=list)

    async def busy(
        self, line: str, start: datetime, end: datetime
    ) -> list[tuple[datetime, datetime]]:
        return [
            (b.start, b.end)
            for b in self.bookings
            if b.line == line and b.status == "booked" and b.start < end and b.end > start
        ]

    async def book(
        self, line: str, start: datetime, end: datetime, *, call_id: str, details: dict[str, Any],
        caller: str | None,
    ) -> int | None:  # fmt: skip
        if await self.busy(line, start, end):
            return None
        booking = Booking(len(self.bookings) + 1, line, start, end, call_id, dict(details))
        self.bookings.append(booking)
        return booking.id

    async def cancel(self, line: str, day: date, details: dict[str, Any]) -> int | None:
        for i, b in enumerate(self.bookings):
            if (
                b.line == line
                and b.status == "booked"
                and b.start.date() == day
                and _same(b.details, details)
            ):
                self.bookings[i] = Booking(b.id, b.line, b.start, b.end, b.call_id, b.details,
                                           "cancelled")  # fmt: skip
                return b.id
        return None


def _same(stored: dict[str, Any], asked: dict[str, Any]) -> bool:
    for key in ("phone", "name"):
        a, b = stored.get(key), asked.get(key)
        if a and b and str(a).casefold() == str(b).casefold():
            return True
    return False


class StoreCalendar:
    """Bookings in the appliance database; details sealed under the caller's subject key.
    Lines with an office calendar (CalDAV) read its busy times and get their bookings."""

    def __init__(
        self, db: Database, privacy: Privacy, *, caldav: Mapping[str, CalDavLink] | None = None
    ) -> None:
        self.db = db
        self.privacy = privacy
        self._links = None if caldav is None else dict(caldav)

    @property
    def links(self) -> dict[str, CalDavLink]:
        """The office calendars by line (made from the config on first use; no connection)."""
        if self._links is None:
            from appliance.voice.dialogue.caldav import links_for

            self._links = links_for(self.privacy.cfg, self.db)
        return self._links

    async def busy(
        self, line: str, start: datetime, end: datetime
    ) -> list[tuple[datetime, datetime]]:
        rows = await self.db.bookings(line=line, start=start.timestamp(), end=end.timestamp())
        zone = start.tzinfo
        spans = [
            (datetime.fromtimestamp(r.starts_at, zone), datetime.fromtimestamp(r.ends_at, zone))
            for r in rows
        ]
        link = self.links.get(line)
        if link is not None:  # None from it: the office calendar cannot say; the store decides
            spans += [(s.astimezone(zone), e.astimezone(zone)) for s, e in
                      await link.busy(start, end) or []]  # fmt: skip
        return spans

    async def _subjects(
        self, call_id: str, details: dict[str, Any], caller: str | None
    ) -> list[int]:
        from appliance.privacy import Identifier, IdentifierError, identifiers

        region = self.privacy.cfg.privacy.default_region
        found: list[int] = []
        for raw in (details.get("phone"), caller):
            if not raw:
                continue
            try:
                ident = identifiers.phone(str(raw), region)
            except IdentifierError:
                continue
            found.append(await self.privacy.subjects.ensure(ident))
        if details.get("name"):
            name = " ".join(str(details["name"]).split()).casefold()
            found.append(await self.privacy.subjects.ensure(Identifier("other", f"name:{name}")))
        if not found:  # nobody named: the call's own subject, so erasing the call shreds it
            found.append(await self.privacy.subjects.ensure(Identifier("call", call_id)))
        return list(dict.fromkeys(found))

    async def seal(self, context: str, payload: dict[str, Any], subjects: Sequence[int]) -> bytes:
        from appliance.privacy import crypto

        salt = os.urandom(SALT_BYTES)
        key = await self.privacy.keyring.file_key(subjects, salt, context)
        body = json.dumps(payload, ensure_ascii=False, separators=(",", ":")).encode()
        return FORMAT + salt + crypto.seal(key, body, context.encode())

    async def open(self, context: str, blob: bytes, key_subjects: str, what: str) -> dict[str, Any]:
        """The sealed payload, or {} when a subject it was sealed under was erased."""
        from appliance.privacy import crypto

        if blob[: len(FORMAT)] != FORMAT:
            raise ValueError(f"{what}: unknown storage format")
        salt = blob[len(FORMAT) : len(FORMAT) + SALT_BYTES]
        subjects = [int(s) for s in key_subjects.split(",") if s]
        try:
            key = await self.privacy.keyring.file_key(subjects, salt, context)
        except Exception:  # noqa: BLE001 - a shredded subject key: the details are gone by design
            return {}
        return dict(
            json.loads(
                crypto.open_sealed(key, blob[len(FORMAT) + SALT_BYTES :], context.encode(), what)
            )
        )

    async def book(
        self, line: str, start: datetime, end: datetime, *, call_id: str, details: dict[str, Any],
        caller: str | None,
    ) -> int | None:  # fmt: skip
        from appliance.store.calendar import SlotTakenError

        link = self.links.get(line)
        # An office event put in since the times were offered takes the slot: the engine
        # offers another. Unknown (the office calendar failing): the store decides.
        free = None if link is None else await link.is_free(start, end)
        if free is False:
            return None
        subjects = await self._subjects(call_id, details, caller)
        context = f"booking:{line}:{start.timestamp():.0f}"
        blob = await self.seal(context, {"call_id": call_id, **details}, subjects)
        try:
            booking_id = await self.db.add_booking(
                line=line,
                starts_at=start.timestamp(),
                ends_at=end.timestamp(),
                call_id=call_id,
                details_enc=blob,
                key_subjects=subjects,
            )
        except SlotTakenError:
            return None
        if link is not None:
            link.changed(checked=booking_id if free else None)
        return booking_id

    async def read(self, row: BookingRow, zone: Any) -> Booking:
        details = await self.open(
            f"booking:{row.line}:{row.starts_at:.0f}", row.details_enc, row.key_subjects,
            f"booking {row.id}",
        )  # fmt: skip
        details.pop("call_id", None)
        return Booking(
            id=row.id,
            line=row.line,
            start=datetime.fromtimestamp(row.starts_at, zone),
            end=datetime.fromtimestamp(row.ends_at, zone),
            call_id=row.call_id,
            details=details,
            status=row.status,
        )

    async def cancel(self, line: str, day: date, details: dict[str, Any]) -> int | None:
        start = datetime.combine(day, time(0), UTC) - timedelta(hours=14)
        end = start + timedelta(hours=24 + 28)
        for row in await self.db.bookings(line=line, start=start.timestamp(), end=end.timestamp()):
            booking = await self.read(row, UTC)
            if _same(booking.details, details) and await self.db.cancel_booking(row.id):
                link = self.links.get(line)
                if link is not None:
                    link.changed()  # its event is deleted from the office calendar
                return row.id
        return None

    async def erase_bookings(self, booking_ids: Iterable[int]) -> dict[str, SyncReport]:
        """Erase bookings (retention, erasure): the rows go, and their office calendar events
        are deleted now or, if the calendar fails, as soon as it answers (the report per line
        says which: `waiting` > 0)."""
        lines: set[str] = set()
        for booking_id in booking_ids:
            row = await self.db.booking(booking_id)
            if row is not None and await self.db.delete_booking(booking_id):
                lines.add(row.line)
        return {ln: await self.links[ln].erased() for ln in sorted(lines) if ln in self.links}

    async def sync(self) -> dict[str, SyncReport]:
        """Bring every office calendar in step with the store now (`callvault` commands)."""
        return {line: await link.sync() for line, link in self.links.items()}

    async def drain(self) -> None:
        """Wait for office calendar writes started in the background."""
        for link in (self._links or {}).values():
            await link.drain()

    async def aclose(self) -> None:
        """Stop the office calendars' background work (what waits stays in the store)."""
        for link in (self._links or {}).values():
            await link.aclose()

    async def save_outcome(
        self, *, call_id: str, line: str, doc: dict[str, Any], caller: str | None
    ) -> None:
        """What the dialogue collected on the call (sealed like a booking's details)."""
        from appliance.store.calendar import OutcomeRow

        slots = dict(doc.get("slots") or {})
        subjects = await self._subjects(call_id, slots, caller)
        context = f"dialogue:{call_id}"
        await self.db.save_dialogue_outcome(
            OutcomeRow(
                call_id=call_id,
                line=line,
                task=str(doc.get("task") or ""),
                status=str(doc.get("status") or "open"),
                booking_id=doc.get("booking_id"),
                turns=int(doc.get("turns") or 0),
                created_at=_time.time(),
                slots_enc=await self.seal(context, doc, subjects),
                key_subjects=",".join(map(str, subjects)),
            )
        )

    async def outcome(self, call_id: str) -> dict[str, Any] | None:
        """The call's dialogue outcome (`Outcome.doc()`), or None when no playbook ran."""
        row = await self.db.dialogue_outcome(call_id)
        if row is None:
            return None
        doc = await self.open(
            f"dialogue:{call_id}", row.slots_enc, row.key_subjects, f"dialogue of call {call_id}"
        )
        return doc or {"task": row.task, "status": row.status, "slots": {}, "erased": True}


async def call_bookings(
    cfg: Config, db: Database, privacy: Privacy, call_id: str, *, actor: Actor, purpose: str
) -> list[Booking]:
    """The bookings a call made, for its detail page. Without a purpose only the times are
    shown (no personal data); with one, who booked is opened and the read audited."""
    from datetime import UTC as _UTC

    out = []
    cal = StoreCalendar(db, privacy)
    for row in await db.bookings_for_call(call_id):
        line = cfg.line_by_name(row.line)
        zone: Any = line.playbook.zone if line and line.playbook else _UTC
        if purpose:
            await privacy.audit.record(actor, "calendar.view", f"booking:{row.id}", purpose)
            out.append(await cal.read(row, zone))
        else:
            start = datetime.fromtimestamp(row.starts_at, zone)
            end = datetime.fromtimestamp(row.ends_at, zone)
            out.append(Booking(row.id, row.line, start, end, row.call_id, {}, row.status))
    return out


# ---- iCalendar (RFC 5545), written by hand: a dozen lines do not need a dependency
def _esc(text: str) -> str:
    return text.replace("\\", "\\\\").replace(";", "\\;").replace(",", "\\,").replace("\n", "\\n")


def _fold(line: str) -> list[str]:
    """Lines longer than 75 octets continue on the next line after a space."""
    out, raw = [], line.encode()
    while len(raw) > 75:
        cut = 75
        while cut > 0 and (raw[cut] & 0xC0) == 0x80:  # never inside a UTF-8 sequence
            cut -= 1
        out.append(raw[:cut].decode())
        raw = b" " + raw[cut:]
    out.append(raw.decode())
    return out


def _stamp(dt: datetime) -> str:
    return dt.astimezone(UTC).strftime("%Y%m%dT%H%M%SZ")


def to_ical(bookings: Iterable[Booking], *, business: str, host: str = "callvault.invalid") -> str:
    lines = [
        "BEGIN:VCALENDAR",
        "VERSION:2.0",
        "PRODID:-//Callvault//Appointments//EN",
        "CALSCALE:GREGORIAN",
        f"X-WR-CALNAME:{_esc(business)}",
    ]
    now = _stamp(datetime.fromtimestamp(_time.time(), UTC))
    for b in bookings:
        who = str(b.details.get("name") or "caller")
        summary = f"Appointment: {who}"
        desc = "; ".join(f"{k}: {b.details[k]}" for k in ("phone", "reason") if b.details.get(k))
        lines += [
            "BEGIN:VEVENT",
            f"UID:booking-{b.id}-{b.line}@{host}",
            f"DTSTAMP:{now}",
            f"DTSTART:{_stamp(b.start)}",
            f"DTEND:{_stamp(b.end)}",
            f"SUMMARY:{_esc(summary)}",
            *([f"DESCRIPTION:{_esc(desc)}"] if desc else []),
            f"STATUS:{'CANCELLED' if b.status == 'cancelled' else 'CONFIRMED'}",
            "END:VEVENT",
        ]
    lines.append("END:VCALENDAR")
    return "".join(part + "\r\n" for line in lines for part in _fold(line))
