"""Applying a PBX change: check → render → write → reload the affected modules → record.

A change is a whole new `PbxConfig`. It is checked as a set (appliance.pbx.model.check_config)
and rendered; a refusal changes nothing. The files Asterisk reads are replaced only when the
render is good, only the modules whose files changed are reloaded over AMI, and Asterisk is
then asked whether every endpoint and route is there: if not, the previous files are put back
and reloaded, and the change is refused with the reason. Only a change that is live is
recorded as a new version (with its audit entry, in one transaction); rollback applies an
older version's snapshot as a new version.
"""

from __future__ import annotations

import asyncio
import json
import logging
import secrets
import time
from collections.abc import Callable
from dataclasses import dataclass, replace
from datetime import UTC, datetime
from typing import Any

from appliance.config import Config
from appliance.errors import CallvaultError, ConfigError
from appliance.pbx import render as pr
from appliance.pbx.model import (
    Extension,
    InboundRoute,
    OutboundRule,
    PbxConfig,
    Settings,
    Trunk,
    check_config,
    from_dict,
    to_dict,
)
from appliance.privacy import Actor, Privacy
from appliance.store import Database
from appliance.telephony import render as tr
from appliance.telephony.ami import AmiClient, AmiError

log = logging.getLogger(__name__)
Clock = Callable[[], datetime]


class ApplyError(CallvaultError):
    """The change was refused; nothing live changed."""


@dataclass(frozen=True)
class Applied:
    version: int
    changed_files: tuple[str, ...]
    reloaded: tuple[str, ...]
    elapsed_ms: float
    note: str


def new_password() -> str:
    """A strong SIP secret: 24 URL-safe characters (~143 bits), typed into phones rarely."""
    return secrets.token_urlsafe(18)


def utc_now() -> datetime:
    return datetime.now(UTC)


class PbxManager:
    def __init__(
        self,
        cfg: Config,
        db: Database,
        privacy: Privacy,
        ami: AmiClient | None = None,
        clock: Clock = utc_now,
    ) -> None:
        self.cfg = cfg
        self.db = db
        self.privacy = privacy
        self.ami = ami
        self.clock = clock
        self._lock = asyncio.Lock()
        self._open_state: dict[str, bool] = {}

    # ---- the configuration in the store
    async def current(self) -> tuple[int, PbxConfig]:
        """(version id, configuration); version 0 and an empty configuration before any."""
        row = await self.db.pbx_current()
        if row is None:
            return 0, PbxConfig()
        return int(row["id"]), await self._decode(str(row["snapshot"]))

    async def _encode(self, pbx: PbxConfig) -> str:
        kr = self.privacy.keyring
        doc: dict[str, Any] = {"settings": to_dict(pbx.settings)}
        for kind, items, key in (
            ("trunks", pbx.trunks, "name"),
            ("extensions", pbx.extensions, "number"),
        ):
            rows = []
            for item in items:
                d = to_dict(item)
                pw = d.pop("password")
                aad = f"callvault pbx|{kind}|{d[key]}".encode()
                d["password_sealed"] = (await kr.seal_value(pw, aad)).hex() if pw else ""
                rows.append(d)
            doc[kind] = rows
        doc["routes"] = [to_dict(r) for r in pbx.routes]
        doc["outbound"] = [to_dict(o) for o in pbx.outbound]
        return json.dumps(doc, sort_keys=True)

    async def _decode(self, snapshot: str) -> PbxConfig:
        doc = json.loads(snapshot)
        kr = self.privacy.keyring

        async def secret(kind: str, d: dict[str, Any], key: str) -> dict[str, Any]:
            sealed = d.pop("password_sealed", "")
            aad = f"callvault pbx|{kind}|{d[key]}".encode()
            d["password"] = (
                await kr.open_value(bytes.fromhex(sealed), aad, f"{kind} password")
                if sealed
                else ""
            )
            return d

        trunks = [
            from_dict(Trunk, await secret("trunks", d, "name"), "trunk")
            for d in doc.get("trunks", [])
        ]
        exts = [
            from_dict(Extension, await secret("extensions", d, "number"), "extension")
            for d in doc.get("extensions", [])
        ]
        return PbxConfig(
            trunks=tuple(trunks),
            extensions=tuple(exts),
            routes=tuple(from_dict(InboundRoute, d, "route") for d in doc.get("routes", [])),
            outbound=tuple(from_dict(OutboundRule, d, "outbound") for d in doc.get("outbound", [])),
            settings=from_dict(Settings, doc.get("settings", {}), "settings"),
        )

    # ---- applying
    async def apply(
        self, pbx: PbxConfig, actor: Actor, note: str, *, rollback_of: int | None = None
    ) -> Applied:
        async with self._lock:
            t0 = time.perf_counter()
            try:
                check_config(pbx, self.cfg)
                files = pr.render_pbx(pbx, self.cfg, await self._blocked())
            except ConfigError as exc:
                await self.privacy.audit.record(
                    actor, "pbx.refused", "pbx", "pbx configuration", f"{note}: {exc}"
                )
                raise ApplyError(f"change refused: {exc}") from None
            changed, reloaded = await self._go_live(files, pbx)
            await self.sync_time_conditions(pbx, force=True)
            vid = await self.db.pbx_add_version(
                at=time.time(),
                actor=actor.name,
                note=note,
                snapshot=await self._encode(pbx),
                files_sha=pr.files_sha(files),
                rollback_of=rollback_of,
                audit=await self.privacy.audit.entry(
                    actor,
                    "pbx.apply",
                    "pbx",
                    "pbx configuration",
                    json.dumps({"note": note, "changed": changed, "reloaded": reloaded}),
                ),
            )
            elapsed = (time.perf_counter() - t0) * 1000
            log.info("pbx v%d live (%s), reloaded %s in %.0f ms", vid, note, reloaded, elapsed)
            return Applied(vid, tuple(changed), tuple(reloaded), elapsed, note)

    async def change(
        self, edit: Callable[[PbxConfig], PbxConfig], actor: Actor, note: str
    ) -> Applied:
        """Apply `edit(current)`; `edit` raises ConfigError for a bad request (then refused)."""
        _, pbx = await self.current()
        try:
            new = edit(pbx)
        except ConfigError as exc:
            await self.privacy.audit.record(
                actor, "pbx.refused", "pbx", "pbx configuration", f"{note}: {exc}"
            )
            raise ApplyError(f"change refused: {exc}") from None
        return await self.apply(new, actor, note)

    async def rollback(self, actor: Actor, to: int | None = None) -> Applied:
        """Apply version `to` (default: the one before the live one) as a new version."""
        versions = await self.db.pbx_versions(limit=1000)
        if not versions:
            raise ApplyError("nothing to roll back: no configuration applied yet")
        if to is None:
            if len(versions) < 2:
                raise ApplyError("nothing to roll back to: only one version applied")
            to = int(versions[1]["id"])
        row = await self.db.pbx_version(to)
        if row is None:
            raise ApplyError(f"no version {to}")
        pbx = await self._decode(str(row["snapshot"]))
        return await self.apply(pbx, actor, f"rollback to v{to}", rollback_of=to)

    async def reapply(self, actor: Actor, reason: str) -> list[str]:
        """Re-render the live version (e.g. after a block): no new version, audited."""
        async with self._lock:
            _, pbx = await self.current()
            files = pr.render_pbx(pbx, self.cfg, await self._blocked())
            _, reloaded = await self._go_live(files, pbx)
        await self.privacy.audit.record(actor, "pbx.reapply", "pbx", "sip security", reason)
        return reloaded

    async def _blocked(self) -> tuple[str, ...]:
        return tuple(str(r["address"]) for r in await self.db.pbx_blocks(active_at=time.time()))

    async def _go_live(self, files: dict[str, str], pbx: PbxConfig) -> tuple[list[str], list[str]]:
        target = self.cfg.asterisk.host_path(self.cfg.asterisk.config_dir)
        if not target.is_dir():
            # No Asterisk here (a dev box, a test): never create /etc/asterisk on the side.
            raise ApplyError(f"change not applied: Asterisk's config directory {target} is missing")
        old: dict[str, str | None] = {}
        for name in files:
            path = target / name
            old[name] = path.read_text() if path.exists() else None
        changed = [n for n in files if files[n] != old[n]]
        if not changed:
            return [], []
        await asyncio.to_thread(tr.write, self.cfg, {n: files[n] for n in changed})
        modules = sorted({pr.MODULE_OF[n] for n in changed})
        if self.ami is None or not self.ami.connected:
            log.warning("Asterisk not reachable over AMI: pbx files written, live at next start")
            return changed, []
        try:
            for m in modules:
                await self._reload(m)
            await self._verify_live(pbx)
        except (AmiError, ApplyError) as exc:
            restore = {n: v for n, v in old.items() if n in changed and v is not None}
            await asyncio.to_thread(tr.write, self.cfg, restore)
            for n in changed:
                if old[n] is None:
                    (target / n).unlink(missing_ok=True)
            for m in modules:
                try:
                    await self.ami.action("Reload", Module=m)
                except AmiError:
                    log.exception("reload of %s after a refused change failed", m)
            raise ApplyError(
                f"change refused by Asterisk, previous config restored: {exc}"
            ) from None
        return changed, modules

    async def _reload(self, module: str) -> None:
        assert self.ami is not None
        try:
            await self.ami.action("Reload", Module=module)
        except AmiError:
            if module in pr.ESSENTIAL_MODULES:
                raise
            # Voicemail declines to load while it has no voicemail.conf: load it now.
            try:
                await self.ami.action("ModuleLoad", LoadType="load", Module=module)
            except AmiError as exc:
                log.warning("%s not reloaded (voicemail not live until a restart): %s", module, exc)

    async def _verify_live(self, pbx: PbxConfig) -> None:
        """Asterisk must now show every enabled endpoint and route the render holds."""
        assert self.ami is not None
        want = {e.number for e in pbx.extensions if e.enabled}
        want |= {pr.trunk_endpoint(t.name) for t in pbx.trunks if t.enabled}
        deadline = time.monotonic() + 3.0
        while True:
            rows = await self.ami.action_list("PJSIPShowEndpoints")
            have = {r.get("ObjectName", "") for r in rows if r.get("Event") == "EndpointList"}
            missing = want - have
            if not missing:
                break
            if time.monotonic() > deadline:
                raise ApplyError(f"Asterisk did not load endpoint(s) {', '.join(sorted(missing))}")
            await asyncio.sleep(0.05)
        if pbx.routes:
            rows = await self.ami.action_list("ShowDialPlan", Context="cvpbx-inbound")
            exts = {r.get("Extension", "") for r in rows if r.get("Event") == "ListDialplan"}
            missing = {r.did for r in pbx.routes} - exts
            if missing:
                raise ApplyError(f"Asterisk did not load route(s) {', '.join(sorted(missing))}")

    # ---- time conditions
    async def sync_time_conditions(
        self, pbx: PbxConfig | None = None, *, force: bool = False
    ) -> dict[str, bool]:
        """Tell Asterisk (AstDB) which timed routes are open now, by the manager's clock."""
        if pbx is None:
            _, pbx = await self.current()
        now = self.clock()
        state = {r.did: r.is_open(now) for r in pbx.routes if r.hours or r.holidays}
        if self.ami is None or not self.ami.connected:
            return state
        for did, is_open in state.items():
            if force or self._open_state.get(did) != is_open:
                await self.ami.action(
                    "DBPut",
                    Family=pr.OPEN_KEY,
                    Key=did.replace("+", "p"),
                    Val="1" if is_open else "0",
                )
                self._open_state[did] = is_open
        return state

    async def run_time_conditions(self, every_s: float = 20.0) -> None:
        while True:
            try:
                await self.sync_time_conditions()
            except (AmiError, CallvaultError) as exc:
                log.warning("time conditions not synced: %s", exc)
            await asyncio.sleep(every_s)


# ---- editing helpers used by the API, UI and CLI
def upsert(pbx: PbxConfig, kind: str, obj: Any) -> PbxConfig:
    key = {"trunk": "name", "extension": "number", "route": "did", "outbound": "name"}[kind]
    attr = {
        "trunk": "trunks",
        "extension": "extensions",
        "route": "routes",
        "outbound": "outbound",
    }[kind]
    items = [i for i in getattr(pbx, attr) if getattr(i, key) != getattr(obj, key)]
    return replace(pbx, **{attr: (*items, obj)})  # type: ignore[arg-type]


def remove(pbx: PbxConfig, kind: str, key_value: str) -> PbxConfig:
    key = {"trunk": "name", "extension": "number", "route": "did", "outbound": "name"}[kind]
    attr = {
        "trunk": "trunks",
        "extension": "extensions",
        "route": "routes",
        "outbound": "outbound",
    }[kind]
    items = getattr(pbx, attr)
    kept = tuple(i for i in items if getattr(i, key) != key_value)
    if len(kept) == len(items):
        raise ConfigError(f"{kind} {key_value!r}", "no such object")
    return replace(pbx, **{attr: kept})  # type: ignore[arg-type]


def find(pbx: PbxConfig, kind: str, key_value: str) -> Any:
    key = {"trunk": "name", "extension": "number", "route": "did", "outbound": "name"}[kind]
    attr = {
        "trunk": "trunks",
        "extension": "extensions",
        "route": "routes",
        "outbound": "outbound",
    }[kind]
    for i in getattr(pbx, attr):
        if getattr(i, key) == key_value:
            return i
    return None
