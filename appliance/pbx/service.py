"""The PBX side of the running appliance: one AMI session for applying changes, live status,
time conditions and the SIP guard (security events)."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import Mapping

from appliance.config import Config
from appliance.pbx.apply import Clock, PbxManager, utc_now
from appliance.pbx.provisioning import ProvisioningServer
from appliance.pbx.security import SipGuard
from appliance.pbx.status import PbxStatus, pbx_status
from appliance.privacy import Privacy
from appliance.store import Database
from appliance.telephony.ami import AmiClient, AmiError

log = logging.getLogger(__name__)


class PbxService:
    def __init__(
        self, cfg: Config, db: Database, privacy: Privacy, *, clock: Clock = utc_now
    ) -> None:
        self.ami = AmiClient.for_config(cfg, on_event=self._on_event)
        self.manager = PbxManager(cfg, db, privacy, self.ami, clock)
        self.guard = SipGuard(self.manager)
        self.last_seen: dict[str, float] = {}
        self._tasks: list[asyncio.Task[None]] = []
        self.provisioning: ProvisioningServer | None = None

    async def start(self, *, loops: bool = True) -> None:
        await self.ami.connect()
        await self.guard.refresh_settings()
        await self.manager.sync_time_conditions(force=True)
        _, pbx = await self.manager.current()
        if pbx.settings.provisioning_port:
            self.provisioning = ProvisioningServer(
                self.manager, self.manager.cfg.asterisk.sip_bind, pbx.settings.provisioning_port
            )
            await self.provisioning.start()
        if loops:
            self._tasks = [
                asyncio.ensure_future(self.manager.run_time_conditions()),
                asyncio.ensure_future(self._expire_blocks()),
            ]

    async def stop(self) -> None:
        for t in self._tasks:
            t.cancel()
        for t in self._tasks:
            with contextlib.suppress(asyncio.CancelledError):
                await t
        if self.provisioning is not None:
            await self.provisioning.stop()
        await self.ami.close()

    async def status(self) -> PbxStatus:
        _, pbx = await self.manager.current()
        st = await pbx_status(self.ami, pbx)
        for e in st.extensions:
            if e.registered and e.number in self.last_seen:
                e.last_seen = self.last_seen[e.number]
        return st

    def _on_event(self, ev: Mapping[str, str]) -> None:
        self.guard.on_event(ev)
        if ev.get("Event") == "ContactStatus" and ev.get("ContactStatus") in {
            "Created",
            "Updated",
            "Reachable",
        }:
            self.last_seen[ev.get("AOR", "")] = time.time()

    async def _expire_blocks(self) -> None:
        while True:
            await asyncio.sleep(30)
            try:
                await self.guard.expire()
            except AmiError as exc:
                log.warning("expired SIP blocks not lifted yet: %s", exc)
