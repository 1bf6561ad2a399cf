"""What `callvault serve` runs for operating the box, next to the telephony service: the live
metrics snapshot, the alert checks, the log-level watcher and systemd's notify protocol
(READY=1 once serving, WATCHDOG=1 while the event loop and the database answer, STATUS= with
the readiness reasons)."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import socket
from collections.abc import Mapping
from types import TracebackType
from typing import TYPE_CHECKING, Any

from appliance.ops import health
from appliance.ops.alerts import Alerts, alerts_from_config
from appliance.ops.checks import AlertChecks
from appliance.ops.logging import LevelWatcher
from appliance.ops.metrics import LiveMetrics, models_by_role, snapshot_path, spool_usage

if TYPE_CHECKING:
    from appliance.server import Appliance

log = logging.getLogger(__name__)


def sd_notify(message: str) -> bool:
    """Send one message to systemd's notify socket; False when not run by systemd."""
    addr = os.environ.get("NOTIFY_SOCKET", "")
    if not addr:
        return False
    if addr.startswith("@"):  # abstract namespace
        addr = "\0" + addr[1:]
    try:
        with socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM) as s:
            s.connect(addr)
            s.sendall(message.encode())
    except OSError as exc:
        log.warning("sd_notify failed: %s", exc)
        return False
    return True


def watchdog_interval_s() -> float | None:
    """Half of WatchdogSec (systemd passes WATCHDOG_USEC to the unit's main process)."""
    usec = os.environ.get("WATCHDOG_USEC", "")
    pid = os.environ.get("WATCHDOG_PID", "")
    if not usec.isdigit() or (pid and pid != str(os.getpid())):
        return None
    return int(usec) / 2e6


class ApplianceSource:
    """LiveMetrics' view of a running Appliance."""

    def __init__(self, app: Appliance) -> None:
        self.app = app

    def calls_in_progress(self) -> int:
        return len({c.linkedid for c in self.app.telephony.channels.values()})

    def ami_connected(self) -> bool:
        return self.app.telephony.ami.connected

    def spool(self) -> tuple[int, int]:
        cfg = self.app.cfg
        return spool_usage(cfg.asterisk.host_path(cfg.asterisk.spool_dir))

    def voice_engines(self) -> Any:
        return getattr(self.app.agent.handler, "engines", None)

    def models(self) -> Mapping[str, str]:
        return models_by_role(self.voice_engines())

    def queues(self) -> Mapping[str, int]:
        pending = getattr(self.app.telephony, "_ingest_scheduled", ())
        return {"ingest": len(pending)}


class OpsRuntime:
    def __init__(self, app: Appliance, *, alerts: Alerts | None = None) -> None:
        self.app = app
        self.cfg = app.cfg
        self.source = ApplianceSource(app)
        self.live = LiveMetrics(self.source)
        self.alerts = alerts or alerts_from_config(app.db, app.cfg.ops)
        self.checks = AlertChecks(
            self.cfg,
            app.db,
            self.alerts,
            models_loaded=lambda: bool(self.source.models()),
            on_trunks=self.live.set_trunks,
        )
        self.levels = LevelWatcher(app.db, default=self.cfg.ops.log_level)
        self._tasks: list[asyncio.Task[None]] = []
        handler = app.agent.handler
        if hasattr(handler, "on_done"):  # the voice agent: its turn timings feed the histograms
            previous = handler.on_done

            def done(convo: Any) -> None:
                self.live.observe_conversation(convo)
                if previous is not None:
                    previous(convo)

            handler.on_done = done

    async def __aenter__(self) -> OpsRuntime:
        await self.levels.poll()
        self._spawn(self.live.run(snapshot_path(self.cfg)), "ops-metrics")
        self._spawn(self.checks.run(), "ops-checks")
        self._spawn(self.levels.run(), "ops-log-level")
        sd_notify("READY=1\nSTATUS=serving")
        interval = watchdog_interval_s()
        if interval:
            self._spawn(self._watchdog(interval), "ops-watchdog")
        return self

    async def __aexit__(
        self, t: type[BaseException] | None, e: BaseException | None, tb: TracebackType | None
    ) -> None:
        sd_notify("STOPPING=1")
        for task in self._tasks:
            task.cancel()
        for task in self._tasks:
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await task
        self._tasks.clear()
        await self.alerts.drain()

    def _spawn(self, coro: Any, name: str) -> None:
        self._tasks.append(asyncio.create_task(coro, name=name))

    async def _watchdog(self, interval: float) -> None:
        """Pet the watchdog while the loop runs and the database takes writes (a wedged
        process gets restarted); Asterisk being down is reported, not restarted for."""
        while True:
            db = await health.db_check(self.app.db)
            if db.ok:
                r = await health.readiness(
                    self.cfg, self.app.db, models=self._models_check,
                )  # fmt: skip
                status = "ready" if r.ready else "not ready: " + "; ".join(r.reasons)
                sd_notify(f"WATCHDOG=1\nSTATUS={status[:200]}")
            else:
                log.error("watchdog withheld: %s", db.detail)
            await asyncio.sleep(interval)

    def _models_check(self) -> health.Check:
        if not self.cfg.agent.voice:
            return health.Check("models", True, "voice agent off in the config")
        loaded = bool(self.source.models())
        return health.Check("models", loaded, "loaded" if loaded else "voice models not loaded")
