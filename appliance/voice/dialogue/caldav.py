"""A line's office calendar on the LAN (CalDAV, RFC 4791), kept in step with the store.

The store (appliance.store.calendar) stays the system of record: a booking is made there
first, under its transaction, and then written to the office calendar. The office calendar
adds its busy events to what the agent may not offer. When it is down or answers garbage the
agent goes on booking from the store alone — the call never waits on it longer than one
request's timeout, and not at all while it is known to be down — the failure is logged and
raised as a `caldav_down` alert naming how many bookings wait, and the waiting bookings are
written (cancelled and erased ones deleted) when it answers again, retried every `retry_s`.
A booking written late that collides with an office event raises `caldav_conflict`: the
caller was promised the time, so a person decides.

What the office calendar gets: a calendar shared by the office is read on phones and laptops,
synced and backed up outside the appliance's encryption, audit and erasure. So the event says
only that the time is taken by a phone booking and gives the booking's reference; who booked,
their number and their reason (which at a clinic may be health data) stay sealed in the store,
readable through the admin UI's call detail or `callvault calendar list` (audited). Erasing
the caller therefore leaves nothing to remove from the office calendar; erasing or cancelling
the booking deletes its event.

Egress: the URL is a LAN IP literal (checked at config load); the HTTP session ignores proxy
variables and .netrc, and follows no redirect, so nothing it sends can leave the premises.
"""

from __future__ import annotations

import asyncio
import logging
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, date, datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any, Protocol
from urllib.parse import quote, urlsplit
from zoneinfo import ZoneInfo

import icalendar  # type: ignore[import-untyped]
import recurring_ical_events  # type: ignore[import-untyped]

from appliance.errors import CallvaultError

if TYPE_CHECKING:
    from appliance.config import CalDavConfig, Config
    from appliance.ops.alerts import Alerts
    from appliance.store import Database
    from appliance.store.calendar import BookingRow

log = logging.getLogger(__name__)

Span = tuple[datetime, datetime]
SUMMARY = "Appointment (booked by phone)"
# Fixed forever: an event's uid is derived from its booking, so writing it again (after a lost
# answer, a crash, a restore) replaces the same event instead of adding a second one.
_UID_NAMESPACE = uuid.UUID("6f1d7c52-4a7e-4f3b-9a0c-2b8e1c5d9e41")
_DOWN_KIND = "caldav_down"
_CONFLICT_KIND = "caldav_conflict"


class CalDavError(CallvaultError):
    """The office calendar did not answer, refused, or answered something unusable."""


class Remote(Protocol):
    """One CalDAV calendar collection (the real one: `CalDavRemote`; tests use a fake)."""

    @property
    def where(self) -> str:
        """The server, for messages (no credentials)."""
        ...

    async def busy(self, start: datetime, end: datetime) -> list[tuple[str, Span]]:
        """(uid, span) of every busy occurrence overlapping [start, end)."""
        ...

    async def put(self, uid: str, ics: str) -> None: ...

    async def delete(self, uid: str) -> None:
        """Delete the event; one already gone is not an error."""
        ...


def event_uid(row: BookingRow) -> str:
    """Stable per booking; names nothing (a hash of the row's id, line and creation time)."""
    return f"callvault-{uuid.uuid5(_UID_NAMESPACE, f'{row.line}:{row.id}:{row.created_at!r}')}"


def event_ics(row: BookingRow, uid: str, *, stamp: datetime) -> str:
    """The VEVENT the office calendar gets for a booking: no name, number or reason."""

    cal = icalendar.Calendar()
    cal.add("prodid", "-//Callvault//Appointments//EN")
    cal.add("version", "2.0")
    ev = icalendar.Event()
    ev.add("uid", uid)
    ev.add("dtstamp", stamp.astimezone(UTC))
    ev.add("dtstart", datetime.fromtimestamp(row.starts_at, UTC))
    ev.add("dtend", datetime.fromtimestamp(row.ends_at, UTC))
    ev.add("summary", SUMMARY)
    ev.add(
        "description",
        f"Booked by the Callvault phone agent on line {row.line}, reference booking {row.id}. "
        "Who booked and why is kept in Callvault: the call's detail page in the admin UI, or "
        "`callvault calendar list`.",
    )
    ev.add("status", "CONFIRMED")
    ev.add("transp", "OPAQUE")
    ev.add("x-callvault-booking", str(row.id))
    cal.add_component(ev)
    return str(cal.to_ical().decode())


def busy_spans(ics: str, zone: ZoneInfo, start: datetime, end: datetime) -> list[tuple[str, Span]]:
    """(uid, span) of the busy occurrences in one calendar object overlapping [start, end):
    recurrences expanded, free (TRANSP:TRANSPARENT) and cancelled events left out, all-day
    events taking their whole days and floating times read in the line's zone. ValueError
    when the text is not iCalendar."""

    try:
        cal = icalendar.Calendar.from_ical(ics)
        occurrences = list(recurring_ical_events.of(cal).between(start, end))
    except Exception as exc:  # noqa: BLE001 - the parsers raise many kinds; all mean garbage
        raise ValueError(f"not iCalendar: {type(exc).__name__}: {exc}") from None
    out: list[tuple[str, Span]] = []
    for ev in occurrences:
        if ev.name != "VEVENT":
            continue
        if str(ev.get("TRANSP", "OPAQUE")).upper() == "TRANSPARENT":
            continue
        if str(ev.get("STATUS", "")).upper() == "CANCELLED":
            continue
        if ev.get("DTSTART") is None:
            continue  # recurring_ical_events yields none such; an invalid event blocks nothing
        s = _aware(ev["DTSTART"].dt, zone)
        e = _aware(ev["DTEND"].dt, zone) if ev.get("DTEND") is not None else s
        if e > s and s < end and e > start:
            out.append((str(ev.get("UID", "")), (s, e)))
    return out


def _aware(value: date | datetime, zone: ZoneInfo) -> datetime:
    if isinstance(value, datetime):
        return value if value.tzinfo is not None else value.replace(tzinfo=zone)
    return datetime(value.year, value.month, value.day, tzinfo=zone)


class CalDavRemote:
    """The `caldav` library on one calendar collection. The library blocks: each request runs
    in a thread, one at a time (its HTTP session is not thread-safe)."""

    def __init__(self, cfg: CalDavConfig, zone: ZoneInfo, *, line: str) -> None:
        self.cfg = cfg
        self.zone = zone
        self.line = line
        parts = urlsplit(cfg.url)
        self._where = f"{parts.scheme}://{parts.netloc}"
        self._lock = asyncio.Lock()
        self._calendar: Any = None

    @property
    def where(self) -> str:
        return self._where

    def _open(self) -> Any:
        if self._calendar is not None:
            return self._calendar
        import caldav

        password = None
        if self.cfg.password_file is not None:
            password = _read_password(self.cfg.password_file, self.line)
        client: Any = caldav.DAVClient(
            url=self.cfg.url,
            username=self.cfg.username or None,
            password=password,
            timeout=self.cfg.timeout_s,  # type: ignore[arg-type]  # requests takes a float
            ssl_verify_cert=str(self.cfg.ca_file) if self.cfg.ca_file else True,
        )
        # Egress: no proxy from the environment, no ~/.netrc, no redirect to elsewhere.
        client.session.trust_env = False
        client.session.max_redirects = 0
        self._calendar = client.calendar(url=self.cfg.url)
        return self._calendar

    async def _run(self, what: str, fn: Callable[[], Any]) -> Any:
        async with self._lock:
            try:
                return await asyncio.wait_for(asyncio.to_thread(fn), self.cfg.timeout_s * 3)
            except CalDavError:
                raise
            except TimeoutError:
                raise CalDavError(f"{self._where}: {what} timed out") from None
            except Exception as exc:  # noqa: BLE001 - HTTP, XML and iCalendar errors alike
                raise CalDavError(f"{self._where}: {what} failed: {_reason(exc)}") from None

    async def busy(self, start: datetime, end: datetime) -> list[tuple[str, Span]]:
        def fetch() -> list[str]:
            cal = self._open()
            found = cal.search(start=start, end=end, event=True, expand=False)
            return [str(obj.data) for obj in found]

        texts: list[str] = await self._run("reading busy times", fetch)
        out: list[tuple[str, Span]] = []
        for text in texts:
            try:
                out.extend(busy_spans(text, self.zone, start, end))
            except ValueError as exc:
                raise CalDavError(f"{self._where}: an event {exc}") from None
        return out

    def _href(self, cal: Any, uid: str) -> str:
        return str(cal.url.join(quote(uid) + ".ics"))

    async def put(self, uid: str, ics: str) -> None:
        def send() -> None:
            cal = self._open()
            r = cal.client.put(
                self._href(cal, uid), ics, {"Content-Type": 'text/calendar; charset="utf-8"'}
            )
            if r.status not in (200, 201, 204):
                raise CalDavError(f"{self._where}: writing an event answered HTTP {r.status}")

        await self._run("writing an event", send)

    async def delete(self, uid: str) -> None:
        def send() -> None:
            cal = self._open()
            r = cal.client.delete(self._href(cal, uid))
            if r.status not in (200, 204, 404, 410):
                raise CalDavError(f"{self._where}: deleting an event answered HTTP {r.status}")

        await self._run("deleting an event", send)


def _read_password(path: Path, line: str) -> str:
    try:
        mode = path.stat().st_mode
        text = path.read_text().splitlines()
    except OSError as exc:
        raise CalDavError(
            f"line {line}: cannot read the CalDAV password file {path}: {exc.strerror}"
        ) from None
    if mode & 0o077:
        log.warning(
            "line %s: CalDAV password file %s is readable by others (chmod 600)", line, path
        )
    if not text or not text[0].strip():
        raise CalDavError(f"line {line}: the CalDAV password file {path} is empty")
    return text[0].strip()


def _reason(exc: BaseException) -> str:
    """A short reason without the request's body or credentials: the operating system's
    words when a socket failed underneath ("Connection refused"), else the first line."""
    root = _os_error(exc)
    if root is not None:
        return f"{type(exc).__name__}: {root.strerror}"
    text = " ".join(str(exc).split())[:160]
    return f"{type(exc).__name__}: {text}" if text else type(exc).__name__


def _os_error(exc: BaseException) -> OSError | None:
    """The innermost OSError with a message among what `exc` wraps (requests nests the
    socket's error three deep: in args, in `reason`, in the context)."""
    seen: set[int] = set()
    todo: list[BaseException] = [exc]
    found: OSError | None = None
    while todo:
        e = todo.pop()
        if id(e) in seen:
            continue
        seen.add(id(e))
        if isinstance(e, OSError) and e.strerror:
            found = e
        inner = (e.__cause__, e.__context__, getattr(e, "reason", None), *e.args)
        todo += [x for x in inner if isinstance(x, BaseException)]
    return found


@dataclass(frozen=True)
class SyncReport:
    written: int = 0
    deleted: int = 0
    waiting: int = 0
    """Bookings still to be written or deleted (0 after a clean sync)."""
    error: str = ""


class CalDavLink:
    """One line's office calendar next to the store: busy times while the call runs, and the
    store's bookings written to (and cancelled or erased ones deleted from) the calendar."""

    def __init__(
        self,
        line: str,
        cfg: CalDavConfig,
        db: Database,
        remote: Remote,
        *,
        zone: ZoneInfo,
        alerts: Alerts | None = None,
        clock: Callable[[], float] = time.time,
        monotonic: Callable[[], float] = time.monotonic,
    ) -> None:
        self.line = line
        self.cfg = cfg
        self.db = db
        self.remote = remote
        self.zone = zone
        self.alerts = alerts
        self.clock = clock
        self.monotonic = monotonic
        self.down_until = 0.0
        """While monotonic() is below this the calendar is not asked (the retry task is)."""
        self.failing = False
        self.last_error = ""
        self._lock = asyncio.Lock()
        self._tasks: set[asyncio.Task[Any]] = set()
        self._retry: asyncio.Task[None] | None = None
        self._synced_once = False
        self._resolved_once = False
        self._checked: set[int] = set()
        """Bookings checked against the office calendar right before they were made."""

    @property
    def down(self) -> bool:
        return self.monotonic() < self.down_until

    async def busy(self, start: datetime, end: datetime) -> list[Span] | None:
        """The office calendar's busy spans, or None when it cannot say (down, garbage)."""
        if self.down:
            return None
        try:
            found = await self.remote.busy(start, end)
        except CalDavError as exc:
            await self._failed(exc)
            return None
        self._answered()
        return [span for _, span in found]

    async def is_free(self, start: datetime, end: datetime) -> bool | None:
        """Right before booking: False when an office event now overlaps; None: unknown."""
        spans = await self.busy(start, end)
        if spans is None:
            return None
        return not any(s < end and e > start for s, e in spans)

    def changed(self, *, checked: int | None = None) -> None:
        """A booking was made (`checked`: its id, when `is_free` said yes right before) or
        cancelled: bring the calendar in step in the background (the caller is not kept
        waiting on it); while it is down the retry task will."""
        if checked is not None:
            self._checked.add(checked)
        if self.down:
            self._kick()
            self._spawn(self._alert_down())  # the alert counts the bookings that wait
            return
        self._spawn(self.sync())

    async def sync(self) -> SyncReport:
        """Delete the events of cancelled and erased bookings, write the booked ones not yet
        there; one that was not checked against the office's events right before it was made
        (made while the calendar was down, or before a restart) is checked now."""
        async with self._lock:
            stale = await self.db.caldav_stale(self.line)
            fresh = await self.db.caldav_unwritten(self.line, ends_after=self.clock())
            written = deleted = 0
            try:
                for booking_id, uid in stale:
                    await self.remote.delete(uid)
                    await self.db.caldav_deleted(booking_id)
                    deleted += 1
                for row in fresh:
                    uid = event_uid(row)
                    if row.id not in self._checked:
                        await self._check_conflict(row, uid)
                    stamp = datetime.fromtimestamp(self.clock(), UTC)
                    await self.remote.put(uid, event_ics(row, uid, stamp=stamp))
                    await self.db.caldav_written(booking_id=row.id, line=self.line, uid=uid)
                    self._checked.discard(row.id)
                    written += 1
            except CalDavError as exc:
                waiting = len(stale) + len(fresh) - written - deleted
                await self._failed(exc, waiting=waiting)
                return SyncReport(written, deleted, waiting, str(exc))
            await self._recovered()
            if written or deleted:
                log.info(
                    "line %s: office calendar: %d event(s) written, %d deleted",
                    self.line, written, deleted,
                )  # fmt: skip
            return SyncReport(written, deleted, 0)

    async def erased(self) -> SyncReport:
        """After bookings were erased from the store: delete their events now, waiting for
        the answer (what the calendar does not take now is deleted when it answers again)."""
        stale = await self.db.caldav_stale(self.line)
        if not stale:
            return SyncReport()
        if self.down:
            self._kick()
            return SyncReport(waiting=len(stale), error=f"{self.remote.where} is down")
        return await self.sync()

    async def waiting(self) -> int:
        """Bookings whose event is still to be written or deleted."""
        stale = await self.db.caldav_stale(self.line)
        fresh = await self.db.caldav_unwritten(self.line, ends_after=self.clock())
        return len(stale) + len(fresh)

    async def drain(self) -> None:
        """Wait for the background writes started so far (tests, shutdown)."""
        while self._tasks:
            await asyncio.gather(*list(self._tasks), return_exceptions=True)

    async def aclose(self) -> None:
        for task in [*self._tasks, *([self._retry] if self._retry else [])]:
            task.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)
        if self._retry is not None:
            await asyncio.gather(self._retry, return_exceptions=True)
        self._retry = None
        if self.alerts is not None:
            await self.alerts.drain()  # alert e-mails still being sent

    # ---- failure and recovery
    def _answered(self) -> None:
        """The calendar answered: the first time in this process (or after a failure), bring
        over what waits from before (a restart, an outage)."""
        if self.failing or not self._synced_once:
            self._synced_once = True
            self._spawn(self.sync())

    async def _failed(self, exc: CalDavError, *, waiting: int | None = None) -> None:
        self.failing = True
        self.last_error = str(exc)
        self.down_until = self.monotonic() + self.cfg.retry_s
        log.error("line %s: the office calendar failed: %s", self.line, exc)
        await self._alert_down(waiting)
        self._kick()

    async def _alert_down(self, waiting: int | None = None) -> None:
        if self.alerts is None:
            return
        try:
            if waiting is None:
                waiting = await self.waiting()
            message = (
                f"line {self.line}: the office calendar failed ({self.last_error}). "
                f"The agent books from Callvault's calendar; {waiting} "
                f"booking(s) wait to be written or deleted there, retried every "
                f"{self.cfg.retry_s:.0f} s."
            )
            await self.alerts.fire(_DOWN_KIND, message, key=self.line)
        except Exception as exc:  # noqa: BLE001 - runs mid-call: an alert must not end it
            log.error("line %s: alert not raised: %s", self.line, exc)  # noqa: TRY400

    async def _recovered(self) -> None:
        was = self.failing
        self.failing = False
        self.down_until = 0.0
        self._synced_once = True
        if was:
            log.info("line %s: the office calendar answers again", self.line)
        if self.alerts is not None and (was or not self._resolved_once):
            self._resolved_once = True
            try:
                await self.alerts.resolve(_DOWN_KIND, self.line)
            except Exception as exc:  # noqa: BLE001 - the sync itself succeeded
                log.error("line %s: alert not resolved: %s", self.line, exc)  # noqa: TRY400

    async def _check_conflict(self, row: BookingRow, uid: str) -> None:
        start = datetime.fromtimestamp(row.starts_at, UTC)
        end = datetime.fromtimestamp(row.ends_at, UTC)
        others = [sp for u, sp in await self.remote.busy(start, end) if u != uid]
        if not others:
            return
        when = start.astimezone(self.zone).strftime("%Y-%m-%d %H:%M")
        message = (
            f"line {self.line}: booking {row.id} ({when}) was made while the office calendar "
            "was unreachable and overlaps an event there: please check it"
        )
        log.warning("%s", message)
        if self.alerts is not None:
            try:
                await self.alerts.fire(_CONFLICT_KIND, message, key=f"{self.line}:{row.id}")
            except Exception as exc:  # noqa: BLE001 - the booking is written all the same
                log.error("line %s: alert not raised: %s", self.line, exc)  # noqa: TRY400

    def _kick(self) -> None:
        """Keep one retry task per line while bookings wait and the calendar fails."""
        if self._retry is None or self._retry.done():
            self._retry = asyncio.get_running_loop().create_task(
                self._retry_loop(), name=f"caldav-retry-{self.line}"
            )

    async def _retry_loop(self) -> None:
        while True:
            await asyncio.sleep(max(0.0, self.down_until - self.monotonic()))
            try:
                report = await self.sync()
            except Exception:  # the store itself failing: keep the retry alive, try later
                log.exception("line %s: office calendar sync", self.line)
                self.down_until = self.monotonic() + self.cfg.retry_s
                continue
            if not report.error:
                return

    def _spawn(self, coro: Any) -> None:
        task = asyncio.get_running_loop().create_task(coro, name=f"caldav-{self.line}")
        self._tasks.add(task)
        task.add_done_callback(self._done)

    def _done(self, task: asyncio.Task[Any]) -> None:
        self._tasks.discard(task)
        if not task.cancelled() and task.exception() is not None:
            log.error("line %s: office calendar sync failed", self.line, exc_info=task.exception())


def links_for(cfg: Config, db: Database) -> dict[str, CalDavLink]:
    """One link per line with `[lines.caldav]` (no connection is made here)."""
    from appliance.ops.alerts import alerts_from_config

    links: dict[str, CalDavLink] = {}
    alerts: Alerts | None = None
    for ln in cfg.lines:
        if ln.caldav is None or ln.playbook is None:
            continue
        alerts = alerts or alerts_from_config(db, cfg.ops)
        zone = ln.playbook.zone
        remote = CalDavRemote(ln.caldav, zone, line=ln.name)
        links[ln.name] = CalDavLink(ln.name, ln.caldav, db, remote, zone=zone, alerts=alerts)
    return links


async def keep_in_step(calendar: Any, every_s: float) -> None:
    """The serving process's sync loop (`calendar` a StoreCalendar): at start, what a restart
    left waiting; then every `every_s`, bookings erased or purged elsewhere (a rights request in
    the admin process, the retention timer) whose office events are still there."""
    while True:
        try:
            for line, report in (await calendar.sync()).items():
                if report.written or report.deleted or report.error:
                    log.info(
                        "office calendar of %s: %d written, %d deleted, %d waiting%s",
                        line, report.written, report.deleted, report.waiting,
                        f" ({report.error})" if report.error else "",
                    )  # fmt: skip
        except Exception:  # the store failing: the next round tries again
            log.exception("office calendar sync failed")
        await asyncio.sleep(every_s)
