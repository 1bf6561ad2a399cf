"""The conditions `callvault serve` watches, every `[ops] check_interval_s`, as alerts.

Each round fires what is wrong and resolves what has cleared, so an alert lives exactly as long
as its condition (plus at most one interval). "Recording refused" is raised where it happens
(the recording path calls Alerts.fire); the rest are observed here:

- trunk_down: an outbound registration not Registered, or a trunk/IP peer endpoint Unavailable
- ami_down: Asterisk not answering over AMI
- disk_filling: a data disk under `disk_warn_free_pct` (critical under `disk_min_free_pct`)
- model_failing: the voice agent's models did not load (AI lines play the greeting)
- rights_deadline: a data subject request due within `deadline_warn_days` (or overdue)
- retention_failed: the last retention purge ended in error
- backup_failed / backup_unverified: the newest archive failed verification, none is recent,
  or it was never verified
- cert_expiring: the admin certificate expires within `cert_warn_days`

Every check takes the clock it is given, so tests expire deadlines without waiting.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import Awaitable, Callable
from datetime import UTC, datetime
from typing import Any

from appliance.config import Config
from appliance.ops.alerts import Alerts
from appliance.ops.metrics import cert_expiry, disk_free, disk_places, last_backup

log = logging.getLogger(__name__)
DAY = 86400.0
BACKUP_STALE_S = 2 * DAY  # the backup timer runs daily: two days without one is a failure

AsteriskProbe = Callable[[Config], Awaitable[Any]]


def _day(ts: float) -> str:
    return datetime.fromtimestamp(ts, UTC).strftime("%Y-%m-%d %H:%M UTC")


class AlertChecks:
    def __init__(
        self,
        cfg: Config,
        db: Any,
        alerts: Alerts,
        *,
        clock: Callable[[], float] = time.time,
        asterisk: AsteriskProbe | None = None,
        models_loaded: Callable[[], bool] | None = None,
        on_trunks: Callable[[dict[str, bool]], None] | None = None,
        confirm_rounds: int = 2,
    ) -> None:
        self.cfg = cfg
        self.db = db
        self.alerts = alerts
        self.clock = clock
        self.asterisk = asterisk
        self.models_loaded = models_loaded
        self.on_trunks = on_trunks
        # Asterisk and trunks must fail this many rounds in a row before their alert fires: one
        # slow AMI answer on a loaded box is not an outage worth an e-mail. Recovery clears at
        # once.
        self.confirm_rounds = confirm_rounds
        self._failing: dict[tuple[str, str], int] = {}

    async def run(self, interval_s: float | None = None) -> None:
        interval = interval_s or self.cfg.ops.check_interval_s
        while True:
            await self.run_once()
            await asyncio.sleep(interval)

    async def run_once(self) -> None:
        for check in (
            self.check_asterisk,
            self.check_disks,
            self.check_models,
            self.check_rights,
            self.check_retention,
            self.check_backups,
            self.check_certificate,
        ):
            try:
                await check()
            except Exception:  # one broken check must not silence the others
                log.exception("alert check %s failed", check.__name__)

    # ---- Asterisk and trunks
    async def check_asterisk(self) -> None:
        from appliance.admin.status import asterisk_status

        probe = self.asterisk or asterisk_status
        st = await probe(self.cfg)
        await self._confirmed(
            "ami_down", "", not st.reachable, f"Asterisk does not answer over AMI: {st.error}"
        )
        if not st.reachable:
            return  # trunk state is unknown, not down
        trunks = trunk_states(st)
        if self.on_trunks is not None:
            self.on_trunks(trunks)
        for name, up in trunks.items():
            await self._confirmed(
                "trunk_down", name, not up, f"trunk {name!r} is down (unregistered or unreachable)"
            )
        for a in await self.alerts.list():
            if a.kind == "trunk_down" and a.key not in trunks:
                await self.alerts.resolve("trunk_down", a.key)  # the trunk was removed

    async def _confirmed(self, kind: str, key: str, failing: bool, message: str) -> None:
        n = self._failing.get((kind, key), 0) + 1 if failing else 0
        self._failing[(kind, key)] = n
        if not failing:
            await self.alerts.resolve(kind, key)
        elif n >= self.confirm_rounds:
            await self.alerts.fire(kind, message, key=key)

    # ---- disks
    async def check_disks(self) -> None:
        ops = self.cfg.ops
        for d in await asyncio.to_thread(disk_free, disk_places(self.cfg)):
            low = d.free_pct < ops.disk_warn_free_pct
            critical = d.free_pct < ops.disk_min_free_pct
            await self.alerts.set(
                "disk_filling",
                low,
                f"{d.role} disk ({d.path}) has {d.free_pct:.1f}% free"
                f" ({d.free_bytes / 1e9:.2f} GB of {d.total_bytes / 1e9:.2f} GB)",
                key=d.role,
                severity="critical" if critical else "warning",
            )

    # ---- models
    async def check_models(self) -> None:
        if self.models_loaded is None or not self.cfg.agent.voice:
            return
        await self.alerts.set(
            "model_failing",
            not self.models_loaded(),
            "the voice models did not load: AI lines answer with their recorded greeting"
            " (see `callvault models verify`)",
        )

    # ---- rights requests
    async def check_rights(self) -> None:
        from appliance.privacy.rights.model import CLOSED

        now = self.clock()
        horizon = self.cfg.ops.deadline_warn_days * DAY
        due = {
            str(rid): (kind, at)
            for rid, kind, at in await self.db.ops_open_rights(tuple(sorted(map(str, CLOSED))))
            if at - now <= horizon
        }
        for rid, (kind, at) in due.items():
            left = (at - now) / DAY
            when = f"overdue since {_day(at)}" if left < 0 else f"due {_day(at)} ({left:.1f} days)"
            await self.alerts.fire(
                "rights_deadline",
                f"{kind} request #{rid} is {when}",
                key=rid,
                severity="critical" if left < 1 else "warning",
            )
        for a in await self.alerts.list():
            if a.kind == "rights_deadline" and a.key not in due:
                await self.alerts.resolve("rights_deadline", a.key)

    # ---- retention
    async def check_retention(self) -> None:
        run = await self.db.ops_last_retention_run()
        failed = run is not None and run["status"] == "error"
        msg = (
            f"the retention purge of {_day(float(run['started_at']))} failed: {run['error']}"
            if run is not None
            else ""
        )
        await self.alerts.set("retention_failed", failed, msg or "retention failed")

    # ---- backups
    async def check_backups(self) -> None:
        at, verified = await asyncio.to_thread(last_backup, self.cfg)
        now = self.clock()
        if at is None:
            await self.alerts.fire("backup_unverified", "no backup archive yet")
            await self.alerts.resolve("backup_failed")
            return
        stale = now - at > BACKUP_STALE_S
        await self.alerts.set(
            "backup_failed",
            verified is False or stale,
            f"the newest backup ({_day(at)}) failed verification"
            if verified is False
            else f"no backup since {_day(at)}",
        )
        await self.alerts.set(
            "backup_unverified",
            verified is None,
            f"the newest backup ({_day(at)}) was never verified",
        )

    # ---- TLS certificate
    async def check_certificate(self) -> None:
        expires = await asyncio.to_thread(cert_expiry, self.cfg)
        if expires is None:
            return
        left = (expires - self.clock()) / DAY
        await self.alerts.set(
            "cert_expiring",
            left <= self.cfg.ops.cert_warn_days,
            f"the admin TLS certificate expires {_day(expires)}"
            + (" (expired)" if left < 0 else f" (in {left:.0f} days)"),
            severity="critical" if left < 2 else "warning",
        )


# Trunks the PBX area renders are PJSIP endpoints named `trunk-<name>` with a qualified AOR
# and, for registration trunks, a registration `trunk-<name>-reg` (appliance.pbx.render).
TRUNK_PREFIX = "trunk-"


def trunk_states(st: Any) -> dict[str, bool]:
    """Trunk -> up, from an AsteriskStatus: an outbound registration must be Registered, and a
    trunk or IP peer endpoint must not be Unavailable (its qualify OPTIONS go unanswered).
    Desk phones are not trunks: an unregistered phone raises nothing here."""
    trunks: dict[str, bool] = {}
    for reg in st.registrations:
        name = reg.name.removesuffix("-reg")
        trunks[name] = trunks.get(name, True) and reg.status.lower() == "registered"
    for ep in st.endpoints:
        if ep.kind == "ip peer" or (ep.kind == "other" and ep.name.startswith(TRUNK_PREFIX)):
            up = ep.device_state.lower() != "unavailable"
            trunks[ep.name] = trunks.get(ep.name, True) and up
    return trunks


async def cancel(task: asyncio.Task[None] | None) -> None:
    if task is not None:
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await task
