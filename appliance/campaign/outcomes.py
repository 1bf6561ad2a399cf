"""A campaign call's outcome, read from its post-call AI report, and what an opt-out does.

A campaign line's report schema may carry an explicit `outcome` (one of model.OUTCOMES, or
`voicemail`; see campaign_report_schema.json); with the built-in schema the outcome follows from
`opt_out` and `appointment`, and a conversation that says neither is `answered`.
"""

from __future__ import annotations

import json
import logging
from dataclasses import dataclass
from importlib import resources
from typing import Any

from appliance.campaign.model import OUTCOMES
from appliance.privacy.audit import Actor
from appliance.privacy.keyring import KeyShreddedError
from appliance.privacy.service import Privacy

log = logging.getLogger(__name__)
DIALLER = Actor.system("campaign-dialler")


@dataclass(frozen=True)
class Outcome:
    name: str
    detail: str = ""
    """No personal data: the appointment slot, or why the outcome is what it is."""


def schema() -> dict[str, Any]:
    """The report schema for campaign lines (the default one plus `outcome`)."""
    text = resources.files(__package__).joinpath("campaign_report_schema.json").read_text()
    doc: dict[str, Any] = json.loads(text)
    return doc


def _slot(appointment: Any) -> str:
    if not isinstance(appointment, dict):
        return ""
    parts = [str(appointment.get(k)) for k in ("day", "date", "time") if appointment.get(k)]
    return " ".join(parts)


def from_report(report: dict[str, Any] | None) -> Outcome:
    if not report:
        return Outcome("answered", "no usable report")
    if report.get("opt_out") is True:
        return Outcome("opt_out")
    slot = _slot(report.get("appointment"))
    named = report.get("outcome")
    if named == "voicemail":
        return Outcome("voicemail")
    if named in OUTCOMES:
        return Outcome(str(named), slot if named == "appointment_booked" else "")
    if slot:
        return Outcome("appointment_booked", slot)
    return Outcome("answered", "the report names no outcome")


async def apply_opt_out(
    privacy: Privacy, blind_index: bytes, number: str | None, line_erases: bool, at: float
) -> None:
    """The number goes on the do-not-call list now (if the post-call pipeline has not put it
    there already), every campaign stops calling it, and on an erasing line the leads' data
    goes, keeping only the blocking entry."""
    db = privacy.db
    if await db.dnc_get(blind_index) is None:
        if number is None:
            # Erased before it was listed: cannot happen through the pipeline (it lists first).
            await privacy.review.flag(
                "opt-out", "campaign", "an opted-out lead's number could not be put on the list"
            )
        else:
            await privacy.dnc.add(number, source="campaign", reason="opted out", actor=DIALLER)
    for row in await db.campaign_leads_for_index(blind_index):
        await db.campaign_lead_stop(
            int(row["campaign_id"]), int(row["lead_id"]), "opt_out", "opted out", at
        )
    if line_erases:
        for lead_id in await db.lead_ids_by_index(blind_index):
            audit = await privacy.audit.entry(
                DIALLER, "lead.erase", f"lead:{lead_id}", "opt-out: erase on request"
            )
            await db.lead_erase(lead_id, audit)


async def read_report(privacy: Privacy, call_id: str) -> dict[str, Any] | bool | None:
    """The call's validated report; None: none yet; False: one exists but is unusable."""
    from appliance.voice.report import ReportVault

    row = await privacy.db.report_for_call(call_id)
    if row is None:
        return None
    if row["status"] != "ok":
        return False
    try:
        view = (
            await ReportVault(privacy.db, privacy).read_rows(
                [row], actor=DIALLER, purpose="campaign outcome", action="report.view"
            )
        )[0]
    except KeyShreddedError:
        return False
    return view.report
