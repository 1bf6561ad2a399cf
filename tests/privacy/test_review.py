"""Human review queue (Art. 22): flag, decide once, audited; erasure takes the call's items."""

from __future__ import annotations

import asyncio
import getpass
import json
from pathlib import Path

import pytest

from appliance import config
from appliance.cli import main
from appliance.privacy import Actor, Privacy
from appliance.privacy.freetext import FreeTextError
from appliance.privacy.review import ReviewError
from appliance.privacy.rights import Rights
from appliance.store import Database
from tests.privacy.rights_fixtures import done, seed

ALICE = Actor("alice", "reviewer")


async def audit_rows(privacy: Privacy) -> list[dict[str, object]]:
    return await privacy.db.audit_rows(limit=10_000)


async def test_flag_then_decide_is_recorded_and_audited(privacy: Privacy) -> None:
    now = [1_800_000_000.0]
    privacy.review.clock = lambda: now[0]
    item_id = await privacy.review.flag("report", "call:1700000001.1", "summary failed twice")
    [item] = await privacy.review.items("open")
    assert (item.id, item.kind, item.ref, item.call_id) == (
        item_id, "report", "call:1700000001.1", "1700000001.1",
    )  # fmt: skip
    assert (item.status, item.outcome, item.flagged_by, item.flagged_at) == (
        "open", None, "agent", now[0],
    )  # fmt: skip

    now[0] += 600
    decided = await privacy.review.decide(item_id, ALICE, "corrected", "appointment day fixed")
    assert (decided.status, decided.outcome, decided.note) == (
        "decided", "corrected", "appointment day fixed",
    )  # fmt: skip
    assert (decided.decided_by, decided.decided_role, decided.decided_at) == (
        "alice", "reviewer", now[0],
    )  # fmt: skip
    assert await privacy.review.items("open") == []
    assert [i.id for i in await privacy.review.items("decided")] == [item_id]

    rows = [(r["actor"], r["role"], r["action"], r["object"]) for r in await audit_rows(privacy)]
    assert rows == [
        ("agent", "system", "review.flag", f"review:{item_id}"),
        ("alice", "reviewer", "review.decide", f"review:{item_id}"),
    ]
    assert (await audit_rows(privacy))[1]["detail"] == "outcome=corrected"
    assert (await privacy.audit.verify()).ok


async def test_deciding_twice_is_an_error_and_changes_nothing(privacy: Privacy) -> None:
    item_id = await privacy.review.flag("report", "report:7", "caller asked to opt out")
    await privacy.review.decide(item_id, ALICE, "approved")
    before = await privacy.review.get(item_id)
    n_audit = len(await audit_rows(privacy))
    with pytest.raises(ReviewError, match=rf"#{item_id} is already decided \(approved by alice"):
        await privacy.review.decide(item_id, Actor("bob", "reviewer"), "rejected", "wrong")
    assert await privacy.review.get(item_id) == before
    assert len(await audit_rows(privacy)) == n_audit


@pytest.mark.parametrize(
    ("kind", "ref", "reason", "error"),
    [
        ("Report!", "call:1.1", "x", "review kind"),
        ("report", "1700000001.1", "x", "must be '<type>:<id>'"),
        ("report", "call:a b", "x", "must be '<type>:<id>'"),
        ("report", "call:1.1", "   ", "review reason is required"),
        ("report", "call:1.1", "caller +46 70 123 45 67 wants a callback", "phone number"),
        ("report", "call:1.1", "mail anna@example.com back", "e-mail"),
        ("report", "call:1.1", "x" * 501, "longer than 500"),
    ],
)
async def test_flag_refuses_bad_input_and_stores_nothing(
    privacy: Privacy, kind: str, ref: str, reason: str, error: str
) -> None:
    with pytest.raises((ReviewError, FreeTextError), match=error):
        await privacy.review.flag(kind, ref, reason)
    assert await privacy.review.items() == []
    assert await audit_rows(privacy) == []


async def test_flag_refuses_a_call_id_that_contradicts_the_ref(privacy: Privacy) -> None:
    with pytest.raises(ReviewError, match="names another call"):
        await privacy.review.flag("report", "call:1.1", "low confidence", call_id="2.2")


async def test_decide_refuses_bad_input_and_changes_nothing(privacy: Privacy) -> None:
    item_id = await privacy.review.flag("decision", "call:1.1", "agent declined a booking")
    with pytest.raises(ReviewError, match="outcome 'maybe' is not one of"):
        await privacy.review.decide(item_id, ALICE, "maybe")
    with pytest.raises(FreeTextError, match="a note on a rejected item is required"):
        await privacy.review.decide(item_id, ALICE, "rejected")
    with pytest.raises(FreeTextError, match="phone number"):
        await privacy.review.decide(item_id, ALICE, "corrected", "number is 0701234567")
    with pytest.raises(ReviewError, match="no review item #99"):
        await privacy.review.decide(99, ALICE, "approved")
    with pytest.raises(ReviewError, match="review status 'closed'"):
        await privacy.review.items("closed")
    assert (await privacy.review.get(item_id)).status == "open"
    assert len(await audit_rows(privacy)) == 1


async def test_reasons_may_hold_dates_ids_and_counts(privacy: Privacy) -> None:
    # Only real identifiers are refused: a date, a call id or a count is not one.
    reason = "slot 2024-05-01 10:00 conflicts with call 1712345678.12; 3 retries failed"
    item_id = await privacy.review.flag("report", "call:1712345678.12", reason)
    assert (await privacy.review.get(item_id)).reason == reason


async def test_erasure_removes_the_items_of_erased_calls(privacy: Privacy, tmp_path: Path) -> None:
    seeded = await seed(privacy, tmp_path)
    inbound, outbound = seeded.calls
    await privacy.review.flag("report", f"call:{inbound}", "summary failed validation")
    await privacy.review.flag("report", "report:12", "opt-out unclear", call_id=outbound)
    kept = await privacy.review.flag("report", f"call:{seeded.other_call}", "low confidence")
    unrelated = await privacy.review.flag("decision", "campaign:3", "agent paused a campaign")

    await done(Rights(privacy), "erasure")

    assert [i.id for i in await privacy.review.items()] == [kept, unrelated]
    assert (await privacy.audit.verify()).ok


def test_cli_review_list_and_decide(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    conf = tmp_path / "callvault.toml"
    conf.write_text(
        'state_dir = "state"\n[asterisk]\nami_secret = "x"\n'
        '[[lines]]\nname = "reception"\nextension = "100"\n'
    )

    async def flag() -> None:
        cfg = config.load(conf)
        async with Database(cfg.database) as db:
            await Privacy(cfg, db).review.flag("report", "call:1700000001.1", "summary invalid")

    asyncio.run(flag())

    def cv(*args: str) -> tuple[int, str, str]:
        rc = main(["--config", str(conf), "privacy", "review", *args])
        out, err = capsys.readouterr()
        return rc, out, err

    rc, out, _ = cv("list")
    assert rc == 0 and "call:1700000001.1" in out and "summary invalid" in out
    rc, _, err = cv("decide", "1", "rejected")
    assert rc == 2 and "a note on a rejected item is required" in err
    rc, out, _ = cv("decide", "1", "rejected", "--note", "caller never asked for this")
    user = getpass.getuser()
    assert rc == 0 and f"rejected by cli:{user} as reviewer" in out
    rc, _, err = cv("decide", "1", "approved")
    assert rc == 2 and "already decided (rejected by cli:" in err
    rc, out, _ = cv("list", "--status", "decided", "--json")
    [item] = json.loads(out)
    assert (item["outcome"], item["decided_role"], item["note"]) == (
        "rejected", "reviewer", "caller never asked for this",
    )  # fmt: skip
    rc, out, _ = cv("list")
    assert rc == 0 and "0 items" in out
