"""SQL for appointments and dialogue outcomes (issue 10).

A booking is checked against the line's other bookings inside its write transaction, so two
calls racing for the same slot cannot both get it. Sealed columns are opaque here: sealing and
opening is appliance.voice.dialogue.calendar's job.
"""

from __future__ import annotations

import time
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from appliance.store.base import StoreBase, StoreError


class SlotTakenError(StoreError):
    """The span overlaps a booking on the same line."""


@dataclass(frozen=True)
class BookingRow:
    id: int
    line: str
    starts_at: float
    ends_at: float
    status: str
    call_id: str
    created_at: float
    details_enc: bytes
    key_subjects: str


@dataclass(frozen=True)
class OutcomeRow:
    call_id: str
    line: str
    task: str
    status: str
    booking_id: int | None
    turns: int
    created_at: float
    slots_enc: bytes
    key_subjects: str


_BOOKING_COLS = (
    "id, line, starts_at, ends_at, status, call_id, created_at, details_enc, key_subjects"
)


def _booking(row: Sequence[Any]) -> BookingRow:
    return BookingRow(
        id=int(row[0]),
        line=str(row[1]),
        starts_at=float(row[2]),
        ends_at=float(row[3]),
        status=str(row[4]),
        call_id=str(row[5]),
        created_at=float(row[6]),
        details_enc=bytes(row[7]),
        key_subjects=str(row[8]),
    )


class CalendarSql(StoreBase):
    async def add_booking(
        self,
        *,
        line: str,
        starts_at: float,
        ends_at: float,
        call_id: str,
        details_enc: bytes,
        key_subjects: Sequence[int],
    ) -> int:
        """A new booking's id; SlotTakenError if the span overlaps a booked one on the line."""
        if ends_at <= starts_at:
            raise StoreError(f"booking on line {line}: it ends before it starts")
        if not key_subjects:
            raise StoreError(f"booking on line {line}: no subject keys to seal under")

        async def body() -> int:
            async with self.db.execute(
                "SELECT 1 FROM bookings WHERE line = ? AND status = 'booked'"
                " AND starts_at < ? AND ends_at > ?",
                (line, ends_at, starts_at),
            ) as cur:
                if await cur.fetchone() is not None:
                    raise SlotTakenError(f"line {line}: that time is already booked")
            cur2 = await self.db.execute(
                "INSERT INTO bookings (line, starts_at, ends_at, call_id, created_at,"
                " details_enc, key_subjects) VALUES (?, ?, ?, ?, ?, ?, ?)",
                (
                    line, starts_at, ends_at, call_id, time.time(), details_enc,
                    ",".join(map(str, key_subjects)),
                ),
            )  # fmt: skip
            if cur2.lastrowid is None:
                raise StoreError(f"booking on line {line} was not stored")
            return int(cur2.lastrowid)

        return int(await self._tx(body))

    async def bookings(
        self,
        *,
        line: str | None = None,
        start: float | None = None,
        end: float | None = None,
        include_cancelled: bool = False,
    ) -> list[BookingRow]:
        """Bookings overlapping [start, end) (either open), oldest first."""
        where: list[str] = ["1 = 1"]
        args: list[Any] = []
        if line is not None:
            where.append("line = ?")
            args.append(line)
        if start is not None:
            where.append("ends_at > ?")
            args.append(start)
        if end is not None:
            where.append("starts_at < ?")
            args.append(end)
        if not include_cancelled:
            where.append("status = 'booked'")
        async with self.db.execute(
            f"SELECT {_BOOKING_COLS} FROM bookings WHERE {' AND '.join(where)}"
            " ORDER BY starts_at, id",
            args,
        ) as cur:
            return [_booking(r) for r in await cur.fetchall()]

    async def booking(self, booking_id: int) -> BookingRow | None:
        async with self.db.execute(
            f"SELECT {_BOOKING_COLS} FROM bookings WHERE id = ?", (booking_id,)
        ) as cur:
            row = await cur.fetchone()
        return _booking(row) if row is not None else None

    async def bookings_for_call(self, call_id: str) -> list[BookingRow]:
        async with self.db.execute(
            f"SELECT {_BOOKING_COLS} FROM bookings WHERE call_id = ? ORDER BY id", (call_id,)
        ) as cur:
            return [_booking(r) for r in await cur.fetchall()]

    async def cancel_booking(self, booking_id: int) -> bool:
        """True if a booked booking was cancelled (False: unknown or already cancelled)."""

        async def body() -> bool:
            cur = await self.db.execute(
                "UPDATE bookings SET status = 'cancelled' WHERE id = ? AND status = 'booked'",
                (booking_id,),
            )
            return cur.rowcount == 1

        return bool(await self._tx(body))

    async def save_dialogue_outcome(self, row: OutcomeRow) -> None:
        """The call's outcome (a repeated save replaces it)."""

        async def body() -> None:
            await self.db.execute(
                "INSERT OR REPLACE INTO dialogue_outcomes (call_id, line, task, status,"
                " booking_id, turns, created_at, slots_enc, key_subjects)"
                " VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)",
                (
                    row.call_id, row.line, row.task, row.status, row.booking_id, row.turns,
                    row.created_at, row.slots_enc, row.key_subjects,
                ),
            )  # fmt: skip

        await self._tx(body)

    async def dialogue_outcome(self, call_id: str) -> OutcomeRow | None:
        async with self.db.execute(
            "SELECT call_id, line, task, status, booking_id, turns, created_at, slots_enc,"
            " key_subjects FROM dialogue_outcomes WHERE call_id = ?",
            (call_id,),
        ) as cur:
            r = await cur.fetchone()
        if r is None:
            return None
        return OutcomeRow(
            call_id=str(r[0]),
            line=str(r[1]),
            task=str(r[2]),
            status=str(r[3]),
            booking_id=None if r[4] is None else int(r[4]),
            turns=int(r[5]),
            created_at=float(r[6]),
            slots_enc=bytes(r[7]),
            key_subjects=str(r[8]),
        )

    # ---- a line's CalDAV calendar (appliance.voice.dialogue.caldav): which bookings have
    # their event on the server. Booked bookings without a row are still to be written; rows
    # whose booking was cancelled or erased name events still to be deleted.
    async def delete_booking(self, booking_id: int) -> bool:
        """Erase a booking (its dialogue outcome keeps no link); False if there was none.
        Its CalDAV row stays, so the event is deleted from the server next."""

        async def body() -> bool:
            cur = await self.db.execute("DELETE FROM bookings WHERE id = ?", (booking_id,))
            return cur.rowcount == 1

        return bool(await self._tx(body))

    async def caldav_unwritten(self, line: str, *, ends_after: float) -> list[BookingRow]:
        """Booked bookings on `line` ending after `ends_after` whose event is not on the server."""
        cols = ", ".join(f"b.{c.strip()}" for c in _BOOKING_COLS.split(","))
        async with self.db.execute(
            f"SELECT {cols} FROM bookings b LEFT JOIN caldav_events e ON e.booking_id = b.id"
            " WHERE b.line = ? AND b.status = 'booked' AND b.ends_at > ?"
            " AND e.booking_id IS NULL ORDER BY b.starts_at, b.id",
            (line, ends_after),
        ) as cur:
            return [_booking(r) for r in await cur.fetchall()]

    async def caldav_stale(self, line: str) -> list[tuple[int, str]]:
        """(booking id, uid) of events on `line` whose booking was cancelled or erased."""
        async with self.db.execute(
            "SELECT e.booking_id, e.uid FROM caldav_events e"
            " LEFT JOIN bookings b ON b.id = e.booking_id"
            " WHERE e.line = ? AND (b.id IS NULL OR b.status != 'booked')"
            " ORDER BY e.booking_id",
            (line,),
        ) as cur:
            return [(int(r[0]), str(r[1])) for r in await cur.fetchall()]

    async def caldav_written(self, *, booking_id: int, line: str, uid: str) -> None:
        async def body() -> None:
            await self.db.execute(
                "INSERT OR REPLACE INTO caldav_events (booking_id, line, uid, written_at)"
                " VALUES (?, ?, ?, ?)",
                (booking_id, line, uid, time.time()),
            )

        await self._tx(body)

    async def caldav_deleted(self, booking_id: int) -> None:
        async def body() -> None:
            await self.db.execute("DELETE FROM caldav_events WHERE booking_id = ?", (booking_id,))

        await self._tx(body)

    async def caldav_event_uid(self, booking_id: int) -> str | None:
        async with self.db.execute(
            "SELECT uid FROM caldav_events WHERE booking_id = ?", (booking_id,)
        ) as cur:
            row = await cur.fetchone()
        return None if row is None else str(row[0])

    # ---- one data subject's bookings (access export, erasure: appliance.privacy.rights)
    async def bookings_for_subject(
        self, subject_id: int, call_ids: Sequence[str] = ()
    ) -> list[BookingRow]:
        """Bookings (booked or cancelled) sealed under the subject's key or made on one of
        `call_ids`, oldest first. key_subjects is a comma list: matched with commas around."""
        where = ["(',' || key_subjects || ',') LIKE ?"]
        args: list[Any] = [f"%,{int(subject_id)},%"]
        calls = [c for c in call_ids if c]
        if calls:
            where.append(f"call_id IN ({', '.join('?' for _ in calls)})")
            args.extend(calls)
        async with self.db.execute(
            f"SELECT {_BOOKING_COLS} FROM bookings WHERE {' OR '.join(where)}"
            " ORDER BY starts_at, id",
            args,
        ) as cur:
            return [_booking(r) for r in await cur.fetchall()]
