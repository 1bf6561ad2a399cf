"""systemd's notify protocol as `callvault serve` speaks it, to a socket of our own."""

from __future__ import annotations

import os
import socket
from pathlib import Path

import pytest

from appliance.ops.runtime import sd_notify, watchdog_interval_s


def test_sd_notify_reaches_the_socket(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    path = tmp_path / "notify"
    with socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM) as srv:
        srv.bind(str(path))
        monkeypatch.setenv("NOTIFY_SOCKET", str(path))
        assert sd_notify("READY=1\nSTATUS=serving")
        assert srv.recv(100) == b"READY=1\nSTATUS=serving"
    monkeypatch.delenv("NOTIFY_SOCKET")
    assert not sd_notify("WATCHDOG=1")  # not under systemd: nothing to do


def test_sd_notify_abstract_socket(monkeypatch: pytest.MonkeyPatch) -> None:
    name = f"callvault-test-{os.getpid()}"
    with socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM) as srv:
        srv.bind("\0" + name)
        monkeypatch.setenv("NOTIFY_SOCKET", "@" + name)
        assert sd_notify("WATCHDOG=1")
        assert srv.recv(100) == b"WATCHDOG=1"


def test_watchdog_interval(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("WATCHDOG_USEC", raising=False)
    assert watchdog_interval_s() is None
    monkeypatch.setenv("WATCHDOG_USEC", "60000000")
    monkeypatch.setenv("WATCHDOG_PID", str(os.getpid()))
    assert watchdog_interval_s() == 30.0
    monkeypatch.setenv("WATCHDOG_PID", "1")  # meant for another process
    assert watchdog_interval_s() is None


async def test_ops_runtime_in_a_serving_process(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """What `callvault serve` runs beside the appliance: READY=1, the live snapshot (turn
    timings from the voice agent's on_done included), the checks, a clean stop."""
    import asyncio
    from types import SimpleNamespace

    from appliance.ops import metrics
    from appliance.ops.runtime import OpsRuntime
    from appliance.store import Database
    from appliance.voice.agent import Conversation, TurnTiming
    from tests.admin.pages import make_cfg  # AMI on port 1: nothing listens

    cfg = make_cfg(tmp_path)
    sock = tmp_path / "notify"
    seen: list[Conversation] = []
    with socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM) as srv:
        srv.bind(str(sock))
        monkeypatch.setenv("NOTIFY_SOCKET", str(sock))
        async with Database(cfg.database) as db:
            handler = SimpleNamespace(on_done=seen.append, engines=None)
            app: object = SimpleNamespace(
                cfg=cfg,
                db=db,
                telephony=SimpleNamespace(
                    channels={"a": SimpleNamespace(linkedid="1.1")},
                    ami=SimpleNamespace(connected=True),
                    _ingest_scheduled=set(),
                ),
                agent=SimpleNamespace(handler=handler),
            )
            async with OpsRuntime(app) as ops:  # type: ignore[arg-type]
                assert srv.recv(100).startswith(b"READY=1")
                convo = Conversation(call_id="1.1", line="reception")
                convo.timings.append(TurnTiming(300, 250, 400, 120, 900))
                handler.on_done(convo)
                assert seen == [convo]  # the previous callback still runs
                path = metrics.snapshot_path(cfg)
                for _ in range(100):
                    if path.exists():
                        break
                    await asyncio.sleep(0.02)
                ops.live.write_snapshot(path)
                text = path.read_text()
                assert "callvault_calls_in_progress 1.0" in text
                assert "callvault_ai_turn_latency_seconds_count 1.0" in text
                assert "callvault_models_loaded 0.0" in text
                for _ in range(200):  # the first round of checks: no models loaded here
                    if any(a.kind == "model_failing" for a in await ops.alerts.list()):
                        break
                    await asyncio.sleep(0.05)
                assert any(a.kind == "model_failing" for a in await ops.alerts.list())
            assert srv.recv(100) == b"STOPPING=1"
            assert not path.exists()
