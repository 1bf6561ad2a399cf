"""`callvault serve` as the appliance runs it: a process, a config file, SIGTERM to stop.

Runs before the in-process appliance of the other tests (see conftest): both register as the
PJSIP endpoint `agent`, and Asterisk keeps one contact for it.
"""

from __future__ import annotations

import asyncio
import json
import signal
import sys
import time
import tomllib
from pathlib import Path

import pytest

from appliance.config import Config
from appliance.telephony.audio import tone, voiced_seconds
from appliance.telephony.sip import PjRuntime, SipPhone
from tests.integration.conftest import DEV_CONFIG, REPO

pytestmark = pytest.mark.asyncio(loop_scope="session")


def write_config(cfg: Config, path: Path) -> None:
    # The session's config, as a file: same state dir (secrets), own database.
    text = DEV_CONFIG.read_text()
    raw_state = f'state_dir = "{cfg.state_dir}"\ndatabase = "{path.parent / "serve.db"}"\n'
    text = text.replace('state_dir = "../var"\n', raw_state)
    assert tomllib.loads(text)["state_dir"] == str(cfg.state_dir)
    path.write_text(text)


async def cli(config: Path, *args: str) -> tuple[int, str, str]:
    proc = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "appliance.cli", "--config", str(config), *args,
        cwd=REPO, stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE,
    )  # fmt: skip
    out, err = await proc.communicate()
    return proc.returncode or 0, out.decode(), err.decode()


async def test_serve_process_answers_calls_and_stops_on_sigterm(
    cfg: Config, runtime: PjRuntime, tmp_path: Path
) -> None:
    config = tmp_path / "callvault.toml"
    write_config(cfg, config)
    proc = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "appliance.cli", "--config", str(config), "serve",
        cwd=REPO, stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE,
    )  # fmt: skip
    try:
        assert proc.stdout is not None
        line = await asyncio.wait_for(proc.stdout.readline(), 20)
        assert line.decode().strip() == "callvault: ready"
        ext = next(e for e in cfg.extensions if e.number == "202")
        async with SipPhone(
            username=ext.number,
            password=cfg.extension_password(ext),
            registrar_host="127.0.0.1",
            registrar_port=cfg.asterisk.sip_port,
            runtime=runtime,
        ) as phone:
            call = await phone.dial("100")
            await call.wait_confirmed(timeout=10)
            call.play(tone(800.0, 1.0))
            await asyncio.sleep(2.5)
            assert voiced_seconds(call.received_pcm()) > 1.0  # the served agent's greeting
            await call.hangup()
            await call.wait_ended(timeout=5)

        deadline = time.monotonic() + 10
        while True:
            rc, out, err = await cli(config, "calls", "--json", "--limit", "5")
            assert rc == 0, err
            rows = [r for r in json.loads(out) if r["calling_number"] == "202"]
            if rows or time.monotonic() > deadline:
                break
            await asyncio.sleep(0.3)
        assert rows and rows[0]["line"] == "reception" and rows[0]["disposition"] == "ANSWERED"
        rc, out, _ = await cli(config, "calls")
        assert rc == 0 and "reception" in out
    finally:
        if proc.returncode is None:
            proc.send_signal(signal.SIGTERM)
        out_rest, err = await asyncio.wait_for(proc.communicate(), 15)
    assert proc.returncode == 0, err.decode()[-2000:]
    assert "callvault: stopped" in out_rest.decode()
    assert "Traceback" not in err.decode()
