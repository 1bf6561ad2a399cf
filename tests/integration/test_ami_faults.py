"""AMI faults: cut mid-call (no CDR lost), bad credentials and no Asterisk (clear errors)."""

from __future__ import annotations

import asyncio
import subprocess
import sys
import time
from collections.abc import AsyncIterator
from dataclasses import replace
from pathlib import Path

import pytest
import pytest_asyncio

from appliance.config import Config
from appliance.server import Appliance
from appliance.store import Database
from appliance.telephony.ami import AmiError
from appliance.telephony.service import TelephonyService
from appliance.telephony.sip import SipPhone
from tests.integration.conftest import DEV_CONFIG, Heards
from tests.integration.tcp_proxy import CuttableProxy

pytestmark = pytest.mark.asyncio(loop_scope="session")
REPO = Path(__file__).resolve().parents[2]


@pytest_asyncio.fixture(loop_scope="session")
async def proxy(cfg: Config) -> AsyncIterator[CuttableProxy]:
    p = CuttableProxy(cfg.asterisk.ami_host, cfg.asterisk.ami_port)
    await p.start()
    yield p
    await p.close()


@pytest_asyncio.fixture(loop_scope="session")
async def watcher(
    cfg: Config, proxy: CuttableProxy, tmp_path: Path
) -> AsyncIterator[TelephonyService]:
    """A second appliance instance whose AMI connection goes through the cuttable proxy."""
    c = replace(
        cfg,
        database=tmp_path / "watcher.db",
        recordings_dir=tmp_path / "rec",
        asterisk=replace(cfg.asterisk, ami_port=proxy.port),
    )
    async with Database(c.database) as db:
        svc = TelephonyService(c, db)
        # Recordings belong to the main appliance; the watcher only counts CDRs.
        svc._schedule_ingest = lambda call_id: None  # type: ignore[method-assign]
        await svc.start()
        yield svc
        await svc.stop()


async def wait_for(predicate, timeout: float = 15.0) -> None:  # type: ignore[no-untyped-def]
    deadline = time.monotonic() + timeout
    while not predicate():
        if time.monotonic() > deadline:
            raise AssertionError("condition not met in time")
        await asyncio.sleep(0.05)


async def test_ami_cut_mid_call_loses_no_cdr(
    app: Appliance,
    watcher: TelephonyService,
    proxy: CuttableProxy,
    phone201: SipPhone,
    heards: Heards,
) -> None:
    for round_ in range(3):
        mark = heards.mark()
        call = await phone201.dial("100")
        await call.wait_confirmed(timeout=10)
        await asyncio.sleep(0.5)
        await proxy.cut()  # the TCP connection dies mid-call
        await call.hangup()
        await call.wait_ended(timeout=5)
        heard = await heards.next(mark, "reception")
        await app.telephony.wait_cdr(heard.call_id)  # Asterisk has emitted the CDR by now
        assert await watcher.db.cdrs(heard.call_id) == []  # …and the watcher missed it
        await proxy.restore()
        await wait_for(lambda r=round_: watcher.stats.reconnects >= r + 1)
        await wait_for(lambda: watcher.ami.connected)
        rows = await watcher.wait_cdr(heard.call_id, timeout_s=10)
        main_rows = await app.db.cdrs(heard.call_id)
        assert len(rows) == len(main_rows) == 1
        got, want = rows[0], main_rows[0]
        assert got["source"] == "reconciled"
        for key in (
            "calling_number",
            "caller_name",
            "dialed_number",
            "direction",
            "line",
            "duration_s",
            "billable_s",
            "disposition",
            "hangup_cause",
            "channel",
            "dest_channel",
        ):
            assert got[key] == want[key], key
        # The file has microseconds, the event whole seconds: same instant.
        assert abs(float(got["start_at"]) - float(want["start_at"])) < 1.0
    assert await watcher.db.count_cdrs() >= 3


async def test_cdrs_written_while_the_appliance_was_down_are_imported(
    cfg: Config, app: Appliance, phone201: SipPhone, heards: Heards, tmp_path: Path
) -> None:
    mark = heards.mark()
    call = await phone201.dial("100")
    await call.wait_confirmed(timeout=10)
    await asyncio.sleep(0.3)
    await call.hangup()
    heard = await heards.next(mark, "reception")
    await app.telephony.wait_cdr(heard.call_id)
    # A fresh appliance database (as after a crash before the write): start() imports it.
    c = replace(cfg, database=tmp_path / "late.db", recordings_dir=tmp_path / "rec")
    async with Database(c.database) as db:
        svc = TelephonyService(c, db)
        svc._schedule_ingest = lambda call_id: None  # type: ignore[method-assign]
        await svc.start()
        try:
            rows = await db.cdrs(heard.call_id)
            assert len(rows) == 1 and rows[0]["source"] == "reconciled"
        finally:
            await svc.stop()


async def test_bad_ami_credentials_are_a_clear_error(cfg: Config, tmp_path: Path) -> None:
    c = replace(cfg, asterisk=replace(cfg.asterisk, ami_secret="definitely-wrong-secret"))
    async with Database(tmp_path / "x.db") as db:
        svc = TelephonyService(c, db)
        with pytest.raises(AmiError) as exc:
            await svc.start()
    msg = str(exc.value)
    assert "login as 'callvault'" in msg and "failed" in msg and "ami_secret" in msg


async def test_unreachable_asterisk_is_a_clear_error(cfg: Config, tmp_path: Path) -> None:
    c = replace(cfg, asterisk=replace(cfg.asterisk, ami_port=1))
    async with Database(tmp_path / "x.db") as db:
        svc = TelephonyService(c, db)
        t0 = time.monotonic()
        with pytest.raises(AmiError, match=r"cannot reach Asterisk AMI at 127\.0\.0\.1:1"):
            await svc.start()
        assert time.monotonic() - t0 < 5


async def test_cli_reports_errors_without_traceback(cfg: Config, tmp_path: Path) -> None:
    live = cfg.asterisk.host_path(cfg.asterisk.config_dir)
    before = {p.name: p.read_bytes() for p in live.iterdir() if p.is_file()}
    bad = tmp_path / "bad.toml"
    bad.write_text(
        DEV_CONFIG.read_text().replace('"caller", "callee", "mixed"', '"caller", "calee"')
    )
    for argv in (["config", "check"], ["asterisk", "render"]):
        out = subprocess.run(
            [sys.executable, "-m", "appliance.cli", "--config", str(bad), *argv],
            capture_output=True,
            text=True,
            cwd=REPO,
            check=False,
        )
        assert out.returncode == 2
        assert "Traceback" not in out.stderr
        assert "lines[0].record_legs[1]: unknown leg 'calee'" in out.stderr
    # Nothing was written: the live Asterisk config is byte for byte what it was.
    assert {p.name: p.read_bytes() for p in live.iterdir() if p.is_file()} == before
    unreachable = tmp_path / "unreachable.toml"
    unreachable.write_text(
        DEV_CONFIG.read_text().replace("sandbox = true", "sandbox = true\nami_port = 1")
    )
    out = subprocess.run(
        [sys.executable, "-m", "appliance.cli", "--config", str(unreachable), "call", "201"],
        capture_output=True,
        text=True,
        cwd=REPO,
        check=False,
    )
    assert out.returncode == 2 and "Traceback" not in out.stderr
    assert "cannot reach Asterisk AMI" in out.stderr
