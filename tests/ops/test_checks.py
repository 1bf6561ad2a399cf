"""Each alert the box watches for, provoked: a deadline expired with a controllable clock, a
failed retention run, a corrupted backup, an expiring certificate, a trunk and Asterisk down,
a disk over its threshold, models missing — each reaching the SMTP sink and the alert list."""

from __future__ import annotations

import datetime as dt
from dataclasses import replace
from pathlib import Path
from typing import Any

from appliance.admin.status import AsteriskStatus, Endpoint, Registration
from appliance.config import Config
from appliance.ops.alerts import Alerts
from appliance.ops.checks import DAY, AlertChecks
from appliance.ops.notify import SmtpNotifier
from appliance.privacy import Actor, Privacy
from appliance.privacy.rights.service import Rights
from appliance.store import Database
from tests.ops.sinks import smtp_sink
from tests.privacy.conftest import make_cfg
from tests.privacy.rights_fixtures import NUMBER, seed


class Clock:
    def __init__(self, t: float) -> None:
        self.t = t

    def __call__(self) -> float:
        return self.t


def up(*, trunk_status: str = "Registered", peer_state: str = "Not in use") -> AsteriskStatus:
    return AsteriskStatus(
        reachable=True,
        endpoints=[
            Endpoint("201", "extension", "Desk", "Unavailable", []),  # a phone, not a trunk
            Endpoint("310", "other", "", "Unavailable", []),  # a PBX desk phone, not a trunk
            Endpoint("carrier-ip", "ip peer", "192.0.2.7", peer_state, []),
            Endpoint("trunk-carrier", "other", "", peer_state, []),
        ],
        registrations=[Registration("trunk-carrier-reg", "sip:sip.example", trunk_status)],
    )


async def open_kinds(alerts: Alerts) -> dict[tuple[str, str], str]:
    return {(a.kind, a.key): a.severity for a in await alerts.list()}


async def test_rights_deadline_with_a_controllable_clock(tmp_path: Path) -> None:
    cfg = make_cfg(tmp_path)
    t0 = 1_900_000_000.0
    clock = Clock(t0)
    with smtp_sink() as (port, box):
        async with Database(cfg.database) as db:
            privacy = Privacy(cfg, db)
            req = await Rights(privacy, clock=clock).create(
                "erasure", NUMBER, Actor("cli:t", "dpo")
            )
            alerts = Alerts(db, [SmtpNotifier("127.0.0.1", port, "box@x.lan", ("it@x.lan",))])
            checks = AlertChecks(cfg, db, alerts, clock=clock)
            await checks.check_rights()
            assert await alerts.list() == []  # a month to go
            clock.t = req.due_at - 4.5 * DAY  # inside the 5-day window
            await checks.check_rights()
            (a,) = await alerts.list()
            assert (a.kind, a.key, a.severity) == ("rights_deadline", str(req.id), "warning")
            assert "erasure request" in a.message and "(4.5 days)" in a.message
            clock.t = req.due_at + DAY  # overdue: critical, e-mailed again
            await checks.check_rights()
            (a,) = await alerts.list()
            assert a.severity == "critical" and "overdue" in a.message
            await alerts.drain()
            # Closing the request resolves the alert at the next round.
            await _close(db, req.id)
            await checks.check_rights()
            assert await alerts.list() == []
            await alerts.drain()
        mails = box.wait(3)
    assert [m["Subject"].split(": ")[0] for m in mails] == [
        f"[callvault {alerts.hostname}] WARNING",
        f"[callvault {alerts.hostname}] CRITICAL",
        f"[callvault {alerts.hostname}] resolved",
    ]
    assert NUMBER not in "".join(m.as_string() for m in mails)


async def _close(db: Database, rid: int) -> None:
    await db.db.execute("UPDATE rights_requests SET status = 'complete' WHERE id = ?", (rid,))
    await db.db.commit()


async def test_retention_failure_raises_and_success_clears(tmp_path: Path) -> None:
    cfg = make_cfg(tmp_path)
    async with Database(cfg.database) as db:
        alerts = Alerts(db)
        checks = AlertChecks(cfg, db, alerts)
        run = await db.retention_run_start(1_800_000_000.0, dry_run=False)
        await db.retention_run_finish(
            run, finished_at=1_800_000_060.0, counts={}, error="disk I/O error"
        )
        await checks.check_retention()
        (a,) = await alerts.list()
        assert a.kind == "retention_failed" and "disk I/O error" in a.message
        run = await db.retention_run_start(1_800_086_400.0, dry_run=False)
        await db.retention_run_finish(run, finished_at=1_800_086_460.0, counts={})
        await checks.check_retention()
        assert await alerts.list() == []


async def test_backup_failed_unverified_and_stale(tmp_path: Path) -> None:
    from appliance.privacy import backup

    cfg = make_cfg(tmp_path)
    cfg = replace(cfg, backup=replace(cfg.backup, work_dir=tmp_path))
    async with Database(cfg.database) as db:
        await seed(Privacy(cfg, db), tmp_path)  # data to back up, and the master key
        alerts = Alerts(db)
        clock = Clock(dt.datetime.now(dt.UTC).timestamp())
        checks = AlertChecks(cfg, db, alerts, clock=clock)
        await checks.check_backups()
        assert await open_kinds(alerts) == {("backup_unverified", ""): "warning"}
    made = await backup.create(cfg)
    assert made.report.ok
    async with Database(cfg.database) as db:
        alerts = Alerts(db)
        checks = AlertChecks(cfg, db, alerts, clock=clock)
        await checks.check_backups()
        assert await open_kinds(alerts) == {}
        # Bytes flipped on the backup media: verification fails, the alert says so.
        data = bytearray(made.archive.read_bytes())
        data[len(data) // 2] ^= 0xFF
        made.archive.write_bytes(bytes(data))
        assert not (await backup.verify(cfg, made.archive)).ok
        await checks.check_backups()
        (a,) = await alerts.list()
        assert a.kind == "backup_failed" and "failed verification" in a.message
        clock.t += 3 * DAY
        await checks.check_backups()
        (a,) = await alerts.list()
        assert a.kind == "backup_failed"


async def test_certificate_expiring(tmp_path: Path) -> None:
    from appliance.admin.tls import ensure_certificate

    cfg = make_cfg(tmp_path)
    cert, _ = ensure_certificate(cfg)
    from cryptography import x509

    expires = x509.load_pem_x509_certificate(cert.read_bytes()).not_valid_after_utc.timestamp()
    async with Database(cfg.database) as db:
        alerts = Alerts(db)
        clock = Clock(expires - 60 * DAY)
        checks = AlertChecks(cfg, db, alerts, clock=clock)
        await checks.check_certificate()
        assert await alerts.list() == []
        clock.t = expires - 10 * DAY
        await checks.check_certificate()
        assert await open_kinds(alerts) == {("cert_expiring", ""): "warning"}
        clock.t = expires + DAY
        await checks.check_certificate()
        (a,) = await alerts.list()
        assert a.severity == "critical" and "(expired)" in a.message


async def test_asterisk_and_trunks(tmp_path: Path) -> None:
    cfg = make_cfg(tmp_path)
    state: dict[str, Any] = {"st": up()}
    seen: list[dict[str, bool]] = []

    async def probe(_cfg: Config) -> AsteriskStatus:
        return state["st"]

    async with Database(cfg.database) as db:
        alerts = Alerts(db)
        checks = AlertChecks(cfg, db, alerts, asterisk=probe, on_trunks=seen.append)
        await checks.check_asterisk()
        assert await alerts.list() == []
        assert seen[-1] == {"trunk-carrier": True, "carrier-ip": True}
        state["st"] = up(trunk_status="Rejected")
        await checks.check_asterisk()
        assert await alerts.list() == []  # one bad round is not an outage yet
        await checks.check_asterisk()
        assert await open_kinds(alerts) == {("trunk_down", "trunk-carrier"): "critical"}
        state["st"] = up()
        await checks.check_asterisk()  # registered again: the alert clears at once
        assert await open_kinds(alerts) == {}
        state["st"] = up(peer_state="Unavailable")  # qualify OPTIONS unanswered
        await checks.check_asterisk()
        await checks.check_asterisk()
        assert await open_kinds(alerts) == {
            ("trunk_down", "trunk-carrier"): "critical",
            ("trunk_down", "carrier-ip"): "critical",
        }
        state["st"] = AsteriskStatus(False, "Connection refused", "127.0.0.1:5038")
        await checks.check_asterisk()
        await checks.check_asterisk()
        kinds = await open_kinds(alerts)
        assert ("ami_down", "") in kinds and ("trunk_down", "trunk-carrier") in kinds  # unknown
        state["st"] = up()
        await checks.check_asterisk()
        assert await alerts.list() == []


async def test_disk_filling_and_models(tmp_path: Path) -> None:
    cfg = make_cfg(tmp_path)
    tight = replace(cfg, ops=replace(cfg.ops, disk_min_free_pct=99.998, disk_warn_free_pct=99.999))
    loaded = {"ok": False}
    async with Database(cfg.database) as db:
        alerts = Alerts(db)
        await AlertChecks(tight, db, alerts).check_disks()
        kinds = await open_kinds(alerts)
        assert kinds[("disk_filling", "state")] == "critical"
        await AlertChecks(cfg, db, alerts).check_disks()  # the normal thresholds: clears
        assert not [k for k in await open_kinds(alerts) if k[0] == "disk_filling"]
        checks = AlertChecks(cfg, db, alerts, models_loaded=lambda: loaded["ok"])
        await checks.check_models()
        assert ("model_failing", "") in await open_kinds(alerts)
        loaded["ok"] = True
        await checks.check_models()
        assert await alerts.list() == []


async def test_one_broken_check_does_not_stop_the_round(tmp_path: Path) -> None:
    cfg = make_cfg(tmp_path)

    async def broken(_cfg: Config) -> AsteriskStatus:
        raise RuntimeError("probe exploded")

    async with Database(cfg.database) as db:
        alerts = Alerts(db)
        await AlertChecks(cfg, db, alerts, asterisk=broken).run_once()
        assert ("backup_unverified", "") in await open_kinds(alerts)
