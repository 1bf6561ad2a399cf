"""The ordered steps of each request kind (small, idempotent; see context.run_steps)."""

from __future__ import annotations

import json
from typing import Any

from appliance.privacy.rights import erasure, export
from appliance.privacy.rights.context import Context, Step
from appliance.privacy.rights.model import Kind, RightsError, Status, UnknownSubjectError

RECTIFIABLE = frozenset({"caller_name"})


async def resolve(ctx: Context) -> None:
    """Find the subject; a request about data the box does not hold is refused, not guessed."""
    bi = await ctx.rights.privacy.keyring.blind_index(ctx.ident)
    row = await ctx.rights.db.subject_by_index(bi)
    if row is None:
        raise UnknownSubjectError("the appliance holds no personal data about this subject")
    await ctx.rights.privacy.audit.record(
        ctx.actor, "subject.lookup", f"subject:{row['id']}", f"{ctx.kind} request {ctx.request_id}"
    )
    ctx.state.update(
        subject_id=int(row["id"]),
        blind_index=bi.hex(),
        items=await ctx.rights.db.subject_items(bi),
    )
    ctx.state["_log"] = f"items={len(ctx.state['items'])}"


async def note_identifier(ctx: Context) -> None:
    # Restriction and objection apply to future calls too: no stored data is needed.
    bi = await ctx.rights.privacy.keyring.blind_index(ctx.ident)
    ctx.state["blind_index"] = bi.hex()


async def rectify(ctx: Context) -> None:
    field, value = str(ctx.params["field"]), str(ctx.params["value"])
    if field not in RECTIFIABLE:
        raise RightsError(f"cannot rectify {field!r} (only {', '.join(sorted(RECTIFIABLE))})")
    calls = [
        i["item_id"]
        for i in ctx.state["items"]
        if i["item_type"] == "call" and i["role"] == "caller"
    ]
    db = ctx.rights.db
    updates = [
        (table, row["id"], field, value)
        for table, col in (("calls", "id"), ("cdrs", "call_id"))
        for row in await db.rows_where_in(table, col, calls)
        if row[field] != value
    ]
    entry = await ctx.rights.privacy.audit.entry(
        ctx.actor,
        "subject.rectify",
        f"subject:{ctx.state['subject_id']}",
        f"rectification request {ctx.request_id}",
        f"field={field} rows={len(updates)}",
    )
    ctx.state["rectified_rows"] = await db.set_fields(updates, entry)


async def restrict(ctx: Context) -> None:
    rights = ctx.rights
    entry = await rights.privacy.audit.entry(
        ctx.actor, "subject.restrict", f"request:{ctx.request_id}", "restriction of processing"
    )
    await rights.db.restriction_add(
        bytes.fromhex(ctx.state["blind_index"]),
        ctx.request_id,
        ctx.actor.name,
        rights.clock(),
        entry,
    )


async def object_(ctx: Context) -> None:
    dnc = ctx.rights.privacy.dnc
    if await dnc.find(ctx.ident) is None:
        await dnc.add(
            ctx.ident.value,
            source=f"objection request {ctx.request_id}",
            reason="Art. 21 objection",
            actor=ctx.actor,
        )


def _response(ctx: Context) -> dict[str, Any]:
    kind = Kind(ctx.kind)
    if kind is Kind.ACCESS:
        return {"outcome": "exported", **ctx.state["export"]}
    if kind is Kind.ERASURE:
        return erasure.response(ctx)
    if kind is Kind.RECTIFICATION:
        return {"outcome": "rectified", "rows": ctx.state["rectified_rows"]}
    if kind is Kind.RESTRICTION:
        return {
            "outcome": "restricted",
            "effect": "never dialled; excluded from processing except for legal claims",
        }
    return {"outcome": "opted_out", "effect": "added to the do-not-call list"}


async def respond(ctx: Context) -> None:
    rights = ctx.rights
    final = _response(ctx)
    now = rights.clock()
    await rights.db.rr_update(
        ctx.request_id,
        {
            "status": Status.COMPLETE,
            "response": json.dumps(final),
            "closed_at": now,
            "checkpoint": ctx.step_index + 1,
            "updated_at": now,
        },
        audit=await rights.privacy.audit.entry(
            ctx.actor,
            "request.complete",
            f"request:{ctx.request_id}",
            "data subject request",
            final["outcome"],
        ),
    )
    ctx.state["_committed"] = True


PIPELINES: dict[Kind, list[Step]] = {
    Kind.ACCESS: [("resolve", resolve), ("export", export.write), ("respond", respond)],
    Kind.ERASURE: [
        ("resolve", resolve),
        ("plan", erasure.plan),
        ("apply", erasure.apply),
        ("delete_files", erasure.delete_files),
        ("respond", respond),
    ],
    Kind.RECTIFICATION: [("resolve", resolve), ("rectify", rectify), ("respond", respond)],
    Kind.RESTRICTION: [("identify", note_identifier), ("restrict", restrict), ("respond", respond)],
    Kind.OBJECTION: [("identify", note_identifier), ("opt_out", object_), ("respond", respond)],
}
