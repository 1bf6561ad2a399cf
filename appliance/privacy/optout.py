"""A caller's "don't call me again", said on a call, acted on: the objection is recorded as a
rights request (Art. 21) that puts the number on the do-not-call list, and on lines that say
so (`erase_on_opt_out`) an erasure follows, so only the blocking entry is kept (the promise
LeadPilot's policy makes).

The requester's identity is the call itself: they asked from that number, which the request
log says. Both requests run through `Rights`, so they are audited, have a deadline that is met
at once, and answer with what they did.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass

from appliance.privacy.audit import Actor
from appliance.privacy.rights.service import Rights
from appliance.privacy.service import Privacy

log = logging.getLogger(__name__)
AGENT = Actor.system("voice-agent")


@dataclass(frozen=True)
class OptOutResult:
    objection_id: int | None
    erasure_id: int | None
    reason: str = ""


async def caller_opted_out(privacy: Privacy, call_id: str) -> OptOutResult:
    call = await privacy.db.call(call_id)
    if call is None:
        return OptOutResult(None, None, "the call is no longer stored")
    raw = call.dialed_number if call.direction == "outbound" else call.calling_number
    ident = privacy.subjects.from_caller_id(raw)
    if ident is None or ident.kind != "phone":
        # An internal extension or a withheld number: nobody to put on the list.
        return OptOutResult(None, None, "the other party's number is not known")
    rights = Rights(privacy)
    note = f"asked on call {call_id}, made from/to this number"
    objection = await rights.create("objection", ident.value, AGENT, channel="phone")
    await rights.attest(objection.id, AGENT, note)
    await rights.process(objection.id, AGENT)
    line = privacy.cfg.line_by_name(call.line or "")
    if line is None or not line.erase_on_opt_out:
        log.info("call %s: opt-out recorded (request %d)", call_id, objection.id)
        return OptOutResult(objection.id, None)
    erasure = await rights.create("erasure", ident.value, AGENT, channel="phone")
    await rights.attest(erasure.id, AGENT, note)
    await rights.process(erasure.id, AGENT)
    log.info(
        "call %s: opt-out recorded (request %d), data erased (request %d)",
        call_id, objection.id, erasure.id,
    )  # fmt: skip
    return OptOutResult(objection.id, erasure.id)
