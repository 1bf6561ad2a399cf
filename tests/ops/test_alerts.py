import logging
from pathlib import Path

import pytest

from appliance.ops.alerts import Alerts
from appliance.ops.notify import SmtpNotifier, WebhookNotifier
from appliance.store import Database
from tests.ops.sinks import smtp_sink, webhook_sink


class Clock:
    def __init__(self, t: float = 1_800_000_000.0) -> None:
        self.t = t

    def __call__(self) -> float:
        return self.t


async def test_fire_dedupes_per_kind_and_key(tmp_path: Path) -> None:
    clock = Clock()
    async with Database(tmp_path / "db.sqlite") as db:
        alerts = Alerts(db, clock=clock, hostname="box")
        a = await alerts.fire("disk_filling", "/var/lib: 9% free", key="/var/lib")
        clock.t += 60
        b = await alerts.fire("disk_filling", "/var/lib: 8% free", key="/var/lib")
        c = await alerts.fire("disk_filling", "/spool: 3% free", key="/spool")
        assert a.id == b.id != c.id
        assert (b.count, b.message, b.first_at, b.last_at) == (
            2,
            "/var/lib: 8% free",
            a.first_at,
            clock.t,
        )
        assert a.severity == "warning"
        assert {x.key for x in await alerts.list()} == {"/var/lib", "/spool"}
        done = await alerts.resolve("disk_filling", "/var/lib")
        assert done is not None and done.resolved_at == clock.t
        assert await alerts.resolve("disk_filling", "/var/lib") is None
        assert [x.key for x in await alerts.list()] == ["/spool"]
        assert len(await alerts.list(open_only=False)) == 2
        # After resolution the same condition opens a new alert.
        d = await alerts.fire("disk_filling", "again", key="/var/lib")
        assert d.id not in (a.id, c.id) and d.count == 1


async def test_bad_input_is_refused(tmp_path: Path) -> None:
    async with Database(tmp_path / "db.sqlite") as db:
        alerts = Alerts(db)
        with pytest.raises(ValueError, match="lower_snake_case"):
            await alerts.fire("Disk Full", "x")
        with pytest.raises(ValueError, match="empty message"):
            await alerts.fire("disk_filling", " ")
        with pytest.raises(ValueError, match="severity"):
            await alerts.fire("disk_filling", "x", severity="fatal")  # type: ignore[arg-type]
        assert await alerts.list() == []


async def test_ack_keeps_alert_open(tmp_path: Path) -> None:
    async with Database(tmp_path / "db.sqlite") as db:
        alerts = Alerts(db)
        a = await alerts.fire("trunk_down", "trunk 'carrier' unregistered", key="carrier")
        assert a.severity == "critical"
        assert await alerts.ack(a.id, "admin")
        assert not await alerts.ack(a.id, "admin")
        (still,) = await alerts.list()
        assert still.acked_by == "admin" and still.open


async def test_journal_and_smtp_and_webhook(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    with smtp_sink() as (port, box), webhook_sink() as (url, hooks):
        async with Database(tmp_path / "db.sqlite") as db:
            alerts = Alerts(
                db,
                [
                    SmtpNotifier("127.0.0.1", port, "box@example.lan", ("it@example.lan",)),
                    WebhookNotifier(url),
                ],
                hostname="box1",
            )
            with caplog.at_level(logging.INFO, logger="callvault.alerts"):
                a = await alerts.fire("recording_refused", "spool full: call 1.2 not recorded")
                await alerts.fire("recording_refused", "spool full: call 1.3 not recorded")
                await alerts.drain()
                await alerts.resolve("recording_refused")
                await alerts.drain()
            (row,) = await alerts.list(open_only=False)
            assert row.notified_at is not None and row.notify_error is None
        mails = box.wait(2)
    # Sent once when raised (the repeat only counts) and once when resolved.
    assert [m["Subject"] for m in mails] == [
        "[callvault box1] CRITICAL: recording_refused",
        "[callvault box1] resolved: recording_refused",
    ]
    assert "call 1.2 not recorded" in mails[0].get_payload()
    assert [(h["kind"], h["resolved"]) for h in hooks.bodies] == [
        ("recording_refused", False),
        ("recording_refused", True),
    ]
    assert hooks.bodies[0]["id"] == a.id
    crit = [r for r in caplog.records if r.levelno == logging.CRITICAL]
    assert len(crit) == 1 and "recording_refused" in crit[0].getMessage()


async def test_failed_delivery_is_recorded_not_raised(tmp_path: Path) -> None:
    with webhook_sink() as (url, hooks):
        hooks.status = 500
        async with Database(tmp_path / "db.sqlite") as db:
            alerts = Alerts(
                db, [SmtpNotifier("127.0.0.1", 1, "a@b.lan", ("c@d.lan",)), WebhookNotifier(url)]
            )
            await alerts.fire("backup_failed", "backup run: exit 1")
            await alerts.drain()
            (row,) = await alerts.list()
    assert row.notify_error is not None
    assert "SMTP relay 127.0.0.1:1" in row.notify_error and "HTTP 500" in row.notify_error


async def test_severity_rise_notifies_again(tmp_path: Path) -> None:
    with webhook_sink() as (url, hooks):
        async with Database(tmp_path / "db.sqlite") as db:
            alerts = Alerts(db, [WebhookNotifier(url)])
            await alerts.fire("disk_filling", "12% free", key="/")
            await alerts.fire("disk_filling", "11% free", key="/")
            await alerts.fire("disk_filling", "4% free", key="/", severity="critical")
            await alerts.drain()
    assert [h["severity"] for h in hooks.bodies] == ["warning", "critical"]
