"""DPO and operator pages: do-not-call list, rights requests, legal holds, the audit log.

Forms post and redirect back (POST-redirect-GET) with a short outcome message; a refused
action changes nothing and says why. Reads of personal data (the DNC numbers, an export) are
audited like their API twins.
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import Annotated, Any
from urllib.parse import urlencode

from litestar import Request, get, post
from litestar.datastructures import UploadFile
from litestar.enums import RequestEncodingType
from litestar.params import Body, FromPath, FromQuery
from litestar.response import File, Redirect, Template

from appliance.admin.auth import scope
from appliance.admin.jobs import JobError, Outcome, registry
from appliance.admin.params import RowId
from appliance.admin.services import Services, Svc
from appliance.admin.ui.jobs import POLL_S
from appliance.admin.ui.jobs import find as find_job
from appliance.admin.users import User
from appliance.errors import CallvaultError
from appliance.privacy.rights.model import RightsError
from appliance.privacy.rights.steps import PIPELINES

Form = Annotated[dict[str, str], Body(media_type=RequestEncodingType.URL_ENCODED)]


@dataclass
class ImportForm:
    file: UploadFile


Upload = Annotated[ImportForm, Body(media_type=RequestEncodingType.MULTI_PART)]
UserReq = Request[User, str, Any]
KINDS = ("access", "erasure", "rectification", "restriction", "objection")


def _back(path: str, *, ok: str = "", err: str = "") -> Redirect:
    query = urlencode({k: v for k, v in (("ok", ok), ("err", err)) if v})
    return Redirect(f"{path}?{query}" if query else path, status_code=303)


def _when(ts: float | None) -> str:
    return "" if ts is None else datetime.fromtimestamp(ts).strftime("%Y-%m-%d %H:%M")


def _day(ts: float | None) -> str:
    return "" if ts is None else datetime.fromtimestamp(ts).strftime("%Y-%m-%d")


def _msgs(ok: str, err: str) -> dict[str, str]:
    return {"ok": ok[:300], "err": err[:300]}


# ---- do-not-call
@get("/dnc", guards=[scope("dnc:read")], name="dnc")
async def dnc_page(
    svc: Svc, request: UserReq, ok: FromQuery[str] = "", err: FromQuery[str] = ""
) -> Template:
    user = request.user
    await svc.privacy.audit.record(user.actor, "dnc.view", "dnc", "do-not-call")
    return Template(
        "dnc.html",
        context={"user": user, "entries": await svc.privacy.dnc.entries(), "when": _when,
                 "can_write": "dnc:write" in user.scopes, **_msgs(ok, err)},
    )  # fmt: skip


@post("/dnc", guards=[scope("dnc:write")])
async def dnc_add(data: Form, svc: Svc, request: UserReq) -> Redirect:
    if not data.get("reason", "").strip():
        return _back("/dnc", err="give a reason for the entry")
    try:
        added = await svc.privacy.dnc.add(
            data.get("number", ""), source="admin UI", reason=data["reason"],
            actor=request.user.actor,
        )  # fmt: skip
    except CallvaultError as exc:
        return _back("/dnc", err=str(exc))
    return _back("/dnc", ok="added to the list" if added else "that number was already listed")


@post("/dnc/remove", guards=[scope("dnc:write")])
async def dnc_remove(data: Form, svc: Svc, request: UserReq) -> Redirect:
    try:
        removed = await svc.privacy.dnc.remove(data.get("number", ""), actor=request.user.actor)
    except CallvaultError as exc:
        return _back("/dnc", err=str(exc))
    return _back("/dnc", ok="removed" if removed else "that number was not listed")


@post("/dnc/import", guards=[scope("dnc:write")])
async def dnc_import(data: Upload, svc: Svc, request: UserReq) -> Redirect:
    upload = data.file
    content = await upload.read()
    try:
        report = await svc.privacy.dnc.import_bytes(
            content, upload.filename or "upload", source=f"import {upload.filename}",
            actor=request.user.actor,
        )  # fmt: skip
    except CallvaultError as exc:
        return _back("/dnc", err=str(exc))
    bad = "; ".join(f"line {n}: {why}" for n, why in report.bad[:10])
    more = f" (+{len(report.bad) - 10} more)" if len(report.bad) > 10 else ""
    summary = f"imported: {report.added} added, {report.unchanged} already listed"
    return _back("/dnc", ok=summary, err=f"{len(report.bad)} bad rows: {bad}{more}" if bad else "")


# ---- rights requests
@get("/requests", guards=[scope("rights:read")], name="requests")
async def requests_page(
    svc: Svc, request: UserReq, ok: FromQuery[str] = "", err: FromQuery[str] = ""
) -> Template:
    now = svc.rights.clock()
    rows = [
        {"r": r, "days_left": int((r.due_at - now) // 86400), "overdue": r.overdue(now)}
        for r in await svc.rights.all()
    ]
    return Template(
        "requests.html",
        context={"user": request.user, "rows": rows, "kinds": KINDS, "day": _day,
                 "can_write": "rights:write" in request.user.scopes, **_msgs(ok, err)},
    )  # fmt: skip


@post("/requests", guards=[scope("rights:write")])
async def request_create(data: Form, svc: Svc, request: UserReq) -> Redirect:
    params = None
    if data.get("kind") == "rectification":
        params = {"field": data.get("field", ""), "value": data.get("value", "")}
    try:
        req = await svc.rights.create(
            data.get("kind", ""), data.get("identifier", ""), request.user.actor,
            channel=data.get("channel", "ui") or "ui", params=params,
        )  # fmt: skip
    except CallvaultError as exc:
        return _back("/requests", err=str(exc))
    return _back(f"/requests/{req.id}", ok="request recorded: verify the requester's identity")


@get("/requests/{request_id:int}", guards=[scope("rights:read")], name="request")
async def request_page(
    request_id: RowId,
    svc: Svc,
    request: UserReq,
    *,
    ok: FromQuery[str] = "",
    err: FromQuery[str] = "",
    job: FromQuery[str] = "",
) -> Template:
    req = await svc.rights.get(request_id)
    now = svc.rights.clock()
    running = find_job(request, job[:40]) if job else None
    if running is not None:
        await running.refresh()
    return Template(
        "request.html",
        context={"user": request.user, "req": req, "log": await svc.rights.log(request_id),
                 "job": running, "poll_s": POLL_S,
                 "overdue": req.overdue(now), "days_left": int((req.due_at - now) // 86400),
                 "day": _day, "when": _when, "can_write": "rights:write" in request.user.scopes,
                 "can_export": "rights:export" in request.user.scopes, **_msgs(ok, err)},
    )  # fmt: skip


@post("/requests/{request_id:int}/{action:str}", guards=[scope("rights:write")])
async def request_action(
    request_id: RowId, action: FromPath[str], data: Form, svc: Svc, request: UserReq
) -> Redirect:
    actor = request.user.actor
    here = f"/requests/{request_id}"
    rights = svc.rights
    try:
        if action == "attest":
            await rights.attest(request_id, actor, data.get("note", ""))
            msg = "identity attested: the request can be run"
        elif action == "send-code":
            await rights.send_code(request_id, actor)
            msg = "a one-time code is on its way to the subject's own number"
        elif action == "verify":
            await rights.verify_code(request_id, data.get("code", ""), actor)
            msg = "code accepted: the request can be run"
        elif action == "process":
            return await _process_in_background(request_id, svc, request)
        elif action == "refuse":
            await rights.refuse(request_id, data.get("reason", ""), actor)
            msg = "request refused; the reason is on record"
        elif action == "forward":
            await rights.forward(
                request_id, data.get("controller", ""), data.get("note", ""), actor
            )
            msg = "forwarded, with an access export attached"
        elif action == "extend":
            await rights.extend(request_id, data.get("reason", ""), actor)
            msg = "deadline extended by two months"
        else:
            raise RightsError(f"unknown action {action!r}")
    except CallvaultError as exc:
        return _back(here, err=str(exc))
    return _back(here, ok=msg)


async def _process_in_background(request_id: int, svc: Services, request: UserReq) -> Redirect:
    """Run the request as a job: quick ones answer like a form, long ones (an export of a
    subject with many recorded calls) send the page back with a progress bar."""
    rights, actor, here = svc.rights, request.user.actor, f"/requests/{request_id}"
    kind = (await rights.get(request_id)).kind
    steps = PIPELINES[kind]

    async def work() -> Outcome:
        done = await rights.process(request_id, actor)
        if done.export_path and "rights:export" in request.user.scopes:
            return Outcome(f"request {done.status.value}", f"{here}/export", "download the export")
        return Outcome(f"request {done.status.value}", here, "the request")

    async def probe() -> tuple[int, str]:
        row = await svc.db.rr_get(request_id)
        at = int(row["checkpoint"]) if row else 0
        return at, steps[at][0] if at < len(steps) else "finishing"

    jobs = registry(request.app.state)
    try:
        job = jobs.start(
            "rights.process", str(request_id), f"{kind.value.capitalize()} request #{request_id}",
            request.user.username, work, total=len(steps), probe=probe,
        )  # fmt: skip
    except JobError as exc:
        return _back(here, err=str(exc))
    await jobs.settle(job)
    if job.state == "failed":
        return _back(here, err=job.error)
    if job.state == "done" and job.outcome:
        return _back(here, ok=job.outcome.message)
    return Redirect(f"{here}?{urlencode({'job': job.id})}", status_code=303)


@get("/requests/{request_id:int}/export", guards=[scope("rights:export")])
async def request_export(request_id: RowId, svc: Svc, request: UserReq) -> File:
    req = await svc.rights.get(request_id)
    path = Path(req.export_path) if req.export_path else None
    if path is None or not path.is_file():
        raise RightsError(f"request {request_id} has no export to download")
    await svc.privacy.audit.record(
        request.user.actor, "request.export.download", f"request:{request_id}",
        "data subject request",
    )  # fmt: skip
    return File(path=path, filename=path.name, media_type="application/zip")


# ---- legal holds
@get("/holds", guards=[scope("holds:read")], name="holds")
async def holds_page(
    svc: Svc, request: UserReq, ok: FromQuery[str] = "", err: FromQuery[str] = ""
) -> Template:
    now = time.time()
    return Template(
        "holds.html",
        context={"user": request.user, "holds": await svc.rights.holds.all(), "now": now,
                 "day": _day, "can_write": "holds:write" in request.user.scopes,
                 **_msgs(ok, err)},
    )  # fmt: skip


@post("/holds", guards=[scope("holds:write")])
async def hold_add(data: Form, svc: Svc, request: UserReq) -> Redirect:
    holds, actor = svc.rights.holds, request.user.actor
    expires = data.get("expires", "").strip()
    try:
        expires_at = datetime.strptime(expires, "%Y-%m-%d").timestamp() if expires else None
        if data.get("subject", "").strip():
            ident = svc.privacy.subjects.parse(data["subject"])
            await holds.on_subject(
                ident, actor, reason=data.get("reason", ""), owner=data.get("owner", ""),
                expires_at=expires_at,
            )  # fmt: skip
        else:
            calls = [c.strip() for c in data.get("calls", "").replace(",", " ").split() if c]
            await holds.on_calls(
                calls, actor, reason=data.get("reason", ""), owner=data.get("owner", ""),
                case_ref=data.get("case_ref", ""), expires_at=expires_at,
            )  # fmt: skip
    except ValueError:
        return _back("/holds", err="expiry: use a date like 2027-06-30")
    except CallvaultError as exc:
        return _back("/holds", err=str(exc))
    return _back("/holds", ok="legal hold placed: erasure and retention now skip what it covers")


@post("/holds/{hold_id:int}/release", guards=[scope("holds:write")])
async def hold_release(hold_id: RowId, svc: Svc, request: UserReq) -> Redirect:
    try:
        await svc.rights.holds.release(hold_id, request.user.actor)
    except CallvaultError as exc:
        return _back("/holds", err=str(exc))
    return _back("/holds", ok=f"hold #{hold_id} released")


# ---- the audit log
@get("/audit", guards=[scope("audit:read")], name="audit")
async def audit_page(
    svc: Svc, request: UserReq, after: FromQuery[int] = 0, verify: FromQuery[bool] = False
) -> Template:
    rows = await svc.db.audit_rows(after_seq=after, limit=100)
    result = await svc.privacy.audit.verify() if verify else None
    return Template(
        "audit.html",
        context={"user": request.user, "rows": rows, "when": _when, "verify": result,
                 "next": rows[-1]["seq"] if len(rows) == 100 else None},
    )  # fmt: skip


ROUTES = [
    dnc_page, dnc_add, dnc_remove, dnc_import, requests_page, request_create, request_page,
    request_action, request_export, holds_page, hold_add, hold_release, audit_page,
]  # fmt: skip
