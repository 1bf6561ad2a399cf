"""The trunk_down alert from a trunk peer really going away (issue 12), in the sandbox.

A PBX trunk (appliance.pbx, IP-authenticated, its AOR qualified) points at 127.0.0.5:5092,
where a UDP socket of ours answers SIP OPTIONS like a carrier's edge. The socket is closed:
Asterisk's qualify goes unanswered, the endpoint turns Unavailable, and the alert fires on the
second check round in a row, not the first; the peer back, one round resolves it. The alert
reaches the loopback SMTP sink. `PJSIPQualify` asks at once instead of waiting for the 60 s
qualify timer; everything else is what `callvault serve` runs.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator
from typing import cast

import pytest
import pytest_asyncio

from appliance.admin.status import asterisk_status
from appliance.config import Config
from appliance.ops.alerts import Alerts
from appliance.ops.checks import AlertChecks, trunk_states
from appliance.ops.notify import SmtpNotifier
from appliance.pbx.model import PbxConfig, Trunk
from appliance.pbx.render import FILES, trunk_endpoint
from appliance.pbx.service import PbxService
from appliance.privacy import Actor
from appliance.server import Appliance
from tests.ops.sinks import smtp_sink

pytestmark = pytest.mark.asyncio(loop_scope="session")
ADMIN = Actor(name="user:it-admin", role="admin")
PEER_IP, PEER_PORT = "127.0.0.5", 5092
TRUNK = "upstream"
EP = trunk_endpoint(TRUNK)


class OptionsAnswerer(asyncio.DatagramProtocol):
    """Answers every SIP request with 200 OK, as a carrier's edge answers qualify OPTIONS."""

    def __init__(self) -> None:
        self.transport: asyncio.DatagramTransport | None = None
        self.seen = 0

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = cast(asyncio.DatagramTransport, transport)

    def datagram_received(self, data: bytes, addr: tuple[str, int]) -> None:
        head = data.decode("utf-8", "replace").split("\r\n\r\n", 1)[0].split("\r\n")
        if not head or head[0].startswith("SIP/2.0"):
            return  # a response, not a request
        self.seen += 1
        keep = [h for h in head[1:] if h.split(":", 1)[0].strip().lower()
                in ("via", "from", "call-id", "cseq")]  # fmt: skip
        to = next((h for h in head[1:] if h.lower().startswith("to:")), "To: <sip:x@x>")
        reply = ["SIP/2.0 200 OK", *keep, f"{to};tag=cvtest", "Content-Length: 0", "", ""]
        assert self.transport is not None
        self.transport.sendto("\r\n".join(reply).encode(), addr)


async def start_peer() -> tuple[asyncio.DatagramTransport, OptionsAnswerer]:
    loop = asyncio.get_running_loop()
    transport, proto = await loop.create_datagram_endpoint(
        OptionsAnswerer, local_addr=(PEER_IP, PEER_PORT)
    )
    return transport, proto


@pytest_asyncio.fixture(scope="module", loop_scope="session")
async def pbx(app: Appliance, cfg: Config) -> AsyncIterator[PbxService]:
    svc = PbxService(cfg, app.db, app.telephony.privacy)
    await svc.start(loops=False)
    yield svc
    await svc.manager.apply(PbxConfig(), ADMIN, "test teardown")
    etc = cfg.asterisk.host_path(cfg.asterisk.config_dir)
    for name in FILES:
        (etc / name).unlink(missing_ok=True)
    for module in ("res_pjsip.so", "pbx_config.so"):
        await svc.ami.action("Reload", Module=module)
    await svc.stop()


async def trunk_up(svc: PbxService, cfg: Config, want: bool, timeout: float = 15.0) -> None:
    """Qualify now and wait until the endpoint's state says `want` (what the checks read)."""
    deadline = time.monotonic() + timeout
    state: dict[str, bool] = {}
    while time.monotonic() < deadline:
        await svc.ami.action("PJSIPQualify", Endpoint=EP)
        await asyncio.sleep(0.5)
        state = trunk_states(await asterisk_status(cfg))
        if state.get(EP) is want:
            return
        await asyncio.sleep(0.5)
    raise AssertionError(f"trunk {EP} never became {'up' if want else 'down'}: {state}")


async def test_trunk_down_fires_after_two_rounds_and_resolves(
    pbx: PbxService, cfg: Config, app: Appliance
) -> None:
    transport, peer = await start_peer()
    try:
        await pbx.manager.apply(
            PbxConfig(trunks=(Trunk(name=TRUNK, host=PEER_IP, port=PEER_PORT),)), ADMIN,
            "a qualified trunk for the alert test",
        )  # fmt: skip
        with smtp_sink() as (port, box):
            alerts = Alerts(
                app.db, [SmtpNotifier("127.0.0.1", port, "box@example.lan", ("it@example.lan",))]
            )
            checks = AlertChecks(cfg, app.db, alerts, confirm_rounds=2)

            async def trunk_alert() -> list[tuple[str, bool]]:
                await checks.check_asterisk()
                await alerts.drain()
                return [
                    (a.message, a.open)
                    for a in await alerts.list(open_only=False)
                    if (a.kind, a.key) == ("trunk_down", EP)
                ]

            await trunk_up(pbx, cfg, True)
            assert peer.seen > 0  # Asterisk really asked our socket
            assert await trunk_alert() == []

            transport.close()  # the far end goes away
            await trunk_up(pbx, cfg, False)
            assert await trunk_alert() == []  # one bad round is not an outage yet
            ((message, is_open),) = await trunk_alert()
            assert is_open and EP in message

            transport, peer = await start_peer()  # back
            await trunk_up(pbx, cfg, True)
            assert await trunk_alert() == [(message, False)]
            mails = box.wait(2)
        subjects = [m["Subject"].split("] ", 1)[1] for m in mails]
        assert subjects == [f"CRITICAL: trunk_down {EP}", f"resolved: trunk_down {EP}"] or (
            subjects == [f"WARNING: trunk_down {EP}", f"resolved: trunk_down {EP}"]
        ), subjects
    finally:
        transport.close()
