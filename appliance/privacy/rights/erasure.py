"""Erasure (Art. 17): everything the subject's data reached goes — rows, encrypted files (their
keys shredded first), exports made for the subject, consent records, appointments booked for
them or on their calls, their campaign leads' fields — except what a legal hold keeps: those
rows are anonymised (the subject's number and name replaced) and their audio, bookings and the
subject's data key stay until the hold ends. The response says which hold kept what.

A deleted booking's event on a line's office calendar (CalDAV) goes at that calendar's next
sync (its booking is gone), or at once through `Rights(on_bookings_erased=...)`.
"""

from __future__ import annotations

import asyncio
import json
import logging
from pathlib import Path
from typing import Any

from appliance.privacy import tombstones
from appliance.privacy.rights.context import Context
from appliance.store import ErasurePlan

log = logging.getLogger(__name__)
ERASED = "[erased]"
_NUMBER_FIELDS = ("calling_number", "dialed_number")
_CHANNEL_FIELDS = ("channel", "dest_channel")


def _names_subject(ctx: Context, raw: str) -> bool:
    ident = ctx.rights.privacy.subjects.from_caller_id(raw)
    return ident is not None and ident.canonical == ctx.ident.canonical


def _anonymise_row(
    ctx: Context, table: str, row: dict[str, Any]
) -> list[tuple[str, Any, str, str]]:
    out: list[tuple[str, Any, str, str]] = []
    raws = [str(row[f]) for f in _NUMBER_FIELDS if _names_subject(ctx, str(row[f]))]
    for f in _NUMBER_FIELDS:
        if _names_subject(ctx, str(row[f])):
            out.append((table, row["id"], f, ERASED))
    if _names_subject(ctx, str(row["calling_number"])) and row["caller_name"]:
        out.append((table, row["id"], "caller_name", ERASED))
    if table == "cdrs":
        for f in _CHANNEL_FIELDS:
            value = str(row[f])
            for raw in raws:
                value = value.replace(raw, ERASED) if raw else value
            if value != row[f]:
                out.append((table, row["id"], f, value))
    return out


async def plan(ctx: Context) -> None:
    """Decide what goes and what a hold keeps; stored in the state (ids only)."""
    db = ctx.rights.db
    items = ctx.state["items"]
    calls = sorted({i["item_id"] for i in items if i["item_type"] == "call"})
    recs = {int(i["item_id"]) for i in items if i["item_type"] == "recording"}
    recs |= {int(r["id"]) for r in await db.rows_where_in("recordings", "call_id", calls)}
    rec_rows = await db.rows_where_in("recordings", "id", [str(r) for r in sorted(recs)])
    held = await ctx.rights.holds.held_calls()
    keep_calls = [c for c in calls if c in held]
    keep_recs = [int(r["id"]) for r in rec_rows if r["call_id"] in held]
    anonymise = []
    for table, col in (("calls", "id"), ("cdrs", "call_id")):
        for row in await db.rows_where_in(table, col, keep_calls):
            anonymise.extend(_anonymise_row(ctx, table, row))
    exports = [
        str(r["export_path"])
        for r in await db.rr_for_subject(bytes.fromhex(ctx.state["blind_index"]))
        if r["export_path"]
    ]
    # Transcripts go with their calls (ON DELETE CASCADE takes their index rows too); those of
    # a deleted recording whose call stays are deleted after the commit (delete_files).
    talk = sorted(set(calls) | {str(r["call_id"]) for r in rec_rows})
    transcripts = await db.transcripts_for_calls(talk)
    # Reports go with their calls (ON DELETE CASCADE); their links, and subjects only a report
    # named, are removed after the commit (delete_files).
    report_ids = sorted({int(i["item_id"]) for i in items if i["item_type"] == "report"})
    reports = {int(r["id"]): str(r["call_id"]) for r in await db.reports_for_calls(calls)}
    reports.update({int(r["id"]): str(r["call_id"]) for r in await db.reports_by_ids(report_ids)})
    # Bookings sealed under the subject's key or made on their calls; a held call keeps its own.
    bookings = await db.bookings_for_subject(int(ctx.state["subject_id"]), calls)
    ctx.state["plan"] = {
        "delete_bookings": [[b.id, b.line] for b in bookings if b.call_id not in held],
        "keep_bookings": [b.id for b in bookings if b.call_id in held],
        # Their fields go whatever a hold keeps (held calls are anonymised the same way).
        "erase_leads": sorted({int(i["item_id"]) for i in items if i["item_type"] == "lead"}),
        "delete_reports": sorted(r for r, call in reports.items() if call not in held),
        "keep_reports": sorted(r for r, call in reports.items() if call in held),
        "delete_transcripts": [int(t["id"]) for t in transcripts if t["call_id"] not in held],
        "keep_transcripts": [int(t["id"]) for t in transcripts if t["call_id"] in held],
        "delete_calls": [c for c in calls if c not in held],
        "delete_recordings": [int(r["id"]) for r in rec_rows if r["call_id"] not in held],
        "keep_calls": keep_calls,
        "keep_recordings": keep_recs,
        "anonymise": anonymise,
        "files": [str(r["path"]) for r in rec_rows if r["call_id"] not in held] + exports,
        "holds": sorted({held[c].describe() for c in keep_calls}),
    }
    ctx.state["_log"] = (
        f"calls={len(calls)} recordings={len(rec_rows)} held_calls={len(keep_calls)}"
    )


async def apply(ctx: Context) -> None:
    """One transaction: rows deleted or anonymised, the data key shredded, checkpoint moved."""
    p = ctx.state["plan"]
    rights = ctx.rights
    counts_note = {"calls": len(p["delete_calls"]), "recordings": len(p["delete_recordings"])}
    ctx.state["applied"] = True
    erasure = ErasurePlan(
        subject_id=int(ctx.state["subject_id"]),
        blind_index=bytes.fromhex(ctx.state["blind_index"]),
        request_id=ctx.request_id,
        at=rights.clock(),
        delete_calls=p["delete_calls"],
        delete_recordings=p["delete_recordings"],
        anonymise=[tuple(a) for a in p["anonymise"]],
        keep_calls=p["keep_calls"],
        keep_recordings=p["keep_recordings"],
        drop_subject=not p["keep_recordings"] and not p["keep_calls"],
        request_changes={
            "checkpoint": ctx.step_index + 1,
            "response": json.dumps(ctx.state),
            "updated_at": rights.clock(),
        },
    )
    entry = await rights.privacy.audit.entry(
        ctx.actor,
        "subject.erase",
        f"subject:{erasure.subject_id}",
        f"erasure request {ctx.request_id}",
        json.dumps({**counts_note, "held_calls": len(p["keep_calls"])}),
    )
    # Journalled outside the database before the commit: a restored backup, which still
    # holds the subject's key, is erased again from it (appliance.privacy.tombstones).
    await asyncio.to_thread(
        tombstones.append,
        tombstones.journal_path(rights.cfg),
        erasure.blind_index,
        erasure.at,
        ctx.request_id,
    )
    ctx.state["counts"] = await rights.db.erase(erasure, entry)
    ctx.state["_committed"] = True


async def delete_files(ctx: Context) -> None:
    """After the keys are gone: remove the ciphertext and the subject's exports (idempotent)."""
    removed = 0
    for name in ctx.state["plan"]["files"]:
        path = Path(name)
        if await asyncio.to_thread(path.exists):
            await asyncio.to_thread(path.unlink)
            removed += 1
    # Idempotent: the rest of the transcripts, and the search index merged so no index
    # segment still lists the deleted rows' tokens.
    if ctx.state["plan"].get("delete_transcripts"):
        await ctx.rights.db.delete_transcripts(ctx.state["plan"]["delete_transcripts"])
    if ctx.state["plan"].get("delete_reports"):
        await ctx.rights.db.delete_reports(ctx.state["plan"]["delete_reports"])
    await _bookings_and_leads(ctx)
    ctx.state["files_removed"] = removed
    ctx.state["_log"] = f"files={removed}"


async def _bookings_and_leads(ctx: Context) -> None:
    """Idempotent, after the commit like transcripts and reports: the subject's bookings (rows
    and sealed details) and their leads' fields (the lead row and its blind index stay, as on
    an opt-out, so a campaign's counts hold)."""
    rights = ctx.rights
    plan = ctx.state["plan"]
    gone = [(int(b), str(line)) for b, line in plan.get("delete_bookings", [])]
    for booking_id, _line in gone:
        await rights.db.delete_booking(booking_id)
    if gone and rights.on_bookings_erased is not None:
        try:
            await rights.on_bookings_erased(gone)
        except Exception:  # the office calendar drops them at its next sync anyway
            log.exception("request %d: the booking mirror failed", ctx.request_id)
    for lead_id in plan.get("erase_leads", []):
        row = await rights.db.lead(int(lead_id))
        if row is None or row["state"] == "erased":
            continue
        audit = await rights.privacy.audit.entry(
            ctx.actor, "lead.erase", f"lead:{lead_id}", f"erasure request {ctx.request_id}"
        )
        await rights.db.lead_erase(int(lead_id), audit)


def response(ctx: Context) -> dict[str, Any]:
    p = ctx.state["plan"]
    kept = bool(p["keep_calls"])
    out: dict[str, Any] = {
        "outcome": "erased_with_exceptions" if kept else "erased",
        "deleted": {
            "calls": len(p["delete_calls"]),
            "recordings": len(p["delete_recordings"]),
            "transcripts": len(p.get("delete_transcripts", [])),
            "reports": len(p.get("delete_reports", [])),
            "bookings": len(p.get("delete_bookings", [])),
            "leads": len(p.get("erase_leads", [])),
            "files": len(p["files"]),
            "rows": ctx.state.get("counts", {}),
        },
    }
    if kept:
        out["kept_under_legal_hold"] = {
            "calls": len(p["keep_calls"]),
            "recordings": len(p["keep_recordings"]),
            "transcripts": len(p.get("keep_transcripts", [])),
            "reports": len(p.get("keep_reports", [])),
            "bookings": len(p.get("keep_bookings", [])),
            "holds": p["holds"],
            "why": (
                "A legal hold requires these records to be kept. Your number and name were "
                "removed from them (anonymised); the call records and audio stay, encrypted and "
                "restricted to the legal claim, and are erased when the hold ends."
            ),
        }
    return out
