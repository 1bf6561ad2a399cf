"""Clock jumps (NTP stepping the clock, a VM resumed) during an AMI outage: the CDRs Asterisk
wrote meanwhile are still reconciled, whichever way the clock went; waits use the monotonic
clock, so a jump neither hangs nor cuts them short."""

from __future__ import annotations

import asyncio
import csv
from dataclasses import replace
from pathlib import Path

import pytest

from appliance.store import Database
from appliance.telephony import service as service_mod
from appliance.telephony.render import CDR_CSV_FIELDS
from appliance.telephony.service import TelephonyService, outage_start
from tests.privacy.conftest import make_cfg


class Clock:
    def __init__(self, wall: float, mono: float) -> None:
        self.wall, self.mono = wall, mono

    def step(self, seconds: float, jump: float = 0.0) -> None:
        """`seconds` of real time pass; the wall clock is also stepped by `jump`."""
        self.mono += seconds
        self.wall += seconds + jump


@pytest.fixture
def clock(monkeypatch: pytest.MonkeyPatch) -> Clock:
    c = Clock(wall=1_800_000_000.0, mono=5_000.0)
    monkeypatch.setattr(service_mod.time, "time", lambda: c.wall)
    monkeypatch.setattr(service_mod.time, "monotonic", lambda: c.mono)
    return c


@pytest.mark.parametrize("jump", [-3600.0, -30.0, 0.0, 30.0, 3600.0, 86400.0])
def test_outage_window_covers_cdrs_stamped_on_either_side_of_a_jump(
    clock: Clock, jump: float
) -> None:
    began_wall, began_mono = clock.wall, clock.mono
    clock.step(5)
    before_jump = clock.wall  # a CDR written during the outage, before the step
    clock.step(5, jump)
    after_jump = clock.wall  # one written after it
    clock.step(5)
    start = outage_start(began_wall, began_mono)
    assert start <= before_jump and start <= after_jump
    # …and not the whole history: at most the outage plus the jump back.
    assert start >= began_wall - abs(jump) - 20


def _cdr_line(call_id: str, end: float) -> list[str]:
    f = dict.fromkeys(CDR_CSV_FIELDS, "")
    f.update(
        clid='"Desk" <201>', src="201", dst="100", dcontext="callvault-lines",
        channel="PJSIP/201-01", start=f"{end - 10:.6f}", answer=f"{end - 9:.6f}",
        end=f"{end:.6f}", duration="10", billsec="9", disposition="ANSWERED",
        uniqueid=call_id, linkedid=call_id, sequence="1", cv_line="reception",
        cv_direction="inbound", cv_dialed="100", cv_cause="16",
    )  # fmt: skip
    return [f[name] for name in CDR_CSV_FIELDS]


@pytest.mark.parametrize("jump", [-7200.0, 7200.0])
async def test_reconcile_after_an_outage_with_a_clock_jump(
    tmp_path: Path, clock: Clock, jump: float
) -> None:
    base = make_cfg(tmp_path)
    cfg = replace(base, asterisk=replace(base.asterisk, root=tmp_path / "root"))
    cdr_file = cfg.asterisk.host_path(cfg.asterisk.cdr_log)
    cdr_file.parent.mkdir(parents=True)
    async with Database(cfg.database) as db:
        svc = TelephonyService(cfg, db)
        svc._on_state(False)  # AMI lost
        clock.step(20)
        stamped = [(f"{int(clock.wall)}.1", clock.wall)]
        clock.step(10, jump)
        stamped.append((f"{int(clock.wall)}.2", clock.wall))
        with cdr_file.open("w", newline="") as fh:
            csv.writer(fh).writerows(_cdr_line(cid, end) for cid, end in stamped)
        clock.step(5)
        svc._on_state(True)  # reconnected: reconcile runs in the background
        await asyncio.gather(*list(svc._tasks))
        assert svc.stats.reconnects == 1
        for call_id, _ in stamped:
            rows = await db.cdrs(call_id)
            assert len(rows) == 1 and rows[0]["source"] == "reconciled", call_id


async def test_wait_cdr_is_timed_by_the_monotonic_clock(tmp_path: Path) -> None:
    """A wall-clock jump of a day during wait_cdr neither ends the wait early nor hangs it."""
    import time

    async with Database(make_cfg(tmp_path).database) as db:
        svc = TelephonyService(make_cfg(tmp_path), db)
        t0 = time.monotonic()
        with pytest.raises(service_mod.TelephonyError):
            await svc.wait_cdr("1.1", timeout_s=0.6)
        assert 0.5 <= time.monotonic() - t0 < 3
