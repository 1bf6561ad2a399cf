"""What the API handlers reach: the store and the privacy engine, opened once per process."""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass
from typing import TypeAlias

from litestar.di import NamedDependency

from appliance.admin.tokens import ApiTokens
from appliance.admin.users import Users
from appliance.config import Config
from appliance.privacy import Privacy
from appliance.privacy.rights.service import Rights
from appliance.store import Database


@dataclass
class Services:
    cfg: Config
    db: Database
    privacy: Privacy
    rights: Rights
    tokens: ApiTokens
    users: Users


@asynccontextmanager
async def open_services(cfg: Config) -> AsyncIterator[Services]:
    async with Database(cfg.database) as db:
        privacy = Privacy(cfg, db)
        yield Services(
            cfg=cfg,
            db=db,
            privacy=privacy,
            rights=Rights(privacy),
            tokens=ApiTokens(db, privacy.audit),
            users=Users(db, privacy.audit),
        )


# How handlers ask for it: `svc: Svc` (provided by the app as the `svc` dependency).
Svc: TypeAlias = NamedDependency[Services]
