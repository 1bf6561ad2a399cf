"""What the admin API, pages and CLI share: a manager with a short AMI session, edits as
plain dicts (validated by the model), and views with secrets left out."""

from __future__ import annotations

import logging
import time
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import replace
from typing import Any

from appliance.config import Config
from appliance.errors import ConfigError
from appliance.pbx.apply import Applied, PbxManager, find, new_password, remove, upsert
from appliance.pbx.model import (
    Extension,
    InboundRoute,
    OutboundRule,
    PbxConfig,
    Settings,
    Trunk,
    from_dict,
    to_dict,
)
from appliance.privacy import Actor, Privacy
from appliance.store import Database
from appliance.telephony.ami import AmiClient, AmiError

log = logging.getLogger(__name__)
CLASSES: dict[str, type[Any]] = {
    "trunk": Trunk,
    "extension": Extension,
    "route": InboundRoute,
    "outbound": OutboundRule,
}


@asynccontextmanager
async def manager(cfg: Config, db: Database, privacy: Privacy) -> AsyncIterator[PbxManager]:
    """A manager with its own AMI session for the request (None when Asterisk is down:
    changes are then written and go live at Asterisk's next start)."""
    ami: AmiClient | None = AmiClient.for_config(
        cfg, connect_timeout_s=min(cfg.asterisk.ami_connect_timeout_s, 3.0)
    )
    assert ami is not None
    try:
        await ami.connect()
    except AmiError as exc:
        log.warning("pbx change without Asterisk: %s", exc)
        ami = None
    try:
        yield PbxManager(cfg, db, privacy, ami)
    finally:
        if ami is not None:
            await ami.close()


def view(pbx: PbxConfig) -> dict[str, Any]:
    """The configuration without secrets (passwords show only whether one is set)."""

    def clean(obj: Any) -> dict[str, Any]:
        d = to_dict(obj)
        if "password" in d:
            d["password"] = "set" if d["password"] else ""
        return d

    return {
        "trunks": [clean(t) for t in pbx.trunks],
        "extensions": [clean(e) for e in pbx.extensions],
        "routes": [clean(r) for r in pbx.routes],
        "outbound": [clean(o) for o in pbx.outbound],
        "settings": to_dict(pbx.settings),
    }


async def save(
    m: PbxManager, kind: str, data: dict[str, Any], actor: Actor
) -> tuple[Applied, str | None]:
    """Create or replace one object; for a new extension (or `regenerate_password`) a strong
    password is generated and returned once. Trunk passwords left empty keep the old one."""
    if kind == "settings":
        settings = from_dict(Settings, data, "settings")
        edit = lambda p: replace(p, settings=settings)  # noqa: E731
        return await m.change(edit, actor, "change settings"), None
    if kind not in CLASSES:
        raise ConfigError("kind", f"{kind!r} is not one of {', '.join(CLASSES)}, settings")
    data = dict(data)
    regenerate = bool(data.pop("regenerate_password", False))
    key_field = {"trunk": "name", "extension": "number", "route": "did", "outbound": "name"}[kind]
    key = str(data.get(key_field, ""))
    _, current = await m.current()
    old = find(current, kind, key)
    once: str | None = None
    if kind == "extension":
        if "password" in data:
            raise ConfigError("extension.password", "passwords are generated, not chosen")
        if old is None or regenerate:
            once = new_password()
            data["password"] = once
        else:
            data["password"] = old.password
    if kind == "trunk" and old is not None and not data.get("password"):
        data["password"] = old.password
    obj = from_dict(CLASSES[kind], data, kind)
    verb = "add" if old is None else "change"
    applied = await m.change(lambda p: upsert(p, kind, obj), actor, f"{verb} {kind} {key}")
    # A phone with a MAC may fetch its provisioning file (password included) once per issue.
    if kind == "extension" and obj.mac and (once is not None or old is None or old.mac != obj.mac):
        await m.db.pbx_provision_issue(obj.mac, obj.number, time.time())
    return applied, once


async def delete(m: PbxManager, kind: str, key: str, actor: Actor) -> Applied:
    if kind not in CLASSES:
        raise ConfigError("kind", f"{kind!r} is not one of {', '.join(CLASSES)}")
    return await m.change(lambda p: remove(p, kind, key), actor, f"remove {kind} {key}")


async def set_enabled(m: PbxManager, kind: str, key: str, enabled: bool, actor: Actor) -> Applied:
    def edit(p: PbxConfig) -> PbxConfig:
        obj = find(p, kind, key)
        if obj is None or not hasattr(obj, "enabled"):
            raise ConfigError(f"{kind} {key!r}", "no such object to enable or disable")
        return upsert(p, kind, replace(obj, enabled=enabled))

    return await m.change(edit, actor, f"{'enable' if enabled else 'disable'} {kind} {key}")
