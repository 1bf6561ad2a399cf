"""The disk alert from a disk really filling: a 2 MiB tmpfs is the recordings disk.

Filled past `disk_warn_free_pct` the check raises a warning, past `disk_min_free_pct` it turns
critical (notified again); both reach the aiosmtpd sink on loopback through the SMTP settings
of the config and show on the admin Alerts page; deleting the file resolves it (a "resolved"
mail, the alert under "Recently resolved"). Mounting needs root, as `make test` has.
"""

from __future__ import annotations

import os
import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest
from litestar.testing import AsyncTestClient

from appliance import config
from appliance.admin.app import create_app
from appliance.admin.services import open_services
from appliance.ops.alerts import alerts_from_config
from appliance.ops.checks import AlertChecks
from tests.admin.test_ui import _logged_in
from tests.ops.sinks import smtp_sink
from tests.privacy.conftest import RAW

SIZE = 2 * 1024 * 1024


@pytest.fixture
def small_disk(tmp_path: Path) -> Iterator[Path]:
    if os.geteuid() != 0:
        pytest.fail("this test mounts a tmpfs: run it as root (make test does)")
    mnt = tmp_path / "recordings"
    mnt.mkdir()
    subprocess.run(
        ["mount", "-t", "tmpfs", "-o", f"size={SIZE},mode=0700", "cv-test-alert", str(mnt)],
        check=True,
    )
    try:
        yield mnt
    finally:
        subprocess.run(["umount", "-l", str(mnt)], check=False)


def _fill_to(path: Path, free_pct: float) -> None:
    """Grow `path` until the disk under it has about `free_pct` % free (real blocks written)."""
    st = os.statvfs(path.parent)
    total = st.f_blocks * st.f_frsize
    want_free = total * free_pct / 100
    free = st.f_bavail * st.f_frsize
    with path.open("ab") as fh:
        fh.write(os.urandom(max(0, int(free - want_free))))
        fh.flush()
        os.fsync(fh.fileno())


def _free_pct(path: Path) -> float:
    st = os.statvfs(path)
    return 100.0 * st.f_bavail / st.f_blocks


async def test_a_filling_disk_alerts_by_mail_and_in_the_ui_then_resolves(
    tmp_path: Path, small_disk: Path
) -> None:
    with smtp_sink() as (port, box):
        cfg = config.parse(
            {**RAW, "recordings_dir": str(small_disk),
             "ops": {"smtp_host": "127.0.0.1", "smtp_port": port, "smtp_from": "box@example.lan",
                     "smtp_to": ["it@example.lan"], "disk_warn_free_pct": 15.0,
                     "disk_min_free_pct": 5.0}},
            base_dir=tmp_path,
        )  # fmt: skip
        async with open_services(cfg) as svc:
            alerts = alerts_from_config(svc.db, cfg.ops)
            checks = AlertChecks(cfg, svc.db, alerts)

            async def recordings_alert() -> list[tuple[str, str, bool]]:
                await checks.check_disks()
                await alerts.drain()
                return [
                    (a.severity, a.message, a.open)
                    for a in await alerts.list(open_only=False)
                    if (a.kind, a.key) == ("disk_filling", "recordings")
                ]

            assert await recordings_alert() == []  # an empty disk raises nothing
            filler = small_disk / "big.bin"
            _fill_to(filler, 10.0)
            assert 5.0 < _free_pct(small_disk) < 15.0
            ((severity, message, is_open),) = await recordings_alert()
            assert (severity, is_open) == ("warning", True)
            assert f"recordings disk ({small_disk})" in message
            _fill_to(filler, 1.0)
            assert _free_pct(small_disk) < 5.0
            ((severity, message, is_open),) = await recordings_alert()
            assert (severity, is_open) == ("critical", True)

            async with AsyncTestClient(
                app=create_app(cfg), base_url="https://testserver.local"
            ) as client:
                await _logged_in(client, cfg, "ida", "admin")
                page = (await client.get("/alerts")).text
                open_part = page.split("Recently resolved")[0]
                assert "disk_filling" in open_part and message in open_part
                badge = (await client.get("/alerts/badge")).text
                assert 'class="flag alert-critical"' in badge

                filler.unlink()  # space freed: the next round clears it
                assert await recordings_alert() == [("critical", message, False)]
                page = (await client.get("/alerts")).text
                assert "disk_filling" in page.split("Recently resolved")[1]
                assert "disk_filling" not in page.split("Recently resolved")[0]
        box.wait(3)
    # Only the tmpfs counts: the test box's own disk may be low too, under another key.
    mails = [m for m in box.messages if m["Subject"].endswith("disk_filling recordings")]
    assert [m["Subject"].split("] ")[1] for m in mails] == [
        "WARNING: disk_filling recordings",
        "CRITICAL: disk_filling recordings",  # the rise is news: sent again
        "resolved: disk_filling recordings",
    ]
    body = mails[1].get_payload(decode=True)
    assert isinstance(body, bytes) and b"recordings disk (" in body and b"% free" in body
