"""Rights requests: the status machine, verification, deadlines, each kind, bad input."""

from __future__ import annotations

import sqlite3
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest
import pytest_asyncio

from appliance.privacy import Identifier, IdentifierError, Privacy
from appliance.privacy.rights import (
    Kind,
    Rights,
    RightsError,
    Status,
    VerificationError,
)
from appliance.store import Database
from appliance.telephony.service import DoNotCallError, TelephonyService
from tests.privacy.conftest import make_cfg
from tests.privacy.rights_fixtures import NAME, NUMBER, OP, done, seed

DAY = 86400.0


class Clock:
    def __init__(self, t: float = 1_767_225_600.0) -> None:  # 2026-01-01 UTC
        self.t = t

    def __call__(self) -> float:
        return self.t


class Sender:
    def __init__(self) -> None:
        self.sent: list[tuple[Identifier, str, int]] = []

    async def deliver(self, ident: Identifier, code: str, request_id: int) -> None:
        self.sent.append((ident, code, request_id))


@pytest_asyncio.fixture
async def env(tmp_path: Path) -> AsyncIterator[tuple[Privacy, Rights, Clock, Sender]]:
    cfg = make_cfg(tmp_path)
    clock, sender = Clock(), Sender()
    async with Database(cfg.database) as db:
        privacy = Privacy(cfg, db)
        yield privacy, Rights(privacy, clock=clock, code_sender=sender), clock, sender


def table(privacy: Privacy, sql: str) -> list[Any]:
    return sqlite3.connect(privacy.cfg.database).execute(sql).fetchall()


async def test_deadline_is_one_month_extendable_once_by_two(env: Any) -> None:
    _, rights, clock, _ = env
    req = await rights.create("access", NUMBER, OP)
    assert req.status is Status.IDENTITY_UNVERIFIED
    assert req.due_at == clock.t + 31 * DAY  # January has 31 days
    assert await rights.overdue() == []
    with pytest.raises(RightsError, match="extension reason is required"):
        await rights.extend(req.id, " ", OP)
    ext = await rights.extend(req.id, "many recordings to review", OP)
    assert ext.due_at == clock.t + (31 + 28 + 31) * DAY and ext.extended
    with pytest.raises(RightsError, match="already extended"):
        await rights.extend(req.id, "again", OP)
    clock.t += 91 * DAY
    assert [r.id for r in await rights.overdue()] == [req.id]


async def test_spoken_code_verification(env: Any) -> None:
    privacy, rights, clock, sender = env
    req = await rights.create("objection", "070-123 45 67", OP, channel="phone")
    with pytest.raises(RightsError, match="identity_unverified: cannot process"):
        await rights.process(req.id, OP)
    with pytest.raises(VerificationError, match="no code was sent"):
        await rights.verify_code(req.id, "000000", OP)
    await rights.send_code(req.id, OP)
    [(ident, code, rid)] = sender.sent
    assert ident == Identifier("phone", NUMBER) and rid == req.id
    wrong = "000000" if code != "000000" else "111111"
    with pytest.raises(VerificationError, match="wrong code"):
        await rights.verify_code(req.id, wrong, OP)
    assert (await rights.get(req.id)).status is Status.IDENTITY_UNVERIFIED
    clock.t += 16 * 60
    with pytest.raises(VerificationError, match="expired"):
        await rights.verify_code(req.id, code, OP)
    await rights.send_code(req.id, OP)
    code = sender.sent[-1][1]
    for _ in range(5):
        with pytest.raises(VerificationError):
            await rights.verify_code(req.id, wrong, OP)
    with pytest.raises(VerificationError, match="too many wrong codes"):
        await rights.verify_code(req.id, code, OP)
    await rights.send_code(req.id, OP)
    ok = await rights.verify_code(req.id, sender.sent[-1][1], OP)
    assert ok.status is Status.PENDING and ok.verification == "one-time code"
    done_req = await rights.process(req.id, OP)
    assert done_req.status is Status.COMPLETE
    assert done_req.response["outcome"] == "opted_out"
    assert await privacy.dnc.find(privacy.subjects.parse(NUMBER)) is not None


async def test_attestation_needs_a_note(env: Any) -> None:
    _, rights, _, _ = env
    req = await rights.create("access", NUMBER, OP)
    with pytest.raises(VerificationError, match="attestation note"):
        await rights.attest(req.id, OP, "  ")
    assert (await rights.get(req.id)).status is Status.IDENTITY_UNVERIFIED
    await rights.attest(req.id, OP, "passport checked at the desk")
    with pytest.raises(RightsError, match="pending: cannot verify"):
        await rights.attest(req.id, OP, "twice")


@pytest.mark.parametrize(
    ("kind", "who", "params", "error", "match"),
    [
        ("access", "+46 70", None, IdentifierError, "not a valid phone number"),
        ("access", "hello", None, IdentifierError, "not a phone number"),
        ("forget-me", NUMBER, None, RightsError, "unknown request kind"),
        ("rectification", NUMBER, {"field": "ssn", "value": "x"}, RightsError, "field="),
        ("rectification", NUMBER, {"field": "caller_name"}, RightsError, "value is required"),
        ("access", NUMBER, {"field": "caller_name"}, RightsError, "take no parameters"),
    ],
)
async def test_bad_intake_stores_nothing(
    env: Any, kind: str, who: str, params: Any, error: type[Exception], match: str
) -> None:
    privacy, rights, _, _ = env
    with pytest.raises(error, match=match):
        await rights.create(kind, who, OP, params=params)
    assert table(privacy, "SELECT COUNT(*) FROM rights_requests") == [(0,)]
    assert table(privacy, "SELECT COUNT(*) FROM audit_log") == [(0,)]


async def test_unknown_subject_is_a_clear_logged_error_and_changes_nothing(env: Any) -> None:
    privacy, rights, _, _ = env
    req = await rights.create("erasure", "+46 8 123 456 78", OP)
    await rights.attest(req.id, OP, "letter with signature")
    with pytest.raises(RightsError, match="holds no personal data about this subject"):
        await rights.process(req.id, OP)
    after = await rights.get(req.id)
    assert after.status is Status.ERROR
    log = await rights.log(req.id)
    assert [(e["step"], e["outcome"]) for e in log][-1] == ("resolve", "error")
    assert table(privacy, "SELECT COUNT(*) FROM erased_subjects") == [(0,)]
    refused = await rights.refuse(req.id, "no personal data about the requester is held", OP)
    assert refused.status is Status.DENIED and refused.closed


async def test_rectification_changes_the_name_and_audits(env: Any, tmp_path: Path) -> None:
    privacy, rights, _, _ = env
    await seed(privacy, tmp_path)
    rid = await done(rights, "rectification", field="caller_name", value="Anna Svensson-Berg")
    assert (await rights.get(rid)).response == {"outcome": "rectified", "rows": 2}
    assert table(privacy, "SELECT DISTINCT caller_name FROM calls WHERE id='1700000001.1'") == [
        ("Anna Svensson-Berg",)
    ]
    actions = [a for (a,) in table(privacy, "SELECT action FROM audit_log")]
    assert "subject.rectify" in actions
    assert NAME not in str(table(privacy, "SELECT * FROM audit_log"))


async def test_restriction_blocks_originate(env: Any, tmp_path: Path) -> None:
    privacy, rights, _, _ = env
    svc = TelephonyService(privacy.cfg, privacy.db, privacy)
    sent: list[str] = []

    async def action(name: str, **kw: Any) -> None:
        sent.append(name)

    svc.ami.action = action  # type: ignore[method-assign,assignment]
    rid = await done(rights, "restriction", "202")
    assert (await rights.get(rid)).response["outcome"] == "restricted"
    with pytest.raises(DoNotCallError, match="processing is restricted"):
        await svc.originate("202", "reception", actor=OP)
    assert sent == []
    await svc.originate("201", "reception", actor=OP)
    assert sent == ["Originate"]


async def test_kinds_cover_articles_15_to_21() -> None:
    assert {k.value for k in Kind} == {
        "access", "erasure", "rectification", "restriction", "objection",
    }  # fmt: skip


def test_cli_intake_verify_process_and_bad_input(tmp_path: Path) -> None:
    from tests.privacy.test_dnc import cli

    cfg = tmp_path / "c.toml"
    cfg.write_text(
        'state_dir = "state"\n[[lines]]\nname = "reception"\nextension = "100"\n'
        '[[extensions]]\nnumber = "202"\nname = "x"\n'
    )
    assert cli(cfg, "request", "create", "objection", "202").returncode == 0
    assert cli(cfg, "request", "attest", "1", "--note", "desk phone owner").returncode == 0
    done_ = cli(cfg, "request", "process", "1")
    assert done_.returncode == 0 and "opted_out" in done_.stdout
    bad = cli(cfg, "request", "create", "access", "+46 70")
    assert bad.returncode != 0 and "not a valid phone number" in bad.stderr
    assert "complete" in cli(cfg, "request", "show", "1").stdout


async def test_forward_to_another_controller_with_an_export(tmp_path: Path) -> None:
    from appliance.privacy.rights import Status

    cfg = make_cfg(tmp_path)
    async with Database(cfg.database) as db:
        privacy = Privacy(cfg, db)
        await seed(privacy, tmp_path)
        rights = Rights(privacy)
        req = await rights.create("erasure", NUMBER, OP)
        with pytest.raises(RightsError, match="forwarding note"):
            await rights.forward(req.id, "Example Clinic AB", " ", OP)
        assert (await rights.get(req.id)).status is Status.IDENTITY_UNVERIFIED
        done = await rights.forward(req.id, "Example Clinic AB", "their patients' calls", OP)
        assert done.status is Status.FORWARDED and done.closed
        assert done.response["forwarded_to"] == "Example Clinic AB"
        assert done.export_path.endswith(".zip")
        with pytest.raises(RightsError):
            await rights.forward(req.id, "Other AB", "again", OP)
        actions = [a["action"] for a in await db.audit_rows()]
        assert "request.forward" in actions
