"""Dashboard, call list, call detail and the audio stream behind the player.

Every view of a recording (each audio request) and of a call's transcript writes an audit row
naming the viewer and the purpose they chose; operators see only their own lines.
"""

from __future__ import annotations

import re
import shutil
import time
from collections.abc import AsyncIterator
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from litestar import Request, Response, get
from litestar.exceptions import NotFoundException
from litestar.params import FromPath, FromQuery
from litestar.response import Stream, Template

from appliance.admin import policy, status
from appliance.admin.auth import logged_in, scope
from appliance.admin.params import RowId
from appliance.admin.services import Services, Svc
from appliance.admin.users import User
from appliance.errors import CallvaultError
from appliance.privacy.identifiers import IdentifierError
from appliance.telephony.recordings import RecordingStore
from appliance.voice.dialogue.calendar import call_bookings
from appliance.voice.report import ReportVault, ReportView
from appliance.voice.transcripts import TranscriptError, TranscriptVault

PAGE = 50
PURPOSES = ("call review", "quality assurance", "customer dispute", "data subject request")
_RANGE = re.compile(r"^bytes=(\d*)-(\d*)$")
_DAY = re.compile(r"^\d{4}-\d{2}-\d{2}$")

UserReq = Request[User, str, Any]


def _day_start(day: str, field: str) -> float | None:
    if not day:
        return None
    if not _DAY.match(day):
        raise ValueError(f"{field}: expected a date like 2026-11-23")
    return datetime.strptime(day, "%Y-%m-%d").timestamp()


def _lines_for(user: User) -> list[str] | None:
    return list(user.lines) if user.role == "operator" else None


async def _visible_call(svc: Services, user: User, call_id: str) -> Any:
    call = await svc.db.call(call_id)
    # Another line's call is "not found" to an operator: its existence is not theirs to know.
    if call is None or not user.sees_line(call.line):
        raise NotFoundException(f"no call {call_id}")
    return call


@get("/", guards=[logged_in], name="dashboard")
async def dashboard(svc: Svc, request: UserReq) -> Template:
    user = request.user
    now = time.time()
    days = await svc.db.calls_per_day(now - 14 * 86400)
    open_requests = []
    if "rights:read" in user.scopes:
        open_requests = [
            {"id": r.id, "kind": r.kind.value, "status": r.status.value,
             "days_left": int((r.due_at - now) // 86400), "overdue": r.overdue(now)}
            for r in await svc.rights.all(open_only=True)
        ]  # fmt: skip
    disk = shutil.disk_usage(svc.cfg.state_dir)
    upcoming, upcoming_error = None, ""
    if "retention:read" in user.scopes:
        try:
            upcoming = await policy.upcoming(svc.privacy)
        except CallvaultError as exc:
            upcoming_error = str(exc)
    models = status.summary(await status.models_status(svc.cfg))
    return Template(
        "dashboard.html",
        context={
            "user": user,
            "days": days,
            "chart": {
                "labels": [d["day"] for d in days],
                "answered": [int(d["answered"] or 0) for d in days],
                "missed": [int(d["calls"]) - int(d["answered"] or 0) for d in days],
                "ai_minutes": [round(float(d["talk_s"] or 0) / 60, 1) for d in days],
            },
            "open_requests": open_requests,
            "disk": {"free_gb": disk.free / 1e9, "used_pct": 100 * disk.used / disk.total},
            "upcoming": upcoming,
            "upcoming_error": upcoming_error,
            "models": models,
        },
    )


@dataclass
class CallFilters:
    since: str = ""
    until: str = ""
    line: str = ""
    number: str = ""
    disposition: str = ""
    q: str = ""


@get("/calls", guards=[scope("calls:read")], name="calls")
async def calls(
    svc: Svc,
    request: UserReq,
    *,
    since: FromQuery[str] = "",
    until: FromQuery[str] = "",
    line: FromQuery[str] = "",
    number: FromQuery[str] = "",
    disposition: FromQuery[str] = "",
    q: FromQuery[str] = "",
    before: FromQuery[str] = "",
) -> Template:
    user = request.user
    f = CallFilters(since, until, line, number, disposition, q)
    error = ""
    rows: list[dict[str, Any]] = []
    try:
        lines = _lines_for(user)
        if line:
            lines = [line] if lines is None or line in lines else []
        subject = None
        if number:
            subject = await svc.privacy.keyring.blind_index(svc.privacy.subjects.parse(number))
        tokens = await _search(svc, user, q) if q else None
        cursor = None
        if before:
            ts, _, cid = before.partition("_")
            cursor = (float(ts), cid)
        rows = await svc.db.calls_page(
            lines=lines,
            since=_day_start(since, "from"),
            until=(_day_start(until, "to") or 0) + 86400 if until else None,
            disposition=disposition or None,
            subject_index=subject,
            call_ids=None,
            before=cursor,
            limit=PAGE + 1,
            transcript_tokens=tokens,
        )
    except (ValueError, IdentifierError) as exc:
        error = str(exc)
    more = len(rows) > PAGE
    rows = rows[:PAGE]
    next_cursor = f"{rows[-1]['started_at']!r}_{rows[-1]['id']}" if more and rows else ""
    line_names = [ln.name for ln in svc.cfg.lines if user.sees_line(ln.name)]
    return Template(
        "calls.html",
        context={
            "user": user, "rows": rows, "f": f, "error": error, "next": next_cursor,
            "lines": line_names, "when": _when,
        },
    )  # fmt: skip


async def _search(svc: Services, user: User, q: str) -> list[str]:
    """The keyed index tokens of the words searched for (audited); the page query keeps the
    calls whose transcripts hold all of them."""
    try:
        return await TranscriptVault(svc.db, svc.privacy).search_tokens(
            q, actor=user.actor, purpose="call review"
        )
    except TranscriptError as exc:
        raise ValueError(str(exc)) from None


def _when(ts: float | None) -> str:
    return "" if ts is None else datetime.fromtimestamp(ts).strftime("%Y-%m-%d %H:%M:%S")


@get("/calls/{call_id:str}", guards=[scope("calls:read")], name="call")
async def call_detail(
    call_id: FromPath[str], svc: Svc, request: UserReq, purpose: FromQuery[str] = ""
) -> Template:
    user = request.user
    call = await _visible_call(svc, user, call_id)
    recordings = await svc.db.recordings(call_id)
    context: dict[str, Any] = {
        "user": user, "call": call, "cdrs": await svc.db.cdrs(call_id),
        "consents": await svc.db.consents(call_id), "recordings": recordings,
        "purposes": PURPOSES, "purpose": purpose if purpose in PURPOSES else "",
        "when": _when, "transcripts": [], "report": None, "report_error": "",
    }  # fmt: skip
    if context["purpose"]:
        context["transcripts"] = await _transcripts(svc, user, call_id, context["purpose"])
        context["report"], context["report_error"] = await _report(
            svc, user, call_id, context["purpose"]
        )
    context["bookings"] = await call_bookings(
        svc.cfg, svc.db, svc.privacy, call_id, actor=user.actor, purpose=context["purpose"]
    )
    context["audit"] = await svc.db.call_audit(call_id, [int(r["id"]) for r in recordings])
    return Template("call.html", context=context)


async def _report(
    svc: Services, user: User, call_id: str, purpose: str
) -> tuple[ReportView | None, str]:
    """The call's post-call report (audited as `report.view`), or why it cannot be shown."""
    if await svc.db.report_for_call(call_id) is None:
        return None, ""
    try:
        return await ReportVault(svc.db, svc.privacy).read_report(call_id, user.actor, purpose), ""
    except CallvaultError as exc:  # e.g. shredded keys or a damaged row: the page still opens
        return None, str(exc)


async def _transcripts(svc: Services, user: User, call_id: str, purpose: str) -> list[Any]:
    vault = TranscriptVault(svc.db, svc.privacy)
    return list(await vault.read(call_id, actor=user.actor, purpose=purpose))


@get(
    "/calls/{call_id:str}/recordings/{recording_id:int}/audio",
    guards=[scope("calls:read")],
    name="audio",
)
async def audio(
    call_id: FromPath[str],
    recording_id: RowId,
    svc: Svc,
    request: UserReq,
    purpose: FromQuery[str] = "",
) -> Response[Any]:
    user = request.user
    await _visible_call(svc, user, call_id)
    row = await svc.db.recording(recording_id)
    if row is None or row["call_id"] != call_id:
        raise NotFoundException(f"no recording {recording_id} on call {call_id}")
    if purpose not in PURPOSES:
        raise NotFoundException("choose a purpose before playing a recording")
    size = int(row["size_bytes"])
    start, end = 0, size - 1
    status = 200
    m = _RANGE.match(request.headers.get("range", ""))
    if m and (m.group(1) or m.group(2)):
        if m.group(1):
            start = int(m.group(1))
            end = min(int(m.group(2)), size - 1) if m.group(2) else size - 1
        else:  # a suffix range: the last N bytes
            start = max(0, size - int(m.group(2)))
        if start > end or start >= size:
            return Response(b"", status_code=416, headers={"Content-Range": f"bytes */{size}"})
        status = 206
    store = RecordingStore(
        svc.cfg.asterisk.host_path(svc.cfg.asterisk.spool_dir),
        svc.cfg.recordings_dir,
        svc.db,
        svc.privacy,
    )
    chunks = store.open_recording(row, actor=user.actor, purpose=purpose)

    async def body() -> AsyncIterator[bytes]:
        pos = 0
        async for chunk in chunks:
            lo, hi = pos, pos + len(chunk)
            pos = hi
            if hi <= start:
                continue
            yield chunk[max(0, start - lo) : min(len(chunk), end + 1 - lo)]
            if hi > end:
                break

    headers = {"Accept-Ranges": "bytes", "Content-Length": str(end - start + 1),
               "Cache-Control": "no-store"}  # fmt: skip
    if status == 206:
        headers["Content-Range"] = f"bytes {start}-{end}/{size}"
    return Stream(body(), media_type="audio/wav", status_code=status, headers=headers)
