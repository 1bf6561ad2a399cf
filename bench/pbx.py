"""pbx group (`python -m bench.run --only pbx`): how long a PBX change takes to go live.

`config_apply_ms`: median wall time of one change through appliance.pbx.apply (check, render,
write, reload of the affected module over AMI, Asterisk asked that the objects are loaded,
version + audit committed) until the new destination shows in Asterisk's live dialplan
(ShowDialPlan), over 20 changes of an inbound route (dialplan reload only).
`config_apply_pjsip_ms`: the same for a change of a desk phone (res_pjsip reload), 10 changes.
`config_apply_p95_ms` alongside. Needs the Asterisk sandbox up (the caller starts it).
"""

from __future__ import annotations

import asyncio
import statistics
import time
from dataclasses import replace
from pathlib import Path

from appliance.config import Config
from appliance.pbx.apply import new_password
from appliance.pbx.model import Extension, InboundRoute, PbxConfig, Trunk
from appliance.pbx.service import PbxService
from appliance.privacy import Actor, Privacy
from appliance.store import Database
from appliance.telephony.ami import AmiError

ACTOR = Actor(name="bench", role="admin")
DID = "4631100200"


async def _live(svc: PbxService, want: str) -> None:
    rows = await svc.ami.action_list("ShowDialPlan", Context=f"cvpbx-route-{DID}")
    data = " ".join(r.get("AppData", "") for r in rows if r.get("Event") == "ListDialplan")
    if want not in data:
        raise AssertionError(f"change not live: {want!r} not in {data!r}")


async def _booted(svc: PbxService, timeout_s: float = 20.0) -> None:
    """Asterisk just started: its AMI answers logins before it is fully booted and drops the
    first sessions; wait until an action is served."""
    deadline = time.monotonic() + timeout_s
    while True:
        try:
            await svc.ami.action_list("PJSIPShowEndpoints")
            return
        except AmiError:
            if time.monotonic() > deadline:
                raise
            await asyncio.sleep(0.2)


async def _measure(cfg: Config, quick: bool) -> dict[str, float]:
    async with Database(cfg.database) as db:
        svc = PbxService(cfg, db, Privacy(cfg, db))
        await svc.start(loops=False)
        try:
            await _booted(svc)
            base = PbxConfig(
                trunks=(Trunk(name="carrier", host="127.0.0.3", port=5090, dids=(DID,)),),
                extensions=(Extension(number="301", name="Bench", password=new_password()),),
                routes=(InboundRoute(did=DID, destination="extension:301"),),
            )
            await svc.manager.apply(base, ACTOR, "bench base")
            route_ms: list[float] = []
            for i in range(5 if quick else 20):
                dest = "line:echo" if i % 2 == 0 else "extension:301"
                pbx = replace(base, routes=(replace(base.routes[0], destination=dest),))
                t0 = time.perf_counter()
                await svc.manager.apply(pbx, ACTOR, f"bench route {i}")
                await _live(
                    svc, "callvault-lines,900" if i % 2 == 0 else "callvault-extensions,301"
                )
                route_ms.append((time.perf_counter() - t0) * 1000)
            pjsip_ms: list[float] = []
            for i in range(3 if quick else 10):
                ext = replace(base.extensions[0], name=f"Bench {i}")
                t0 = time.perf_counter()
                await svc.manager.apply(replace(base, extensions=(ext,)), ACTOR, f"bench ext {i}")
                pjsip_ms.append((time.perf_counter() - t0) * 1000)
            await svc.manager.apply(PbxConfig(), ACTOR, "bench teardown")
        finally:
            await svc.stop()
    route_ms.sort()
    return {
        "config_apply_ms": round(statistics.median(route_ms), 1),
        "config_apply_p95_ms": round(route_ms[max(0, int(len(route_ms) * 0.95) - 1)], 1),
        "config_apply_pjsip_ms": round(statistics.median(pjsip_ms), 1),
    }


def run(cfg: Config, tmp: Path, quick: bool = False) -> dict[str, float]:
    _ = tmp
    return asyncio.run(_measure(cfg, quick))
