"""Reliability and security figures (`make bench`, group `reliability`; issue 9).

Against the real Asterisk sandbox, with the appliance's telephony service in this process
writing CDRs and encrypting recordings:

  load_max_concurrent_recorded_calls  largest of 30/60/100/150/200 concurrent recorded calls,
                                      started at 20 calls/s, with 0 failures (SIPp clean, every
                                      call ANSWERED with its CDR, every recording stored whole)
  fault_cdrs_lost                     CDRs missing after reconciliation when the AMI connection
                                      is cut 20 times during SIPp traffic
  fault_recordings_lost               calls up when Asterisk is SIGKILLed whose recording (up to
                                      the kill) is not stored, plus calls without a CDR after
                                      it restarts
  fault_rows_lost                     acknowledged rows missing after SIGKILLing a writer
                                      process N times, plus plaintext files left in the spool
                                      after the restart sweep, plus integrity_check failures
  soak_rss_growth_mb                  RSS growth (MB) over the soak of the process that grew
                                      most (this one, Asterisk), median of the last tenth of
                                      samples minus the first tenth after warm-up; fds too
  soak_duration_s                     how long the soak ran (CALLVAULT_SOAK_S, default 1800)
  security_findings                   failing checks of tests/security (admin UI/API attacks,
                                      TLS, AMI exposure) run in a subprocess, plus SIP INVITEs
                                      that bypass Asterisk and are not refused by the agent
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import random
import re
import shutil
import signal
import sqlite3
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from dataclasses import replace
from pathlib import Path
from typing import Any

from appliance.config import Config
from appliance.store import Database
from appliance.telephony.service import RECONSTRUCTED, TelephonyService

REPO = Path(__file__).resolve().parents[1]
SCENARIO = REPO / "bench" / "sipp" / "uac_pcap.xml"
Log = Callable[[str], None]


async def sipp(
    cfg: Config,
    tmp: Path,
    *,
    calls: int,
    rate: float,
    hold_ms: int,
    port: int,
    timeout_s: float = 300.0,
) -> asyncio.subprocess.Process:
    return await asyncio.create_subprocess_exec(
        shutil.which("sipp") or "sipp",
        "-sf", str(SCENARIO), "-i", "127.0.0.2", "-p", str(port), "-mp", str(port * 4),
        "-s", "902", f"127.0.0.1:{cfg.asterisk.sip_port}", "-m", str(calls), "-l", str(calls),
        "-r", str(rate), "-d", str(hold_ms), "-timeout", f"{timeout_s:.0f}s", "-nostdin",
        "-max_socket", "4096",
        stdout=asyncio.subprocess.DEVNULL, stderr=asyncio.subprocess.PIPE, cwd=tmp,
    )  # fmt: skip


async def calls_since(db: Database, t0: float) -> set[str]:
    return {
        str(r["call_id"])
        for r in await db.cdrs(limit=1_000_000)
        if r["line"] == "loadtest" and float(str(r["start_at"])) >= t0 - 1
    }


async def settle(db: Database, t0: float, n: int, timeout_s: float) -> tuple[set[str], list[Any]]:
    deadline = time.monotonic() + timeout_s
    while True:
        ids = await calls_since(db, t0)
        recs = [r for r in await db.recordings() if r["call_id"] in ids]
        if (len(ids) >= n and len(recs) >= n) or time.monotonic() > deadline:
            return ids, recs
        await asyncio.sleep(0.25)


# ---------------------------------------------------------------- load
async def load_sweep(
    svc: TelephonyService, cfg: Config, tmp: Path, levels: list[int], log: Log
) -> int:
    best = 0
    for level in levels:
        rate = min(level, 20)
        hold = int(level / rate * 1000) + 4000  # every call is up at the peak
        t0 = time.time()
        proc = await sipp(cfg, tmp, calls=level, rate=rate, hold_ms=hold, port=5086)
        _, err = await proc.communicate()
        ids, recs = await settle(svc.db, t0, level, 40 + level / 5)
        cdrs = [r for r in await svc.db.cdrs(limit=1_000_000) if str(r["call_id"]) in ids]
        ok = (
            proc.returncode == 0
            and len(ids) == level
            and all(r["disposition"] == "ANSWERED" for r in cdrs)
            and len(recs) == level
            and all(not r["flags"] and r["duration_s"] > 0 for r in recs)
        )
        why = f"sipp rc {proc.returncode}, {len(ids)} CDRs, {len(recs)} recordings"
        log(f"  {level} concurrent at {rate}/s: {'ok' if ok else 'FAIL'} ({why})")
        if not ok:
            if proc.returncode:
                log(f"    {err.decode()[-300:]}")
            break
        best = level
    return best


# ---------------------------------------------------------------- faults
async def ami_cuts(cfg: Config, tmp: Path, main: TelephonyService, cuts: int, log: Log) -> int:
    sys.path.insert(0, str(REPO))
    from tests.integration.tcp_proxy import CuttableProxy

    proxy = CuttableProxy(cfg.asterisk.ami_host, cfg.asterisk.ami_port)
    await proxy.start()
    c = replace(
        cfg,
        database=tmp / "watcher.db",
        recordings_dir=tmp / "watcher-rec",
        asterisk=replace(cfg.asterisk, ami_port=proxy.port),
    )
    async with Database(c.database) as db:
        watcher = TelephonyService(c, db)
        watcher._schedule_ingest = lambda call_id: None  # type: ignore[method-assign]
        await watcher.start()
        try:
            t0 = time.time()
            n_calls = cuts * 3
            proc = await sipp(cfg, tmp, calls=n_calls, rate=2, hold_ms=1500, port=5084)
            for n in range(cuts):
                await asyncio.sleep(0.6)
                await proxy.cut()
                await asyncio.sleep(0.4)
                await proxy.restore()
                deadline = time.monotonic() + 20
                while watcher.stats.reconnects < n + 1 or not watcher.ami.connected:
                    if time.monotonic() > deadline:
                        raise RuntimeError(f"watcher did not reconnect after cut {n + 1}")
                    await asyncio.sleep(0.05)
            await proc.communicate()
            want, _ = await settle(main.db, t0, n_calls, 60)
            deadline = time.monotonic() + 30
            while want - await calls_since(db, t0) and time.monotonic() < deadline:
                await asyncio.sleep(0.25)
            lost = len(want - await calls_since(db, t0))
            log(
                f"  AMI cut {cuts}x: {len(want)} calls, {watcher.stats.cdrs_reconciled} CDRs "
                f"reconciled, {lost} lost"
            )
            return lost
        finally:
            await watcher.stop()
            await proxy.close()


async def gone(pid: int, timeout_s: float = 10.0) -> None:
    """Until a killed process has left (or is a zombie nobody reaps): `sandbox up` would
    otherwise see it running and only reload its configs."""
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        try:
            state = await asyncio.to_thread(Path(f"/proc/{pid}/status").read_text)
        except FileNotFoundError:
            return
        if "State:\tZ" in state:
            return
        await asyncio.sleep(0.05)
    raise RuntimeError(f"process {pid} still there {timeout_s}s after SIGKILL")


def sandbox(cfg: Config, action: str) -> subprocess.CompletedProcess[str]:
    env = {"CALLVAULT_ROOTFS": str(cfg.asterisk.root), "PATH": "/usr/sbin:/usr/bin:/sbin:/bin"}
    return subprocess.run(
        [str(REPO / "asterisk" / "sandbox"), action], env=env, capture_output=True, text=True,
        timeout=120, check=False,
    )  # fmt: skip


async def asterisk_kill(svc: TelephonyService, cfg: Config, tmp: Path, log: Log) -> int:
    """SIGKILL Asterisk with calls up, start it again: calls without a stored recording or CDR."""
    up_calls = 5
    t0 = time.time()
    reconnects = svc.stats.reconnects
    proc = await sipp(cfg, tmp, calls=up_calls, rate=10, hold_ms=60_000, port=5082)
    deadline = time.monotonic() + 15
    while len(svc.recordings.spool_files()) < up_calls and time.monotonic() < deadline:
        await asyncio.sleep(0.1)
    await asyncio.sleep(2)
    pid = int(cfg.asterisk.host_path("/run/asterisk/asterisk.pid").read_text().strip())
    os.kill(pid, signal.SIGKILL)
    proc.terminate()
    await proc.wait()
    await gone(pid)
    restarted = await asyncio.to_thread(sandbox, cfg, "up")
    if restarted.returncode != 0:
        raise RuntimeError(
            f"sandbox up after the kill failed ({restarted.returncode}): "
            f"{restarted.stderr}{restarted.stdout}"
        )
    deadline = time.monotonic() + 40
    while svc.stats.reconnects == reconnects or not svc.ami.connected:
        if time.monotonic() > deadline:
            raise RuntimeError("the appliance did not reconnect to the restarted Asterisk")
        await asyncio.sleep(0.1)
    ids, recs = await settle(svc.db, t0, up_calls, 60)
    flagged = 0
    for cid in ids:
        rows = await svc.db.cdrs(cid)
        flagged += all(r["last_app"] == RECONSTRUCTED for r in rows)
    lost = (up_calls - len(recs)) + (up_calls - len(ids))
    partial = sum("incomplete" in r["flags"] for r in recs)
    log(
        f"  Asterisk SIGKILL: {up_calls} calls up, {len(ids)} with a CDR ({flagged} flagged "
        f"reconstructed), {len(recs)} recordings kept ({partial} flagged incomplete)"
    )
    return max(0, lost)


def sigkill_rounds(rounds: int, log: Log) -> int:
    sys.path.insert(0, str(REPO))
    from appliance.telephony import service as service_mod
    from tests.privacy.conftest import make_cfg
    from tests.reliability.test_crash import restart_sweep, run_and_kill

    service_mod.INGEST_CDR_WAIT_S = 0.5
    lost = 0
    acked_total = 0
    for _ in range(rounds):
        with tempfile.TemporaryDirectory(prefix="callvault-kill-") as td:
            base = Path(td)
            acks = run_and_kill(base, after_acks=random.randint(4, 60))
            acked_total += len(acks)
            db_path = make_cfg(base).database
            con = sqlite3.connect(db_path)
            try:
                if con.execute("PRAGMA integrity_check").fetchone() != ("ok",):
                    lost += 1
                cdrs = {r[0] for r in con.execute("SELECT call_id FROM cdrs")}
                recs = {r[0] for r in con.execute("SELECT call_id FROM recordings")}
            finally:
                con.close()
            lost += sum(1 for a in acks if a.startswith("cdr ") and a.split()[1] not in cdrs)
            lost += sum(1 for a in acks if a.startswith("rec ") and a.split()[1] not in recs)
            asyncio.run(restart_sweep(base))
            lost += len(list((base / "spool").glob("cv-*.wav")))
    log(f"  writer SIGKILLed {rounds}x: {acked_total} acknowledged writes, {lost} lost/left")
    return lost


# ---------------------------------------------------------------- soak
def _proc_stats(pid: int) -> tuple[float, int]:
    rss = 0.0
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            rss = int(line.split()[1]) / 1024
    return rss, len(os.listdir(f"/proc/{pid}/fd"))


async def soak(
    svc: TelephonyService, cfg: Config, tmp: Path, seconds: float, log: Log
) -> dict[str, float]:
    """Moderate, steady traffic (2 calls/s of 4 s, ~8 up at once, all recorded) for `seconds`,
    sampling RSS and open fds of this process (the appliance) and Asterisk every 5 s."""
    rate, hold = 2, 4000
    calls = int(seconds * rate)
    pids = {"appliance": os.getpid()}
    pids["asterisk"] = int(cfg.asterisk.host_path("/run/asterisk/asterisk.pid").read_text().strip())
    samples: dict[str, list[tuple[float, int]]] = {k: [] for k in pids}
    t0 = time.time()
    # SIPp's -timeout ends the whole run: the soak's is its length plus the last calls' hold.
    proc = await sipp(
        cfg, tmp, calls=calls, rate=rate, hold_ms=hold, port=5080, timeout_s=seconds + 120
    )
    while proc.returncode is None:
        for name, pid in pids.items():
            samples[name].append(_proc_stats(pid))
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(proc.wait(), 5)
    ids, recs = await settle(svc.db, t0, calls, 60)
    out: dict[str, float] = {"soak_duration_s": round(time.time() - t0)}
    growth = 0.0
    for name, rows in samples.items():
        n = len(rows)
        warm = max(1, n // 10)  # the first tenth is warm-up (caches, pools)
        first = statistics.median(r[0] for r in rows[warm : 2 * warm] or rows[:1])
        last = statistics.median(r[0] for r in rows[-warm:])
        fd_growth = statistics.median(r[1] for r in rows[-warm:]) - statistics.median(
            r[1] for r in rows[warm : 2 * warm] or rows[:1]
        )
        log(f"  soak {name}: RSS {first:.1f} -> {last:.1f} MB, fds {fd_growth:+.0f} ({n} samples)")
        growth = max(growth, last - first)
        out[f"soak_{name}_fd_growth"] = fd_growth
    out["soak_rss_growth_mb"] = round(growth, 1)
    out["soak_calls_ok"] = min(len(ids), len(recs))
    out["soak_calls"] = calls
    log(
        f"  soak: {calls} calls, {len(ids)} CDRs, {len(recs)} recordings, sipp rc {proc.returncode}"
    )
    return out


# ---------------------------------------------------------------- security
def security_findings(log: Log) -> int:
    out = subprocess.run(
        [sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", "-m", "not integration",
         "tests/security"],
        cwd=REPO, capture_output=True, text=True, timeout=900, check=False,
    )  # fmt: skip
    tail = out.stdout.strip().splitlines()[-1] if out.stdout.strip() else out.stderr[-300:]
    failed = sum(int(n) for n in re.findall(r"(\d+) (?:failed|error)", tail))
    passed = sum(int(n) for n in re.findall(r"(\d+) passed", tail))
    log(f"  tests/security: {passed} checks passed, {failed} failed ({tail})")
    if passed == 0 and failed == 0:
        raise RuntimeError(f"tests/security did not run: {out.stderr[-500:]}")
    return failed


async def sip_bypass(cfg: Config, log: Log) -> int:
    """INVITEs straight to the agent's port from a stranger: every one must be refused."""
    from appliance.telephony.sip import PjRuntime, SipAgent
    from tests.integration.test_reliability_faults import _invite

    async def handler(_call: Any) -> None:
        return None

    findings = 0
    async with PjRuntime(bind_host="127.0.0.1", bind_port=0) as rt:
        agent = SipAgent(
            handler=handler, username=cfg.agent.username, password=cfg.agent_password(),
            registrar_host="127.0.0.1", registrar_port=cfg.asterisk.sip_port, bind_host="127.0.0.1",
            bind_port=0, runtime=rt,
        )  # fmt: skip
        await agent.start()
        try:
            import socket

            loop = asyncio.get_running_loop()
            for ua in ("friendly-scanner", "sipcli/v1.8", "Callvault"):
                sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
                sock.bind(("127.0.0.1", 0))
                sock.setblocking(False)
                target = ("127.0.0.1", agent.port)
                await loop.sock_sendto(sock, _invite(target, sock.getsockname(), ua), target)
                status = 0
                try:
                    async with asyncio.timeout(5):
                        while status < 300:
                            data = (await loop.sock_recv(sock, 65536)).decode(errors="replace")
                            status = int(data.split(" ", 2)[1])
                            if status in {180, 183, 200}:
                                break
                except TimeoutError:
                    status = 0
                sock.close()
                if status != 403:
                    findings += 1
            log(f"  SIP INVITE bypassing Asterisk: {findings} not refused (of 3)")
        finally:
            await agent.stop()
    return findings


# ---------------------------------------------------------------- entry
def run(
    cfg: Config, tmp: Path, results: dict[str, float], *, quick: bool, log: Log
) -> dict[str, float]:
    soak_s = float(os.environ.get("CALLVAULT_SOAK_S") or (60 if quick else 1800))
    levels = [30, 60] if quick else [30, 60, 100, 150, 200]
    out: dict[str, float] = {}

    async def main() -> None:
        up = await asyncio.to_thread(sandbox, cfg, "up")
        if up.returncode != 0:
            raise RuntimeError(f"sandbox up failed: {up.stderr}")
        async with Database(cfg.database) as db:
            svc = TelephonyService(cfg, db)
            await svc.start()
            try:
                if soak_only:  # `CALLVAULT_SOAK_ONLY=1`: the soak alone, other keys kept
                    log(f"[soak] {soak_s:.0f} s")
                    out.update(await soak(svc, cfg, tmp, soak_s, log))
                    return
                log("[load] SIPp sweep, recorded line, 20 calls/s")
                out["load_max_concurrent_recorded_calls"] = await load_sweep(
                    svc, cfg, tmp, levels, log
                )
                log("[faults]")
                out["fault_cdrs_lost"] = await ami_cuts(cfg, tmp, svc, 20, log)
                out["fault_recordings_lost"] = await asterisk_kill(svc, cfg, tmp, log)
                log(f"[soak] {soak_s:.0f} s")
                out.update(await soak(svc, cfg, tmp, soak_s, log))
                out["security_findings"] = await sip_bypass(cfg, log)
            finally:
                await svc.stop()

    soak_only = os.environ.get("CALLVAULT_SOAK_ONLY") == "1"
    asyncio.run(main())
    if soak_only:
        results.update(out)
        return out
    out["fault_rows_lost"] = sigkill_rounds(5 if quick else 20, log)
    out["security_findings"] = out.get("security_findings", 0) + security_findings(log)
    results.update(out)
    return out


def notes(merged: dict[str, Any]) -> str:
    soak = merged.get("soak_duration_s")
    return (
        "Reliability (bench/reliability.py, issue 9): `load_max_concurrent_recorded_calls` "
        "sweeps 30/60/100/150/200 concurrent recorded SIPp calls started at 20 calls/s (0 "
        "failures: every call answered, its CDR written, its recording encrypted whole). Faults: "
        "`fault_cdrs_lost` after 20 AMI cuts under traffic and reconciliation; "
        "`fault_recordings_lost` when Asterisk is SIGKILLed with 5 calls up and restarted "
        "(calls end with a CDR flagged reconstructed and the recording up to the kill kept, "
        "flagged incomplete); `fault_rows_lost` over repeated SIGKILLs of a writing process "
        "(acknowledged rows missing + plaintext left in the spool after the restart sweep). "
        f"Soak: ran {soak} s (`soak_duration_s`; the issue's 30 min is the default, "
        "`CALLVAULT_SOAK_S` shortens it) at 2 calls/s of 4 s, RSS of the appliance and Asterisk "
        "sampled every 5 s; `soak_rss_growth_mb` is the larger growth (last tenth vs. second "
        "tenth of the samples). `security_findings`: failing checks of tests/security plus "
        "INVITEs that bypass Asterisk and are not refused. Fuzzing (bench/fuzz.py, group "
        "`fuzz`): `fuzz_inputs` mutated inputs over the AMI parser, CDR file, config loader, SIP "
        "headers, DNC upload, DSAR export CSV and lead import; `fuzz_crashes` undocumented "
        "exceptions (inputs kept in bench/results/fuzz-crashes/)."
    )
