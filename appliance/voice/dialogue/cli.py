"""`callvault calendar list|export|sync`: the appointments the playbook lines booked.

Reading who booked (name, number) opens sealed details, so `list` and `export` need a purpose
and are audited (`calendar.view` / `calendar.export`), like a report read. `sync` opens nothing
sealed: it brings the lines' office calendars (CalDAV) in step with the store now — what the
serving process does every `retry_s` — and says what still waits, for an installer checking a
new calendar or an admin after an outage.
"""

from __future__ import annotations

import argparse
import asyncio
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import TYPE_CHECKING, Any

from rich.console import Console
from rich.table import Table

from appliance import config as config_mod
from appliance.config import Config
from appliance.errors import CallvaultError
from appliance.voice.dialogue.calendar import Booking, StoreCalendar, to_ical

if TYPE_CHECKING:
    from appliance.privacy import Privacy


class CalendarError(CallvaultError):
    pass


def _lines(cfg: Config, name: str | None) -> list[str]:
    booking = [ln.name for ln in cfg.lines if ln.playbook is not None]
    if name is None:
        return booking
    if name not in booking:
        raise CalendarError(f"line {name!r} has no playbook (lines with one: {', '.join(booking)})")
    return [name]


async def read_bookings(
    cfg: Config,
    privacy: Privacy,
    *,
    line: str | None,
    days: int,
    purpose: str,
    action: str,
    include_cancelled: bool = False,
    now: datetime | None = None,
) -> list[Booking]:
    """Bookings from today on for `days` days, details opened; the read is audited."""
    from appliance.privacy.cli import operator

    if not purpose.strip():
        raise CalendarError("reading the calendar needs a purpose (it is audited)")
    start = (now or datetime.now(UTC)) - timedelta(days=1)
    end = start + timedelta(days=days + 1)
    cal = StoreCalendar(privacy.db, privacy)
    out: list[Booking] = []
    for name in _lines(cfg, line):
        ln = cfg.line_by_name(name)
        assert ln is not None and ln.playbook is not None
        rows = await privacy.db.bookings(
            line=name, start=start.timestamp(), end=end.timestamp(),
            include_cancelled=include_cancelled,
        )  # fmt: skip
        for row in rows:
            await privacy.audit.record(operator(), action, f"booking:{row.id}", purpose)
            out.append(await cal.read(row, ln.playbook.zone))
    return sorted(out, key=lambda b: b.start)


async def cmd_list(
    args: argparse.Namespace, cfg: Config, privacy: Privacy, console: Console
) -> int:
    bookings = await read_bookings(
        cfg, privacy, line=args.line, days=args.days, purpose=args.purpose,
        action="calendar.view", include_cancelled=args.all,
    )  # fmt: skip
    table = Table("id", "line", "start", "end", "status", "name", "phone", "call")
    for b in bookings:
        table.add_row(
            str(b.id), b.line, b.start.strftime("%a %Y-%m-%d %H:%M"), b.end.strftime("%H:%M"),
            b.status, str(b.details.get("name", "")), str(b.details.get("phone", "")), b.call_id,
        )  # fmt: skip
    console.print(table)
    return 0


async def cmd_export(
    args: argparse.Namespace, cfg: Config, privacy: Privacy, console: Console
) -> int:
    bookings = await read_bookings(
        cfg, privacy, line=args.line, days=args.days, purpose=args.purpose,
        action="calendar.export", include_cancelled=True,
    )  # fmt: skip
    names = [ln.playbook.business for ln in cfg.lines if ln.playbook is not None]
    text = to_ical(bookings, business=names[0] if names else "Callvault")
    if args.output == "-":
        print(text, end="")
    else:
        await asyncio.to_thread(Path(args.output).write_text, text, newline="")
        console.print(f"{len(bookings)} booking(s) written to {args.output}")
    return 0


async def cmd_sync(
    args: argparse.Namespace, cfg: Config, privacy: Privacy, console: Console
) -> int:
    from appliance.voice.dialogue.caldav import links_for

    lines = [ln.name for ln in cfg.lines if ln.playbook is not None and ln.caldav is not None]
    if args.line is not None and args.line not in lines:
        raise CalendarError(
            f"line {args.line!r} has no office calendar ([lines.caldav]); "
            f"lines with one: {', '.join(lines) or 'none'}"
        )
    links = {
        name: link
        for name, link in links_for(cfg, privacy.db).items()
        if args.line is None or name == args.line
    }
    if not links:
        console.print("no line has an office calendar ([lines.caldav]): nothing to sync")
        return 0
    cal = StoreCalendar(privacy.db, privacy, caldav=links)
    try:
        reports = await cal.sync()
    finally:
        await cal.aclose()
    table = Table("line", "calendar", "written", "deleted", "waiting", "error")
    for name, report in reports.items():
        where = links[name].remote.where
        table.add_row(
            name, where, str(report.written), str(report.deleted), str(report.waiting),
            report.error,
        )  # fmt: skip
    console.print(table)
    # Non-zero while anything waits: a script or an installer's check sees the calendar is off.
    return 1 if any(r.error or r.waiting for r in reports.values()) else 0


def _run(fn: Any, console: Console) -> Any:
    def run(args: argparse.Namespace) -> int:
        from appliance.privacy import Privacy
        from appliance.store import Database

        cfg = config_mod.load(Path(args.config))

        async def go() -> int:
            async with Database(cfg.database) as db:
                return int(await fn(args, cfg, Privacy(cfg, db), console))

        return asyncio.run(go())

    return run


def add_parser(sub: Any, console: Console) -> None:
    cp = sub.add_parser("calendar", help="appointments booked by the playbook lines")
    csub = cp.add_subparsers(dest="calendar_cmd", required=True)
    for name, fn, what in (
        ("list", cmd_list, "print the coming bookings (audited)"),
        ("export", cmd_export, "write the bookings as iCalendar (audited)"),
    ):
        p = csub.add_parser(name, help=what)
        p.add_argument("--line", default=None, help="one line (default: every playbook line)")
        p.add_argument("--days", type=int, default=60, help="how far ahead (default 60)")
        p.add_argument("--purpose", required=True, help="why you read it (audited)")
        if name == "list":
            p.add_argument("--all", action="store_true", help="cancelled ones too")
        else:
            p.add_argument("-o", "--output", default="-", help="file (default: stdout)")
        p.set_defaults(fn=_run(fn, console))
    p = csub.add_parser(
        "sync", help="bring the office calendars (CalDAV) in step with the store now"
    )
    p.add_argument("--line", default=None, help="one line (default: every line with one)")
    p.set_defaults(fn=_run(cmd_sync, console))
