"""Readiness: can this box take calls right now? (/readyz, the systemd watchdog's status)

Liveness is /healthz (the listener answers). Readiness asks the things a call needs: Asterisk
answering over AMI (a fresh login and a Ping, with a short timeout, so a wedged Asterisk is a
"no" and not a hang), the database taking a real write, the voice models loaded in the serving
process, and every data disk above `[ops] disk_min_free_pct`. Each failing check says why.
"""

from __future__ import annotations

import asyncio
import re
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Protocol

from appliance.config import Config
from appliance.errors import CallvaultError
from appliance.ops.metrics import (
    SNAPSHOT_MAX_AGE_S,
    disk_free,
    disk_places,
    snapshot_path,
)

# A loaded 2-core box (model loading, post-call transcription) can take a second or two to
# log in: past 3 s Asterisk is as good as unreachable for a caller.
AMI_TIMEOUT_S = 3.0
DB_TIMEOUT_S = 2.0


@dataclass(frozen=True)
class Check:
    name: str
    ok: bool
    detail: str


@dataclass(frozen=True)
class Readiness:
    checks: list[Check]

    @property
    def ready(self) -> bool:
        return all(c.ok for c in self.checks)

    @property
    def reasons(self) -> list[str]:
        return [f"{c.name}: {c.detail}" for c in self.checks if not c.ok]


class ProbeStore(Protocol):
    async def ops_write_probe(self, at: float) -> None: ...


async def ami_check(cfg: Config, timeout_s: float = AMI_TIMEOUT_S) -> Check:
    from appliance.telephony.ami import AmiError, probe_session

    a = cfg.asterisk
    try:
        async with probe_session(cfg, connect_timeout_s=timeout_s, budget_s=timeout_s * 2) as ami:
            await ami.action("Ping")
    except AmiError as exc:
        return Check("asterisk", False, str(exc))
    return Check("asterisk", True, f"AMI at {a.ami_host}:{a.ami_port} answers")


async def db_check(db: ProbeStore, clock: Callable[[], float] = time.time) -> Check:
    import sqlite3

    try:
        async with asyncio.timeout(DB_TIMEOUT_S):
            await db.ops_write_probe(clock())
    except TimeoutError:
        return Check("database", False, f"a write did not finish in {DB_TIMEOUT_S:g} s")
    except (sqlite3.Error, CallvaultError, OSError) as exc:
        return Check("database", False, f"not writable: {exc}")
    return Check("database", True, "writable")


_LOADED = re.compile(rb"^callvault_models_loaded ([0-9.]+)$", re.MULTILINE)


def models_from_snapshot(path: Path, *, now: float) -> Check:
    """The serving process's word on its models (it loads them; the admin listener does not)."""
    try:
        if now - path.stat().st_mtime > SNAPSHOT_MAX_AGE_S:
            return Check("models", False, "the serving process (callvault serve) is not reporting")
        m = _LOADED.search(path.read_bytes())
    except OSError:
        return Check("models", False, "the serving process (callvault serve) is not running")
    if m is None or float(m.group(1)) < 1:
        return Check("models", False, "voice models not loaded (AI lines play the greeting)")
    return Check("models", True, "loaded")


def disk_check(cfg: Config) -> Check:
    low = [
        f"{d.role} ({d.path}) {d.free_pct:.1f}% free"
        for d in disk_free(disk_places(cfg))
        if d.free_pct < cfg.ops.disk_min_free_pct
    ]
    if low:
        return Check("disk", False, f"below {cfg.ops.disk_min_free_pct:g}% free: " + ", ".join(low))
    return Check("disk", True, f"every data disk above {cfg.ops.disk_min_free_pct:g}% free")


async def readiness(
    cfg: Config,
    db: ProbeStore,
    *,
    models: Callable[[], Check] | None = None,
    ami: Callable[[], Awaitable[Check]] | None = None,
) -> Readiness:
    """All checks side by side (the slowest bounds the answer, about AMI_TIMEOUT_S).

    `models`: how this process learns whether the models are loaded (the serving process
    passes its own state; the admin listener reads the serving process's snapshot)."""

    def models_default() -> Check:
        if not cfg.agent.voice:
            return Check("models", True, "voice agent off in the config")
        return models_from_snapshot(snapshot_path(cfg), now=time.time())

    ami_result, db_result, disk = await asyncio.gather(
        (ami or (lambda: ami_check(cfg)))(),
        db_check(db),
        asyncio.to_thread(disk_check, cfg),
    )
    return Readiness([ami_result, db_result, (models or models_default)(), disk])
