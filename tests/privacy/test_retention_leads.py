"""Retention of campaign leads and dialogue bookings (categories `lead` and `booking`, both
under the contact period): age from the last listing/attempt and from the appointment's end,
stubs for leads a campaign counts, the do-not-call list untouched, legal holds, counts and
deletion records, and the hook a booking mirror (CalDAV) hears purged bookings through."""

from __future__ import annotations

import json
from collections.abc import AsyncIterator, Mapping, Sequence
from pathlib import Path

import pytest
import pytest_asyncio

from appliance.campaign.campaign import Campaigns
from appliance.campaign.leads import Leads
from appliance.campaign.model import Settings
from appliance.privacy import Actor, Privacy
from appliance.privacy.identifiers import Identifier
from appliance.privacy.retention import PlanItem, Retention, RetentionError
from appliance.store import AuditEntry, AuditSeal, Database
from tests.privacy.retention_sim import DAY, T0, Clock, Sim, make_cfg

OP = Actor("op", "operator")
CONTACT_DAYS = 300
A = ("+46701000001", "+46701000002", "+46701000003")  # list `spring`, called by a campaign
B = "+46701000004"  # list `cold`, no campaign


@pytest_asyncio.fixture
async def sim(tmp_path: Path) -> AsyncIterator[Sim]:
    cfg = make_cfg(tmp_path, days={"contact": CONTACT_DAYS})
    async with Database(cfg.database) as db:
        yield Sim(Privacy(cfg, db), Clock())


def csv(*numbers: str) -> bytes:
    return ("phone,name,basis\n" + "".join(f"{n},N{n[-2:]},consent\n" for n in numbers)).encode()


async def lead_id(s: Sim, number: str, list_name: str) -> int:
    bi = await s.privacy.keyring.blind_index(Identifier("phone", number))
    lst = await s.db.lead_list(list_name)
    rows = await s.rows(
        "SELECT id FROM leads WHERE blind_index = ? AND list_id = ?", (bi, int(lst["id"]))
    )
    return int(rows[0][0])


async def seed_leads(s: Sim) -> dict[str, int]:
    """spring (A, a campaign on `sales`) and cold (B) imported at T0; A[1] dialled at
    T0+100d; A[2] listed again at T0+200d; A[0] opted out (on the DNC list)."""
    leads = Leads(s.privacy, clock=s.clock)
    await leads.import_bytes(csv(*A), "a.csv", list_name="spring", actor=OP)
    await leads.import_bytes(csv(B), "b.csv", list_name="cold", actor=OP)
    await s.stamp(T0)
    camps = Campaigns(s.privacy, clock=s.clock)
    cid = await camps.create("c", line="sales", list_name="spring", settings=Settings(), actor=OP)
    await camps.act("c", "start", OP)
    ids = {n: await lead_id(s, n, "spring") for n in A} | {B: await lead_id(s, B, "cold")}
    t = T0 + 100 * DAY
    assert await s.db.attempt_claim(cid, ids[A[1]], "call-a1", t)
    assert await s.db.attempt_finish(
        "call-a1", state="done", at=t + 60, disposition="ANSWERED", outcome="call_back_later",
        reason="", billable_s=50, lead_state="pending", next_at=t + DAY, detail="",
    )  # fmt: skip
    s.clock.now = T0 + 200 * DAY
    again = await leads.import_bytes(csv(A[2]), "a2.csv", list_name="spring", actor=OP)
    assert (again.imported, again.unchanged) == (0, 1)
    await s.privacy.dnc.add(A[0], source="campaign", reason="opted out", actor=OP)
    return ids


async def test_leads_expire_from_their_last_listing_or_attempt(sim: Sim) -> None:
    ids = await seed_leads(sim)
    links_before = await sim.rows("SELECT item_id FROM subject_links WHERE item_type = 'lead'")
    assert len(links_before) == 4
    # T0 + 350 d: A[0] and B are 350 days old; A[1] 250 (its attempt); A[2] 150 (re-listed).
    now = T0 + 350 * DAY
    plan = await sim.retention().plan(now)
    leads = {(i.key, i.action) for i in plan.items if i.category == "lead"}
    assert leads == {(ids[A[0]], "anonymise"), (ids[B], "delete")}
    res = await sim.retention().run(now)
    assert res.counts["lead"].as_dict() == {"deleted": 1, "anonymised": 1, "held": 0}
    # B's lead row is gone; A[0] is a stub the campaign still counts, with nothing in it.
    assert await sim.db.lead(ids[B]) is None
    stub = await sim.db.lead(ids[A[0]])
    assert stub is not None
    a0 = await sim.privacy.keyring.blind_index(Identifier("phone", A[0]))
    assert (bytes(stub["fields_enc"]), stub["subject_id"], stub["state"]) == (b"", None, "erased")
    assert stub["purged_at"] == now and bytes(stub["blind_index"]) != a0
    rep = await Campaigns(sim.privacy).report("c")
    assert rep["leads"] == 3
    # Their subject links went, and with them the subjects nothing else links to (contact).
    left = {r[0] for r in await sim.rows("SELECT item_id FROM subject_links")}
    assert left == {str(ids[A[1]]), str(ids[A[2]])}
    assert await sim.subject_id(B) is None and await sim.subject_id(A[0]) is None
    # The do-not-call entry stays: the opted-out number is still refused at import.
    assert await sim.privacy.dnc.find(Identifier("phone", A[0])) is not None
    sim.clock.now = now + DAY
    again = await Leads(sim.privacy, clock=sim.clock).import_bytes(
        csv(A[0], B), "again.csv", list_name="spring", actor=OP
    )
    assert again.bad == [(2, "on the do-not-call list")] and again.imported == 1
    # The deletion records: category, counts and policy, no ids or numbers.
    records = [
        json.loads(str(r[0]))
        for r in await sim.rows(
            "SELECT detail FROM audit_log WHERE action = 'retention.purge'"
            " AND object = 'retention:lead'"
        )
    ]
    assert sorted((r.get("deleted", 0), r.get("anonymised", 0)) for r in records) == [
        (0, 1),
        (1, 0),
    ]
    assert all(r["policy_days"]["default"] == CONTACT_DAYS for r in records)
    assert not any(A[0] in t or B in t for t in await sim.audit_texts())
    # A second run at the same instant finds nothing more (stubs are not planned again).
    assert [i for i in (await sim.retention().plan(now)).items if i.category == "lead"] == []


async def test_holds_keep_leads(sim: Sim) -> None:
    ids = await seed_leads(sim)
    # A case hold on A[1]'s campaign call, and a subject hold on A[2]'s number.
    call_hold = await sim.hold_calls(["call-a1"], T0 + 300 * DAY, expires=None)
    subject_hold = await sim.hold_subject(A[2], T0 + 300 * DAY, expires=T0 + 700 * DAY)
    now = T0 + 600 * DAY  # every lead is past the period
    plan = await sim.retention().plan(now)
    got = {(i.key, i.action, i.hold) for i in plan.items if i.category == "lead"}
    assert got == {
        (ids[A[0]], "anonymise", None),
        (ids[A[1]], "hold", call_hold),
        (ids[A[2]], "hold", subject_hold),
        (ids[B], "delete", None),
    }
    res = await sim.retention().run(now)
    assert res.counts["lead"].as_dict() == {"deleted": 1, "anonymised": 1, "held": 2}
    for n in A[1:]:
        row = await sim.db.lead(ids[n])
        assert row is not None and bytes(row["fields_enc"]) != b""
        assert (await Leads(sim.privacy).open_lead(row)).number == n
    # The subject hold ends; the call hold stays.
    res = await sim.retention().run(T0 + 701 * DAY)
    assert [k for c, k, _ in res.done if c == "lead"] == [ids[A[2]]]
    assert res.counts["lead"].held == 1


async def test_the_purge_rechecks_leads_in_its_transaction(sim: Sim) -> None:
    """What changed between the plan and its batch wins: a lead dialled since, or one a
    campaign started counting, is not purged as planned."""
    ids = await seed_leads(sim)
    now = T0 + 350 * DAY
    plan = await sim.retention().plan(now)
    items = {i.key: i.expired() for i in plan.items if i.category == "lead"}
    seal = await sim.privacy.audit.sealer()

    def record(counts: Mapping[str, int]) -> tuple[AuditEntry, AuditSeal]:
        return AuditEntry(now, "t", "system", "retention.purge", "retention:lead", "p"), seal

    # B (planned: delete) now counted by a new campaign; A[0] (planned: stub) dialled again.
    sim.clock.now = now
    await Campaigns(sim.privacy, clock=sim.clock).create(
        "cold-c", line="sales", list_name="cold", settings=Settings(), actor=OP
    )
    assert await sim.db.attempt_claim(1, ids[A[0]], "call-a0", now)
    gone = await sim.db.retention_purge_leads([items[ids[B]]], stub=False, at=now, record=record)
    assert (gone.done, dict(gone.held)) == ((), {ids[B]: 0})
    gone = await sim.db.retention_purge_leads([items[ids[A[0]]]], stub=True, at=now, record=record)
    assert (gone.done, dict(gone.held)) == ((), {ids[A[0]]: 0})
    for n in (A[0], B):
        row = await sim.db.lead(ids[n])
        assert row is not None and bytes(row["fields_enc"]) != b""
    # The next run stubs B (a campaign counts it now) and leaves A[0] (its attempt is new).
    res = await sim.retention().run(now)
    assert [(k, a) for c, k, a in res.done if c == "lead"] == [(ids[B], "anonymise")]


async def booking(s: Sim, line: str, start: float, subjects: Sequence[int], call: str) -> int:
    bid = await s.db.add_booking(
        line=line, starts_at=start, ends_at=start + 1800, call_id=call,
        details_enc=b"CVB1 sealed", key_subjects=list(subjects),
    )  # fmt: skip
    # The store stamps bookings with the wall clock: give this one the simulated time.
    await s.db.db.execute("UPDATE bookings SET created_at = ? WHERE id = ?", (s.clock.now, bid))
    await s.db.db.commit()
    return bid


async def test_bookings_expire_after_the_appointment_and_tell_the_mirror(sim: Sim) -> None:
    call = await sim.call(T0)
    sid = sorted(sim.call_subjects[call])[0]
    past = await booking(sim, "reception", T0 + 2 * DAY, [sid], call)
    # Booked at T0 for an appointment a year and a half on: not expired while it is ahead.
    later = await booking(sim, "reception", T0 + 500 * DAY, [sid], call)
    other = await booking(sim, "sales", T0 + 3 * DAY, [sid], "")
    assert await sim.db.cancel_booking(other)
    await sim.db.caldav_written(booking_id=past, line="reception", uid="cv-past")
    told: list[list[PlanItem]] = []

    async def mirror(items: Sequence[PlanItem]) -> None:
        told.append(list(items))

    now = T0 + (CONTACT_DAYS + 10) * DAY
    r = Retention.of(sim.privacy, clock=sim.clock, on_purged={"booking": mirror})
    plan = await r.plan(now)
    assert [(i.key, i.line) for i in plan.items if i.category == "booking"] == [
        (past, "reception"),
        (other, "sales"),
    ]
    res = await r.run(now)
    assert res.counts["booking"].as_dict() == {"deleted": 2, "anonymised": 0, "held": 0}
    assert [b.id for b in await sim.db.bookings(include_cancelled=True)] == [later]
    assert [[(i.key, i.line) for i in batch] for batch in told] == [
        [(past, "reception"), (other, "sales")]
    ]
    # The CalDAV row stays until the line's sync deletes the event from the office calendar.
    assert await sim.db.caldav_stale("reception") == [(past, "cv-past")]
    (record,) = await sim.rows("SELECT detail FROM audit_log WHERE object = 'retention:booking'")
    assert json.loads(str(record[0]))["deleted"] == 2
    # The appointment ahead goes the contact period after it ended.
    res = await r.run(T0 + 500 * DAY + (CONTACT_DAYS + 1) * DAY)
    assert ("booking", later, "delete") in res.done


async def test_holds_keep_bookings_and_a_failing_mirror_does_not_fail_the_run(sim: Sim) -> None:
    call = await sim.call(T0)
    sid = sorted(sim.call_subjects[call])[0]
    on_call = await booking(sim, "reception", T0 + DAY, [sid], call)
    plain = await booking(sim, "reception", T0 + 2 * DAY, [sid], "")
    hold = await sim.hold_calls([call], T0 + 5 * DAY, expires=None)

    async def broken(_items: Sequence[PlanItem]) -> None:
        raise ConnectionError("CalDAV server down")

    r = Retention.of(sim.privacy, clock=sim.clock, on_purged={"booking": broken})
    res = await r.run(T0 + (CONTACT_DAYS + 10) * DAY)
    assert res.counts["booking"].as_dict() == {"deleted": 1, "anonymised": 0, "held": 1}
    assert {i.key: i.hold for i in res.plan.items if i.category == "booking"} == {
        on_call: hold,
        plain: None,
    }
    assert [b.id for b in await sim.db.bookings()] == [on_call]
    with pytest.raises(RetentionError, match="no category 'bookings'"):
        Retention.of(sim.privacy, on_purged={"bookings": broken})


async def test_policy_of_leads_and_bookings_is_the_contact_figure(sim: Sim) -> None:
    p = sim.retention().policies
    assert p.days("lead", None) == p.days("booking", "reception") == CONTACT_DAYS
    d = p.describe("lead")
    assert d == {"default": CONTACT_DAYS, "lines": {}}
