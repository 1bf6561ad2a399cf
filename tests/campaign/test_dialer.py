from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime
from typing import Any
from zoneinfo import ZoneInfo

from appliance.campaign.campaign import Campaigns
from appliance.campaign.dialer import HANGUP_SETTLE_S, Dialler
from appliance.campaign.leads import Leads
from appliance.campaign.model import Settings
from appliance.config import LineConfig
from appliance.privacy import Privacy
from appliance.privacy.audit import Actor
from appliance.privacy.identifiers import Identifier
from appliance.store import CdrRow

OP = Actor("op", "operator")
TZ = "Europe/Stockholm"


def num(i: int) -> str:
    return f"+4670{1000000 + i:07d}"


class Clock:
    def __init__(self, start: float) -> None:
        self.now = start

    def __call__(self) -> float:
        return self.now


@dataclass
class FakeOriginator:
    clock: Clock
    dials: list[tuple[str, str, float]] = field(default_factory=list)
    live: set[str] = field(default_factory=set)
    fail_next: bool = False

    async def originate(
        self, *, call_id: str, channel: str, number: str, line: LineConfig, timeout_s: int
    ) -> None:
        if self.fail_next:
            self.fail_next = False
            raise ConnectionError("AMI down")
        assert channel == f"PJSIP/{number.lstrip('+')}@trunk"
        self.dials.append((call_id, number, self.clock()))
        self.live.add(call_id)

    def is_live(self, call_id: str) -> bool | None:
        return call_id in self.live


async def hang_up(privacy: Privacy, call_id: str, number: str, start: float, disp: str,
                  talk_s: int = 0) -> None:  # fmt: skip
    answered = start + 5 if disp == "ANSWERED" else None
    end = (answered or start) + talk_s + 1
    await privacy.subjects.add_cdr(
        CdrRow(
            call_id=call_id, uniqueid=call_id, sequence=1, calling_number="300",
            caller_name="sales", dialed_number=number, context="callvault-lines",
            direction="outbound", line="sales", start_at=start, answer_at=answered, end_at=end,
            duration_s=int(end - start), billable_s=talk_s, disposition=disp, hangup_cause=16,
            hangup_cause_text="", channel=f"PJSIP/{number}-1", dest_channel="", last_app="Dial",
            source="ami",
        )
    )  # fmt: skip


async def setup(privacy: Privacy, n: int, clock: Clock, **settings: Any) -> tuple[int, Campaigns]:
    rows = "".join(f"{num(i)},L{i},consent\n" for i in range(n))
    await Leads(privacy, clock=clock).import_bytes(
        f"phone,name,basis\n{rows}".encode(), "l.csv", list_name="l", actor=OP
    )
    camps = Campaigns(privacy, clock=clock)
    s = Settings(dial="PJSIP/{digits}@trunk", windows=("mon-fri 09:00-18:00",), **settings)
    cid = await camps.create("c", line="sales", list_name="l", settings=s, actor=OP)
    return cid, camps


MONDAY_10 = datetime(2026, 11, 23, 10, 0, tzinfo=ZoneInfo(TZ)).timestamp()


async def test_limits_retries_outcomes_and_opt_out(privacy: Privacy) -> None:
    clock = Clock(MONDAY_10)
    orig = FakeOriginator(clock)
    reports: dict[str, dict[str, Any]] = {}

    async def read(call_id: str) -> dict[str, Any] | None:
        return reports.get(call_id)

    cid, camps = await setup(
        privacy, 6, clock, max_concurrent=2, calls_per_minute=3, max_attempts=2,
        retry_s={"busy": 600, "no_answer": 600},
    )  # fmt: skip
    # Put lead 5 on the DNC list after the import: checked again at dial time.
    await privacy.dnc.add(num(5), source="test", reason="", actor=OP)
    d = Dialler(privacy, orig, clock=clock, reports=read)
    assert (await d.tick()).dialled == 0  # a draft campaign does not dial
    await camps.act("c", "start", OP)
    stats = await d.tick()
    assert stats.dialled == 2  # max_concurrent
    assert (await d.tick()).dialled == 0  # both still out
    # Pattern per number: 0 busy then answered interested, 1 opt-out, 2 no answer twice,
    # 3 appointment, 4 wrong person.
    plan: dict[str, list[tuple[str, dict[str, Any] | None]]] = {
        num(0): [("BUSY", None), ("ANSWERED", {"outcome": "interested", "opt_out": False})],
        num(1): [("ANSWERED", {"opt_out": True})],
        num(2): [("NO ANSWER", None), ("NO ANSWER", None)],
        num(3): [
            (
                "ANSWERED",
                {
                    "opt_out": False,
                    "appointment": {"day": None, "date": "2026-12-01", "time": "10:00"},
                },
            )
        ],
        num(4): [("ANSWERED", {"outcome": "wrong_person", "opt_out": False})],
    }
    done: set[str] = set()
    max_out = 0
    for _ in range(200):
        clock.now += 20
        for call_id, number, t in orig.dials:
            if call_id in done:
                continue
            disp, report = plan[number].pop(0)
            await hang_up(privacy, call_id, number, t, disp, talk_s=60 if report else 0)
            orig.live.discard(call_id)
            if report is not None:
                reports[call_id] = report
            done.add(call_id)
            break  # one call ends per step: others stay out
        await d.tick()
        max_out = max(max_out, len(orig.live))
        if (await privacy.db.campaign(cid) or {}).get("state") == "done":
            break
    assert max_out <= 2
    # Never more than 3 dials in any 60 s.
    times = sorted(t for _, _, t in orig.dials)
    assert all(times[i + 3] - times[i] >= 60 for i in range(len(times) - 3))
    leads = {int(r["lead_id"]): r for r in await privacy.db.campaign_leads(cid)}
    got = {k: (r["state"], r["outcome"], r["attempts"]) for k, r in leads.items()}
    assert got == {
        1: ("done", "interested", 2),
        2: ("done", "opt_out", 1),
        3: ("exhausted", "no_answer", 2),
        4: ("done", "appointment_booked", 1),
        5: ("done", "wrong_person", 1),
        6: ("blocked", "blocked", 0),
    }
    assert leads[4]["detail"] == "2026-12-01 10:00"
    assert leads[6]["detail"] == "on the do-not-call list"
    assert [n for _, n, _ in orig.dials].count(num(1)) == 1
    assert num(5) not in [n for _, n, _ in orig.dials]
    # The opt-out is on the DNC list and, the line erasing on opt-out, the lead's data is gone.
    assert await privacy.dnc.find(Identifier("phone", num(1))) is not None
    assert (await privacy.db.lead(2) or {})["state"] == "erased"
    rep = await camps.report("c")
    assert rep["state"] == "done"
    assert rep["outcomes"]["interested"] == 1
    assert rep["dials"] == 7
    assert rep["conversion"] == round(2 / 5, 4)
    assert rep["minutes"] == round(4 * 61 / 60, 2)  # 4 answered calls of 61 s
    csv_text = await camps.report_csv("c")
    assert len(csv_text.strip().splitlines()) == 1 + 8  # 7 dials and the blocked one
    assert num(1) not in csv_text


async def test_window_blocks_and_waits(privacy: Privacy) -> None:
    clock = Clock(datetime(2026, 11, 23, 19, 0, tzinfo=ZoneInfo(TZ)).timestamp())
    orig = FakeOriginator(clock)
    _, camps = await setup(privacy, 1, clock)
    await camps.act("c", "start", OP)
    d = Dialler(privacy, orig, clock=clock, reports=lambda _c: _none())
    assert (await d.tick()).blocked == 1
    (att,) = await privacy.db.attempts()
    assert (att["state"], att["reason"]) == ("blocked", "outside the calling window")
    (cl,) = await privacy.db.campaign_leads(1)
    assert cl["next_at"] == datetime(2026, 11, 24, 9, 0, tzinfo=ZoneInfo(TZ)).timestamp()
    clock.now += 3600
    assert (await d.tick()).blocked == 0  # waits for the window, no new record
    clock.now = cl["next_at"]
    assert (await d.tick()).dialled == 1


async def _none() -> None:
    return None


async def test_restart_never_double_dials_nor_forgets(privacy: Privacy) -> None:
    clock = Clock(MONDAY_10)
    orig = FakeOriginator(clock)
    _, camps = await setup(privacy, 3, clock, max_concurrent=3, calls_per_minute=60)
    await camps.act("c", "start", OP)
    # Lead 1 is claimed, then the process dies before the originate (simulated by a claim).
    assert await privacy.db.attempt_claim(1, 1, "cv-crashed", clock())
    d1 = Dialler(privacy, orig, clock=clock, reports=lambda _c: _none())
    await d1.tick()
    assert sorted(n for _, n, _ in orig.dials) == [num(1), num(2)]  # lead 1 is out
    # "Restart": a new dialler on the same database; a call of the first is still up.
    d2 = Dialler(privacy, orig, clock=clock, reports=lambda _c: _none())
    clock.now += 30
    await d2.tick()
    assert len(orig.dials) == 2
    for call_id, number, t in orig.dials:
        await hang_up(privacy, call_id, number, t, "BUSY")
        orig.live.discard(call_id)
    # The crashed claim has no call and no channel: lost after the grace, lead dialled again.
    clock.now += 120
    await d2.tick()
    states = {a["call_id"]: a["state"] for a in await privacy.db.attempts()}
    assert states["cv-crashed"] == "lost"
    clock.now += 2000
    await d2.tick()
    assert sorted(n for _, n, _ in orig.dials) == [num(0), num(1), num(1), num(2), num(2)]
    assert await privacy.db.campaign_counts(1) == {"dialling": 3}


async def test_originate_failure_and_pause(privacy: Privacy) -> None:
    clock = Clock(MONDAY_10)
    orig = FakeOriginator(clock, fail_next=True)
    _, camps = await setup(privacy, 2, clock, max_concurrent=1)
    await camps.act("c", "start", OP)
    d = Dialler(privacy, orig, clock=clock, reports=lambda _c: _none())
    assert (await d.tick()).dialled == 1  # lead 1's originate failed, lead 2 went out
    first, second = await privacy.db.attempts()
    assert (first["state"], first["reason"]) == ("failed", "originate refused: ConnectionError")
    assert second["state"] == "dialling"
    await hang_up(privacy, second["call_id"], num(1), clock(), "NO ANSWER")
    await camps.act("c", "pause", OP)
    clock.now += 4000
    assert (await d.tick()).dialled == 0  # paused: the call out is resolved, nothing dialled
    assert (await privacy.db.attempts())[1]["state"] == "done"
    await camps.act("c", "resume", OP)
    assert (await d.tick()).dialled == 1


async def test_public_holiday_blocks_with_its_name(privacy: Privacy) -> None:
    christmas = datetime(2026, 12, 25, 10, 0, tzinfo=ZoneInfo(TZ)).timestamp()
    clock = Clock(christmas)
    orig = FakeOriginator(clock)
    _, camps = await setup(privacy, 1, clock)
    await camps.act("c", "start", OP)
    d = Dialler(privacy, orig, clock=clock, reports=lambda _c: _none())
    assert (await d.tick()).blocked == 1
    (att,) = await privacy.db.attempts()
    assert (att["state"], att["reason"]) == ("blocked", "public holiday: Christmas Day")
    (cl,) = await privacy.db.campaign_leads(1)
    # Saturday the 26th is a holiday and a weekend day: Monday 09:00.
    assert cl["next_at"] == datetime(2026, 12, 28, 9, 0, tzinfo=ZoneInfo(TZ)).timestamp()
    assert cl["state"] == "pending" and orig.dials == []
    rep = await camps.report("c")
    assert rep["blocked_reasons"] == {"public holiday: Christmas Day": 1}


async def test_holidays_can_be_allowed_per_campaign(privacy: Privacy) -> None:
    clock = Clock(datetime(2026, 12, 25, 10, 0, tzinfo=ZoneInfo(TZ)).timestamp())
    orig = FakeOriginator(clock)
    _, camps = await setup(privacy, 1, clock, block_public_holidays=False)
    await camps.act("c", "start", OP)
    d = Dialler(privacy, orig, clock=clock, reports=lambda _c: _none())
    assert (await d.tick()).dialled == 1


async def test_answered_call_between_hangup_and_cdr_is_not_lost(privacy: Privacy) -> None:
    """The race: a long answered call hangs up (its channel gone from the live model) and a
    dialler pass runs before its CDR is written. It must wait for the CDR, not count the
    attempt lost and dial the person again after the retry interval."""
    clock = Clock(MONDAY_10)
    orig = FakeOriginator(clock)
    reports: dict[str, dict[str, Any]] = {}

    async def read(call_id: str) -> dict[str, Any] | None:
        return reports.get(call_id)

    _, camps = await setup(privacy, 1, clock, max_attempts=3)
    await camps.act("c", "start", OP)
    d = Dialler(privacy, orig, clock=clock, reports=read)
    assert (await d.tick()).dialled == 1
    ((call_id, number, started),) = orig.dials
    # Ten minutes of conversation: far past the ring timeout and the lost grace.
    clock.now += 600
    await d.tick()
    # Hangup: the channel leaves the model; the CDR is a few milliseconds behind.
    orig.live.discard(call_id)
    clock.now += 0.005
    await d.tick()
    (att,) = await privacy.db.attempts()
    assert att["state"] == "dialling", "an answered call was judged lost before its CDR came"
    await hang_up(privacy, call_id, number, started, "ANSWERED", talk_s=590)
    reports[call_id] = {"outcome": "interested", "opt_out": False}
    clock.now += 1
    await d.tick()
    (att,) = await privacy.db.attempts()
    assert (att["state"], att["outcome"]) == ("done", "interested")
    clock.now += 7 * 86400  # any retry interval later: the person is not called again
    await d.tick()
    assert len(orig.dials) == 1
    (cl,) = await privacy.db.campaign_leads(1)
    assert (cl["state"], cl["outcome"]) == ("done", "interested")


async def test_call_that_vanished_without_cdr_is_lost_after_the_settle(
    privacy: Privacy,
) -> None:
    clock = Clock(MONDAY_10)
    orig = FakeOriginator(clock)
    _, camps = await setup(privacy, 1, clock, max_attempts=3)
    await camps.act("c", "start", OP)
    d = Dialler(privacy, orig, clock=clock, reports=lambda _c: _none())
    await d.tick()
    ((call_id, _, _),) = orig.dials
    clock.now += 600
    orig.live.discard(call_id)  # gone, and no CDR will ever come (Asterisk lost it)
    await d.tick()
    assert (await privacy.db.attempts())[0]["state"] == "dialling"
    clock.now += HANGUP_SETTLE_S - 1
    await d.tick()
    assert (await privacy.db.attempts())[0]["state"] == "dialling"
    # Seen up again (the model had missed a channel): the settle starts over.
    orig.live.add(call_id)
    clock.now += 2
    await d.tick()
    orig.live.discard(call_id)
    clock.now += 1
    await d.tick()
    assert (await privacy.db.attempts())[0]["state"] == "dialling"
    clock.now += HANGUP_SETTLE_S
    await d.tick()
    (att,) = await privacy.db.attempts()
    assert att["state"] == "lost"
    (cl,) = await privacy.db.campaign_leads(1)
    assert cl["state"] == "pending"  # retried after the `failed` interval
