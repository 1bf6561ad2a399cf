"""`callvault serve` as the appliance runs it: a process, a config file, SIGTERM to stop.

Runs before the in-process appliance of the other tests (see conftest): both register as the
PJSIP endpoint `agent`, and Asterisk keeps one contact for it. The phones here are 203/204,
extensions the other tests never register.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import signal
import socket
import ssl
import sys
import time
import tomllib
from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path

import httpx
import pytest

from appliance.config import Config
from appliance.telephony.audio import tone, voiced_seconds
from appliance.telephony.sip import PjRuntime, SipPhone
from tests.integration.conftest import DEV_CONFIG, REPO

pytestmark = pytest.mark.asyncio(loop_scope="session")


def write_config(cfg: Config, path: Path) -> None:
    # The session's config as a file: same state dir (so the same secrets), own database.
    text = DEV_CONFIG.read_text().replace(
        'state_dir = "../var"\n',
        f'state_dir = "{cfg.state_dir}"\ndatabase = "{path.parent / "serve.db"}"\n',
    )
    assert tomllib.loads(text)["state_dir"] == str(cfg.state_dir)
    # `serve` runs the admin listener too: on a port of its own, so parallel runs never clash.
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    path.write_text(text + f'\n[admin]\nbind = "127.0.0.1"\nport = {port}\n')


@dataclass
class Served:
    process: asyncio.subprocess.Process
    stdout: str = ""
    stderr: str = ""


@contextlib.asynccontextmanager
async def serving(cfg: Config, tmp_path: Path) -> AsyncIterator[Path]:
    """`callvault serve` until the block ends, then SIGTERM: it must stop cleanly, exit 0."""
    config = tmp_path / "callvault.toml"
    write_config(cfg, config)
    proc = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "appliance.cli", "--config", str(config), "serve",
        cwd=REPO, stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE,
    )  # fmt: skip
    served = Served(proc)
    try:
        assert proc.stdout is not None
        # Loading the voice models takes a while on a busy 2-core box.
        ready = await asyncio.wait_for(proc.stdout.readline(), 90)
        assert ready.strip() == b"callvault: ready", ready
        port = tomllib.loads(config.read_text())["admin"]["port"]
        ctx = ssl.create_default_context(cafile=str(cfg.state_dir / "tls" / "admin.crt"))
        async with httpx.AsyncClient(verify=ctx, timeout=10) as web:
            r = await web.get(f"https://localhost:{port}/healthz")
        assert r.json() == {"status": "ok"}  # the admin listener runs next to telephony
        yield config
    finally:
        if proc.returncode is None:
            proc.send_signal(signal.SIGTERM)
        out, err = await asyncio.wait_for(proc.communicate(), 60)
        served.stdout, served.stderr = out.decode(), err.decode()
    assert proc.returncode == 0, served.stderr[-2000:]
    assert "callvault: stopped" in served.stdout
    assert "Traceback" not in served.stderr


async def cli(config: Path, *args: str) -> tuple[int, str, str]:
    proc = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "appliance.cli", "--config", str(config), *args,
        cwd=REPO, stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE,
    )  # fmt: skip
    out, err = await proc.communicate()
    return proc.returncode or 0, out.decode(), err.decode()


async def cdrs_since(config: Path, t0: float, want: int) -> list[dict]:
    deadline = time.monotonic() + 10
    while True:
        rc, out, err = await cli(config, "calls", "--json", "--limit", "20")
        assert rc == 0, err
        rows = [r for r in json.loads(out) if r["start_at"] >= t0 - 1]
        if len(rows) >= want or time.monotonic() > deadline:
            return rows
        await asyncio.sleep(0.3)


def phone(cfg: Config, runtime: PjRuntime, number: str) -> SipPhone:
    ext = next(e for e in cfg.extensions if e.number == number)
    return SipPhone(
        username=number,
        password=cfg.extension_password(ext),
        registrar_host="127.0.0.1",
        registrar_port=cfg.asterisk.sip_port,
        runtime=runtime,
    )


async def test_serve_process_answers_calls_and_stops_on_sigterm(
    cfg: Config, runtime: PjRuntime, tmp_path: Path
) -> None:
    async with serving(cfg, tmp_path) as config:
        t0 = time.time()
        async with phone(cfg, runtime, "203") as desk:
            call = await desk.dial("100")
            await call.wait_confirmed(timeout=10)
            call.play(tone(800.0, 1.0))
            # The served agent's greeting; how soon it comes is a benchmark, not this test's
            # business (a loaded machine starts it later).
            for _ in range(60):
                await asyncio.sleep(0.25)
                if voiced_seconds(call.received_pcm()) > 1.0:
                    break
            assert voiced_seconds(call.received_pcm()) > 1.0
            await call.hangup()
            await call.wait_ended(timeout=5)
        rows = await cdrs_since(config, t0, 1)
        assert [r["calling_number"] for r in rows] == ["203"], rows
        assert rows[0]["line"] == "reception" and rows[0]["disposition"] == "ANSWERED"
        rc, out, _ = await cli(config, "calls")
        assert rc == 0 and "reception" in out and "Normal clearing" in out


async def test_four_calls_at_once_and_a_fifth_hears_busy(
    cfg: Config, runtime: PjRuntime, sipp: str, tmp_path: Path
) -> None:
    async with serving(cfg, tmp_path) as config:
        t0 = time.time()
        phones = [phone(cfg, runtime, "203"), phone(cfg, runtime, "204")]
        for p in phones:
            await p.start()
        calls = [await phones[i % 2].dial("100") for i in range(4)]
        await asyncio.gather(*(c.wait_confirmed(timeout=10) for c in calls))
        # A fifth caller while the agent holds four calls: Asterisk tells them, no silence.
        busy = await asyncio.create_subprocess_exec(
            sipp, "-sf", str(REPO / "bench" / "sipp" / "uac_pcap.xml"), "-i", "127.0.0.2",
            "-p", "5094", "-mp", "21000", "-s", "100", f"127.0.0.1:{cfg.asterisk.sip_port}",
            "-m", "1", "-d", "1000", "-timeout", "30s", "-nostdin",
            stdout=asyncio.subprocess.DEVNULL, stderr=asyncio.subprocess.DEVNULL, cwd=tmp_path,
        )  # fmt: skip
        assert await busy.wait() == 0
        # Each caller hears its own greeting (spoken by the voice agent: four at once on two
        # cores take a few seconds).
        deadline = time.monotonic() + 20
        while time.monotonic() < deadline:
            if all(voiced_seconds(c.received_pcm()) > 1.0 for c in calls):
                break
            await asyncio.sleep(0.2)
        for call in calls:
            assert voiced_seconds(call.received_pcm()) > 1.0
            await call.hangup()
        for p in phones:
            await p.stop()
        rows = await cdrs_since(config, t0, 6)
        answered = [r for r in rows if r["calling_number"] in {"203", "204"}]
        refused = [r for r in rows if r["calling_number"].startswith("load")]
        assert len(answered) == 4 and all(r["disposition"] == "ANSWERED" for r in answered)
        # One call, two CDRs: the Dial to the agent (refused) and the announcement after it.
        assert len({r["call_id"] for r in refused}) == 1, rows
        dial, announced = sorted(refused, key=lambda r: r["sequence"])
        assert str(dial["dest_channel"]).startswith("PJSIP/agent-")
        assert dial["disposition"] in {"BUSY", "NO ANSWER", "FAILED"}
        # The agent answered 486 (its call table is full): "user busy", announced, recorded.
        assert (announced["hangup_cause"], announced["hangup_cause_text"]) == (17, "User busy")
        assert announced["last_app"] == "Playback"
        assert announced["line"] == "reception"
