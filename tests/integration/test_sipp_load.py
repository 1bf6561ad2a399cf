"""SIPp (a real, independent SIP stack) places 20 concurrent calls to a recorded line."""

from __future__ import annotations

import asyncio
import time
from pathlib import Path

import pytest

from appliance.config import Config
from appliance.server import Appliance

pytestmark = pytest.mark.asyncio(loop_scope="session")
SCENARIO = Path(__file__).resolve().parents[2] / "bench" / "sipp" / "uac_pcap.xml"


async def run_sipp(sipp: str, cfg: Config, *, calls: int, rate: int, line: str, tmp: Path) -> int:
    proc = await asyncio.create_subprocess_exec(
        sipp,
        "-sf", str(SCENARIO),
        "-i", "127.0.0.2",
        "-p", "5098",
        "-mp", "17000",
        "-s", line,
        f"127.0.0.1:{cfg.asterisk.sip_port}",
        "-m", str(calls),
        "-l", str(calls),
        "-r", str(rate),
        "-d", "3000",
        "-timeout", "60s",
        "-nostdin",
        "-trace_err",
        "-error_file", str(tmp / "sipp_errors.log"),
        stdout=asyncio.subprocess.DEVNULL,
        stderr=asyncio.subprocess.PIPE,
        cwd=tmp,
    )  # fmt: skip
    _, err = await proc.communicate()
    assert proc.returncode == 0, f"sipp failed ({proc.returncode}): {err.decode()[-2000:]}"
    return proc.returncode


async def test_twenty_concurrent_recorded_calls(
    app: Appliance, cfg: Config, sipp: str, tmp_path: Path
) -> None:
    t0 = time.time()
    await run_sipp(sipp, cfg, calls=20, rate=20, line="902", tmp=tmp_path)

    async def settled() -> tuple[list[dict], list[dict]]:
        cdrs = [
            r
            for r in await app.db.cdrs(limit=1000)
            if r["line"] == "loadtest" and float(str(r["start_at"])) >= t0 - 1
        ]
        ids = {str(r["call_id"]) for r in cdrs}
        recs = [r for r in await app.db.recordings() if r["call_id"] in ids]
        return cdrs, recs

    deadline = time.monotonic() + 20
    while True:
        cdrs, recs = await settled()
        if (len(cdrs) >= 20 and len(recs) >= 20) or time.monotonic() > deadline:
            break
        await asyncio.sleep(0.2)
    assert len(cdrs) == 20
    assert all(r["disposition"] == "ANSWERED" for r in cdrs)
    assert all(r["hangup_cause"] == 16 for r in cdrs)  # SIPp hangs up with BYE
    assert all(r["calling_number"].startswith("load") for r in cdrs)
    assert len({r["call_id"] for r in cdrs}) == 20
    # All 20 were up at once: every call lasted ~3 s and they all started within ~1.5 s.
    starts = sorted(float(str(r["start_at"])) for r in cdrs)
    assert starts[-1] - starts[0] <= 2.0
    assert len(recs) == 20
    for rec in recs:
        assert rec["leg"] == "mixed" and rec["flags"] == ""
        assert 2.0 <= rec["duration_s"] <= 4.5, rec
    assert app.telephony.recordings.spool_files() == []
