"""Data subject rights reach campaign leads and dialogue bookings: the access export holds the
subject's leads (fields, list, each campaign and attempt with its outcome) and appointments;
an erasure deletes the bookings (a held call keeps its own) and clears the leads' fields."""

from __future__ import annotations

import json
import zipfile
from collections.abc import AsyncIterator, Sequence
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import jsonschema
import pytest
import pytest_asyncio

from appliance.campaign.campaign import Campaigns
from appliance.campaign.leads import Leads
from appliance.campaign.model import Settings
from appliance.privacy import Privacy
from appliance.privacy.keyring import KeyShreddedError
from appliance.privacy.rights import Rights
from appliance.privacy.rights.export import schema
from appliance.store import Database
from appliance.voice.dialogue.calendar import StoreCalendar
from tests.privacy.conftest import make_cfg
from tests.privacy.rights_fixtures import NAME, NATIONAL, NUMBER, OP, done, seed

OTHER = "+46709999999"
EMAIL = "anna@example.se"
SLOT = datetime(2027, 1, 12, 9, 0, tzinfo=UTC)


@pytest_asyncio.fixture
async def env(tmp_path: Path) -> AsyncIterator[tuple[Privacy, Rights, list[Any]]]:
    told: list[Any] = []

    async def mirror(gone: Sequence[tuple[int, str]]) -> None:
        told.append(list(gone))

    cfg = make_cfg(tmp_path)
    async with Database(cfg.database) as db:
        privacy = Privacy(cfg, db)
        yield privacy, Rights(privacy, on_bookings_erased=mirror), told


async def seed_campaign(privacy: Privacy, tmp: Path) -> dict[str, Any]:
    """Her calls (rights_fixtures.seed), her lead and another's on `spring`, a campaign that
    called her (interested), a booking on each of her calls and one of someone else's."""
    seeded = await seed(privacy, tmp)
    inbound, outbound = seeded.calls
    await Leads(privacy).import_bytes(
        f"phone,name,email,basis,notes\n{NUMBER},{NAME},{EMAIL},consent,VIP\n"
        f"{OTHER},Olle Other,,consent,\n".encode(),
        "spring.csv",
        list_name="spring",
        actor=OP,
    )
    camps = Campaigns(privacy)
    cid = await camps.create("c", line="reception", list_name="spring", settings=Settings(),
                             actor=OP)  # fmt: skip
    await camps.act("c", "start", OP)
    hers = {int(r["id"]): r for r in await privacy.db.leads(1)}
    lead = next(i for i, r in hers.items() if int(r["source_line"]) == 2)
    assert await privacy.db.attempt_claim(cid, lead, outbound, 2000.0)
    assert await privacy.db.attempt_finish(
        outbound, state="done", at=2100.0, disposition="ANSWERED", outcome="interested",
        reason="", billable_s=90, lead_state="done", next_at=2100.0, detail="",
    )  # fmt: skip
    cal = StoreCalendar(privacy.db, privacy)
    span = timedelta(minutes=30)
    booked = {}
    for call, start in ((inbound, SLOT), (outbound, SLOT + timedelta(days=1))):
        booked[call] = await cal.book(
            "reception", start, start + span, call_id=call,
            details={"name": NAME, "phone": NATIONAL, "reason": "cleaning"}, caller=NATIONAL,
        )  # fmt: skip
    others = await cal.book(
        "reception", SLOT + timedelta(days=2), SLOT + timedelta(days=2) + span,
        call_id=seeded.other_call, details={"name": "Olle Other", "phone": OTHER}, caller=OTHER,
    )  # fmt: skip
    return {"seeded": seeded, "lead": lead, "booked": booked, "others": others, "cid": cid}


async def test_access_export_holds_her_leads_and_bookings(
    env: tuple[Privacy, Rights, list[Any]], tmp_path: Path
) -> None:
    privacy, rights, _ = env
    s = await seed_campaign(privacy, tmp_path)
    rid = await done(rights, "access")
    req = await rights.get(rid)
    zf = zipfile.ZipFile(req.export_path)
    doc = json.loads(zf.read("records.json"))
    jsonschema.validate(doc, schema())
    (lead,) = doc["leads"]
    assert lead["id"] == s["lead"] and lead["list"] == "spring"
    assert lead["fields"] == {"number": NUMBER, "name": NAME, "email": EMAIL,
                              "extra": {"notes": "VIP"}}  # fmt: skip
    assert (lead["basis"], lead["state"], lead["country"]) == ("consent", "active", "SE")
    (camp,) = lead["campaigns"]
    assert (camp["campaign"], camp["line"], camp["state"], camp["outcome"]) == (
        "c", "reception", "done", "interested",
    )  # fmt: skip
    (att,) = lead["attempts"]
    assert (att["call_id"], att["outcome"], att["billable_s"]) == (
        s["seeded"].calls[1], "interested", 90,
    )  # fmt: skip
    got = {b["id"]: b for b in doc["bookings"]}
    assert set(got) == set(s["booked"].values())  # not the other caller's
    for b in got.values():
        assert b["details"] == {"name": NAME, "phone": NATIONAL, "reason": "cleaning"}
        assert b["status"] == "booked" and b["line"] == "reception"
    text = zf.read("records.json").decode()
    assert OTHER not in text and "Olle" not in text
    summary = zf.read("summary.txt").decode()
    assert "Campaign leads: 1" in summary and "Appointments: 2" in summary
    actions = [r["action"] for r in await privacy.db.audit_rows()]
    assert actions.count("lead.export") == 1 and actions.count("booking.export") == 2


async def test_erasure_deletes_her_bookings_and_clears_her_leads(
    env: tuple[Privacy, Rights, list[Any]], tmp_path: Path
) -> None:
    privacy, rights, told = env
    s = await seed_campaign(privacy, tmp_path)
    rid = await done(rights, "erasure")
    resp = (await rights.get(rid)).response
    assert resp["outcome"] == "erased"
    assert (resp["deleted"]["bookings"], resp["deleted"]["leads"]) == (2, 1)
    left = await privacy.db.bookings(include_cancelled=True)
    assert [b.id for b in left] == [s["others"]]  # the slots she had are free again
    assert sorted(told[0]) == sorted((b, "reception") for b in s["booked"].values())
    row = await privacy.db.lead(s["lead"])
    assert row is not None
    assert (bytes(row["fields_enc"]), row["state"]) == (b"", "erased")
    with pytest.raises(KeyShreddedError):
        await Leads(privacy).open_lead(row)
    # The other lead on the list is untouched and the campaign's counts hold.
    other = next(r for r in await privacy.db.leads(1) if int(r["id"]) != s["lead"])
    assert (await Leads(privacy).open_lead(other)).number == OTHER
    assert (await Campaigns(privacy).report("c"))["leads"] == 2


async def test_erasure_under_hold_keeps_the_held_calls_booking(
    env: tuple[Privacy, Rights, list[Any]], tmp_path: Path
) -> None:
    privacy, rights, told = env
    s = await seed_campaign(privacy, tmp_path)
    inbound, outbound = s["seeded"].calls
    await rights.holds.on_calls([inbound], OP, reason="dispute", owner="legal@example.com")
    rid = await done(rights, "erasure")
    resp = (await rights.get(rid)).response
    assert resp["outcome"] == "erased_with_exceptions"
    assert resp["kept_under_legal_hold"]["bookings"] == 1
    assert resp["deleted"]["bookings"] == 1
    left = {b.id for b in await privacy.db.bookings(include_cancelled=True)}
    assert left == {s["booked"][inbound], s["others"]}
    assert told == [[(s["booked"][outbound], "reception")]]
    # The subject's key stays for the held call, but her lead's fields are gone all the same:
    # the dialler finds the lead erased and never calls it.
    row = await privacy.db.lead(s["lead"])
    assert row is not None and row["subject_id"] is not None
    assert (bytes(row["fields_enc"]), row["state"]) == (b"", "erased")
