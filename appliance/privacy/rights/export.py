"""Access and portability (Art. 15, 20): one ZIP with everything about the subject.

    records.json    every record, validated against access_export.schema.json (shipped),
                    with the call transcripts (per leg: segments, words and their timings),
                    the post-call reports (decrypted, with their status), the campaign leads
                    (the lead lists the subject is on, their fields, each campaign and every
                    dial attempt with its outcome) and the appointments booked on calls
    calls.csv, cdrs.csv, recordings.csv, consents.csv   the same rows as CSV
    audio/<id>-<leg>.wav                                 decrypted recordings
    summary.txt     what the file holds, in words
    manifest.json   sha256 and size of every other file

Written as `<name>.part` and renamed, so a failure (a full disk) leaves no partial export;
every recording, transcript, report, lead and booking read is audited as `recording.export` /
`transcript.export` / `report.export` / `lead.export` / `booking.export`.
"""

from __future__ import annotations

import asyncio
import csv
import hashlib
import io
import json
import logging
import os
import re
import zipfile
from dataclasses import dataclass, field
from datetime import UTC
from importlib import resources
from pathlib import Path
from typing import Any, BinaryIO

from appliance.privacy.rights.context import Context

SCHEMA_NAME = "access_export.schema.json"
FORMAT = "callvault-access-export/1"
_CALL_COLS = (
    "id",
    "line",
    "direction",
    "calling_number",
    "caller_name",
    "dialed_number",
    "started_at",
    "answered_at",
    "ended_at",
    "disposition",
)
_CDR_COLS = (
    "call_id",
    "calling_number",
    "caller_name",
    "dialed_number",
    "direction",
    "line",
    "start_at",
    "answer_at",
    "end_at",
    "duration_s",
    "billable_s",
    "disposition",
    "hangup_cause_text",
)
_REC_COLS = ("id", "call_id", "line", "leg", "duration_s", "size_bytes", "sha256")
log = logging.getLogger(__name__)
_CONSENT_COLS = ("call_id", "line", "decision", "method", "prompt", "asked_at", "decided_at")
_LEAD_CAMPAIGN_COLS = ("campaign", "line", "state", "attempts", "outcome", "detail", "updated_at")
_ATTEMPT_COLS = ("campaign", "call_id", "state", "claimed_at", "ended_at", "disposition",
                 "outcome", "reason", "billable_s")  # fmt: skip


def schema() -> dict[str, Any]:
    text = resources.files("appliance.privacy.rights").joinpath(SCHEMA_NAME).read_text()
    return dict(json.loads(text))


@dataclass
class _Zip:
    zf: zipfile.ZipFile
    manifest: list[dict[str, Any]] = field(default_factory=list)

    def add(self, name: str, data: bytes) -> None:
        self.zf.writestr(name, data)
        self.manifest.append(
            {"path": name, "sha256": hashlib.sha256(data).hexdigest(), "bytes": len(data)}
        )


def _pick(rows: list[dict[str, Any]], cols: tuple[str, ...]) -> list[dict[str, Any]]:
    return [{c: r.get(c) for c in cols} for r in rows]


# Caller ID names (and so CDR cells) are chosen by whoever calls: a cell a spreadsheet would run
# as a formula (=, @, +/- not followed by a number, a leading tab/CR) is written with a leading
# apostrophe (OWASP CSV injection). Phone numbers (+46…) and negative numbers stay as they are.
_NUMBER_LIKE = re.compile(r"^[+-]?[0-9][0-9 ().,/-]*$")


def _cell(value: Any) -> Any:
    if not isinstance(value, str) or not value:
        return value
    if value[0] in "=@\t\r" or (value[0] in "+-" and not _NUMBER_LIKE.match(value)):
        return "'" + value
    return value


def _csv(rows: list[dict[str, Any]], cols: tuple[str, ...]) -> bytes:
    buf = io.StringIO(newline="")
    w = csv.DictWriter(buf, fieldnames=list(cols))
    w.writeheader()
    w.writerows({k: _cell(v) for k, v in row.items()} for row in rows)
    return buf.getvalue().encode()


async def _audio(ctx: Context, out: _Zip, rec: dict[str, Any]) -> str:
    from appliance.telephony.recordings import RecordingStore  # telephony imports privacy

    rights = ctx.rights
    store = RecordingStore(Path(), rights.cfg.recordings_dir, rights.db, rights.privacy)
    name = f"audio/{rec['id']}-{rec['leg']}.wav"
    digest, size = hashlib.sha256(), 0
    with out.zf.open(name, "w", force_zip64=True) as fh:
        async for chunk in store.open_recording(
            rec,
            actor=ctx.actor,
            purpose=f"access request {ctx.request_id}",
            action="recording.export",
        ):
            await asyncio.to_thread(fh.write, chunk)
            digest.update(chunk)
            size += len(chunk)
    out.manifest.append({"path": name, "sha256": digest.hexdigest(), "bytes": size})
    return name


async def _transcripts(ctx: Context, call_ids: set[str]) -> list[dict[str, Any]]:
    from appliance.voice.transcripts import TranscriptVault  # voice imports privacy

    rights = ctx.rights
    rows = await rights.db.transcripts_for_calls(sorted(call_ids))
    read = await TranscriptVault(rights.db, rights.privacy).read_rows(
        rows,
        actor=ctx.actor,
        purpose=f"access request {ctx.request_id}",
        action="transcript.export",
    )
    return [{"id": t.id, "created_at": t.created_at, **t.doc()} for t in read]


async def _reports(ctx: Context, call_ids: set[str]) -> list[dict[str, Any]]:
    from appliance.voice.report import ReportVault  # voice imports privacy

    rights = ctx.rights
    rows = await rights.db.reports_for_calls(sorted(call_ids))
    read = await ReportVault(rights.db, rights.privacy).read_rows(
        rows, actor=ctx.actor, purpose=f"access request {ctx.request_id}", action="report.export"
    )
    return [r.doc() for r in read]


async def _leads(ctx: Context, lead_ids: list[int]) -> list[dict[str, Any]]:
    """The subject's campaign leads: fields (decrypted; none once erased), list, and for each
    campaign the lead's state and outcome and every attempt."""
    from appliance.campaign.leads import Leads  # campaign imports privacy
    from appliance.privacy.keyring import KeyShreddedError

    rights = ctx.rights
    db = rights.db
    campaigns = await db.lead_campaigns(lead_ids)
    attempts = await db.lead_attempts(lead_ids)
    leads = Leads(rights.privacy)
    out = []
    for row in await db.leads_by_ids(lead_ids):
        lid = int(row["id"])
        fields: dict[str, Any] | None
        try:
            lead = await leads.open_lead(row)
            fields = {"number": lead.number, "name": lead.name, "email": lead.email,
                      "extra": lead.extra}  # fmt: skip
        except KeyShreddedError:
            fields = None
        await rights.privacy.audit.record(
            ctx.actor, "lead.export", f"lead:{lid}", f"access request {ctx.request_id}"
        )
        out.append(
            {
                "id": lid, "list": str(row["list_name"]), "fields": fields,
                "country": str(row["country"]),
                "timezones": [z for z in str(row["timezone"]).split(",") if z],
                "basis": str(row["basis"]), "state": str(row["state"]),
                "imported_at": float(row["created_at"]),
                "campaigns": [
                    {k: c[k] for k in _LEAD_CAMPAIGN_COLS}
                    for c in campaigns if int(c["lead_id"]) == lid
                ],
                "attempts": [
                    {k: a[k] for k in _ATTEMPT_COLS} for a in attempts if int(a["lead_id"]) == lid
                ],
            }
        )  # fmt: skip
    return out


async def _bookings(ctx: Context, call_ids: list[str]) -> list[dict[str, Any]]:
    """Appointments booked for the subject or on their calls, with what they gave (opened
    under their key; {} when a subject it was sealed under was erased)."""
    from appliance.voice.dialogue.calendar import StoreCalendar  # voice imports privacy

    rights = ctx.rights
    rows = await rights.db.bookings_for_subject(int(ctx.state["subject_id"]), call_ids)
    calendar = StoreCalendar(rights.db, rights.privacy)
    out = []
    for row in rows:
        booking = await calendar.read(row, UTC)
        await rights.privacy.audit.record(
            ctx.actor, "booking.export", f"booking:{row.id}", f"access request {ctx.request_id}"
        )
        out.append(
            {
                "id": row.id, "line": row.line, "starts_at": row.starts_at,
                "ends_at": row.ends_at, "status": row.status, "call_id": row.call_id,
                "created_at": row.created_at, "details": booking.details,
            }
        )  # fmt: skip
    return out


def _summary(ctx: Context, doc: dict[str, Any]) -> bytes:
    lines = [
        f"Callvault: personal data held about {ctx.ident.value}",
        f"Request {ctx.request_id} (access / portability), generated {doc['generated_at']}",
        "",
        f"Calls: {len(doc['calls'])} (call details: calls.csv, cdrs.csv)",
        f"Recordings: {len(doc['recordings'])} (audio/*.wav, 8 kHz mono WAV)",
        f"Consent records: {len(doc['consents'])} (consents.csv)",
        f"Transcripts: {len(doc['transcripts'])} (records.json, one per recorded side of a call)",
        f"Call reports: {len(doc['reports'])} (records.json, written by the local AI after a call)",
        f"Campaign leads: {len(doc['leads'])} (records.json: the lead lists you are on, the "
        "campaigns that called you, every call attempt and its outcome)",
        f"Appointments: {len(doc['bookings'])} (records.json, booked on calls)",
        f"On the do-not-call list: {'yes' if doc['do_not_call'] else 'no'}",
        f"Processing restricted: {'yes' if doc['restricted'] else 'no'}",
        "",
        "Purposes: answering and placing calls for the operator of this appliance; keeping",
        "call records and recordings as configured per line. Recipients: none; nothing leaves",
        "the appliance. records.json holds every record in a machine-readable form (schema:",
        f"{SCHEMA_NAME}); manifest.json lists the sha256 of every file.",
    ]
    return ("\n".join(lines) + "\n").encode()


def _open_sync(path: Path) -> tuple[BinaryIO, zipfile.ZipFile]:
    fh = os.fdopen(os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600), "wb")
    return fh, zipfile.ZipFile(fh, "w", compression=zipfile.ZIP_STORED)


def _finish_sync(fh: BinaryIO, zf: zipfile.ZipFile, tmp: Path, dest: Path) -> None:
    zf.close()
    fh.flush()
    os.fsync(fh.fileno())
    fh.close()
    tmp.replace(dest)


async def write(ctx: Context) -> None:
    rights = ctx.rights
    db = rights.db
    calls = sorted({i["item_id"] for i in ctx.state["items"] if i["item_type"] == "call"})
    leads = sorted({int(i["item_id"]) for i in ctx.state["items"] if i["item_type"] == "lead"})
    rec_ids = {i["item_id"] for i in ctx.state["items"] if i["item_type"] == "recording"}
    recs = {r["id"]: r for r in await db.rows_where_in("recordings", "id", sorted(rec_ids))}
    recs.update({r["id"]: r for r in await db.rows_where_in("recordings", "call_id", calls)})
    bi = bytes.fromhex(ctx.state["blind_index"])
    doc: dict[str, Any] = {
        "format": FORMAT,
        "request_id": ctx.request_id,
        "generated_at": rights.clock(),
        "subject": {"kind": ctx.ident.kind, "identifier": ctx.ident.value},
        "calls": _pick(await db.rows_where_in("calls", "id", calls), _CALL_COLS),
        "cdrs": _pick(await db.rows_where_in("cdrs", "call_id", calls), _CDR_COLS),
        "recordings": [],
        "consents": _pick(await db.rows_where_in("consents", "call_id", calls), _CONSENT_COLS),
        "transcripts": await _transcripts(ctx, {*calls, *(r["call_id"] for r in recs.values())}),
        "reports": await _reports(ctx, set(calls)),
        "leads": await _leads(ctx, leads),
        "bookings": await _bookings(ctx, calls),
        "do_not_call": await rights.privacy.dnc.find(ctx.ident) is not None,
        "restricted": await db.restriction_get(bi) is not None,
    }
    rights.exports_dir.mkdir(parents=True, exist_ok=True, mode=0o700)
    dest = rights.exports_dir / f"request-{ctx.request_id}.zip"
    tmp = dest.with_name(dest.name + ".part")
    fh, zf = await asyncio.to_thread(_open_sync, tmp)
    try:
        out = _Zip(zf)
        for rec in sorted(recs.values(), key=lambda r: int(r["id"])):
            name = await _audio(ctx, out, rec)
            doc["recordings"].append({**_pick([rec], _REC_COLS)[0], "file": name})
        out.add("records.json", json.dumps(doc, indent=2).encode())
        out.add("calls.csv", _csv(doc["calls"], _CALL_COLS))
        out.add("cdrs.csv", _csv(doc["cdrs"], _CDR_COLS))
        out.add("recordings.csv", _csv(_pick(doc["recordings"], _REC_COLS), _REC_COLS))
        out.add("consents.csv", _csv(doc["consents"], _CONSENT_COLS))
        out.add("summary.txt", _summary(ctx, doc))
        zf.writestr(
            "manifest.json", json.dumps({"format": FORMAT, "files": out.manifest}, indent=2)
        )
        await asyncio.to_thread(_finish_sync, fh, zf, tmp, dest)
    except BaseException:
        await asyncio.to_thread(_discard, fh, zf, tmp)
        raise
    ctx.state["export_path"] = str(dest)
    ctx.state["export"] = {
        "files": len(out.manifest),
        "recordings": len(doc["recordings"]),
        "calls": len(doc["calls"]),
    }
    await rights.privacy.audit.record(
        ctx.actor,
        "subject.export",
        f"subject:{ctx.state['subject_id']}",
        f"access request {ctx.request_id}",
        f"files={len(out.manifest)}",
    )
    await db.rr_update(ctx.request_id, {"export_path": str(dest)})
    ctx.state["_log"] = f"files={len(out.manifest)}"


def _discard(fh: BinaryIO, zf: zipfile.ZipFile, tmp: Path) -> None:
    # A full disk can make close() fail too; the partial file goes either way.
    try:
        zf.close()
    except (OSError, ValueError) as exc:
        log.info("discarding a failed export: %s", exc)
    try:
        fh.close()
    except OSError as exc:
        log.info("discarding a failed export: %s", exc)
    tmp.unlink(missing_ok=True)
