"""Breach register (Art. 33/34): the 72-hour clock, validated steps, audit, and the CLI."""

from __future__ import annotations

import json
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

import pytest

from appliance.cli import main
from appliance.privacy import Actor, Privacy
from appliance.privacy.breach import BreachError, BreachRegister
from appliance.privacy.freetext import FreeTextError

DPO = Actor("dpo", "privacy-officer")
T0 = 1_800_000_000.0
HOUR = 3600.0


class Clock:
    def __init__(self, now: float) -> None:
        self.now = now

    def __call__(self) -> float:
        return self.now


@pytest.fixture
def clock(privacy: Privacy) -> Clock:
    c = Clock(T0)
    privacy.breaches.clock = c
    return c


async def record(reg: BreachRegister, **over: Any) -> int:
    args: dict[str, Any] = {
        "summary": "backup disk left unlocked in the office overnight",
        "categories": ["recording", "cdr"],
        "subjects_affected": 120,
        "consequences": "recordings of calls could have been copied",
        "measures": "disk recovered, backup key rotated",
        "discovered_at": T0,
        **over,
    }
    return await reg.record(DPO, **args)


async def snapshot(privacy: Privacy, breach_id: int) -> tuple[Any, ...]:
    return (
        await privacy.db.breach_get(breach_id),
        await privacy.db.breach_events(breach_id),
        len(await privacy.db.audit_rows(limit=10_000)),
    )


async def test_clock_runs_72_hours_from_discovery_then_is_overdue(
    privacy: Privacy, clock: Clock
) -> None:
    reg = privacy.breaches
    bid = await record(reg, occurred_at=T0 - 2 * HOUR)
    clock.now = T0 + 71 * HOUR
    d = (await reg.get(bid)).deadline(clock.now)
    assert (d.deadline, d.overdue, d.late) == (T0 + 72 * HOUR, False, False)
    assert d.hours_left == pytest.approx(1.0)
    assert await reg.overdue() == []

    clock.now = T0 + 72 * HOUR + 1
    d = (await reg.get(bid)).deadline(clock.now)
    assert d.overdue and d.hours_left is not None and d.hours_left < 0
    assert [b.id for b in await reg.overdue()] == [bid]


async def test_notified_in_time_is_never_overdue(privacy: Privacy, clock: Clock) -> None:
    reg = privacy.breaches
    bid = await record(reg)
    clock.now = T0 + 70 * HOUR
    b = await reg.notify_authority(bid, DPO, reference="IMY-2026-1234")
    assert (b.status, b.authority_decision, b.authority_at, b.authority_ref) == (
        "reported", "notified", T0 + 70 * HOUR, "IMY-2026-1234",
    )  # fmt: skip
    clock.now = T0 + 500 * HOUR
    d = b.deadline(clock.now)
    assert (d.overdue, d.late, d.hours_left) == (False, False, None)
    assert await reg.overdue() == []


async def test_late_notification_needs_the_reasons_for_the_delay(
    privacy: Privacy, clock: Clock
) -> None:
    reg = privacy.breaches
    bid = await record(reg)
    clock.now = T0 + 80 * HOUR
    before = await snapshot(privacy, bid)
    with pytest.raises(BreachError, match=r"8\.0 h after the 72-hour deadline.*Art\. 33\(1\)"):
        await reg.notify_authority(bid, DPO, reference="IMY-1")
    assert await snapshot(privacy, bid) == before
    b = await reg.notify_authority(
        bid, DPO, reference="IMY-1", delay_reason="scope only known after forensic review"
    )
    d = b.deadline(clock.now)
    assert (d.late, d.overdue) == (True, False)
    assert b.authority_note == "scope only known after forensic review"


async def test_authority_exemption_stops_the_clock(privacy: Privacy, clock: Clock) -> None:
    reg = privacy.breaches
    bid = await record(reg, categories=["report"], subjects_affected=1)
    b = await reg.authority_not_required(
        bid, DPO, reason="one encrypted report, key not exposed: no risk to the subject"
    )
    clock.now = T0 + 100 * HOUR
    assert b.status == "reported"
    assert not b.deadline(clock.now).overdue


async def test_full_lifecycle_is_logged_and_audited(privacy: Privacy, clock: Clock) -> None:
    reg = privacy.breaches
    bid = await record(reg)
    clock.now = T0 + 5 * HOUR
    await reg.notify_subjects(bid, DPO, how="letter to each affected caller")
    clock.now = T0 + 20 * HOUR
    await reg.notify_authority(bid, DPO, reference="IMY-2026-77", at=T0 + 19 * HOUR)
    clock.now = T0 + 30 * HOUR
    b = await reg.close(bid, DPO, note="lock procedure changed")
    assert (b.status, b.closed_at, b.subjects_decision, b.subjects_at) == (
        "closed", T0 + 30 * HOUR, "notified", T0 + 5 * HOUR,
    )  # fmt: skip
    assert b.authority_at == T0 + 19 * HOUR
    steps = [e["action"] for e in await reg.events(bid)]
    assert steps == ["record", "notify_subjects", "notify_authority", "close"]
    audit = [(r["action"], r["object"], r["actor"]) for r in await privacy.db.audit_rows()]
    assert audit == [
        ("breach.record", f"breach:{bid}", "dpo"),
        ("breach.notify_subjects", f"breach:{bid}", "dpo"),
        ("breach.notify_authority", f"breach:{bid}", "dpo"),
        ("breach.close", f"breach:{bid}", "dpo"),
    ]
    assert (await privacy.audit.verify()).ok


Step = Callable[[BreachRegister, int], Awaitable[object]]


def _close(r: BreachRegister, b: int) -> Awaitable[object]:
    return r.close(b, DPO)


def _notify(r: BreachRegister, b: int) -> Awaitable[object]:
    return r.notify_authority(b, DPO, reference="X-1")


def _exempt(r: BreachRegister, b: int) -> Awaitable[object]:
    return r.authority_not_required(b, DPO, reason="no risk")


def _tell(r: BreachRegister, b: int) -> Awaitable[object]:
    return r.notify_subjects(b, DPO, how="letter")


def _no_tell(r: BreachRegister, b: int) -> Awaitable[object]:
    return r.subjects_not_required(b, DPO, reason="data was encrypted")


@pytest.mark.parametrize(
    ("done", "step", "error"),
    [
        ([], _close, "cannot close breach #1: the authority step is not recorded yet"),
        ([_notify], _close, "cannot be closed before the subjects' notification"),
        ([_notify], _notify, "the authority step is already recorded"),
        ([_notify], _exempt, "the authority step is already recorded"),
        ([_tell], _no_tell, "subjects' notification is already recorded"),
        ([_no_tell], _tell, "subjects' notification is already recorded"),
        ([_notify, _tell, _close], _close, "cannot close breach #1: it is closed"),
        ([_notify, _tell, _close], _tell, "it is closed"),
    ],
)
async def test_invalid_transitions_error_without_changing_anything(
    privacy: Privacy, clock: Clock, done: list[Step], step: Step, error: str
) -> None:
    reg = privacy.breaches
    bid = await record(reg)
    for s in done:
        await s(reg, bid)
    before = await snapshot(privacy, bid)
    with pytest.raises(BreachError, match=error):
        await step(reg, bid)
    assert await snapshot(privacy, bid) == before


@pytest.mark.parametrize(
    ("over", "error"),
    [
        ({"categories": ["recording", "selfies"]}, "data category 'selfies' is not one of"),
        ({"categories": []}, "at least one data category"),
        ({"subjects_affected": -1}, "cannot be negative"),
        ({"subjects_affected": 2.5}, "whole number"),
        (
            {"discovered_at": T0 - 2 * HOUR, "occurred_at": T0 - HOUR},
            "cannot have occurred after it was discovered",
        ),
        ({"discovered_at": T0 + 2 * HOUR}, "discovery time is in the future"),
        ({"summary": ""}, "breach summary .* is required"),
        ({"summary": "laptop of +46701234567 stolen"}, "contains a phone number"),
        ({"measures": "told bob@example.org"}, "contains an e-mail address"),
    ],
)
async def test_record_refuses_bad_input_and_stores_nothing(
    privacy: Privacy, clock: Clock, over: dict[str, Any], error: str
) -> None:
    with pytest.raises((BreachError, FreeTextError), match=error):
        await record(privacy.breaches, **over)
    assert await privacy.breaches.all() == []
    assert await privacy.db.audit_rows() == []


async def test_step_input_is_checked(privacy: Privacy, clock: Clock) -> None:
    reg = privacy.breaches
    bid = await record(reg)
    before = await snapshot(privacy, bid)
    with pytest.raises(BreachError, match="needs its reference"):
        await reg.notify_authority(bid, DPO, reference="  ")
    with pytest.raises(BreachError, match="before the breach was discovered"):
        await reg.notify_authority(bid, DPO, reference="X", at=T0 - 1)
    with pytest.raises(BreachError, match="in the future"):
        await reg.notify_subjects(bid, DPO, how="letter", at=T0 + 10 * HOUR)
    with pytest.raises(BreachError, match="no breach #9"):
        await reg.close(9, DPO)
    assert await snapshot(privacy, bid) == before


def write_config(tmp_path: Path) -> Path:
    conf = tmp_path / "callvault.toml"
    conf.write_text(
        'state_dir = "state"\n[asterisk]\nami_secret = "x"\n'
        '[[lines]]\nname = "reception"\nextension = "100"\n'
    )
    return conf


def test_cli_breach_commands(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    conf = str(write_config(tmp_path))

    def cv(*args: str) -> tuple[int, str, str]:
        rc = main(["--config", conf, "privacy", "breach", *args])
        out, err = capsys.readouterr()
        return rc, out, err

    rc, out, _ = cv(
        "add", "--summary", "lost backup disk", "--category", "recording,cdr",
        "--category", "contact", "--subjects", "40", "--consequences", "calls may be heard",
        "--measures", "key rotated", "--discovered", "2026-01-10 09:00",
    )  # fmt: skip
    assert rc == 0 and "breach #1 recorded" in out
    rc, out, _ = cv("list", "--json")
    [listed] = json.loads(out)
    assert listed["categories"] == ["recording", "cdr", "contact"] and listed["overdue"]
    rc, out, _ = cv("list")
    assert rc == 0 and "OVERDUE" in out and "past the 72-hour deadline" in out

    rc, _, err = cv("notify", "1", "authority", "--reference", "IMY-9")
    assert rc == 2 and "give the reasons for the delay" in err
    rc, _, err = cv("close", "1")
    assert rc == 2 and "authority step is not recorded yet" in err
    rc, _, err = cv("notify", "1", "subjects")
    assert rc == 2 and "needs --how" in err
    rc, _, err = cv(
        "add", "--summary", "x", "--category", "cdr", "--subjects", "1",
        "--consequences", "x", "--measures", "x", "--discovered", "yesterday",
    )  # fmt: skip
    assert rc == 2 and "--discovered 'yesterday' is not a date and time" in err

    rc, out, _ = cv("notify", "1", "authority", "--reference", "IMY-9", "--delay-reason",
                    "found during holidays")  # fmt: skip
    assert rc == 0 and "after the 72-hour deadline" in out
    rc, out, _ = cv("notify", "1", "subjects", "--not-required", "audio was encrypted")
    assert rc == 0
    rc, out, _ = cv("close", "1", "--note", "done")
    assert rc == 0 and "closed" in out
    rc, out, _ = cv("show", "1")
    assert rc == 0 and "IMY-9" in out and "audio was encrypted" in out
    rc, out, _ = cv("show", "1", "--json")
    shown = json.loads(out)
    assert shown["status"] == "closed" and shown["notified_late"] is True
    assert [e["action"] for e in shown["events"]] == [
        "record", "notify_authority", "subjects_not_required", "close",
    ]  # fmt: skip
    rc, _, err = cv("show", "2")
    assert rc == 2 and "no breach #2" in err
