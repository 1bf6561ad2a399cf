"""Campaign benchmarks (`python -m bench.run --only campaign`).

  lead_import_rows_per_s     rows per second of a 10 000-row CSV lead import (3 % malformed,
                             2 % duplicates): parse, E.164, blind index, subject keys, sealing,
                             one transaction; median of 3 into fresh databases
  campaign_dials_per_minute  completed dials per minute the dialler sustains for 60 s through the
                             real Asterisk sandbox to a SIPp callee on loopback that answers every
                             call (20 concurrent at most, the announcement line 902, ~4 s calls)
  campaign_dial_failures     dials in that run that did not end answered (should be 0)

The SIPp callee (bench/sipp/uas_campaign.xml) also serves tests/integration/test_campaign.py.
"""

from __future__ import annotations

import asyncio
import random
import shutil
import statistics
import tempfile
import time
from pathlib import Path
from typing import Any

from appliance.campaign.campaign import Campaigns
from appliance.campaign.dialer import AmiOriginator, Dialler
from appliance.campaign.leads import Leads
from appliance.campaign.model import Settings
from appliance.config import Config
from appliance.privacy.audit import Actor
from appliance.store import Database

UAS = Path(__file__).resolve().parent / "sipp" / "uas_campaign.xml"
UAS_IP = "127.0.0.2"
UAS_PORT = 5099
DIAL = f"PJSIP/loadgen/sip:{{digits}}@{UAS_IP}:{UAS_PORT}"
"""The IP peer `loadgen` (127.0.0.2) of the dev config, with the callee's URI given directly."""
BENCH = Actor("bench", "operator")


def csv_rows(n: int, *, seed: int = 8, bad: bool = True) -> bytes:
    rnd = random.Random(seed)
    out = ["phone,name,consent"]
    for i in range(n):
        r = rnd.random() if bad else 1.0
        if r < 0.03:
            out.append(f"12ab{i},N{i},consent")
        elif r < 0.05 and i:
            out.append(f"+4670{1000000 + i - 1:07d},D{i},consent")
        else:
            out.append(f"+4670{1000000 + i:07d},N{i},consent")
    return ("\n".join(out) + "\n").encode()


async def start_uas(sipp: str, tmp: Path, port: int = UAS_PORT) -> asyncio.subprocess.Process:
    """The SIPp callee; it serves calls until terminated."""
    return await asyncio.create_subprocess_exec(
        sipp, "-sf", str(UAS), "-i", UAS_IP, "-p", str(port), "-mp", "21000",
        "-nostdin", "-max_socket", "2048", "-trace_msg", "-message_file",
        str(tmp / "uas_messages.log"), "-trace_err", "-error_file", str(tmp / "uas_errors.log"),
        stdout=asyncio.subprocess.DEVNULL, stderr=asyncio.subprocess.PIPE, cwd=tmp,
    )  # fmt: skip


async def stop_uas(proc: asyncio.subprocess.Process) -> None:
    if proc.returncode is None:
        proc.terminate()
        try:
            await asyncio.wait_for(proc.wait(), 10)
        except TimeoutError:
            proc.kill()
            await proc.wait()


def invited_numbers(tmp: Path) -> list[str]:
    """Every number the callee received an INVITE for (retransmissions counted once)."""
    log = tmp / "uas_messages.log"
    if not log.exists():
        return []
    seen: dict[str, str] = {}
    call_id = number = ""
    for line in log.read_text(errors="replace").splitlines():
        if line.startswith("INVITE sip:"):
            number = line.split("sip:", 1)[1].split("@", 1)[0]
            call_id = ""
        elif line.lower().startswith("call-id:") and number:
            call_id = line.split(":", 1)[1].strip()
            seen.setdefault(call_id, number)
            number = ""
    return list(seen.values())


def bench_import(repeats: int = 3, rows: int = 10_000) -> float:
    from appliance.privacy import Privacy
    from tests.campaign.conftest import make_cfg

    data = csv_rows(rows)
    rates = []
    for _ in range(repeats):
        with tempfile.TemporaryDirectory(prefix="callvault-leads-") as td:
            cfg = make_cfg(Path(td))

            async def once(cfg: Config = cfg) -> float:
                async with Database(cfg.database) as db:
                    privacy = Privacy(cfg, db)
                    await privacy.keyring.system_key("index")  # key set-up is not per row
                    t0 = time.perf_counter()
                    rep = await Leads(privacy).import_bytes(
                        data, "bench.csv", list_name="bench", actor=BENCH
                    )
                    elapsed = time.perf_counter() - t0
                    assert rep.rows == rows and rep.imported + len(rep.bad) == rows
                    return rows / elapsed

            rates.append(asyncio.run(once()))
    return round(statistics.median(rates))


async def bench_dials(cfg: Config, tmp: Path, *, seconds: float, leads: int) -> dict[str, float]:
    from appliance.telephony.service import TelephonyService

    sipp = shutil.which("sipp") or "sipp"
    uas = await start_uas(sipp, tmp)
    async with Database(cfg.database) as db:
        svc = TelephonyService(cfg, db)
        await svc.start()
        try:
            privacy = svc.privacy
            # Numbers ending in 1 or 2 are busy / unanswered in the callee's script: skip them.
            nums = [n for n in range(10 * leads) if n % 10 not in {1, 2}][:leads]
            data = "phone,basis\n" + "".join(f"+4670{3000000 + n:07d},consent\n" for n in nums)
            await Leads(privacy).import_bytes(
                data.encode(), "b.csv", list_name="dials", actor=BENCH
            )
            settings = Settings(
                windows=("mon-sun 00:00-23:59",), max_concurrent=20, calls_per_minute=1000,
                max_attempts=1, dial=DIAL, ring_timeout_s=10, block_public_holidays=False,
            )  # fmt: skip
            camps = Campaigns(privacy)
            await camps.create("bench", line="loadtest", list_name="dials", settings=settings,
                               actor=BENCH)  # fmt: skip
            await camps.act("bench", "start", BENCH)
            dialler = Dialler(privacy, AmiOriginator(svc))
            t0 = time.monotonic()
            while time.monotonic() - t0 < seconds:
                await dialler.tick()
                await asyncio.sleep(0.1)
            done = [a for a in await db.attempts(1) if a["state"] in {"done", "failed", "lost"}]
            answered = [a for a in done if a["outcome"] == "answered"]
            return {
                "campaign_dials_per_minute": round(len(answered) * 60.0 / seconds, 1),
                "campaign_dial_failures": len(done) - len(answered),
            }
        finally:
            await svc.stop()
            await stop_uas(uas)


def run(cfg: Config, tmp: Path, results: dict[str, Any], *, quick: bool) -> dict[str, float]:
    out: dict[str, float] = {"lead_import_rows_per_s": bench_import(1 if quick else 3)}
    out.update(asyncio.run(bench_dials(cfg, tmp, seconds=20 if quick else 60, leads=2000)))
    results.update(out)
    return out
