from __future__ import annotations

import jsonschema

from appliance.campaign import outcomes
from appliance.campaign.leads import Leads
from appliance.campaign.outcomes import Outcome, from_report
from appliance.privacy import Privacy
from appliance.privacy.audit import Actor
from appliance.privacy.identifiers import Identifier

OP = Actor("op", "operator")
BASE = {
    "purpose": "sales", "caller_name": None, "contact": {"phone": None, "email": None},
    "need": "a demo", "appointment": None, "follow_up": None, "opt_out": False, "language": "en",
}  # fmt: skip


def test_outcome_from_report() -> None:
    assert from_report(None) == Outcome("answered", "no usable report")
    assert from_report({**BASE, "opt_out": True, "outcome": "interested"}) == Outcome("opt_out")
    slot = {"day": "Tuesday", "date": "2026-12-01", "time": "10:00"}
    assert from_report({**BASE, "appointment": slot}) == Outcome(
        "appointment_booked", "Tuesday 2026-12-01 10:00"
    )
    assert from_report({**BASE, "outcome": "wrong_person"}) == Outcome("wrong_person")
    assert from_report({**BASE, "outcome": "voicemail"}) == Outcome("voicemail")
    assert from_report({**BASE, "outcome": "made-up"}).name == "answered"


def test_campaign_schema_extends_the_default() -> None:
    schema = outcomes.schema()
    jsonschema.validate({**BASE, "outcome": "call_back_later"}, schema)
    assert "outcome" in schema["required"]


async def test_opt_out_lists_stops_and_keeps_data_on_a_keeping_line(privacy: Privacy) -> None:
    leads = Leads(privacy)
    for name in ("a", "b"):
        await leads.import_bytes(
            b"phone,basis\n+46701000001,consent\n+46701000002,consent\n", "x.csv",
            list_name=name, actor=OP,
        )  # fmt: skip
    (row,) = [r for r in await privacy.db.leads(1) if r["source_line"] == 2]
    bi = bytes(row["blind_index"])
    await outcomes.apply_opt_out(privacy, bi, "+46701000001", False, 0.0)
    assert await privacy.dnc.find(Identifier("phone", "+46701000001")) is not None
    assert (await privacy.db.lead(int(row["id"])) or {})["state"] == "active"
    await outcomes.apply_opt_out(privacy, bi, "+46701000001", True, 0.0)  # idempotent
    erased = [r for lid in (1, 2) for r in await privacy.db.leads(lid) if r["state"] == "erased"]
    assert len(erased) == 2  # the number's lead on both lists
    assert all(bytes(r["fields_enc"]) == b"" for r in erased)
